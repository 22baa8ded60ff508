"""The Browser's cluster pages and "Why?" buttons, and the comparison figure's explain option."""

import json
import shutil

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import make_banner

from steam_dinov2 import embed_folder
from steam_dinov2.browse.browser import Browser
from steam_dinov2.views.compare import plot_comparison
from steam_dinov2.views.explain import explain_match
from steam_dinov2.views.map import cluster_members, map_catalog

matplotlib.use("Agg")
SETTING = "dinov2_vits14__crop256__cls__random"


@pytest.fixture(scope="module")
def data(tmp_path_factory, vits14):
    data = tmp_path_factory.mktemp("clusters") / "data"
    (data / "banners").mkdir(parents=True)
    for i in range(1, 17):
        make_banner(i).save(data / "banners" / f"{i * 10}.jpg")
    names = {i * 10: f"Game {i}" for i in range(1, 17)} | {20: "<b>Bold</b> & Co"}
    pd.DataFrame({"app_id": list(names), "name": list(names.values()), "status": "ok"}).to_parquet(
        data / "manifest.parquet"
    )
    embed_folder(data / "banners", data, model=vits14, progress=False)
    return data


def test_pick_a_cluster_and_page_through_it(data):
    b = Browser(data, k=3)
    b.cluster_page_size = 3
    b.clusters.click()
    table = map_catalog(data, SETTING)  # what the button computed (now cached)
    assert [v for _, v in b.cluster.options] == sorted(set(table["cluster"]))
    biggest = cluster_members(table, 0)
    b.cluster.value = 0
    pages = [biggest[i : i + 3] for i in range(0, len(biggest), 3)]
    assert len(pages) >= 2
    assert [t.app_id for t in b.tiles] == pages[0]
    b.cluster_next.click()
    assert [t.app_id for t in b.tiles] == pages[1]
    for _ in pages:
        b.cluster_next.click()  # stops at the last page
    assert [t.app_id for t in b.tiles] == pages[-1]
    b.cluster_prev.click()
    assert [t.app_id for t in b.tiles] == (pages[-2])
    b.cluster.value = 1
    assert [t.app_id for t in b.tiles] == cluster_members(table, 1)[:3]
    b.cluster.value = 0
    b.cluster_prev.click()
    assert [t.app_id for t in b.tiles] == pages[0]
    b.tiles[0].button.click()  # "Similar" from a cluster page opens that game
    assert b.query_tile.app_id == pages[0][0]


def test_cluster_captions_escape_names(data):
    b = Browser(data)
    b.clusters.click()
    table = map_catalog(data, SETTING)
    b.cluster.value = int(table.loc[table["id"] == 20, "cluster"].iloc[0])
    tile = next(t for t in b.tiles if t.app_id == 20)
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in tile.children[1].value


def test_why_button_explains_a_neighbor(data, vits14):
    b = Browser(data, k=3, explain_with=True)
    b.show(30)
    assert b.explained.layout.display == "none"
    b.tiles[0].why.click()
    assert bytes(b.explained.value).startswith(b"\x89PNG") and b.explained.layout.display == ""
    assert "why" in b.status.value


def test_why_not_asked_for_or_with_an_untrusted_model_says_so(data):
    b = Browser(data, k=3)
    b.show(30)
    assert not any(hasattr(t, "why") for t in b.tiles)  # not asked for: no button
    with pytest.raises(ValueError, match="explain_with=True"):
        b.explain(30, b.tiles[0].app_id)
    # A cache whose meta.json names a model the user never chose: Why? loads nothing.
    planted = data / "embeddings" / "zz_other_model"
    shutil.copytree(data / "embeddings" / SETTING, planted)
    meta = json.loads((planted / "meta.json").read_text())
    (planted / "meta.json").write_text(json.dumps({**meta, "model": "vit_small_patch14_dinov2"}))
    try:
        b = Browser(data, k=3, settings=["zz_other_model"], explain_with=True)
        b.show(30)
        b.tiles[0].why.click()
        assert "neither in the registry nor the one you gave" in b.status.value
        assert b._models == {} and b.explained.layout.display == "none"
    finally:
        shutil.rmtree(planted)


def test_comparison_explains_each_neighbor(data, vits14):
    from steam_dinov2 import find_neighbors, load_embeddings

    fig = plot_comparison(
        data,
        30,
        [SETTING],
        k=2,
        explain=True,
        progress=False,
    )
    # the grid's banner, then the heatmap's banner, veil, unveiled crop and heat in every cell
    assert [len(ax.images) for ax in fig.axes[:3]] == [5, 5, 5]
    first = find_neighbors(load_embeddings(data, SETTING), 30, k=1)["id"].iloc[0]
    banners = data / "banners"
    want = explain_match(banners / "30.jpg", banners / f"{first}.jpg", vits14)
    np.testing.assert_allclose(fig.axes[1].images[-1].get_array(), want.heat_b, atol=1e-5)
    np.testing.assert_allclose(fig.axes[0].images[-1].get_array(), want.heat_a, atol=1e-5)
