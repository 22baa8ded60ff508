"""A static gallery of one setting that anyone can open: no Python, no server code.

``export_site`` writes::

    OUT/index.html  app.js  style.css     the page (assets/site/ in the package)
    OUT/data/games.json                   ids, names, map positions and clusters, one array each
    OUT/data/neighbors-{shard}.json       k neighbours (rows into games.json) and cosines, by shard
    OUT/data/thumbs.json                  the content hash of each thumbnail's banner
    OUT/lookalikes.html  lookalikes.js    look-alikes from other studios (``pairs``), linked from
    OUT/data/lookalikes.json              index.html: pairs as rows into games.json, cosine, studios
    OUT/thumbs/{row // 1000}/{row}.webp   thumbnails (whole, at most 150x225 px), loaded lazily

A re-export into the same folder encodes only the thumbnails whose banner changed: a thumbnail of
the previous export whose banner has the same content hash (``data/thumbs.json``) is hard-linked
(or copied) into the new one, whatever its row was.

Thumbnails and shards are named by row number, never by anything read from the data folder, so a
hostile id cannot reach a path. Names travel as JSON and are put into the page with
``textContent`` only. The folder works from any static file server (GitHub Pages, http.server).

``OUT`` may hold other things (a GitHub Pages checkout: ``.git``, ``CNAME``, notes): export-site
only ever replaces or removes the files its own record ``OUT/.export-site.json`` lists, and only
names of the shapes above, so neither a forged record nor a stray ``data/games.json`` can make it
delete anything else. A file of ours that exists but is not in the record is refused, not
overwritten. The new site is written into a staging folder inside ``OUT``, then moved in a file
at a time (renames on one filesystem); the record lists old and new files while that happens, so
a kill at any moment leaves only recorded files and a staging folder that the next run removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audit.audit import load_exclusions
from ..core import files
from ..core.codec import check_pixels, to_rgb
from ..core.manifest import load_names
from ..core.progress import tqdm
from ..embedding.embed import images_of, load_embeddings
from ..embedding.setting import Setting, checked_name
from ..search import check_k, match_all, stored_matches, write_matches
from ..steam.metadata import read_metadata
from .map import cluster_colours, describe_clusters, map_catalog
from .pairs import lookalikes_for_site

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets" / "site"
THUMB_WIDTH = 150  # px: two columns of tiles on a phone, six on a laptop
THUMB_HEIGHT = 225  # px: a Steam banner's 2:3; other shapes fit inside, whole (never cropped)
THUMB_QUALITY = 70  # WebP quality: ~5 KB a banner, so 30,000 fit in ~150 MB
# WebP encoder effort: 2 costs 0.64 of the default 4's CPU for ~8% more bytes (4.5 vs 7.0 ms a
# 256x384 banner, 2.8 vs 2.6 kB; benchmarks/README.md): at 150,000 banners, 3 minutes of a cold
# export on 2 cores. Not in THUMB_KEY: thumbnails made at 4 look the same and are reused.
THUMB_METHOD = 2
SHARD = 1000  # games per neighbours file: one click fetches ~100 KB at k=10
MAP_SCALE = 10_000  # map positions as integers 0..10,000: a third of the JSON of floats
RECORD = ".export-site.json"  # in OUT: the files export-site wrote there, the only ones it touches
_STAGING = "export-site"  # OUT/.export-site.{random}.tmp while an export is written
_OWN_FILE = re.compile(
    r"index\.html|app\.js|style\.css|data/games\.json|data/neighbors-[0-9]+\.json"
    r"|lookalikes\.html|lookalikes\.js|data/lookalikes\.json"
    r"|data/thumbs\.json|thumbs/[0-9]+/[0-9]+\.webp"
)
_MAX_RECORD_BYTES = 64 << 20  # ~40 bytes a file: far above a site of a million games
FEATURED = 240  # games the landing page draws its grid from: the best-known, or a random sample
# What a thumbnail is made from besides its banner's bytes: a change here re-encodes them all.
THUMB_KEY = f"webp{THUMB_WIDTH}x{THUMB_HEIGHT}q{THUMB_QUALITY}v2"
_HASH = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class SiteReport:
    out: Path
    games: int
    thumbnails: int
    skipped: dict  # id -> reason, banners that got no thumbnail
    bytes: int
    reused: int = 0  # thumbnails taken from the previous export (same banner content)

    def __str__(self) -> str:
        return (
            f"{self.games} games, {self.thumbnails} thumbnails ({self.reused} reused, "
            f"{len(self.skipped)} skipped), {self.bytes / 1e6:.1f} MB -> {self.out}"
        )


def make_thumbnail(src: Path, dst: Path) -> None:
    """One banner -> a WebP that fits ``THUMB_WIDTH`` x ``THUMB_HEIGHT`` whole, its shape kept (a
    2:3 banner fills it; a landscape picture is as wide and shorter). ValueError for a hostile size.
    """
    from PIL import Image

    with Image.open(src) as img:
        check_pixels(img)
        img.draft("RGB", (THUMB_WIDTH * 2, THUMB_HEIGHT * 2))  # JPEG: decode at a smaller scale
        img = to_rgb(img)
        scale = min(THUMB_WIDTH / max(img.width, 1), THUMB_HEIGHT / max(img.height, 1))
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    img.save(dst, format="WEBP", quality=THUMB_QUALITY, method=THUMB_METHOD)


def content_hash(path: Path) -> str:
    """32 hex digits: BLAKE2b of ``THUMB_KEY`` and the file's bytes (what a thumbnail is made of)."""
    digest = hashlib.blake2b(THUMB_KEY.encode(), digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export_site(
    data: str | os.PathLike,
    setting: str | Setting,
    out: str | os.PathLike,
    *,
    k: int = 10,
    images: str | os.PathLike | None = None,
    include_excluded: bool = False,
    with_map: bool = True,
    n_clusters: int | None = None,
    workers: int = 4,
    progress: bool = True,
) -> SiteReport:
    """Write the static gallery of one cached setting into ``out``.

    Args:
        data: the data folder.
        setting: a cached setting (a name of ``layout.list_settings(data)``, or a ``Setting``).
        out: the site folder, outside ``data``. Other files in it are kept; the files of an
            earlier export (listed in its ``.export-site.json``) are replaced.
        k: neighbours listed per game.
        images: the banner folder (default ``DATA/banners``).
        include_excluded: show games the audit excluded as neighbours too.
        with_map: include the catalogue map (``map_catalog``, cached in the data folder).
        n_clusters: map clusters (default ``map_catalog``'s).
        workers: thumbnail threads (PIL releases the GIL while it decodes and encodes).

    Returns:
        SiteReport with counts and the size in bytes of the files written.

    Raises:
        ValueError: ``out`` is, holds or is inside ``data``; or it holds a file export-site would
            write that its record does not list (moved away, never overwritten).
    """

    out = Path(out)
    emb = _checked_embeddings(data, setting, out, k)
    _clean_staging(out)
    owned = _read_record(out)
    _check_conflicts(out, _planned(len(emb.ids)), owned)
    exclude = {} if include_excluded else load_exclusions(data)
    files_of = images_of(data, images)
    nb_rows, nb_scores = _neighbor_rows(data, emb, k, exclude, progress)
    games = _games(data, emb, k, with_map, n_clusters)
    previous = _previous_thumbnails(out)
    with files.temp_dir(out, _STAGING) as tmp:
        (tmp / "data").mkdir(parents=True)
        for name in ("index.html", "app.js", "style.css", "lookalikes.html", "lookalikes.js"):
            shutil.copyfile(ASSETS / name, tmp / name)
        _write_shards(tmp, nb_rows, nb_scores)
        has_thumb, skipped, hashes, reused = _write_thumbnails(
            tmp, emb.ids, files_of, previous, workers, progress
        )
        games["thumb"] = has_thumb.astype(int).tolist()
        games |= _featured(data, emb.ids, has_thumb, exclude)
        _write_json(tmp / "data" / "games.json", games)
        _write_json(tmp / "data" / "thumbs.json", {"key": THUMB_KEY, "hashes": hashes})
        _write_json(
            tmp / "data" / "lookalikes.json",
            lookalikes_for_site(data, emb, include_excluded=include_excluded),
        )
        written = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in _files_under(tmp)}
        _install(out, tmp, set(written), owned)
    return SiteReport(
        out, len(emb.ids), int(has_thumb.sum()), skipped, sum(written.values()), reused
    )


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _planned(n: int) -> set[str]:
    """Every file an export of ``n`` games may write (each game with a thumbnail)."""
    out = {"index.html", "app.js", "style.css", "data/games.json", "data/thumbs.json"}
    out |= {"lookalikes.html", "lookalikes.js", "data/lookalikes.json"}
    out |= {f"data/neighbors-{s}.json" for s in range((n + SHARD - 1) // SHARD)}
    return out | {f"thumbs/{r // SHARD}/{r}.webp" for r in range(n)}


def _clean_staging(out: Path) -> None:
    """Remove what a killed export left in ``out``: its staging folder, a half-written record."""
    for p in files.stale_temp_files(out):
        if not p.name.lstrip(".").startswith(_STAGING + "."):
            continue  # someone else's temporary file: not ours to remove
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _read_record(out: Path) -> set[str]:
    """The files an earlier export wrote in ``out`` (its ``RECORD``), only names of our shapes;
    ValueError for a record that is not one (a symlink, a folder, too large, not our JSON)."""
    path = out / RECORD
    if not os.path.lexists(path):
        return set()
    what = f"{path} is not export-site's record"
    fix = "delete it if you know the folder, or choose another --out"
    if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_RECORD_BYTES:
        raise ValueError(f"{what} (a symlink, folder or huge file); {fix}")
    try:
        record = json.loads(path.read_bytes())
        names = record["files"]
        if not isinstance(names, list):
            raise TypeError("files is not a list")
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise ValueError(f"{what} ({type(e).__name__}); {fix}") from None
    return {n for n in names if isinstance(n, str) and _OWN_FILE.fullmatch(n)}


def _write_record(out: Path, names: set[str]) -> None:
    text = json.dumps({"version": 1, "files": sorted(names)}, separators=(",", ":"))
    files.write_text_atomic(out / RECORD, text)


def _check_conflicts(out: Path, planned: set[str], owned: set[str]) -> None:
    """ValueError when a file export-site would write exists and is not one it wrote, or a
    folder it writes into is a symlink or a file: never overwritten, never followed."""
    folders = {str(Path(p).parent) for p in planned} - {"."}
    folders |= {str(Path(f).parent) for f in folders} - {"."}
    for rel in sorted(folders, key=len):
        path = out / rel
        if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
            raise ValueError(
                f"{path} is a symlink or a file where export-site writes a folder: "
                "move it away or choose another --out"
            )
    for rel in sorted(planned - owned):
        if os.path.lexists(out / rel):
            raise ValueError(
                f"{out / rel} exists and export-site did not write it (not in {RECORD}): "
                "move it away or choose another --out; export-site never overwrites it"
            )


def _install(out: Path, staged: Path, new: set[str], old: set[str]) -> None:
    """Move the ``new`` files from ``staged`` into ``out`` and remove the ``old`` ones not
    written again. The record lists both while files move, only ``new`` after."""
    _write_record(out, old | new)
    for rel in sorted(new):
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / rel, dst)
    for rel in sorted(old - new):
        path = out / rel
        if path.is_file() and not path.is_symlink():  # replaced by something else: not ours now
            path.unlink()
            if rel.startswith("thumbs/"):
                with contextlib.suppress(OSError):  # a folder still holding anything stays
                    path.parent.rmdir()
    _write_record(out, new)


def _checked_embeddings(data, setting, out: Path, k: int):
    """The setting's ``Embeddings`` after checking ``k`` and ``out``; ValueError naming the fix."""

    setting = checked_name(setting)  # a malformed name says so, not "run embed first"
    check_k(k)
    _check_out(data, out)
    emb = load_embeddings(data, setting)
    if not emb.ids:
        raise ValueError(f"setting {setting!r} in {data} holds no embeddings")
    return emb


def _check_out(data, out: Path) -> None:
    """ValueError when ``out`` is the data folder, inside it or holds it, or is not a folder."""
    d, o = Path(data).resolve(), out.resolve()
    if o == d or o.is_relative_to(d) or d.is_relative_to(o):
        raise ValueError(
            f"--out {out} is the data folder {data}, inside it or holds it: choose a folder "
            "outside the data folder"
        )
    if os.path.lexists(out) and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder: choose a folder")


def _neighbor_rows(data, emb, k: int, exclude, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) int64 rows into ``emb.ids`` of each game's neighbours (-1 where fewer) and (N, k)
    float32 cosines, best first. The match stage's table when it is fresh (a re-export searches
    nothing), else ``match_all``, whose table is kept in the data folder for the next export."""

    table = stored_matches(data, emb, exclude, k=k)
    if table is None:
        table = match_all(emb, k=k, exclude=exclude, progress=progress)
        try:
            write_matches(data, emb, table, exclude, k=k)
        except OSError as e:  # a read-only data folder: the next export searches again
            logger.warning("could not keep the match table in %s (%s)", data, e)
    row_of = {i: r for r, i in enumerate(emb.ids)}
    n = len(emb.ids)
    nb_rows = np.full((n, k), -1, np.int64)
    nb_scores = np.zeros((n, k), np.float32)
    if table.empty:  # one game, or every other one excluded: no neighbours at all
        return nb_rows, nb_scores
    q = table["query_id"].map(row_of).to_numpy()
    nb_rows[q, table["rank"].to_numpy() - 1] = table["id"].map(row_of).to_numpy()
    nb_scores[q, table["rank"].to_numpy() - 1] = table["score"].to_numpy()
    return nb_rows, nb_scores


def _games(data, emb, k: int, with_map: bool, n_clusters: int | None) -> dict:
    """``games.json`` without the thumbnail flags; the map's fields when ``with_map``."""

    names = load_names(data)
    games = {
        "version": 1,
        "setting": emb.setting,
        "k": k,
        "shard": SHARD,
        "count": len(emb.ids),
        "ids": [str(i) for i in emb.ids],  # strings at the JSON edge: ids pass 2**53
        "names": [names.get(i, "") for i in emb.ids],
        # 1 for a Steam app (linked to its store page), 0 for an own image (no store page).
        "steam": [int(files.is_steam_id(i)) for i in emb.ids],
    }
    return games | (_map_fields(data, emb, names, n_clusters) if with_map else {})


