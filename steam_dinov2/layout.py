"""The data folder's layout, in one place.

Every stage reads and writes inside one data folder; only this module spells out the paths::

    DATA/
      banners/{app_id}.jpg                 download stage
      manifest.parquet                     one row per app: name, url, status, ...
      embeddings/{setting}/                embed stage: meta.json, vectors-*.npy, ids-*.json,
                                           checkpoint-*.{json,npy} while a run is in progress
      matches/{setting}/neighbors.parquet  match stage: query_id, rank, id, score
      audit/                               audit stage: issues.parquet, exclusions.json, cleanvision/
      metadata.parquet, tag_names.parquet  developers, publishers, franchises, tags per app
      evaluation/                          evaluate stage: summary, agreement, per_query, cache/
      maps/{setting}/layout.parquet        catalogue map: id, x, y, cluster, centrality

A *setting* names one way of embedding: ``{model}__{preset}__{pooling}``, plus ``__random`` for
random weights or ``__w-{hash}`` for weights from a local file, so caches of different weights
never share a folder.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX only; elsewhere the folder lock and the liveness check of temp files are skipped
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

logger = logging.getLogger(__name__)

BANNERS = "banners"
MANIFEST = "manifest.parquet"
EMBEDDINGS = "embeddings"
MATCHES = "matches"
AUDIT = "audit"
LOCK = ".lock"
# Steam app ids are unsigned 32-bit integers (SteamKit's AppID type); 0 is "no app".
MAX_APP_ID = 2**32 - 1
# Own images (``import_folder``) are numbered above every Steam id, below 2**53 so they stay exact
# in JSON and JavaScript numbers.
OWN_ID_BASE = 2**32
MAX_IMAGE_ID = OWN_ID_BASE + 2**48 - 1
_DIGITS = re.compile(r"[0-9]+")
_BANNER_NAME = re.compile(r"([0-9]+)\.jpg")
_BANNER_MEMBER = re.compile(r"banners/([^/]+)\.jpg")  # any stem: callers check it is an id
# A temp file whose writer cannot be asked (no flock on this filesystem) is stale after this long.
_STALE_SECONDS = 6 * 3600


def parse_image_id(value: object, where: str = "") -> int:
    """``parse_app_id`` for the ids of a collection: Steam app ids, and own images' ids
    (``OWN_ID_BASE`` .. ``MAX_IMAGE_ID``, made by ``import_folder``)."""
    return parse_app_id(value, where, own_images=True)


def parse_app_id(value: object, where: str = "", *, own_images: bool = False) -> int:
    """The one check of an app id from anywhere (lists, file names, snapshots, manifests).

    Args:
        value: an int (numpy ints too), an integral float, or a str of ASCII digits.
        where: what to name in the error, e.g. ``"apps.csv:12"``.
        own_images: also accept the ids ``import_folder`` gives own images.

    Returns:
        The id as an int in 1..2**32-1, so it is safe as a file name and in an int64 column.

    Raises:
        ValueError: anything else (negative, fractional, too large, path characters, bool, ...).
    """
    app_id = None
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text) and len(text) <= 20:  # never int() a 5,000-digit string
            app_id = int(text)
    elif isinstance(value, float):
        app_id = int(value) if value.is_integer() else None
    elif not isinstance(value, bool) and hasattr(value, "__index__"):
        app_id = value.__index__()
    top = MAX_IMAGE_ID if own_images else MAX_APP_ID
    if app_id is None or not 1 <= app_id <= top:
        prefix = f"{where}: " if where else ""
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(f"{prefix}{shown} is not a Steam app id (an integer in 1..{MAX_APP_ID})")
    return app_id


def banners_dir(data: str | os.PathLike) -> Path:
    return Path(data) / BANNERS


def banner_path(data: str | os.PathLike, app_id: int | str) -> Path:
    """Where an app's banner is (or would be); writers pass ids checked by ``parse_app_id``,
    readers may ask for any key (an upload's) and simply find no file."""
    return banners_dir(data) / f"{app_id}.jpg"


def banner_member(app_id: int | str) -> str:
    """A banner's path relative to the data folder, as a snapshot archive names its member."""
    return f"{BANNERS}/{app_id}.jpg"


def banner_member_stem(name: str) -> str | None:
    """The stem of a member named ``banners/<stem>.jpg``, else None; the stem is unchecked."""
    m = _BANNER_MEMBER.fullmatch(name)
    return m.group(1) if m else None


def banner_files(
    data: str | os.PathLike, *, skipped: dict[str, str] | None = None
) -> dict[int, Path]:
    """``{app_id: path}`` of the finished banners, each a regular file inside ``banners/``.

    The folder is untrusted: names that are not ``{app_id}.jpg`` with a valid id, FIFOs, devices,
    folders named ``*.jpg`` and symlinks leading out of ``banners/`` are left out, found with
    ``stat`` only (never opened: opening a FIFO blocks), logged, and listed in ``skipped``
    (``{file name: reason}``) when a dict is given. Temporary files of a running write
    (``.name.tmp*``) are not banners and are not reported.
    """
    folder = banners_dir(data)
    if not folder.is_dir():
        return {}
    root = folder.resolve()
    found, bad = {}, {}
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            m = _BANNER_NAME.fullmatch(name)
            if m is None:
                continue  # not a banner name (a README, a thumbnail folder): not ours to judge
            try:
                app_id = parse_image_id(m.group(1))
                if str(app_id) != m.group(1):
                    raise ValueError(f"not the canonical name {app_id}.jpg")
            except ValueError as e:
                bad[name] = str(e)
                continue
            reason = not_a_regular_file(folder / name, root)
            if reason:
                bad[name] = reason
            else:
                found[app_id] = folder / name
    if bad:
        shown = "; ".join(f"{n}: {r}" for n, r in sorted(bad.items())[:5])
        logger.warning("skipped %d files in %s: %s", len(bad), folder, shown)
        if skipped is not None:
            skipped.update(bad)
    return found


def not_a_regular_file(path: Path, root: Path) -> str:
    """Why ``path`` is not a regular file inside the folder ``root`` (resolved), "" when it is.

    Uses ``lstat``/``stat`` only: a FIFO is never opened (that would block), a symlink counts
    when it leads to a regular file inside ``root``.
    """
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = path.resolve()
            if not target.is_relative_to(root):
                return "symlink leading out of the folder"
            st = os.stat(path)
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        return f"cannot stat ({e})"
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO, device or socket"
        return f"not a regular file ({kind})"
    return ""


def manifest_path(data: str | os.PathLike) -> Path:
    return Path(data) / MANIFEST


def setting_name(
    model: str, preset: str, pooling: str, *, weights_tag: str = "", precision: str = ""
) -> str:
    """Folder name of one embedding setting, safe on every filesystem.

    Args:
        model: model name as given to ``load_model`` (``hub:owner/repo:entry`` allowed).
        preset: preprocessing preset name.
        pooling: pooling strategy name.
        weights_tag: "" for the model's pretrained weights, "random" or "w-<hash>" otherwise.
        precision: "" for float32, "fp16" for half precision (CUDA).
    """
    parts = [model, preset, pooling] + [p for p in (weights_tag, precision) if p]
    # ':' and '/' occur in hub names; '+' in pooling names is fine everywhere.
    return "__".join(re.sub(r"[^A-Za-z0-9_.+-]+", "-", p) for p in parts)


def embeddings_dir(data: str | os.PathLike, setting: str) -> Path:
    return Path(data) / EMBEDDINGS / setting


def embedding_checkpoint_path(data: str | os.PathLike, setting: str, gen: str) -> Path:
    """One checkpoint of an embed run in progress: ``checkpoint-{gen}.json`` (ids, stamps, the
    options it was made with) beside ``checkpoint-{gen}.npy`` (its vectors)."""
    return embeddings_dir(data, setting) / f"checkpoint-{gen}.json"


def embedding_checkpoints(
    data: str | os.PathLike, setting: str, suffix: str = ".json"
) -> list[Path]:
    """The checkpoint files left in a setting's cache, oldest first: the ``.json`` files (each
    names its ``.npy``), or with ``suffix=""`` every checkpoint file (to clean up)."""
    folder = embeddings_dir(data, setting)
    return sorted(folder.glob(f"checkpoint-*{suffix}")) if folder.is_dir() else []


def matches_dir(data: str | os.PathLike, setting: str) -> Path:
    return Path(data) / MATCHES / setting


def neighbors_path(data: str | os.PathLike, setting: str) -> Path:
    return matches_dir(data, setting) / "neighbors.parquet"


def preview_path(data: str | os.PathLike, setting: str) -> Path:
    return matches_dir(data, setting) / "preview.png"


def map_path(data: str | os.PathLike, setting: str) -> Path:
    """The catalogue map of a setting (``catalog_map.map_catalog``)."""
    return Path(data) / "maps" / setting / "layout.parquet"


def downloads_dir(data: str | os.PathLike) -> Path:
    """Files fetched to import (snapshot releases), kept so a rerun does not fetch them again."""
    return Path(data) / "downloads"


def audit_dir(data: str | os.PathLike) -> Path:
    return Path(data) / AUDIT


def issues_path(data: str | os.PathLike) -> Path:
    return audit_dir(data) / "issues.parquet"


def exclusions_path(data: str | os.PathLike) -> Path:
    return audit_dir(data) / "exclusions.json"


def cleanvision_dir(data: str | os.PathLike) -> Path:
    """CleanVision's results as plain data (never a pickle), reused while their key matches."""
    return audit_dir(data) / "cleanvision"


def cleanvision_issues_path(data: str | os.PathLike) -> Path:
    return cleanvision_dir(data) / "issues.parquet"


def cleanvision_sets_path(data: str | os.PathLike) -> Path:
    return cleanvision_dir(data) / "duplicate_sets.json"


def cleanvision_key_path(data: str | os.PathLike) -> Path:
    return cleanvision_dir(data) / "key.json"


def metadata_path(data: str | os.PathLike) -> Path:
    return Path(data) / "metadata.parquet"


def tag_names_path(data: str | os.PathLike) -> Path:
    return Path(data) / "tag_names.parquet"


def evaluation_dir(data: str | os.PathLike) -> Path:
    return Path(data) / "evaluation"


def evaluation_summary_path(data: str | os.PathLike) -> Path:
    return evaluation_dir(data) / "summary.parquet"


def evaluation_agreement_path(data: str | os.PathLike) -> Path:
    return evaluation_dir(data) / "agreement.parquet"


def evaluation_queries_path(data: str | os.PathLike) -> Path:
    return evaluation_dir(data) / "per_query.parquet"


def evaluation_cache_path(data: str | os.PathLike, setting: str, part: str) -> Path:
    """One cached piece of a setting's evaluation (a truth's per-query rows, its neighbours)."""
    return evaluation_dir(data) / "cache" / setting / f"{part}.parquet"


def list_settings(data: str | os.PathLike) -> list[str]:
    """Names of the settings that have an embedding cache under ``data``, sorted."""
    root = Path(data) / EMBEDDINGS
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or kill at any moment leaves either the old file or the new one, never half of one.
    The temporary name (``.{stem}.{random}.tmp{suffix}``) keeps the suffix so libraries that
    look at it (numpy, pandas) behave. It is created with mode 0o666 minus the umask, as
    ``open()`` would (``tempfile.mkstemp`` makes 0o600), and flock-ed while this process writes
    it, so ``clean_stale_temp`` of another process can tell it is alive.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        _flock(fd)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh folder beside ``path`` (not yet existing); on success it replaces ``path``.

    A kill at any moment leaves the old folder, the new one or none (a cache then recomputes),
    never a mix of the two. Folders get 0o777 minus the umask, like ``mkdir``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            tmp.mkdir()
            break
        except FileExistsError:
            continue
    fd = os.open(tmp, os.O_RDONLY)
    try:
        _flock(fd)
        yield tmp / path.name
        old = tmp / "old"
        if path.exists():
            path.rename(old)
        (tmp / path.name).rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def _flock(fd: int) -> None:
    """Hold an exclusive flock on ``fd`` (released when it is closed), where the filesystem can."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # e.g. a FUSE mount without locks: age decides
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Temporary files and folders that ``atomic_path``/``atomic_dir`` left in ``directory``
    (this folder only) whose writer is gone: killed, or finished without cleaning up."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(".*.tmp*") if not _is_being_written(p))


def _is_being_written(path: Path) -> bool:
    """True while a live process holds the flock ``atomic_path``/``atomic_dir`` took on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # a symlink or unreadable: not one of ours, so not alive either
    try:
        if fcntl is None:
            raise OSError(errno.ENOLCK, "no flock")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False  # we got it: nobody writes it
    except BlockingIOError:
        return True
    except OSError:  # flock unsupported here: only an old file is surely stale
        return time.time() - os.fstat(fd).st_mtime < _STALE_SECONDS
    finally:
        os.close(fd)


def clean_stale_temp(data: str | os.PathLike) -> list[Path]:
    """Remove the stale temporary files anywhere under ``data`` (manifest, caches, banners,
    downloads); a file another process is writing is left alone. Call it holding
    ``lock_data``. Returns what was removed."""
    removed = []
    for folder, dirs, _files in os.walk(data):
        for p in stale_temp_files(folder):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # never walk into a temp folder
    if removed:
        logger.info("removed %d stale temporary files under %s", len(removed), data)
    return removed


class FolderLocked(RuntimeError):
    """Another process works on the same data folder."""


_held: dict[Path, list] = {}  # folder -> [fd, depth]: lock_data is re-entrant in one process
_held_lock = threading.Lock()


@contextlib.contextmanager
def lock_data(data: str | os.PathLike) -> Iterator[None]:
    """Hold ``DATA/.lock`` (flock, non-blocking) while writing to the data folder.

    The first holder in a process also removes stale temporary files (``clean_stale_temp``).
    Nested uses in one process are fine. On a filesystem without flock (some FUSE mounts) the
    lock is skipped with a warning.

    Raises:
        FolderLocked: another process holds the lock; the message names the folder and its pid.
    """
    root = Path(data).resolve()
    with _held_lock:
        if root in _held:
            _held[root][1] += 1
            fd = None
        else:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise FolderLocked(
                    f"data folder {root} is in use by another process (pid {other}); "
                    "wait for it to finish, or stop it, then run this again"
                ) from None
            except OSError as e:
                logger.warning("cannot lock %s (%s); going on without a lock", root, e)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _held[root] = [fd, 1]
    try:
        if fd is not None:
            clean_stale_temp(root)
        yield
    finally:
        with _held_lock:
            _held[root][1] -= 1
            if _held[root][1] == 0:
                os.close(_held.pop(root)[0])


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
