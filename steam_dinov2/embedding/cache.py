"""An embedding cache on disk: written atomically, generation by generation; a long run's
checkpoints are written and merged here. Reading one from untrusted hands is ``cache_check``.

Layout (see ``layout``): ``embeddings/<setting>/meta.json`` names one generation
``vectors-<gen>.npy`` + ``ids-<gen>.json``; ``checkpoint-*.json`` + ``.npy`` while a run is going.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import files, layout

logger = logging.getLogger(__name__)
# A long run saves what it has every this many images or seconds, whichever comes first: a Colab
# disconnect then loses at most a few minutes (a checkpoint of 500 ViT-B vectors is 1.5 MB).
CHECKPOINT_EVERY = 500
CHECKPOINT_SECONDS = 300


@dataclass(frozen=True)
class CacheTarget:
    """One setting's cache in a data folder and what its rows must have been made with:
    ``key`` (``Setting.key()``) and ``source``, the image folder as ``meta.json`` records it."""

    data: Path
    setting: str
    key: dict
    source: str


def read_checkpoints(target: CacheTarget) -> list[CachedRows]:
    """The checkpoints an interrupted run for ``target`` left, oldest first, as ``CachedRows``;
    a damaged or foreign one is skipped with a warning (its images are embedded again)."""
    found = []
    for ids_path in layout.embedding_checkpoints(target.data, target.setting):
        try:
            made = load_json(ids_path)
            rows = check_rows(made, ids_path, None)
            if made.get("key") != target.key or made.get("images") != target.source:
                raise ValueError(f"{ids_path} was made with other options")
            vectors_path = layout.checkpoint_vectors_path(ids_path)
            rows.vectors = load_vectors(vectors_path, len(rows.ids), None)
        except ValueError as e:
            logger.warning("ignoring checkpoint: %s", getattr(e, "what", e))
            continue
        found.append(rows)
    return found


def folder_ref(images: str | os.PathLike, data: str | os.PathLike) -> str:
    """The image folder as a cache records it (``images`` in ``meta.json``): relative to the data
    folder when inside it (so a data folder can move, e.g. onto Google Drive), else absolute."""
    images, data = Path(images).resolve(), Path(data).resolve()
    return images.relative_to(data).as_posix() if images.is_relative_to(data) else str(images)


def library_versions() -> dict:
    """The versions a new cache records (``versions`` in ``meta.json``)."""
    import timm
    import torch
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
    }


def content_hash(path: str | os.PathLike) -> str:
    """BLAKE2b-128 of a file's bytes, hex: recognises an unchanged image whose size or mtime
    changed (a copy, a Drive round trip). Read in 1 MiB blocks: memory stays flat."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checkpoint(target: CacheTarget, rows: CachedRows) -> None:
    """Save ``rows`` (as ``read_checkpoints`` returns them) as one checkpoint of ``target``."""
    # The vectors first, then the ids file that names them (the commit point), each atomic: a
    # kill at any moment leaves whole checkpoints and at most a stray .npy, never half of one.
    ids_path = layout.embedding_checkpoint_path(
        target.data, target.setting, f"{time.time_ns():020d}"
    )
    with files.atomic_path(layout.checkpoint_vectors_path(ids_path)) as tmp:
        np.save(tmp, np.ascontiguousarray(rows.vectors, dtype=np.float32))
    made = {"key": target.key, "images": target.source, **_row_record(rows)}
    files.write_text_atomic(ids_path, json.dumps(made))


def write_cache(folder: Path, meta: dict, ids, stamps, vectors, failed, hashes=None) -> dict:
    # New files under a fresh generation name, then meta.json (the commit point) in one rename: a
    # kill at any moment leaves the old meta with its old files, or the new meta with the new ones.
    gen = _unchanged_generation(folder, ids, vectors) or uuid.uuid4().hex[:8]
    meta = {**meta, "count": len(ids), "dim": int(vectors.shape[1]) if len(ids) else meta["dim"]}
    meta.update(
        vectors_file=layout.cache_file_name("vectors", gen),
        ids_file=layout.cache_file_name("ids", gen),
    )
    with files.atomic_path(folder / meta["vectors_file"]) as tmp:
        np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
    hashes = [None] * len(ids) if hashes is None else hashes
    rows = _row_record(CachedRows(ids=ids, stamps=stamps, hashes=hashes, failed=failed))
    files.write_text_atomic(folder / meta["ids_file"], json.dumps(rows))
    files.write_text_atomic(layout.cache_meta_path(folder), json.dumps(meta, indent=1))
    for old in layout.cache_generation_files(folder):
        if old.name not in (meta["vectors_file"], meta["ids_file"]):
            old.unlink(missing_ok=True)
    return meta


