"""``DATA/manifest.parquet``: one row per app, kept consistent with ``DATA/banners``.

Columns (``MANIFEST_DTYPES``): ``app_id``; ``name`` for display; ``url`` the banner came from;
``status`` ok | no_banner | error; ``error`` message ("" unless error); ``width``, ``height`` and
``bytes`` of the saved file (0 without one); ``updated_at`` (UTC); ``orig_width``, ``orig_height``,
``orig_mode`` of the image as served (0 and "" when unknown, e.g. in manifests made before them);
``first_seen`` (UTC) when the app's row was first written, kept by every later update: what
``lookalikes --since`` and a rerun's "new games" read. A manifest made before that column gets
each row's ``updated_at`` instead, the latest moment the app is known to have been in the folder
(so an old game can look newer than it is, never older).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pandas as pd

from . import files, layout
from .codec import header_size

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
    "first_seen": "datetime64[ns, UTC]",
}
# Added after the first snapshots were packed: a manifest or snapshot without them is still whole.
LATER_COLUMNS = ("orig_width", "orig_height", "orig_mode", "first_seen")
_CHECKPOINT_SECONDS = 2.0  # a killed run loses at most this much bookkeeping, never files
# Bounds on a manifest read from a data folder or a snapshot, checked on the parquet footer
# before any column is decoded: Steam lists ~250,000 apps; a row takes ~200 bytes.
MAX_MANIFEST_ROWS = 5_000_000
MAX_MANIFEST_BYTES = 256 << 20
_REBUILD = "rerun `download`, `import-snapshot` or `import-folder`: they rebuild it from banners/"


def read_manifest(data: str | os.PathLike) -> pd.DataFrame:
    """``DATA/manifest.parquet`` with ``MANIFEST_DTYPES``; empty (same columns) if absent.

    Raises:
        ValueError: the file is damaged (not parquet, columns missing, ids that are not app ids,
            unknown statuses); the message names the file and the fix.
    """
    path = layout.manifest_path(data)
    if not path.is_file():
        return empty_manifest()
    return load_manifest(path, str(path), fix=_REBUILD)


def empty_manifest() -> pd.DataFrame:
    return _typed(pd.DataFrame(columns=list(MANIFEST_DTYPES)))


def load_manifest(
    source, name: str, *, fix: str, required: tuple[str, ...] = ("app_id",)
) -> pd.DataFrame:
    """Read and check a manifest from untrusted hands (a path or a binary file object).

    Args:
        source: what ``pyarrow.parquet.ParquetFile`` opens.
        name: how to name it in errors.
        fix: what the user can do about a damaged one, appended to the error.
        required: columns it must have; the other ``MANIFEST_DTYPES`` columns are filled empty.

    Returns:
        The manifest with ``MANIFEST_DTYPES``.

    Raises:
        ValueError: ``"{name}: damaged manifest (why); {fix}"``.
    """
    try:
        df = _read_bounded(source, required)
        if not pd.api.types.is_integer_dtype(df["app_id"]):
            raise ValueError(f"app_id is {df['app_id'].dtype}, not integers")
        for row, app_id in enumerate(df["app_id"].tolist()):
            files.parse_image_id(app_id, f"row {row}")
        bad = (
            sorted(set(df["status"].dropna().astype(str)) - {*STATUSES, ""})
            if "status" in df
            else []
        )
        if bad:
            raise ValueError(f"unknown status {bad[0][:40]!r}; expected one of {STATUSES}")
        return _typed(df)
    except ValueError as e:
        raise ValueError(f"{name}: damaged manifest ({e}); {fix}") from None


def _read_bounded(source, required: tuple[str, ...]) -> pd.DataFrame:
    """The ``MANIFEST_DTYPES`` columns ``source`` has, untyped, after checking on the parquet
    footer (before any column is decoded) its size and the ``required`` columns; ValueError
    saying why not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(source)
        meta = f.metadata
        if meta.num_rows > MAX_MANIFEST_ROWS:
            raise ValueError(f"{meta.num_rows:,} rows, above {MAX_MANIFEST_ROWS:,}")
        size = sum(
            meta.row_group(g).column(c).total_uncompressed_size
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        )
        if size > MAX_MANIFEST_BYTES:
            raise ValueError(f"{size:,} bytes uncompressed, above {MAX_MANIFEST_BYTES:,}")
        present = f.schema_arrow.names
        missing = [c for c in required if c not in present]
        if missing:
            raise ValueError(f"columns {missing} missing")
        return f.read(columns=[c for c in MANIFEST_DTYPES if c in present]).to_pandas()
    except (pa.ArrowException, OSError, TypeError) as e:
        raise ValueError(f"not a parquet file we can read: {str(e)[:120]}") from None


