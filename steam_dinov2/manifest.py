"""``DATA/manifest.parquet``: one row per app, kept consistent with ``DATA/banners``.

Columns (``MANIFEST_DTYPES``): ``app_id``; ``name`` for display; ``url`` the banner came from;
``status`` ok | no_banner | error; ``error`` message ("" unless error); ``width``, ``height`` and
``bytes`` of the saved file (0 without one); ``updated_at`` (UTC); ``orig_width``, ``orig_height``,
``orig_mode`` of the image as served (0 and "" when unknown, e.g. in manifests made before them).
"""

from __future__ import annotations

import functools
import logging
import os
import time
import unicodedata

import pandas as pd
from PIL import Image

from . import layout

logger = logging.getLogger(__name__)

STATUSES = ("ok", "no_banner", "error")
MANIFEST_DTYPES = {
    "app_id": "int64",
    "name": "str",
    "url": "str",
    "status": "str",
    "error": "str",
    "width": "int32",
    "height": "int32",
    "bytes": "int64",
    "updated_at": "datetime64[ns, UTC]",
    "orig_width": "int32",
    "orig_height": "int32",
    "orig_mode": "str",
}
_CHECKPOINT_SECONDS = 2.0  # a killed run loses at most this much bookkeeping, never files


def read_manifest(data: str | os.PathLike) -> pd.DataFrame:
    """``DATA/manifest.parquet`` with ``MANIFEST_DTYPES``; empty (same columns) if absent."""
    path = layout.manifest_path(data)
    df = pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=list(MANIFEST_DTYPES))
    return _typed(df)


def write_manifest(data: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write the manifest atomically, one row per app (last wins), sorted by ``app_id``."""
    df = _typed(df).drop_duplicates("app_id", keep="last").sort_values("app_id")
    with layout.atomic_path(layout.manifest_path(data)) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reindex(columns=list(MANIFEST_DTYPES))
    for col, dtype in MANIFEST_DTYPES.items():
        if dtype == "str":
            df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
        elif dtype.startswith("datetime"):
            df[col] = pd.to_datetime(df[col], utc=True).astype(dtype)
        else:
            df[col] = df[col].fillna(0).astype(dtype)
    return df


def now_utc() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


class ManifestBook:
    """The manifest in memory while a download runs, reconciled with the folder on open.

    On open: temporary files of a killed run are removed; banners on disk without an ``ok`` row
    (written after the last checkpoint) are adopted; ``ok`` rows without a file become errors.
    """

    def __init__(self, data: str | os.PathLike, names: dict[int, str]):
        self.data = data
        self.names = names
        df = read_manifest(data)
        self.rows: dict[int, dict] = {int(r["app_id"]): r for r in df.to_dict("records")}
        self.dirty = False
        self.last_flush = time.monotonic()
        self._reconcile()
        self.set_names({a: n for a, n in names.items() if n})

    def _reconcile(self) -> None:
        folder = layout.banners_dir(self.data)
        for tmp in layout.stale_temp_files(folder):
            tmp.unlink(missing_ok=True)
        on_disk = layout.banner_files(self.data)
        for app_id, path in on_disk.items():
            row = self.rows.get(app_id)
            if row is not None and row["status"] == "ok":
                continue
            try:
                with Image.open(path) as img:
                    w, h = img.size
            except OSError:  # not ours (renames are atomic): drop it and fetch again
                path.unlink(missing_ok=True)
                continue
            size = path.stat().st_size
            self.update({"app_id": app_id, "status": "ok", "width": w, "height": h, "bytes": size})
            logger.info("adopted %s left by an interrupted run", path.name)
        for app_id, row in self.rows.items():
            if row["status"] == "ok" and app_id not in on_disk:
                self.update(
                    {
                        "app_id": app_id,
                        "status": "error",
                        "error": "file missing",
                        "url": row["url"],
                    }
                )

    def is_done(self, app_id: int, short_side: int | None) -> bool:
        """True for ``no_banner`` apps and ``ok`` ones saved with this shorter side (any if None)."""
        row = self.rows.get(app_id)
        if row is None or row["status"] == "error":
            return False
        if row["status"] == "no_banner" or short_side is None:
            return True
        return min(row["width"], row["height"]) == short_side

    def url(self, app_id: int) -> str:
        row = self.rows.get(app_id)
        return row["url"] if row else ""

    def name(self, app_id: int) -> str:
        row = self.rows.get(app_id)
        return row["name"] if row else ""

    def update(self, row: dict) -> None:
        """Replace an app's row by ``row`` (missing fields empty), keeping its known name."""
        app_id = int(row["app_id"])
        old = self.rows.get(app_id, {})
        new = {"width": 0, "height": 0, "bytes": 0, "url": "", "error": ""}
        new |= {k: v for k, v in row.items() if k in MANIFEST_DTYPES}
        new |= {"app_id": app_id, "updated_at": now_utc()}
        new["name"] = row.get("name") or self.names.get(app_id) or old.get("name") or ""
        self.rows[app_id] = new
        self.dirty = True

    def set_names(self, names: dict[int, str]) -> None:
        for app_id, name in names.items():
            row = self.rows.get(int(app_id))
            self.names[int(app_id)] = name or self.names.get(int(app_id), "")
            if row is not None and name and row["name"] != name:
                row["name"] = name
                self.dirty = True

    def checkpoint(self) -> None:
        if self.dirty and time.monotonic() - self.last_flush > _CHECKPOINT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.dirty:
            write_manifest(self.data, pd.DataFrame(list(self.rows.values())))
            self.dirty = False
        self.last_flush = time.monotonic()


@functools.cache  # the browser searches the same 30,000 names on every keystroke
def normalize_name(text: str) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed: "Pokémon: Red!" -> "pokemon red"."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def load_names(data: str | os.PathLike) -> dict[str, str]:
    """``{app_id: name}`` from the manifest ({} without one); ids are str like everywhere downstream."""
    df = read_manifest(data)
    return {str(a): str(n) for a, n in zip(df["app_id"], df["name"]) if n}


def search_games(names: dict[str, str], text: str, *, ids=None, limit: int = 20) -> list[str]:
    """Ids whose name holds every word of ``text`` (or whose id is ``text``), best first.

    Args:
        names: ``{id: name}``.
        text: part of a name, any case, accents or punctuation; or an app id.
        ids: the ids that may be returned (default: all of ``names``).
        limit: at most this many.

    Returns:
        Ids: an exact id first, then names starting with the query, then shorter names first.
    """
    pool = list(names) if ids is None else list(ids)
    text = text.strip()
    hits = [text] if text in set(pool) else []
    words = normalize_name(text).split()
    if not words:
        return hits[:limit]
    query = " ".join(words)
    scored = []
    for i in pool:
        name = normalize_name(names.get(i, ""))
        if i not in hits and all(w in name for w in words):
            scored.append((not name.startswith(query), len(name), name, i))
    return (hits + [i for *_, i in sorted(scored)])[:limit]
