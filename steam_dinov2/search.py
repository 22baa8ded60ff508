"""Exact cosine k-NN: neighbours of one game (faiss), all-pairs matches and duplicate groups (a
blocked product with a two-step top-k), match tables on disk, name search."""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import logging
import os
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .core import files, layout
from .core.blas import import_faiss
from .core.progress import tqdm
from .embedding.embed import Embeddings, load_embeddings
from .embedding.setting import Setting, setting_of

logger = logging.getLogger(__name__)

BLOCK = 4096  # queries per call: bounds the result buffers whatever N is
# All-pairs products run on tiles of TILE_ROWS queries x TILE_COLS rows (256 MiB of float32
# scores): large enough for the GEMM's full rate (0.9-1.0 of a 4096 x 30,000 product here).
TILE_ROWS, TILE_COLS = 2048, 32768
GROUP = 16  # columns whose maximum stands for them in the first step of the top-k


def build_index(vectors: np.ndarray):
    """An exact inner-product faiss index over (N, D) L2-normalised rows: scores are cosines."""
    faiss = import_faiss()

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {vectors.shape}")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def search_index(index, queries: np.ndarray, *, k: int = 10, self_rows=None):
    """Top-k of each query, best first, never the query itself.

    Args:
        index: from ``build_index``.
        queries: (Q, D) float32, L2-normalised.
        k: neighbours wanted; more than the index holds gives what there is.
        self_rows: (Q,) row of each query in the index (or -1 for an outside query); that row is
            removed from its own results, even when an exact duplicate ties with it.

    Returns:
        ``(scores, rows)``: (Q, k') float32 cosines and int64 rows, k' = min(k, available);
        rows are -1 (score -inf) where a query has fewer neighbours than k'.
    """
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    return _nearest(index.search, index.ntotal, queries, k, self_rows)


def search_vectors(
    vectors: np.ndarray, queries: np.ndarray, *, k: int = 10, self_rows=None, bar=None
):
    """``search_index`` over the rows of ``vectors`` for many queries at once (all-pairs work):
    the same answer, at close to the cost of the matrix product alone (``scan``); ``bar`` (a
    progress bar) counts the queries done."""
    search = functools.partial(top_k, vectors, bar=bar)
    return _nearest(search, len(vectors), np.atleast_2d(queries), k, self_rows)


def _nearest(search, total: int, queries: np.ndarray, k: int, self_rows):
    """``search_index``'s answer from ``search(queries, want)``, a top-``want`` over ``total`` rows."""
    want = min(k + (self_rows is not None), total)
    if want == 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    scores, rows = search(queries, want)
    return _without_self(scores, rows, self_rows, k, want)


def _without_self(scores, rows, self_rows, k: int, want: int):
    if self_rows is not None:
        is_self = rows == np.asarray(self_rows)[:, None]
        # Stable sort on the flag moves the query's own row (wherever it ranked) to the end.
        order = np.argsort(is_self, axis=1, kind="stable")
        scores = np.take_along_axis(scores, order, 1)
        rows = np.take_along_axis(rows, order, 1)
        rows[np.take_along_axis(is_self, order, 1)] = -1
    scores, rows = scores[:, : min(k, want)], rows[:, : min(k, want)]
    scores[rows < 0] = -np.inf
    return scores, rows


def top_k(vectors: np.ndarray, queries: np.ndarray, k: int, *, bar=None):
    """The ``k`` largest inner products of each query with the rows of ``vectors``, best first:
    what a flat faiss index's ``search`` returns (ties in any order), for many queries at close
    to the cost of the product alone (``scan``).

    Returns:
        ``(scores, rows)``: (Q, k) float32 and int64, best first.
    """
    found = scan(vectors, queries, k=k, bar=bar)
    return found.scores, found.rows


@dataclass(frozen=True)
class Scan:
    """What one pass of ``scan`` found: the top-k of each query, and the pairs at or above a
    threshold (each empty when not asked)."""

    scores: np.ndarray  # (Q, k) float32, best first
    rows: np.ndarray  # (Q, k) int64
    pair_queries: np.ndarray  # (P,) int64, ascending
    pair_rows: np.ndarray  # (P,) int64


