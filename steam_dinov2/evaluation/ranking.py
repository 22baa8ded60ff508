"""Exact top-k rankings for scoring: ties broken by row, the ideal gains of graded truths, and
how alike two settings rank."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from ..search import BLOCK, top_k


def rank_rows(vectors: np.ndarray, queries: np.ndarray, k: int, self_rows=None) -> np.ndarray:
    """Top-k rows of ``vectors`` by inner product for each query, ties to the lower row.

    Args:
        vectors: (N, D) float32 rows to rank.
        queries: (Q, D) float32.
        k: rows wanted per query.
        self_rows: (Q,) row of each query in ``vectors``, never returned; None for outside queries.

    Returns:
        (Q, k') int64 rows, k' = min(k, N - 1 if self_rows is given else N), best first.
    """

    n, excl = len(vectors), self_rows is not None
    kk = max(0, min(k, n - excl))
    if kk == 0 or len(queries) == 0:
        return np.zeros((len(queries), kk), np.int64)
    want = min(kk + 1 + excl, n)  # one more than kept, to see a tie across the k-th place
    out = np.empty((len(queries), kk), np.int64)
    for start in range(0, len(queries), BLOCK):
        q = np.ascontiguousarray(queries[start : start + BLOCK], dtype=np.float32)
        scores, rows = top_k(vectors, q, want)
        if excl:
            own = np.asarray(self_rows[start : start + BLOCK])[:, None]
            scores[rows == own] = -np.inf
        order = np.lexsort((rows, -scores), axis=1)
        scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        if want < n:  # a candidate faiss left out may tie with the k-th: rank those exactly
            for i in np.flatnonzero(scores[:, kk - 1] == scores[:, kk]):
                exact = vectors @ q[i]
                if excl:
                    exact[self_rows[start + i]] = -np.inf
                rows[i, :kk] = np.lexsort((np.arange(n), -exact))[:kk]
        out[start : start + len(q)] = rows[:, :kk]
    return out


def ideal_gains(tags: np.ndarray, k: int) -> np.ndarray:
    """(N, k') the largest tag cosines of each row with the other rows, best first (k' = min(k,
    N - 1)). Ties need no order here: only the values enter IDCG."""

    n = len(tags)
    kk = max(0, min(k, n - 1))
    if kk == 0 or tags.shape[1] == 0:
        return np.zeros((n, kk), np.float64)
    out = np.empty((n, kk), np.float64)
    for start in range(0, n, BLOCK):
        scores, rows = top_k(tags, tags[start : start + BLOCK], min(kk + 1, n))
        scores[rows == np.arange(start, start + len(rows))[:, None]] = -np.inf
        out[start : start + len(rows)] = -np.sort(-scores, axis=1)[:, :kk]
    return np.maximum(out, 0.0)


def agreement(tops: dict, k: int) -> pd.DataFrame:
    """How alike settings rank: for each pair, the mean Jaccard of their top-k sets.

    Args:
        tops: ``{setting: (ids, rows)}``, ``rows`` (N, k') int64 into ``ids`` per query.
        k: the k of the column name.

    Returns:
        DataFrame setting_a, setting_b, ``jaccard@k`` (mean over the ids both hold; NaN if
        none), n_queries.
    """
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
