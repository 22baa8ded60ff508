"""Banners -> ``DATA/banners/{app_id}.jpg`` + ``DATA/manifest.parquet``, resumable at any moment.

Every file is written by one rename, so a run killed by SIGKILL leaves whole files only; the
manifest is checkpointed the same way and reconciled with the folder when the next run starts.
Fetching one banner is ``fetch``'s, decoding and resizing ``codec``'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import as_completed

import pandas as pd

from ..core import files, layout
from ..core.codec import DEFAULT_SIZE, parse_size
from ..core.manifest import ManifestBook
from ..core.net import HttpError, SteamHttp
from ..core.progress import tqdm
from .catalog import GETITEMS_BATCH, STEAMSPY_WAIT, banner_url, fetch_store_items, list_apps
from .fetch import MISSING, FetchPipeline
from .metadata import fetch_metadata_quietly

logger = logging.getLogger(__name__)

# A Colab VM has 2 vCPUs: 32 threads keep ~30 requests in flight, while decoding and resizing
# (about 4 ms a banner with JPEG draft mode) stay below what 2 cores can do.
DEFAULT_WORKERS = 32


@dataclasses.dataclass(frozen=True)
class DownloadReport:
    """Counts of one ``download_banners`` run; ``str()`` is the summary line."""

    ok: int
    no_banner: int
    error: int
    skipped: int
    seconds: float
    top_errors: tuple[tuple[str, int], ...] = ()
    metadata: str = ""  # the metadata step's summary (see metadata.fetch_metadata)

    def __str__(self) -> str:
        done = self.ok + self.no_banner + self.error
        rate = done / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.ok} ok, {self.no_banner} no banner, {self.error} errors, "
            f"{self.skipped} already done; {done} apps in {self.seconds:.1f} s ({rate:.1f}/s)"
        )
        text += "".join(f"\n  {n} x {msg}" for msg, n in self.top_errors)
        return text + (f"\nmetadata: {self.metadata}" if self.metadata else "")


def download_banners(
    data: str | os.PathLike,
    *,
    source: str | pd.DataFrame | Sequence[int] = "steamspy",
    limit: int | None = None,
    size: str = DEFAULT_SIZE,
    workers: int = DEFAULT_WORKERS,
    api_key: str | None = None,
    steamspy_wait: float = STEAMSPY_WAIT,
    http: SteamHttp | None = None,
    progress: bool = True,
    metadata: bool = True,
) -> DownloadReport:
    """Download every app's banner into ``DATA/banners`` and record it in the manifest.

    Reruns skip apps already ``ok`` (at this size) or ``no_banner`` and retry errors; files left
    by a killed run are adopted, never fetched again. The data folder is locked for the run
    (``layout.lock_data``). On Ctrl-C the downloads in flight are abandoned, the manifest is
    written and KeyboardInterrupt propagates within a moment.

    Args:
        data: the data folder.
        source: ``"store"``, ``"steamspy"``, ``"file:PATH"`` (see ``list_apps``), a DataFrame
            with ``app_id`` and optional ``name``, or a sequence of app ids.
        limit: at most this many apps from the source.
        size: one of ``SIZES``.
        workers: download threads.
        api_key: Steam Web API key for ``store`` (default ``STEAM_API_KEY``).
        steamspy_wait: seconds between SteamSpy pages.
        http: HTTP settings (bases, timeout, retries); its session is resized to ``workers``.
        progress: show tqdm bars.
        metadata: also fetch the apps' developers, publishers, franchises and tags into
            ``DATA/metadata.parquet`` (``metadata.fetch_metadata``); its failures are reported in
            the report, never raised.

    Returns:
        A ``DownloadReport``; also logged at INFO.

    Raises:
        ValueError: a bad option or an app id that is not one (``files.parse_app_id``).
        files.FolderLocked: another process works on ``data``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    options = _Options(source, limit, size, workers, api_key, steamspy_wait, progress, metadata)
    with layout.lock_data(data):
        return _download_locked(data, options, http)


@dataclasses.dataclass(frozen=True)
class _Options:
    """The options of one ``download_banners`` run (see there)."""

    source: str | pd.DataFrame | Sequence[int]
    limit: int | None
    size: str
    workers: int
    api_key: str | None
    steamspy_wait: float
    progress: bool
    metadata: bool


class _Tally:
    """Records rows in the manifest book, counts them for the report and moves the bar."""

    def __init__(self, book: ManifestBook, total: int, progress: bool) -> None:
        self.book, self.counts = book, Counter()
        self.bar = tqdm(total=total, desc="banners", unit="app", disable=not progress)

    def record(self, row: dict) -> None:
        self.book.update(row)
        self.counts[row["status"]] += 1
        if row["status"] == "error":
            self.counts["error:" + files.clip_text(row["error"], 80)] += 1
        self.bar.update(1)
        c = self.counts
        self.bar.set_postfix(ok=c["ok"], no_banner=c["no_banner"], error=c["error"])
        self.book.checkpoint()

    def report(self, skipped: int, seconds: float) -> DownloadReport:
        c = self.counts
        top = tuple((k[6:], n) for k, n in c.most_common() if k.startswith("error:"))[:3]
        return DownloadReport(c["ok"], c["no_banner"], c["error"], skipped, seconds, top)


