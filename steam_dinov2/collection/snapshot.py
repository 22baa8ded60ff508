"""Snapshots of the banner folder: pack ours, import ours or the original project's July-2023 one.

Our layout: a tar.gz of ``manifest.parquet`` and ``banners/{app_id}.jpg``. The July-2023 release
(tag ``input`` of the original project) holds ``apps.json`` (a JSON list of app ids),
``images_partA.tar.gz`` and ``images_partB.tar.gz`` in img2dataset's layout
``images/{shard:05d}/{row:09d}.jpg``, where ``row`` indexes ``apps.json``.

Extraction never trusts an archive: every member is checked before anything is written, and
files are written by us (never by ``tarfile.extract``) to paths built from validated app ids.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pandas as pd
from PIL import Image

from ..core import files, layout
from ..core.app_file import read_app_file
from ..core.codec import check_pixels, encode_jpeg, resize_banner
from ..core.layout import MANIFEST
from ..core.manifest import (
    LATER_COLUMNS,
    MANIFEST_DTYPES,
    ManifestBook,
    collection_images,
    load_manifest,
    read_manifest,
    write_manifest,
)
from ..core.net import SteamHttp, url_path
from ..core.progress import tqdm

logger = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/woctezuma/steam-DINOv2/releases/download/input"
# The CDN the original project downloaded from in July 2023.
JULY_2023_URL = "https://cdn.cloudflare.steamstatic.com/steam/apps/{app_id}/library_600x900.jpg"
_FORMS = (
    "a .tar.gz made by pack_snapshot, a URL to one, a folder holding apps.json and "
    "images_part*.tar.gz (or an extracted images/), an img2dataset .tar.gz with apps.json beside "
    "it, 'july-2023' or the release URL"
)


def pack_snapshot(
    data: str | os.PathLike, out: str | os.PathLike, *, progress: bool = True
) -> Path:
    """Pack ``DATA/manifest.parquet`` and ``DATA/banners/*.jpg`` into ``out`` (tar.gz, atomic).

    Returns:
        The path written.
    """
    if not layout.manifest_path(data).is_file():
        raise ValueError(f"no manifest in {data}: run `download` or `import-snapshot` first")
    banners = collection_images(data)
    out = Path(out)
    with files.atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
        tar.add(layout.manifest_path(data), arcname=MANIFEST)
        for app_id, f in tqdm(banners.items(), desc="pack", unit="file", disable=not progress):
            tar.add(f, arcname=layout.banner_member(app_id))
    return out


def import_snapshot(
    src: str | os.PathLike,
    data: str | os.PathLike,
    *,
    apps: str | os.PathLike | list[int] | None = None,
    http: SteamHttp | None = None,
    progress: bool = True,
) -> int:
    """Import a snapshot into ``DATA/banners`` + manifest (rows of other apps are kept).

    Args:
        src: one of the forms in ``_FORMS``: a path, a URL, or ``"july-2023"``.
        data: the data folder (locked while importing, see ``layout.lock_data``).
        apps: the July-2023 ``apps.json`` (path or list) when it is not beside ``src``.
        http: HTTP settings for URLs.
        progress: show tqdm bars.

    Returns:
        Number of banners imported; files that do not decode (or are above
        ``codec.MAX_PIXELS``) are skipped and logged.

    Raises:
        ValueError: an unknown form, or a hostile archive (absolute path, ``..``, link, device,
            a member above ``snapshot_archive.MAX_MEMBER_BYTES``, a name that is not an app id,
            a damaged manifest), named with the archive and the member: nothing is written
            outside ``data`` and nothing at all from a hostile archive.
    """
    with layout.lock_data(data):
        return _import(src, data, apps, http, progress)


def _import(src, data, apps, http, progress) -> int:
    src = RELEASE_URL if str(src).lower() in ("july-2023", "july2023") else str(src)
    if re.match(r"^https?://", src):
        # Kept under DATA/downloads/: a rerun (or a re-import) does not fetch the release again.
        folder = layout.downloads_dir(data) / hashlib.sha256(src.encode()).hexdigest()[:12]
        local = fetch_snapshot(src, folder, http or SteamHttp(), progress)
        return _import(local, data, apps, None, progress)
    path = Path(src)
    if path.is_dir():
        app_ids = _read_apps(apps if apps is not None else path / "apps.json")
        archives = sorted(path.glob("images_part*.tar*"))
        if archives:
            return sum(_import_tar(a, data, app_ids, progress) for a in archives)
        if (path / "images").is_dir():
            return _import_files(walk_images(path), data, app_ids, None, progress)
    elif path.is_file() and is_tar(path):
        beside = path.parent / "apps.json"
        app_ids = _read_apps(apps) if apps is not None else None
        if app_ids is None and beside.is_file():
            app_ids = _read_apps(beside)
        return _import_tar(path, data, app_ids, progress)
    own = (
        "; for a folder of your own images use import-folder (import_folder)"
        if path.is_dir()
        else ""
    )
    raise ValueError(f"cannot import {src!r}; expected {_FORMS}{own}")


def _read_apps(apps) -> list[int] | None:
    if apps is None:
        return None
    if isinstance(apps, list | tuple):
        return [files.parse_app_id(a, f"apps[{i}]") for i, a in enumerate(apps)]
    path = Path(apps)
    if not path.is_file():
        return None
    return [app_id for app_id, _ in read_app_file(path)]  # names the file and line of a bad id


def _import_tar(path: Path, data, app_ids: list[int] | None, progress: bool) -> int:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = check_archive(tar, str(path))
            incoming = None
            for m in members:  # the manifest first: a damaged one refuses before any write
                if m.isfile() and m.name == MANIFEST:
                    incoming = load_manifest(
                        io.BytesIO(read_member(tar, m)),
                        f"{path}:{MANIFEST}",
                        fix="this snapshot cannot be imported; ask its author for a new one",
                        required=tuple(
                            c for c in MANIFEST_DTYPES if c not in LATER_COLUMNS
                        ),  # what any pack wrote
                    )

            def banners() -> Iterator[tuple[str, bytes, float]]:
                for m in members:
                    if m.isfile() and is_wanted(m.name) and m.name != MANIFEST:
                        yield m.name, read_member(tar, m), m.mtime

            return _import_files(banners(), data, app_ids, len(members), progress, incoming)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: not a readable tar archive ({type(e).__name__}: {e})") from None


def _import_files(
    banners, data, app_ids: list[int] | None, total, progress: bool, incoming=None
) -> int:
    rows = []
    for name, payload, mtime in tqdm(banners, total=total, desc="import", disable=not progress):
        if (stem := layout.banner_member_stem(name)) is not None:  # checked by check_archive
            app_id, url = files.parse_image_id(stem), ""
        else:
            m = I2D_MEMBER.match(name)
            if app_ids is None:
                raise ValueError(f"{name} is in img2dataset's layout: pass apps= (apps.json)")
            row = int(m.group(2))
            if row >= len(app_ids):
                raise ValueError(f"{name}: row {row} is beyond apps.json ({len(app_ids)} apps)")
            app_id = app_ids[row]
            url = JULY_2023_URL.format(app_id=app_id)
        row = _save(data, app_id, payload, mtime)
        if row is not None:
            rows.append(row | {"url": url})
    _merge_manifest(data, rows, incoming)
    logger.info("imported %d banners into %s", len(rows), layout.banners_dir(data))
    return len(rows)


def _save(data, app_id: int, payload: bytes, mtime: float) -> dict | None:
    """Write one banner if it decodes; re-encode anything but an RGB JPEG."""
    try:
        with Image.open(io.BytesIO(payload)) as img:
            check_pixels(img)  # before decoding: a 100 KB PNG can hold 30000x30000 pixels
            img.load()
            ok_as_is = img.format == "JPEG" and img.mode == "RGB"
            size = img.size
        if not ok_as_is:
            img = resize_banner(payload, size="original")
            payload, size = encode_jpeg(img), img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        logger.warning("skipped app %s: %s", app_id, e)
        return None
    files.write_bytes_atomic(layout.banner_path(data, app_id), payload)
    return {
        "app_id": app_id,
        "status": "ok",
        "error": "",
        "width": size[0],
        "height": size[1],
        "bytes": len(payload),
        "updated_at": pd.Timestamp(mtime, unit="s", tz="UTC"),
    }


def _merge_manifest(data, rows: list[dict], incoming: pd.DataFrame | None) -> None:
    """Old rows, then the snapshot's own rows, then what was really written (last wins)."""
    new = pd.DataFrame(rows)
    if incoming is not None and len(incoming):
        written = set(new["app_id"]) if len(new) else set()
        incoming = incoming.copy()
        lost = (incoming["status"] == "ok") & ~incoming["app_id"].isin(written)
        incoming.loc[lost, ["status", "error"]] = ["error", "missing from snapshot"]
        if len(new):  # keep the snapshot's names and urls for the files written
            meta = incoming.set_index("app_id")[["name", "url"]]
            new = new.drop(columns="url").join(meta, on="app_id")
    try:
        old = read_manifest(data)
    except ValueError as e:  # rebuilt from the folder, as `download` does
        logger.warning("%s; rebuilding it from %s", e, layout.banners_dir(data))
        book = ManifestBook(data, {})
        old = pd.DataFrame(list(book.rows.values()), columns=list(MANIFEST_DTYPES))
    if len(new) and len(old):  # a snapshot without names keeps the names we already had
        known = old.set_index("app_id")["name"]
        name = new["name"] if "name" in new else pd.Series("", index=new.index)
        new["name"] = name.fillna("").mask(name.fillna("") == "", new["app_id"].map(known))
    parts = [p for p in (old, incoming, new) if p is not None and len(p)]
    if not parts:
        logger.warning("nothing to import: no banner and no manifest in the snapshot")
        return
    write_manifest(data, pd.concat(parts))


# --- Reading a snapshot without trusting it: tar members checked before anything is written.

logger = logging.getLogger(__name__)

# img2dataset's layout of the July-2023 release: images/{shard:05d}/{row:09d}.jpg
I2D_MEMBER = re.compile(r"^images/(\d{5})/(\d{9})\.jpg$")
# A 600x900 banner is ~0.2 MB as JPEG, ~1.6 MB as PNG; the July-2023 parts hold ~100k members.
MAX_MEMBER_BYTES = 32 << 20
MAX_MEMBERS = 1_000_000


def check_archive(tar: tarfile.TarFile, name: str = "archive") -> list[tarfile.TarInfo]:
    """All members of ``tar`` after checking each is a plain file or folder with a relative path
    inside the archive, that a file we would read is at most ``MAX_MEMBER_BYTES`` and that a
    banner's name holds a valid app id; raises ValueError naming the first offending member.

    Member names come back normalised (``./banners/1.jpg`` -> ``banners/1.jpg``).
    """
    members = []
    for m in tar:  # streamed: a header at a time
        if len(members) >= MAX_MEMBERS:
            raise ValueError(f"refusing {name}: more than {MAX_MEMBERS:,} members")
        p = PurePosixPath(m.name.replace("\\", "/"))
        if p.is_absolute() or re.match(r"^[A-Za-z]:", m.name) or ".." in p.parts:
            raise ValueError(f"refusing {name}: member {m.name!r} escapes the archive")
        if m.issym() or m.islnk():
            raise ValueError(f"refusing {name}: member {m.name!r} is a link")
        if not (m.isfile() or m.isdir()) or m.issparse():
            raise ValueError(f"refusing {name}: member {m.name!r} is a device, fifo or special")
        norm = str(p)
        if m.isfile() and is_wanted(norm) and m.size > MAX_MEMBER_BYTES:
            raise ValueError(
                f"refusing {name}: member {m.name!r} is {m.size:,} bytes, above the cap of "
                f"{MAX_MEMBER_BYTES:,} per file"
            )
        if m.isfile() and (stem := layout.banner_member_stem(norm)) is not None:
            try:
                app_id = files.parse_image_id(stem)
                if str(app_id) != stem:
                    raise ValueError(f"not the canonical name {app_id}.jpg")
            except ValueError as e:
                raise ValueError(f"refusing {name}: member {m.name!r}: {e}") from None
        m.name = norm
        members.append(m)
    return members


def is_wanted(name: str) -> bool:
    """A member an import reads: a banner, an img2dataset image or the manifest."""
    return bool(I2D_MEMBER.match(name) or layout.banner_member_stem(name) or name == MANIFEST)


def read_member(tar: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    """A member's bytes, never more than ``MAX_MEMBER_BYTES`` (its size was checked already)."""
    f = tar.extractfile(m)
    payload = f.read(min(m.size, MAX_MEMBER_BYTES) + 1)
    if len(payload) > MAX_MEMBER_BYTES:  # pragma: no cover (tarfile reads m.size at most)
        raise ValueError(f"member {m.name!r} is above the cap of {MAX_MEMBER_BYTES:,} bytes")
    return payload


def walk_images(folder: Path) -> Iterator[tuple[str, bytes, float]]:
    """The banners of an extracted img2dataset folder: regular files only, never opened else."""
    root = (folder / "images").resolve()
    for f in sorted((folder / "images").glob("*/*.jpg")):
        st = f.lstat()
        if not stat.S_ISREG(st.st_mode) or not f.resolve().is_relative_to(root):
            logger.warning("skipped %s: not a regular file inside %s", f, root)
        elif st.st_size > MAX_MEMBER_BYTES:
            logger.warning("skipped %s: %d bytes, above %d", f, st.st_size, MAX_MEMBER_BYTES)
        else:
            yield f.relative_to(folder).as_posix(), f.read_bytes(), st.st_mtime


