"""compare.plot_games (the `run` preview) and the rows plot_comparison accepts."""

import shutil

import pytest

from steam_dinov2 import embed_folder
from steam_dinov2.embedding.setting import Setting, as_setting
from steam_dinov2.views.compare import plot_comparison, plot_games


def test_preview_shows_k_neighbors_and_names_its_setting(tmp_path, banner_dir, vits14):
    data = tmp_path / "data"
    shutil.copytree(banner_dir, data / "banners")
    emb = embed_folder(data / "banners", data, model=vits14, num_workers=0, progress=False)
    fig = plot_games(data, emb, [30, 40], k=3, title=True)
    assert len(fig.axes) == 2 * (3 + 1)  # per row: the query, then k neighbours
    assert fig._suptitle.get_text() == f"{emb.setting}: 3 nearest banners"
    assert plot_games(data, emb, [30], k=2)._suptitle is None  # untitled unless asked


def test_comparison_rows_are_settings_names_or_model_preset_pooling(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read: only hashed")
    mine = Setting.create("dinov2_vits14", "full", "gem", weights=weights)
    assert as_setting(mine) is mine and as_setting(mine).weights_file == str(weights)
    named = as_setting("dino_vitb16__crop224__cls__random")
    assert (named.model, named.preset, named.pooling, named.weights) == (
        "dino_vitb16",
        "crop224",
        "cls",
        "random",
    )
    assert as_setting("dinov2_vits14:full:gem") == Setting("dinov2_vits14", "full", "gem")
    hub = as_setting("hub:owner/repo:entry:crop256:cls")  # a hub model keeps its own ':'
    assert (hub.model, hub.preset, hub.pooling) == ("hub:owner/repo:entry", "crop256", "cls")
    for bad in ["dinov2_vits14", "dinov2_vits14::cls", ("dinov2_vits14", "crop256", "cls"), 3]:
        with pytest.raises(ValueError, match="model:preset:pooling"):
            as_setting(bad)


def test_a_comparison_without_settings_is_refused(tmp_path):
    with pytest.raises(ValueError, match="^no settings to compare: pass at least one Setting"):
        plot_comparison(tmp_path / "data", 620, [])


def test_one_setting_name_is_one_row_not_its_characters(tmp_path, banner_dir, vits14):
    data = tmp_path / "data"
    shutil.copytree(banner_dir, data / "banners")
    emb = embed_folder(data / "banners", data, model=vits14, num_workers=0, progress=False)
    fig = plot_comparison(data, 30, emb.setting, k=2, progress=False)  # the cache is reused
    assert len(fig.axes) == 2 + 1


def test_grid_titles_name_the_studio_publisher_where_it_differs_and_top_tags(
    tmp_path, banner_dir, vits14
):
    import pandas as pd

    from steam_dinov2 import plot_neighbors
    from steam_dinov2.core.manifest import write_manifest
    from steam_dinov2.steam.metadata import write_metadata

    data = tmp_path / "data"
    shutil.copytree(banner_dir, data / "banners")
    ids = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    write_manifest(data, pd.DataFrame({"app_id": ids, "name": "Game", "status": "ok"}))
    write_metadata(
        data,
        pd.DataFrame(
            {
                "app_id": [30, 90],
                "developers": [["Maker $_$"], ["Copier"]],  # a "$" is drawn, not mathtext
                "publishers": [["maker $_$"], ["Big Label"]],
                "franchises": [[], []],
                "tagids": [[1, 2, 3], [4]],
                "tag_weights": [[3.0, 2.0, 1.0], [1.0]],
                "updated_at": pd.Timestamp.now("UTC"),
            }
        ),
    )
    pd.DataFrame({"tagid": [1, 2, 3, 4], "name": ["Puzzle", "Retro", "Cute", "Action"]}).to_parquet(
        data / "tag_names.parquet"
    )
    emb = embed_folder(data / "banners", data, model=vits14, num_workers=0, progress=False)
    titles = [ax.get_title() for ax in plot_neighbors(data, emb, 30, k=2).axes]
    assert titles[0].split("\n")[2] == r"Maker \$_\$ · Puzzle, Retro"  # same publisher: once
    assert titles[1].split("\n")[1] == "Copier (Big Label) · Action"  # 90, the copy, first
    row = [ax.get_title() for ax in plot_games(data, emb, [30], k=1).axes]
    assert "Copier (Big Label)" in row[1] and "Game (30)" in row[0]  # cut to the cell
