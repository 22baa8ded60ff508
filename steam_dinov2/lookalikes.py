"""Look-alikes across studios: pairs of games whose banners are closest, made by different people.

A pair is reported when each banner is among the other's ``k`` closest banners from *other
studios* (mutual top-k, cosine of one setting's embeddings) and the two games share no developer,
publisher or franchise (``metadata.parquet``). Mutual top-k rather than a cosine threshold: the
scale of cosines differs from model to model (random weights put everything above 0.9, DINOv2
spreads them out) and from one corner of the catalogue to another, so one threshold would be
wrong for most settings; a mutual pair is close *relative to both games' other choices*, and a
generic banner that is everyone's neighbour (a dark logo on black) is not everyone's mutual one.

A look-alike is not evidence of copying: banners of one genre share palettes, layouts and stock
art. The report says where to look; ``plot_match_explained`` shows which parts match.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os

import numpy as np
import pandas as pd

from .audit.audit import load_exclusions
from .core import files, layout
from .core.manifest import load_names, read_manifest
from .embedding.embed import load_embeddings
from .embedding.setting import Setting, as_setting
from .search import BLOCK, check_k, search_vectors
from .steam.metadata import labels_of, read_metadata, read_tag_names

logger = logging.getLogger(__name__)

LOOKALIKE_K = 5
COLUMNS = ("rank", "id_a", "id_b", "score", "name_a", "name_b", "studio_a", "studio_b")
_FIRST_DEPTH = 4  # neighbours looked at per wanted one before a deeper search (same-studio ones)
# Results per search call (queries x depth): a deep search (up to every row) asks fewer queries
# at once, so its buffers stay ~50 MB whatever N is.
_RESULTS = 1 << 22


def find_lookalikes(
    data: str | os.PathLike,
    setting: Setting | str | None = None,
    *,
    k: int = LOOKALIKE_K,
    games=None,
    since=None,
    include_excluded: bool = False,
    write: bool = True,
) -> pd.DataFrame:
    """Pairs of games from different studios whose banners are mutual top-k neighbours, ranked.

    Two games are "from different studios" when their developers, publishers and franchises
    (compared case-blind) have nothing in common. Games without a developer or publisher in
    ``metadata.parquet`` (own images, apps the store does not know, or no ``metadata`` run) are
    left out: nothing says who made them. Audit exclusions apply (dark, blank, unreadable
    banners all look alike), except the duplicate kinds: a near duplicate is what this looks for.

    Args:
        data: the data folder (embeddings of ``setting``, manifest, metadata).
        setting: a ``Setting``, its name or ``model:preset:pooling`` (``as_setting``).
        k: how many other-studio neighbours of each game may pair with it (at least 1).
        games: app ids; only pairs involving one of them (a studio watching its own games).
        since: a date (``"2026-12-01"``, datetime or Timestamp, UTC unless it says otherwise);
            only pairs involving a game first seen in the manifest at or after it.
        include_excluded: ignore the audit's exclusion list.
        write: also write the table to ``DATA/lookalikes/<setting>.parquet``.

    Returns:
        DataFrame ``COLUMNS``, best first: ``rank`` from 1; ``id_a`` the game asked about (with
        ``games`` or ``since``; else the lower id) and ``id_b`` its look-alike (int64);
        ``score`` float32 cosine; names; ``studio_*`` "developers (publishers)" for display,
        the publishers only where they differ from the developers.

    Raises:
        ValueError: bad ``k``, ``since`` or id; a game of ``games`` not in the embeddings; no
            embeddings for ``setting``; a damaged manifest or metadata table.
    """
    check_k(k)
    setting = as_setting(setting)
    emb = load_embeddings(data, setting)
    cutoff = _parse_since(since)
    wanted = _wanted(data, emb.ids, games, cutoff)
    exclude = {} if include_excluded else _quality_exclusions(data)
    key = {
        **emb.made_from(),
        "k": int(k),
        "games": sorted(wanted) if games is not None else None,
        "since": None if cutoff is None else cutoff.isoformat(),
        "excluded": sorted(exclude),
        "inputs_sha256": _inputs_digest(data),
    }
    path = layout.lookalikes_path(data, emb.setting)
    if (stored := files.read_keyed_parquet(path, key)) is not None:
        try:
            stored = _checked(path, stored)
            if not {*stored["id_a"].tolist(), *stored["id_b"].tolist()} <= set(emb.ids):
                raise ValueError(f"{path} lists games that are not in the embeddings")
            return stored  # made from these very inputs: nothing to search
        except ValueError as e:
            logger.warning("%s; searching again", e)
    labels = labels_of(read_metadata(data), read_tag_names(data))
    studios = {a: g.makers | g.franchises for a, g in labels.items() if g.makers}
    rows = [r for r, i in enumerate(emb.ids) if i in studios and i not in exclude]
    if unknown := sum(i not in studios for i in emb.ids):
        logger.info("lookalikes: %d games without a known developer or publisher left out", unknown)
    table = _mutual_pairs(emb, rows, studios, wanted, k)
    names = load_names(data)
    table["name_a"] = [names.get(i, "") for i in table["id_a"]]
    table["name_b"] = [names.get(i, "") for i in table["id_b"]]
    table["studio_a"] = [labels[i].studio for i in table["id_a"]]
    table["studio_b"] = [labels[i].studio for i in table["id_b"]]
    table = table[list(COLUMNS)]
    if write:
        files.write_keyed_parquet(path, table, key)
    return table


def _inputs_digest(data) -> str:
    """SHA-256 over the manifest, metadata and tag names files: the names, studios and first-seen
    dates a look-alike table was made from (a few MB at catalogue scale)."""
    digest = hashlib.sha256()
    for path in (
        layout.manifest_path(data),
        layout.metadata_path(data),
        layout.tag_names_path(data),
    ):
        digest.update(path.name.encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def read_lookalikes(data: str | os.PathLike, setting: Setting | str | None = None):
    """The table ``find_lookalikes`` last wrote for ``setting``, or None when there is none.

    Raises:
        ValueError: the file is not a look-alike table (damaged or not ours).
    """
    path = layout.lookalikes_path(data, as_setting(setting).name)
    if not path.is_file():
        return None
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"{path} is not a look-alike table ({str(e)[:160]}); run `lookalikes` again"
        ) from None
    return _checked(path, table)


def _checked(path, table: pd.DataFrame) -> pd.DataFrame:
    """A look-alike table read from ``path``, checked: ``COLUMNS``, int64 ids that are ids,
    strings for text; ValueError naming the file and the fix otherwise."""
    try:
        if missing := set(COLUMNS) - set(table.columns):
            raise ValueError(f"columns {sorted(missing)} missing")
        table = table[list(COLUMNS)].astype({"id_a": "int64", "id_b": "int64", "score": "float32"})
        for col in ("id_a", "id_b"):
            for i in table[col].tolist():
                files.parse_image_id(i, col)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"{path} is not a look-alike table ({str(e)[:160]}); run `lookalikes` again"
        ) from None
    for col in ("name_a", "name_b", "studio_a", "studio_b"):
        table[col] = table[col].fillna("").astype(str)
    return table


def _parse_since(since) -> pd.Timestamp | None:
    if since is None:
        return None
    try:
        when = pd.Timestamp(since)
    except (ValueError, TypeError):
        when = pd.NaT
    if not isinstance(since, (str, datetime.date, pd.Timestamp)) or pd.isna(when):
        raise ValueError(f"since must be a date such as 2026-12-01, got {since!r}")
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def new_games(data: str | os.PathLike, since) -> list[int]:
    """The app ids the manifest first saw at or after ``since`` (a date, see ``find_lookalikes``),
    sorted."""
    cutoff = _parse_since(since)
    manifest = read_manifest(data)
    return sorted(manifest.loc[manifest["first_seen"] >= cutoff, "app_id"].tolist())


def _wanted(data, ids: list[int], games, cutoff) -> set[int] | None:
    """The games pairs must involve (None: all), checked against the embeddings' ``ids``."""
    if games is None and cutoff is None:
        return None
    wanted = set(ids)
    if games is not None:
        asked = [files.parse_image_id(g, "games") for g in games]
        if missing := sorted(set(asked) - wanted):
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise ValueError(
                f"games not in the embeddings ({len(ids)} images): {shown}; "
                "download and embed them first"
            )
        wanted = set(asked)
    if cutoff is not None:
        wanted &= set(new_games(data, cutoff))
    return wanted


