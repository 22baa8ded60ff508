"""Image grids as matplotlib Figures (never shown here: the caller or the notebook displays them)."""

from __future__ import annotations

import math
import os
import re

import numpy as np
from PIL import Image

from ..audit.audit import audited_types, read_issues
from ..core import layout
from ..core.codec import to_rgb
from ..core.manifest import escape_mathtext, load_names


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
        ncols: at most this many cells per row; fewer when that balances the rows
            (``grid_shape``: 6 images in rows of 5 become two rows of 3).
        width: inches per cell; cells are 2:3 like a banner.

    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure

    images = list(images)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    nrows, ncols = grid_shape(len(images), ncols)
    fig = Figure(figsize=(width * ncols, width * 1.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for i, image in enumerate(images):
        axes[i].imshow(as_image_array(image))
        if titles is not None:
            axes[i].set_title(escape_mathtext(titles[i]), fontsize=8, wrap=True)
    return fig


def grid_shape(n: int, ncols: int) -> tuple[int, int]:
    """``(rows, columns)`` for ``n`` cells at most ``ncols`` wide, no tile alone on its row.

    As few rows as allow that, the cells spread evenly over them: 6 in rows of at most 5 ->
    3 + 3; 7 in rows of 6 -> 4 + 3; 10 in rows of 3 -> five rows of 2. When no width of 2 or
    more avoids a lone tile (7 in rows of 3), the rows are only balanced (3 + 3 + 1).
    """
    ncols = max(1, min(ncols, n))
    fits = [(math.ceil(n / c), c) for c in range(2, ncols + 1) if n % c != 1]
    if ncols == n or not fits:
        nrows = max(1, math.ceil(n / ncols))
        return nrows, max(1, math.ceil(n / nrows))
    return min(fits)


def plot_matches(
    query,
    neighbors,
    scores,
    names=None,
    *,
    query_name: str = "",
    ncols: int = 6,
    captions=None,
    query_caption: str = "",
):
    """The query image first (framed in red) and its neighbours, each titled with name and cosine.

    Args:
        query: the query image (path, PIL image or array).
        neighbors: neighbour images, best first.
        scores: cosine score of each neighbour.
        names: display name of each neighbour (e.g. the game's name), or None.
        query_name: display name of the query.
        captions: a line under each neighbour's name (``GameLabel.caption``: studio and tags),
            or None; ``query_caption`` the query's.

    Returns:
        matplotlib Figure.
    """
    neighbors, scores = list(neighbors), list(scores)
    if len(scores) != len(neighbors):
        raise ValueError(f"{len(scores)} scores for {len(neighbors)} neighbours")
    names = list(names) if names is not None else [""] * len(neighbors)
    captions = list(captions) if captions is not None else [""] * len(neighbors)
    titles = [f"QUERY\n{shorten(query_name)}" + caption_line(query_caption)]
    titles += [
        f"{shorten(n)}{caption_line(c)}\n{s:.3f}" for n, c, s in zip(names, captions, scores)
    ]
    fig = plot_image_grid([query, *neighbors], titles, ncols=ncols)
    frame_query(fig.axes[0])
    return fig


def frame_query(ax) -> None:
    """Frame the query's cell in red (the axes stay on, without ticks, to draw the frame)."""
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("red")
        spine.set_linewidth(3)


def blank_banner(fill: int = 255) -> np.ndarray:
    """An empty banner cell: (336, 224, 3) uint8 of one grey level (white by default)."""
    return np.full((336, 224, 3), fill, np.uint8)


_ID_SUFFIX = re.compile(r"^(.*\S)(\s+\(\d+\))$", re.DOTALL)


def plot_banners(data, ids, ncols: int = 5, *, width: float = 2.2):
    """The banners of ``ids`` in the data folder, each titled with its name and id.

    Args:
        data: the data folder.
        ids: app ids (int), in the order to show them.
        ncols, width: as ``plot_image_grid``.

    Returns:
        matplotlib Figure.
    """
    ids, names = list(ids), load_names(data)
    return plot_image_grid(
        [layout.banner_path(data, a) for a in ids],
        titles=[name_with_id(names.get(int(a), ""), a) for a in ids],
        ncols=ncols,
        width=width,
    )


def shorten(text, limit: int = 28) -> str:
    """``text`` in at most ``limit`` characters, cut with "…"; a trailing app id in parentheses
    is kept whole and the name before it is cut instead: "Euro Truck Simu… (227300)"."""
    text = str(text)
    if len(text) <= limit:
        return text
    m = _ID_SUFFIX.match(text)
    if m and len(m.group(2)) + 2 <= limit:
        name, suffix = m.group(1), m.group(2).strip()
        keep = limit - len(suffix) - 2  # the ellipsis and the space
        return f"{name[:keep].rstrip()}… {suffix}"
    return text[: limit - 1] + "…"


def caption_line(caption, limit: int = 28) -> str:
    """``caption`` (studio and tags) as a title's next line, cut to ``limit``; "" when empty."""
    return f"\n{shorten(caption, limit)}" if caption else ""


def name_with_id(name, app_id, limit: int = 28) -> str:
    """A title for one game that always shows its app id: "name (app id)" when that fits in
    ``limit`` characters, else the name (cut with "…" to ``limit``) with the id on the next line;
    the id alone when the name is unknown."""
    name, app_id = str(name or "").strip(), str(app_id)
    if not name or name == app_id:
        return app_id
    whole = f"{name} ({app_id})"
    return whole if len(whole) <= limit else f"{shorten(name, limit)}\n({app_id})"


# --- Figures of an audit: example banners per issue type, named and titled by the issue.


def plot_audit_examples(data: str | os.PathLike, issue_type: str, *, n: int = 10, ncols: int = 5):
    """A grid of banners with one issue: the worst scores first, or duplicate groups (kept first).

    The figure is titled with the issue type and how many banners have it; each banner with its
    game's name and app id (``plot.name_with_id``), then its score or, in a duplicate group,
    "kept" or "= <the kept game>".

    Returns:
        matplotlib Figure (an empty grid when nothing was flagged).

    Raises:
        ValueError: no audit in ``data``, or ``issue_type`` was not audited (names the types).
    """

    issues = read_issues(data)
    if issue_type not in audited_types(issues):
        raise ValueError(
            f"issue type {issue_type!r} was not audited; available: "
            + ", ".join(audited_types(issues))
        )
    names = load_names(data)
    hit = issues[issues[f"is_{issue_type}_issue"]]
    group = f"{issue_type}_group"
    if group in hit:
        shown = hit.sort_values([group, "app_id"]).head(n)
        notes = [
            "kept" if a == g else f"= {name_with_id(names.get(int(g)), g, 24)}"
            for a, g in zip(shown["app_id"], shown[group])
        ]
    else:
        shown = hit.sort_values(f"{issue_type}_score").head(n)
        notes = [f"{s:.3f}" for s in shown[f"{issue_type}_score"]]
    titles = [f"{name_with_id(names.get(int(a)), a)}\n{t}" for a, t in zip(shown["app_id"], notes)]
    fig = plot_image_grid(
        [layout.banner_path(data, a) for a in shown["app_id"]], titles, ncols=ncols
    )
    what = issue_type.replace("_", " ")
    fig.suptitle(escape_mathtext(f"{what}: {len(hit)} of {len(issues)} banners"), fontsize=11)
    return fig
