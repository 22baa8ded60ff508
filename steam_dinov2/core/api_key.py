"""The Steam Web API key: where it comes from, and kept out of every message and log line."""

from __future__ import annotations

import logging
import os
import re
import threading

_KEY_RE = re.compile(r"(key=)[^&\s'\"]+", re.IGNORECASE)


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


def install_log_filter() -> None:
    """Redact keys from urllib3's connection log, once per process."""
    # urllib3 logs "GET /path?query" at DEBUG; keep the key out of whatever handler listens.
    with _filter_lock:
        urllib3_logger = logging.getLogger("urllib3.connectionpool")
        if not any(isinstance(f, _RedactKeys) for f in urllib3_logger.filters):
            urllib3_logger.addFilter(_RedactKeys())
