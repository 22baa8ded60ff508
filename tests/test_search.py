import numpy as np
import pandas as pd
import pytest

from steam_dinov2 import Embeddings, build_index, find_duplicate_groups, find_neighbors, match_all
from steam_dinov2.search import (
    duplicates_and_nearest,
    index_collection,
    scan,
    search_index,
    top_k,
)


def _unit(rng, n, d):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _emb(vectors, ids=None):
    ids = ids or [100 + i for i in range(len(vectors))]
    return Embeddings("m__p__cls", ids, vectors, {})


def test_faiss_top_k_equals_numpy_brute_force():
    rng = np.random.default_rng(0)
    base, queries = _unit(rng, 600, 48), _unit(rng, 40, 48)
    scores, rows = search_index(build_index(base), queries, k=7)
    sims = queries @ base.T
    ref_rows = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, ref_rows, 1), atol=1e-5)


def test_all_pairs_equals_brute_force_without_self(tmp_path, monkeypatch):
    import steam_dinov2.search as search

    monkeypatch.setattr(search, "BLOCK", 64)  # several blocks
    rng = np.random.default_rng(1)
    vectors = _unit(rng, 300, 16)
    emb = _emb(vectors)
    table = match_all(emb, k=5, data=tmp_path)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    ref = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    got = table.pivot(index="query_id", columns="rank", values="id").loc[emb.ids]
    np.testing.assert_array_equal(got.to_numpy(), np.asarray(emb.ids)[ref])
    saved = pd.read_parquet(tmp_path / "matches" / "m__p__cls" / "neighbors.parquet")
    assert list(saved.columns) == ["query_id", "rank", "id", "score"]
    assert len(saved) == 300 * 5 and (saved["query_id"] != saved["id"]).all()
    np.testing.assert_allclose(
        saved["score"],
        sims[
            [emb.ids.index(q) for q in saved["query_id"]], [emb.ids.index(i) for i in saved["id"]]
        ],
        atol=1e-5,
    )


@pytest.mark.parametrize("tile_rows, tile_cols", [(7, 50), (1024, 32768)])
def test_tiled_top_k_and_pairs_equal_faiss(monkeypatch, tile_rows, tile_cols):
    """The two-step top-k and the threshold scan (their own code, for speed) against faiss's
    flat index: tiles of 7 x 50 cross rows, columns, groups and a last tile narrower than
    k groups; the default tiles take the whole collection at once."""
    import steam_dinov2.search as search

    monkeypatch.setattr(search, "TILE_ROWS", tile_rows)
    monkeypatch.setattr(search, "TILE_COLS", tile_cols)
    rng = np.random.default_rng(7)
    centres = _unit(rng, 12, 24)
    vectors = centres[rng.integers(0, 12, 413)] + 0.3 * rng.standard_normal((413, 24))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    vectors[100:104] = vectors[5]  # exact ties
    index = build_index(vectors)
    exact = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    for k in (1, 5, 12, 413):
        scores, rows = top_k(vectors, vectors, k)
        ref_scores, _ = index.search(vectors, k)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)  # the same k values, in order
        np.testing.assert_allclose(scores, np.take_along_axis(exact, rows, 1), atol=1e-5)
        assert all(len(set(r)) == k for r in rows.tolist())  # rows behind them, none twice
    for threshold in (0.8, 0.95):
        found = scan(vectors, vectors[:150], threshold=threshold)
        queries, rows = found.pair_queries, found.pair_rows
        lims, _, ref_rows = index.range_search(vectors[:150], threshold - 1e-6)
        ref_queries = np.repeat(np.arange(150), np.diff(lims).astype(np.int64))
        got, ref = set(zip(queries, rows)), set(zip(ref_queries, ref_rows))
        on_the_line = {p for p in got ^ ref if abs(exact[p] - threshold) < 1e-5}
        assert got ^ ref == on_the_line and len(ref) > 150  # more than each query with itself
        assert (np.diff(queries) >= 0).all()


def test_a_score_equal_to_the_threshold_is_kept_wherever_it_sits():
    # Query e1 against rows (c, s): each product is exactly c in float32, whatever the GEMM's
    # order of summation, so a row whose c is the threshold sits exactly on it.
    rng = np.random.default_rng(8)
    c = np.sort(rng.uniform(-1, 1, 40)).astype(np.float32)
    base = np.stack([c, np.sqrt(1 - c.astype(np.float64) ** 2).astype(np.float32)], 1)
    query = np.array([[1, 0]], np.float32)
    for on_the_line in (3, 17, 35):  # in a group of 16 columns, and past the last group
        rows = scan(base, query, threshold=float(c[on_the_line])).pair_rows
        assert sorted(rows.tolist()) == list(range(on_the_line, 40))


def test_exact_duplicates_never_return_the_query_itself():
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 6, 8)
    vectors = np.concatenate([vectors, vectors[:3]])  # rows 6,7,8 duplicate rows 0,1,2
    table = match_all(_emb(vectors), k=3)
    for q, group in table.groupby("query_id"):
        assert q not in set(group["id"])
    first = table[table["query_id"] == 100].sort_values("rank")
    assert first["id"].iloc[0] == 106 and first["score"].iloc[0] == pytest.approx(1.0)


def test_k_larger_than_the_collection():
    vectors = _unit(np.random.default_rng(3), 4, 8)
    table = match_all(_emb(vectors), k=10)
    assert table.groupby("query_id").size().tolist() == [3, 3, 3, 3]
    assert len(find_neighbors(_emb(vectors), 101, k=10)) == 3
    assert len(match_all(_emb(vectors[:1]), k=10)) == 0


