"""What every notebook does first, in Colab or not: the data folder, widgets, a stop that reads well.

Each Colab notebook gets a fresh runtime, so the data folder must live where the next notebook can
find it: in Colab it defaults to Google Drive (``MyDrive/<data_dir>``); elsewhere it is the folder
given. ``MOUNT_DRIVE = False`` in a notebook opts out (a folder on the VM, gone with it).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .collection.snapshot import import_snapshot
from .core.manifest import collection_images
from .embedding.models import select_device
from .steam.download import download_banners

logger = logging.getLogger(__name__)

DRIVE_MOUNT = "/content/drive"  # where Colab's drive.mount puts Google Drive
DRIVE_HOME = "MyDrive"  # the user's own files under the mount point
SMALL_SET = 200  # games fetched when a notebook opened alone finds none and IF_EMPTY = "download"


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def resolve_data_dir(data_dir: str | os.PathLike, *, mount_drive: bool | None = None) -> Path:
    """The data folder a notebook works in, created if missing.

    Args:
        data_dir: the folder; a relative one lives on Google Drive (``MyDrive/<data_dir>``) when
            Drive is mounted, an absolute one is used as given.
        mount_drive: None (default) mounts Google Drive in Colab when the folder is on it (a
            relative one, or one under ``DRIVE_MOUNT``) and nowhere else; True mounts it (Colab
            only); False keeps the folder local (in Colab: on the VM, lost with it).

    Returns:
        The absolute path of the data folder.

    Raises:
        ValueError: ``mount_drive=True`` outside Colab.
    """
    path = Path(data_dir).expanduser()
    if mount_drive and not in_colab():
        raise ValueError(
            "MOUNT_DRIVE = True needs Google Colab; outside it use None or False "
            f"(the data folder is then {path.resolve()})"
        )
    on_drive = not path.is_absolute() or path.is_relative_to(DRIVE_MOUNT)
    if in_colab() and (mount_drive or (mount_drive is None and on_drive)):
        from google.colab import drive

        if not (Path(DRIVE_MOUNT) / DRIVE_HOME).is_dir():
            drive.mount(DRIVE_MOUNT)
        if not path.is_absolute():
            path = Path(DRIVE_MOUNT) / DRIVE_HOME / path
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def enable_widgets() -> None:
    """Let Colab show ipywidgets (the browser, progress bars); nothing to do elsewhere."""
    if in_colab():
        from google.colab import output

        output.enable_custom_widget_manager()


class NothingToDo(Exception):
    """A notebook stops here: nothing to work on. Shown as its one line, without a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of the traceback
        return [str(self)]


def count_banners(data: str | os.PathLike) -> int:
    """Number of banners in the collection of ``data`` (``manifest.collection_images``)."""

    return len(collection_images(data))


def ensure_banners(data: str | os.PathLike, *, if_empty: str | None = "stop") -> int:
    """The number of banners in ``data``, fetching a small set first if there are none and asked to.

    Args:
        data: the data folder.
        if_empty: what to do without banners: ``"stop"`` (default) raises ``NothingToDo`` saying
            what to run first; ``"download"`` fetches ``SMALL_SET`` games listed by SteamSpy;
            anything else is a snapshot for ``import_snapshot`` (``"july-2023"``, a path or URL).

    Raises:
        NothingToDo: no banners, and ``if_empty`` is "stop" or brought none.
    """
    n = count_banners(data)
    if n:
        return n
    if if_empty in (None, "stop"):
        raise NothingToDo(
            f"No banners in {data}: run download_steam_images.ipynb first with the same "
            'DATA_DIR, or set IF_EMPTY = "download" (a small set) or "july-2023" here.'
        )
    if if_empty == "download":
        logger.info("no banners in %s: downloading %d games listed by SteamSpy", data, SMALL_SET)
        download_banners(data, source="steamspy", limit=SMALL_SET)
    else:
        import_snapshot(if_empty, data)
    n = count_banners(data)
    if not n:
        raise NothingToDo(f"IF_EMPTY = {if_empty!r} brought no banners into {data}")
    return n


# The match notebook's heavier knobs, by runtime. On a CPU the ViT-S rows only: a ViT-B embeds
# about 3x slower than a ViT-S (benchmarks/README.md), and every comparison row embeds the whole
# collection once more.
GPU_MODEL, CPU_MODEL = "dinov2_vitb14_reg", "dinov2_vits14"
GPU_COMPARE = [
    ("dinov2_vits14", "crop256", "cls"),
    ("dinov2_vitb14_reg", "crop256", "cls"),
    ("dinov2_vitb14_reg", "full", "cls+avg"),
    ("dino_vitb16", "crop224", "cls"),
]
CPU_COMPARE = [("dinov2_vits14", "crop256", "cls"), ("dinov2_vits14", "full", "cls+avg")]
# ViT-S/14 at 224 on 2 CPU cores: 18.5 img/s in fp32, 56 with bf16 on AMX (issue 23's figures,
# benchmarks/README.md); the estimate below takes the slower.
CPU_IMAGES_PER_SECOND = 18.5


@dataclass(frozen=True)
class Runtime:
    """The defaults a notebook picked for the runtime it found.

    Attributes:
        gpu: True on a CUDA device.
        model: the model to embed with (the user's, or the runtime's default).
        compare: the comparison rows ``(model, preset, pooling)``.
        note: one paragraph for the user: what was found, what was chosen, what it costs.
    """

    gpu: bool
    model: str
    compare: list
    note: str


def choose_runtime(model: str | None = None, compare=None, *, data=None, device="auto") -> Runtime:
    """Defaults that suit the runtime: the full set on a GPU; on a CPU a ViT-S and two comparison
    rows, with the cost said up front. A value the user set (not None) is always kept.

    Args:
        model: the notebook's ``MODEL`` (None: the runtime's default).
        compare: the notebook's ``COMPARE_SETTINGS`` (None: the runtime's default).
        data: the data folder, to say what embedding its banners will cost on a CPU.
        device: as for ``load_model``.
    """
    gpu = select_device(device).type == "cuda"
    chosen_model = model or (GPU_MODEL if gpu else CPU_MODEL)
    rows = [tuple(r) for r in compare] if compare is not None else None
    rows = rows if rows is not None else (GPU_COMPARE if gpu else CPU_COMPARE)
    if gpu:
        note = f"GPU runtime: {chosen_model}, {len(rows)} comparison rows."
    else:
        n = count_banners(data) if data is not None else 0
        minutes = n / CPU_IMAGES_PER_SECOND / 60
        cost = f"; embedding {n} banners takes about {minutes:.0f} min per setting" if n else ""
        note = (
            f"CPU-only runtime: {chosen_model}, {len(rows)} comparison rows{cost}. For ViT-B "
            "models and every comparison row, choose a GPU runtime (Runtime > Change runtime "
            "type), or set MODEL and COMPARE_SETTINGS yourself."
        )
    return Runtime(gpu, chosen_model, rows, note)
