"""Figures of the catalogue map (``catalog_map.map_catalog``): the whole map, one cluster."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from ..core import layout
from ..core.codec import check_pixels, to_rgb
from ..core.manifest import load_names
from ..views.grids import name_with_id, plot_image_grid
from ..views.map import cluster_members

logger = logging.getLogger(__name__)


def cluster_colour(cluster: int):
    """An RGBA colour per cluster (tab20, cycling)."""
    from matplotlib import colormaps

    return colormaps["tab20"](int(cluster) % 20)


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
    data: str | os.PathLike, table: pd.DataFrame, *, cells: int = 12, size: float = 11
):
    """Every banner as a dot coloured by cluster, a grid-spread sample as thumbnails framed in their
    cluster's colour, and cluster numbers at their centres.

    Args:
        data: the data folder (banners).
        table: from ``catalog_map``.
        cells: thumbnails per side of the sampling grid (at most ``cells**2`` thumbnails).
        size: figure width and height in inches.

    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size, size), layout="constrained")
    ax = fig.subplots()
    colours = [cluster_colour(c) for c in table["cluster"]]
    ax.scatter(
        table["x"], table["y"], c=colours, s=max(1.0, 3000 / max(len(table), 1)), linewidths=0
    )
    _draw_thumbnails(ax, data, table, cells)
    _label_clusters(ax, table)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(1.05, -0.05)  # y down, as the exported site's canvas draws it
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


def _draw_thumbnails(ax, data, table: pd.DataFrame, cells: int) -> None:
    """The ``sample_for_thumbnails`` banners at their points, framed in their cluster's colour."""
    from matplotlib.patches import Rectangle

    half = 0.42 / cells  # thumbnail half-height in map units; banners are 2:3
    for row in sample_for_thumbnails(table, cells):
        x, y, c = table["x"].iat[row], table["y"].iat[row], table["cluster"].iat[row]
        thumb = _small_banner(layout.banner_path(data, table["id"].iat[row]))
        if thumb is None:  # missing or unreadable: its dot stays
            continue
        left, right, top, bottom = x - half * 2 / 3, x + half * 2 / 3, y - half, y + half
        ax.imshow(thumb, extent=(left, right, bottom, top), zorder=3)
        ax.add_patch(
            Rectangle(
                (left, top),
                right - left,
                bottom - top,
                fill=False,
                edgecolor=cluster_colour(c),
                linewidth=2,
                zorder=4,
            )
        )


def _label_clusters(ax, table: pd.DataFrame) -> None:
    """Each cluster's number at the median of its points."""
    for c, group in table.groupby("cluster"):
        ax.text(
            group["x"].median(),
            group["y"].median(),
            str(c),
            fontsize=9,
            weight="bold",
            ha="center",
            va="center",
            zorder=5,
            bbox={"boxstyle": "round", "fc": "white", "ec": cluster_colour(c), "alpha": 0.85},
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
