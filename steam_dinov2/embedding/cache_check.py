"""Reading an embedding cache from untrusted hands: every field of ``meta.json``, the ids file
and the ``.npy`` is checked before use; a damaged file is a ValueError naming it and the fix."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..core import layout

_META_STRINGS = ("model", "weights", "preset", "pooling")
_HASH = re.compile(r"[0-9a-f]{32}")


class DamagedCache(ValueError):
    """A cache file that cannot be trusted; the message tells a reader what to do about it,
    ``what`` only says which file and why (for ``embed``, which recomputes it itself)."""

    def __init__(self, path: Path, why: str):
        self.what = f"embedding cache file {path} is damaged ({why})"
        super().__init__(f"{self.what}: delete {path.parent} and rerun `embed` to recompute it")


def read_cache_meta(folder: str | os.PathLike) -> dict:
    """A cache's ``meta.json``, checked field by field (the folder may come from anyone)."""
    path = layout.cache_meta_path(folder)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise DamagedCache(path, f"not JSON: {type(e).__name__}") from None
    if not isinstance(meta, dict):
        raise DamagedCache(path, f"a {type(meta).__name__}, not an object")
    for k in _META_STRINGS:
        if not isinstance(meta.get(k), str):
            raise DamagedCache(path, f"{k!r} missing or not a string")
    for k in ("count", "dim"):
        if isinstance(meta.get(k), bool) or not isinstance(meta.get(k), int) or meta[k] < 0:
            raise DamagedCache(path, f"{k!r} missing or not a count")
    for kind in ("vectors", "ids"):
        if not layout.is_cache_file_name(kind, meta.get(f"{kind}_file")):
            raise DamagedCache(path, f"{kind + '_file'!r} is not a file name this package writes")
    return meta


def load_json(path: Path):
    """A JSON file of the cache; ValueError naming it when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise DamagedCache(path, f"not JSON: {type(e).__name__}") from None


def check_rows(rows, ids_path: Path, count: int | None) -> dict:
    """Ids, stamps and failures of one cache generation or checkpoint, checked."""
    if not isinstance(rows, dict):
        raise DamagedCache(ids_path, "not an object")
    ids, stamps, failed = rows.get("ids"), rows.get("stamps"), rows.get("failed")
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise DamagedCache(ids_path, "'ids' missing or not a list of strings")
    if not (isinstance(stamps, list) and all(_is_stamp(st) for st in stamps)):
        raise DamagedCache(ids_path, "'stamps' missing or not [size, mtime] pairs")
    ok = isinstance(failed, dict) and all(
        isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) and _is_stamp(f[1:])
        for f in failed.values()
    )
    if not ok:
        raise DamagedCache(ids_path, "'failed' missing or not {id: [reason, size, mtime]}")
    count = len(ids) if count is None else count
    if not len(ids) == len(stamps) == count or len(set(ids)) != len(ids):
        raise DamagedCache(ids_path, f"{len(ids)} ids, {len(stamps)} stamps for {count} rows")
    hashes = rows.get("hashes", [None] * len(ids))  # absent in caches made before hashes
    ok = isinstance(hashes, list) and len(hashes) == len(ids)
    if not ok or not all(h is None or (isinstance(h, str) and _HASH.fullmatch(h)) for h in hashes):
        raise DamagedCache(ids_path, "'hashes' not one content hash (hex) or null per id")
    return {"ids": ids, "stamps": stamps, "failed": failed, "hashes": hashes}


def load_vectors(path: Path, count: int, dim: int | None) -> np.ndarray:
    """(count, dim) float32 unit rows from a .npy file, or ValueError naming it."""
    try:
        # allow_pickle=False: an object array (a pickle inside) is refused, never loaded; the
        # memory map reads the header first, so a hostile shape costs nothing.
        vectors = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise DamagedCache(path, f"not a plain float array: {e}") from None
    want = (count, vectors.shape[-1] if dim is None and vectors.ndim == 2 else dim)
    if vectors.dtype != np.float32 or vectors.shape != want:
        raise DamagedCache(path, f"{vectors.dtype} {vectors.shape}, expected float32 {want}")
    vectors = np.array(vectors)
    norms = np.linalg.norm(vectors, axis=1)
    bad = ~np.isfinite(vectors).all(axis=1) | ~(np.abs(norms - 1) <= 1e-3)
    if bad.any():
        raise DamagedCache(path, f"{int(bad.sum())} rows are NaN or not unit length")
    return vectors


def _is_stamp(st) -> bool:
    return (
        isinstance(st, list)
        and len(st) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in st)
    )


def read_cache(folder: Path) -> tuple[dict, dict]:
    """``(meta, rows)`` of a cache folder: rows holds ids, stamps, failed, hashes and vectors,
    all checked; ValueError naming the damaged file and the fix."""
    meta = read_cache_meta(folder)
    ids_path = folder / meta["ids_file"]
    rows = check_rows(load_json(ids_path), ids_path, meta["count"])
    rows["vectors"] = load_vectors(folder / meta["vectors_file"], meta["count"], meta["dim"])
    return meta, rows
