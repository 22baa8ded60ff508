"""Snapshots of the banner folder: pack ours, import ours or the original project's July-2023 one.

Our layout: a tar.gz of ``manifest.parquet`` and ``banners/{app_id}.jpg``. The July-2023 release
(tag ``input`` of the original project) holds ``apps.json`` (a JSON list of app ids),
``images_partA.tar.gz`` and ``images_partB.tar.gz`` in img2dataset's layout
``images/{shard:05d}/{row:09d}.jpg``, where ``row`` indexes ``apps.json``.

Extraction never trusts an archive: every member is checked before anything is written, and
files are written by us (never by ``tarfile.extract``) to paths built from validated app ids.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pandas as pd
from PIL import Image

from . import layout
from .download import encode_jpeg, resize_banner
from .layout import MANIFEST
from .manifest import read_manifest, write_manifest
from .net import SteamHttp
from .progress import tqdm

logger = logging.getLogger(__name__)

RELEASE_URL = "https://github.com/woctezuma/steam-DINOv2/releases/download/input"
RELEASE_FILES = ("apps.json", "images_partA.tar.gz", "images_partB.tar.gz")
# The CDN the original project downloaded from in July 2023.
JULY_2023_URL = "https://cdn.cloudflare.steamstatic.com/steam/apps/{app_id}/library_600x900.jpg"
_I2D = re.compile(r"^images/(\d{5})/(\d{9})\.jpg$")
_OURS = re.compile(r"^banners/(\d+)\.jpg$")
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
    files = sorted(layout.banner_files(data).values())
    out = Path(out)
    with layout.atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
        tar.add(layout.manifest_path(data), arcname=MANIFEST)
        for f in tqdm(files, desc="pack", unit="file", disable=not progress):
            tar.add(f, arcname=f"{layout.BANNERS}/{f.name}")
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
        data: the data folder.
        apps: the July-2023 ``apps.json`` (path or list) when it is not beside ``src``.
        http: HTTP settings for URLs.
        progress: show tqdm bars.

    Returns:
        Number of banners imported.

    Raises:
        ValueError: an unknown form, or a hostile archive (absolute path, ``..``, link, device);
            nothing is written outside ``data`` and nothing at all from a hostile archive.
    """
    src = RELEASE_URL if str(src).lower() in ("july-2023", "july2023") else str(src)
    if re.match(r"^https?://", src):
        # Kept under DATA/downloads/: a rerun (or a re-import) does not fetch the release again.
        folder = layout.downloads_dir(data) / hashlib.sha256(src.encode()).hexdigest()[:12]
        local = _fetch(src, folder, http or SteamHttp(), progress)
        return import_snapshot(local, data, apps=apps, progress=progress)
    path = Path(src)
    if path.is_dir():
        app_ids = _read_apps(apps if apps is not None else path / "apps.json")
        archives = sorted(path.glob("images_part*.tar*"))
        if archives:
            return sum(_import_tar(a, data, app_ids, progress) for a in archives)
        if (path / "images").is_dir():
            return _import_files(_walk(path), data, app_ids, None, progress)
    elif path.is_file() and tarfile.is_tarfile(path):
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


def _mkdir(data) -> Path:
    Path(data).mkdir(parents=True, exist_ok=True)
    return Path(data)


def _read_apps(apps) -> list[int] | None:
    if apps is None:
        return None
    if isinstance(apps, list | tuple):
        return [int(a) for a in apps]
    path = Path(apps)
    if not path.is_file():
        return None
    return [int(a) for a in json.loads(path.read_text())]


def _fetch(url: str, folder: Path, http: SteamHttp, progress: bool) -> Path:
    """Download a snapshot file, or the release's files when ``url`` is not an archive."""
    if re.search(r"\.(tar\.gz|tgz|tar)$", url.split("?")[0]):
        return _fetch_file(url, folder / Path(url.split("?")[0]).name, http, progress)
    for name in RELEASE_FILES:
        _fetch_file(f"{url.rstrip('/')}/{name}", folder / name, http, progress)
    return folder


def _fetch_file(url: str, out: Path, http: SteamHttp, progress: bool) -> Path:
    if out.is_file():  # written by one rename: whole, from an earlier run
        return out
    with http.session.get(url, stream=True, timeout=http.timeout) as r:
        http.raise_for_status(r)
        total = int(r.headers.get("Content-Length", 0)) or None
        with (
            layout.atomic_path(out) as tmp,
            open(tmp, "wb") as f,
            tqdm(
                total=total, desc=out.name, unit="B", unit_scale=True, disable=not progress
            ) as bar,
        ):
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    return out


def check_archive(tar: tarfile.TarFile, name: str = "archive") -> list[tarfile.TarInfo]:
    """All members of ``tar`` after checking each is a plain file or folder with a relative path
    inside the archive; raises ValueError naming the first offending member otherwise."""
    members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name.replace("\\", "/"))
        if p.is_absolute() or re.match(r"^[A-Za-z]:", m.name) or ".." in p.parts:
            raise ValueError(f"refusing {name}: member {m.name!r} escapes the archive")
        if m.issym() or m.islnk():
            raise ValueError(f"refusing {name}: member {m.name!r} is a link")
        if not (m.isfile() or m.isdir()):
            raise ValueError(f"refusing {name}: member {m.name!r} is a device, fifo or special")
    return members


def _import_tar(path: Path, data, app_ids: list[int] | None, progress: bool) -> int:
    with tarfile.open(path, "r:*") as tar:
        members = check_archive(tar, str(path))

        def files() -> Iterator[tuple[str, bytes, float]]:
            for m in members:
                if m.isfile() and (_I2D.match(m.name) or _OURS.match(m.name) or m.name == MANIFEST):
                    yield m.name, tar.extractfile(m).read(), m.mtime

        return _import_files(files(), data, app_ids, len(members), progress)


def _walk(folder: Path) -> Iterator[tuple[str, bytes, float]]:
    for f in sorted((folder / "images").glob("*/*.jpg")):
        if f.is_file() and not f.is_symlink():
            yield f.relative_to(folder).as_posix(), f.read_bytes(), f.stat().st_mtime


def _import_files(files, data, app_ids: list[int] | None, total, progress: bool) -> int:
    rows, incoming = [], None
    for name, payload, mtime in tqdm(files, total=total, desc="import", disable=not progress):
        if name == MANIFEST:
            incoming = pd.read_parquet(io.BytesIO(payload))
            continue
        if m := _OURS.match(name):
            app_id, url = int(m.group(1)), ""
        else:
            m = _I2D.match(name)
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
            img.load()
            ok_as_is = img.format == "JPEG" and img.mode == "RGB"
            size = img.size
        if not ok_as_is:
            img = resize_banner(payload, size="original")
            payload, size = encode_jpeg(img), img.size
    except (OSError, ValueError) as e:
        logger.warning("skipped app %s: %s", app_id, e)
        return None
    layout.write_bytes_atomic(layout.banner_path(data, app_id), payload)
    return {
        "app_id": app_id, "status": "ok", "error": "", "width": size[0], "height": size[1],
        "bytes": len(payload), "updated_at": pd.Timestamp(mtime, unit="s", tz="UTC"),
    }  # fmt: skip


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
    old = read_manifest(data)
    if len(new) and len(old):  # a snapshot without names keeps the names we already had
        known = old.set_index("app_id")["name"]
        name = new["name"] if "name" in new else pd.Series("", index=new.index)
        new["name"] = name.fillna("").mask(name.fillna("") == "", new["app_id"].map(known))
    parts = [old, incoming, new]
    write_manifest(data, pd.concat([p for p in parts if p is not None and len(p)]))
