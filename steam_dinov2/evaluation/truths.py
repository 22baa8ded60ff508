"""Per-query scores of one setting against one truth: shared labels (hit rate, recall, mAP,
nDCG), tag cosines (nDCG) and planted copies (hit rate); ``evaluate`` caches and sums them up (its docstring defines each)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core import files
from ..embedding.embed import Embeddings
from ..embedding.models import MODELS, weights_tag
from ..embedding.setting import Setting
from ..steam.catalog import LABEL_COLUMNS
from .copies import embed_variants
from .metrics import (
    average_precision_at_k,
    binary_ideal,
    dcg_at_k,
    hit_rate_at_k,
    ndcg_at_k,
    random_average_precision_at_k,
    random_hit_rate_at_k,
    random_ndcg_at_k,
    random_recall_at_k,
    recall_at_k,
)
from .ranking import ideal_gains, rank_rows

COLUMNS = [
    "setting",
    "truth",
    "query_id",
    "n_relevant",
    "first_rank",
    "metric",
    "value",
    "baseline",
]


def frame(setting, truth, ids, n_rel, first, metrics: dict) -> pd.DataFrame:
    parts = [
        pd.DataFrame(
            {
                "setting": setting,
                "truth": truth,
                "query_id": ids,
                "n_relevant": n_rel,
                "first_rank": first,
                "metric": name,
                "value": value,
                "baseline": base,
            }
        )
        for name, (value, base) in metrics.items()
    ]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    return df.astype({"n_relevant": "int64", "first_rank": "int32", "query_id": "int64"})


def first_rank(rel: np.ndarray) -> np.ndarray:
    hit = rel > 0
    return np.where(hit.any(1), hit.argmax(1) + 1, 0)


def label_gap(ids: list[int], metadata: pd.DataFrame, no_metadata: str) -> str:
    """Why the label truths (all but ``copy``) cannot score the collection ``ids``, "" when they
    can: it holds no Steam app (own images, ``import-folder``, have no store page), there is no
    metadata (``no_metadata`` says why), or the metadata has no labels for its apps."""
    fetch = "run `python -m steam_dinov2 metadata --data DATA`"
    apps = {int(i) for i in ids if files.is_steam_id(i)}
    if not apps:
        return (
            "the collection holds no Steam apps (own images, e.g. from import-folder, have no "
            "store page, hence no labels): only the copy truth applies"
        )
    if metadata.empty:
        return f"{no_metadata}: {fetch}"
    rows = metadata[metadata["app_id"].isin(apps)]
    if rows.empty:
        return f"metadata has no row for the collection's {len(apps)} Steam apps: {fetch}"
    if not any(len(v) for c in (*LABEL_COLUMNS, "tagids") for v in rows[c]):
        return (
            "metadata holds no labels for the collection's Steam apps (the store lists none): "
            "only the copy truth applies"
        )
    return ""


def label_sets(emb: Embeddings, metadata: pd.DataFrame, column: str) -> list[frozenset]:
    by_id = {int(a): v for a, v in zip(metadata["app_id"], metadata[column])}
    return [frozenset(str(x).casefold() for x in by_id.get(i, [])) for i in emb.ids]


def score_labels(emb: Embeddings, labels: list[frozenset], neighbors: np.ndarray, k: int, truth):
    """Per-query hit_rate@1, hit_rate@k, recall@k, map@k, ndcg@k of one label truth (the metrics
    as ``metrics`` defines them, relevant = shares a label)."""
    n = len(emb.ids)
    members: dict[str, set[int]] = {}
    for row, ls in enumerate(labels):
        for label in ls:
            members.setdefault(label, set()).add(row)
    memo: dict[frozenset, int] = {}
    n_rel = np.zeros(n, np.int64)
    for row, ls in enumerate(labels):
        if ls and ls not in memo:
            memo[ls] = len(set().union(*(members[x] for x in ls))) - 1
        n_rel[row] = memo.get(ls, 0)
    q = np.flatnonzero(n_rel > 0)
    rel = np.zeros((len(q), neighbors.shape[1]), np.float64)
    for j, row in enumerate(q):
        mine = labels[row]
        rel[j] = [not mine.isdisjoint(labels[r]) for r in neighbors[row]]
    m, r = n - 1, n_rel[q]
    ideal = binary_ideal(r, k)
    metrics = {
        "hit_rate@1": (hit_rate_at_k(rel, 1), random_hit_rate_at_k(r, m, 1)),
        f"hit_rate@{k}": (hit_rate_at_k(rel, k), random_hit_rate_at_k(r, m, k)),
        f"recall@{k}": (recall_at_k(rel, r, k), random_recall_at_k(r, m, k)),
        f"map@{k}": (average_precision_at_k(rel, r, k), random_average_precision_at_k(r, m, k)),
        f"ndcg@{k}": (ndcg_at_k(rel, ideal, k), random_ndcg_at_k(r / max(m, 1), ideal, m, k)),
    }
    ids = [emb.ids[r] for r in q]
    return frame(emb.setting, truth, ids, n_rel[q], first_rank(rel), metrics)


def tag_vectors(emb: Embeddings, metadata: pd.DataFrame) -> np.ndarray:
    """(N, T) float32 tag-weight vectors of the collection's apps, rows L2-normalised (0 if none)."""
    by_id = {
        int(a): (list(t), list(w))
        for a, t, w in zip(metadata["app_id"], metadata["tagids"], metadata["tag_weights"])
    }
    vocab = sorted({int(t) for tags, _ in by_id.values() for t in tags})
    col = {t: j for j, t in enumerate(vocab)}
    out = np.zeros((len(emb.ids), len(vocab)), np.float32)
    for row, i in enumerate(emb.ids):
        for t, w in zip(*by_id.get(i, ([], []))):
            out[row, col[int(t)]] = float(w) if np.isfinite(w) and w > 0 else 0.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def _gains(tags: np.ndarray, queries: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """(Q, k) tag cosines of each query row with its ranked rows, one rank at a time (bounded)."""
    out = np.zeros(ranked.shape, np.float64)
    for j in range(ranked.shape[1]):
        out[:, j] = (tags[queries] * tags[ranked[:, j]]).sum(1)
    return out


def score_tags(emb: Embeddings, tags: np.ndarray, neighbors: np.ndarray, k: int, ideal=None):
    """Per-query nDCG@k against tag-cosine gains (see the module docstring); ``ideal`` is
    ``ideal_gains(tags, k)`` when already known (it depends on the labels, not the setting)."""
    n = len(emb.ids)
    ideal = ideal_gains(tags, k) if ideal is None else ideal
    q = np.flatnonzero(dcg_at_k(ideal, k) > 0)
    gains = _gains(tags, q, neighbors[q])
    mean_gain = (tags[q] @ tags.sum(0) - (tags[q] ** 2).sum(1)) / max(n - 1, 1)
    baseline = random_ndcg_at_k(mean_gain, ideal[q], n - 1, k)
    metrics = {f"ndcg@{k}": (ndcg_at_k(gains, ideal[q], k), baseline)}
    # Candidates with a positive gain, counted up to k (all of them would cost another N x N pass).
    n_rel = (ideal[q] > 0).sum(1)
    return frame(emb.setting, "tags", [emb.ids[r] for r in q], n_rel, first_rank(gains), metrics)


def copy_model(meta: dict, *, weights=None, device="auto"):
    """``(model, "")`` for the cache's setting, or ``(None, reason)`` when it may not be loaded.

    The model name comes from the cache (untrusted): only a registry name is loaded, with its
    pretrained weights, random weights, or ``weights`` when that file is the one the cache names.
    """

    name, tag = meta.get("model"), meta.get("weights")
    if name not in MODELS:
        return None, f"the cache's model {name!r} is not a registry name (see `models`)"
    mine = weights is not None and weights_tag(weights=weights) == tag
    try:
        # Only the model, its weights and its precision (copies are embedded as the collection
        # was) matter here: preset and pooling are the caller's. No precision: an older cache.
        precision, file = meta.get("precision", "fp32"), weights if mine else None
        setting = Setting(name, weights=tag, precision=precision, weights_file=file)
        return setting.load_model(device=device), ""
    except ValueError as e:  # a weights file the caller did not pass, or an unknown tag
        if str(tag).startswith("w-"):
            return (
                None,
                f"made with a local weights file ({tag}): pass that file as weights (--weights)",
            )
        return None, f"could not load {name}: {e}"
    except Exception as e:  # no internet, no weights, out of memory: a skip to report
        return None, f"could not load {name}: {type(e).__name__}: {files.clip_text(e, 160)}"


def score_copies(
    emb, model, paths: dict[str, str], k: int, *, sample, seed, variants, progress=False
):
    """Per-query hit_rate@1 of planted copies (``copy:<variant>`` rows; see the module docstring)."""

    ids = sorted(i for i in emb.ids if i in paths)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(ids), size=min(sample, len(ids)), replace=False).tolist())
    chosen = [ids[c] for c in chosen]
    # The cache's own setting (``copy_model`` checked its model and weights, the caller its
    # preset and pooling): the variants are embedded as the collection was.
    meta = emb.meta
    setting = Setting.from_meta(meta)
    vectors, sources, kinds = embed_variants(
        [paths[i] for i in chosen],
        setting,
        model=model,
        variants=variants,
        progress=progress,
        desc=f"copies {emb.setting} ({len(chosen)} banners x {len(variants)} variants)",
    )
    row_of = {i: r for r, i in enumerate(emb.ids)}
    source_rows = np.array([row_of[chosen[s]] for s in sources], np.int64)
    ranked = rank_rows(emb.vectors, vectors, k)
    rel = (ranked == source_rows[:, None]).astype(np.float64)
    first, kinds = first_rank(rel), np.asarray(kinds, dtype=object)
    base = np.full(len(rel), 1.0 / len(emb.ids))
    parts = []
    for v in variants:
        sel = kinds == v
        ids_v = [chosen[s] for s in sources[sel]]
        metrics = {"hit_rate@1": (hit_rate_at_k(rel[sel], 1), base[sel])}
        parts.append(frame(emb.setting, f"copy:{v}", ids_v, 1, first[sel], metrics))
    return pd.concat(parts, ignore_index=True)
