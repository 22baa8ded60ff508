"""Ranking metrics per query, and their exact expected values under a random ranking.

A query's candidates are the M other items of the collection; a ranking lists k' = min(k, M) of
them, best first. Inputs are per-query arrays:

* ``rel``: (Q, k) relevance of the ranked items in rank order, 0/1 for labels, a gain >= 0 for
  graded truths; slots past the end of a short ranking hold 0.
* ``n_rel``: (Q,) number of relevant candidates among the M (a query needs at least one).

Definitions (those of image retrieval, e.g. the Recall@K of metric learning and mAP@k of
landmark retrieval):

* recall@k: 1 if a relevant item is in the top k, else 0 (a hit rate).
* AP@k: sum over i <= k of P@i * rel_i, divided by min(k, n_rel), so a perfect ranking scores 1
  even when the query has fewer than k or more than k relevant candidates.
* nDCG@k: DCG@k / IDCG@k with DCG@k = sum over i <= k of gain_i / log2(i + 1) (linear gains) and
  IDCG@k the DCG of the k largest gains among all M candidates.

Baselines are the expected values when the M candidates are put in a uniformly random order;
each is exact (no sampling), with k' = min(k, M) and r = n_rel:

* recall@k: 1 - C(M - r, k') / C(M, k') (hypergeometric: no relevant item in k' draws).
* AP@k: P(rel_i) = r/M and P(rel_i and rel_j) = r(r - 1)/(M(M - 1)) for i != j, so
  E[P@i * rel_i] = (r/M + (i - 1) r(r - 1)/(M(M - 1))) / i; summed over i <= k', / min(k, r).
* nDCG@k: each rank holds a candidate drawn uniformly, so E[DCG@k] = mean gain * sum over
  i <= k' of 1/log2(i + 1); divided by IDCG@k.
"""

from __future__ import annotations

import numpy as np


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def recall_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """(Q,) float64: 1.0 where a relevant item (rel > 0) is among the first k, else 0.0."""
    rel = np.atleast_2d(rel)
    return (rel[:, :k] > 0).any(axis=1).astype(np.float64)


def average_precision_at_k(rel: np.ndarray, n_rel, k: int) -> np.ndarray:
    """(Q,) float64 AP@k (see the module docstring); NaN for a query without relevant items."""
    rel = (np.atleast_2d(rel)[:, :k] > 0).astype(np.float64)
    n_rel = np.asarray(n_rel, dtype=np.float64).reshape(-1)
    precision = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision * rel).sum(axis=1) / np.minimum(k, n_rel)
    return np.where(n_rel > 0, ap, np.nan)


def dcg_at_k(gains: np.ndarray, k: int) -> np.ndarray:
    """(Q,) float64: sum over the first k of gain_i / log2(i + 1)."""
    gains = np.atleast_2d(np.asarray(gains, dtype=np.float64))[:, :k]
    return gains @ _discounts(gains.shape[1])


def ndcg_at_k(gains: np.ndarray, ideal: np.ndarray, k: int) -> np.ndarray:
    """(Q,) float64 nDCG@k; ``ideal`` holds each query's largest gains, best first.

    NaN for a query whose ideal DCG is 0 (no candidate with a positive gain).
    """
    idcg = dcg_at_k(ideal, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, dcg_at_k(gains, k) / idcg, np.nan)


def random_recall_at_k(n_rel, m, k: int) -> np.ndarray:
    """(Q,) expected recall@k under a random order of ``m`` candidates, ``n_rel`` relevant."""
    n_rel = np.asarray(n_rel, dtype=np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), n_rel.shape)
    kk = np.minimum(k, m)
    miss = np.ones_like(n_rel)
    for j in range(int(kk.max(initial=0))):
        # P(the first j+1 draws all miss) = prod (m - r - j) / (m - j); ranks past k' change nothing.
        step = np.clip((m - n_rel - j) / np.maximum(m - j, 1), 0, 1)
        miss *= np.where(j < kk, step, 1.0)
    return 1.0 - miss


def random_average_precision_at_k(n_rel, m, k: int) -> np.ndarray:
    """(Q,) expected AP@k under a random order of ``m`` candidates, ``n_rel`` relevant."""
    r = np.asarray(n_rel, dtype=np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), r.shape)
    kk = np.minimum(k, m)
    total = np.zeros_like(r)
    pair = np.where(m > 1, r * (r - 1) / np.maximum(m * (m - 1), 1), 0.0)
    for i in range(1, int(kk.max(initial=0)) + 1):
        term = (r / np.maximum(m, 1) + (i - 1) * pair) / i
        total += np.where(i <= kk, term, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, total / np.minimum(k, r), np.nan)


def random_ndcg_at_k(mean_gain, ideal: np.ndarray, m, k: int) -> np.ndarray:
    """(Q,) expected nDCG@k under a random order of ``m`` candidates whose mean gain is
    ``mean_gain``; ``ideal`` as for ``ndcg_at_k``."""
    mean_gain = np.asarray(mean_gain, dtype=np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(m), mean_gain.shape)
    cum = np.concatenate([[0.0], np.cumsum(_discounts(k))])
    idcg = dcg_at_k(ideal, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, mean_gain * cum[np.minimum(k, m)] / idcg, np.nan)