def _map_fields(data, emb, names: dict, n_clusters: int | None) -> dict:
    """``x``, ``y`` (0..``MAP_SCALE``), ``cluster`` per game and ``clusters`` (size, central
    rows, ``#rrggbb`` colour) of ``games.json``, from the cached catalogue map."""

    cmap = map_catalog(data, emb.setting, n_clusters=n_clusters)
    summary = describe_clusters(cmap, names, top=3)
    colours = cluster_colours(cmap)  # the figure's: neighbouring clusters differ
    row_of = {i: r for r, i in enumerate(emb.ids)}
    return {
        "x": np.rint(cmap["x"].to_numpy() * MAP_SCALE).astype(int).tolist(),
        "y": np.rint(cmap["y"].to_numpy() * MAP_SCALE).astype(int).tolist(),
        "cluster": cmap["cluster"].astype(int).tolist(),
        "clusters": [
            {
                "cluster": int(c),
                "size": int(s),
                "central": [row_of[i] for i in ids],
                "colour": colours[int(c)],
            }
            for c, s, ids in zip(summary["cluster"], summary["size"], summary["central_ids"])
        ],
    }


def _write_shards(tmp: Path, nb_rows: np.ndarray, nb_scores: np.ndarray) -> None:
    """``data/neighbors-{shard}.json``: ``SHARD`` games' rows and cosines (3 decimals) each."""
    for start in range(0, len(nb_rows), SHARD):
        stop = min(start + SHARD, len(nb_rows))
        shard = {
            "rows": nb_rows[start:stop].tolist(),
            "scores": np.round(nb_scores[start:stop].astype(np.float64), 3).tolist(),
        }
        _write_json(tmp / "data" / f"neighbors-{start // SHARD}.json", shard)


