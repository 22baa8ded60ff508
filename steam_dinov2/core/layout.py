"""The data folder's layout, in one place.

Every stage reads and writes inside one data folder; only this module spells out the paths::

    DATA/
      banners/{app_id}.jpg                 download stage
      manifest.parquet                     one row per app: name, url, status, ...
      embeddings/{setting}/                embed stage: meta.json, vectors-*.npy, ids-*.json,
                                           checkpoint-*.{json,npy} while a run is in progress
      matches/{setting}/neighbors.parquet  match stage: query_id, rank, id, score
      matches/{setting}/neighbors.json     the same for serving; preview.png of ``run``
      audit/                               audit stage: issues.parquet, exclusions.json, cleanvision/
      metadata.parquet, tag_names.parquet  developers, publishers, franchises, tags per app
      evaluation/                          evaluate stage: summary, agreement, per_query, cache/
      maps/{setting}/layout.parquet        catalogue map: id, x, y, cluster, centrality
      lookalikes/{setting}.parquet         look-alike pairs from other studios (``lookalikes``)
      lookalikes/{setting}/explain-*.png   their heatmaps, when asked (``lookalikes --explain``)

A *setting* names one way of embedding: ``{model}__{preset}__{pooling}``, plus ``__random`` for
random weights or ``__w-{hash}`` for weights from a local file, plus ``__bf16`` or ``__fp16``
for a reduced precision (none: fp32, as every cache made before had), so caches of different
weights or precisions never share a folder (``setting.Setting.name``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .files import IMAGE_SUFFIXES, lock_folder, not_a_regular_file, parse_image_id

logger = logging.getLogger(__name__)

BANNERS = "banners"
MANIFEST = "manifest.parquet"
EMBEDDINGS = "embeddings"
MATCHES = "matches"
AUDIT = "audit"
LOCK = ".lock"
_BANNER_NAME = re.compile(r"([0-9]+)\.jpg")
_BANNER_MEMBER = re.compile(r"banners/([^/]+)\.jpg")  # any stem: callers check it is an id


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

    The folder is untrusted: images not named ``{app_id}.jpg`` with a valid id, FIFOs, devices,
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
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:  # a README is not ours to judge
                    bad[name] = "not named {app_id}.jpg (own images: `import-folder` numbers them)"
                continue
            try:
                app_id = parse_image_id(m.group(1))
                if str(app_id) != m.group(1):
                    raise ValueError(f"not the canonical name {app_id}.jpg")
            except ValueError as e:
                bad[name] = str(e)
                continue
            # A plain file (its d_type: no system call) needs no further check; at 30,000
            # banners an lstat of each one took half the listing (benchmarks/README.md).
            path = folder / name
            plain = entry.is_file(follow_symlinks=False)
            if reason := "" if plain else not_a_regular_file(path, root):
                bad[name] = reason
            else:
                found[app_id] = path
    if bad:
        shown = "; ".join(f"{n}: {r}" for n, r in sorted(bad.items())[:5])
        plural = "" if len(bad) == 1 else "s"
        logger.warning("skipped %d file%s in %s: %s", len(bad), plural, folder, shown)
        if skipped is not None:
            skipped.update(bad)
    return found


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
        precision: "" for float32, "bf16" or "fp16" for a reduced precision.
    """
    parts = [model, preset, pooling] + [p for p in (weights_tag, precision) if p]
    # ':' and '/' occur in hub names; '+' in pooling names is fine everywhere.
    return "__".join(re.sub(r"[^A-Za-z0-9_.+-]+", "-", p) for p in parts)


def embeddings_dir(data: str | os.PathLike, setting: str) -> Path:
    return Path(data) / EMBEDDINGS / setting


def cache_meta_path(folder: str | os.PathLike) -> Path:
    """``meta.json`` of the cache folder ``folder`` (``embeddings_dir(data, setting)``)."""
    return Path(folder) / "meta.json"


# One generation of a cache: ``vectors-{gen}.npy`` (float32 rows) + ``ids-{gen}.json``.
_CACHE_FILES = {"vectors": ("vectors-", ".npy"), "ids": ("ids-", ".json")}
_GENERATION = re.compile(r"[0-9a-f]{1,32}")


def cache_file_name(kind: str, gen: str) -> str:
    """The name of one generation's ``kind`` file ("vectors" or "ids") in a cache folder."""
    prefix, suffix = _CACHE_FILES[kind]
    return f"{prefix}{gen}{suffix}"


def is_cache_file_name(kind: str, name: object) -> bool:
    """True when ``name`` (from an untrusted ``meta.json``) is a ``kind`` file name this package
    writes: a plain name, never a path leading out of the cache folder."""
    prefix, suffix = _CACHE_FILES[kind]
    if not isinstance(name, str) or not (name.startswith(prefix) and name.endswith(suffix)):
        return False
    return bool(_GENERATION.fullmatch(name[len(prefix) : len(name) - len(suffix)]))


def cache_generation_files(folder: str | os.PathLike) -> list[Path]:
    """Every generation's files in a cache folder (current and left over)."""
    folder = Path(folder)
    return [
        p for prefix, suffix in _CACHE_FILES.values() for p in folder.glob(f"{prefix}*{suffix}")
    ]


def embedding_checkpoint_path(data: str | os.PathLike, setting: str, gen: str) -> Path:
    """One checkpoint of an embed run in progress: ``checkpoint-{gen}.json`` (ids, stamps, the
    options it was made with) beside ``checkpoint-{gen}.npy`` (its vectors)."""
    return embeddings_dir(data, setting) / f"checkpoint-{gen}.json"


def checkpoint_vectors_path(ids_path: str | os.PathLike) -> Path:
    """The ``.npy`` of vectors a checkpoint's ``.json`` names (beside it, same stem)."""
    return Path(ids_path).with_suffix(".npy")


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


def neighbors_json_path(data: str | os.PathLike, setting: str) -> Path:
    """The match table for serving (``export_matches``), beside ``neighbors.parquet``."""
    return matches_dir(data, setting) / "neighbors.json"


def preview_path(data: str | os.PathLike, setting: str) -> Path:
    return matches_dir(data, setting) / "preview.png"


def map_path(data: str | os.PathLike, setting: str) -> Path:
    """The catalogue map of a setting (``catalog_map.map_catalog``)."""
    return Path(data) / "maps" / setting / "layout.parquet"


def lookalikes_path(data: str | os.PathLike, setting: str) -> Path:
    """The look-alike pairs of a setting (``lookalikes.find_lookalikes``)."""
    return Path(data) / "lookalikes" / f"{setting}.parquet"


def lookalike_explained_path(data: str | os.PathLike, setting: str, a: int, b: int) -> Path:
    """The heatmap of one look-alike pair (``lookalikes --explain``)."""
    return Path(data) / "lookalikes" / setting / f"explain-{int(a)}-{int(b)}.png"


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
    return sorted(p.name for p in root.iterdir() if cache_meta_path(p).is_file())


def lock_path(data: str | os.PathLike) -> Path:
    return Path(data) / LOCK


def lock_data(data: str | os.PathLike):
    """Hold ``DATA/.lock`` while writing to the data folder (``files.lock_folder``): re-entrant
    in one process, removes stale temporary files when first taken.

    Raises:
        FolderLocked: another process holds the lock; the message names the folder and its pid.
    """
    return lock_folder(data, lock_path(data))
