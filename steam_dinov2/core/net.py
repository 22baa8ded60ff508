"""One pooled HTTP session with timeouts, retries, backoff and Retry-After, for Steam's hosts.

The Steam Web API key travels as a query parameter, so every message that could carry a URL
(exceptions, urllib3's debug log) is redacted (``api_key.redact``) before it leaves this module.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import os
import threading
import time

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import files
from .api_key import install_log_filter, redact

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.steampowered.com"
DEFAULT_ASSETS_BASE = "https://shared.akamai.steamstatic.com/store_item_assets"
DEFAULT_STEAMSPY_BASE = "https://steamspy.com"
USER_AGENT = "steam-dinov2 (banner similarity research; polite concurrent downloader)"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# A 600x900 banner is ~0.2 MB: 30 s in all is generous on any link that works at all.
DEFAULT_DEADLINE = 30.0
# Bodies are capped after decoding (a 1 MB gzip body can inflate to gigabytes). A banner is
# ~0.2 MB and GetAppList's largest page (50,000 apps) ~4 MB; 64 MB leaves room for both.
MAX_BODY = 64 << 20
# One GetItems batch of 50 apps with basic info and 20 tags is ~40 KB; the tag list ~30 KB.
MAX_JSON_BODY = 8 << 20


class HttpError(RuntimeError):
    """A request that failed after its retries; the message never holds the API key."""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _pause(seconds: float, stop: threading.Event | None) -> bool:
    """Wait ``seconds`` in short ``time.sleep`` slices (the clock tests can fake), giving up at
    once when ``stop`` is set. Returns True when stopped."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if stop is not None and stop.is_set():
            return True
        time.sleep(min(left, 0.1))
    return stop is not None and stop.is_set()


