"""Catalogue metadata per app: developers, publishers, franchises and top store tags with weights.

The labels ``evaluate`` scores against, fetched keyless from Steam:

* ``IStoreBrowseService/GetItems/v1`` with ``include_basic_info`` (developers, publishers,
  franchises) and ``include_tag_count`` (the top tags with their weights), in batches of 50 as the
  download asks for hashed asset paths (the answer is parsed by ``steam.fetch_store_metadata``);
* ``IStoreService/GetTagList/v1`` for tag names, optional: ids are enough for scoring.

Kept in ``DATA/metadata.parquet`` (one row per app) and ``DATA/tag_names.parquet``. A failed batch
is reported and skipped, never raised: the rest carries on and a rerun fetches what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from ..core import files, layout
from ..core.manifest import collection_images
from ..core.net import MAX_JSON_BODY, HttpError, SteamHttp, json_body
from ..core.progress import tqdm
from .catalog import (
    GETITEMS_BATCH,
    LABEL_COLUMNS,
    MAX_LABEL_CHARS,
    MAX_TAG_ID,
    fetch_store_metadata,
    store_metadata_row,
)

logger = logging.getLogger(__name__)

COLUMNS = ("app_id", *LABEL_COLUMNS, "tagids", "tag_weights", "updated_at")
_WORKERS = 4  # concurrent GetItems batches: polite to a keyless endpoint
_CHECKPOINT = 20  # batches (1,000 apps) between two writes of the table


@dataclasses.dataclass(frozen=True)
class MetadataReport:
    """Counts of one ``fetch_metadata`` run; ``str()`` is the summary line."""

    fetched: int
    reused: int
    unknown: int  # the store answered without the app (delisted, wrong id)
    failed: int  # in batches that failed: fetched again by the next run
    tag_names: int
    errors: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = (
            f"{self.fetched} apps fetched, {self.reused} reused, {self.unknown} unknown to the "
            f"store, {self.failed} failed; {self.tag_names} tag names"
        )
        return text + "".join(f"\n  {e}" for e in self.errors[:3])


def read_metadata(data: str | os.PathLike) -> pd.DataFrame:
    """``DATA/metadata.parquet`` with ``COLUMNS`` (empty if absent).

    List columns hold Python lists: ``developers``, ``publishers``, ``franchises`` of str,
    ``tagids`` of int and ``tag_weights`` of float (same length, heaviest first).
    """
    path = layout.metadata_path(data)
    if not path.is_file():
        return empty_metadata()
    try:
        df = pd.read_parquet(path)
        missing = set(COLUMNS) - set(df.columns)
        if missing:
            raise ValueError(f"missing columns {sorted(missing)}")
        df = df[list(COLUMNS)].astype({"app_id": "int64"})
        for col in (*LABEL_COLUMNS, "tagids", "tag_weights"):
            df[col] = [list(v) if v is not None else [] for v in df[col]]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"{path} is not a metadata table ({e}); delete it and run `metadata` again"
        ) from None
    return df.reset_index(drop=True)


def empty_metadata() -> pd.DataFrame:
    """A metadata table without rows, with ``COLUMNS``."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS}).astype({"app_id": "int64"})


def read_tag_names(data: str | os.PathLike) -> dict[int, str]:
    """``{tagid: name}`` from ``DATA/tag_names.parquet`` ({} if absent or unreadable)."""
    path = layout.tag_names_path(data)
    try:
        df = pd.read_parquet(path)
        return {int(t): str(n) for t, n in zip(df["tagid"], df["name"])}
    except (OSError, KeyError, ValueError, TypeError):
        return {}


@dataclasses.dataclass(frozen=True)
class GameLabel:
    """Who made one game and what it is about, for captions and filters (``labels_of``).

    Attributes:
        studio: "Dev A, Dev B (Pub)" for display: the publishers only where they differ from the
            developers ("" when neither is known).
        makers: developers and publishers, compared case- and space-blind (``same_name``).
        franchises: franchises, the same way.
        tagids: store tags, heaviest first.
        tags: their names (``"tag N"`` where ``tag_names.parquet`` has none).
    """

    studio: str
    makers: frozenset[str]
    franchises: frozenset[str]
    tagids: tuple[int, ...]
    tags: tuple[str, ...]

    def caption(self, tags: int = 2) -> str:
        """One line: the studio and the ``tags`` heaviest tags, e.g. "Valve · FPS, Sci-fi"."""
        return " · ".join(p for p in (self.studio, ", ".join(self.tags[:tags])) if p)


def same_name(text) -> str:
    """A developer, publisher or franchise name as compared: case and runs of spaces ignored."""
    return " ".join(str(text).split()).casefold()