def _unchanged_generation(folder: Path, ids, vectors) -> str | None:
    """The current generation's name when it holds exactly these ids and vectors (only stamps or
    hashes changed: a folder copied to Drive or cloned), so tables made from it stay valid."""
    try:
        meta = json.loads(layout.cache_meta_path(folder).read_text())
        match = re.fullmatch(r"vectors-([0-9a-f]{8})\.npy", str(meta["vectors_file"]))
        old_ids = json.loads((folder / str(meta["ids_file"])).read_text())["ids"]
        if not match or old_ids != [str(i) for i in ids]:
            return None
        old = np.load(folder / match.group(0), mmap_mode="r", allow_pickle=False)
        same = old.shape == vectors.shape and np.array_equal(old, vectors)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return match.group(1) if same and meta["ids_file"] == f"ids-{match.group(1)}.json" else None


class Checkpointer:
    """Collects ``embed_images``'s batches of the images ``todo`` (ids, in the order they are
    embedded) and writes them as a checkpoint of ``target`` every ``every`` images or
    ``CHECKPOINT_SECONDS``; ``stamps`` and ``hashes`` are ``{id: [size, mtime]}`` and
    ``{id: content_hash}`` of those files."""

    def __init__(self, target: CacheTarget, todo: list[int], stamps: dict, every: int, hashes=None):
        self.target, self.todo, self.stamps, self.every = target, todo, stamps, every
        self.parts, self.ids, self.failed, self.since = [], [], {}, time.monotonic()
        self.hashes = hashes or {}

    def add(self, vectors, kept, errors):
        if len(kept):
            self.parts.append(vectors)
            self.ids += [self.todo[j] for j in kept]
        for p, e in errors.items():  # every file here is named by its id (core.images)
            app_id = files.parse_image_id(Path(p).stem)
            self.failed[app_id] = [e, *self.stamps[app_id]]
        pending = len(self.ids) + len(self.failed)
        late = time.monotonic() - self.since > CHECKPOINT_SECONDS
        if pending >= self.every or (pending and late):
            self.write()

    def write(self):
        vectors = np.concatenate(self.parts) if self.parts else np.zeros((0, 0), np.float32)
        stamps = [self.stamps[i] for i in self.ids]
        hashes = [self.hashes.get(i) for i in self.ids]
        rows = CachedRows(self.ids, stamps, hashes, vectors, self.failed)
        write_checkpoint(self.target, rows)
        self.parts, self.ids, self.failed, self.since = [], [], {}, time.monotonic()


