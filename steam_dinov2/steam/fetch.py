"""One banner over HTTP -> checked, resized (``codec``) and saved: alone (``fetch_banner``, a
live query) or many at once on a pool of threads (``FetchPipeline``, the download stage's)."""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

from ..core import files, layout
from ..core.codec import DEFAULT_SIZE, encode_jpeg, original_size_mode, parse_size, resize_banner
from ..core.net import HttpError, SteamHttp
from .catalog import banner_url, fetch_store_items

MISSING = "missing"  # a row's status while unresolved: 404 on the tried URL, ask GetItems


def fetch_banner(
    app_id: int, *, size: str = DEFAULT_SIZE, http: SteamHttp | None = None
) -> Image.Image:
    """Fetch one app's banner live (a game outside the collection), resized like the collection.

    Returns:
        RGB PIL image, see ``codec.resize_banner``.

    Raises:
        LookupError: the app has no library banner.
        HttpError: the download failed or the response is not an image.
    """
    parse_size(size)
    own = http is None
    http = http or SteamHttp()
    try:
        app_id = files.parse_app_id(app_id)
        row = finish_banner(fetch_one(app_id, banner_url(app_id, http=http), http), size, None)
        if row["status"] == MISSING:
            url = fetch_store_items([app_id], http=http).get(app_id, {}).get("banner_url")
            if url is None:
                raise LookupError(f"app {app_id} has no library banner")
            row = finish_banner(fetch_one(app_id, url, http), size, None)
    finally:
        if own:
            http.close()
    if row["status"] != "ok":
        raise HttpError(f"app {app_id}: {row['error'] or 'no banner'}")
    return row["image"]


@dataclasses.dataclass(frozen=True)
class Fetched:
    """One banner request's outcome: its manifest row so far and, on HTTP 200, the body."""

    row: dict
    body: bytes | None = None
    kind: str = ""  # the Content-Type, named in the error when the body does not decode


def fetch_one(
    app_id: int, url: str, http: SteamHttp, stop: threading.Event | None = None
) -> Fetched:
    """GET one banner within ``http.deadline`` seconds in all; gives up when ``stop`` is set."""
    row = {"app_id": app_id, "url": url, "status": "error", "error": ""}
    try:
        r = http.get(url, deadline=http.deadline, stop=stop)
    except HttpError as e:
        return Fetched(row | {"error": str(e)})
    if r.status_code == 404:
        return Fetched(row | {"status": MISSING, "error": "HTTP 404"})
    if r.status_code != 200:
        return Fetched(row | {"error": f"HTTP {r.status_code}"})
    return Fetched(row, r.content, r.headers.get("Content-Type", "no Content-Type"))


def finish_banner(fetched: Fetched, size: str, data) -> dict:
    """The manifest row of a fetched banner: checked, resized and, when ``data`` is given, saved
    (the row then holds no image); a failed fetch's row as it is."""
    row, content = fetched.row, fetched.body
    if content is None:
        return row
    try:
        img = resize_banner(content, size=size)
    except ValueError as e:
        return row | {"error": f"{e} ({fetched.kind}, {len(content)} bytes)"}
    row = row | {"status": "ok", "width": img.width, "height": img.height, "image": img}
    row |= original_size_mode(content)
    if data is not None:
        payload = encode_jpeg(img)
        files.write_bytes_atomic(layout.banner_path(data, row["app_id"]), payload)
        row |= {"bytes": len(payload), "image": None}
    return row


class FetchPipeline:
    """Banners fetched on ``workers`` threads, then decoded, resized and saved on one thread per
    core (Pillow releases the GIL), so a download thread goes back to the network at once: at 8
    threads and 50 ms latency this took throughput from 0.77 to 0.9 of workers/latency
    (benchmarks/README.md). ``stop`` (set on Ctrl-C) makes requests in flight give up."""

    def __init__(self, http: SteamHttp, *, workers: int, size: str, data) -> None:
        self.http, self.size, self.data = http, size, data
        self.stop = threading.Event()
        self.net = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="banner")
        cores = os.cpu_count() or 1
        self.cpu = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="resize")
        # Back-pressure: at most `workers` fetched bodies wait for a core.
        self.slots = threading.Semaphore(workers)
        self.done: queue.SimpleQueue = queue.SimpleQueue()

    def rows(self, urls: dict[int, str]) -> Iterator[dict]:
        """Fetch ``{app_id: url}``; yields each app's row in the order they complete."""
        for app_id, url in urls.items():
            job = self.net.submit(fetch_one, app_id, url, self.http, self.stop)
            job.add_done_callback(self._fetched)
        for _ in range(len(urls)):
            out = self.done.get()
            if isinstance(out, BaseException):  # raised in the calling thread
                raise out
            yield out

    def _fetched(self, job: Future) -> None:
        try:
            fetched = job.result()
        except BaseException as e:
            self.done.put(e)
            return
        if fetched.body is None:
            self.done.put(fetched.row)
            return
        self.slots.acquire()
        try:
            job = self.cpu.submit(finish_banner, fetched, self.size, self.data)
        except RuntimeError as e:  # shut down: a Ctrl-C or an error stopped the run
            self.slots.release()
            self.done.put(e)
            return
        job.add_done_callback(self._finished)

    def _finished(self, job: Future) -> None:
        self.slots.release()
        try:
            self.done.put(job.result())
        except BaseException as e:
            self.done.put(e)

    def close(self) -> None:
        """Wait for the work in flight, or abandon it when stopped."""
        wait = not self.stop.is_set()
        self.net.shutdown(wait=wait, cancel_futures=True)
        self.cpu.shutdown(wait=wait, cancel_futures=True)