def labels_of(meta: pd.DataFrame, tag_names: dict[int, str]) -> dict[int, GameLabel]:
    """``{app_id: GameLabel}`` of every row of a metadata table (``read_metadata``)."""
    labels = {}
    for row in meta.itertuples(index=False):
        devs, pubs = [str(d) for d in row.developers], [str(p) for p in row.publishers]
        studio = ", ".join(devs)
        if {same_name(p) for p in pubs} - {same_name(d) for d in devs}:
            studio = f"{studio} ({', '.join(pubs)})" if devs else ", ".join(pubs)
        tagids = tuple(int(t) for t in row.tagids)
        labels[int(row.app_id)] = GameLabel(
            studio=studio,
            makers=frozenset(same_name(x) for x in (*devs, *pubs) if same_name(x)),
            franchises=frozenset(same_name(x) for x in row.franchises if same_name(x)),
            tagids=tagids,
            tags=tuple(tag_names.get(t, f"tag {t}") for t in tagids),
        )
    return labels


def load_labels(data: str | os.PathLike) -> dict[int, GameLabel]:
    """``labels_of`` the data folder's metadata; {} without one, or with a damaged one (labels
    only decorate: a warning, and games are shown without them)."""
    try:
        return labels_of(read_metadata(data), read_tag_names(data))
    except ValueError as e:
        logger.warning("%s; showing games without developers and tags", e)
        return {}


def fetch_metadata(
    data: str | os.PathLike,
    app_ids=None,
    *,
    refresh: bool = False,
    http: SteamHttp | None = None,
    progress: bool = True,
) -> MetadataReport:
    """Fetch the metadata of ``app_ids`` into ``DATA/metadata.parquet``, reusing rows it holds.

    Args:
        data: the data folder.
        app_ids: apps to describe; default the collection's Steam apps (``collection_images``),
            ValueError when it has none.
        refresh: fetch every app again instead of reusing its row.
        http: HTTP settings and session.
        progress: show a tqdm bar.

    Returns:
        A ``MetadataReport`` (also logged). Failed batches are counted there, never raised.
    """
    if app_ids is None:
        app_ids = _collection_ids(data)
    http = http or SteamHttp()
    ids = list(dict.fromkeys(int(a) for a in app_ids))
    errors: list[str] = []
    old = _previous(data, errors)
    keep = old[old["app_id"].isin(ids)] if not refresh else old.iloc[:0]
    todo = sorted(set(ids) - set(keep["app_id"]))
    run = _Batches(data, old, errors)
    batches = [todo[i : i + GETITEMS_BATCH] for i in range(0, len(todo), GETITEMS_BATCH)]
    with (
        ThreadPoolExecutor(_WORKERS, thread_name_prefix="metadata") as pool,
        tqdm(total=len(todo), desc="metadata", unit="app", disable=not progress) as bar,
    ):
        results = pool.map(_try_batch, batches, [http] * len(batches))
        for n, (batch, result) in enumerate(zip(batches, results), 1):
            run.add(batch, result)
            bar.update(len(batch))
            if n % _CHECKPOINT == 0:  # a killed run keeps what it fetched
                run.save()
    names = _update_tag_names(data, run.save(), http, errors)
    report = MetadataReport(
        len(run.rows), len(keep), len(run.unknown), run.failed, names, tuple(errors)
    )
    logger.debug("metadata: %s", report)  # returned: its caller shows it once
    return report


def _previous(data, errors: list[str]) -> pd.DataFrame:
    """The metadata table so far; a damaged one is fetched again, not a reason to stop."""
    try:
        return read_metadata(data)
    except ValueError as e:
        errors.append(str(e))
        logger.warning("%s", e)
        return empty_metadata()


class _Batches:
    """The GetItems batches of one ``fetch_metadata`` run: rows, unknown apps and failures."""

    def __init__(self, data, old: pd.DataFrame, errors: list[str]) -> None:
        self.data, self.old, self.errors = data, old, errors
        self.rows: list[dict] = []
        self.unknown: list[int] = []
        self.failed = 0

    def add(self, batch: list[int], result: tuple[list[dict], list[int]] | str) -> None:
        """Count one batch's ``_try_batch`` result."""
        if isinstance(result, str):
            self.failed += len(batch)
            self.errors.append(f"apps {batch[0]}..{batch[-1]}: {result}")
            logger.warning("metadata of apps %s..%s: %s", batch[0], batch[-1], result)
            return
        # An app the store says it does not know gets an empty row, so a rerun does not ask
        # again; one it did not mention at all is asked again.
        self.rows += result[0]
        self.unknown += result[1]
        self.failed += len(batch) - len(result[0]) - len(result[1])

    def save(self) -> list[dict]:
        """Write the old rows and those fetched so far; returns the fetched ones."""
        done = self.rows + [store_metadata_row(a, {}) for a in self.unknown]
        if done:
            new = pd.DataFrame(done, columns=list(COLUMNS))
            new = new.assign(updated_at=pd.Timestamp.now("UTC"))
            # An empty table left out: pandas 2.1+ warns about concatenating one (FutureWarning).
            parts = [df for df in (self.old, new) if not df.empty]
            write_metadata(self.data, pd.concat(parts, ignore_index=True))
        return done


