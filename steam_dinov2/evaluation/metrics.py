"""Ranking metrics per query, as ranx and trec_eval define them, and their exact expected values
under a random ranking.

A query's candidates are the M other items of the collection; a ranking lists k' = min(k, M) of
them, best first. Inputs are per-query arrays:

* ``rel``: (Q, k) relevance of the ranked items in rank order, 0/1 for labels, a gain >= 0 for
  graded truths; slots past the end of a short ranking hold 0.
* ``n_rel``: (Q,) number of relevant candidates among the M (a query needs at least one).

Definitions (ranx 0.3 ``hit_rate``, ``recall``, ``map``, ``ndcg``; trec_eval ``success``,
``recall``, ``map_cut``, ``ndcg_cut``):

* hit_rate@k: 1 if a relevant item is in the top k, else 0 (TREC's success@k; the "Recall@K"
  of metric-learning papers).
* recall@k: relevant items in the top k divided by n_rel (the share of the relevant found).
* AP@k: sum over i <= k of P@i * rel_i, divided by n_rel (TREC ``map_cut``, ranx ``map``): a
  query with more than k relevant candidates cannot reach 1. (Landmark retrieval divides by
  min(k, n_rel) instead; that variant is not computed here.)
* nDCG@k: DCG@k / IDCG@k with DCG@k = sum over i <= k of gain_i / log2(i + 1) (linear gains, as
  ranx's default and trec_eval's) and IDCG@k the DCG of the k largest gains among all M
  candidates; with 0/1 labels IDCG@k = sum over i <= min(k, n_rel), so a perfect ranking
  scores 1 whatever n_rel is.

Baselines are the expected values when the M candidates are put in a uniformly random order;
each is exact (no sampling), with k' = min(k, M) and r = n_rel:

* hit_rate@k: 1 - C(M - r, k') / C(M, k') (hypergeometric: no relevant item in k' draws).
* recall@k: each of the k' ranks holds a relevant item with probability r/M, so k' / M.
* AP@k: P(rel_i) = r/M and P(rel_i and rel_j) = r(r - 1)/(M(M - 1)) for i != j, so
  E[P@i * rel_i] = (r/M + (i - 1) r(r - 1)/(M(M - 1))) / i; summed over i <= k', / r.
* nDCG@k: each rank holds a candidate drawn uniformly, so E[DCG@k] = mean gain * sum over
  i <= k' of 1/log2(i + 1); divided by IDCG@k (0/1 labels: mean gain r/M).
"""

from __future__ import annotations

import numpy as np


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def hit_rate_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """(Q,) float64: 1.0 where a relevant item (rel > 0) is among the first k, else 0.0."""
    rel = np.atleast_2d(rel)
    return (rel[:, :k] > 0).any(axis=1).astype(np.float64)


def recall_at_k(rel: np.ndarray, n_rel, k: int) -> np.ndarray:
    """(Q,) float64: relevant items among the first k over ``n_rel``; NaN where n_rel is 0."""
    hits = (np.atleast_2d(rel)[:, :k] > 0).sum(axis=1).astype(np.float64)
    n_rel = np.asarray(n_rel, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, hits / n_rel, np.nan)


def average_precision_at_k(rel: np.ndarray, n_rel, k: int) -> np.ndarray:
    """(Q,) float64 AP@k, divided by n_rel (see the module docstring); NaN where n_rel is 0."""
    rel = (np.atleast_2d(rel)[:, :k] > 0).astype(np.float64)
    n_rel = np.asarray(n_rel, dtype=np.float64).reshape(-1)
    precision = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, (precision * rel).sum(axis=1) / n_rel, np.nan)


def binary_ideal(n_rel, k: int) -> np.ndarray:
    """(Q, k) the ideal gains of 0/1 labels: ``min(k, n_rel)`` ones, then zeros."""
    n_rel = np.asarray(n_rel, dtype=np.int64).reshape(-1)
    return (np.arange(k)[None, :] < n_rel[:, None]).astype(np.float64)


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


def random_hit_rate_at_k(n_rel, m, k: int) -> np.ndarray:
    """(Q,) expected hit_rate@k under a random order of ``m`` candidates, ``n_rel`` relevant."""
    n_rel = np.asarray(n_rel, dtype=np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), n_rel.shape)
    kk = np.minimum(k, m)
    miss = np.ones_like(n_rel)
    for j in range(int(kk.max(initial=0))):
        # P(the first j+1 draws all miss) = prod (m - r - j) / (m - j); ranks past k' change nothing.
        step = np.clip((m - n_rel - j) / np.maximum(m - j, 1), 0, 1)
        miss *= np.where(j < kk, step, 1.0)
    return 1.0 - miss


def random_recall_at_k(n_rel, m, k: int) -> np.ndarray:
    """(Q,) expected recall@k under a random order of ``m`` candidates, ``n_rel`` relevant."""
    r = np.asarray(n_rel, dtype=np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(m, dtype=np.float64), r.shape)
    return np.where(r > 0, np.minimum(k, m) / np.maximum(m, 1), np.nan)


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
        return np.where(r > 0, total / r, np.nan)


def random_ndcg_at_k(mean_gain, ideal: np.ndarray, m, k: int) -> np.ndarray:
    """(Q,) expected nDCG@k under a random order of ``m`` candidates whose mean gain is
    ``mean_gain``; ``ideal`` as for ``ndcg_at_k``."""
    mean_gain = np.asarray(mean_gain, dtype=np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(m), mean_gain.shape)
    cum = np.concatenate([[0.0], np.cumsum(_discounts(k))])
    idcg = dcg_at_k(ideal, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, mean_gain * cum[np.minimum(k, m)] / idcg, np.nan)
