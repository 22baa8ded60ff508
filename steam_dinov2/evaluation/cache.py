"""The pieces of an evaluation kept in ``DATA/evaluation/cache/<setting>/``, each under a key.

A piece (a setting's top-k neighbours, one truth's per-query rows) is a parquet file whose schema
metadata holds the key it was computed for: the embedding cache's generation, k, a digest of the
labels or images. A rerun reads a piece whose key still matches and recomputes any other; a
piece that is absent, stale or unreadable is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd

from ..core import files, layout
from .ranking import rank_rows

logger = logging.getLogger(__name__)

_KEY = b"steam_dinov2.evaluation_key"


def cached_table(data, setting: str, part: str, key: dict, compute, check=None) -> pd.DataFrame:
    """The cached piece when its key matches and ``check(piece)`` finds nothing wrong (it returns
    "" or what is wrong), else ``compute()`` stored under ``key``. A piece whose key matches but
    whose rows do not hold up (damaged, forged) is computed again with a warning."""
    path = layout.evaluation_cache_path(data, setting, part)
    cached = files.read_keyed_parquet(path, key, name=_KEY)
    if cached is not None and "query_id" in cached and cached["query_id"].dtype != "int64":
        try:  # pieces before 0.2 stored ids as strings
            cached = cached.astype({"query_id": "int64"})
        except (ValueError, TypeError, OverflowError):
            cached = None
    if cached is not None and check is not None and (why := check(cached)):
        logger.warning("evaluation piece %s is damaged (%s); computing it again", path, why)
        cached = None
    if cached is not None:
        return cached
    df = compute()
    files.write_keyed_parquet(path, df, key, name=_KEY)
    return df


def digest(obj) -> str:
    """16 hex digits of SHA-256 of an array (values and shape) or of JSON-able labels."""
    if isinstance(obj, np.ndarray):
        raw = np.ascontiguousarray(obj).tobytes() + str(obj.shape).encode()
    else:
        raw = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def cached_neighbors(data, emb, k: int, key: dict) -> np.ndarray:
    """(N, min(k, N - 1)) int64 rows of each banner's top-k in ``emb`` (itself excluded), from
    the cache when ``key`` matches and the rows are in range, else ranked again."""

    def compute():
        rows = rank_rows(emb.vectors, emb.vectors, k, self_rows=np.arange(len(emb.ids)))
        return pd.DataFrame({"query_id": emb.ids, "neighbors": list(rows)})

    df = cached_table(data, emb.setting, "neighbors", key, compute)
    n, width = len(emb.ids), min(k, len(emb.ids) - 1)
    try:
        rows = np.stack(df["neighbors"].to_numpy()).astype(np.int64)
        if rows.shape == (n, width) and rows.min() >= 0 and rows.max() < n:
            return rows
    except (KeyError, ValueError, TypeError):
        pass
    logger.warning("damaged evaluation cache of %s: ranking again", emb.setting)
    layout.evaluation_cache_path(data, emb.setting, "neighbors").unlink(missing_ok=True)
    return np.stack(cached_table(data, emb.setting, "neighbors", key, compute)["neighbors"])


def piece_problem(piece: pd.DataFrame, setting: str, ids, columns) -> str:
    """What is wrong with a cached per-query piece of ``setting`` over the embeddings ``ids``:
    its columns, a query outside them, another setting's rows, values or baselines that are not
    numbers in [0, 1]; "" when nothing is."""
    if list(piece.columns) != list(columns):
        return f"columns {list(piece.columns)[:8]}"
    try:
        values = piece[["value", "baseline"]].to_numpy(np.float64)
        if not set(piece["query_id"].astype(np.int64)) <= set(ids):
            return "queries that are not the embeddings' ids"
    except (ValueError, TypeError, OverflowError) as e:
        return f"{type(e).__name__}: {e}"
    if len(piece) and set(piece["setting"]) != {setting}:
        return "rows of another setting"
    finite = values[~np.isnan(values)]  # a baseline may be NaN where a query has nothing to find
    # 1e-6: a perfect ranking's nDCG or AP sums to 1 within float error (1.0000000000000002)
    if finite.size and (
        not np.isfinite(finite).all() or finite.min() < -1e-6 or finite.max() > 1 + 1e-6
    ):
        return "values outside [0, 1]"
    return ""