@dataclasses.dataclass
class SteamHttp:
    """Base URLs and retry policy shared by every request to Steam, with one pooled session.

    Not frozen: it owns a live ``requests.Session`` (made here unless one is given), which
    ``close`` ends; ``with_pool`` gives a copy with a session of its own.

    Bases left as None come from ``STEAM_API_BASE``, ``STEAM_ASSETS_BASE``, ``STEAMSPY_BASE``,
    then the public defaults. Tests point them at 127.0.0.1 and shrink the waits.

    Attributes:
        api_base: Steam Web API root.
        assets_base: CDN root that ``store_item_assets`` paths hang from.
        steamspy_base: SteamSpy root.
        timeout: seconds to connect and between bytes of a response.
        retries: extra attempts on 5xx, 429 and connection errors.
        deadline: seconds one banner may take in all (attempts and waits included), so a
            server that trickles bytes cannot hold a download thread; see ``get``.
        backoff: first wait in seconds, doubled at each retry.
        max_retry_after: cap in seconds on a server's Retry-After.
        max_body: bytes a response body may have once decoded (gzip); ``get`` can lower it.
        pool_size: connections kept per host (set it to the number of threads).
    """

    api_base: str | None = None
    assets_base: str | None = None
    steamspy_base: str | None = None
    timeout: float = 20.0
    deadline: float = DEFAULT_DEADLINE
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 120.0
    max_body: int = MAX_BODY
    pool_size: int = 32
    session: requests.Session | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name, env, default in (
            ("api_base", "STEAM_API_BASE", DEFAULT_API_BASE),
            ("assets_base", "STEAM_ASSETS_BASE", DEFAULT_ASSETS_BASE),
            ("steamspy_base", "STEAMSPY_BASE", DEFAULT_STEAMSPY_BASE),
        ):
            value = getattr(self, name) or os.environ.get(env) or default
            setattr(self, name, value.rstrip("/"))
        if self.session is None:
            s = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.headers["User-Agent"] = USER_AGENT
            self.session = s

    def close(self) -> None:
        """Close the pooled connections (the object must not be used after)."""
        self.session.close()

    def with_pool(self, pool_size: int) -> SteamHttp:
        """A copy with its own session of ``pool_size`` connections per host."""
        return dataclasses.replace(self, pool_size=pool_size, session=None)

    def get(
        self,
        url: str,
        *,
        params: dict | None = None,
        secret: str | None = None,
        deadline: float | None = None,
        stop: threading.Event | None = None,
        max_bytes: int | None = None,
    ) -> requests.Response:
        """GET with retries; returns the last response (any status) with its body read.

        Retries 429/5xx (honouring Retry-After up to ``max_retry_after``), timeouts, resets and
        truncated bodies. Raises ``HttpError`` when no response came back after the retries.

        Args:
            url: the URL; ``params`` its query.
            secret: a value to redact from every message (the API key).
            deadline: seconds for the whole call, attempts and waits included: a server that
                sends a byte every few seconds never trips ``timeout`` (the gap between bytes),
                this stops it. None: no limit.
            stop: when set (Ctrl-C), the call gives up within a moment with ``HttpError``.
            max_bytes: the decoded body's cap (default ``max_body``): a larger one is an
                ``HttpError``, never retried, read no further.
        """
        if secret:
            install_log_filter()
        end = None if deadline is None else time.monotonic() + deadline
        # Our own loop, not urllib3's Retry on the adapter: Retry only sees failures before the
        # response is handed back, so a body that breaks halfway is not retried, and its sleeps
        # (Retry-After) cannot be bounded by ``deadline``. tests/test_net.py shows both against
        # the fake server and fails the day urllib3 covers them (it also shows what Retry does
        # cover: a 500, a reset before the headers). ``stop`` (Ctrl-C) cuts our waits short;
        # Retry's time.sleep cannot be (tests/test_hostile_io.py, test_ctrl_c_stops_download...).
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            cap = self.max_body if max_bytes is None else max_bytes
            r, failure = self._attempt(url, params, secret, (end, stop, cap), last)
            if failure is None and (r.status_code not in _RETRY_STATUS or last):
                return r
            wait = self._wait(None if failure else r, attempt)
            logger.debug("retrying in %.2fs after %s", wait, failure or f"HTTP {r.status_code}")
            if end is not None and time.monotonic() + wait > end:
                if failure is None:
                    return r  # no time for another attempt: the last answer stands
                raise HttpError(f"deadline: no whole response within {deadline:g} s ({failure})")
            if _pause(wait, stop):
                raise HttpError("cancelled")
        raise AssertionError("unreachable")

    def _attempt(self, url, params, secret, limits, last: bool):
        """One attempt: ``(response, None)``, or ``(None, why)`` for a failure worth retrying.
        ``limits`` is ``(end, stop, max_bytes)`` of ``_fetch``.

        Raises ``HttpError`` for one that is not (or on the ``last`` attempt)."""
        try:
            r = self._fetch(url, params, *limits)
            _check_length(r)
            return r, None
        except _Stopped as e:
            failure, final = str(e), True
        except (*_TRANSIENT, requests.RequestException) as e:
            failure = f"{_describe(e)}: {files.clip_text(redact(str(e), secret), 160)}"
            final = last or not isinstance(e, _TRANSIENT)
        if final:  # raised outside the except block, so no exception holding the URL is chained
            raise HttpError(failure)
        return None, failure

    def _wait(self, r: requests.Response | None, attempt: int) -> float:
        """Seconds before the next attempt: the backoff, or a 429/503's Retry-After (capped)."""
        after = None if r is None else _retry_after(r.headers.get("Retry-After"))
        if after is not None and r.status_code in (429, 503):
            return min(after, self.max_retry_after)
        return self.backoff * 2**attempt

    def _fetch(self, url, params, end, stop, max_bytes: int) -> requests.Response:
        """One attempt: headers, then the body a piece at a time so ``end``, ``stop`` and
        ``max_bytes`` are checked whenever bytes arrive (``read1`` returns what came, never
        waits to fill; urllib3 2 decodes at most ``amt`` bytes of gzip a call)."""
        timeout = self.timeout
        if end is not None:
            timeout = (self.timeout, max(0.05, min(self.timeout, end - time.monotonic())))
        r = self.session.get(url, params=params, timeout=timeout, stream=True)
        chunks, ok, size = [], False, 0
        try:
            while True:
                if stop is not None and stop.is_set():
                    raise _Stopped("cancelled")
                if end is not None and time.monotonic() > end:
                    raise _Stopped(
                        f"deadline: body not complete within the deadline ({url_path(url)})"
                    )
                try:
                    chunk = r.raw.read1(1 << 16, decode_content=True)
                except urllib3.exceptions.ReadTimeoutError as e:
                    raise requests.ReadTimeout(e) from None
                except urllib3.exceptions.DecodeError as e:
                    raise requests.exceptions.ContentDecodingError(e) from None
                except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as e:
                    raise requests.exceptions.ChunkedEncodingError(e) from None
                except OSError as e:
                    raise requests.ConnectionError(e) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise _Stopped(
                        f"body larger than {max_bytes:,} bytes once decoded ({url_path(url)})"
                    )
                chunks.append(chunk)
            ok = True
        finally:
            if ok:
                r.raw.release_conn()  # read to the end: the connection goes back to the pool
            else:
                r.close()  # half-read: the connection is not reusable
        r._content = b"".join(chunks)  # what requests' own .content would hold
        r._content_consumed = True
        return r

    @staticmethod
    def raise_for_status(r: requests.Response, *, secret: str | None = None) -> None:
        """Raise ``HttpError`` (key redacted) unless ``r`` succeeded."""
        if r.status_code >= 400:
            raise HttpError(f"HTTP {r.status_code} from {redact(r.url, secret)}")


def json_body(r: requests.Response, what: str):
    """The JSON of a response, whatever the server sent: ValueError naming ``what`` for a body
    that is not JSON, not UTF-8, or nested too deep for the parser (a RecursionError)."""
    try:
        return r.json()
    except (ValueError, RecursionError, UnicodeDecodeError) as e:  # JSONDecodeError: ValueError
        raise ValueError(
            f"{what} answered something else than its JSON ({type(e).__name__})"
        ) from None


class _ShortBody(Exception):
    pass


class _Stopped(Exception):
    """A deadline passed or Ctrl-C asked to stop: never retried."""


def url_path(url: str) -> str:
    """The URL without its query (which may hold the key)."""
    return url.split("?", 1)[0]


_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    _ShortBody,
)


def _describe(e: Exception) -> str:
    if isinstance(e, requests.Timeout):
        return "timeout"
    if isinstance(e, _ShortBody | requests.exceptions.ChunkedEncodingError):
        return "truncated body"
    if isinstance(e, requests.ConnectionError):
        return "connection error"
    return type(e).__name__


def _check_length(r: requests.Response) -> None:
    expected = r.headers.get("Content-Length")
    if expected and "Content-Encoding" not in r.headers and int(expected) != len(r.content):
        raise _ShortBody(f"body of {len(r.content)} bytes, Content-Length {expected}")
