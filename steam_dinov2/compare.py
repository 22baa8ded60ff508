"""Side by side: one game's neighbours under several (model, preset, pooling) settings."""

from __future__ import annotations

import logging
import os

from . import layout
from .embed import embed_folder, images_of
from .manifest import load_names
from .names import search_games
from .plot import blank_banner, escape_mathtext, frame_query, name_with_id
from .search import describe_exclusions, find_neighbors, index_collection
from .setting import Setting

logger = logging.getLogger(__name__)


def parse_setting(setting) -> tuple[str, str, str]:
    """``(model, preset, pooling)`` from a tuple or a "model:preset:pooling" string."""
    if isinstance(setting, str):
        parts = setting.rsplit(":", 2)
        if len(parts) != 3:
            raise ValueError(
                f"setting {setting!r} must look like model:preset:pooling, e.g. dinov2_vits14:crop256:cls"
            )
        return tuple(parts)
    model, preset, pooling = setting
    return model, preset, pooling


def plot_comparison(
    data: str | os.PathLike,
    app_id,
    settings,
    *,
    k: int = 5,
    images: str | os.PathLike | None = None,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    exclude=(),
    progress: bool = True,
    explain: bool = False,
):
    """One row per setting: the query banner, then its top-k neighbours with names and cosines.

    Only missing embeddings are computed (each setting's cache is reused and extended).

    Args:
        data: the data folder (banners, manifest for names, embedding caches).
        app_id: the game to compare on (must be in the collection).
        settings: ``[(model, preset, pooling), ...]`` or ``["model:preset:pooling", ...]``.
        k: neighbours per row.
        images: image folder (default ``DATA/banners``).
        pretrained, weights: as for ``load_model``, for every setting.
        exclude: ids never shown as neighbours (e.g. ``load_exclusions(data)``).
        explain: overlay each neighbour with the heatmap of its patches' best cosine to the
            query's (``explain.plot_match_explained``), from the row's own model and preset.

    Returns:
        matplotlib Figure, ``len(settings)`` rows of ``k + 1`` banners.
    """
    from .plot import plot_image_grid

    settings = [parse_setting(s) for s in settings]
    if exclude:
        logger.info("comparison: %s never neighbours", describe_exclusions(exclude))
    images = images or layout.banners_dir(data)
    names = load_names(data)
    files = images_of(data, images)
    cells = []
    for model, preset, pooling in settings:
        setting = Setting.create(model, preset, pooling, pretrained=pretrained, weights=weights)
        emb = embed_folder(images, data, setting=setting, progress=progress)
        cells += _neighbor_row(emb, str(app_id), k, index_collection(emb, exclude), names, 18)
    fig = plot_image_grid(
        [files[i] if i else blank_banner() for i, _ in cells],
        [t for _, t in cells],
        ncols=k + 1,
        width=1.6,
    )
    if explain:
        from .explain import overlay_matches

        for row, (model, preset, _) in enumerate(settings):
            span = slice(row * (k + 1), (row + 1) * (k + 1))
            overlay_matches(
                fig.axes[span],
                [files[i] if i else None for i, _ in cells[span]],
                model=model,
                preset=preset,
                pretrained=pretrained,
                weights=weights,
            )
    for row, (model, preset, pooling) in enumerate(settings):
        ax = fig.axes[row * (k + 1)]  # the query: framed in red, the row labelled with its setting
        frame_query(ax)
        ax.set_ylabel(escape_mathtext(f"{model}\n{preset}\n{pooling}"), fontsize=8)
    return fig


def _neighbor_row(emb, app_id: str, k: int, index, names, width: int) -> list:
    """``k + 1`` cells ``(id or None, title)``: the query, its neighbours, blanks if short."""
    table = find_neighbors(emb, app_id, k=k, index=index)
    row = [(app_id, "QUERY")] + [(i, f"{s:.3f}") for i, s in zip(table["id"], table["score"])]
    row = [(i, f"{name_with_id(names.get(i), i, width)}\n{t}") for i, t in row]
    return row + [(None, "")] * (k + 1 - len(row))


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
    from .plot import plot_matches

    app_id = str(app_id)
    names = load_names(data)
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
    from .plot import plot_image_grid

    names = load_names(data)
    if exclude:
        logger.info("preview: %s never neighbours", describe_exclusions(exclude))
    if app_ids is None:
        found = [h for q in WELL_KNOWN for h in search_games(names, q, ids=emb.ids)[:1]]
        app_ids = list(dict.fromkeys(found + emb.ids))[:4]
    index = index_collection(emb, exclude)  # built once for every row
    cells = [c for a in map(str, app_ids) for c in _neighbor_row(emb, a, k, index, names, 20)]
    fig = plot_image_grid(
        [layout.banner_path(data, i) if i else blank_banner() for i, _ in cells],
        [t for _, t in cells],
        ncols=k + 1,
        width=1.6,
    )
    if title:
        fig.suptitle(escape_mathtext(f"{emb.setting}: {k} nearest banners"), fontsize=9)
    return fig
