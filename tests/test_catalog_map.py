import numpy as np
import pandas as pd
import pytest
from conftest import make_banner
from PIL import ImageEnhance

from steam_dinov2 import embed_folder, embed_images
from steam_dinov2.core import layout
from steam_dinov2.core.manifest import read_manifest, write_manifest
from steam_dinov2.embedding.setting import Setting
from steam_dinov2.views import map as catalog_map
from steam_dinov2.views.map import (
    cluster_members,
    cluster_vectors,
    compute_layout,
    describe_clusters,
    map_catalog,
    plot_catalog_map,
    plot_cluster,
    sample_for_thumbnails,
)

SETTING = "dinov2_vits14__crop256__cls__random"


def _copies(seed: int, n: int = 4) -> list:
    """n altered copies of one banner: resized, brighter, recompressed (as re-uploads are)."""
    base = make_banner(seed)
    out = []
    for v in range(n):
        img = base.resize((216 - 8 * v, 324 - 12 * v)).resize((224, 336))
        out.append(ImageEnhance.Brightness(img).enhance(1 + 0.05 * v))
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory, vits14):
    """Embeddings (random ViT-S/14) of 3 groups of 4 copies, then 6 unrelated banners."""
    folder = tmp_path_factory.mktemp("planted")
    paths, groups = [], []
    for g in range(3):
        for v, img in enumerate(_copies(100 + g)):
            paths.append(folder / f"{g}_{v}.jpg")
            img.save(paths[-1], quality=70 + 5 * v)
            groups.append(g)
    for s in range(6):
        paths.append(folder / f"single{s}.jpg")
        make_banner(200 + s).save(paths[-1])
        groups.append(-1)
    vectors, _, _ = embed_images(paths, vits14, progress=False)
    return vectors, np.array(groups)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_groups_are_the_clusters(planted, seed):
    vectors, groups = planted
    labels, centrality = cluster_vectors(vectors[:12], 3, seed=seed)
    # Each group is one cluster and each cluster one group, whatever the numbering.
    assert sorted(map(tuple, pd.crosstab(groups[:12], labels).to_numpy())) == sorted(
        map(tuple, 4 * np.eye(3, dtype=int))
    )
    assert np.bincount(labels).tolist() == [4, 4, 4]
    assert (centrality > 0.9).all()  # copies sit near their centroid


def test_planted_groups_stay_whole_among_other_banners(planted):
    vectors, groups = planted
    labels, _ = cluster_vectors(vectors, 5, seed=0)
    for g in range(3):
        assert len(set(labels[groups == g])) == 1, labels
    assert len(set(labels[groups >= 0])) == 3  # and no two groups share a cluster
    sizes = np.bincount(labels)
    assert (np.diff(sizes) <= 0).all()  # numbered by size, 0 the largest


@pytest.mark.parametrize("method", ["opentsne", "sklearn"])
def test_layout_is_deterministic_with_a_seed(method):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 384)).astype(np.float32)
    a = compute_layout(x, method=method, seed=3, threads=1)
    b = compute_layout(x, method=method, seed=3, threads=1)
    assert a.shape == (60, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a.min() == 0 and a.max() == 1  # scaled into the unit square, aspect kept
    if method == "opentsne":  # scikit-learn's PCA start uses no randomness at all
        assert not np.array_equal(a, compute_layout(x, method=method, seed=4, threads=1))


def test_layout_keeps_planted_groups_together(planted):
    vectors, groups = planted
    xy = compute_layout(vectors, seed=0)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    same = (groups[:, None] == groups[None]) & (groups[:, None] >= 0)
    np.fill_diagonal(same, False)
    assert d[same].max() < np.median(d[~same & ~np.eye(len(d), dtype=bool)])


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="available: opentsne, sklearn, umap"):
        compute_layout(np.zeros((10, 4), np.float32), method="pca")


def test_a_malformed_setting_name_is_named_before_any_cache(tmp_path):
    with pytest.raises(ValueError, match="setting name 'nonsense' must look like model__"):
        catalog_map.map_catalog(tmp_path, "nonsense")
    with pytest.raises(ValueError, match="no embeddings for setting 'a__b__c'"):
        catalog_map.map_catalog(tmp_path, "a__b__c")


@pytest.fixture
def data(tmp_path, vits14):
    data = tmp_path / "data"
    (data / "banners").mkdir(parents=True)
    for i in range(1, 13):
        make_banner(i).save(data / "banners" / f"{i * 10}.jpg")
    names = {i * 10: f"Game {i}" for i in range(1, 13)} | {10: "$100 Dollars$"}
    write_manifest(
        data, pd.DataFrame({"app_id": list(names), "name": list(names.values()), "status": "ok"})
    )
    embed_folder(data / "banners", data, model=vits14, progress=False)
    return data


