"""A setting's retrieval quality: catalogue ground truth and planted copies, beside random baselines,
each figure with a 95% interval.

Every cached setting (``embeddings/<setting>/``) ranks the collection for each of its banners by
cosine (exact, faiss), the banner's own id excluded; ties in score go to the earlier row of the
cache. By default the collection is what users see: the banners the audit excluded
(``load_exclusions``, as ``match`` and the site apply them) are left out, never a neighbour and
never a query; ``include_excluded=True`` scores every banner. Truths (``TRUTHS``):

* ``franchise``, ``developer``, ``publisher`` (from ``DATA/metadata.parquet``): a query is an app
  that shares a label with at least one other app of the collection; relevant = those others.
  hit_rate@1, hit_rate@k, recall@k, map@k and ndcg@k as ranx and trec_eval define them
  (``metrics``).
* ``tags``: graded relevance = cosine of the two apps' tag-weight vectors (top store tags, weights
  as the store gives them); ndcg@k. A cosine rather than a weighted Jaccard because it is exact at
  N=30,000 with one faiss search for the ideal ranking, where all-pairs Jaccard is not.
* ``copy``: a fixed-seed sample of banners, each turned into the ``copies.VARIANTS``, embedded with
  the same setting's model and searched against the collection; hit_rate@1 that the source comes
  first (``copy:<variant>`` per kind, ``copy`` over all). The model is loaded only for a registry
  name with its pretrained or random weights, or with the weights file the caller passes.

Each figure has its exact expected value under a random ranking (``metrics``) as ``baseline`` and
a 95% percentile-bootstrap interval over its queries (``intervals``, fixed seed).
``agreement`` (``ranking.agreement``): for each pair of settings, the mean Jaccard of their top-k
sets over shared ids. Pieces are cached in ``evaluation/cache/<setting>/`` (``evaluation_cache``),
keyed by the embedding cache generation, the banners left out, a hash of the labels, k and the
version of the definitions: a rerun recomputes only what changed (pieces of a version before the
field's definitions are computed once more).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pandas as pd

from ..audit.audit import load_exclusions
from ..core import files, layout
from ..core.progress import tqdm
from ..embedding.cache import content_hash
from ..embedding.embed import images_of, load_embeddings
from ..embedding.pooling import POOLINGS
from ..embedding.preprocess import PRESETS
from ..embedding.setting import setting_of
from ..search import check_k
from ..steam.metadata import empty_metadata, read_metadata
from .cache import cached_neighbors, cached_table, digest, piece_problem
from .copies import VARIANTS
from .intervals import SEED as BOOTSTRAP_SEED
from .intervals import bootstrap_means, percentile_interval
from .ranking import agreement, ideal_gains
from .truths import (
    COLUMNS,
    copy_model,
    label_gap,
    label_sets,
    score_copies,
    score_labels,
    score_tags,
    tag_vectors,
)

logger = logging.getLogger(__name__)

TRUTHS = ("franchise", "developer", "publisher", "tags", "copy")
LABELS = {"franchise": "franchises", "developer": "developers", "publisher": "publishers"}
COPY_SAMPLE = 200
SEED = 0
# Bumped when a per-query figure changes meaning: 2 = hit_rate/recall/map/ndcg as ranx defines
# them (1 called a hit rate recall and divided AP by min(k, n_rel)).
DEFINITIONS = 2


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What ``evaluate_settings`` wrote.

    Attributes:
        summary: setting, truth, metric, value (mean over queries), ci_low, ci_high (its 95%
            bootstrap interval over queries, ``intervals``), baseline (mean expected value under
            a random ranking), n_queries, exclusions ("applied": the audit's excluded banners
            were left out; "included"), n_excluded (banners of the setting left out).
        agreement: setting_a, setting_b, jaccard@k (mean over shared ids), n_queries.
        per_query: one row per query and metric: setting, truth, query_id, n_relevant (label
            truths: relevant candidates; tags: candidates with a positive gain, counted up to k;
            copies: 1), first_rank (of the first relevant item within k, 0 if none), metric,
            value, baseline.
        skipped: ``{"setting/truth": reason}`` for what could not be scored.
        exclusions: ``{id: [reasons]}`` left out of the collection ({} with include_excluded).
    """

    summary: pd.DataFrame
    agreement: pd.DataFrame
    per_query: pd.DataFrame
    skipped: dict[str, str]
    exclusions: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Run:
    """What every setting of one ``evaluate_settings`` call is scored with (see there)."""

    data: str | os.PathLike
    k: int
    copies: int
    seed: int
    variants: list[str]
    weights: str | os.PathLike | None
    device: str
    metadata: pd.DataFrame  # empty when absent or damaged
    no_metadata: str  # why it is empty
    paths: dict[str, str]  # id -> image, for the copies
    exclude: frozenset  # ids left out of every setting's collection
    progress: bool
    ideal: dict = dataclasses.field(default_factory=dict)  # tag digest -> ideal gains
    hashes: dict = dataclasses.field(default_factory=dict)  # id -> content hash, read once


