"""Any folder of images -> a collection every later stage works on (embed, match, audit, browser).

An image gets a stable id from its path inside the folder, in a range Steam never uses: app ids are
32-bit (``OWN_ID_BASE`` = 2**32 is above all of them), so an own image and a Steam game never share
an id and a rerun of the same folder gives the same ids. The display name is the file name
without its suffix. Images are saved like downloaded banners (RGB JPEG, shorter side resized).
"""

from __future__ import annotations

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


def list_folder_images(src: str | os.PathLike) -> dict[str, Path]:
    """``{relative posix path: file}`` of the images under ``src`` (subfolders too), sorted.

    Hidden files and folders (a leading dot) are left out.
    """

    root = Path(src)
    if not root.is_dir():
        raise ValueError(f"image folder not found: {src}")
    found = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            found[rel.as_posix()] = p
    return found


def import_folder(
    src: str | os.PathLike,
    data: str | os.PathLike,
    *,
    size: str = DEFAULT_SIZE,
    progress: bool = True,
) -> FolderImport:
    """Import every image under ``src`` into ``DATA/banners`` + manifest (other rows are kept).

    Args:
        src: a folder of images (any of ``files.IMAGE_SUFFIXES``, subfolders included).
        data: the data folder.
        size: one of ``codec.SIZES``: shorter side resized like the downloaded banners.
        progress: show a progress bar.

    Returns:
        FolderImport. A file unchanged since it was last imported (same modification time) is
        not decoded again; a file that is not a readable image is skipped with its reason.

    Raises:
        ValueError: ``src`` is not a folder, holds no images, or ``size`` is unknown.
    """
    parse_size(size)
    found = list_folder_images(src)
    if not found:
        raise ValueError(f"no images in {src} (subfolders included)")
    ids = _image_ids(src, found)
    old, rebuilt = _manifest_so_far(data)
    known, present = _imported_at(old), collection_images(data, old)
    report, rows = FolderImport(), []
    for rel, path in tqdm(found.items(), desc="import folder", unit="image", disable=not progress):
        app_id = ids[rel]
        mtime = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC")
        if known.get(app_id) == mtime and app_id in present:
            report.unchanged.append(app_id)
            continue
        try:
            row = _save(data, app_id, path, size)
        except (OSError, ValueError) as e:
            logger.debug("skipped %s: %s", rel, e)  # in the report's skipped: shown once
            report.skipped[rel] = str(e)
            continue
        rows.append(row | {"name": path.stem, "url": f"folder:{rel}", "updated_at": mtime})
        report.imported.append(app_id)
    if rows or rebuilt:
        write_manifest(data, pd.concat([d for d in (old, pd.DataFrame(rows)) if len(d)] or [old]))
    logger.debug("%s from %s into %s", report, src, layout.banners_dir(data))  # returned too
    return report


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


def _save(data, app_id: int, path: Path, size: str) -> dict:
    """Save the image ``path`` as ``app_id``'s banner (resized, RGB JPEG, atomically); its
    manifest row so far, with the original's size and mode. ValueError for an unreadable one."""
    content = path.read_bytes()
    img = resize_banner(content, size=size)
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