def scan(vectors: np.ndarray, queries: np.ndarray, *, k: int = 0, threshold=None, bar=None) -> Scan:
    """One pass over the inner products of ``queries`` with the rows of ``vectors``: the ``k``
    largest of each query and/or every pair at or above ``threshold``.

    The product is computed tile by tile (``TILE_ROWS`` x ``TILE_COLS``) and never whole. In a
    tile, each run of ``GROUP`` columns is first summed up by its maximum (a vectorised
    reduction). Top-k searches only the ``k`` groups with the largest maxima: any score above
    the k-th largest maximum lies in one of them, so the answer is exact. The threshold reads
    only the groups whose maximum reaches it. faiss keeps a heap per query over every score
    instead, which cost 1.4-1.6x the product alone at 150,000 rows (``benchmarks/README.md``).

    Args:
        vectors: (N, D) float32 rows.
        queries: (Q, D) float32.
        k: 0 <= k <= N.
        threshold: a score, or None.
        bar: a progress bar, advanced by the queries done.
    """
    base = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    asked = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32))
    n, q_total = len(base), len(asked)
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and the {n} rows searched, got {k}")
    limit = None if threshold is None else float(np.float32(threshold))
    scores = np.empty((q_total, k), np.float32)
    rows = np.empty((q_total, k), np.int64)
    pair_queries, pair_rows = (
        [torch.zeros(0, dtype=torch.int64)],
        [torch.zeros(0, dtype=torch.int64)],
    )
    tile = torch.empty(min(q_total, TILE_ROWS) * min(n, TILE_COLS))
    spread = torch.arange(GROUP)
    for start in range(0, q_total, TILE_ROWS):
        block = asked[start : start + TILE_ROWS]
        found_scores, found_rows = [], []
        for first in range(0, n, TILE_COLS):
            part = base[first : first + TILE_COLS]
            product = tile[: len(block) * len(part)].view(len(block), len(part))
            torch.mm(block, part.T, out=product)
            groups = len(part) // GROUP
            # Column c of group g is g + c * groups: the maxima are a strided reduction.
            maxima = product[:, : groups * GROUP].reshape(len(block), GROUP, groups).amax(1)
            if k:
                s, r = _tile_top(product, maxima, min(k, len(part)), spread)
                found_scores.append(s)
                found_rows.append(r + first)
            if limit is not None:
                q, c = _tile_pairs(product, maxima, limit, spread)
                pair_queries.append(q + start)
                pair_rows.append(c + first)
        if k:
            s, at = torch.cat(found_scores, 1).topk(k, dim=1)
            scores[start : start + len(block)] = s.numpy()
            rows[start : start + len(block)] = torch.cat(found_rows, 1).gather(1, at).numpy()
        if bar is not None:
            bar.update(len(block))
    q, r = torch.cat(pair_queries), torch.cat(pair_rows)
    order = torch.argsort(q, stable=True)
    return Scan(scores, rows, q[order].numpy(), r[order].numpy())


def _tile_pairs(product: torch.Tensor, maxima: torch.Tensor, limit: float, spread):
    """(rows, columns) of one tile's scores at or above ``limit``."""
    groups = maxima.shape[1]
    grouped = groups * GROUP
    queries, columns = (product[:, grouped:] >= limit).nonzero(as_tuple=True)
    columns = columns + grouped
    if groups:
        row, group = (maxima >= limit).nonzero(as_tuple=True)
        members = group[:, None] + spread * groups
        hit = product[row[:, None], members] >= limit
        queries = torch.cat([queries, row[:, None].expand_as(members)[hit]])
        columns = torch.cat([columns, members[hit]])
    return queries, columns


def _tile_top(product: torch.Tensor, maxima: torch.Tensor, k: int, spread):
    """Top-``k`` (unsorted) of each row of one tile of scores: ``(scores, columns)``."""
    groups = maxima.shape[1]
    if groups < k:  # too narrow for the first step
        return product.topk(k, dim=1, sorted=False)
    grouped = groups * GROUP
    best = maxima.topk(k, dim=1, sorted=False).indices
    columns = (best[:, :, None] + spread * groups).reshape(len(product), -1)
    if grouped < product.shape[1]:  # the last few columns, outside every group
        rest = torch.arange(grouped, product.shape[1]).expand(len(product), -1)
        columns = torch.cat([columns, rest], 1)
    s, at = product.gather(1, columns).topk(k, dim=1, sorted=False)
    return s, columns.gather(1, at)