def _content_of(run: _Run, ids) -> list[tuple[int, str]]:
    """``(id, content hash)`` of the images the copies are made from: a folder copied elsewhere
    (a Drive round trip, a fresh clone, new mtimes) keeps its cached copy scores."""
    for i in ids:
        if i in run.paths and i not in run.hashes:
            run.hashes[i] = content_hash(run.paths[i])
    return sorted((i, run.hashes[i]) for i in ids if i in run.paths)


def evaluate_settings(
    data: str | os.PathLike,
    settings=None,
    *,
    truths=TRUTHS,
    k: int = 10,
    copies: int = COPY_SAMPLE,
    seed: int = SEED,
    variants=tuple(VARIANTS),
    images: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    include_excluded: bool = False,
    progress: bool = True,
) -> Evaluation:
    """Score cached settings against every truth; write ``DATA/evaluation/``.

    Args:
        data: the data folder (embedding caches, ``metadata.parquet``, banners).
        settings: setting names (``layout.list_settings``) or ``Setting`` values; default every
            cached one.
        truths: among ``TRUTHS``.
        k: ranks looked at (recall@k, mAP@k, nDCG@k, agreement).
        copies: banners sampled for ``copy`` (seeded by ``seed``); 0 skips it.
        variants: kinds of copy, among ``copies.VARIANTS``.
        images: banner folder for the copies (default ``DATA/banners``).
        weights: the local weights file of a setting made with one (for ``copy``).
        device: where copies are embedded.
        include_excluded: score every banner; by default those of the audit's exclusion list
            (``load_exclusions``) are left out, as ``match`` and the site leave them out.
        progress: bars over the settings and truths, and over the copies being embedded (their
            count first, the time left after the first batch).

    Returns:
        An ``Evaluation``; a truth that cannot be scored (no metadata, no query, no model) is
        listed in ``skipped`` with the reason, never raised.
    """

    settings = _checked_request(data, settings, truths, variants, k, copies)
    images = images or layout.banners_dir(data)
    use = "copy" in truths and copies and Path(images).is_dir()
    paths = {i: str(p) for i, p in images_of(data, images).items()} if use else {}
    metadata, no_metadata = _read_labels(data)
    exclusions = {} if include_excluded else load_exclusions(data)
    run = _Run(
        data=data,
        k=k,
        copies=copies,
        seed=seed,
        variants=list(variants),
        weights=weights,
        device=device,
        metadata=metadata,
        no_metadata=no_metadata,
        paths=paths,
        exclude=frozenset(exclusions),
        progress=progress,
    )
    parts, skipped, tops, left_out = [], {}, {}, {}
    steps = len(settings) * len(truths)
    with tqdm(total=steps, desc="evaluate", unit="truth", disable=not progress) as bar:
        for setting in settings:
            top = _score_setting(run, setting, truths, parts, skipped, bar)
            if top is not None:
                tops[setting], left_out[setting] = top[:2], top[2]
    per_query = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    summary = summarize(per_query).assign(
        exclusions="included" if include_excluded else "applied",
        n_excluded=lambda df: df["setting"].map(left_out).fillna(0).astype("int64"),
    )
    result = Evaluation(summary, agreement(tops, k), per_query, skipped, exclusions)
    _write(data, result)
    return result


