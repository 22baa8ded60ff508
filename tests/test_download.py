"""Banner download against a fake Steam on 127.0.0.1: faults, resume, SIGKILL, resize."""

import copy
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from steam_server import KEY, App, FakeSteam, encode_banner  # noqa: E402

from steam_dinov2.core import files, layout
from steam_dinov2.core.codec import encode_jpeg, resize_banner  # noqa: E402
from steam_dinov2.core.manifest import MANIFEST_DTYPES, read_manifest  # noqa: E402
from steam_dinov2.core.net import SteamHttp  # noqa: E402
from steam_dinov2.steam.download import download_banners  # noqa: E402
from steam_dinov2.steam.fetch import fetch_banner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PLAIN = {i: f"Game {i}" for i in range(10, 18)}
EXPECTED = {  # app id -> (fault set-up, final status)
    100: (dict(hashed=True), "ok"),
    101: (dict(banner=None), "no_banner"),
    102: (dict(faults=["429"]), "ok"),
    103: (dict(faults=["500"]), "ok"),
    104: (dict(faults=["slow"]), "ok"),
    105: (dict(faults=["reset"]), "ok"),
    106: (dict(banner="gray"), "ok"),
    107: (dict(banner="cmyk"), "ok"),
    108: (dict(banner="png"), "ok"),
    200: (dict(broken="truncated"), "error"),
    201: (dict(broken="html"), "error"),
    202: (dict(broken="reset"), "error"),
    203: (dict(faults=["slow", "slow", "slow"]), "error"),
}


def _apps():
    apps = [App(i, n) for i, n in PLAIN.items()]
    return apps + [App(i, f"App {i}", **copy.deepcopy(kw)) for i, (kw, _) in EXPECTED.items()]


@pytest.fixture
def server():
    with FakeSteam(_apps(), slow_seconds=0.6) as s:
        yield s


@pytest.fixture
def http(server):
    return server.client(timeout=0.3, retries=2, backoff=0.01)


def _check_folder(data):
    """Every banner decodes; the manifest's ok rows are exactly the files."""
    on_disk = set(layout.banner_files(data))
    for app_id in on_disk:
        with Image.open(layout.banner_path(data, app_id)) as img:
            img.load()
            assert img.mode == "RGB" and img.format == "JPEG"
    df = read_manifest(data)
    assert set(df.loc[df.status == "ok", "app_id"]) == on_disk
    assert df["app_id"].is_unique
    assert not files.stale_temp_files(layout.banners_dir(data))
    return df


def test_download_survives_every_fault(tmp_path, server, http):
    ids = list(PLAIN) + list(EXPECTED) + [999]  # 999: unknown to the store
    report = download_banners(tmp_path, source=ids, http=http, workers=6, progress=False)
    df = _check_folder(tmp_path).set_index("app_id")
    want = {i: "ok" for i in PLAIN} | {i: s for i, (_, s) in EXPECTED.items()} | {999: "no_banner"}
    assert df["status"].to_dict() == want
    assert (report.ok, report.no_banner, report.error, report.skipped) == (16, 2, 4, 0)
    assert "16 ok, 2 no banner, 4 errors" in str(report)
    ok = df[df.status == "ok"]
    assert (ok.width == 256).all() and (ok.height == 384).all() and (ok.bytes > 0).all()
    assert (ok.orig_width == 600).all() and (ok.orig_height == 900).all()  # as served
    assert ok.loc[[106, 107, 108, 10], "orig_mode"].tolist() == ["L", "CMYK", "RGB", "RGB"]
    assert ok.loc[12, "name"] == "Game 12"
    assert "/100/" + server.apps[100].hash in ok.loc[100, "url"] and "?t=" in ok.loc[100, "url"]
    errors = df[df.status == "error"]["error"].to_dict()
    assert errors[200].startswith("truncated body")
    assert errors[201].startswith("not a decodable image") and "text/html" in errors[201]
    assert errors[202].startswith("connection error")
    assert errors[203].startswith("timeout")
    assert not any(layout.banner_path(tmp_path, i).exists() for i in (101, 200, 201, 202, 999))
    assert {c: str(t) for c, t in read_manifest(tmp_path).dtypes.items()} == MANIFEST_DTYPES


