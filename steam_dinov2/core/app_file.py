"""App lists from a file: the ``file:PATH`` source of ``list_apps`` and the July-2023 snapshot's
``apps.json``. Every id is checked (``files.parse_app_id``); a bad one is named with its line."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .files import parse_app_id

MAX_APP_FILE_BYTES = 256 << 20  # Steam's whole catalogue with names is ~20 MB as json


def read_app_file(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Read ``(app_id, name)`` pairs from a txt (one id a line, optional name after a tab or
    comma), json (list of ids, list of objects with ``appid``/``app_id``, or ``{id: name}``)
    or csv file (an ``app_id`` column, optional ``name``).

    Raises:
        ValueError: naming the file and the line (the entry, for json that is not a plain list)
            of the first thing that is not an app id (see ``files.parse_app_id``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"app list file not found: {path}")
    if path.stat().st_size > MAX_APP_FILE_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes is too big for an app list")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {e.start}); expected a txt, csv or json app list"
        ) from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _apps_from_json(text, path)
    if suffix == ".csv":
        return _apps_from_csv(text, path)
    apps = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, _, name = line.replace("\t", ",").partition(",")
        if lineno == 1 and head.strip().lower() in ("app_id", "appid"):
            continue  # a header line
        apps.append((parse_app_id(head, f"{path}:{lineno}"), name.strip()))
    return apps


def _apps_from_csv(text: str, path: Path) -> list[tuple[int, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    out = []
    try:
        fields = reader.fieldnames or []
        col = next((c for c in ("app_id", "appid") if c in fields), None)
        if col is None:
            raise ValueError(f"{path}: a csv app list needs an 'app_id' column")
        for r in reader:
            where = f"{path}:{reader.line_num}"
            out.append((parse_app_id(r[col] or "", where), str(r.get("name") or "")))
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: not a csv app list ({e})") from None
    return out


def _apps_from_json(text: str, path: Path) -> list[tuple[int, str]]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: not an app list ({type(e).__name__}: {e})") from None
    top_list = isinstance(data, list)
    if isinstance(data, dict):
        data = data.get("apps", data.get("applist", data))
    if isinstance(data, dict):  # {id: name} or SteamSpy's {id: {appid, name, ...}}
        data = [
            v | {"appid": v.get("appid", k)} if isinstance(v, dict) else {"appid": k, "name": v}
            for k, v in data.items()
        ]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of app ids or of objects with 'appid'")
    out = []
    for i, item in enumerate(data):
        where = f"{path}:{_json_line(text, i)}" if top_list else f"{path}: entry {i + 1}"
        if isinstance(item, dict):
            value = item.get("app_id", item.get("appid"))
            out.append((parse_app_id(value, where), str(item.get("name") or "")))
        else:
            out.append((parse_app_id(item, where), ""))
    return out


def _json_line(text: str, index: int) -> int:
    """Line of the ``index``-th element of the JSON list ``text`` (already known to parse)."""
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    for i in range(index + 1):
        pos = len(text) - len(text[pos:].lstrip(" \t\r\n,"))
        if i == index:
            break
        pos = decoder.raw_decode(text, pos)[1]
    return text.count("\n", 0, pos) + 1
