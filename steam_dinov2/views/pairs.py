"""Look-alike pairs as a figure: two banners side by side per pair, named, with studio and cosine."""

from __future__ import annotations

import logging
import os

from ..core import layout
from ..embedding.setting import Setting, as_setting
from ..lookalikes import LOOKALIKE_K, find_lookalikes, read_lookalikes
from .explain import overlay_matches
from .grids import plot_image_grid, shorten

logger = logging.getLogger(__name__)


def plot_lookalikes(
    data: str | os.PathLike,
    table=None,
    *,
    setting: Setting | str | None = None,
    n: int = 8,
    explain: bool = False,
    model=None,
):
    """The first ``n`` pairs of a look-alike table, one pair per row, side by side.

    Args:
        data: the data folder (banners).
        table: a table from ``find_lookalikes``; None reads the one last written for ``setting``.
        setting: the setting the table was made with (for ``table=None`` and ``explain``).
        n: at most this many pairs, best first.
        explain: draw over each pair the heatmap of its patches' best match in the other
            (``explain.overlay_matches``; loads the setting's model once).
        model: the setting's model when already loaded (``explain`` only).

    Returns:
        matplotlib Figure; each cell titled with rank, name, studio and (second cell) cosine.

    Raises:
        ValueError: no table given and none written for ``setting``; ``n`` below 1.
    """
    if n < 1:
        raise ValueError(f"n is the number of pairs to draw, at least 1; got {n!r}")
    if table is None:
        table = read_lookalikes(data, setting)
        if table is None:
            raise ValueError(f"no look-alikes for {as_setting(setting).name}: run `lookalikes`")
    rows = table.head(n)
    if rows.empty:
        raise ValueError("no look-alike pairs to draw")
    images, titles = [], []
    for r in rows.itertuples(index=False):
        images += [layout.banner_path(data, r.id_a), layout.banner_path(data, r.id_b)]
        titles.append(f"#{r.rank} {shorten(r.name_a or r.id_a)}\n{shorten(r.studio_a)}")
        titles.append(f"{shorten(r.name_b or r.id_b)}\n{shorten(r.studio_b)}\ncos {r.score:.3f}")
    fig = plot_image_grid(images, titles, ncols=2)  # one pair a row: a pair is never split
    if explain:
        setting = as_setting(setting)
        for i in range(0, len(images), 2):
            overlay_matches(fig.axes[i : i + 2], images[i : i + 2], setting=setting, model=model)
    return fig


def lookalikes_for_site(data, emb, *, include_excluded: bool = False) -> dict:
    """``data/lookalikes.json`` of the static site: ``{"k", "pairs": [[row_a, row_b, cosine,
    studio_a, studio_b], ...]}`` best first, rows into ``emb.ids`` (as ``games.json``), cosines
    to 3 decimals. Damaged metadata gives no pairs and a warning, never a failed export."""
    try:
        table = find_lookalikes(data, emb.setting, include_excluded=include_excluded, write=False)
    except ValueError as e:
        logger.warning("site without look-alikes: %s", e)
        table = None
    row_of = {i: r for r, i in enumerate(emb.ids)}
    pairs = [
        [row_of[int(r.id_a)], row_of[int(r.id_b)], round(float(r.score), 3), r.studio_a, r.studio_b]
        for r in ([] if table is None else table.itertuples(index=False))
        if int(r.id_a) in row_of and int(r.id_b) in row_of
    ]
    return {"k": LOOKALIKE_K, "pairs": pairs}