def test_retry_after_is_honoured(tmp_path, server, http, fake_clock):
    download_banners(tmp_path, source=[102], http=http, workers=1, progress=False)
    times = [t for t, p, _ in server.log if "/102/" in p]  # on the fake clock
    statuses = [s for _, p, s in server.log if "/102/" in p]
    assert statuses == [429, 200]
    assert times[1] - times[0] >= 0.3  # the server's Retry-After: 0.3


def test_rerun_skips_done_and_retries_errors(tmp_path, server, http):
    ids = list(PLAIN) + list(EXPECTED)
    download_banners(tmp_path, source=ids, http=http, workers=6, progress=False)
    server.reset_counts()
    for i in (200, 201, 202):
        server.apps[i].broken = None  # Steam healed
    report = download_banners(tmp_path, source=ids, http=http, workers=6, progress=False)
    assert set(server.hits) == {200, 201, 202, 203}  # errors only; done apps not refetched
    assert (report.ok, report.skipped) == (4, len(ids) - 4)
    assert (_check_folder(tmp_path).status == "ok").sum() == len(ids) - 1  # 101 has no banner


def test_names_come_from_getitems_when_the_source_has_none(tmp_path, server, http):
    download_banners(tmp_path, source=[10, 11, 101], http=http, progress=False)
    names = read_manifest(tmp_path).set_index("app_id")["name"].to_dict()
    assert names == {10: "Game 10", 11: "Game 11", 101: "App 101"}


def test_store_source_keeps_the_key_out_of_every_file(tmp_path, server, http, caplog):
    caplog.set_level("DEBUG")
    download_banners(tmp_path, source="store", api_key=KEY, limit=5, http=http, progress=False)
    assert len(read_manifest(tmp_path)) == 5
    for f in tmp_path.rglob("*"):
        assert not f.is_file() or KEY.encode() not in f.read_bytes()
    assert KEY not in caplog.text


def test_sizes_and_resize_on_rerun(tmp_path, server, http):
    download_banners(tmp_path, source=[10], size="original", http=http, progress=False)
    assert Image.open(layout.banner_path(tmp_path, 10)).size == (600, 900)
    download_banners(tmp_path, source=[10], size="256x384", http=http, progress=False)
    assert Image.open(layout.banner_path(tmp_path, 10)).size == (256, 384)
    assert server.hits[10] == 2
    with pytest.raises(ValueError, match="available: 224x336, 256x384, original"):
        download_banners(tmp_path, source=[10], size="300x450", http=http)


def test_fetch_banner_matches_the_collection(tmp_path, server, http):
    download_banners(tmp_path, source=[11, 100], http=http, progress=False)
    for app_id in (11, 100):  # plain and hashed path
        live = fetch_banner(app_id, http=http)
        assert live.size == (256, 384) and live.mode == "RGB"  # DEFAULT_SIZE
        assert encode_jpeg(live) == layout.banner_path(tmp_path, app_id).read_bytes()
    with pytest.raises(LookupError, match="no library banner"):
        fetch_banner(101, http=http)


