"""Ranking metrics on hand-built rankings, random baselines against every ordering, and the
bootstrap interval against scipy's."""

import itertools
import math

import numpy as np
import pytest

from steam_dinov2.evaluation import intervals, metrics


def test_hand_built_rankings():
    # Relevant at ranks 2 and 4 of 4, three relevant in all: AP@4 = (1/2 + 2/4) / 3.
    rel = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    n_rel = [3, 1, 0]
    assert metrics.hit_rate_at_k(rel, 1).tolist() == [0, 1, 0]
    assert metrics.hit_rate_at_k(rel, 4).tolist() == [1, 1, 0]
    assert metrics.recall_at_k(rel, n_rel, 4)[:2].tolist() == pytest.approx([2 / 3, 1])
    ap = metrics.average_precision_at_k(rel, n_rel, 4)
    assert ap[0] == pytest.approx(1 / 3) and ap[1] == 1.0
    assert np.isnan(ap[2])  # a query with no relevant item has no AP (it is not a query)
    # AP@2 divides by n_rel = 3 (TREC map_cut), not min(k, n_rel): one hit at rank 2 gives 1/2 / 3.
    assert metrics.average_precision_at_k(rel, n_rel, 2)[0] == pytest.approx(1 / 6)


def test_k_larger_than_the_collection():
    # 3 candidates, k = 10: the ranking has 3 items; a perfect one still scores 1.
    rel = np.array([[1, 0, 1], [1, 1, 0]])
    assert metrics.average_precision_at_k(rel, [2, 2], 10).tolist() == pytest.approx([5 / 6, 1])
    assert metrics.random_hit_rate_at_k([2], 3, 10) == pytest.approx([1.0])
    assert metrics.random_recall_at_k([1], 3, 10) == pytest.approx([1.0])
    ideal = metrics.binary_ideal([2, 2], 10)
    assert metrics.ndcg_at_k(rel, ideal, 10)[1] == 1.0


def test_no_positive_gain_is_not_a_query():
    assert np.isnan(metrics.ndcg_at_k([[0.0, 0.0]], [[0.0, 0.0]], 2)[0])
    assert np.isnan(metrics.random_average_precision_at_k([0], 5, 3)[0])
    assert np.isnan(metrics.random_recall_at_k([0], 5, 3)[0])
    assert metrics.random_hit_rate_at_k([0], 5, 3)[0] == 0.0


@pytest.mark.parametrize("m", [1, 2, 5, 6])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_baselines_are_the_mean_over_every_ordering(m, k):
    gains = np.array([0.5, 0.0, 1.0, 0.2, 0.0, 0.9])[:m]
    perms = np.array(list(itertools.permutations(range(m))))[:, :k]
    ideal = np.sort(gains)[::-1][None]
    for r in range(1, m + 1):
        rel = (perms < r).astype(float)  # candidates 0..r-1 are the relevant ones
        n = [r] * len(rel)
        cases = [
            (metrics.hit_rate_at_k(rel, k), metrics.random_hit_rate_at_k([r], m, k)),
            (metrics.recall_at_k(rel, n, k), metrics.random_recall_at_k([r], m, k)),
            (
                metrics.average_precision_at_k(rel, n, k),
                metrics.random_average_precision_at_k([r], m, k),
            ),
            (
                metrics.ndcg_at_k(rel, metrics.binary_ideal(n, k), k),
                metrics.random_ndcg_at_k([r / m], metrics.binary_ideal([r], k), m, k),
            ),
        ]
        for every_ordering, exact in cases:
            assert exact[0] == pytest.approx(every_ordering.mean())
        kk = min(k, m)
        assert metrics.random_hit_rate_at_k([r], m, k)[0] == pytest.approx(
            1 - math.comb(m - r, kk) / math.comb(m, kk)
        )
    if gains.max() > 0:
        exact = metrics.ndcg_at_k(gains[perms], np.repeat(ideal, len(perms), 0), k).mean()
        assert metrics.random_ndcg_at_k([gains.mean()], ideal, m, k)[0] == pytest.approx(exact)


def test_bootstrap_interval_agrees_with_scipy_and_is_paired():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    a = (rng.random(400) < 0.3).astype(float)  # a hit rate of 400 queries
    b = np.clip(a + rng.normal(0, 0.05, 400), 0, 1)  # another setting, nearly the same
    samples = intervals.bootstrap_means(np.c_[a, b], n_resamples=4000, seed=1)
    low, high = intervals.percentile_interval(samples)
    ref = bootstrap((a,), np.mean, n_resamples=4000, method="percentile", random_state=2)
    assert low[0] == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert high[0] == pytest.approx(ref.confidence_interval.high, abs=0.01)
    # Paired: the difference's interval is that of the per-query differences, far narrower
    # than either mean's.
    d_low, d_high = intervals.percentile_interval(samples[:, 1] - samples[:, 0])
    ref = bootstrap((b - a,), np.mean, n_resamples=4000, method="percentile", random_state=2)
    assert d_low == pytest.approx(ref.confidence_interval.low, abs=0.002)
    assert d_high == pytest.approx(ref.confidence_interval.high, abs=0.002)
    assert d_high - d_low < (high[0] - low[0]) / 5
    again = intervals.bootstrap_means(np.c_[a, b], n_resamples=4000, seed=1)
    np.testing.assert_array_equal(again, samples)  # a fixed seed: the same interval every run
