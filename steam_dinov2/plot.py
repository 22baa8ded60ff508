"""Image grids as matplotlib Figures (never shown here: the caller or the notebook displays them)."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from .preprocess import to_rgb


def as_image_array(image) -> np.ndarray:
    """A path, PIL image or HWC array -> HWC uint8 RGB array."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as img:
            return np.asarray(to_rgb(img))
    return np.asarray(to_rgb(image))


def plot_image_grid(images, titles=None, ncols: int = 5, *, width: float = 2.2):
    """A grid of images, one per cell, with optional titles.

    Args:
        images: paths, PIL images or HWC uint8 arrays.
        titles: one string per image, or None.
        ncols: cells per row.
        width: inches per cell; cells are 2:3 like a banner.

    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure

    images = list(images)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    ncols = max(1, min(ncols, len(images)))
    nrows = max(1, math.ceil(len(images) / ncols))
    fig = Figure(figsize=(width * ncols, width * 1.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for i, image in enumerate(images):
        axes[i].imshow(as_image_array(image))
        if titles is not None:
            axes[i].set_title(escape_mathtext(titles[i]), fontsize=8, wrap=True)
    return fig


def escape_mathtext(text) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped, so a name such as
    ``Money $_$ Maker`` is never parsed as mathtext (which fails on it and stops the drawing)."""
    return str(text).replace("$", r"\$")


def plot_matches(query, neighbors, scores, names=None, *, query_name: str = "", ncols: int = 6):
    """The query image first (framed in red) and its neighbours, each titled with name and cosine.

    Args:
        query: the query image (path, PIL image or array).
        neighbors: neighbour images, best first.
        scores: cosine score of each neighbour.
        names: display name of each neighbour (e.g. the game's name), or None.
        query_name: display name of the query.

    Returns:
        matplotlib Figure.
    """
    neighbors, scores = list(neighbors), list(scores)
    if len(scores) != len(neighbors):
        raise ValueError(f"{len(scores)} scores for {len(neighbors)} neighbours")
    names = list(names) if names is not None else [""] * len(neighbors)
    titles = [f"QUERY\n{shorten(query_name)}"]
    titles += [f"{shorten(n)}\n{s:.3f}" for n, s in zip(names, scores)]
    fig = plot_image_grid([query, *neighbors], titles, ncols=ncols)
    ax = fig.axes[0]
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("red")
        spine.set_linewidth(3)
    return fig


def shorten(text, limit: int = 28) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
