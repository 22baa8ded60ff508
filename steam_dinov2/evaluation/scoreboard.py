"""What an evaluation says, at a glance: every figure with its interval, settings ranked with a
paired comparison, bars against baselines, agreement heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.manifest import escape_mathtext
from .intervals import MIN_QUERIES, SEED, bootstrap_means, percentile_interval

# The figure each truth is ranked by: ndcg@k for the label truths and the graded tags (a perfect
# ranking scores 1 whatever the number of relevant games, so (value - baseline) / (1 - baseline)
# is a share of the way from random to perfect; map@k cannot reach 1 once a game has more than k
# relevant ones), hit_rate@1 for copies (the source must come first).
RANDOM = "(random ranking)"  # the row of baselines in ``rank_settings``
PRIMARY = {
    "franchise": "ndcg",
    "developer": "ndcg",
    "publisher": "ndcg",
    "tags": "ndcg",
    "copy": "hit_rate@1",
}


def _is_primary(truth: str, metric: str) -> bool:
    wanted = PRIMARY.get(truth.split(":")[0])
    return isinstance(wanted, str) and (metric == wanted or metric.startswith(wanted + "@"))


def rank_settings(evaluation, *, min_queries: int = MIN_QUERIES, seed: int = SEED):
    """Settings ranked best first by their mean lift over random across truths, each lift with
    its 95% interval, compared paired: every setting on the same queries.

    A truth's lift is (value - baseline) / (1 - baseline) of its ``PRIMARY`` metric over the
    queries every setting scored: 0 is no better than a random ranking, 1 is perfect, so truths
    of different difficulty weigh the same. The queries are resampled together for all settings
    (``intervals.bootstrap_means``), so the interval of a difference is that of the same queries.
    A truth with fewer than ``min_queries`` shared queries is shown but left out of the lift.

    Args:
        evaluation: an ``Evaluation`` (its ``per_query`` table).
        min_queries: the fewest queries a truth needs to count.
        seed: of the bootstrap.

    Returns:
        DataFrame indexed by setting, best first: one column per truth ("<truth> <metric>", the
        mean over shared queries), ``lift``, ``lift_low``, ``lift_high`` (its interval),
        ``diff_low``, ``diff_high`` (paired interval of lift minus the top setting's lift),
        ``tied`` (that interval holds 0: not told apart from the top; the top itself is True);
        a ``RANDOM`` row holds the baselines (lift 0). ``attrs["queries"]`` is ``{truth: n}``,
        ``attrs["too_few"]`` the truths left out. Empty when nothing was scored.
    """
    pq = evaluation.per_query
    keep = np.array([_is_primary(t, m) for t, m in zip(pq["truth"], pq["metric"])], dtype=bool)
    rows = pq.loc[keep].assign(base_truth=lambda df: df["truth"].str.split(":").str[0])
    settings = sorted(set(rows["setting"]))
    if not settings:
        return pd.DataFrame(columns=["lift"])
    table = pd.DataFrame(index=pd.Index(settings, name=None))
    baselines, lift_samples, queries, too_few = {}, [], {}, {}
    for truth in [t for t in PRIMARY if t in set(rows["base_truth"])]:
        sub = rows[rows["base_truth"] == truth]
        index = ["truth", "query_id"]
        value = sub.pivot(index=index, columns="setting", values="value")
        value = value.dropna(axis=1, how="all").dropna()  # a setting that skipped the truth
        base = sub.pivot(index=index, columns="setting", values="baseline")
        base = base.loc[value.index, value.columns]
        column = f"{truth} {sub['metric'].iloc[0]}"
        table[column] = value.mean()
        baselines[column] = float(base.to_numpy().mean()) if len(base) else np.nan
        queries[truth] = len(value)
        if len(value) < min_queries:
            too_few[truth] = len(value)
            continue
        names = list(value.columns)
        samples = bootstrap_means(np.hstack([value.to_numpy(), base.to_numpy()]), seed=seed)
        v, b = samples[:, : len(names)], samples[:, len(names) :]
        lift = pd.DataFrame((v - b) / np.clip(1 - b, 1e-12, None), columns=names)
        lift_samples.append(lift.reindex(columns=settings))
        point = (value.mean() - base.mean()) / (1 - base.mean()).clip(lower=1e-12)
        table[f"_lift {truth}"] = point
    lift_cols = [c for c in table.columns if c.startswith("_lift ")]
    table["lift"] = table[lift_cols].mean(axis=1) if lift_cols else np.nan
    table = table.drop(columns=lift_cols)
    for c in ("lift_low", "lift_high", "diff_low", "diff_high"):
        table[c] = np.nan
    table["tied"] = False
    if lift_samples:
        with np.errstate(all="ignore"):
            samples = np.nanmean(np.stack([s.to_numpy() for s in lift_samples]), axis=0)
        low, high = percentile_interval(samples)
        table["lift_low"], table["lift_high"] = low, high
        top = table["lift"].idxmax()
        diff = samples - samples[:, [settings.index(top)]]
        table["diff_low"], table["diff_high"] = percentile_interval(diff)
        table["tied"] = (table["diff_low"] <= 0) & (table["diff_high"] >= 0)
        table.loc[top, ["diff_low", "diff_high", "tied"]] = [0.0, 0.0, True]
    table.loc[RANDOM] = {**baselines, "lift": 0.0, "tied": False}
    table = table.sort_values("lift", ascending=False, na_position="last")
    table.attrs.update(queries=queries, too_few=too_few, min_queries=min_queries)
    return table


def _interval(value, low, high) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def describe_best(ranked: pd.DataFrame) -> str:
    """What ``rank_settings`` supports saying: the best setting when the paired 95% interval of
    its lead over the runner-up excludes 0, else which settings are tied; truths with too few
    queries to tell are named."""
    too_few = ranked.attrs.get("too_few", {})
    need = ranked.attrs.get("min_queries", MIN_QUERIES)
    few = ", ".join(f"{t} ({n})" for t, n in too_few.items())
    note = f" Too few queries to tell (under {need}): {few}, shown but not ranked." if few else ""
    ranked = ranked.drop(index=RANDOM, errors="ignore")
    if ranked.empty:
        return "No setting could be scored: see the skipped reasons."
    if ranked["lift"].isna().all():
        return f"No truth has enough queries to rank settings.{note}"
    best = ranked.index[0]
    lift = _interval(*ranked.loc[best, ["lift", "lift_low", "lift_high"]])
    if len(ranked) == 1:
        text = f"One setting scored: {best} (mean lift over random {lift})."
    elif not ranked["tied"].iloc[1]:
        runner = ranked.index[1]
        gap = ranked.loc[best, "lift"] - ranked.loc[runner, "lift"]
        low, high = -ranked.loc[runner, "diff_high"], -ranked.loc[runner, "diff_low"]
        text = (
            f"Best setting: {best} (mean lift over random {lift}), ahead of {runner} by "
            f"{_interval(gap, low, high)} (paired 95% interval over the same queries)."
        )
    else:
        tied = [s for s in ranked.index if ranked.loc[s, "tied"]]
        text = (
            f"No single best setting: {', '.join(tied)} are tied (the paired 95% interval of "
            f"each one's difference to {best}, which leads at {lift}, includes 0)."
        )
    if ranked.loc[best, "lift_high"] <= 0:
        text += " No setting beats a random ranking here."
    elif ranked.loc[best, "lift_low"] <= 0:
        text += f" Even {best} is not told apart from a random ranking (its interval holds 0)."
    return text + note


def tabulate_evaluation(summary: pd.DataFrame, *, order=None, min_queries: int = MIN_QUERIES):
    """Every figure of ``summary`` as "value [ci_low, ci_high]", one row per truth and setting
    plus the truth's random baseline, one column per metric, and the number of queries
    ("8, too few" under ``min_queries``); settings in ``order`` (e.g. ``rank_settings(...)
    .index``), else as in ``summary``.

    Returns:
        DataFrame indexed by (truth, setting) of strings; empty if ``summary`` is.
    """
    if summary.empty:
        return pd.DataFrame()
    metrics = list(dict.fromkeys(summary["metric"]))
    out = []
    for truth in dict.fromkeys(summary["truth"]):
        sub = summary[summary["truth"] == truth]
        present = list(dict.fromkeys(sub["setting"]))
        ranked = [s for s in (order if order is not None else []) if s in present]
        for setting in ranked + [s for s in present if s not in ranked]:
            mine = sub[sub["setting"] == setting].set_index("metric")
            row = {m: _interval(*mine.loc[m, ["value", "ci_low", "ci_high"]]) for m in mine.index}
            n = int(mine["n_queries"].max())
            row["queries"] = f"{n}, too few" if n < min_queries else str(n)
            out.append(((truth, setting), row))
        base = sub.groupby("metric", sort=False)["baseline"].mean()
        out.append(((truth, RANDOM), {m: f"{v:.3f}" for m, v in base.items()}))
    index = pd.MultiIndex.from_tuples([i for i, _ in out], names=["truth", "setting"])
    table = pd.DataFrame([r for _, r in out], index=index)
    return table.reindex(columns=[*metrics, "queries"]).fillna("")


def _short(name: str) -> str:
    """A setting's name readable on a tick label: one line per part of the cache name."""
    return escape_mathtext(name.replace("__", "\n"))


def plot_evaluation(summary: pd.DataFrame, *, order=None, width: float = 4.0):
    """One panel per truth: its primary metric per setting as bars, one colour per setting in
    every panel, the value printed, the 95% interval drawn, the random baseline marked; the
    copy variants get a panel of their own.

    Args:
        summary: ``Evaluation.summary``.
        order: settings top to bottom (``rank_settings(...).index`` to match the ranked table);
            default by name.

    Returns:
        matplotlib Figure (no panel if ``summary`` has no primary rows).
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    keep = [_is_primary(t, m) for t, m in zip(summary["truth"], summary["metric"])]
    rows = summary.loc[np.array(keep, dtype=bool)]
    truths = [t for t in PRIMARY if t in set(rows["truth"])]
    variants = [t for t in dict.fromkeys(rows["truth"]) if t.startswith("copy:")]
    present = set(rows["setting"])
    settings = [s for s in (order if order is not None else sorted(present)) if s in present]
    colours = dict(zip(settings, colormaps["tab10"].colors * (1 + len(settings) // 10)))
    panels = [(t, [t]) for t in truths] + ([("copy by variant", variants)] if variants else [])
    ncols = max(1, min(3, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    height = 1.2 + 0.35 * len(settings) * max((len(v) for _, v in panels), default=1) ** 0.5
    fig = Figure(figsize=(width * ncols, height * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.axis("off")
    for ax, (title, group) in zip(axes, panels):
        _bars(ax, rows, group, settings, colours)
        sub = rows[rows["truth"].isin(group)]
        metric = sub["metric"].iloc[0]
        n = int(sub.groupby("truth")["n_queries"].max().min())
        few = ", too few to tell" if n < MIN_QUERIES else ""
        per = " each" if len(group) > 1 else ""
        ax.set_title(escape_mathtext(f"{title}: {metric} ({n} queries{per}{few})"), fontsize=9)
    handles = [Patch(color=colours[s], label=escape_mathtext(s)) for s in settings]
    handles.append(Patch(facecolor="none", edgecolor="black", label="random ranking (|)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8)
    return fig


def _bars(ax, rows: pd.DataFrame, group: list[str], settings: list[str], colours: dict) -> None:
    """Horizontal bars of ``settings`` for each truth of ``group`` (one block per truth)."""
    ticks, labels = [], []
    step = len(settings) + (1 if len(group) > 1 else 0)
    for g, truth in enumerate(group):
        sub = rows[rows["truth"] == truth].set_index("setting")
        for s, setting in enumerate(settings):
            y = g * step + s
            if setting not in sub.index:
                continue
            r = sub.loc[setting]
            err = [[r["value"] - r["ci_low"]], [r["ci_high"] - r["value"]]]
            ax.barh(y, r["value"], color=colours[setting], xerr=err, capsize=2, ecolor="0.25")
            ax.plot([r["baseline"]] * 2, [y - 0.45, y + 0.45], color="black", lw=2)
            ax.text(min(r["ci_high"], 1.0) + 0.02, y, f"{r['value']:.2f}", va="center", fontsize=7)
        if len(group) > 1:
            ticks.append(g * step + (len(settings) - 1) / 2)
            labels.append(truth.split(":", 1)[1])
    ax.set_xlim(0, 1.15)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.invert_yaxis()  # the first setting (the best, with order=) on top
    ax.set_yticks(ticks, [escape_mathtext(x) for x in labels], fontsize=7)
    ax.tick_params(axis="y", length=0)


def plot_agreement(agreement: pd.DataFrame, *, order=None):
    """Heatmap of the mean top-k Jaccard between every pair of settings: the lower triangle
    only (the diagonal is 1 by definition, the upper half a mirror), names split over lines.

    Args:
        agreement: ``Evaluation.agreement``.
        order: settings in this order (e.g. ``rank_settings(...).index``); default by name.

    Returns:
        matplotlib Figure.
    """
    from matplotlib.figure import Figure

    column = next((c for c in agreement.columns if c.startswith("jaccard@")), "jaccard@10")
    present = set(agreement["setting_a"]) | set(agreement["setting_b"])
    names = [n for n in (order if order is not None else sorted(present)) if n in present]
    names += sorted(present - set(names))
    pos = {n: i for i, n in enumerate(names)}
    grid = np.full((len(names), len(names)), np.nan)
    for a, b, v in zip(agreement["setting_a"], agreement["setting_b"], agreement.get(column, [])):
        i, j = sorted((pos[a], pos[b]), reverse=True)
        grid[i, j] = v  # row below column: the lower triangle
    grid = grid[1:, :-1]  # the first row and the last column would hold only the diagonal
    size = 1.0 + 1.1 * max(1, len(names) - 1)
    fig = Figure(figsize=(size + 2.5, size + 1.2), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names) - 1), [_short(n) for n in names[:-1]], fontsize=7)
    ax.set_yticks(range(len(names) - 1), [_short(n) for n in names[1:]], fontsize=7)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                colour = "white" if grid[i, j] < 0.6 else "black"
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color=colour)
    ax.set_frame_on(False)
    ax.set_title(escape_mathtext(f"mean {column}: how alike two settings rank"), fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