@pytest.mark.parametrize("fmt", ["rgb", "gray", "cmyk", "png"])
def test_resize_banner_against_full_decode(fmt):
    raw = encode_banner(7, fmt)
    img = resize_banner(raw, size="224x336")
    assert img.size == (224, 336) and img.mode == "RGB"
    # Reference without JPEG draft mode: full decode, then the same bicubic resize.
    ref = Image.open(io.BytesIO(raw)).convert("RGB").resize((224, 336), Image.Resampling.BICUBIC)
    diff = np.abs(np.asarray(img, np.int16) - np.asarray(ref, np.int16))
    assert diff.mean() < 2.0
    assert resize_banner(Image.open(io.BytesIO(raw)), size="original").size == (600, 900)
    with pytest.raises(ValueError, match="not a decodable image"):
        resize_banner(raw[: len(raw) // 3])


def test_sigkill_mid_download_then_resume(tmp_path):
    apps = [App(i, f"Game {i}") for i in range(1000, 1240)]
    with FakeSteam(apps, latency=0.02, banner_variants=16) as server:
        child = (
            "import sys\n"
            "from steam_dinov2.steam.download import download_banners\n"
            "from steam_dinov2.core.net import SteamHttp\n"
            f"http = SteamHttp(api_base={server.base!r}, assets_base={server.assets_base!r})\n"
            f"download_banners({str(tmp_path)!r}, source=list(range(1000, 1240)), workers=4,"
            " http=http, progress=False)\n"
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-c", child], env=env, cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len(layout.banner_files(tmp_path)) >= 60:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the child finished before it was killed"
        before = set(layout.banner_files(tmp_path))
        assert 60 <= len(before) < 240
        for app_id in before:  # nothing half-written, whatever the moment of the kill
            Image.open(layout.banner_path(tmp_path, app_id)).load()
        read_manifest(tmp_path)  # the checkpointed manifest, if any, is whole too
        server.reset_counts()
        http = SteamHttp(api_base=server.base, assets_base=server.assets_base)
        report = download_banners(
            tmp_path, source=list(range(1000, 1240)), workers=4, http=http, progress=False
        )
        assert not before & set(server.hits)  # finished files were not fetched again
        assert report.ok == 240 - len(before) and report.error == 0
        df = _check_folder(tmp_path)
        assert len(df) == 240 and (df.status == "ok").all()
        assert df.set_index("app_id").loc[1000, "name"] == "Game 1000"


def test_cli_download_with_bases_from_env(tmp_path, server, monkeypatch, capsys):
    from steam_dinov2.cli import main

    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    (tmp_path / "ids.txt").write_text("10\n11\n101\n")
    data = tmp_path / "data"
    argv = ["download", "--data", str(data), "--source", f"file:{tmp_path / 'ids.txt'}"]
    assert main([*argv, "--download-workers", "2", "--size", "256x384"]) == 0
    assert "2 ok, 1 no banner, 0 errors" in capsys.readouterr().out
    assert Image.open(layout.banner_path(data, 11)).size == (256, 384)
    assert main(["download", "--data", str(data), "--source", "ISteamApps"]) == 2
    assert "November 2025" in capsys.readouterr().err


def test_resize_banner_converts_like_the_embedder():
    # Transparent pixels become white and 16-bit greys are scaled, as codec.to_rgb does.
    rgba = io.BytesIO()
    Image.new("RGBA", (600, 900), (10, 20, 30, 0)).save(rgba, "PNG")
    assert np.asarray(resize_banner(rgba.getvalue()))[0, 0].tolist() == [255, 255, 255]
    grey = io.BytesIO()
    Image.fromarray(np.full((900, 600), 60300, np.uint16)).save(grey, "PNG")
    out = resize_banner(grey.getvalue())
    assert out.size == (256, 384) and np.asarray(out)[0, 0].tolist() == [235, 235, 235]


def test_a_manifest_from_before_the_original_size_columns_reads(tmp_path):
    import pandas as pd

    old = pd.DataFrame({"app_id": [5], "name": ["Old"], "status": ["ok"], "width": [224]})
    old.to_parquet(layout.manifest_path(tmp_path))
    df = read_manifest(tmp_path)
    assert list(df.columns) == list(MANIFEST_DTYPES)
    assert df.loc[0, ["orig_width", "orig_height", "orig_mode"]].tolist() == [0, 0, ""]
