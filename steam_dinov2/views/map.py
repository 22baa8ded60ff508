"""The catalogue map: every banner of a setting laid out in 2D by look, grouped by k-means.

The layout is openTSNE's FFT-accelerated t-SNE on a 50-dimensional PCA of the embeddings (the
fastest of the libraries measured at 30,000 banners, benchmarks/README.md); scikit-learn's t-SNE
(in Colab already) and UMAP are the alternatives. Clusters are faiss spherical k-means on the full
embeddings, so they do not depend on the 2D projection. Both are cached per setting in
``DATA/maps/<setting>/layout.parquet``, keyed on the embedding cache's generation and the options.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import textwrap

import numpy as np
import pandas as pd

from ..audit.audit import load_exclusions
from ..core import files, layout
from ..core.blas import import_faiss
from ..core.codec import check_pixels, to_rgb
from ..core.manifest import load_names
from ..embedding.embed import load_embeddings
from ..embedding.setting import Setting, checked_name
from .grids import escape_mathtext, name_with_id, plot_image_grid, shorten

logger = logging.getLogger(__name__)

METHODS = {
    "opentsne": "openTSNE's t-SNE, FFT gradients (pip install openTSNE)",
    "sklearn": "scikit-learn's Barnes-Hut t-SNE (in Colab already)",
    "umap": "UMAP (pip install umap-learn)",
}
PCA_DIMS = 50  # the usual input size for t-SNE on deep features (openTSNE's docs do the same)
# openTSNE's FFT gradients cost a fixed ~10 s at any size; Barnes-Hut is faster below ~10,000
# points (openTSNE's documentation gives the same advice).
FFT_FROM = 10_000
_VERSION = 1  # bump when the layout or clusters computed from the same input change
# k-means restarts, best objective kept: one run can merge two groups and split another (tests).
NREDO = 5


def default_method() -> str:
    """``opentsne`` when installed (fastest), else ``sklearn``."""
    return "opentsne" if importlib.util.find_spec("openTSNE") else "sklearn"


def default_clusters(n: int) -> int:
    """About sqrt(N)/4 clusters, 2 to 40: 30,000 banners -> 40 groups a person can read through."""
    return int(min(40, max(2, round(math.sqrt(n) / 4)), max(n, 1)))


def reduce_dims(vectors: np.ndarray, dims: int = PCA_DIMS) -> np.ndarray:
    """(N, D) -> (N, min(dims, D)) float32: faiss PCA (deterministic), no-op when D <= dims."""
    faiss = import_faiss()

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.shape[1] <= dims or len(x) <= dims:
        return x
    pca = faiss.PCAMatrix(x.shape[1], dims)
    pca.train(x)
    return pca.apply(x)


def compute_layout(
    vectors: np.ndarray, *, method: str | None = None, seed: int = 0, threads: int | None = None
) -> np.ndarray:
    """2D positions of (N, D) vectors: (N, 2) float32 in [0, 1] (aspect kept), same seed -> same map.

    Args:
        vectors: (N, D) float32 embeddings.
        method: one of ``METHODS`` (default ``default_method()``).
        seed: random seed of the method.
        threads: worker threads (default: all cores).
    """
    method = method or default_method()
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; available: {', '.join(METHODS)}")
    n = len(vectors)
    threads = threads or os.cpu_count() or 1
    x = reduce_dims(vectors)
    if n < 8:  # too few points for a neighbour graph: the two main axes say enough
        xy = _pca2(x)
    else:
        xy = _embed_2d(x, method, seed, threads)
    xy = np.asarray(xy, dtype=np.float64)
    xy -= xy.min(axis=0)
    return (xy / max(float(xy.max()), 1e-12)).astype(np.float32)


def _embed_2d(x: np.ndarray, method: str, seed: int, threads: int) -> np.ndarray:
    """(N, 2) positions of (N, d) rows, N >= 8, by ``method`` (not yet scaled to [0, 1])."""
    n = len(x)
    if method == "opentsne":
        from openTSNE import TSNE

        # annoy ships inside openTSNE; "auto" may pick pynndescent, whose numba compile costs ~50 s.
        tsne = TSNE(
            n_components=2,
            perplexity=min(30.0, (n - 1) / 3),
            initialization="pca",
            neighbors="annoy",
            negative_gradient_method="fft" if n >= FFT_FROM else "bh",
            n_jobs=threads,
            random_state=seed,
            verbose=False,
        )
        return np.asarray(tsne.fit(x))
    if method == "sklearn":
        from sklearn.manifold import TSNE

        tsne = TSNE(
            n_components=2,
            perplexity=min(30.0, (n - 1) / 3),
            init="pca",
            random_state=seed,
            n_jobs=threads,
        )
        return tsne.fit_transform(x)
    import umap

    # A random_state makes UMAP deterministic (and single-threaded).
    return umap.UMAP(n_neighbors=min(15, n - 1), random_state=seed).fit_transform(x)


def _pca2(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    out = u[:, :2] * s[:2]
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def cluster_vectors(vectors: np.ndarray, n_clusters: int, *, seed: int = 0):
    """Spherical k-means with faiss.

    Returns:
        ``(labels, centrality)``: (N,) int32 cluster of each row, numbered by size (0 is the
        largest), and (N,) float32 cosine of each row to its cluster's centroid.
    """
    faiss = import_faiss()

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(int(n_clusters), len(x)))
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=25,
        nredo=NREDO,
        seed=seed,
        spherical=True,
        verbose=False,
        min_points_per_centroid=1,  # small collections: no warning printed by faiss
    )
    km.train(x)
    _, labels = km.index.search(x, 1)
    labels = labels[:, 0]
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes, kind="stable")  # renumber: cluster 0 is the largest
    rename = np.empty(k, np.int64)
    rename[order] = np.arange(k)
    centroids = km.centroids / np.maximum(
        np.linalg.norm(km.centroids, axis=1, keepdims=True), 1e-12
    )
    centrality = np.einsum("nd,nd->n", x, centroids[labels])
    return rename[labels].astype(np.int32), centrality.astype(np.float32)


def map_catalog(
    data: str | os.PathLike,
    setting: str | Setting,
    *,
    n_clusters: int | None = None,
    method: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The map of one cached setting, computed once and reused while the embeddings are unchanged.

    Args:
        data: the data folder.
        setting: a cached setting (a ``Setting`` or a name of ``layout.list_settings(data)``).
        n_clusters: k-means clusters (default ``default_clusters(N)``).
        method: layout method, one of ``METHODS`` (default ``default_method()``).
        seed: seed of the layout and of k-means.

    Returns:
        DataFrame ``id`` (str), ``x``, ``y`` (float32 in [0, 1]), ``cluster`` (int32, 0 the
        largest), ``centrality`` (float32 cosine to the cluster's centroid), in embedding row order.
    """

    emb = load_embeddings(data, checked_name(setting))  # a malformed name says so first
    if not emb.ids:
        raise ValueError(f"setting {emb.setting!r} in {data} holds no embeddings")
    method = method or default_method()
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; available: {', '.join(METHODS)}")
    k = default_clusters(len(emb.ids)) if n_clusters is None else int(n_clusters)
    if k < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    made_from = _made_from(emb, method, k, seed)
    path = layout.map_path(data, emb.setting)
    cached = _read_cached(path, made_from, emb.ids)
    if cached is not None:
        return cached
    logger.info("laying out %d banners of %s with %s", len(emb.ids), emb.setting, method)
    table = _map_table(emb, method, k, seed)
    files.write_keyed_parquet(path, table, made_from)
    return table


