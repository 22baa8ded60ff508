"""Look-alike pairs as a figure: two banners side by side per pair, named, with studio and cosine."""

from __future__ import annotations

import os

from ..core import layout
from ..embedding.setting import Setting, as_setting
from ..lookalikes import read_lookalikes
from .explain import overlay_matches
from .grids import plot_image_grid, shorten


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
