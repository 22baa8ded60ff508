"""Exact top-k rankings: ties to the lower row, the query itself excluded, short collections."""

import numpy as np

from steam_dinov2.evaluation.ranking import ideal_gains, rank_rows


def test_ties_go_to_the_lower_row_even_across_the_kth_place():
    rng = np.random.default_rng(0)
    same = rng.normal(size=16).astype(np.float32)
    same /= np.linalg.norm(same)
    others = rng.normal(size=(6, 16)).astype(np.float32) * 0.1 + same * 0.2
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    vectors = np.concatenate(
        [others[:3], np.repeat(same[None], 8, 0), others[3:]]
    )  # rows 3..10 tie
    # Query row 6 (itself excluded): seven rows tie at cosine 1; the two kept are the lowest.
    assert rank_rows(vectors, vectors[[6]], 2, self_rows=[6]).tolist() == [[3, 4]]
    assert rank_rows(vectors, vectors[[3]], 3, self_rows=[3]).tolist() == [[4, 5, 6]]
    # An outside query equal to the tied vector: the lowest tied rows come first.
    assert rank_rows(vectors, same[None], 2).tolist() == [[3, 4]]
    # k larger than the collection: every other row, once.
    ranked = rank_rows(vectors, vectors[[0]], 50, self_rows=[0])
    assert ranked.shape == (1, 13) and sorted(ranked[0]) == list(range(1, 14))


def test_ideal_gains_are_the_largest_other_cosines():
    rng = np.random.default_rng(2)
    tags = rng.random((30, 6)).astype(np.float32) * (rng.random((30, 6)) < 0.4)
    norms = np.linalg.norm(tags, axis=1, keepdims=True)
    tags = np.divide(tags, norms, out=np.zeros_like(tags), where=norms > 0)
    sims = tags.astype(np.float64) @ tags.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    expected = -np.sort(-sims, axis=1)[:, :4]
    np.testing.assert_allclose(ideal_gains(tags, 4), np.maximum(expected, 0), atol=1e-6)
    assert ideal_gains(tags[:3], 10).shape == (3, 2)  # k larger than the collection