def _made_from(emb, method: str, n_clusters: int, seed: int) -> dict:
    """What a cached map must have been made from to be reused."""
    return {
        **emb.made_from(),
        "count": len(emb.ids),
        "method": method,
        "n_clusters": n_clusters,
        "seed": seed,
        "version": _VERSION,
    }


def _map_table(emb, method: str, n_clusters: int, seed: int) -> pd.DataFrame:
    """``map_catalog``'s table, computed."""
    xy = compute_layout(emb.vectors, method=method, seed=seed)
    labels, centrality = cluster_vectors(emb.vectors, n_clusters, seed=seed)
    return pd.DataFrame(
        {
            "id": np.asarray(emb.ids, dtype=np.int64),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "cluster": labels,
            "centrality": centrality,
        }
    )


def _read_cached(path, made_from: dict, ids) -> pd.DataFrame | None:
    """The cached map when its key matches and its rows hold up: one per id of the embeddings,
    coordinates in [0, 1], clusters in range, finite centralities. Anything else (damaged,
    stale, forged) is recomputed, with a warning when the file was there but wrong."""
    table = files.read_keyed_parquet(path, made_from)
    if table is None:
        return None
    try:  # maps before 0.2 stored ids as strings
        table = table.astype({"id": np.int64})
        clusters = table["cluster"].to_numpy(np.int64)
        xy = table[["x", "y", "centrality"]].to_numpy(np.float64)
        why = ""
        if list(table.columns) != ["id", "x", "y", "cluster", "centrality"]:
            why = f"columns {list(table.columns)}"
        elif len(table) != len(ids) or set(table["id"]) != set(ids):
            why = "rows that are not the embeddings' ids"
        elif not np.isfinite(xy).all() or xy[:, :2].min() < 0 or xy[:, :2].max() > 1:
            why = "coordinates outside [0, 1]"
        elif clusters.min() < 0 or clusters.max() >= made_from["n_clusters"]:
            why = "clusters out of range"
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        why = f"{type(e).__name__}: {e}"
    if why:
        logger.warning("map %s is damaged (%s); computing it again", path, why)
        return None
    return table