def check_k(k) -> None:
    """The one check of a number of neighbours: an int of at least 1 (not a bool)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k is the number of neighbours wanted, at least 1; got {k!r}")


def describe_exclusions(exclude) -> str:
    """How many ids an exclusion list removes and why, e.g. "3 excluded (dark: 2, unreadable: 1)".

    Args:
        exclude: ``{id: [reasons...]}`` as ``load_exclusions`` returns, or plain ids (no reasons).
    """
    if not exclude:
        return "0 excluded"
    if not isinstance(exclude, dict):
        return f"{len(set(exclude))} excluded (reasons not given)"
    counts: dict[str, int] = {}
    for reasons in exclude.values():
        for kind in dict.fromkeys(str(r).split(":")[0] for r in reasons):
            counts[kind] = counts.get(kind, 0) + 1
    why = ", ".join(
        f"{kind}: {n}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return f"{len(exclude)} excluded ({why})"


def _excluded(exclude) -> frozenset[int]:
    """The ids of ``exclude`` (``{id: reasons}`` or ids), checked."""
    return frozenset(files.parse_image_id(e, "exclude") for e in exclude)


def _candidates(emb: Embeddings, exclude) -> np.ndarray:
    excluded = _excluded(exclude)
    return np.array([i for i, x in enumerate(emb.ids) if x not in excluded], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class CollectionIndex:
    """A faiss index over the rows of one setting's embeddings that may be neighbours.

    Attributes:
        setting: the ``Embeddings.setting`` it was built from.
        count: how many images that collection held (a changed collection needs a new index).
        rows: (M,) int64 rows of ``emb`` in the index, ascending: the ids not excluded.
        index: the faiss index over ``emb.vectors[rows]``.
        excluded: the ids left out.
    """

    setting: str
    count: int
    rows: np.ndarray
    index: object
    excluded: frozenset[int]

    def check(self, emb: Embeddings, exclude=()) -> None:
        """ValueError unless this index answers for ``emb`` with the exclusions ``exclude``
        (empty ``exclude`` means "the index's own")."""
        if emb.setting != self.setting or len(emb.ids) != self.count:
            raise ValueError(
                f"index was built for {self.setting} ({self.count} images), not for "
                f"{emb.setting} ({len(emb.ids)} images): build it with index_collection(emb)"
            )
        asked = _excluded(exclude)
        if asked and asked != self.excluded:
            raise ValueError(
                f"exclude= ({len(asked)} ids) differs from the {len(self.excluded)} ids the index "
                "was built without: build it with index_collection(emb, exclude), or leave "
                "exclude= out to use the index's exclusions"
            )


def index_collection(emb: Embeddings, exclude=()) -> CollectionIndex:
    """A ``CollectionIndex`` over the rows of ``emb`` that may be neighbours (not in ``exclude``).

    Build it once and pass it as ``index=`` to ``find_neighbors`` to answer many queries; it
    remembers its exclusions.
    """
    cand = _candidates(emb, exclude)
    excluded = _excluded(exclude)
    return CollectionIndex(
        emb.setting, len(emb.ids), cand, build_index(emb.vectors[cand]), excluded
    )


def find_neighbors(emb: Embeddings, query, *, k: int = 10, exclude=(), index=None) -> pd.DataFrame:
    """Neighbours of one image: by id (in the collection) or by a (D,) vector from outside it.

    Args:
        emb: embeddings from ``embed_folder`` or ``load_embeddings``.
        query: an id in ``emb.ids``, or a (D,) float32 L2-normalised vector.
        exclude: ids that must never appear as neighbours (they can still be the query).
        index: a ``CollectionIndex`` from ``index_collection(emb, exclude)``, to skip building
            it per query; its exclusions apply (``exclude`` may be left out, or must match).

    Returns:
        DataFrame with columns rank (1..k), id, score (cosine), best first.

    Raises:
        ValueError: ``index`` is not a ``CollectionIndex`` of ``emb``, or was built with other
            exclusions than ``exclude``.
    """
    check_k(k)
    index = _index_for(emb, exclude, index)
    cand = index.rows
    if isinstance(query, (str, int, np.integer)):
        try:
            row = emb.ids.index(files.parse_image_id(query, "query"))
        except ValueError:
            raise ValueError(
                f"id {query!r} is not in the collection ({len(emb.ids)} images)"
            ) from None
        self_row = np.searchsorted(cand, row)
        self_row = self_row if self_row < len(cand) and cand[self_row] == row else -1
        scores, rows = search_index(index.index, emb.vectors[row], k=k, self_rows=[self_row])
    else:
        vector = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != emb.vectors.shape[1]:
            raise ValueError(
                f"query has {vector.shape[1]} dims, the collection {emb.vectors.shape[1]}"
            )
        scores, rows = search_index(index.index, vector, k=k)
    ok = rows[0] >= 0
    return pd.DataFrame(
        {
            "rank": np.arange(1, ok.sum() + 1),
            "id": [emb.ids[cand[r]] for r in rows[0][ok]],
            "score": scores[0][ok].astype(np.float32),
        }
    )


def _index_for(emb: Embeddings, exclude, index) -> CollectionIndex:
    """``index`` checked against ``emb`` and ``exclude``, or one built for them."""
    if index is None:
        return index_collection(emb, exclude)
    if not isinstance(index, CollectionIndex):
        raise ValueError(
            f"index must come from index_collection(emb, exclude), got {type(index).__name__}"
        )
    index.check(emb, exclude)
    return index


def match_all(
    emb: Embeddings,
    *,
    k: int = 10,
    exclude=(),
    data: str | os.PathLike | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """All-pairs top-k: every image's k nearest neighbours, in blocks of queries (bounded memory).

    Args:
        emb: embeddings of one setting.
        k: neighbours per query (itself excluded).
        exclude: ids that never appear as neighbours; they are still queried.
        data: when given, the table is also written to ``matches/<setting>/neighbors.parquet``.

    Returns:
        DataFrame ``query_id, rank, id, score`` (rank 1 is the best; score float32 cosine).
    """

    check_k(k)
    if exclude:
        logger.info("match %s: %s never neighbours", emb.setting, describe_exclusions(exclude))
    cand = _candidates(emb, exclude)
    vectors = emb.vectors if len(cand) == len(emb.ids) else emb.vectors[cand]  # no copy if all
    self_rows = np.full(len(emb.ids), -1, np.int64)
    self_rows[cand] = np.arange(len(cand))
    desc = f"neighbours {emb.setting}"
    with tqdm(total=len(emb.ids), desc=desc, unit="query", disable=not progress) as bar:
        # One call: the results are small (N x k), and the tiles are made once.
        scores, rows = search_vectors(vectors, emb.vectors, k=k, self_rows=self_rows, bar=bar)
    q, r = np.nonzero(rows >= 0)
    ids = np.asarray(emb.ids, dtype=np.int64)
    table = pd.DataFrame(
        {
            "query_id": ids[q],
            "rank": (r + 1).astype(np.int16),
            "id": ids[cand[rows[q, r]]],
            "score": scores[q, r].astype(np.float32),
        }
    )
    if data is not None:
        write_matches(data, emb, table, exclude, k=k)
    return table


def find_duplicate_groups(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Groups of rows whose cosine reaches ``threshold``, chained (connected components).

    Args:
        vectors: (N, D) float32, L2-normalised.
        threshold: cosine in [-1, 1]; a pair at or above it is linked.

    Returns:
        Groups of two or more row indices, each sorted, ordered by their first row.
    """
    return duplicates_and_nearest(vectors, threshold, nearest=False)[0]