# --- Fetching a snapshot (a tar.gz, or the July-2023 release's files) into ``DATA/downloads/``.

RELEASE_FILES = ("apps.json", "images_partA.tar.gz", "images_partB.tar.gz")


def fetch_snapshot(url: str, folder: Path, http: SteamHttp, progress: bool) -> Path:
    """Download a snapshot file, or the release's files when ``url`` is not an archive."""
    if re.search(r"\.(tar\.gz|tgz|tar)$", url.split("?")[0]):
        return _fetch_file(url, folder / Path(url.split("?")[0]).name, http, progress)
    for name in RELEASE_FILES:
        _fetch_file(f"{url.rstrip('/')}/{name}", folder / name, http, progress)
    return folder


def _fetch_file(url: str, out: Path, http: SteamHttp, progress: bool) -> Path:
    """Fetch ``url`` into ``out`` unless a whole earlier copy is there; an answer that is not
    what ``out`` should hold (an HTML page, bytes that are not a tar or an app list) is
    refused and never kept, so a rerun asks again."""
    if out.is_file():  # written by one rename, after the checks below: whole and valid
        return out
    with http.session.get(url, stream=True, timeout=http.timeout) as r:
        http.raise_for_status(r)
        kind = r.headers.get("Content-Type", "")
        if kind.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
            raise ValueError(f"{url_path(url)} answered with a web page ({kind}), not a snapshot")
        total = int(r.headers.get("Content-Length", 0) or 0) or None
        with (
            files.atomic_path(out) as tmp,
            open(tmp, "wb") as f,
            tqdm(
                total=total, desc=out.name, unit="B", unit_scale=True, disable=not progress
            ) as bar,
        ):
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            if out.suffix == ".json":
                read_app_file(tmp)  # raises ValueError naming the line of the first bad id
            elif not is_tar(tmp):
                raise ValueError(
                    f"{url_path(url)} did not send a tar archive ({kind or 'no type'})"
                )
    return out


def is_tar(path: Path) -> bool:
    """True when ``path`` is a (possibly compressed) tar archive tarfile can open."""
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        return False