def _thumb_path(site: Path, row: int) -> Path:
    return site / "thumbs" / str(row // SHARD) / f"{row}.webp"


def _previous_thumbnails(out: Path) -> dict[str, Path]:
    """``{content hash: thumbnail}`` of the export already in ``out`` ({} if none or foreign).

    Its ``data/thumbs.json`` is read as untrusted: only 32-hex-digit hashes under this
    ``THUMB_KEY``; paths are made from row numbers, and only regular files (no links) are reused.
    """
    path = out / "data" / "thumbs.json"
    try:
        if not path.is_file() or path.stat().st_size > 64 << 20:
            return {}
        saved = json.loads(path.read_text(encoding="ascii"))
    except (OSError, ValueError) as e:
        logger.warning("previous thumbnails in %s not reused: %s", out, e)
        return {}
    if not isinstance(saved, dict) or saved.get("key") != THUMB_KEY:
        return {}
    hashes = saved.get("hashes")
    if not isinstance(hashes, list):
        return {}
    found = {}
    for row, h in enumerate(hashes):
        if isinstance(h, str) and _HASH.fullmatch(h):
            try:
                if stat.S_ISREG(os.lstat(thumb := _thumb_path(out, row)).st_mode):
                    found.setdefault(h, thumb)
            except OSError:
                continue
    return found


def _write_thumbnails(
    tmp: Path, ids: list[int], files: dict, previous: dict, workers: int, progress: bool
):
    """``thumbs/{row // SHARD}/{row}.webp`` for every game with a readable image; a thumbnail of
    ``previous`` (``_previous_thumbnails``) with the same content hash is linked, not encoded.

    Returns:
        ``(has_thumb, skipped, hashes, reused)``: (N,) bool per row; ``{id: reason}`` for the
        rows without one; the content hash per row ("" without a thumbnail); how many were reused.
    """
    jobs = [(r, files[i]) for r, i in enumerate(ids) if i in files]
    skipped = {i: "no image file" for i in ids if i not in files}
    for folder in {r // SHARD for r, _ in jobs}:
        (tmp / "thumbs" / str(folder)).mkdir(parents=True)
    has_thumb = np.zeros(len(ids), bool)
    hashes = [""] * len(ids)

    def one(job):
        row, src = job
        dst = _thumb_path(tmp, row)
        try:
            digest = content_hash(src)
            if digest in previous and _link_or_copy(previous[digest], dst):
                return row, digest, "", True
            make_thumbnail(src, dst)
            return row, digest, "", False
        except Exception as e:  # an unreadable banner is a tile without a picture
            return row, "", f"{type(e).__name__}: {e}", False

    reused = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(one, jobs)
        for row, digest, err, linked in tqdm(
            results, total=len(jobs), desc="site thumbnails", unit="thumb", disable=not progress
        ):
            if err:
                skipped[ids[row]] = err
                logger.warning("no thumbnail for %s: %s", ids[row], err)
            else:
                has_thumb[row], hashes[row] = True, digest
                reused += linked
    return has_thumb, skipped, hashes, reused


def _link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` to ``dst`` (a copy across filesystems); False if ``src`` is gone."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            shutil.copyfile(src, dst, follow_symlinks=False)
        except OSError:
            return False
    return True


def _featured(data, ids: list[int], has_thumb: np.ndarray, exclude) -> dict:
    """``featured`` (up to ``FEATURED`` rows with a thumbnail, not excluded), the landing page's
    pool; ``featured_by`` says how they were chosen: ``popularity`` (the votes on a game's store
    tags in ``metadata.parquet``, which only games many people play gather) when that table has
    any, else ``sample`` (a seeded random sample: own images, or Steam without metadata); and
    ``excluded``, the rows the audit excluded (left out of the landing page and the clusters)."""
    excluded = [r for r, i in enumerate(ids) if i in exclude]
    eligible = np.flatnonzero(has_thumb & ~np.isin(np.arange(len(ids)), excluded))
    votes = _tag_votes(data)
    score = np.array([votes.get(ids[r], 0.0) for r in eligible], np.float64)
    if len(eligible) and score.max(initial=0.0) > 0:
        order = eligible[np.argsort(-score, kind="stable")][:FEATURED]
        by = "popularity"
    else:
        order = np.random.default_rng(0).permutation(eligible)[:FEATURED]
        by = "sample"
    return {"featured": order.tolist(), "featured_by": by, "excluded": excluded}


def _tag_votes(data) -> dict[int, float]:
    """``{app_id: sum of its store-tag weights}`` from the metadata table; {} if none or damaged."""
    try:
        meta = read_metadata(data)
    except ValueError as e:
        logger.warning("landing page without popularity: %s", e)
        return {}
    votes = {}
    for app_id, weights in zip(meta["app_id"], meta["tag_weights"]):
        total = float(np.nansum(np.asarray(weights, np.float64))) if len(weights) else 0.0
        if np.isfinite(total) and total > 0:
            votes[int(app_id)] = total
    return votes


def _write_json(path: Path, obj) -> None:
    # Compact, ASCII only: any server and any browser read it the same way; NaN is never written.
    path.write_text(json.dumps(obj, separators=(",", ":"), allow_nan=False), encoding="ascii")