def describe_clusters(
    table: pd.DataFrame, names: dict | None = None, *, top: int = 5
) -> pd.DataFrame:
    """One row per cluster: ``cluster``, ``size``, ``central_ids`` and ``central_names`` (the
    ``top`` members nearest its centroid, nearest first)."""
    names = names or {}
    rows = []
    for c, group in table.sort_values("centrality", ascending=False, kind="stable").groupby(
        "cluster"
    ):
        ids = group["id"].astype(np.int64).tolist()
        rows.append(
            {
                "cluster": int(c),
                "size": len(ids),
                "central_ids": ids[:top],
                "central_names": [names.get(i, str(i)) for i in ids[:top]],
            }
        )
    return pd.DataFrame(rows, columns=["cluster", "size", "central_ids", "central_names"])


def cluster_members(table: pd.DataFrame, cluster: int) -> list[int]:
    """Ids of one cluster, most central first."""
    members = table[table["cluster"] == int(cluster)]
    return (
        members.sort_values("centrality", ascending=False, kind="stable")["id"]
        .astype(np.int64)
        .tolist()
    )


# --- Figures of the catalogue map (``map_catalog``): the whole map, one cluster.


# Kelly's 22 colours of maximum contrast (Kelly 1965, "Twenty-two colors for maximum contrast")
# without white, black, grey (the audit's crosses) and the two yellows closest to his first one:
# unlike tab20's light/dark pairs, no two are shades of one hue.
PALETTE = (
    "#f3c300", "#875692", "#f38400", "#a1caf1", "#be0032", "#c2b280", "#008856", "#e68fac",
    "#0067a5", "#f99379", "#604e97", "#b3446c", "#882d17", "#8db600", "#654522", "#e25822",
    "#2b3d26",
)  # fmt: skip
EXCLUDED_CHOICES = ("hide", "mark", "show")


def cluster_colours(table: pd.DataFrame) -> dict[int, str]:
    """``{cluster: "#rrggbb"}`` from ``PALETTE``, so that clusters lying next to each other on the
    map differ: largest first, each takes the colour used least among its 5 nearest coloured
    clusters (by the median of their points), the nearest counting most, then the colour used
    least so far (so every cluster has its own while the palette lasts), then palette order."""
    centres = table.groupby("cluster")[["x", "y"]].median()
    order = table["cluster"].value_counts().index.tolist()  # largest first
    colour: dict[int, int] = {}
    for c in order:
        done = list(colour)
        if done:
            d = ((centres.loc[done].to_numpy() - centres.loc[c].to_numpy()) ** 2).sum(axis=1)
            near = [colour[done[j]] for j in np.argsort(d, kind="stable")[:5]]
        else:
            near = []
        # nearer neighbours weigh more: never the nearest's colour while another is free
        weight = np.zeros(len(PALETTE))
        for rank, k in enumerate(near):
            weight[k] += 10.0 ** (len(near) - rank)
        count = np.bincount(list(colour.values()), minlength=len(PALETTE))
        # free near it first, then the least used anywhere (all differ while colours last)
        colour[int(c)] = int(np.lexsort((np.arange(len(PALETTE)), count, weight))[0])
    return {c: PALETTE[k] for c, k in colour.items()}


