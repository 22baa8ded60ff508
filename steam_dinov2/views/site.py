"""A static gallery of one setting that anyone can open: no Python, no server code.

``export_site`` writes::

    OUT/index.html  app.js  style.css     the page (assets/site/ in the package)
    OUT/data/games.json                   ids, names, map positions and clusters, one array each
    OUT/data/neighbors-{shard}.json       k neighbours (rows into games.json) and cosines, by shard
    OUT/lookalikes.html  lookalikes.js    look-alikes from other studios (``pairs``), linked from
    OUT/data/lookalikes.json              index.html: pairs as rows into games.json, cosine, studios
    OUT/thumbs/{row // 1000}/{row}.webp   150 px wide thumbnails, loaded lazily

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
import json
import logging
import os
import re
import shutil
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
from ..search import check_k, match_all
from .map import describe_clusters, map_catalog
from .pairs import lookalikes_for_site

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets" / "site"
THUMB_WIDTH = 150  # px: two columns of tiles on a phone, six on a laptop
THUMB_QUALITY = 70  # WebP quality: ~5 KB a banner, so 30,000 fit in ~150 MB
SHARD = 1000  # games per neighbours file: one click fetches ~100 KB at k=10
MAP_SCALE = 10_000  # map positions as integers 0..10,000: a third of the JSON of floats
RECORD = ".export-site.json"  # in OUT: the files export-site wrote there, the only ones it touches
_STAGING = "export-site"  # OUT/.export-site.{random}.tmp while an export is written
_OWN_FILE = re.compile(
    r"index\.html|app\.js|style\.css|data/games\.json|data/neighbors-[0-9]+\.json"
    r"|lookalikes\.html|lookalikes\.js|data/lookalikes\.json"
    r"|thumbs/[0-9]+/[0-9]+\.webp"
)
_MAX_RECORD_BYTES = 64 << 20  # ~40 bytes a file: far above a site of a million games


@dataclass(frozen=True)
class SiteReport:
    out: Path
    games: int
    thumbnails: int
    skipped: dict  # id -> reason, banners that got no thumbnail
    bytes: int

    def __str__(self) -> str:
        return (
            f"{self.games} games, {self.thumbnails} thumbnails ({len(self.skipped)} skipped), "
            f"{self.bytes / 1e6:.1f} MB -> {self.out}"
        )


def make_thumbnail(src: Path, dst: Path) -> None:
    """One banner -> a ``THUMB_WIDTH``-wide WebP; ValueError for a hostile size."""
    from PIL import Image

    with Image.open(src) as img:
        check_pixels(img)
        img.draft("RGB", (THUMB_WIDTH * 2, THUMB_WIDTH * 3))  # JPEG: decode at a smaller scale
        img = to_rgb(img)
        height = max(1, round(img.height * THUMB_WIDTH / max(img.width, 1)))
        img = img.resize((THUMB_WIDTH, min(height, THUMB_WIDTH * 4)), Image.Resampling.LANCZOS)
    img.save(dst, format="WEBP", quality=THUMB_QUALITY, method=4)


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
    nb_rows, nb_scores = _neighbor_rows(emb, k, exclude, progress)
    games = _games(data, emb, k, with_map, n_clusters)
    with files.temp_dir(out, _STAGING) as tmp:
        (tmp / "data").mkdir(parents=True)
        for name in ("index.html", "app.js", "style.css", "lookalikes.html", "lookalikes.js"):
            shutil.copyfile(ASSETS / name, tmp / name)
        _write_shards(tmp, nb_rows, nb_scores)
        has_thumb, skipped = _write_thumbnails(tmp, emb.ids, files_of, workers, progress)
        games["thumb"] = has_thumb.astype(int).tolist()
        _write_json(tmp / "data" / "games.json", games)
        _write_json(
            tmp / "data" / "lookalikes.json",
            lookalikes_for_site(data, emb, include_excluded=include_excluded),
        )
        written = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in _files_under(tmp)}
        _install(out, tmp, set(written), owned)
    return SiteReport(out, len(emb.ids), int(has_thumb.sum()), skipped, sum(written.values()))


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _planned(n: int) -> set[str]:
    """Every file an export of ``n`` games may write (each game with a thumbnail)."""
    out = {"index.html", "app.js", "style.css", "data/games.json"}
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


def _neighbor_rows(emb, k: int, exclude, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) int64 rows into ``emb.ids`` of each game's neighbours (-1 where fewer) and (N, k)
    float32 cosines, best first."""

    table = match_all(emb, k=k, exclude=exclude, progress=progress)
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
    rows) of ``games.json``, from the cached catalogue map."""

    cmap = map_catalog(data, emb.setting, n_clusters=n_clusters)
    summary = describe_clusters(cmap, names, top=3)
    row_of = {i: r for r, i in enumerate(emb.ids)}
    return {
        "x": np.rint(cmap["x"].to_numpy() * MAP_SCALE).astype(int).tolist(),
        "y": np.rint(cmap["y"].to_numpy() * MAP_SCALE).astype(int).tolist(),
        "cluster": cmap["cluster"].astype(int).tolist(),
        "clusters": [
            {"cluster": int(c), "size": int(s), "central": [row_of[i] for i in ids]}
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


def _write_thumbnails(tmp: Path, ids: list[int], files: dict, workers: int, progress: bool):
    """``thumbs/{row // SHARD}/{row}.webp`` for every game with a readable image.

    Returns:
        ``(has_thumb, skipped)``: (N,) bool per row, and ``{id: reason}`` for the others.
    """
    jobs = [(r, files[i]) for r, i in enumerate(ids) if i in files]
    skipped = {i: "no image file" for i in ids if i not in files}
    for folder in {r // SHARD for r, _ in jobs}:
        (tmp / "thumbs" / str(folder)).mkdir(parents=True)
    has_thumb = np.zeros(len(ids), bool)

    def one(job):
        row, src = job
        try:
            make_thumbnail(src, tmp / "thumbs" / str(row // SHARD) / f"{row}.webp")
            return row, ""
        except Exception as e:  # an unreadable banner is a tile without a picture
            return row, f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(one, jobs)
        for row, err in tqdm(results, total=len(jobs), unit="thumb", disable=not progress):
            if err:
                skipped[ids[row]] = err
                logger.warning("no thumbnail for %s: %s", ids[row], err)
            else:
                has_thumb[row] = True
    return has_thumb, skipped


def _write_json(path: Path, obj) -> None:
    # Compact, ASCII only: any server and any browser read it the same way; NaN is never written.
    path.write_text(json.dumps(obj, separators=(",", ":"), allow_nan=False), encoding="ascii")