def write_metadata(data: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write the metadata table atomically, one row per app (last wins), sorted by ``app_id``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = df.drop_duplicates("app_id", keep="last").sort_values("app_id")
    strings = pa.list_(pa.string())
    schema = pa.schema(
        [
            ("app_id", pa.int64()),
            *((c, strings) for c in LABEL_COLUMNS),
            ("tagids", pa.list_(pa.int64())),
            ("tag_weights", pa.list_(pa.float64())),
            ("updated_at", pa.timestamp("ns", tz="UTC")),
        ]
    )
    columns = {c: list(df[c]) for c in COLUMNS}
    columns["updated_at"] = pd.to_datetime(df["updated_at"], utc=True)
    table = pa.Table.from_pydict(columns, schema=schema)
    with files.atomic_path(layout.metadata_path(data)) as tmp:
        pq.write_table(table, tmp)


def fetch_metadata_quietly(data: str | os.PathLike, http: SteamHttp, progress: bool) -> str:
    """``fetch_metadata`` for the end of a download: its summary, or why it failed; never raises."""
    http = http.with_pool(_WORKERS)
    try:
        return str(fetch_metadata(data, http=http, progress=progress))
    except Exception as e:  # whatever went wrong, the download it follows stands
        logger.warning("metadata: %s", e)
        return f"failed ({type(e).__name__}: {e}); run `python -m steam_dinov2 metadata` again"
    finally:
        http.close()


def _collection_ids(data) -> list[int]:
    """The collection's Steam app ids: own images (``import-folder``) have no store page.
    ValueError when there are none: nothing could be done, and saying so beats a summary of 0."""

    if not os.path.isdir(data):
        raise ValueError(f"data folder {data} not found: run `download` into it first")
    ids = [a for a in collection_images(data) if files.is_steam_id(a)]
    if not ids:
        raise ValueError(
            f"no Steam apps in the collection of {data}: run `download` or `import-snapshot` "
            "first (own images have no store page)"
        )
    return ids


def _try_batch(ids: list[int], http: SteamHttp) -> tuple[list[dict], list[int]] | str:
    """``(rows, unknown ids)`` of one GetItems batch, or the reason it failed."""
    try:
        return fetch_store_metadata(ids, http)
    except (HttpError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        return (
            f"{type(e).__name__}: {files.clip_text(e, 160)}"  # this batch only: the others carry on
        )


def _update_tag_names(data, rows: list[dict], http: SteamHttp, errors: list[str]) -> int:
    """Fetch ``GetTagList`` when a tag has no name yet; returns how many names are known."""
    names = read_tag_names(data)
    if all(t in names for r in rows for t in r["tagids"]):
        return len(names)
    url = f"{http.api_base}/IStoreService/GetTagList/v1/"
    query = json.dumps({"language": "english"}, separators=(",", ":"))
    try:  # untrusted like GetItems: the banner's deadline, a capped body, checked values
        r = http.get(
            url, params={"input_json": query}, deadline=http.deadline, max_bytes=MAX_JSON_BODY
        )
        http.raise_for_status(r)
        tags = json_body(r, "GetTagList")["response"]["tags"]
        got = {
            t["tagid"]: t["name"][:MAX_LABEL_CHARS]
            for t in tags
            if isinstance(t, dict)
            and type(t.get("tagid")) is int  # a bool is no tag id
            and 0 <= t["tagid"] <= MAX_TAG_ID
            and isinstance(t.get("name"), str)
        }
    except (HttpError, ValueError, TypeError, KeyError, AttributeError) as e:
        errors.append(f"tag names: {type(e).__name__}: {files.clip_text(e, 160)} (tag ids kept)")
        logger.warning("%s", errors[-1])
        return len(names)
    names |= got
    df = pd.DataFrame({"tagid": list(names), "name": list(names.values())})
    with files.atomic_path(layout.tag_names_path(data)) as tmp:
        df.to_parquet(tmp, index=False)
    return len(names)