def _read_labels(data) -> tuple[pd.DataFrame, str]:
    """``(metadata, why empty)``: a damaged table reads as empty, its reason kept for the skips."""

    try:
        return read_metadata(data), "no metadata"
    except ValueError as e:  # damaged: the label truths are skipped with the reason
        return empty_metadata(), str(e)


def _score_setting(run: _Run, setting: str, truths, parts: list, skipped: dict, bar):
    """Append one setting's per-query rows of every truth to ``parts`` (reasons for what could
    not be scored to ``skipped``); returns its ``(ids, neighbours, number left out)``, None when
    too small."""
    emb = load_embeddings(run.data, setting)
    gone = sorted(i for i in emb.ids if i in run.exclude)
    if gone:  # what users see: the audit's excluded banners are in no list
        keep = [r for r, i in enumerate(emb.ids) if i not in run.exclude]
        emb = dataclasses.replace(emb, ids=[emb.ids[r] for r in keep], vectors=emb.vectors[keep])
    if len(emb.ids) < 2:
        skipped[f"{setting}/*"] = f"{len(emb.ids)} banner(s): nothing to rank"
        bar.update(len(truths))
        return None
    base = {**emb.made_from(), "n": len(emb.ids), "k": run.k, "left_out": digest(gone)}
    bar.set_postfix_str(f"{setting}: neighbours", refresh=True)
    neighbors = cached_neighbors(run.data, emb, run.k, base)
    for truth in truths:
        bar.set_postfix_str(f"{setting}: {truth}", refresh=True)
        try:
            part = _score_truth(run, emb, truth, neighbors, {**base, "definitions": DEFINITIONS})
        except _Skip as e:
            skipped[f"{setting}/{truth}"] = str(e)
            continue
        finally:
            bar.update(1)
        if part.empty:
            skipped[f"{setting}/{truth}"] = "no query: no app shares this label with another"
        parts.append(part)
    return emb.ids, neighbors, len(gone)


def _write(data, result: Evaluation) -> None:
    """The summary, agreement and per-query tables into ``DATA/evaluation/`` (atomically)."""
    for path, df in (
        (layout.evaluation_summary_path(data), result.summary),
        (layout.evaluation_agreement_path(data), result.agreement),
        (layout.evaluation_queries_path(data), result.per_query),
    ):
        with files.atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    for label, reason in result.skipped.items():
        logger.info("skipped %s: %s", label, reason)


