"""Any folder of images -> a collection every later stage works on (embed, match, audit, browser).

An image gets a stable id from its path inside the folder, in a range Steam never uses: app ids are
32-bit (``OWN_ID_BASE`` = 2**32 is above all of them), so an own image and a Steam game never share
an id and a rerun of the same folder gives the same ids. The display name is the file name
without its suffix. Images are saved like downloaded banners (RGB JPEG, shorter side resized),
turned upright by their EXIF orientation (a phone stores a portrait photo sideways with a tag).

What is left out: hidden files and folders (a leading dot), silently. Symlinks, to a file or a
folder alike, are never followed: skipped and reported (import the folder they lead to instead).
Names that are not valid UTF-8, formats Pillow cannot read here (HEIC, SVG; AVIF without Pillow's
AVIF support), FIFOs and devices: skipped and reported. The data folder, when it lies inside the
imported folder, is never walked.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core import files, layout
from ..core.codec import (
    DEFAULT_SIZE,
    encode_jpeg,
    header_size,
    original_size_mode,
    parse_size,
    resize_banner,
)
from ..core.files import IMAGE_SUFFIXES
from ..core.manifest import (
    MANIFEST_DTYPES,
    collection_images,
    empty_manifest,
    load_manifest,
    write_manifest,
)
from ..core.progress import tqdm

logger = logging.getLogger(__name__)

# Image formats met in photo folders that Pillow cannot decode here: skipped with the reason.
_UNREADABLE = {
    ".avif": "AVIF",
    ".heic": "HEIC",
    ".heif": "HEIF",
    ".svg": "SVG (a drawing, not pixels)",
}
_MAX_FILE_BYTES = 256 << 20  # a file above this is no photo: skipped before it is read
_CHECKPOINT = 200  # images between two writes of the manifest: a killed run keeps what it did
_SYMLINK = "symlink (not followed: import the folder it leads to instead)"
_BAD_NAME = "name is not valid UTF-8 (rename it)"


@dataclass
class FolderImport:
    """What ``import_folder`` did: ids imported, kept (unchanged since the last import), skipped."""

    imported: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> reason

    def __str__(self) -> str:
        return (
            f"{len(self.imported)} images imported, {len(self.unchanged)} unchanged, "
            f"{len(self.skipped)} skipped"
        )


def own_image_id(relative_path: str) -> int:
    """The id of an own image: ``OWN_ID_BASE`` + 48 bits of SHA-256 of its path in the folder."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return files.OWN_ID_BASE + int.from_bytes(digest[:6], "big")  # 48 bits: see MAX_IMAGE_ID


