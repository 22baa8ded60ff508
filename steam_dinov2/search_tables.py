"""Match tables on disk: ``neighbors.parquet`` stamped with what it was made from, and
``neighbors.json`` for serving a web page without pandas."""

from __future__ import annotations

import hashlib
import json
import os

import pandas as pd

from .core import files, layout
from .embedding.setting import Setting, setting_of


def write_matches(data: str | os.PathLike, emb, table: pd.DataFrame, exclude=()) -> None:
    """Write ``match_all``'s table to ``matches/<setting>/neighbors.parquet`` (atomically), with
    ``matches_made_from`` in its schema metadata so a reader can tell when it has gone stale."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    made_from = json.dumps(matches_made_from(emb, exclude)).encode()
    arrow = arrow.replace_schema_metadata({**arrow.schema.metadata, MADE_FROM: made_from})
    with files.atomic_path(layout.neighbors_path(data, emb.setting)) as tmp:
        pq.write_table(arrow, tmp)


MADE_FROM = b"steam_dinov2.made_from"


def matches_made_from(emb, exclude=()) -> dict:
    """The cache generation, the rows left out of it and the exclusion list a match table is
    computed from."""
    excluded = ",".join(sorted({str(e) for e in exclude}))
    return {**emb.made_from(), "excluded_sha256": hashlib.sha256(excluded.encode()).hexdigest()}


def read_matches_made_from(path) -> dict | None:
    """``matches_made_from`` as written into a neighbors.parquet, or None for an older file."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[MADE_FROM]) if MADE_FROM in meta else None


def export_matches(
    data: str | os.PathLike, setting: str | Setting, *, names: dict[str, str] | None = None
):
    """Write the match table for serving: ``neighbors.json`` beside ``neighbors.parquet``.

    The JSON maps each query id to its neighbours best first, ``[{"id", "name", "score"}, ...]``
    (scores rounded to 4 decimals), so a web page can look a game up without pandas.

    Returns:
        ``(parquet_path, json_path)``.
    """
    setting = setting_of(setting)
    path = layout.neighbors_path(data, setting)
    if not path.is_file():
        raise ValueError(f"no matches for setting {setting!r}: run `match` first")
    table = pd.read_parquet(path).sort_values(["query_id", "rank"])
    names = names or {}
    out = {
        q: [
            {"id": i, "name": names.get(i, ""), "score": round(float(s), 4)}
            for i, s in zip(g["id"], g["score"])
        ]
        for q, g in table.groupby("query_id", sort=False)
    }
    json_path = layout.neighbors_json_path(data, setting)
    files.write_text_atomic(json_path, json.dumps(out, ensure_ascii=False))
    return path, json_path
