"""Ranking metrics on hand-built rankings, and random baselines against every ordering."""

import itertools
import math

import numpy as np
import pytest

from steam_dinov2.evaluation import metrics


def test_hand_built_rankings():
    # Relevant at ranks 2 and 4 of 4, three relevant in all: AP@4 = (1/2 + 2/4) / 3.
    rel = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    n_rel = [3, 1, 0]
    assert metrics.recall_at_k(rel, 1).tolist() == [0, 1, 0]
    assert metrics.recall_at_k(rel, 4).tolist() == [1, 1, 0]
    ap = metrics.average_precision_at_k(rel, n_rel, 4)
    assert ap[0] == pytest.approx(1 / 3) and ap[1] == 1.0
    assert np.isnan(ap[2])  # a query with no relevant item has no AP (it is not a query)
    # AP@2 divides by min(k, n_rel) = 2: one hit at rank 2 gives 1/2 / 2.
    assert metrics.average_precision_at_k(rel, n_rel, 2)[0] == pytest.approx(0.25)


def test_k_larger_than_the_collection():
    # 3 candidates, k = 10: the ranking has 3 items; a perfect one still scores 1.
    rel = np.array([[1, 0, 1], [1, 1, 0]])
    assert metrics.average_precision_at_k(rel, [2, 2], 10).tolist() == pytest.approx([5 / 6, 1])
    assert metrics.random_recall_at_k([2], 3, 10) == pytest.approx([1.0])
    assert metrics.random_recall_at_k([1], 3, 10) == pytest.approx([1.0])
    assert metrics.ndcg_at_k([[0.5, 1.0]], [[1.0, 0.5]], 10)[0] == pytest.approx(
        (0.5 + 1 / math.log2(3)) / (1 + 0.5 / math.log2(3))
    )


def test_no_positive_gain_is_not_a_query():
    assert np.isnan(metrics.ndcg_at_k([[0.0, 0.0]], [[0.0, 0.0]], 2)[0])
    assert np.isnan(metrics.random_average_precision_at_k([0], 5, 3)[0])
    assert metrics.random_recall_at_k([0], 5, 3)[0] == 0.0


@pytest.mark.parametrize("m", [1, 2, 5, 6])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_baselines_are_the_mean_over_every_ordering(m, k):
    gains = np.array([0.5, 0.0, 1.0, 0.2, 0.0, 0.9])[:m]
    perms = np.array(list(itertools.permutations(range(m))))
    ideal = np.sort(gains)[::-1][None]
    for r in range(1, m + 1):
        rel = (perms < r).astype(float)  # candidates 0..r-1 are the relevant ones
        exact_recall = metrics.recall_at_k(rel, k).mean()
        exact_ap = metrics.average_precision_at_k(rel, [r] * len(rel), k).mean()
        assert metrics.random_recall_at_k([r], m, k)[0] == pytest.approx(exact_recall)
        assert metrics.random_average_precision_at_k([r], m, k)[0] == pytest.approx(exact_ap)
        kk = min(k, m)
        assert metrics.random_recall_at_k([r], m, k)[0] == pytest.approx(
            1 - math.comb(m - r, kk) / math.comb(m, kk)
        )
    if gains.max() > 0:
        exact = metrics.ndcg_at_k(gains[perms], np.repeat(ideal, len(perms), 0), k).mean()
        assert metrics.random_ndcg_at_k([gains.mean()], ideal, m, k)[0] == pytest.approx(exact)
