"""Banners -> ``DATA/banners/{app_id}.jpg`` + ``DATA/manifest.parquet``, resumable at any moment.

Every file is written by one rename, so a run killed by SIGKILL leaves whole files only; the
manifest is checkpointed the same way and reconciled with the folder when the next run starts.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from threading import Semaphore

import pandas as pd
from PIL import Image, UnidentifiedImageError

from . import layout
from .manifest import ManifestBook
from .net import HttpError, SteamHttp
from .preprocess import check_pixels, to_rgb
from .progress import tqdm
from .steam import GETITEMS_BATCH, STEAMSPY_WAIT, banner_url, fetch_store_items, list_apps

logger = logging.getLogger(__name__)

# Shorter side 224 or 256 keeps DINOv2's "resize 256 (or 224), crop 224" from upscaling; a
# 600x900 banner becomes exactly 224x336 or 256x384 (the original project's img2dataset sizes).
SIZES = {"224x336": (224, 336), "256x384": (256, 384), "original": None}
# 256x384 serves every preset without upscaling (crop256 takes it as it is, crop224 and full
# downscale once); 224x336 made crop256 upscale 224 -> 256: benchmarks/bench_fidelity.py.
DEFAULT_SIZE = "256x384"
# A Colab VM has 2 vCPUs: 32 threads keep ~30 requests in flight, while decoding and resizing
# (about 4 ms a banner with JPEG draft mode) stay below what 2 cores can do.
DEFAULT_WORKERS = 32
JPEG_QUALITY = 95
_MISSING = "missing"  # internal status: 404 on the tried URL, ask GetItems


def parse_size(size: str) -> tuple[int, int] | None:
    """``"224x336"`` -> (224, 336); ``"original"`` -> None."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; available: {', '.join(SIZES)}")
    return SIZES[size]


def resize_banner(image: bytes | Image.Image, *, size: str = DEFAULT_SIZE) -> Image.Image:
    """Decode and resize a banner the same way for the collection and for live queries.

    Args:
        image: encoded bytes (JPEG, PNG, ... whatever the server sent) or a PIL image.
        size: one of ``SIZES``. The image is scaled, aspect kept, so its shorter side matches the
            size's shorter side (600x900 -> 224x336); ``"original"`` keeps the pixels.

    Returns:
        RGB PIL image (HWC uint8 in [0, 255] as an array).

    Raises:
        ValueError: for an unknown size or bytes that are not a decodable image.
    """
    target = parse_size(size)
    try:
        img = Image.open(io.BytesIO(image)) if isinstance(image, bytes | bytearray) else image
        check_pixels(img)  # on the header: a decompression bomb is refused before decoding
        if target is not None:
            w, h = img.size
            scale = min(target) / min(w, h)
            out = (max(1, round(w * scale)), max(1, round(h * scale)))
            if img.format == "JPEG" and scale < 1:
                # DCT-domain downscale by 1/2, 1/4 or 1/8 while decoding, never below `out`.
                img.draft("RGB", out)
            img = to_rgb(img)
            if img.size != out:
                img = img.resize(out, Image.Resampling.BICUBIC)
        else:
            img = to_rgb(img)
    except UnidentifiedImageError:
        raise ValueError("not a decodable image: unknown format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a decodable image: {e}") from None
    return img