def _quality_exclusions(data) -> set[int]:
    """Excluded ids whose reasons are not all "…_duplicate_of:…" (dark, blank, unreadable)."""
    return {
        i
        for i, reasons in load_exclusions(data).items()
        if not all("_duplicate_of:" in r for r in reasons)
    }


def _mutual_pairs(emb, rows: list[int], studios: dict, wanted, k: int) -> pd.DataFrame:
    """The mutual other-studio top-k pairs among ``rows`` of ``emb`` involving ``wanted``."""
    if len(rows) < 2:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in ("id_a", "id_b")}).assign(
            score=pd.Series(dtype="float32"), rank=pd.Series(dtype="int64")
        )
    rows = np.asarray(rows, np.int64)
    ids = np.asarray(emb.ids, np.int64)[rows]
    label = [studios[int(i)] for i in ids]
    vectors = emb.vectors[rows]
    queries = [p for p, i in enumerate(ids) if wanted is None or int(i) in wanted]
    top = _other_studio_top(vectors, label, queries, k)
    partners = sorted({n for q in queries for n, _ in top[q]} - top.keys())
    top |= _other_studio_top(vectors, label, partners, k)
    pairs = {}
    for q in queries:
        for n, score in top[q]:
            if any(m == q for m, _ in top[n]):
                a, b = sorted((int(ids[q]), int(ids[n])))
                if wanted is not None and a not in wanted:
                    a, b = b, a  # the game asked about first
                pairs.setdefault(frozenset((a, b)), (a, b, score))
    table = pd.DataFrame(list(pairs.values()), columns=["id_a", "id_b", "score"]).astype(
        {"id_a": "int64", "id_b": "int64", "score": "float32"}
    )
    table = table.sort_values(["score", "id_a", "id_b"], ascending=[False, True, True])
    return table.reset_index(drop=True).assign(rank=np.arange(1, len(table) + 1))


