"""Side by side: one game's neighbours under several (model, preset, pooling) settings."""

from __future__ import annotations

import os

from . import layout
from .embed import embed_folder, list_images
from .manifest import load_names, search_games
from .plot import as_image_array, shorten
from .search import find_neighbors


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

    Returns:
        matplotlib Figure, ``len(settings)`` rows of ``k + 1`` banners.
    """
    from matplotlib.figure import Figure

    settings = [parse_setting(s) for s in settings]
    images = images or layout.banners_dir(data)
    names = load_names(data)
    files = list_images(images)
    app_id = str(app_id)
    fig = Figure(figsize=(1.6 * (k + 1) + 1.5, 2.7 * len(settings)), layout="constrained")
    axes = fig.subplots(len(settings), k + 1, squeeze=False)
    for row, (model, preset, pooling) in enumerate(settings):
        emb = embed_folder(
            images, data, model=model, preset=preset, pooling=pooling, pretrained=pretrained,
            weights=weights, progress=progress,
        )  # fmt: skip
        table = find_neighbors(emb, app_id, k=k, exclude=exclude)
        cells = [(app_id, "QUERY")] + [(i, f"{s:.3f}") for i, s in zip(table["id"], table["score"])]
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(col == 0)
                spine.set_edgecolor("red")
            if col >= len(cells):
                ax.axis("off")
                continue
            i, score = cells[col]
            ax.imshow(as_image_array(files[i]))
            ax.set_title(f"{shorten(names.get(i, i), 18)}\n{score}", fontsize=7)
        axes[row][0].set_ylabel(f"{model}\n{preset}\n{pooling}", fontsize=8)
    return fig


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


def plot_games(data: str | os.PathLike, emb, app_ids=None, *, k: int = 5, exclude=()):
    """One row per game: its banner, then its k nearest banners, titled with names and cosines.

    Args:
        data: the data folder.
        emb: embeddings of one setting.
        app_ids: the games (default: those of ``WELL_KNOWN`` in the collection, then the first ids,
            four in all).
        exclude: ids never shown as neighbours.

    Returns:
        matplotlib Figure.
    """
    from .plot import plot_image_grid

    names = load_names(data)
    if app_ids is None:
        found = [h for q in WELL_KNOWN for h in search_games(names, q, ids=emb.ids)[:1]]
        app_ids = list(dict.fromkeys(found + emb.ids))[:4]
    images, titles = [], []
    for app_id in map(str, app_ids):
        table = find_neighbors(emb, app_id, k=k, exclude=exclude)
        row = [(app_id, "QUERY")] + [(i, f"{s:.3f}") for i, s in zip(table["id"], table["score"])]
        row += [(None, "")] * (k + 1 - len(row))
        for i, score in row:
            images.append(layout.banner_path(data, i) if i else _blank_array())
            titles.append(f"{shorten(names.get(i, i), 20)}\n{score}" if i else "")
    return plot_image_grid(images, titles, ncols=k + 1, width=1.6)


def _blank_array():
    import numpy as np

    return np.full((336, 224, 3), 255, np.uint8)
