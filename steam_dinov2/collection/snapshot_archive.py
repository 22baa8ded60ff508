"""Reading a snapshot without trusting it: tar members checked before anything is written.

Every member of an archive is checked (``check_archive``) before a single file is written; files
are read with a cap (``read_member``), never extracted by ``tarfile``; an extracted img2dataset
folder is walked for regular files inside it only (``walk_images``).
"""

from __future__ import annotations

import logging
import re
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..core import files, layout
from ..core.layout import MANIFEST

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
