"""The manifest's answer to "which images are in the collection"."""

import pandas as pd
from synthetic import make_banner

from steam_dinov2 import layout
from steam_dinov2.manifest import collection_images, write_manifest


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


def test_banner_member_names_round_trip():
    assert layout.banner_member(730) == "banners/730.jpg"
    assert layout.banner_member_stem(layout.banner_member(730)) == "730"
    assert layout.banner_member_stem("banners/x/1.jpg") is None
    assert layout.banner_member_stem("images/00000/000000001.jpg") is None
