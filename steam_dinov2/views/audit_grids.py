"""Figures of an audit: example banners per issue type, named and titled by the issue."""

from __future__ import annotations

import os

from ..audit.audit import audited_types, read_issues
from ..core import layout
from ..core.manifest import load_names
from ..views.grids import escape_mathtext, name_with_id, plot_image_grid


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
            "kept" if a == g else f"= {name_with_id(names.get(str(g)), g, 24)}"
            for a, g in zip(shown["app_id"], shown[group])
        ]
    else:
        shown = hit.sort_values(f"{issue_type}_score").head(n)
        notes = [f"{s:.3f}" for s in shown[f"{issue_type}_score"]]
    titles = [f"{name_with_id(names.get(str(a)), a)}\n{t}" for a, t in zip(shown["app_id"], notes)]
    fig = plot_image_grid(
        [layout.banner_path(data, a) for a in shown["app_id"]], titles, ncols=ncols
    )
    what = issue_type.replace("_", " ")
    fig.suptitle(escape_mathtext(f"{what}: {len(hit)} of {len(issues)} banners"), fontsize=11)
    return fig