def cluster_colour(cluster: int):
    """An RGBA colour per cluster number (``PALETTE``, cycling), when no map is at hand."""
    from matplotlib.colors import to_rgba

    return to_rgba(PALETTE[int(cluster) % len(PALETTE)])


def sample_for_thumbnails(table: pd.DataFrame, cells: int = 12) -> list[int]:
    """Row positions of a readable sample: on a ``cells`` x ``cells`` grid over the map, the point
    nearest each occupied cell's centre, so thumbnails never pile up."""
    xy = table[["x", "y"]].to_numpy(np.float64)
    cell = np.minimum((xy * cells).astype(int), cells - 1)
    centre = (cell + 0.5) / cells
    dist = ((xy - centre) ** 2).sum(axis=1)
    key = cell[:, 0] * cells + cell[:, 1]
    order = np.lexsort((dist, key))
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return sorted(order[first].tolist())


def plot_catalog_map(
    data: str | os.PathLike,
    table: pd.DataFrame,
    *,
    cells: int = 12,
    size: float = 11,
    setting: str | Setting | None = None,
    excluded: str = "hide",
    names: dict | None = None,
):
    """Every banner as a dot coloured by cluster, a grid-spread sample as thumbnails framed in their
    cluster's colour, cluster numbers at their centres, a title and a legend.

    Args:
        data: the data folder (banners, names, the audit's exclusions).
        table: from ``map_catalog``.
        cells: thumbnails per side of the sampling grid (at most ``cells**2`` thumbnails); each is
            drawn whole inside its cell, so none covers another.
        size: figure width in inches.
        setting: named in the title (the setting the map was made from).
        excluded: banners the audit excluded: ``hide`` (left out), ``mark`` (grey crosses, no
            thumbnail) or ``show`` (drawn as any other).
        names: ``{id: name}`` for the legend (default: the manifest's).

    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if excluded not in EXCLUDED_CHOICES:
        raise ValueError(f"excluded must be one of {', '.join(EXCLUDED_CHOICES)}; got {excluded!r}")
    names = load_names(data) if names is None else names
    out = set(load_exclusions(data)) if excluded != "show" else set()
    is_out = table["id"].isin(out).to_numpy()
    shown = table[~is_out]
    colours = cluster_colours(table)
    y_top, y_bottom = float(table["y"].min()), float(table["y"].max())
    height = max(0.3, (y_bottom - y_top) + 0.1)  # the layout's own shape: no empty third
    fig = Figure(figsize=(size, size * min(1.0, height / 1.1) + 2.2), layout="constrained")
    ax = fig.subplots()
    ax.scatter(
        shown["x"],
        shown["y"],
        c=[colours[c] for c in shown["cluster"]],
        s=max(2.0, 3000 / max(len(table), 1)),
        linewidths=0,
    )
    if excluded == "mark" and is_out.any():
        marked = table[is_out]
        ax.scatter(marked["x"], marked["y"], marker="x", c="0.45", s=18, linewidths=1, zorder=2)
    _draw_thumbnails(ax, data, shown.reset_index(drop=True), cells, colours)
    _label_clusters(ax, shown, colours)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(y_bottom + 0.03, y_top - 0.03)  # y down, as the exported site's canvas draws it
    ax.set_aspect("equal")
    ax.axis("off")
    what = setting.name if isinstance(setting, Setting) else setting
    title = f"Catalogue map: {len(shown):,} banners by look"
    title += f"\n{escape_mathtext(str(what))}" if what else ""
    fig.suptitle(title, fontsize=13, weight="bold")
    how = (
        "Near each other = similar banners (t-SNE of the embeddings); colour = k-means cluster "
        "of the full embeddings; a thumbnail sits in the cell of its point"
    )
    ax.set_title(textwrap.fill(how, int(size * 12)), fontsize=9)
    summary = describe_clusters(shown, names, top=2)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            color=colours[c],
            markersize=8,
            label=escape_mathtext(f"{c} ({n}): " + ", ".join(shorten(str(x), 18) for x in central)),
        )
        for c, n, central in zip(summary["cluster"], summary["size"], summary["central_names"])
    ]
    if excluded == "mark" and is_out.any():
        handles.append(
            Line2D(
                [],
                [],
                marker="x",
                ls="",
                color="0.45",
                label=f"excluded by the audit ({is_out.sum()})",
            )
        )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=4 if size >= 10 else 2,
        fontsize=7.5,
        frameon=False,
        title=(
            "cluster (size): its most central banners"
            + (
                f"; {is_out.sum()} banners the audit excluded are left out"
                if excluded == "hide" and is_out.any()
                else ""
            )
        ),
        title_fontsize=8.5,
    )
    return fig


def _draw_thumbnails(ax, data, table: pd.DataFrame, cells: int, colours: dict) -> None:
    """The ``sample_for_thumbnails`` banners, each whole (its own shape) in the cell of its point,
    framed in its cluster's colour; a cell holds one thumbnail, so they never overlap."""
    from matplotlib.patches import Rectangle

    box = 0.86 / cells  # the largest side of a thumbnail, in map units: a margin between cells
    for row in sample_for_thumbnails(table, cells):
        x, y, c = table["x"].iat[row], table["y"].iat[row], table["cluster"].iat[row]
        thumb = _small_banner(layout.banner_path(data, table["id"].iat[row]))
        if thumb is None:  # missing or unreadable: its dot stays
            continue
        h, w = thumb.shape[:2]
        half_w, half_h = box * w / max(h, w) / 2, box * h / max(h, w) / 2
        # the cell's centre, moved toward the point as far as the cell allows
        cx, cy = (np.minimum(np.array([x, y]) * cells, cells - 1).astype(int) + 0.5) / cells
        cx = float(np.clip(x, cx - 0.5 / cells + half_w, cx + 0.5 / cells - half_w))
        cy = float(np.clip(y, cy - 0.5 / cells + half_h, cy + 0.5 / cells - half_h))
        left, right, top, bottom = cx - half_w, cx + half_w, cy - half_h, cy + half_h
        ax.imshow(thumb, extent=(left, right, bottom, top), zorder=3)
        ax.add_patch(
            Rectangle(
                (left, top),
                right - left,
                bottom - top,
                fill=False,
                edgecolor=colours[int(c)],
                linewidth=2,
                zorder=4,
            )
        )


