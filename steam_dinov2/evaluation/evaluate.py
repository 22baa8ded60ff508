"""A setting's retrieval quality: catalogue ground truth and planted copies, beside random baselines.

Every cached setting (``embeddings/<setting>/``) ranks the whole collection for each of its
banners by cosine (exact, faiss), the banner's own id excluded; ties in score go to the earlier
row of the cache. Truths (``TRUTHS``):

* ``franchise``, ``developer``, ``publisher`` (from ``DATA/metadata.parquet``): a query is an app
  that shares a label with at least one other app of the collection; relevant = those others.
  recall@1, recall@k and mAP@k (``metrics`` defines them: recall@k is a hit rate, AP@k divides
  by min(k, number relevant)).
* ``tags``: graded relevance = cosine of the two apps' tag-weight vectors (top store tags, weights
  as the store gives them); nDCG@k. A cosine rather than a weighted Jaccard because it is exact at
  N=30,000 with one faiss search for the ideal ranking, where all-pairs Jaccard is not.
* ``copy``: a fixed-seed sample of banners, each turned into the ``copies.VARIANTS``, embedded with
  the same setting's model and searched against the collection; recall@1 that the source comes
  first (``copy:<variant>`` per kind, ``copy`` over all). The model is loaded only for a registry
  name with its pretrained or random weights, or with the weights file the caller passes.

Each figure has its exact expected value under a random ranking (``metrics``) as ``baseline``.
``agreement`` (``ranking.agreement``): for each pair of settings, the mean Jaccard of their top-k
sets over shared ids. Pieces are cached in ``evaluation/cache/<setting>/`` (``evaluation_cache``),
keyed by the embedding cache generation, a hash of the labels and k: a rerun recomputes only what
changed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pandas as pd

from ..core import files, layout
from ..embedding.cache import content_hash
from ..embedding.embed import images_of, load_embeddings
from ..embedding.pooling import POOLINGS
from ..embedding.preprocess import PRESETS
from ..embedding.setting import setting_of
from ..search import check_k
from ..steam.metadata import empty_metadata, read_metadata
from .cache import cached_neighbors, cached_table, digest
from .copies import VARIANTS
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


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What ``evaluate_settings`` wrote.

    Attributes:
        summary: setting, truth, metric, value (mean over queries), baseline (mean expected value
            under a random ranking), n_queries.
        agreement: setting_a, setting_b, jaccard@k (mean over shared ids), n_queries.
        per_query: one row per query and metric: setting, truth, query_id, n_relevant (label
            truths: relevant candidates; tags: candidates with a positive gain, counted up to k;
            copies: 1), first_rank (of the first relevant item within k, 0 if none), metric,
            value, baseline.
        skipped: ``{"setting/truth": reason}`` for what could not be scored.
    """

    summary: pd.DataFrame
    agreement: pd.DataFrame
    per_query: pd.DataFrame
    skipped: dict[str, str]


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

    Returns:
        An ``Evaluation``; a truth that cannot be scored (no metadata, no query, no model) is
        listed in ``skipped`` with the reason, never raised.
    """

    settings = _checked_request(data, settings, truths, variants, k, copies)
    images = images or layout.banners_dir(data)
    use = "copy" in truths and copies and Path(images).is_dir()
    paths = {i: str(p) for i, p in images_of(data, images).items()} if use else {}
    metadata, no_metadata = _read_labels(data)
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
    )
    parts, skipped, tops = [], {}, {}
    for setting in settings:
        top = _score_setting(run, setting, truths, parts, skipped)
        if top is not None:
            tops[setting] = top
    per_query = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    result = Evaluation(summarize(per_query), agreement(tops, k), per_query, skipped)
    _write(data, result)
    return result


def _read_labels(data) -> tuple[pd.DataFrame, str]:
    """``(metadata, why empty)``: a damaged table reads as empty, its reason kept for the skips."""

    try:
        return read_metadata(data), "no metadata"
    except ValueError as e:  # damaged: the label truths are skipped with the reason
        return empty_metadata(), str(e)


def _score_setting(run: _Run, setting: str, truths, parts: list, skipped: dict):
    """Append one setting's per-query rows of every truth to ``parts`` (reasons for what could
    not be scored to ``skipped``); returns its ``(ids, neighbours)``, None when too small."""
    emb = load_embeddings(run.data, setting)
    if len(emb.ids) < 2:
        skipped[f"{setting}/*"] = f"{len(emb.ids)} banner(s): nothing to rank"
        return None
    base = {**emb.made_from(), "n": len(emb.ids), "k": run.k}
    neighbors = cached_neighbors(run.data, emb, run.k, base)
    for truth in truths:
        try:
            part = _score_truth(run, emb, truth, neighbors, base)
        except _Skip as e:
            skipped[f"{setting}/{truth}"] = str(e)
            continue
        if part.empty:
            skipped[f"{setting}/{truth}"] = "no query: no app shares this label with another"
        parts.append(part)
    return emb.ids, neighbors


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
    if truth != "copy" and (why := label_gap(emb.ids, run.metadata, run.no_metadata)):
        raise _Skip(why)
    if truth in LABELS:
        sets = label_sets(emb, run.metadata, LABELS[truth])
        key = {**base, "labels": digest([sorted(s) for s in sets])}
        return cached_table(
            data, setting, truth, key, lambda: score_labels(emb, sets, neighbors, k, truth)
        )
    if truth == "tags":
        tags = tag_vectors(emb, run.metadata)
        key = {**base, "labels": digest(tags)}

        def compute():
            if key["labels"] not in run.ideal:  # one search per label set, shared by settings
                run.ideal = {key["labels"]: ideal_gains(tags, k)}
            return score_tags(emb, tags, neighbors, k, ideal=run.ideal[key["labels"]])

        return cached_table(data, setting, truth, key, compute)
    if not run.copies:
        raise _Skip("copies=0")
    sample = {"copies": run.copies, "seed": run.seed, "variants": run.variants}
    key = {**base, **sample, "images": digest(_content_of(run, emb.ids))}
    return cached_table(data, setting, "copy", key, lambda: _copies(run, emb))


def _copies(run: _Run, emb) -> pd.DataFrame:

    if emb.meta.get("preset") not in PRESETS or emb.meta.get("pooling") not in POOLINGS:
        raise _Skip("the cache names an unknown preset or pooling")
    if not any(i in run.paths for i in emb.ids):
        raise _Skip("none of the setting's banners is in the image folder")
    model, reason = copy_model(emb.meta, weights=run.weights, device=run.device)
    if model is None:
        raise _Skip(reason)
    return score_copies(
        emb, model, run.paths, run.k, sample=run.copies, seed=run.seed, variants=run.variants
    )


def summarize(per_query: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, truth, metric): mean value, mean baseline, number of queries; plus
    ``copy`` rows over every variant together."""
    df = per_query
    copies = df[df["truth"].str.startswith("copy:")].assign(truth="copy")
    df = pd.concat([df, copies], ignore_index=True)
    out = df.groupby(["setting", "truth", "metric"], sort=False).agg(
        value=("value", "mean"), baseline=("baseline", "mean"), n_queries=("value", "size")
    )
    out = out.reset_index().astype({"n_queries": "int64"})
    order = {t: i for i, t in enumerate([*TRUTHS, *(f"copy:{v}" for v in VARIANTS)])}
    rank = out["truth"].map(order).fillna(len(order))
    return (
        out.assign(_r=rank)
        .sort_values(["setting", "_r"], kind="stable")
        .drop(columns="_r")
        .reset_index(drop=True)
    )
