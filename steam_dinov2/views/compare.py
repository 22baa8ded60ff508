"""Side by side: one game's neighbours under several settings (``Setting``s)."""

from __future__ import annotations

import logging
import os

from ..core import layout
from ..core.files import parse_image_id
from ..core.manifest import load_names
from ..embedding.embed import embed_folder, images_of
from ..embedding.setting import Setting, as_setting
from ..search import describe_exclusions, find_neighbors, index_collection, search_games
from ..steam.metadata import load_labels
from .explain import overlay_matches
from .grids import (
    blank_banner,
    caption_line,
    escape_mathtext,
    frame_query,
    name_with_id,
    plot_image_grid,
    plot_matches,
)

logger = logging.getLogger(__name__)


def plot_comparison(
    data: str | os.PathLike,
    app_id,
    settings,
    *,
    k: int = 5,
    images: str | os.PathLike | None = None,
    exclude=(),
    progress: bool = True,
    explain: bool = False,
):
    """One row per setting: the query banner, then its top-k neighbours with names and cosines.
    Only missing embeddings are computed (each setting's cache is reused and extended).

    Args:
        data: the data folder (banners, manifest for names, embedding caches).
        app_id: the game to compare on (must be in the collection).
        settings: the rows, each a ``Setting`` (it carries its weights), a setting name or a
            "model:preset:pooling" string (``as_setting``).
        k: neighbours per row.
        images: image folder (default ``DATA/banners``).
        exclude: ids never shown as neighbours (e.g. ``load_exclusions(data)``).
        explain: overlay each neighbour with the heatmap of its patches' best cosine to the
            query's (``explain.plot_match_explained``), from the row's own setting.

    Returns:
        matplotlib Figure, ``len(settings)`` rows of ``k + 1`` banners.
    """

    settings = _row_settings(settings)
    images = images or layout.banners_dir(data)
    files = images_of(data, images)
    app_id = parse_image_id(app_id, "app_id")
    cells = _comparison_cells(data, images, settings, app_id, k, exclude, progress)
    paths = [files[i] if i else None for i, _ in cells]
    fig = plot_image_grid(
        [p or blank_banner() for p in paths], [t for _, t in cells], ncols=k + 1, width=1.6
    )
    for row, setting in enumerate(settings):
        span = slice(row * (k + 1), (row + 1) * (k + 1))
        if explain:
            overlay_matches(fig.axes[span], paths[span], setting=setting)
        ax = fig.axes[span.start]  # the query: framed in red, the row labelled with its setting
        frame_query(ax)
        ax.set_ylabel(
            escape_mathtext(f"{setting.model}\n{setting.preset}\n{setting.pooling}"), fontsize=8
        )
    return fig


def _row_settings(settings) -> list[Setting]:
    """The comparison's rows (``as_setting`` of each); ValueError when there is none."""
    if isinstance(settings, str | Setting):  # one setting, not the characters of its name
        settings = [settings]
    rows = [as_setting(s) for s in settings]
    if not rows:
        raise ValueError(
            "no settings to compare: pass at least one Setting, setting name or "
            "model:preset:pooling"
        )
    return rows


def _comparison_cells(data, images, settings, app_id: int, k: int, exclude, progress) -> list:
    """Every row's ``k + 1`` cells ``(id or None, title)``, embedding what is missing."""
    if exclude:
        logger.info("comparison: %s never neighbours", describe_exclusions(exclude))
    names, labels, cells = load_names(data), load_labels(data), []
    for setting in settings:
        emb = embed_folder(images, data, setting=setting, progress=progress)
        index = index_collection(emb, exclude)
        cells += _neighbor_row(emb, app_id, k, index, (names, labels), 18)
    return cells


def _neighbor_row(emb, app_id: int, k: int, index, known, width: int) -> list:
    """``k + 1`` cells ``(id or None, title)``: the query, its neighbours, blanks if short; each
    titled with name, id, studio and tags (``known``: ``(names, labels)``) and cosine."""
    names, labels = known
    app_id = parse_image_id(app_id, "app_id")  # plot_games passes str: names are keyed by int
    table = find_neighbors(emb, app_id, k=k, index=index)
    row = [(app_id, "QUERY")] + [(i, f"{s:.3f}") for i, s in zip(table["id"], table["score"])]
    row = [
        (i, f"{name_with_id(names.get(i), i, width)}{_caption(labels, i, width)}\n{t}")
        for i, t in row
    ]
    return row + [(None, "")] * (k + 1 - len(row))


def _caption(labels: dict, app_id: int, width: int = 28) -> str:
    label = labels.get(app_id)
    return caption_line(label.caption(), width) if label else ""


def plot_neighbors(
    data: str | os.PathLike, emb, app_id, *, k: int = 10, exclude=(), ncols: int = 6
):
    """One game's banner and its k nearest banners, titled with game names and cosines.

    Args:
        data: the data folder (banners and manifest for names).
        emb: embeddings of one setting (``embed_folder`` / ``load_embeddings``).
        app_id: the query game, in ``emb.ids``.
        exclude: ids never shown as neighbours.

    Returns:
        matplotlib Figure (see ``plot_matches``).
    """

    app_id = parse_image_id(app_id, "app_id")
    names, labels = load_names(data), load_labels(data)
    if exclude:
        logger.info("neighbours: %s never neighbours", describe_exclusions(exclude))
    table = find_neighbors(emb, app_id, k=k, exclude=exclude)
    return plot_matches(
        layout.banner_path(data, app_id),
        [layout.banner_path(data, i) for i in table["id"]],
        table["score"],
        [f"{names.get(i, i)} ({i})" for i in table["id"]],
        query_name=f"{names.get(app_id, app_id)} ({app_id})",
        ncols=ncols,
        captions=[labels[i].caption() if i in labels else "" for i in table["id"]],
        query_caption=labels[app_id].caption() if app_id in labels else "",
    )


# The games shown first when nothing else is asked: Euro Truck Simulator 2 was the query of the
# original DINO comparison; the others are well known and have distinctive art.
WELL_KNOWN = ["Euro Truck Simulator 2", "Portal 2", "Stardew Valley", "Hollow Knight", "Terraria"]


def plot_games(
    data: str | os.PathLike, emb, app_ids=None, *, k: int = 5, exclude=(), title: bool = False
):
    """One row per game: its banner, then its k nearest banners, titled with names and cosines.

    Args:
        data: the data folder.
        emb: embeddings of one setting.
        app_ids: the games (default: those of ``WELL_KNOWN`` in the collection, then the first ids,
            four in all).
        exclude: ids never shown as neighbours.
        title: name the setting and k in the figure's title (the ``run`` preview does).

    Returns:
        matplotlib Figure.
    """

    names, labels = load_names(data), load_labels(data)
    if exclude:
        logger.info("preview: %s never neighbours", describe_exclusions(exclude))
    if app_ids is None:
        found = [h for q in WELL_KNOWN for h in search_games(names, q, ids=emb.ids)[:1]]
        app_ids = list(dict.fromkeys(found + emb.ids))[:4]
    index = index_collection(emb, exclude)  # built once for every row
    app_ids = [parse_image_id(a, "app_ids") for a in app_ids]
    known = (names, labels)
    cells = [c for a in app_ids for c in _neighbor_row(emb, a, k, index, known, 20)]
    fig = plot_image_grid(
        [layout.banner_path(data, i) if i else blank_banner() for i, _ in cells],
        [t for _, t in cells],
        ncols=k + 1,
        width=1.6,
    )
    if title:
        fig.suptitle(escape_mathtext(f"{emb.setting}: {k} nearest banners"), fontsize=9)
    return fig