def _label_clusters(ax, table: pd.DataFrame, colours: dict) -> None:
    """Each cluster's number at the median of its points."""
    for c, group in table.groupby("cluster"):
        ax.text(
            group["x"].median(),
            group["y"].median(),
            str(c),
            fontsize=12,
            weight="bold",
            ha="center",
            va="center",
            zorder=5,
            bbox={
                "boxstyle": "round",
                "fc": "white",
                "ec": colours[int(c)],
                "lw": 2.5,
                "alpha": 0.9,
            },
        )


def _small_banner(path) -> np.ndarray | None:
    """A 60x90 RGB thumbnail, or None for a missing, unreadable or oversized file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            check_pixels(img)  # on the header, before decoding
            img.thumbnail((60, 90))
            return np.asarray(to_rgb(img))
    except Exception as e:  # any decoder failure: a dot without a picture
        logger.debug("no thumbnail for %s: %s", path, e)
        return None


def plot_cluster(
    data: str | os.PathLike, table: pd.DataFrame, cluster: int, *, top: int = 12, names=None
):
    """The ``top`` most central banners of one cluster with their names. Returns a Figure."""

    names = load_names(data) if names is None else names
    ids = [
        i for i in cluster_members(table, cluster)[:top] if layout.banner_path(data, i).is_file()
    ]
    if not ids:
        raise ValueError(f"cluster {cluster} has no banners in {layout.banners_dir(data)}")
    titles = [name_with_id(names.get(i), i, 20) for i in ids]  # escaped by plot_image_grid
    return plot_image_grid([layout.banner_path(data, i) for i in ids], titles, ncols=6, width=1.6)
