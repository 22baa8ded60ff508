"""Which image files a stage works on: the collection's banners (``manifest.collection_images``)
or a folder of one's own images. Every stage asks ``images_of``."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from . import files, layout
from .files import IMAGE_SUFFIXES
from .manifest import collection_images

logger = logging.getLogger(__name__)


def list_images(folder: str | os.PathLike) -> dict[int, Path]:
    """``{id: path}`` of the images in a folder named by id (``123.jpg``), sorted by id.

    An image's id is its file stem, an app id or an own image's id (``files.parse_image_id``).
    Files named otherwise are left out with one warning naming the fix: ``import-folder`` gives
    any folder of pictures ids.
    """
    found, root, unnamed = {}, Path(folder).resolve(), []
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if reason := files.not_a_regular_file(p, root):  # FIFOs, folders, links out
                logger.warning("skipped %s: %s", p, reason)
                continue
            try:
                app_id = files.parse_image_id(p.stem)
            except ValueError:
                unnamed.append(p.name)
                continue
            if app_id in found:
                logger.warning("two images share the id %s; using %s", app_id, found[app_id].name)
                continue
            found[app_id] = p
    if unnamed:
        logger.warning(
            "skipped %d image%s not named by an id (%s): import the folder with `import-folder` "
            "to give its pictures ids",
            len(unnamed),
            "" if len(unnamed) == 1 else "s",
            ", ".join(unnamed[:3]) + (", ..." if len(unnamed) > 3 else ""),
        )
    return dict(sorted(found.items()))


def images_of(data: str | os.PathLike, images: str | os.PathLike | None = None) -> dict[int, Path]:
    """``{id: path}`` of the images a stage embeds or shows: the one place every stage asks.

    Args:
        data: the data folder.
        images: None or ``layout.banners_dir(data)``: the collection, i.e.
            ``manifest.collection_images`` (the manifest's ``ok`` rows whose banner is on disk,
            every banner without a manifest). Any other folder: a folder of one's
            own images, ``list_images``.
    """
    banners = layout.banners_dir(data)
    if images is not None and Path(images).resolve() != banners.resolve():
        return list_images(images)

    return collection_images(data)


def in_collection(data, setting: str, ids: list[int], vectors, meta: dict):
    """``(ids, vectors, meta)`` of a cache of the data folder's banners (rows in ``ids`` order)
    without the rows no longer in the collection (``images_of(data)``: a manifest row turned
    ``error``, a file deleted since the cache was made). Those are logged in one warning naming
    the fix, and ``meta`` records a digest of them (``Embeddings.made_from``), so a table made
    from these rows is told apart from one made from all. Readers never rewrite the cache."""
    now = images_of(data)
    rows = [r for r, i in enumerate(ids) if i in now]
    if not (gone := sorted(set(ids) - now.keys())):
        return ids, vectors, meta
    logger.warning(
        "%s: %d cached banner%s no longer in the collection (not ok in the manifest, or "
        "the file is gone), left out: %s; rerun `embed` with this setting to refresh its "
        "cache",
        setting,
        len(gone),
        " is" if len(gone) == 1 else "s are",
        ", ".join(map(str, gone[:5])) + (", ..." if len(gone) > 5 else ""),
    )
    digest = hashlib.sha256(",".join(map(str, gone)).encode()).hexdigest()
    meta = {**meta, "count": len(rows), "left_out_sha256": digest}
    return [ids[r] for r in rows], vectors[rows], meta
