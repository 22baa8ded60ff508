"""Snapshots: pack/import round trip, the July-2023 img2dataset layout, hostile archives."""

import io
import json
import os
import tarfile

os.environ["HF_HUB_OFFLINE"] = "1"

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from steam_server import encode_banner  # noqa: E402

from steam_dinov2.collection.snapshot import import_snapshot, pack_snapshot  # noqa: E402
from steam_dinov2.core import files, layout
from steam_dinov2.core.codec import encode_jpeg, resize_banner  # noqa: E402
from steam_dinov2.core.manifest import read_manifest, write_manifest  # noqa: E402


def _jpeg(seed: int) -> bytes:
    return encode_jpeg(resize_banner(encode_banner(seed)))


def _add(tar: tarfile.TarFile, name: str, payload: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(payload) if info.isfile() else None)


def _folder(root, ids):
    for i in ids:
        files.write_bytes_atomic(layout.banner_path(root, i), _jpeg(i))
    rows = [
        {"app_id": i, "name": f"G{i}", "status": "ok", "width": 224, "height": 336} for i in ids
    ]
    rows.append({"app_id": 5, "name": "Bare", "status": "no_banner"})
    write_manifest(root, pd.DataFrame(rows))


def test_pack_then_import_round_trip(tmp_path):
    _folder(tmp_path / "a", [10, 20, 30])
    out = pack_snapshot(tmp_path / "a", tmp_path / "snap.tar.gz", progress=False)
    assert import_snapshot(out, tmp_path / "b", progress=False) == 3
    for i in (10, 20, 30):
        a, b = (layout.banner_path(tmp_path / d, i).read_bytes() for d in "ab")
        assert a == b
    df = read_manifest(tmp_path / "b").set_index("app_id")
    assert df["status"].to_dict() == {5: "no_banner", 10: "ok", 20: "ok", 30: "ok"}
    assert df.loc[20, "name"] == "G20" and df.loc[20, "bytes"] > 0


def test_july_2023_img2dataset_layout(tmp_path):
    apps = [400, 410, 420, 430]  # apps.json: row i is apps[i]
    (tmp_path / "apps.json").write_text(json.dumps(apps))
    with tarfile.open(tmp_path / "images_partA.tar.gz", "w:gz") as tar:
        _add(tar, "images/00000/000000001.jpg", _jpeg(1))
        _add(tar, "images/00000/000000001.json", b'{"url": "x"}')  # img2dataset's sidecars
        _add(tar, "images/00000/000000003.jpg", encode_banner(3, "cmyk"))  # re-encoded to RGB
        _add(tar, "images/00000_stats.json", b"{}")
    data = tmp_path / "data"
    _folder(data, [410])  # names already known survive the import
    assert import_snapshot(tmp_path, data, progress=False) == 2
    df = read_manifest(data).set_index("app_id")
    assert set(layout.banner_files(data)) == {410, 430}
    assert df.loc[410, "name"] == "G410" and "cdn.cloudflare" in df.loc[410, "url"]
    with Image.open(layout.banner_path(data, 430)) as img:
        assert img.mode == "RGB" and img.size == (600, 900)
    with pytest.raises(ValueError, match="apps"):  # an img2dataset tar alone needs apps.json
        os.remove(tmp_path / "apps.json")
        import_snapshot(tmp_path / "images_partA.tar.gz", tmp_path / "other", progress=False)


@pytest.mark.parametrize(
    "member, attrs, reason",
    [
        ("../evil.jpg", {}, "escapes"),
        ("banners/../../evil.jpg", {}, "escapes"),
        ("/tmp/evil.jpg", {}, "escapes"),
        ("banners/1.jpg", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "link"),
        ("banners/2.jpg", {"type": tarfile.LNKTYPE, "linkname": "banners/10.jpg"}, "link"),
        ("banners/3.jpg", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "device"),
    ],
)
def test_hostile_archives_are_refused(tmp_path, member, attrs, reason):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        _add(tar, "banners/10.jpg", _jpeg(10))  # a good member first: still nothing written
        _add(tar, member, b"" if attrs else _jpeg(1), **attrs)
    data = tmp_path / "deep" / "data"
    with pytest.raises(ValueError, match=f"refusing .*{reason}"):
        import_snapshot(bad, data, progress=False)
    assert not layout.banner_files(data) and not layout.manifest_path(data).exists()
    assert not list(tmp_path.rglob("evil.jpg"))


def test_unknown_source_names_the_forms(tmp_path):
    with pytest.raises(ValueError, match="pack_snapshot.*july-2023"):
        import_snapshot(tmp_path / "missing.zip", tmp_path / "d")
    with pytest.raises(ValueError, match="no manifest"):
        pack_snapshot(tmp_path / "empty", tmp_path / "x.tar.gz")


def test_import_from_a_url_fetches_once(tmp_path):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    src = tmp_path / "src"
    _folder(src, [410, 620])
    served = tmp_path / "served"
    served.mkdir()
    pack_snapshot(src, served / "snap.tar.gz", progress=False)
    requests = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(served))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/snap.tar.gz"
        data = tmp_path / "data"
        assert import_snapshot(url, data, progress=False) == 2
        assert import_snapshot(url, data, progress=False) == 2
        server.shutdown()
    assert requests == ["/snap.tar.gz"]  # the second import reused DATA/downloads
    assert sorted(read_manifest(data).app_id) == [5, 410, 620]
