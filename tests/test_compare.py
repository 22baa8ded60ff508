"""compare.plot_games: the `run` preview."""

import shutil

from steam_dinov2 import embed_folder
from steam_dinov2.compare import plot_games


def test_preview_shows_k_neighbours_and_names_its_setting(tmp_path, banner_dir, vits14):
    data = tmp_path / "data"
    shutil.copytree(banner_dir, data / "banners")
    emb = embed_folder(data / "banners", data, model=vits14, num_workers=0, progress=False)
    fig = plot_games(data, emb, ["30", "40"], k=3, title=True)
    assert len(fig.axes) == 2 * (3 + 1)  # per row: the query, then k neighbours
    assert fig._suptitle.get_text() == f"{emb.setting}: 3 nearest banners"
    assert plot_games(data, emb, ["30"], k=2)._suptitle is None  # untitled unless asked
