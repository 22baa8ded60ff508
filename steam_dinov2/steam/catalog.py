"""Steam catalogue: app ids, names, banner URLs and store metadata, from Steam as it is now.

Sources of app ids (``list_apps(source)``):

* ``store``: ``IStoreService/GetAppList/v1``, needs a Web API key (``STEAM_API_KEY``).
* ``steamspy``: SteamSpy's ``api.php?request=all&page=N``, keyless, rate-limited.
* ``file:PATH``: app ids in a txt, json or csv file, optionally with names; this also reads the
  ``apps.json`` of the published July-2023 snapshot (a JSON list of app ids).

Banners live at ``{assets}/steam/apps/{app_id}/library_600x900.jpg`` for most apps; the rest keep
theirs behind a content hash that only ``IStoreBrowseService/GetItems/v1`` reveals.
"""

from __future__ import annotations

import json
import logging
import math
import time

import pandas as pd

from ..core.api_key import get_api_key
from ..core.app_file import read_app_file
from ..core.files import parse_app_id
from ..core.net import MAX_JSON_BODY, SteamHttp, json_body
from ..core.progress import tqdm

logger = logging.getLogger(__name__)

SOURCES = ("store", "steamspy", "file:PATH")
STORE_PAGE_MAX = 50_000  # IStoreService/GetAppList caps max_results at 50,000.
STEAMSPY_PAGE = 1_000  # SteamSpy's `all` request returns 1,000 apps a page.
# SteamSpy allows about one `all` request a minute (https://steamspy.com/api.php).
STEAMSPY_WAIT = 60.0
GETITEMS_BATCH = 50  # IStoreBrowseService/GetItems answers at most 50 ids at a time.
BANNER_NAME = "library_600x900.jpg"
STORE_KINDS = ("games", "dlc", "software", "videos", "hardware")
TAG_COUNT = 20  # top tags asked per app; the store page shows about this many
LABEL_COLUMNS = ("developers", "publishers", "franchises")  # of GetItems' basic_info
# Bounds on what one app may bring (the response is untrusted): far above any real store entry.
_MAX_LABELS = 32
MAX_LABEL_CHARS = 200
MAX_TAG_ID = 2**31 - 1  # tag ids are int32 in Steam's protobufs
MAX_TAG_WEIGHT = 1e9  # a tag's weight counts votes: tens of thousands on the most tagged games


def banner_url(app_id: int, *, http: SteamHttp | None = None) -> str:
    """Plain CDN URL of an app's 600x900 library banner (404 for apps with hashed art)."""
    http = http or SteamHttp()
    return f"{http.assets_base}/steam/apps/{parse_app_id(app_id)}/{BANNER_NAME}"