def _checked_request(data, settings, truths, variants, k: int, copies: int) -> list[str]:
    """The setting names to score; ValueError naming the choices for anything unknown."""

    cached = layout.list_settings(data)
    if not cached:
        raise ValueError(f"no embeddings in {data}: run `embed` first")
    settings = cached if settings is None else list(dict.fromkeys(map(setting_of, settings)))
    for s in settings:
        if s not in cached:
            raise ValueError(
                f"no cached setting {s!r} in {data}; cached: {', '.join(cached) or 'none (run embed)'}"
            )
    bad = [t for t in truths if t not in TRUTHS] + [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(
            f"unknown truth or variant {bad[0]!r}; truths: {', '.join(TRUTHS)}; variants: {', '.join(VARIANTS)}"
        )
    check_k(k)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise ValueError(f"copies is a number of banners, at least 0; got {copies!r}")
    return settings


class _Skip(Exception):
    """A truth that cannot be scored for a setting; the message says why."""


def _score_truth(run: _Run, emb, truth: str, neighbors, base: dict) -> pd.DataFrame:
    """One truth's per-query rows for one setting, from the cache when its key still matches."""
    k, setting, data = run.k, emb.setting, run.data

    def check(piece):
        return piece_problem(piece, setting, emb.ids, COLUMNS)

    if truth != "copy" and (why := label_gap(emb.ids, run.metadata, run.no_metadata)):
        raise _Skip(why)
    if truth in LABELS:
        sets = label_sets(emb, run.metadata, LABELS[truth])
        key = {**base, "labels": digest([sorted(s) for s in sets])}
        return cached_table(
            data, setting, truth, key, lambda: score_labels(emb, sets, neighbors, k, truth), check
        )
    if truth == "tags":
        tags = tag_vectors(emb, run.metadata)
        key = {**base, "labels": digest(tags)}

        def compute():
            if key["labels"] not in run.ideal:  # one search per label set, shared by settings
                run.ideal = {key["labels"]: ideal_gains(tags, k)}
            return score_tags(emb, tags, neighbors, k, ideal=run.ideal[key["labels"]])

        return cached_table(data, setting, truth, key, compute, check)
    if not run.copies:
        raise _Skip("copies=0")
    sample = {"copies": run.copies, "seed": run.seed, "variants": run.variants}
    key = {**base, **sample, "images": digest(_content_of(run, emb.ids))}
    return cached_table(data, setting, "copy", key, lambda: _copies(run, emb), check)


def _copies(run: _Run, emb) -> pd.DataFrame:

    if emb.meta.get("preset") not in PRESETS or emb.meta.get("pooling") not in POOLINGS:
        raise _Skip("the cache names an unknown preset or pooling")
    if not any(i in run.paths for i in emb.ids):
        raise _Skip("none of the setting's banners is in the image folder")
    model, reason = copy_model(emb.meta, weights=run.weights, device=run.device)
    if model is None:
        raise _Skip(reason)
    return score_copies(
        emb,
        model,
        run.paths,
        run.k,
        sample=run.copies,
        seed=run.seed,
        variants=run.variants,
        progress=run.progress,
    )


def summarize(per_query: pd.DataFrame, *, seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """One row per (setting, truth, metric): mean value, its 95% bootstrap interval over queries
    (ci_low, ci_high; the metrics of one truth resampled together, seeded), mean baseline,
    number of queries; plus ``copy`` rows over every variant together (a query there is one
    banner's one variant)."""
    df = per_query.assign(_src=per_query["truth"])
    copies = df[df["truth"].str.startswith("copy:")].assign(truth="copy")
    df = pd.concat([df, copies], ignore_index=True)
    rows = []
    for (setting, truth), group in df.groupby(["setting", "truth"], sort=False):
        wide = group.pivot(index=["_src", "query_id"], columns="metric", values="value")
        metrics = list(dict.fromkeys(group["metric"]))
        wide = wide[metrics]
        low, high = percentile_interval(bootstrap_means(wide.to_numpy(), seed=seed))
        base = group.groupby("metric", sort=False)["baseline"].mean()
        for j, metric in enumerate(metrics):
            column = wide[metric]
            rows.append(
                (setting, truth, metric, column.mean(), low[j], high[j], base[metric], len(column))
            )
    columns = ["setting", "truth", "metric", "value", "ci_low", "ci_high", "baseline", "n_queries"]
    out = pd.DataFrame(rows, columns=columns).astype({"n_queries": "int64"})
    order = {t: i for i, t in enumerate([*TRUTHS, *(f"copy:{v}" for v in VARIANTS)])}
    rank = out["truth"].map(order).fillna(len(order))
    return (
        out.assign(_r=rank)
        .sort_values(["setting", "_r"], kind="stable")
        .drop(columns="_r")
        .reset_index(drop=True)
    )