@dataclass
class CachedRows:
    """The one row type of an embedding cache: what a cache generation, a checkpoint, or a run
    (the cache plus an interrupted run's checkpoints) holds, row by row:
    ``vectors[r]`` belongs to ``ids[r]``, embedded from a file with ``stamps[r]`` (size, mtime);
    ``hashes[r]`` is the file's ``content_hash`` (None in caches made before hashes);
    ``failed`` is ``{id: [reason, size, mtime]}``. ``changed`` says it must be written again;
    ``dropped`` counts the rows ``refresh`` dropped for images no longer there."""

    ids: list[int] = field(default_factory=list)
    stamps: list[list[int]] = field(default_factory=list)
    hashes: list[str | None] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    failed: dict[int, list] = field(default_factory=dict)
    meta: dict | None = None
    resumed: int = 0
    changed: bool = False
    dropped: int = 0

    @classmethod
    def read(cls, target: CacheTarget) -> CachedRows:
        """The cache of ``target.setting`` when it was made with ``target.key`` from the folder
        ``target.source``, plus the checkpoints of an interrupted run; empty when there is none
        (or it is damaged: then it is recomputed). ValueError when it holds another folder."""
        rows = cls()
        folder = layout.embeddings_dir(target.data, target.setting)
        if layout.cache_meta_path(folder).is_file():
            rows._read_cache(folder, target.key, target.source)
        rows._add_checkpoints(read_checkpoints(target))
        if rows.resumed:
            logger.info("resuming %s: %d from an interrupted run", target.setting, rows.resumed)
        rows.changed = rows.meta is None or rows.resumed > 0
        return rows

    def _read_cache(self, folder: Path, key: dict, source: str) -> None:
        try:
            meta, rows = read_cache(folder)
        except (ValueError, OSError) as e:
            logger.warning("%s; recomputing", getattr(e, "what", e))  # not "delete and rerun"
            return
        if meta.get("images", source) != source:
            raise ValueError(
                f"{folder} holds embeddings of {meta['images']}, not {source}: embed that "
                "folder with another data folder (--data), or delete this cache"
            )
        if {k: meta.get(k, "fp32" if k == "precision" else None) for k in key} != key:
            logger.warning("cache %s was made with other options; recomputing", folder)
            return
        self.meta = meta
        self.ids, self.stamps, self.vectors = rows.ids, rows.stamps, rows.vectors
        self.hashes, self.failed = rows.hashes, rows.failed

    def _add_checkpoints(self, checkpoints: list[CachedRows]) -> None:
        for rows in checkpoints:
            have = set(self.ids)
            new = [r for r, i in enumerate(rows.ids) if i not in have]
            if new and (not self.ids or rows.vectors.shape[1] == self.vectors.shape[1]):
                ids = [rows.ids[r] for r in new]
                stamps, hashes = [rows.stamps[r] for r in new], [rows.hashes[r] for r in new]
                self.append(rows.vectors[new], ids, stamps, hashes)
                self.resumed += len(new)
            self.failed = {**rows.failed, **self.failed}

    def refresh(self, now: dict[str, list[int]], paths: dict[str, Path]) -> int:
        """Keep the rows (and failures) of files that are unchanged; drop the rest (changed or
        vanished files: ``dropped`` counts those).

        A file is unchanged when its stamp in ``now`` (``{id: [size, mtime]}``) is the cached
        one, or, when only the mtime differs (a copy, a Drive round trip), its ``content_hash``
        is: only those files are read. Returns how many rows were recognised by content.
        """
        have, recognised, keep = set(self.ids), 0, []
        self.dropped = len(have - now.keys())
        for r, i in enumerate(self.ids):
            stamp = now.get(i)
            moved = stamp is not None and stamp != self.stamps[r] and stamp[0] == self.stamps[r][0]
            if moved and self.hashes[r] is not None and content_hash(paths[i]) == self.hashes[r]:
                self.stamps[r], self.changed = stamp, True  # next time: by stamp
                recognised += 1
            if stamp == self.stamps[r]:
                keep.append(r)
        failed = {i: f for i, f in self.failed.items() if now.get(i) == f[1:] and i not in have}
        self.changed |= len(keep) != len(self.ids) or len(failed) != len(self.failed)
        self.failed = failed
        self.ids, self.stamps, self.hashes = (
            [x[r] for r in keep] for x in (self.ids, self.stamps, self.hashes)
        )
        self.vectors = self.vectors[keep]
        return recognised

    def append(self, vectors: np.ndarray, ids: list[int], stamps: list, hashes: list) -> None:
        if len(ids):
            self.vectors = np.concatenate([self.vectors, vectors]) if self.ids else vectors
            self.ids, self.stamps = self.ids + list(ids), self.stamps + list(stamps)
            self.hashes = self.hashes + list(hashes)
            self.changed = True

    def write(self, target: CacheTarget, meta: dict) -> None:
        """Write the rows as ``target``'s new generation (``write_cache``) with ``meta``."""
        folder = layout.embeddings_dir(target.data, target.setting)
        rows = (self.ids, self.stamps, self.vectors, self.failed, self.hashes)
        self.meta = write_cache(folder, meta, *rows)
        self.changed = False


# --- Reading an embedding cache from untrusted hands: every field of ``meta.json``, the ids file

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


def check_rows(rows, ids_path: Path, count: int | None) -> CachedRows:
    """Ids, stamps, hashes and failures of one cache generation or checkpoint (its ids file),
    checked; the vectors are read apart (``load_vectors``)."""
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
    try:  # ids are strings in the file (the JSON edge), ints everywhere else
        ids = [files.parse_image_id(i) for i in ids]
        failed = {files.parse_image_id(i): f for i, f in failed.items()}
    except ValueError:
        raise DamagedCache(ids_path, "an id that is not an app id or an own image's id") from None
    count = len(ids) if count is None else count
    if not len(ids) == len(stamps) == count or len(set(ids)) != len(ids):
        raise DamagedCache(ids_path, f"{len(ids)} ids, {len(stamps)} stamps for {count} rows")
    hashes = rows.get("hashes", [None] * len(ids))  # absent in caches made before hashes
    ok = isinstance(hashes, list) and len(hashes) == len(ids)
    if not ok or not all(h is None or (isinstance(h, str) and _HASH.fullmatch(h)) for h in hashes):
        raise DamagedCache(ids_path, "'hashes' not one content hash (hex) or null per id")
    return CachedRows(ids=ids, stamps=stamps, hashes=hashes, failed=failed)


def _row_record(rows: CachedRows) -> dict:
    """The ids file's JSON of ``rows`` (what ``check_rows`` reads back): ids as strings, JSON's
    keys being strings anyway."""
    return {
        "ids": [str(i) for i in rows.ids],
        "stamps": rows.stamps,
        "hashes": rows.hashes,
        "failed": {str(i): f for i, f in rows.failed.items()},
    }


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


def read_cache(folder: Path) -> tuple[dict, CachedRows]:
    """``(meta, rows)`` of a cache folder, all checked; ValueError naming the damaged file and
    the fix."""
    meta = read_cache_meta(folder)
    ids_path = folder / meta["ids_file"]
    rows = check_rows(load_json(ids_path), ids_path, meta["count"])
    rows.vectors = load_vectors(folder / meta["vectors_file"], meta["count"], meta["dim"])
    return meta, rows