def list_apps(
    source: str = "store",
    *,
    limit: int | None = None,
    api_key: str | None = None,
    include: tuple[str, ...] = ("games",),
    steamspy_wait: float = STEAMSPY_WAIT,
    http: SteamHttp | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """List Steam apps from one source.

    Args:
        source: ``"store"``, ``"steamspy"`` or ``"file:PATH"``.
        limit: keep at most this many apps (the first ones the source gives).
        api_key: Steam Web API key for ``store``; defaults to ``STEAM_API_KEY`` or the Colab secret.
        include: kinds of app for ``store``, among ``STORE_KINDS``; games only by default.
        steamspy_wait: seconds between two SteamSpy pages (its rate limit); small in tests.
        http: HTTP settings and session; defaults read the ``STEAM_*_BASE`` variables.
        progress: show a tqdm bar.

    Returns:
        DataFrame with columns ``app_id`` (int64, unique, in source order) and ``name`` (str,
        ``""`` when the source gives none).
    """
    http = http or SteamHttp()
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    low = source.strip().lower()
    if low == "store":
        apps = _list_store(api_key or get_api_key(), include, limit, http, progress)
    elif low == "steamspy":
        apps = _list_steamspy(limit, steamspy_wait, http, progress)
    elif low.startswith("file:"):
        apps = read_app_file(source.strip()[5:])
    elif low in ("v2", "isteamapps", "isteamapps/getapplist/v2", "getapplist/v2"):
        raise ValueError(
            "ISteamApps/GetAppList/v2 was removed by Valve in November 2025; use --source store "
            "(IStoreService/GetAppList/v1 with STEAM_API_KEY), steamspy (no key) or file:PATH"
        )
    else:
        raise ValueError(f"unknown source {source!r}; available: {', '.join(SOURCES)}")
    df = pd.DataFrame(apps, columns=["app_id", "name"]).drop_duplicates("app_id")
    df = df.astype({"app_id": "int64"}).reset_index(drop=True)
    df["name"] = df["name"].fillna("").astype(str)
    return df.head(limit) if limit else df


def _checked_ids(pairs, source: str) -> list[tuple[int, str]]:
    """Drop (and log) entries of a network source whose id is not an app id."""
    out, bad = [], []
    for app_id, name in pairs:
        try:
            out.append((parse_app_id(app_id), str(name or "")))
        except ValueError:
            bad.append(app_id)
    if bad:
        logger.warning("%s: skipped %d entries that are not app ids: %r", source, len(bad), bad[:5])
    return out


def _list_store(key, include, limit, http: SteamHttp, progress) -> list[tuple[int, str]]:
    if not key:
        raise ValueError(
            "source 'store' needs a Steam Web API key: set STEAM_API_KEY (or the Colab secret of "
            "that name), or use --source steamspy or file:PATH"
        )
    bad = sorted(set(include) - set(STORE_KINDS))
    if bad:
        raise ValueError(f"unknown app kinds {bad}; available: {', '.join(STORE_KINDS)}")
    url = f"{http.api_base}/IStoreService/GetAppList/v1/"
    params: dict = {f"include_{k}": str(k in include).lower() for k in STORE_KINDS}
    apps: list[tuple[int, str]] = []
    last = 0
    with tqdm(desc="store app list", unit="app", disable=not progress) as bar:
        while True:
            page = STORE_PAGE_MAX if limit is None else min(STORE_PAGE_MAX, limit - len(apps))
            p = dict(params, key=key, max_results=page, last_appid=last)
            r = http.get(url, params=p, secret=key)
            if r.status_code in (401, 403):
                raise ValueError(f"the Steam Web API rejected the key (HTTP {r.status_code})")
            http.raise_for_status(r, secret=key)
            body = r.json().get("response", {})
            got = [(a.get("appid"), a.get("name", "")) for a in body.get("apps", [])]
            got = _checked_ids(got, "IStoreService/GetAppList")
            apps += got
            bar.update(len(got))
            if not got or not body.get("have_more_results") or (limit and len(apps) >= limit):
                return apps
            last = parse_app_id(body.get("last_appid", got[-1][0]), "GetAppList last_appid")


def _list_steamspy(limit, wait, http: SteamHttp, progress) -> list[tuple[int, str]]:
    url = f"{http.steamspy_base}/api.php"
    apps: list[tuple[int, str]] = []
    with tqdm(desc="steamspy app list", unit="app", disable=not progress) as bar:
        for page in range(10_000):
            if page:
                _wait_with_bar(bar, wait)
            r = http.get(url, params={"request": "all", "page": page})
            http.raise_for_status(r)
            data = r.json() or {}
            got = [(v.get("appid", k), v.get("name") or "") for k, v in data.items()]
            got = _checked_ids(got, "SteamSpy")
            apps += got
            bar.update(len(got))
            if len(got) < STEAMSPY_PAGE or (limit and len(apps) >= limit):
                break
    return apps


def _wait_with_bar(bar, seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        bar.set_postfix_str(f"SteamSpy rate limit: waiting {left:.0f}s")
        time.sleep(min(1.0, left))
    bar.set_postfix_str("")


def fetch_store_items(
    app_ids,
    *,
    language: str = "english",
    country: str = "US",
    http: SteamHttp | None = None,
) -> dict[int, dict]:
    """Ask the keyless ``IStoreBrowseService/GetItems/v1`` for names and banner URLs.

    Args:
        app_ids: app ids, sent in batches of ``GETITEMS_BATCH``.
        language: store language of the names.
        country: two-letter country code of the store.
        http: HTTP settings and session.

    Returns:
        ``{app_id: {"name": str, "banner_url": str | None}}`` for every app the store knows;
        ``banner_url`` is None when the app has no library capsule.
    """
    http = http or SteamHttp()
    ids = [parse_app_id(a) for a in app_ids]
    out: dict[int, dict] = {}
    for i in range(0, len(ids), GETITEMS_BATCH):
        out.update(_get_items_batch(ids[i : i + GETITEMS_BATCH], language, country, http))
    return out


def _get_items_batch(ids, language, country, http: SteamHttp) -> dict[int, dict]:
    query = {
        "ids": [{"appid": a} for a in ids],
        "context": {"language": language, "country_code": country, "steam_realm": 1},
        "data_request": {"include_assets": True},
    }
    out = {}
    for item in _store_items(query, http):
        app_id = item.get("appid", item.get("id"))
        if app_id is None or item.get("success", 1) != 1:
            continue
        try:
            app_id = parse_app_id(app_id)
        except ValueError:
            logger.warning("GetItems: skipped an item whose id is not an app id: %r", app_id)
            continue
        name = item.get("name")
        assets = item.get("assets")
        out[app_id] = {
            "name": name[:MAX_LABEL_CHARS] if isinstance(name, str) else "",
            "banner_url": _capsule_url(assets if isinstance(assets, dict) else {}, http),
        }
    return out


def _store_items(query: dict, http: SteamHttp) -> list[dict]:
    """The ``store_items`` of one GetItems call, each a dict (anything else dropped).

    The answer is untrusted like a banner: the call has the banner's total deadline, the body a
    cap once decoded (``MAX_JSON_BODY``); ``HttpError`` or ValueError when it fails or is not
    GetItems' JSON (a body nested 200,000 deep included)."""
    url = f"{http.api_base}/IStoreBrowseService/GetItems/v1/"
    params = {"input_json": json.dumps(query, separators=(",", ":"))}
    r = http.get(url, params=params, deadline=http.deadline, max_bytes=MAX_JSON_BODY)
    http.raise_for_status(r)
    body = json_body(r, "GetItems")
    response = body.get("response") if isinstance(body, dict) else None
    if not isinstance(response, dict):
        raise ValueError("GetItems answered something else than its JSON (no response)")
    items = response.get("store_items", [])
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _capsule_url(assets: dict, http: SteamHttp) -> str | None:
    """``asset_url_format`` (``steam/apps/{id}/${FILENAME}?t=...``, relative to
    ``store_item_assets/``) with the library capsule's file name substituted, ``?t=`` kept."""
    fmt, name = assets.get("asset_url_format"), assets.get("library_capsule")
    if not isinstance(fmt, str) or not isinstance(name, str) or not fmt or not name:
        return None
    return f"{http.assets_base}/{fmt.replace('${FILENAME}', name).lstrip('/')}"


def fetch_store_metadata(ids: list[int], http: SteamHttp) -> tuple[list[dict], list[int]]:
    """One GetItems batch (at most ``GETITEMS_BATCH`` ids) with ``include_basic_info`` and the top
    ``TAG_COUNT`` tags: ``(rows, ids the store says it does not know)``, rows as
    ``store_metadata_row``. Raises ``HttpError`` or ValueError when the answer is not GetItems'."""
    query = {
        "ids": [{"appid": a} for a in ids],
        "context": {"language": "english", "country_code": "US", "steam_realm": 1},
        "data_request": {"include_basic_info": True, "include_tag_count": TAG_COUNT},
    }
    wanted, rows, unknown = set(ids), {}, set()
    for item in _store_items(query, http):
        app_id = item.get("appid", item.get("id"))
        if not _is_int(app_id) or app_id not in wanted:  # True == 1: a bool is no app id
            continue
        if item.get("success", 1) == 1:
            rows[app_id] = store_metadata_row(app_id, item)
        else:
            unknown.add(app_id)
    return list(rows.values()), sorted(unknown - rows.keys())


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tag_weight(value) -> float | None:
    """A tag's weight as a float in 0..``MAX_TAG_WEIGHT``; None for anything else (a bool,
    NaN, infinity, a negative number or ``10**400``, which no float holds)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not 0 <= value <= MAX_TAG_WEIGHT:  # before float(): overflow
        return None
    weight = float(value)
    return weight if math.isfinite(weight) and 0 <= weight <= MAX_TAG_WEIGHT else None


def store_metadata_row(app_id: int, item: dict) -> dict:
    """``app_id``, ``LABEL_COLUMNS`` (lists of str) and ``tagids``/``tag_weights`` (heaviest
    first) of one GetItems item; anything missing or malformed is left empty, and a tag whose
    id or weight is not one (``_tag_weight``) is left out."""
    info = item.get("basic_info")
    info = info if isinstance(info, dict) else {}
    row = {"app_id": int(app_id)}
    for col in LABEL_COLUMNS:
        row[col] = _label_names(info.get(col))
    tags = item.get("tags")
    pairs = []
    for t in tags[: TAG_COUNT * 4] if isinstance(tags, list) else []:
        tagid = t.get("tagid") if isinstance(t, dict) else None
        weight = _tag_weight(t.get("weight", 0)) if isinstance(t, dict) else None
        if _is_int(tagid) and 0 <= tagid <= MAX_TAG_ID and weight is not None:
            pairs.append((tagid, weight))
    pairs = sorted(dict(pairs).items(), key=lambda p: -p[1])[:TAG_COUNT]
    row["tagids"] = [t for t, _ in pairs]
    row["tag_weights"] = [w for _, w in pairs]
    return row


def _label_names(entries) -> list[str]:
    """Names of ``[{name, creator_clan_account_id}, ...]``, stripped, unique, bounded."""
    out = []
    for e in entries if isinstance(entries, list) else []:
        name = e.get("name") if isinstance(e, dict) else None
        if isinstance(name, str) and name.strip():
            out.append(name.strip()[:MAX_LABEL_CHARS])
    return list(dict.fromkeys(out))[:_MAX_LABELS]