def write_manifest(data: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write the manifest atomically, one row per app (last wins), sorted by ``app_id``."""
    df = _typed(df).drop_duplicates("app_id", keep="last").sort_values("app_id")
    with files.atomic_path(layout.manifest_path(data)) as tmp:
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
    # Rows written before ``first_seen`` existed: ``updated_at`` bounds it from above.
    df["first_seen"] = df["first_seen"].fillna(df["updated_at"])
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
        try:
            df = read_manifest(data)
            damaged = False
        except ValueError as e:
            logger.warning("%s; rebuilding it from %s", e, layout.banners_dir(data))
            df, damaged = empty_manifest(), True
        self.rows: dict[int, dict] = {int(r["app_id"]): r for r in df.to_dict("records")}
        self.dirty = damaged  # a damaged file is replaced even when nothing else changes
        self.last_flush = time.monotonic()
        self._reconcile()
        self.set_names({a: n for a, n in names.items() if n})

    def _reconcile(self) -> None:
        for tmp in files.stale_temp_files(layout.banners_dir(self.data)):
            tmp.unlink(missing_ok=True)
        on_disk = layout.banner_files(self.data)  # regular files with valid ids only
        for app_id, path in list(on_disk.items()):
            row = self.rows.get(app_id)
            if row is not None and row["status"] == "ok":
                continue
            try:
                w, h = header_size(path)
            except ValueError as e:
                # Not ours (renames are atomic, sizes are ours): drop it and fetch again.
                logger.warning("removed %s: not a banner we wrote (%s)", path, e)
                path.unlink(missing_ok=True)
                del on_disk[app_id]
                continue
            size = path.stat().st_size
            self.update({"app_id": app_id, "status": "ok", "width": w, "height": h, "bytes": size})
            logger.info("adopted %s left by an interrupted run", path.name)
        for app_id, row in self.rows.items():
            if row["status"] == "ok" and app_id not in on_disk:
                gone = {"app_id": app_id, "status": "error", "error": "file missing"}
                self.update({**gone, "url": row["url"]})

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
        seen = old.get("first_seen")
        new["first_seen"] = new["updated_at"] if seen is None or pd.isna(seen) else seen
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


def collection_images(
    data: str | os.PathLike, manifest: pd.DataFrame | None = None
) -> dict[int, Path]:
    """The images in the collection: the one answer every stage uses.

    ``{app_id: banner path}``, sorted by id: the manifest's ``ok`` rows whose banner is on disk
    (``layout.banner_files``: valid names, regular files inside ``banners/``), or every banner
    when the data folder has no manifest. An ``ok`` row without its file, and a banner without a
    row, are logged (one warning each, with a count) and left out.

    Args:
        data: the data folder.
        manifest: the manifest when the caller has read it already.

    Raises:
        ValueError: a damaged manifest (named, with the fix).
    """
    on_disk = layout.banner_files(data)
    if manifest is None and layout.manifest_path(data).is_file():
        manifest = read_manifest(data)
    if manifest is None:
        return dict(sorted(on_disk.items()))
    ok = set(manifest.loc[manifest["status"] == "ok", "app_id"].tolist())
    if missing := sorted(ok - on_disk.keys()):
        logger.warning("manifest lists %s as ok whose file is missing: %s", *_few(missing))
    if unlisted := sorted(on_disk.keys() - set(manifest["app_id"].tolist())):
        count, shown = _few(unlisted, ".jpg")
        logger.warning(
            "%s in %s without a manifest row, left out of the collection: %s; rerun `download` "
            "or `import-snapshot`: they add a row for each banner they find",
            count,
            layout.banners_dir(data),
            shown,
        )
    return {a: on_disk[a] for a in sorted(ok & on_disk.keys())}


def _few(ids: list[int], suffix: str = "") -> tuple[str, str]:
    """("1 banner" or "N banners", the first five of ``ids`` + ``suffix``) for a message."""
    n = len(ids)
    shown = ", ".join(f"{i}{suffix}" for i in ids[:5]) + (", ..." if n > 5 else "")
    return f"{n} banner{'' if n == 1 else 's'}", shown


def load_names(data: str | os.PathLike) -> dict[int, str]:
    """``{app_id: name}`` from the manifest ({} without one)."""
    try:
        df = read_manifest(data)
    except ValueError as e:  # names only decorate: show ids rather than fail
        logger.warning("%s; showing app ids without names", e)
        return {}
    return {int(a): str(n) for a, n in zip(df["app_id"], df["name"]) if n}


def escape_mathtext(text) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped, so a name such as
    ``Money $_$ Maker`` is never parsed as mathtext (which fails on it and stops the drawing)."""
    return str(text).replace("$", r"\$")