def _download_locked(data, options: _Options, http: SteamHttp | None) -> DownloadReport:
    http = (http or SteamHttp()).with_pool(options.workers)
    apps = _as_apps(options, http)
    names = dict(zip(apps["app_id"].tolist(), apps["name"].tolist(), strict=True))
    start = time.monotonic()
    book = ManifestBook(data, names)
    target = parse_size(options.size)
    pending = [a for a in names if not book.is_done(a, min(target) if target else None)]
    tally = _Tally(book, len(pending), options.progress)
    pipeline = FetchPipeline(http, workers=options.workers, size=options.size, data=data)
    try:
        _fetch_pending(pipeline, book, names, pending, tally.record)
    except BaseException:
        pipeline.stop.set()  # Ctrl-C or a bug: do not wait for the downloads in flight
        raise
    finally:
        pipeline.close()
        if not pipeline.stop.is_set():
            http.close()  # the pooled copy made above: ours alone
        tally.bar.close()
        book.flush()  # only this thread touches the book: consistent at any moment
    report = tally.report(len(names) - len(pending), time.monotonic() - start)
    if options.metadata:
        summary = fetch_metadata_quietly(data, http, options.progress)
        report = dataclasses.replace(report, metadata=summary)
    logger.debug("download: %s", report)  # the report is returned: its caller shows it once
    return report


def _fetch_pending(pipeline: FetchPipeline, book, names: dict, pending: list[int], record) -> None:
    """Fetch ``pending`` at their usual URL; ask GetItems where the 404s' banners are (and the
    names still unknown), then fetch those. Every app ends as one ``record``-ed row."""
    http = pipeline.http
    first = {a: book.url(a) or banner_url(a, http=http) for a in pending}
    missing = _record_found(pipeline.rows(first), record)
    nameless = [a for a in names if not book.name(a)]
    items = _lookup(pipeline.net, sorted(set(missing) | set(nameless)), http, record, missing)
    book.set_names({a: v["name"] for a, v in items.items() if v["name"]})
    urls = {}
    for a in missing:
        url = items.get(a, {}).get("banner_url")
        if url is None and a in items:
            record({"app_id": a, "status": "no_banner", "url": "", "error": ""})
        elif url is not None:
            urls[a] = url
    for a in _record_found(pipeline.rows(urls), record):  # the hashed path 404s too: no banner
        record({"app_id": a, "status": "no_banner", "url": urls[a], "error": "HTTP 404"})


def _record_found(rows: Iterable[dict], record) -> list[int]:
    """``record`` every row but the 404s, whose app ids are returned."""
    missing = []
    for row in rows:
        if row["status"] == MISSING:
            missing.append(row["app_id"])
        else:
            record(row)
    return missing


def _as_apps(options: _Options, http: SteamHttp) -> pd.DataFrame:
    source, limit = options.source, options.limit
    if isinstance(source, str):
        return list_apps(
            source,
            limit=limit,
            api_key=options.api_key,
            steamspy_wait=options.steamspy_wait,
            http=http,
            progress=options.progress,
        )
    if isinstance(source, pd.DataFrame):
        df = source.reindex(columns=["app_id", "name"])
    else:
        df = pd.DataFrame({"app_id": pd.Series(list(source), dtype=object), "name": ""})
    ids = [files.parse_app_id(a, f"source entry {i + 1}") for i, a in enumerate(df["app_id"])]
    df = df.assign(app_id=pd.Series(ids, index=df.index, dtype="int64")).drop_duplicates("app_id")
    df["name"] = df["name"].fillna("").astype(str)
    return df.head(limit) if limit else df


def _lookup(pool, app_ids, http, record, missing) -> dict[int, dict]:
    """GetItems for ``app_ids``; a failed batch turns its ``missing`` apps into error rows."""
    batches = [app_ids[i : i + GETITEMS_BATCH] for i in range(0, len(app_ids), GETITEMS_BATCH)]
    futures = {pool.submit(fetch_store_items, b, http=http): b for b in batches}
    items: dict[int, dict] = {}
    wanted = set(missing)
    for f in as_completed(futures):
        try:
            items.update(f.result())
        except (HttpError, ValueError) as e:
            for a in wanted.intersection(futures[f]):
                record({"app_id": a, "status": "error", "url": "", "error": f"GetItems: {e}"})
                wanted.discard(a)
    for a in wanted - items.keys():
        items[a] = {"name": "", "banner_url": None}  # unknown to the store: no banner
    return {a: v for a, v in items.items() if a in wanted or v["name"]}