def list_folder_images(
    src: str | os.PathLike,
    *,
    skipped: dict[str, str] | None = None,
    exclude: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """``{relative posix path: file}`` of the images under ``src`` (subfolders too), sorted.

    Args:
        src: the folder.
        skipped: filled with ``{relative path: reason}`` of what is left out and worth saying
            (see the module's docstring); hidden files and folders are left out silently.
        exclude: a folder never walked into (the data folder, when it lies inside ``src``).
    """

    root = Path(src)
    if not root.is_dir():
        raise ValueError(f"image folder not found: {src}")
    skipped = {} if skipped is None else skipped
    readable = _readable_suffixes()
    excluded = Path(exclude).resolve() if exclude is not None else None
    found = {}
    for folder, dirs, names in os.walk(root):  # never follows a symlinked folder
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            rel = (here / d).relative_to(root).as_posix()
            if d.startswith("."):
                continue
            if reason := _left_out_folder(here / d, rel, excluded):
                skipped[_printable(rel)] = reason
            else:
                keep.append(d)
        dirs[:] = keep
        for name in names:
            rel = (here / name).relative_to(root).as_posix()
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or (suffix not in readable and suffix not in _UNREADABLE):
                continue
            if reason := _left_out_file(here / name, rel, suffix, readable):
                skipped[_printable(rel)] = reason
            else:
                found[rel] = here / name
    return dict(sorted(found.items()))


def _readable_suffixes() -> tuple[str, ...]:
    from PIL import features

    avif = (".avif",) if features.check("avif") else ()  # Pillow >= 11.3 wheels read AVIF
    return IMAGE_SUFFIXES + avif


def _printable(rel: str) -> str:
    """A relative path as text that can be shown and stored (bad bytes as U+FFFD)."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _not_utf8(rel: str) -> bool:
    try:
        rel.encode("utf-8")
        return False
    except UnicodeEncodeError:  # os.walk gives undecodable bytes as lone surrogates
        return True


def _left_out_folder(path: Path, rel: str, excluded: Path | None) -> str:
    """Why the subfolder ``path`` is not walked, "" when it is."""
    if path.is_symlink():
        return _SYMLINK
    if _not_utf8(rel):
        return _BAD_NAME
    if excluded is not None and path.resolve() == excluded:
        return "the data folder: never imported into itself"
    return ""


def _left_out_file(path: Path, rel: str, suffix: str, readable) -> str:
    """Why the file ``path`` is not imported, "" when it is (``lstat`` only: never opened)."""
    if path.is_symlink():
        return _SYMLINK
    if _not_utf8(rel):
        return _BAD_NAME
    if suffix not in readable:
        return f"{_UNREADABLE[suffix]} cannot be read here: convert it to JPEG or PNG"
    if not path.is_file():
        return "not a regular file (a FIFO, device or socket)"
    return ""


def import_folder(
    src: str | os.PathLike,
    data: str | os.PathLike,
    *,
    size: str = DEFAULT_SIZE,
    progress: bool = True,
) -> FolderImport:
    """Import every image under ``src`` into ``DATA/banners`` + manifest (other rows are kept),
    holding the data folder's lock (``layout.lock_data``), the manifest written every
    ``_CHECKPOINT`` images so a killed run keeps what it imported.

    Args:
        src: a folder of images (any of ``files.IMAGE_SUFFIXES``, subfolders included).
        data: the data folder.
        size: one of ``codec.SIZES``: shorter side resized like the downloaded banners.
        progress: show a progress bar.

    Returns:
        FolderImport. A file unchanged since it was last imported (same modification time) is
        not decoded again; a file that is not a readable image is skipped with its reason.

    Raises:
        ValueError: ``src`` is empty, not a folder, inside ``data`` or holds no readable images;
            ``data`` is not a folder; or ``size`` is unknown.
        OSError: the data folder cannot be written (disk full, read-only); the manifest keeps
            the images imported before.
        FolderLocked: another process works on the data folder.
    """
    parse_size(size)
    if not str(src).strip():
        raise ValueError("no image folder given (an empty path would be the current folder)")
    if not Path(src).is_dir():
        raise ValueError(f"image folder not found: {src}")
    if Path(src).resolve().is_relative_to(Path(data).resolve()):
        raise ValueError(
            f"image folder {src} is inside the data folder {data}: import from outside it"
        )
    if os.path.lexists(data) and not Path(data).is_dir():
        raise ValueError(f"data folder {data} is not a folder: choose a folder for --data")
    with layout.lock_data(data):
        return _import_locked(src, data, size, progress)


def _import_locked(src, data, size: str, progress: bool) -> FolderImport:
    report = FolderImport()
    found = list_folder_images(src, skipped=report.skipped, exclude=data)
    if not found:
        why = "".join(f"; {rel}: {r}" for rel, r in list(report.skipped.items())[:3])
        raise ValueError(f"no images in {src} (subfolders included){why}")
    ids = _image_ids(src, found)
    old, rebuilt = _manifest_so_far(data)
    known, present = _imported_at(old), collection_images(data, old)
    rows: list[dict] = []
    saved = -1 if rebuilt else 0  # rows in the manifest on disk; -1: it must be written

    def save() -> None:
        nonlocal saved
        if len(rows) != saved:
            write_manifest(
                data, pd.concat([d for d in (old, pd.DataFrame(rows)) if len(d)] or [old])
            )
            saved = len(rows)

    try:
        for rel, path in tqdm(
            found.items(), desc="import folder", unit="image", disable=not progress
        ):
            app_id = ids[rel]
            try:
                mtime = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC")
                if known.get(app_id) == mtime and app_id in present:
                    report.unchanged.append(app_id)
                    continue
                img, content = _read(path, size)
            except (OSError, ValueError) as e:  # this image only: it cannot be read
                logger.debug("skipped %s: %s", rel, e)  # in the report's skipped: shown once
                report.skipped[rel] = str(e)
                continue
            # Writing into the data folder fails for every image alike (disk full, read-only):
            # that ends the import, with what was done kept (below).
            row = _save(data, app_id, img, content)
            rows.append(row | {"name": path.stem, "url": f"folder:{rel}", "updated_at": mtime})
            report.imported.append(app_id)
            if len(rows) - max(saved, 0) >= _CHECKPOINT:
                save()
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk may refuse this too: the error stands
            save()
        raise
    save()
    logger.debug("%s from %s into %s", report, src, layout.banners_dir(data))  # returned too
    return report


def _read(path: Path, size: str):
    """``(resized upright RGB image, file bytes)`` of an image file; ValueError or OSError when
    it cannot be read or decoded, or is too large (``codec.resize_banner``)."""
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise ValueError(f"file larger than {_MAX_FILE_BYTES >> 20} MB")
    content = path.read_bytes()
    return resize_banner(content, size=size, upright=True), content


def _save(data, app_id: int, img, content: bytes) -> dict:
    """Save ``img`` as ``app_id``'s banner (RGB JPEG, atomically); its manifest row so far, with
    the original's size and mode. OSError when the data folder cannot be written."""
    payload = encode_jpeg(img)
    files.write_bytes_atomic(layout.banner_path(data, app_id), payload)
    return {
        "app_id": app_id,
        "status": "ok",
        "error": "",
        "width": img.width,
        "height": img.height,
        "bytes": len(payload),
        **original_size_mode(content),
    }


def _imported_at(manifest: pd.DataFrame) -> dict[int, pd.Timestamp]:
    """``{id: updated_at}`` of the manifest's ``ok`` rows (an image's modification time)."""
    ok = manifest[manifest["status"] == "ok"]
    return {int(a): t for a, t in zip(ok["app_id"], ok["updated_at"])}


def _image_ids(src, images: dict[str, Path]) -> dict[str, int]:
    """``{relative path: own_image_id}``; ValueError if two paths share an id."""
    ids = {rel: own_image_id(rel) for rel in images}
    if len(set(ids.values())) != len(ids):  # 48-bit hashes: never seen, but never silently merged
        raise ValueError(f"two images in {src} hash to the same id; rename one of them")
    return ids


def _manifest_so_far(data) -> tuple[pd.DataFrame, bool]:
    """``(manifest, rebuilt)``. A damaged manifest is rebuilt (with a warning) as ``download``
    does: a row per readable banner in ``DATA/banners``, without names; the images imported now
    get theirs back (an own image's name lives only in the manifest)."""
    path = layout.manifest_path(data)
    if not path.is_file():
        return empty_manifest(), False
    try:
        return load_manifest(path, str(path), fix="import-folder rebuilds it"), False
    except ValueError as e:
        logger.warning(
            "%s from %s; images not imported again keep their banners, not their names",
            e,
            layout.banners_dir(data),
        )
    return _adopted(data), True


def _adopted(data) -> pd.DataFrame:
    """A manifest of the banners on disk (headers only: width, height, bytes; no name)."""
    rows, now = [], pd.Timestamp.now(tz="UTC")
    unknown = {"name": "", "url": "", "error": "", "orig_width": 0, "orig_height": 0}
    for app_id, path in layout.banner_files(data).items():
        try:
            w, h = header_size(path)
        except ValueError as e:
            logger.warning("left %s out of the rebuilt manifest: %s", path, e)
            continue
        size = path.stat().st_size
        row = {"app_id": app_id, "status": "ok", "width": w, "height": h, "bytes": size}
        rows.append(row | unknown | {"orig_mode": "", "updated_at": now})
    return pd.DataFrame(rows, columns=list(MANIFEST_DTYPES))
