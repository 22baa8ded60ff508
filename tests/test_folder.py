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
