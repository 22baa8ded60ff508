"""Fetching a snapshot (a tar.gz, or the July-2023 release's files) into ``DATA/downloads/``.

A file is kept only once it is whole and what it should be, so a rerun never fetches it again and
never trusts a page that answered in its place.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from pathlib import Path

from ..core import files
from ..core.app_file import read_app_file
from ..core.net import SteamHttp, url_path
from ..core.progress import tqdm

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
