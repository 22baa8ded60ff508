"""import_folder: any folder of images becomes a collection the later stages work on."""

import logging

import pandas as pd
import pytest
from conftest import make_banner
from PIL import Image

from steam_dinov2.cli import main
from steam_dinov2.collection.folder import import_folder, own_image_id
from steam_dinov2.core import files, layout
from steam_dinov2.core.codec import DEFAULT_SIZE, parse_size
from steam_dinov2.core.files import OWN_ID_BASE, is_steam_id


@pytest.fixture
def photos(tmp_path):
    """Five images of mixed formats and sizes (one in a subfolder), a hidden one and a broken one."""
    src = tmp_path / "photos"
    (src / "sketches").mkdir(parents=True)
    make_banner(1, (640, 480)).save(src / "cat on a mat.jpg")
    make_banner(2, (300, 300)).convert("L").save(src / "dog.png")
    make_banner(3, (500, 800)).convert("RGBA").save(src / "sketches" / "bird.webp")
    make_banner(4).save(src / "sketches" / "dog.jpg")  # same stem as dog.png: another image
    make_banner(5).save(src / "fish.jpeg")
    make_banner(6).save(src / ".hidden.jpg")
    (src / "notes.jpg").write_bytes(b"not an image")
    return src


def test_ids_are_stable_above_steam_and_names_come_from_file_names(photos, tmp_path):
    data = tmp_path / "data"
    report = import_folder(photos, data, progress=False)
    assert len(report.imported) == 5 and list(report.skipped) == ["notes.jpg"]
    manifest = pd.read_parquet(layout.manifest_path(data))
    names = dict(zip(manifest.app_id, manifest.name))
    assert names[own_image_id("cat on a mat.jpg")] == "cat on a mat"
    assert names[own_image_id("sketches/dog.jpg")] == names[own_image_id("dog.png")] == "dog"
    assert all(a >= OWN_ID_BASE and not is_steam_id(a) for a in manifest.app_id)
    assert sorted(layout.banner_files(data)) == sorted(manifest.app_id)
    for path in layout.banner_files(data).values():
        with Image.open(path) as img:  # saved like a downloaded banner: RGB, the default size
            assert img.mode == "RGB" and min(img.size) == min(parse_size(DEFAULT_SIZE))
    # A rerun decodes nothing and gives the same ids; a Steam id is still a Steam id.
    again = import_folder(photos, data, progress=False)
    assert again.imported == [] and sorted(again.unchanged) == sorted(report.imported)
    assert is_steam_id(620) and is_steam_id("4294967295") and not is_steam_id("x")


def test_a_changed_image_is_imported_again_and_other_rows_are_kept(photos, tmp_path):
    data = tmp_path / "data"
    files.write_bytes_atomic(layout.banner_path(data, 620), (photos / "fish.jpeg").read_bytes())
    pd.DataFrame({"app_id": [620], "name": ["Portal 2"], "status": ["ok"]}).to_parquet(
        layout.manifest_path(data)
    )
    import_folder(photos, data, progress=False)
    make_banner(9).save(photos / "fish.jpeg")
    report = import_folder(photos, data, progress=False)
    assert report.imported == [own_image_id("fish.jpeg")]
    names = dict(pd.read_parquet(layout.manifest_path(data))[["app_id", "name"]].values)
    assert names[620] == "Portal 2" and len(names) == 6


def test_orig_columns_hold_the_image_as_found_and_the_aspect_is_kept(photos, tmp_path):
    data = tmp_path / "data"
    import_folder(photos, data, progress=False)
    rows = pd.read_parquet(layout.manifest_path(data)).set_index("app_id")
    with Image.open(photos / "sketches" / "bird.webp") as img:
        bird_mode = img.mode  # WebP stores an opaque RGBA image as RGB
    expected = {  # the sizes the fixture made, and the sizes saved
        "cat on a mat.jpg": (640, 480, "RGB", (341, 256)),
        "dog.png": (300, 300, "L", (256, 256)),
        "sketches/bird.webp": (500, 800, bird_mode, (256, 410)),
    }
    for rel, (w, h, mode, saved) in expected.items():
        row = rows.loc[own_image_id(rel)]
        assert (row.orig_width, row.orig_height, row.orig_mode) == (w, h, mode)
        assert (row.width, row.height) == saved  # shorter side 256, aspect kept


