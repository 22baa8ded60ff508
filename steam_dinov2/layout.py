"""The data folder's layout, in one place.

Every stage reads and writes inside one data folder; only this module spells out the paths::

    DATA/
      banners/{app_id}.jpg                 download stage
      manifest.parquet                     one row per app: name, url, status, ...
      embeddings/{setting}/                embed stage: meta.json, vectors-*.npy, ids-*.json
      matches/{setting}/neighbors.parquet  match stage: query_id, rank, id, score
      audit/                               audit stage: issues.parquet, exclusions.json, imagelab/
      maps/{setting}/layout.parquet        catalogue map: id, x, y, cluster, centrality

A *setting* names one way of embedding: ``{model}__{preset}__{pooling}``, plus ``__random`` for
random weights or ``__w-{hash}`` for weights from a local file, so caches of different weights
never share a folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

BANNERS = "banners"
MANIFEST = "manifest.parquet"
EMBEDDINGS = "embeddings"
MATCHES = "matches"
AUDIT = "audit"


def banners_dir(data: str | os.PathLike) -> Path:
    return Path(data) / BANNERS


def banner_path(data: str | os.PathLike, app_id: int | str) -> Path:
    return banners_dir(data) / f"{app_id}.jpg"


def banner_files(data: str | os.PathLike) -> dict[int, Path]:
    """``{app_id: path}`` of the finished banners (temporary files of a running write excluded)."""
    folder = banners_dir(data)
    if not folder.is_dir():
        return {}
    return {int(p.stem): p for p in folder.glob("[0-9]*.jpg") if p.stem.isdigit()}


def manifest_path(data: str | os.PathLike) -> Path:
    return Path(data) / MANIFEST


def setting_name(model: str, preset: str, pooling: str, *, weights_tag: str = "") -> str:
    """Folder name of one embedding setting, safe on every filesystem.

    Args:
        model: model name as given to ``load_model`` (``hub:owner/repo:entry`` allowed).
        preset: preprocessing preset name.
        pooling: pooling strategy name.
        weights_tag: "" for the model's pretrained weights, "random" or "w-<hash>" otherwise.
    """
    parts = [model, preset, pooling] + ([weights_tag] if weights_tag else [])
    # ':' and '/' occur in hub names; '+' in pooling names is fine everywhere.
    return "__".join(re.sub(r"[^A-Za-z0-9_.+-]+", "-", p) for p in parts)


def embeddings_dir(data: str | os.PathLike, setting: str) -> Path:
    return Path(data) / EMBEDDINGS / setting


def matches_dir(data: str | os.PathLike, setting: str) -> Path:
    return Path(data) / MATCHES / setting


def neighbors_path(data: str | os.PathLike, setting: str) -> Path:
    return matches_dir(data, setting) / "neighbors.parquet"


def preview_path(data: str | os.PathLike, setting: str) -> Path:
    return matches_dir(data, setting) / "preview.png"


def map_path(data: str | os.PathLike, setting: str) -> Path:
    """The catalogue map of a setting (``catalog_map``)."""
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


def imagelab_dir(data: str | os.PathLike) -> Path:
    return audit_dir(data) / "imagelab"


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
    The temporary name keeps the suffix so libraries that look at it (numpy, pandas) behave.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh folder beside ``path`` (not yet existing); on success it replaces ``path``.

    A kill at any moment leaves the old folder, the new one or none (a cache then recomputes),
    never a mix of the two.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp / path.name
        old = tmp / "old"
        if path.exists():
            path.rename(old)
        (tmp / path.name).rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Temporary files that ``atomic_path`` left in ``directory`` when its process was killed."""
    directory = Path(directory)
    return sorted(directory.glob(".*.tmp*")) if directory.is_dir() else []


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
