"""One pooled HTTP session with timeouts, retries, backoff and Retry-After, for Steam's hosts.

The Steam Web API key travels as a query parameter, so every message that could carry a URL
(exceptions, urllib3's debug log) is redacted before it leaves this module.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import os
import re
import threading
import time

import requests
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.steampowered.com"
DEFAULT_ASSETS_BASE = "https://shared.akamai.steamstatic.com/store_item_assets"
DEFAULT_STEAMSPY_BASE = "https://steamspy.com"
USER_AGENT = "steam-dinov2 (banner similarity research; polite concurrent downloader)"
_KEY_RE = re.compile(r"(key=)[^&\s'\"]+", re.IGNORECASE)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class HttpError(RuntimeError):
    """A request that failed after its retries; the message never holds the API key."""


def get_api_key() -> str | None:
    """The Steam Web API key from ``STEAM_API_KEY``, else from the Colab secret of that name."""
    key = os.environ.get("STEAM_API_KEY")
    if key:
        return key.strip()
    try:  # Colab keeps secrets in userdata; anywhere else this import fails.
        from google.colab import userdata  # type: ignore[import-not-found]

        return (userdata.get("STEAM_API_KEY") or "").strip() or None
    except Exception:
        return None


def redact(text: str, secret: str | None = None) -> str:
    """``text`` with ``key=...`` query values and ``secret`` replaced by ``***``."""
    text = _KEY_RE.sub(r"\1***", str(text))
    return text.replace(secret, "***") if secret else text


class _RedactKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        record.msg = redact(record.msg) if isinstance(record.msg, str) else record.msg
        return True


_filter_lock = threading.Lock()


def _install_log_filter() -> None:
    # urllib3 logs "GET /path?query" at DEBUG; keep the key out of whatever handler listens.
    with _filter_lock:
        log = logging.getLogger("urllib3.connectionpool")
        if not any(isinstance(f, _RedactKeys) for f in log.filters):
            log.addFilter(_RedactKeys())


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


@dataclasses.dataclass(frozen=True)
class SteamHttp:
    """Base URLs and retry policy shared by every request to Steam, with one pooled session.

    Bases left as None come from ``STEAM_API_BASE``, ``STEAM_ASSETS_BASE``, ``STEAMSPY_BASE``,
    then the public defaults. Tests point them at 127.0.0.1 and shrink the waits.

    Attributes:
        api_base: Steam Web API root.
        assets_base: CDN root that ``store_item_assets`` paths hang from.
        steamspy_base: SteamSpy root.
        timeout: seconds to connect and between bytes of a response.
        retries: extra attempts on 5xx, 429 and connection errors.
        backoff: first wait in seconds, doubled at each retry.
        max_retry_after: cap in seconds on a server's Retry-After.
        pool_size: connections kept per host (set it to the number of threads).
    """

    api_base: str | None = None
    assets_base: str | None = None
    steamspy_base: str | None = None
    timeout: float = 20.0
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 120.0
    pool_size: int = 32
    session: requests.Session = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name, env, default in (
            ("api_base", "STEAM_API_BASE", DEFAULT_API_BASE),
            ("assets_base", "STEAM_ASSETS_BASE", DEFAULT_ASSETS_BASE),
            ("steamspy_base", "STEAMSPY_BASE", DEFAULT_STEAMSPY_BASE),
        ):
            value = getattr(self, name) or os.environ.get(env) or default
            object.__setattr__(self, name, value.rstrip("/"))
        if self.session is None:
            s = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.headers["User-Agent"] = USER_AGENT
            object.__setattr__(self, "session", s)

    def close(self) -> None:
        """Close the pooled connections (the object must not be used after)."""
        self.session.close()

    def with_pool(self, pool_size: int) -> SteamHttp:
        """A copy with its own session of ``pool_size`` connections per host."""
        return dataclasses.replace(self, pool_size=pool_size, session=None)

    def get(
        self, url: str, *, params: dict | None = None, secret: str | None = None
    ) -> requests.Response:
        """GET with retries; returns the last response (any status) with its body read.

        Retries 429/5xx (honouring Retry-After up to ``max_retry_after``), timeouts, resets and
        truncated bodies. Raises ``HttpError`` when no response came back after the retries.
        """
        if secret:
            _install_log_filter()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            wait = self.backoff * 2**attempt
            failure = None
            try:
                r = self.session.get(url, params=params, timeout=self.timeout)
                _ = r.content  # read the body now, so a truncated one fails here
                _check_length(r)
            except (*_TRANSIENT, requests.RequestException) as e:
                failure = f"{_describe(e)}: {redact(str(e), secret)[:160]}"
                final = last or not isinstance(e, _TRANSIENT)
            if failure is not None:
                # Raised outside the except block so no exception holding the URL is chained.
                if final:
                    raise HttpError(failure)
                logger.debug("retrying after %s", failure)
            else:
                if r.status_code not in _RETRY_STATUS or last:
                    return r
                after = _retry_after(r.headers.get("Retry-After"))
                if after is not None and r.status_code in (429, 503):
                    wait = min(after, self.max_retry_after)
                logger.debug("HTTP %s, retrying in %.2fs", r.status_code, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def raise_for_status(r: requests.Response, *, secret: str | None = None) -> None:
        """Raise ``HttpError`` (key redacted) unless ``r`` succeeded."""
        if r.status_code >= 400:
            raise HttpError(f"HTTP {r.status_code} from {redact(r.url, secret)}")


class _ShortBody(Exception):
    pass


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