def test_a_damaged_manifest_is_rebuilt_with_a_warning(photos, tmp_path, caplog, capsys):
    data = tmp_path / "data"
    import_folder(photos, data, progress=False)
    files.write_bytes_atomic(layout.banner_path(data, 620), (photos / "fish.jpeg").read_bytes())
    layout.manifest_path(data).write_bytes(b"PAR1 not a manifest")
    with caplog.at_level(logging.WARNING):
        assert main(["import-folder", str(photos), "--data", str(data)]) == 0
    assert "5 images imported" in capsys.readouterr().out  # all again: the names come back
    warning = caplog.text
    assert "damaged manifest" in warning and "import-folder rebuilds it from" in warning
    assert "rerun `download`" not in warning
    manifest = pd.read_parquet(layout.manifest_path(data)).set_index("app_id")
    assert manifest.loc[own_image_id("cat on a mat.jpg"), "name"] == "cat on a mat"
    assert manifest.loc[620, "status"] == "ok" and manifest.loc[620, "name"] == ""  # kept
    assert sorted(manifest.index) == sorted(layout.banner_files(data))


def test_not_a_folder_or_no_images_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="image folder not found"):
        import_folder(tmp_path / "missing", tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        import_folder(tmp_path / "empty", tmp_path / "data")


def test_cli_import_folder_then_embed_match_and_audit(photos, tmp_path, capsys, caplog):
    data = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        assert main(["import-folder", str(photos), "--data", str(data)]) == 0
    assert "5 images imported" in capsys.readouterr().out
    assert not [r for r in caplog.records if "images imported" in r.getMessage()]  # said once
    assert main(["import-folder", str(tmp_path / "nope"), "--data", str(data)]) == 2
    common = ["--data", str(data), "--no-pretrained", "--model", "dinov2_vits14"]
    assert main(["audit", *common, "--issue-types", "dark", "light"]) == 0
    issues = pd.read_parquet(layout.issues_path(data))
    assert len(issues) == 5  # every own image audited, none skipped for its id
    assert main(["embed", *common]) == 0
    assert main(["match", *common, "--k", "2"]) == 0
    setting = layout.setting_name("dinov2_vits14", "crop256", "cls", weights_tag="random")
    table = pd.read_parquet(layout.neighbors_path(data, setting))
    assert set(table.query_id) == set(issues.app_id)


def test_browser_tiles_link_to_the_store_only_for_steam_ids(photos, tmp_path, vits14):
    from steam_dinov2.browse.browser import Browser
    from steam_dinov2.core.manifest import read_manifest, write_manifest
    from steam_dinov2.embedding.embed import embed_folder

    data = tmp_path / "data"
    import_folder(photos, data, progress=False)
    make_banner(7).save(layout.banner_path(data, 620))  # one Steam game among the own images
    write_manifest(
        data, pd.concat([read_manifest(data), pd.DataFrame({"app_id": [620], "status": "ok"})])
    )
    embed_folder(layout.banners_dir(data), data, model=vits14, progress=False)
    browser = Browser(data, k=5)
    browser.show(own_image_id("fish.jpeg"))
    links = {t.app_id: t.children[1].value for t in browser.tiles}
    assert "store.steampowered.com/app/620" in links[620]
    own = [html for i, html in links.items() if i != 620]
    assert len(own) == 4 and not any("store.steampowered.com" in h for h in own)


def test_workers_means_decoding_processes_everywhere(tmp_path, capsys):
    from steam_dinov2.cli import build_parser

    run = build_parser().parse_args(
        ["run", "--data", "d", "--workers", "1", "--download-workers", "3"]
    )
    assert (run.workers, run.download_workers) == (1, 3)
    download = build_parser().parse_args(["download", "--data", "d", "--download-workers", "3"])
    assert download.download_workers == 3
    with pytest.raises(SystemExit):  # download has no decoding processes: no --workers
        build_parser().parse_args(["download", "--data", "d", "--workers", "3"])
    assert "--workers" in capsys.readouterr().err


def test_import_snapshot_of_a_plain_image_folder_points_to_import_folder(photos, tmp_path):
    from steam_dinov2.collection.snapshot import import_snapshot

    with pytest.raises(ValueError, match="your own images use import-folder"):
        import_snapshot(photos, tmp_path / "data")


# --- issue 17: import-folder holds like download ---------------------------------------------


def test_import_waits_for_nobody_while_another_process_holds_the_lock(photos, tmp_path, capsys):
    import fcntl
    import os

    data = tmp_path / "data"
    data.mkdir()
    fd = os.open(layout.lock_path(data), os.O_RDWR | os.O_CREAT)  # another open file: as another
    fcntl.flock(fd, fcntl.LOCK_EX)  # process's `download` holds it
    try:
        with pytest.raises(files.FolderLocked, match="is in use by another process"):
            import_folder(photos, data, progress=False)
        assert main(["import-folder", str(photos), "--data", str(data)]) == 2
        assert "in use by another process" in capsys.readouterr().err
    finally:
        os.close(fd)
    assert not layout.manifest_path(data).exists() and not layout.banners_dir(data).exists()


def test_names_that_are_not_utf8_are_skipped_and_reported(photos, tmp_path):
    import os

    src = os.fsencode(photos)
    make_banner(7).save(os.path.join(src, b"caf\xe9.jpg").decode("utf-8", "surrogateescape"))
    os.mkdir(os.path.join(src, b"f\xffolder"))
    make_banner(8).save(
        os.path.join(src, b"f\xffolder", b"ok.jpg").decode("utf-8", "surrogateescape")
    )
    report = import_folder(photos, tmp_path / "data", progress=False)
    assert len(report.imported) == 5
    assert report.skipped == {
        "caf\ufffd.jpg": "name is not valid UTF-8 (rename it)",
        "f\ufffdolder": "name is not valid UTF-8 (rename it)",
        "notes.jpg": "not a decodable image: unknown format",
    }


def test_the_data_folder_inside_the_imported_folder_is_never_imported(photos, tmp_path):
    data = photos / "collection"
    first = import_folder(photos, data, progress=False)
    again = import_folder(photos, data, progress=False)
    assert len(first.imported) == len(again.unchanged) == 5 and again.imported == []
    assert again.skipped["collection"] == "the data folder: never imported into itself"
    assert len(layout.banner_files(data)) == 5
    with pytest.raises(ValueError, match="is inside the data folder"):
        import_folder(data / "banners", data, progress=False)
    with pytest.raises(ValueError, match="is inside the data folder"):
        import_folder(data, data, progress=False)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import ImageOps

    src = tmp_path / "phone"
    src.mkdir()
    # Stored landscape, left half red and right half blue; the tag says: turn 90 degrees
    # clockwise to show it (a phone held upright). Upright, red is on top.
    img = Image.new("RGB", (600, 400), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 300, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(src / "photo.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(src / "photo.jpg") as stored:
        upright = ImageOps.exif_transpose(stored)
    data = tmp_path / "data"
    import_folder(src, data, progress=False)
    (path,) = layout.banner_files(data).values()
    with Image.open(path) as banner:
        assert banner.size == (256, 384) and upright.size == (400, 600)
        top, bottom = banner.getpixel((128, 10)), banner.getpixel((128, 374))
    assert upright.getpixel((200, 10))[0] > 200 and top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_symlinks_to_files_and_folders_are_never_followed(photos, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    make_banner(9).save(outside / "private.jpg")
    (photos / "passwd.jpg").symlink_to("/etc/passwd")
    (photos / "inside.jpg").symlink_to(photos / "fish.jpeg")
    (photos / "elsewhere").symlink_to(outside)
    (photos / "again").symlink_to(photos / "sketches")
    report = import_folder(photos, tmp_path / "data", progress=False)
    link = "symlink (not followed: import the folder it leads to instead)"
    assert {r: w for r, w in report.skipped.items() if w == link} == {
        "passwd.jpg": link,
        "inside.jpg": link,
        "elsewhere": link,
        "again": link,
    }
    assert len(report.imported) == 5


def test_formats_that_cannot_be_read_are_skipped_with_the_reason(photos, tmp_path):
    from PIL import features

    (photos / "shot.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (photos / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    if features.check("avif"):
        make_banner(9).save(photos / "new.avif")
    else:
        (photos / "new.avif").write_bytes(b"\x00\x00\x00\x1cftypavif")
    report = import_folder(photos, tmp_path / "data", progress=False)
    assert report.skipped["shot.heic"] == "HEIC cannot be read here: convert it to JPEG or PNG"
    assert report.skipped["logo.svg"] == (
        "SVG (a drawing, not pixels) cannot be read here: convert it to JPEG or PNG"
    )
    if features.check("avif"):  # Pillow reads it here: an image like any other
        assert len(report.imported) == 6 and "new.avif" not in report.skipped
    else:
        assert report.skipped["new.avif"].startswith("AVIF cannot be read here")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.heic").write_bytes(b"x")
    with pytest.raises(ValueError, match="no images in .*; a.heic: HEIC cannot be read here"):
        import_folder(tmp_path / "only", tmp_path / "data2", progress=False)


def test_an_empty_source_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_banner(1).save(tmp_path / "here.jpg")  # what "" would import: the current folder
    assert main(["import-folder", "", "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err == "error: no image folder given (an empty path would be the current folder)\n"
    assert not (tmp_path / "data").exists()


_KILLED_IMPORT = """
import os, signal, sys
from steam_dinov2.collection import folder
folder._CHECKPOINT = 5
real, calls = folder._read, [0]
def read(path, size):
    calls[0] += 1
    if calls[0] == 23:  # 22 images saved, the 23rd being read: SIGKILL, no cleanup at all
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, size)
folder._read = read
folder.import_folder(sys.argv[1], sys.argv[2], progress=False)
"""


def test_a_killed_import_keeps_its_checkpoints(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    src = tmp_path / "many"
    src.mkdir()
    for i in range(24):
        make_banner(i % 9 + 1, (40 + i, 60)).save(src / f"{i:02d}.png")
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, "-c", _KILLED_IMPORT, str(src), str(data)]
    assert subprocess.run(argv, env=env).returncode == -signal.SIGKILL
    kept = pd.read_parquet(layout.manifest_path(data))
    assert sorted(kept["name"]) == [f"{i:02d}" for i in range(20)]  # 4 checkpoints of 5
    again = import_folder(src, data, progress=False)
    assert (len(again.unchanged), len(again.imported)) == (20, 4)


def test_a_full_disk_ends_the_import_with_one_line(photos, tmp_path, monkeypatch, capsys):
    import errno

    real, writes = files.write_bytes_atomic, []

    def full(path, payload):  # the device fills up after two banners (no full disk here)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        writes.append(path)
        real(path, payload)

    monkeypatch.setattr(files, "write_bytes_atomic", full)
    data = tmp_path / "data"
    assert main(["import-folder", str(photos), "--data", str(data)]) == 2
    out, err = capsys.readouterr()
    lines = [line.split("\r")[-1] for line in err.strip().split("\n")]  # the bar's \r redraws
    lines = [line for line in lines if not line.startswith("import folder")]
    assert out == "" and len(lines) == 1
    assert lines[0].startswith("error: ") and "No space left on device; the disk is full" in err
    assert len(pd.read_parquet(layout.manifest_path(data))) == 2  # the two saved are kept


def test_a_data_path_that_is_a_file_is_one_line(photos, tmp_path, capsys):
    (tmp_path / "data").write_text("a file")
    assert main(["import-folder", str(photos), "--data", str(tmp_path / "data")]) == 2
    out, err = capsys.readouterr()
    assert (
        out == ""
        and err
        == f"error: data folder {tmp_path / 'data'} is not a folder: choose a folder for --data\n"
    )
    assert main(["import-folder", str(photos), "--data", str(tmp_path / "data" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory; a part of this path is a file" in err