def duplicates_and_nearest(vectors: np.ndarray, threshold: float, *, nearest: bool = True):
    """``find_duplicate_groups`` and, from the same pass over the products, each row's nearest
    other row (the audit's embedding step).

    Returns:
        ``(groups, scores, rows)``: the groups; (N,) float32 cosine and int64 row of each row's
        nearest other row (-inf and -1 for a collection of one; empty unless ``nearest``).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    root = np.arange(n)  # each row's component so far, named by its smallest row
    want = min(2, n) if nearest else 0
    scores = np.full(n if nearest else 0, -np.inf, np.float32)
    near = np.full(n if nearest else 0, -1, np.int64)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        found = scan(vectors, vectors[start:stop], k=want, threshold=threshold)
        if want:
            s, r = _without_self(found.scores, found.rows, np.arange(start, stop), 1, want)
            scores[start:stop], near[start:stop] = s[:, 0], r[:, 0]
        queries, rows = found.pair_queries + start, found.pair_rows
        # Components so far as stars (row -> root) plus this block's links: memory stays
        # N + one block's pairs, however many pairs the whole collection has.
        src, dst = np.concatenate([np.arange(n), queries]), np.concatenate([root, rows])
        graph = coo_matrix((np.ones(len(src), bool), (src, dst)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        _, first = np.unique(labels, return_index=True)  # smallest row of each component
        root = first[labels]
    order = np.argsort(root, kind="stable")
    bounds = np.flatnonzero(np.diff(root[order])) + 1
    groups = [g.tolist() for g in np.split(order, bounds) if len(g) > 1]
    return sorted(groups, key=lambda g: g[0]), scores, near


# --- Match tables on disk: ``neighbors.parquet`` stamped with what it was made from, and


def write_matches(data: str | os.PathLike, emb, table: pd.DataFrame, exclude=(), *, k: int):
    """Write ``match_all``'s table to ``matches/<setting>/neighbors.parquet`` (atomically), with
    ``matches_made_from`` and ``k`` in its schema metadata so a reader can tell when it has gone
    stale and how many neighbours per query it holds."""
    path = layout.neighbors_path(data, emb.setting)
    files.write_keyed_parquet(path, table, {**matches_made_from(emb, exclude), "k": k})


def stored_matches(
    data: str | os.PathLike, emb, exclude=(), *, k: int | None = None
) -> pd.DataFrame | None:
    """The match stage's table for ``emb`` (cut to ranks <= ``k`` when given), when it was made
    from this cache generation with these exclusions (and at least ``k`` neighbours per query,
    when given); None when it is absent or stale (then search: ``match_all``). A damaged or
    forged table (``read_matches`` refuses it, or it lists an excluded game) is a warning and
    None, never trusted.

    Returns:
        DataFrame ``query_id, rank, id, score`` as ``match_all`` returns it, or None.
    """
    path = layout.neighbors_path(data, emb.setting)
    key = read_matches_made_from(path) if path.is_file() else None
    if key is None:
        return None
    made_with = key.pop("k", None)
    if key != matches_made_from(emb, exclude):
        return None
    try:
        table = read_matches(path, ids=emb.ids)
    except ValueError as e:
        logger.warning("%s; not used: searching again", e)
        return None
    if set(table["id"].tolist()) & _excluded(exclude):
        logger.warning("match table %s lists excluded games; not used: searching again", path)
        return None
    if k is None:
        return table
    # Files before 0.2 carry no k: their longest list is a lower bound of it.
    made_with = made_with if isinstance(made_with, int) else int(table["rank"].max(initial=0))
    return table[table["rank"] <= k].reset_index(drop=True) if made_with >= k else None


def matches_made_from(emb, exclude=()) -> dict:
    """The cache generation, the rows left out of it and the exclusion list a match table is
    computed from."""
    excluded = ",".join(sorted(str(e) for e in _excluded(exclude)))  # as written since 0.1
    return {**emb.made_from(), "excluded_sha256": hashlib.sha256(excluded.encode()).hexdigest()}


def read_matches(path, ids=None) -> pd.DataFrame:
    """A ``neighbors.parquet``, checked: the columns ``match_all`` writes, int64 ids (files before
    0.2 stored them as strings), ranks from 1, finite cosines in [-1, 1], and, with ``ids`` (the
    embeddings' ids), every query and neighbour among them. The file may come from anyone: its
    made-from key only says which cache it claims to come from.

    Raises:
        ValueError: naming the file, what is wrong with it, and the fix (rerun ``match``).
    """
    try:
        table = pd.read_parquet(path, columns=["query_id", "rank", "id", "score"])
        table = table.astype({"query_id": np.int64, "rank": np.int64, "id": np.int64})
        score = table["score"].to_numpy(np.float64)
    except (OSError, ValueError, TypeError, KeyError, OverflowError) as e:
        # One line, whatever pyarrow says.
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"match table {path} is unreadable ({why}): rerun `match`") from None
    why = ""
    if len(table) and (table["rank"].min() < 1 or not np.isfinite(score).all()):
        why = "ranks below 1 or scores that are not numbers"
    elif len(table) and np.abs(score).max() > 1.0 + 1e-3:
        why = "cosines outside [-1, 1]"
    elif ids is not None and not set(table["query_id"]) | set(table["id"]) <= set(ids):
        why = "ids that are not in the collection"
    if why:
        raise ValueError(f"match table {path} holds {why}: rerun `match` to make it again")
    return table.astype({"rank": np.int16, "score": np.float32})


def read_matches_made_from(path) -> dict | None:
    """``matches_made_from`` as written into a neighbors.parquet, or None for an older file."""
    return files.read_parquet_key(path)


def export_matches(
    data: str | os.PathLike, setting: str | Setting, *, names: dict[int, str] | None = None
):
    """Write the match table for serving: ``neighbors.json`` beside ``neighbors.parquet``.

    The JSON maps each query id to its neighbours best first, ``[{"id", "name", "score"}, ...]``
    (scores rounded to 4 decimals), so a web page can look a game up without pandas.

    Returns:
        ``(parquet_path, json_path)``.
    """
    setting = setting_of(setting)
    path = layout.neighbors_path(data, setting)
    if not path.is_file():
        raise ValueError(f"no matches for setting {setting!r}: run `match` first")
    try:
        ids = load_embeddings(data, setting).ids
    except ValueError:  # no cache to check against: the table's own checks still apply
        ids = None
    table = read_matches(path, ids=ids).sort_values(["query_id", "rank"])  # ValueError
    names = names or {}
    out = {  # ids as strings: JSON's keys are
        str(q): [
            {"id": str(i), "name": names.get(i, ""), "score": round(float(s), 4)}
            for i, s in zip(g["id"], g["score"])
        ]
        for q, g in table.groupby("query_id", sort=False)
    }
    json_path = layout.neighbors_json_path(data, setting)
    files.write_text_atomic(json_path, json.dumps(out, ensure_ascii=False))
    return path, json_path


# --- Find games by name: case, accents, punctuation and small typos forgiven (rapidfuzz).

WORD_CUTOFF = 75


@functools.cache  # the browser searches the same 30,000 names on every keystroke
def normalize_name(text: str) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed: "Pokémon: Red!" -> "pokemon red"."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def search_games(names: dict[int, str], text: str, *, ids=None, limit: int = 20) -> list[int]:
    """Ids whose name holds every word of ``text``, allowing a typo per word, best first.

    Args:
        names: ``{id: name}``.
        text: part of a name, any case, accents or punctuation, small typos; or an app id.
        ids: the ids that may be returned (default: all of ``names``).
        limit: at most this many.

    Returns:
        Ids: an exact id first; then names by how well the words match (exact before a typo),
        names starting with the query, shorter names first.
    """
    from rapidfuzz import fuzz, process

    pool = list(names) if ids is None else list(ids)
    text = text.strip()
    hits = [int(text)] if text.isascii() and text.isdigit() and int(text) in set(pool) else []
    words = normalize_name(text).split()
    if not words or not pool:
        return hits[:limit]
    query = " ".join(words)
    normed = [normalize_name(names.get(i, "")) for i in pool]
    # (words, names) scores in one C call on every core (at 150,000 names this call is most of a
    # keystroke: benchmarks/README.md, "Catalogue scale"); a name must match every word.
    scores = process.cdist(
        words,
        normed,
        scorer=fuzz.partial_ratio,
        score_cutoff=WORD_CUTOFF,
        dtype=np.uint8,
        workers=-1,
    )
    keep = np.flatnonzero((scores >= WORD_CUTOFF).all(axis=0))
    mean = scores[:, keep].mean(axis=0)
    ranked = heapq.nsmallest(
        limit,
        (
            (-s, not normed[j].startswith(query), len(normed[j]), normed[j], pool[j])
            for s, j in zip(mean.tolist(), keep.tolist())
            if pool[j] not in hits
        ),
    )
    return (hits + [i for *_, i in ranked])[:limit]