def encode_jpeg(img: Image.Image) -> bytes:
    """RGB JPEG bytes at quality 95, as saved in ``DATA/banners``."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def fetch_banner(
    app_id: int, *, size: str = DEFAULT_SIZE, http: SteamHttp | None = None
) -> Image.Image:
    """Fetch one app's banner live (a game outside the collection), resized like the collection.

    Returns:
        RGB PIL image, see ``resize_banner``.

    Raises:
        LookupError: the app has no library banner.
        HttpError: the download failed or the response is not an image.
    """
    parse_size(size)
    own = http is None
    http = http or SteamHttp()
    try:
        app_id = layout.parse_app_id(app_id)
        row = _download_one(app_id, banner_url(app_id, http=http), http, size, data=None)
        if row["status"] == _MISSING:
            url = fetch_store_items([app_id], http=http).get(app_id, {}).get("banner_url")
            if url is None:
                raise LookupError(f"app {app_id} has no library banner")
            row = _download_one(app_id, url, http, size, data=None)
    finally:
        if own:
            http.close()
    if row["status"] != "ok":
        raise HttpError(f"app {app_id}: {row['error'] or 'no banner'}")
    return row["image"]


def _download_one(app_id: int, url: str, http: SteamHttp, size: str, *, data, cpu=None, stop=None):
    """Fetch one banner, then check, resize and (when ``data`` is given) save it.

    Returns a manifest row; with ``cpu = (executor, slots)`` the image work goes to that executor
    and a Future of the row comes back, so this download thread can start its next request.
    The fetch has ``http.deadline`` seconds in all and gives up when ``stop`` is set.
    """
    row = {"app_id": app_id, "url": url, "status": "error", "error": ""}
    try:
        r = http.get(url, deadline=http.deadline, stop=stop)
    except HttpError as e:
        return row | {"error": str(e)}
    if r.status_code == 404:
        return row | {"status": _MISSING, "error": "HTTP 404"}
    if r.status_code != 200:
        return row | {"error": f"HTTP {r.status_code}"}
    kind = r.headers.get("Content-Type", "no Content-Type")
    if cpu is None:
        return _finish(row, r.content, kind, size, data)
    executor, slots = cpu
    slots.acquire()  # back-pressure: a bounded number of fetched bodies wait for a core
    future = executor.submit(_finish, row, r.content, kind, size, data)
    future.add_done_callback(lambda _: slots.release())
    return future


def _finish(row: dict, content: bytes, kind: str, size: str, data) -> dict:
    try:
        img = resize_banner(content, size=size)
    except ValueError as e:
        return row | {"error": f"{e} ({kind}, {len(content)} bytes)"}
    row |= {"status": "ok", "width": img.width, "height": img.height, "image": img}
    row |= _original_size_mode(content)
    if data is not None:
        payload = encode_jpeg(img)
        layout.write_bytes_atomic(layout.banner_path(data, row["app_id"]), payload)
        row |= {"bytes": len(payload), "image": None}
    return row


def _original_size_mode(content: bytes) -> dict:
    """``orig_width``, ``orig_height``, ``orig_mode`` of the image as served (header only)."""
    with Image.open(io.BytesIO(content)) as img:
        return {"orig_width": img.width, "orig_height": img.height, "orig_mode": img.mode}


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
        ValueError: a bad option or an app id that is not one (``layout.parse_app_id``).
        layout.FolderLocked: another process works on ``data``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with layout.lock_data(data):
        return _download_locked(
            data, source, limit, size, workers, api_key, steamspy_wait, http, progress, metadata
        )


def _download_locked(
    data, source, limit, size, workers, api_key, steamspy_wait, http, progress, metadata
):
    http = (http or SteamHttp()).with_pool(workers)
    apps = _as_apps(source, limit, api_key, steamspy_wait, http, progress)
    names = dict(zip(apps["app_id"].tolist(), apps["name"].tolist(), strict=True))
    start = time.monotonic()
    book = ManifestBook(data, names)
    target = parse_size(size)
    pending = [a for a in names if not book.is_done(a, min(target) if target else None)]
    counts: Counter = Counter()
    bar = tqdm(total=len(pending), desc="banners", unit="app", disable=not progress)

    def record(row: dict) -> None:
        book.update(row)
        counts[row["status"]] += 1
        if row["status"] == "error":
            counts["error:" + row["error"][:80]] += 1
        bar.update(1)
        bar.set_postfix(ok=counts["ok"], no_banner=counts["no_banner"], error=counts["error"])
        book.checkpoint()

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="banner")
    # Decoding, resizing and encoding run on their own threads (Pillow releases the GIL), one per
    # core, so a download thread goes back to the network at once: at 8 threads and 50 ms latency
    # this took throughput from 0.77 to 0.9 of workers/latency (benchmarks/README.md).
    cores = os.cpu_count() or 1
    cpu = (ThreadPoolExecutor(max_workers=cores, thread_name_prefix="resize"), Semaphore(workers))
    stop = threading.Event()  # set on Ctrl-C: requests in flight give up at their next bytes
    try:
        first_url = lambda a: book.url(a) or banner_url(a, http=http)  # noqa: E731
        missing = _run(pool, pending, first_url, http, size, data, record, cpu, stop)
        nameless = [a for a in names if not book.name(a)]
        items = _lookup(pool, sorted(set(missing) | set(nameless)), http, record, missing)
        book.set_names({a: v["name"] for a, v in items.items() if v["name"]})
        urls = {}
        for a in missing:
            url = items.get(a, {}).get("banner_url")
            if url is None and a in items:
                record({"app_id": a, "status": "no_banner", "url": "", "error": ""})
            elif url is not None:
                urls[a] = url
        still = _run(pool, list(urls), urls.get, http, size, data, record, cpu, stop)
        for a in still:  # the hashed path 404s too: Steam has no banner for it
            record({"app_id": a, "status": "no_banner", "url": urls[a], "error": "HTTP 404"})
    except BaseException:
        stop.set()  # Ctrl-C or a bug: do not wait for the downloads in flight
        raise
    finally:
        pool.shutdown(wait=not stop.is_set(), cancel_futures=True)
        cpu[0].shutdown(wait=not stop.is_set(), cancel_futures=True)
        if not stop.is_set():
            http.close()  # the pooled copy made above: ours alone
        bar.close()
        book.flush()  # only this thread touches the book: consistent at any moment
    top = tuple((k[6:], n) for k, n in counts.most_common() if k.startswith("error:"))[:3]
    report = DownloadReport(
        counts["ok"],
        counts["no_banner"],
        counts["error"],
        len(names) - len(pending),
        time.monotonic() - start,
        top,
    )
    if metadata:
        from .metadata import fetch_metadata_quietly

        report = dataclasses.replace(report, metadata=fetch_metadata_quietly(data, http, progress))
    logger.debug("download: %s", report)  # the report is returned: its caller shows it once
    return report


def _as_apps(source, limit, api_key, steamspy_wait, http, progress) -> pd.DataFrame:
    if isinstance(source, str):
        return list_apps(
            source,
            limit=limit,
            api_key=api_key,
            steamspy_wait=steamspy_wait,
            http=http,
            progress=progress,
        )
    if isinstance(source, pd.DataFrame):
        df = source.reindex(columns=["app_id", "name"])
    else:
        df = pd.DataFrame({"app_id": pd.Series(list(source), dtype=object), "name": ""})
    ids = [layout.parse_app_id(a, f"source entry {i + 1}") for i, a in enumerate(df["app_id"])]
    df = df.assign(app_id=pd.Series(ids, index=df.index, dtype="int64")).drop_duplicates("app_id")
    df["name"] = df["name"].fillna("").astype(str)
    return df.head(limit) if limit else df


def _run(pool, app_ids, url_of, http, size, data, record, cpu, stop) -> list[int]:
    """Download ``app_ids`` concurrently; returns those that answered 404."""
    results: queue.SimpleQueue = queue.SimpleQueue()

    def deliver(f: Future) -> None:
        try:
            out = f.result()
        except BaseException as e:  # re-raised in the calling thread below
            results.put(e)
            return
        if isinstance(out, Future):  # fetched; the image work is still under way
            out.add_done_callback(deliver)
        else:
            results.put(out)

    for a in app_ids:
        pool.submit(
            _download_one, a, url_of(a), http, size, data=data, cpu=cpu, stop=stop
        ).add_done_callback(deliver)
    missing = []
    for _ in range(len(app_ids)):
        row = results.get()
        if isinstance(row, BaseException):
            raise row
        if row["status"] == _MISSING:
            missing.append(row["app_id"])
        else:
            record(row)
    return missing


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
