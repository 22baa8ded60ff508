"""An evaluation as a reader sees it: settings ranked, bars against baselines, agreement heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.manifest import escape_mathtext

# The figure each truth is ranked by: mAP@k for label truths (order of all relevant items in the
# top k), nDCG@k for graded tags, recall@1 for copies (the source must come first).
RANDOM = "(random ranking)"  # the row of baselines in ``rank_settings``
PRIMARY = {
    "franchise": "map",
    "developer": "map",
    "publisher": "map",
    "tags": "ndcg",
    "copy": "recall@1",
}


def _primary(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``summary`` that carry each truth's primary metric."""
    wanted = summary["truth"].map(PRIMARY)
    keep = [
        isinstance(w, str) and (m == w or m.startswith(w + "@"))
        for m, w in zip(summary["metric"], wanted)
    ]
    return summary[keep]


def rank_settings(summary: pd.DataFrame) -> pd.DataFrame:
    """Settings ranked best first by their mean lift over random across truths.

    A truth's lift is (value - baseline) / (1 - baseline) of its ``PRIMARY`` metric: 0 is no
    better than a random ranking, 1 is perfect, so truths of different difficulty weigh the same.

    Returns:
        DataFrame indexed by setting: one column per truth ("<truth> <metric>") with its value,
        then ``lift`` (the mean), sorted by ``lift`` descending, with a ``RANDOM`` row holding
        the baselines (lift 0) among them; empty if ``summary`` is.
    """
    rows = _primary(summary)
    if rows.empty:
        return pd.DataFrame(columns=["lift"])
    rows = rows.assign(
        column=rows["truth"] + " " + rows["metric"],
        lift=(rows["value"] - rows["baseline"]) / (1 - rows["baseline"]).clip(lower=1e-12),
    )
    table = rows.pivot(index="setting", columns="column", values="value")
    table = table[sorted(table.columns, key=lambda c: list(PRIMARY).index(c.split(" ")[0]))]
    table["lift"] = rows.groupby("setting")["lift"].mean()
    baseline = rows.pivot(index="setting", columns="column", values="baseline").mean()
    table.loc[RANDOM] = {**baseline.to_dict(), "lift": 0.0}
    return table.sort_values("lift", ascending=False).rename_axis(columns=None)


def describe_best(ranked: pd.DataFrame) -> str:
    """One sentence naming the best setting of ``rank_settings`` and its margin."""
    ranked = ranked.drop(index=RANDOM, errors="ignore")
    if ranked.empty:
        return "No setting could be scored: see the skipped reasons."
    best, lift = ranked.index[0], ranked["lift"].iloc[0]
    text = f"Best setting by the numbers: {best} (mean lift over random {lift:.3f}"
    if len(ranked) > 1:
        text += f"; next {ranked.index[1]} at {ranked['lift'].iloc[1]:.3f}"
    text += ")."
    return text + (" No setting beats a random ranking here." if lift <= 0 else "")


def plot_evaluation(summary: pd.DataFrame, *, width: float = 4.0):
    """One panel per truth: its primary metric per setting as bars, the random baseline marked.

    Returns:
        matplotlib Figure (no panel if ``summary`` has no primary rows).
    """
    from matplotlib.figure import Figure

    rows = _primary(summary)
    truths = [t for t in PRIMARY if t in set(rows["truth"])]
    settings = sorted(set(rows["setting"]))
    ncols = max(1, min(3, len(truths)))
    nrows = max(1, -(-len(truths) // ncols))
    height = 1.0 + 0.3 * len(settings)
    fig = Figure(figsize=(width * ncols + 2, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(truths) :]:
        ax.axis("off")
    for i, (ax, truth) in enumerate(zip(axes, truths)):
        sub = rows[rows["truth"] == truth].set_index("setting").reindex(settings)
        y = np.arange(len(settings))
        ax.barh(y, sub["value"], color="tab:blue", label="setting")
        ax.scatter(sub["baseline"], y, marker="|", s=300, color="black", label="random", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_yticks(
            y, [escape_mathtext(s) for s in settings] if i % ncols == 0 else [""] * len(y)
        )
        n = int(sub["n_queries"].max()) if sub["n_queries"].notna().any() else 0
        ax.set_title(
            escape_mathtext(f"{truth}: {sub['metric'].dropna().iloc[0]} ({n} queries)"), fontsize=9
        )
    if truths:
        axes[0].legend(loc="lower right", fontsize=7)
    return fig


def plot_agreement(agreement: pd.DataFrame):
    """Heatmap of the mean top-k Jaccard between every pair of settings (1 on the diagonal).

    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure

    column = next((c for c in agreement.columns if c.startswith("jaccard@")), "jaccard@10")
    names = sorted(set(agreement["setting_a"]) | set(agreement["setting_b"]))
    grid = np.eye(len(names))
    pos = {n: i for i, n in enumerate(names)}
    for a, b, v in zip(agreement["setting_a"], agreement["setting_b"], agreement.get(column, [])):
        grid[pos[a], pos[b]] = grid[pos[b], pos[a]] = v
    size = 1.5 + 0.6 * len(names)
    fig = Figure(figsize=(size + 3, size + 1), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    labels = [escape_mathtext(n) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), labels, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            colour = "white" if grid[i, j] < 0.6 else "black"
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(escape_mathtext(f"mean {column} of the top-k sets"), fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