def test_catalog_map_is_cached_and_recomputed_when_stale(data, monkeypatch, vits14):
    from steam_dinov2.views import map as cm

    table = map_catalog(data, SETTING, n_clusters=3)
    assert list(table.columns) == ["id", "x", "y", "cluster", "centrality"]
    assert sorted(table["id"]) == [i * 10 for i in range(1, 13)]
    assert layout.map_path(data, SETTING).is_file()

    def fail(*a, **k):
        raise AssertionError("recomputed")

    with monkeypatch.context() as m:
        m.setattr(cm, "compute_layout", fail)
        pd.testing.assert_frame_equal(map_catalog(data, SETTING, n_clusters=3), table)
        as_value = Setting.from_name(SETTING)  # the Setting itself names the same cache
        pd.testing.assert_frame_equal(map_catalog(data, as_value, n_clusters=3), table)
        with pytest.raises(AssertionError, match="recomputed"):
            map_catalog(data, SETTING, n_clusters=4)  # other options: not this cache
    # A damaged cache file is recomputed, never trusted.
    layout.map_path(data, SETTING).write_bytes(b"garbage")
    pd.testing.assert_frame_equal(map_catalog(data, SETTING, n_clusters=3), table)
    # New banners: the embedding cache changes generation, the map follows.
    make_banner(99).save(data / "banners" / "130.jpg")
    write_manifest(
        data, pd.concat([read_manifest(data), pd.DataFrame({"app_id": [130], "status": "ok"})])
    )
    embed_folder(data / "banners", data, model=vits14, progress=False)
    assert 130 in set(map_catalog(data, SETTING, n_clusters=3)["id"])
    # A banner leaves the collection (its row turns error) and another comes back in its place,
    # cache unchanged: the map of the same count of rows is made again, without it.
    manifest = read_manifest(data)
    manifest.loc[manifest.app_id == 20, "status"] = "error"
    write_manifest(data, manifest)
    assert 20 not in set(first := map_catalog(data, SETTING, n_clusters=3)["id"])
    manifest.loc[manifest.app_id.isin([20, 30]), "status"] = ["ok", "error"]
    write_manifest(data, manifest)
    again = map_catalog(data, SETTING, n_clusters=3)
    assert len(again) == len(first) and 20 in set(again["id"]) and 30 not in set(again["id"])


def test_clusters_described_and_drawn(data, tmp_path):
    from steam_dinov2.core.manifest import load_names

    table = map_catalog(data, SETTING, n_clusters=3)
    names = load_names(data)
    summary = describe_clusters(table, names, top=2)
    assert summary["cluster"].tolist() == [0, 1, 2]
    assert summary["size"].sum() == 12
    for c, ids in zip(summary["cluster"], summary["central_ids"]):
        members = table[table["cluster"] == c]
        assert ids == members.nlargest(2, "centrality")["id"].tolist()
        assert cluster_members(table, c)[:2] == ids
    fig = plot_catalog_map(data, table, cells=4)
    fig.savefig(tmp_path / "map.png")
    assert len(fig.axes[0].images) == len(sample_for_thumbnails(table, 4))
    c10 = int(table.loc[table["id"] == 10, "cluster"].iloc[0])
    fig = plot_cluster(data, table, c10)
    assert len(fig.axes) >= 2
    fig.savefig(tmp_path / "cluster.png")  # '$' in a name would be mathtext if not escaped
    assert r"\$100 Dollars\$ (10)" in [ax.get_title() for ax in fig.axes]  # escaped once, id kept


def test_thumbnail_sample_has_one_point_per_cell():
    rng = np.random.default_rng(1)
    table = pd.DataFrame(rng.random((500, 2)), columns=["x", "y"])
    rows = sample_for_thumbnails(table, 5)
    cells = {(int(x * 5), int(y * 5)) for x, y in table.iloc[rows][["x", "y"]].to_numpy()}
    assert len(rows) == len(cells) == 25


def test_neighbouring_clusters_get_different_colours():
    # 30 clusters side by side in a row: more clusters than colours, yet no two adjacent alike.
    rng = np.random.default_rng(0)
    c = np.repeat(np.arange(30), 5)
    table = pd.DataFrame(
        {"x": c / 30 + rng.random(len(c)) * 0.01, "y": rng.random(len(c)) * 0.01, "cluster": c}
    )
    colours = catalog_map.cluster_colours(table)
    assert all(colours[i] != colours[i + 1] for i in range(29))
    assert all(colours[i] != colours[i + 2] for i in range(28))
    assert set(colours.values()) <= set(catalog_map.PALETTE)


def test_map_figure_has_title_legend_and_leaves_excluded_out(data, tmp_path):
    import json

    from matplotlib.transforms import Bbox

    table = map_catalog(data, SETTING, n_clusters=3)
    layout.exclusions_path(data).parent.mkdir(parents=True, exist_ok=True)
    layout.exclusions_path(data).write_text(json.dumps({"20": ["dark"]}))
    hidden = plot_catalog_map(data, table, cells=3, setting=SETTING)
    hidden.savefig(tmp_path / "hidden.png")
    assert SETTING in hidden._suptitle.get_text() and "11 banners" in hidden._suptitle.get_text()
    legend = hidden.legends[0]
    assert len(legend.get_texts()) == 3 and "1 banners the audit excluded" in (
        legend.get_title().get_text()
    )
    xy = table.loc[table["id"] == 20, ["x", "y"]].to_numpy()[0]
    dots = hidden.axes[0].collections[0].get_offsets()
    assert len(dots) == 11 and not any(np.allclose(d, xy) for d in dots)
    boxes = []
    for im in hidden.axes[0].images:
        left, right, bottom, top = im.get_extent()
        boxes.append(Bbox.from_extents(left, top, right, bottom))
    assert len(boxes) >= 3
    for i, a in enumerate(boxes):  # thumbnails never pile up
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)

    marked = plot_catalog_map(data, table, cells=3, excluded="mark")
    assert "excluded by the audit (1)" in [t.get_text() for t in marked.legends[0].get_texts()]
    assert np.allclose(marked.axes[0].collections[1].get_offsets(), [xy])
    shown = plot_catalog_map(data, table, cells=3, excluded="show")
    assert len(shown.axes[0].collections[0].get_offsets()) == 12
    with pytest.raises(ValueError, match="excluded must be one of hide, mark, show"):
        plot_catalog_map(data, table, excluded="grey")