def test_excluded_ids_are_queried_but_never_neighbors():
    vectors = _unit(np.random.default_rng(4), 20, 8)
    emb = _emb(vectors)
    excluded = {103, 110, 119}
    table = match_all(emb, k=4, exclude=excluded)
    assert not set(table["id"]) & excluded
    assert excluded <= set(table["query_id"])
    assert table.groupby("query_id").size().min() == 4
    near = find_neighbors(emb, 103, k=4, exclude=excluded)
    assert not set(near["id"]) & excluded and len(near) == 4


def test_a_prebuilt_index_applies_its_exclusions_and_refuses_others():
    vectors = _unit(np.random.default_rng(4), 20, 8)
    emb = _emb(vectors)
    excluded = {103, 110, 119}
    index = index_collection(emb, excluded)
    fresh = find_neighbors(emb, 105, k=5, exclude=excluded)
    # The index remembers its exclusions: leaving exclude= out, or repeating it, gives the same.
    pd.testing.assert_frame_equal(find_neighbors(emb, 105, k=5, index=index), fresh)
    pd.testing.assert_frame_equal(
        find_neighbors(emb, 105, k=5, exclude=sorted(excluded), index=index), fresh
    )
    with pytest.raises(ValueError, match="differs from the 3 ids"):
        find_neighbors(emb, 105, k=5, exclude={104}, index=index)
    with pytest.raises(ValueError, match="index was built for"):
        find_neighbors(_emb(vectors[:10]), 105, k=5, index=index)
    with pytest.raises(ValueError, match="index_collection"):
        find_neighbors(emb, 105, k=5, index=(index.rows, index.index))  # the old tuple


def test_query_by_id_and_by_new_vector():
    vectors = _unit(np.random.default_rng(5), 50, 16)
    emb = _emb(vectors)
    by_id = find_neighbors(emb, 107, k=5)
    assert 107 not in set(by_id["id"]) and by_id["rank"].tolist() == [1, 2, 3, 4, 5]
    assert by_id["score"].is_monotonic_decreasing
    # The same vector from outside the collection finds itself first, then the same neighbours.
    by_vector = find_neighbors(emb, vectors[7], k=6)
    assert by_vector["id"].tolist() == [107, *by_id["id"]]
    with pytest.raises(ValueError, match="not in the collection"):
        find_neighbors(emb, 999)
    with pytest.raises(ValueError, match="dims"):
        find_neighbors(emb, np.ones(3))


def test_duplicate_groups_chain_and_threshold_is_inclusive():
    # Unit vectors at angles 0, 10, 20 degrees (chain) and 90, 91.5 (pair), 180 alone.
    angles = np.radians([0, 10, 20, 90, 91.5, 180])
    vectors = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    threshold = float(np.cos(np.radians(10)).astype(np.float32))
    groups = find_duplicate_groups(vectors, threshold)
    assert groups == [[0, 1, 2], [3, 4]]  # 0~1 and 1~2 link 0 with 2 (cos 20 deg < threshold)
    assert find_duplicate_groups(vectors, 0.9999) == []
    assert find_duplicate_groups(vectors, -1.0) == [[0, 1, 2, 3, 4, 5]]


def test_duplicate_groups_across_blocks_equal_a_brute_force_closure(monkeypatch):
    import steam_dinov2.search as search

    monkeypatch.setattr(search, "BLOCK", 7)  # chains that cross many blocks
    rng = np.random.default_rng(6)
    # 60 rows in 15 loose clusters of 4 (noisy copies of 15 centres), shuffled.
    centres = _unit(rng, 15, 8)
    vectors = centres.repeat(4, 0) + 0.15 * rng.standard_normal((60, 8)).astype(np.float32)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))[rng.permutation(60)]
    threshold = 0.9
    reach = (vectors @ vectors.T) >= np.float32(threshold)
    while True:  # transitive closure by boolean matrix products
        wider = (reach.astype(np.int32) @ reach.astype(np.int32)) > 0
        if (wider == reach).all():
            break
        reach = wider
    ref = sorted({tuple(np.flatnonzero(r)) for r in reach if r.sum() > 1})
    groups = search.find_duplicate_groups(vectors, threshold)
    assert [tuple(g) for g in groups] == ref
    # Not a trivial case: many groups, and some hold a pair below the threshold (a chain).
    assert len(groups) > 5 and any((vectors[g] @ vectors[g].T < threshold).any() for g in groups)


def test_groups_and_nearest_in_one_pass_equal_the_two_apart(monkeypatch):
    import steam_dinov2.search as search

    monkeypatch.setattr(search, "BLOCK", 9)
    monkeypatch.setattr(search, "TILE_COLS", 40)
    rng = np.random.default_rng(9)
    centres = _unit(rng, 10, 8)
    vectors = centres.repeat(5, 0) + 0.2 * rng.standard_normal((50, 8)).astype(np.float32)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    groups, scores, nearest = duplicates_and_nearest(vectors, 0.9)
    assert groups == find_duplicate_groups(vectors, 0.9) and len(groups) > 3
    sims = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_allclose(scores, sims.max(1), atol=1e-5)
    np.testing.assert_allclose(sims[np.arange(50), nearest], sims.max(1), atol=1e-5)
    assert duplicates_and_nearest(vectors[:1], 0.9)[1:] == (-np.inf, -1)