def _other_studio_top(vectors, label, queries: list[int], k: int) -> dict[int, list]:
    """``{row: [(row, cosine), ...]}``: each query's ``k`` nearest rows sharing no studio name
    with it, best first. Exact: a query whose first ``depth`` neighbours hold fewer than ``k``
    such rows is searched again four times deeper, up to every row."""
    n = len(vectors)
    depth, top, todo = min(n - 1, k * _FIRST_DEPTH + 16), {}, list(queries)
    while todo:
        again = []
        step = max(1, min(BLOCK, _RESULTS // depth))  # bounded result buffers
        for start in range(0, len(todo), step):
            block = todo[start : start + step]
            scores, hits = search_vectors(vectors, vectors[block], k=depth, self_rows=block)
            again += _keep_top(block, scores, hits, label, k, top, last=depth >= n - 1)
        todo, depth = again, min(n - 1, depth * 4)
    return top


def _keep_top(block, scores, hits, label, k: int, top: dict, *, last: bool) -> list[int]:
    """Put into ``top`` the queries of ``block`` with ``k`` other-studio hits (or all there are,
    when ``last``); returns the others, to search deeper."""
    again = []
    for q, row_scores, row_hits in zip(block, scores, hits):
        mine = label[q]
        kept = [
            (int(h), float(s))
            for h, s in zip(row_hits, row_scores)
            if h >= 0 and not (label[h] & mine)
        ]
        if len(kept) >= k or last:
            top[q] = kept[:k]
        else:
            again.append(q)
    return again
