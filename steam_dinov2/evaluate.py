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
``agreement``: for each pair of settings, the mean Jaccard of their top-k sets over shared ids.
Pieces are cached in ``evaluation/cache/<setting>/``, keyed by the embedding cache generation,
a hash of the labels and k: a rerun recomputes only what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from . import files, layout
from .copies import VARIANTS
from .embed import Embeddings, load_embeddings
from .ranking import ideal_gains, rank_rows

# The per-truth scoring lives in ``truths``; these names stay importable from here.
from .truths import (  # noqa: F401
    COLUMNS,
    copy_model,
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
_KEY = b"steam_dinov2.evaluation_key"


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


def _cached(data, setting: str, part: str, key: dict, compute) -> pd.DataFrame:
    """The cached piece when its key matches, else ``compute()`` stored under ``key``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = layout.evaluation_cache_path(data, setting, part)
    try:
        if json.loads((pq.read_schema(path).metadata or {})[_KEY]) == key:
            return pd.read_parquet(path)
    except (OSError, KeyError, ValueError, TypeError):
        pass  # absent, stale or unreadable: recompute
    df = compute()
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {**(table.schema.metadata or {}), _KEY: json.dumps(key).encode()}
    with files.atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    return df


def _digest(obj) -> str:
    if isinstance(obj, np.ndarray):
        raw = np.ascontiguousarray(obj).tobytes() + str(obj.shape).encode()
    else:
        raw = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _neighbors(data, emb: Embeddings, k: int, base_key: dict) -> np.ndarray:
    def compute():
        n = len(emb.ids)
        rows = rank_rows(emb.vectors, emb.vectors, k, self_rows=np.arange(n))
        return pd.DataFrame({"query_id": emb.ids, "neighbors": list(rows)})

    df = _cached(data, emb.setting, "neighbors", base_key, compute)
    n, width = len(emb.ids), min(k, len(emb.ids) - 1)
    try:
        rows = np.stack(df["neighbors"].to_numpy()).astype(np.int64)
        if rows.shape == (n, width) and rows.min() >= 0 and rows.max() < n:
            return rows
    except (KeyError, ValueError, TypeError):
        pass
    logger.warning("damaged evaluation cache of %s: ranking again", emb.setting)
    layout.evaluation_cache_path(data, emb.setting, "neighbors").unlink(missing_ok=True)
    return np.stack(_cached(data, emb.setting, "neighbors", base_key, compute)["neighbors"])


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
    from .embed import images_of
    from .metadata import empty_metadata, read_metadata

    settings = _checked_request(data, settings, truths, variants, k, copies)
    try:
        metadata, no_metadata = read_metadata(data), "no metadata"
    except ValueError as e:  # damaged: the label truths are skipped with the reason
        metadata, no_metadata = empty_metadata(), str(e)
    images = images or layout.banners_dir(data)
    use = "copy" in truths and copies and Path(images).is_dir()
    paths = {i: str(p) for i, p in images_of(data, images).items()} if use else {}
    parts, skipped, tops = [], {}, {}
    options = {"k": k, "copies": copies, "seed": seed, "variants": list(variants)}
    options |= {"weights": weights, "device": device, "no_metadata": no_metadata, "ideal": {}}
    for setting in settings:
        emb = load_embeddings(data, setting)
        if len(emb.ids) < 2:
            skipped[f"{setting}/*"] = f"{len(emb.ids)} banner(s): nothing to rank"
            continue
        base = {"vectors": emb.meta.get("vectors_file", ""), "n": len(emb.ids), "k": k}
        neighbors = _neighbors(data, emb, k, base)
        tops[setting] = (emb.ids, neighbors)
        for truth in truths:
            try:
                part = _score_truth(data, emb, truth, neighbors, base, metadata, paths, options)
            except _Skip as e:
                skipped[f"{setting}/{truth}"] = str(e)
                continue
            if part.empty:
                skipped[f"{setting}/{truth}"] = "no query: no app shares this label with another"
            parts.append(part)
    per_query = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    summary = summarize(per_query)
    agreement = _agreement(tops, k)
    for path, df in (
        (layout.evaluation_summary_path(data), summary),
        (layout.evaluation_agreement_path(data), agreement),
        (layout.evaluation_queries_path(data), per_query),
    ):
        with files.atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    for label, reason in skipped.items():
        logger.info("skipped %s: %s", label, reason)
    return Evaluation(summary, agreement, per_query, skipped)


def _checked_request(data, settings, truths, variants, k: int, copies: int) -> list[str]:
    """The setting names to score; ValueError naming the choices for anything unknown."""
    from .setting import setting_of

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
    if k < 1 or copies < 0:
        raise ValueError(f"k must be >= 1 and copies >= 0, got k={k}, copies={copies}")
    return settings


class _Skip(Exception):
    """A truth that cannot be scored for a setting; the message says why."""


def _score_truth(data, emb, truth, neighbors, base, metadata, paths, o) -> pd.DataFrame:
    """One truth's per-query rows for one setting, from the cache when its key still matches."""
    k, setting = o["k"], emb.setting
    if truth != "copy" and metadata.empty:
        raise _Skip(f"{o['no_metadata']}: run `python -m steam_dinov2 metadata --data DATA`")
    if truth in LABELS:
        sets = label_sets(emb, metadata, LABELS[truth])
        key = {**base, "labels": _digest([sorted(s) for s in sets])}
        return _cached(
            data, setting, truth, key, lambda: score_labels(emb, sets, neighbors, k, truth)
        )
    if truth == "tags":
        tags = tag_vectors(emb, metadata)
        key = {**base, "labels": _digest(tags)}

        def compute():
            if key["labels"] not in o["ideal"]:  # one search per label set, shared by settings
                o["ideal"] = {key["labels"]: ideal_gains(tags, k)}
            return score_tags(emb, tags, neighbors, k, ideal=o["ideal"][key["labels"]])

        return _cached(data, setting, truth, key, compute)
    if not o["copies"]:
        raise _Skip("copies=0")
    ids = set(emb.ids)
    stamps = sorted((i, os.stat(p).st_mtime_ns) for i, p in paths.items() if i in ids)
    key = {**base, **{n: o[n] for n in ("copies", "seed", "variants")}, "images": _digest(stamps)}
    return _cached(data, setting, "copy", key, lambda: _copies(emb, paths, o))


def _copies(emb, paths, o) -> pd.DataFrame:
    from .embed import POOLINGS
    from .preprocess import PRESETS

    if emb.meta.get("preset") not in PRESETS or emb.meta.get("pooling") not in POOLINGS:
        raise _Skip("the cache names an unknown preset or pooling")
    if not any(i in paths for i in emb.ids):
        raise _Skip("none of the setting's banners is in the image folder")
    model, reason = copy_model(emb.meta, weights=o["weights"], device=o["device"])
    if model is None:
        raise _Skip(reason)
    return score_copies(
        emb, model, paths, o["k"], sample=o["copies"], seed=o["seed"], variants=o["variants"]
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


def _agreement(tops: dict, k: int) -> pd.DataFrame:
    rows = []
    for a, b in combinations(sorted(tops), 2):
        (ids_a, nb_a), (ids_b, nb_b) = tops[a], tops[b]
        row_b = {i: r for r, i in enumerate(ids_b)}
        scores = []
        for r, i in enumerate(ids_a):
            if i in row_b:
                sa = {ids_a[x] for x in nb_a[r]}
                sb = {ids_b[x] for x in nb_b[row_b[i]]}
                scores.append(len(sa & sb) / max(len(sa | sb), 1))
        rows.append((a, b, float(np.mean(scores)) if scores else np.nan, len(scores)))
    return pd.DataFrame(rows, columns=["setting_a", "setting_b", f"jaccard@{k}", "n_queries"])
