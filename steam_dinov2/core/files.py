"""The file machinery every stage shares: atomic writes, the data-folder lock, cleanup of a killed
run's temporary files, and the one check of an image id. ``layout`` says *where* files go; this
module says *how* they are written safely.
"""

from __future__ import annotations

import contextlib
import errno
import json
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

# Steam app ids are unsigned 32-bit integers (SteamKit's AppID type); 0 is "no app".
MAX_APP_ID = 2**32 - 1
# Own images (``import_folder``) are numbered above every Steam id, below 2**53 so they stay exact
# in JSON and JavaScript numbers.
OWN_ID_BASE = 2**32
MAX_IMAGE_ID = OWN_ID_BASE + 2**48 - 1
_DIGITS = re.compile(r"[0-9]+")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")  # what PIL reads, by name
# A temp file whose writer cannot be asked (no flock on this filesystem) is stale after this long.
_STALE_SECONDS = 6 * 3600


def is_steam_id(app_id: int | str) -> bool:
    """True for a Steam app id, False for an own image's id (or anything not a number)."""
    text = str(app_id)
    return text.isdigit() and int(text) < OWN_ID_BASE


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
    with temp_dir(path.parent, path.name) as tmp:
        yield tmp / path.name
        old = tmp / "old"
        if path.exists():
            path.rename(old)
        (tmp / path.name).rename(path)


@contextlib.contextmanager
def temp_dir(parent: str | os.PathLike, name: str) -> Iterator[Path]:
    """Yield a fresh empty folder ``parent/.{name}.{random}.tmp``, removed at the end whatever
    happens. It is flock-ed while in use, so ``stale_temp_files`` of another process tells a
    live one from a killed run's (which ``clean_stale_temp`` or its owner removes)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            tmp.mkdir()
            break
        except FileExistsError:
            continue
    fd = os.open(tmp, os.O_RDONLY)
    try:
        _flock(fd)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def _flock(fd: int) -> None:
    """Hold an exclusive flock on ``fd`` (released when it is closed), where the filesystem can."""
    if fcntl is not None:
        # Blocking: the name is fresh, so the only other holder is a liveness check
        # (``_is_being_written``) for a few microseconds; a non-blocking try that lost that race
        # would leave the file unlocked, and another process's clean-up would then delete it.
        with contextlib.suppress(OSError):  # e.g. a FUSE mount without locks: age decides
            fcntl.flock(fd, fcntl.LOCK_EX)


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
def lock_folder(data: str | os.PathLike, lock_file: str | os.PathLike) -> Iterator[None]:
    """Hold ``lock_file`` (flock, non-blocking; ``layout.lock_data`` names it) while writing to
    the folder ``data``.

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
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
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


# --- Parquet tables that carry the key they were computed from (match tables, maps, evaluation
# pieces): a reader reuses a table only when its stored key equals the one it would compute now.
MADE_FROM = b"steam_dinov2.made_from"  # schema metadata name of the key (match tables, maps)


def write_keyed_parquet(path: str | os.PathLike, table, key: dict, *, name: bytes = MADE_FROM):
    """Write a DataFrame to ``path`` atomically, with ``key`` (JSON) in its schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {**(arrow.schema.metadata or {}), name: json.dumps(key).encode()}
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)


def read_parquet_key(path: str | os.PathLike, *, name: bytes = MADE_FROM) -> dict | None:
    """The key stored in a parquet file's schema metadata; None when absent or not readable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        key = json.loads(meta[name]) if name in meta else None
    except (OSError, ValueError, TypeError):  # absent, damaged, or not a parquet file at all
        return None
    return key if isinstance(key, dict) else None


def read_keyed_parquet(path: str | os.PathLike, key: dict, *, name: bytes = MADE_FROM):
    """The DataFrame at ``path`` when its stored key equals ``key``; None when it is absent,
    stale or unreadable (a reader then recomputes: such a file is never trusted)."""
    import pandas as pd

    if read_parquet_key(path, name=name) != key:
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, TypeError) as e:
        logger.warning("ignoring unreadable %s (%s); computing it again", path, e)
        return None


def clip_text(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters, cut at a word boundary with "…" (an
    error message from anywhere, shown in a report or a table cell)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut) + "…"
