"""The manifest's answer to "which images are in the collection"."""

import logging

import pandas as pd
from synthetic import make_banner

from steam_dinov2.core import layout
from steam_dinov2.core.manifest import collection_images, write_manifest


def _banner(data, app_id: int) -> None:
    path = layout.banner_path(data, app_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_banner(app_id, (60, 90)).save(path)


def test_collection_images_are_the_ok_rows_on_disk(tmp_path):
    for app_id in (30, 10, 20, 40):
        _banner(tmp_path, app_id)
    (layout.banners_dir(tmp_path) / "notes.jpg").write_bytes(b"x")  # not a banner name
    assert list(collection_images(tmp_path)) == [10, 20, 30, 40]  # no manifest: every banner
    rows = pd.DataFrame(
        {"app_id": [10, 20, 30, 50], "status": ["ok", "error", "ok", "ok"], "name": "g"}
    )
    write_manifest(tmp_path, rows)
    found = collection_images(tmp_path)  # 20 is an error row, 40 unlisted, 50 has no file
    assert found == {10: layout.banner_path(tmp_path, 10), 30: layout.banner_path(tmp_path, 30)}


def test_what_is_left_out_of_the_collection_is_said_once_with_the_fix(tmp_path, caplog):
    for app_id in (10, 20, 999, 998):
        _banner(tmp_path, app_id)
    (layout.banners_dir(tmp_path) / "notanid.jpg").write_bytes(b"x")
    (layout.banners_dir(tmp_path) / "cover.PNG").write_bytes(b"x")
    (layout.banners_dir(tmp_path) / "README.md").write_text("notes")  # not an image: not ours
    rows = {"app_id": [10, 20, 30], "status": ["ok", "error", "ok"], "name": "g"}
    write_manifest(tmp_path, pd.DataFrame(rows))
    with caplog.at_level(logging.WARNING):
        assert list(collection_images(tmp_path)) == [10]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages  # one per kind, each with a count and the names
    bad_names, missing, unlisted = messages
    assert bad_names.startswith(f"skipped 2 files in {layout.banners_dir(tmp_path)}: cover.PNG: ")
    assert "notanid.jpg: not named {app_id}.jpg (own images: `import-folder`" in bad_names
    (layout.banners_dir(tmp_path) / "cover.PNG").unlink()
    caplog.clear()
    layout.banner_files(tmp_path)
    assert f"skipped 1 file in {layout.banners_dir(tmp_path)}: notanid.jpg" in caplog.text
    assert missing == "manifest lists 1 banner as ok whose file is missing: 30"
    assert unlisted.startswith("2 banners in ") and "without a manifest row" in unlisted
    assert unlisted.endswith(
        "left out of the collection: 998.jpg, 999.jpg; rerun `download` or `import-snapshot`: "
        "they add a row for each banner they find"
    )


def test_banner_member_names_round_trip():
    assert layout.banner_member(730) == "banners/730.jpg"
    assert layout.banner_member_stem(layout.banner_member(730)) == "730"
    assert layout.banner_member_stem("banners/x/1.jpg") is None
    assert layout.banner_member_stem("images/00000/000000001.jpg") is None
