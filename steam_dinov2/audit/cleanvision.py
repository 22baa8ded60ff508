"""CleanVision over the banners, with its results kept as plain data under ``DATA/audit/``.

CleanVision's own pickled state is never written or read: a data folder may come from someone
else. Its results (issues as parquet, duplicate sets and the key they were made under as JSON)
are reused while the files and options are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
from PIL import Image

from ..core import files, layout
from ..core.codec import GRAY_SPREAD, is_grayscale
from ..core.progress import bars_in

logger = logging.getLogger(__name__)

PROPERTY_TYPES = (
    "dark",
    "light",
    "blurry",
    "low_information",
    "grayscale",
    "odd_aspect_ratio",
    "odd_size",
)
DUPLICATE_TYPES = ("exact_duplicates", "near_duplicates")
ISSUE_TYPES = PROPERTY_TYPES + DUPLICATE_TYPES  # CleanVision's defaults, all selected by default


def readable(path: Path, *, decode: bool = False) -> bool:
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            return img.size[0] > 0 and img.size[1] > 0
    except Exception:
        return False


def issue_params(issue_types, thresholds) -> dict[str, dict]:
    types = list(ISSUE_TYPES if issue_types is None else issue_types)
    for t in [*types, *(thresholds or {})]:
        if t not in ISSUE_TYPES:
            raise ValueError(f"unknown issue type {t!r}; available: {', '.join(ISSUE_TYPES)}")
    params = {t: {} for t in types}
    for t, value in (thresholds or {}).items():
        if t in DUPLICATE_TYPES:
            raise ValueError(
                f"{t} has no threshold (hash equality); for embedding duplicates "
                "use near_dup_threshold"
            )
        if t not in params:
            raise ValueError(f"threshold given for {t!r}, which is not among the issue types")
        params[t] = {"threshold": float(value)}
    return params


def run_cleanvision(data, images: dict[int, Path], params: dict, n_jobs, *, progress: bool = True):
    """CleanVision over ``images``; its results are saved under ``DATA/audit/cleanvision/`` as
    plain data and read back while their key (files with size and mtime, issue types, versions)
    is unchanged. Nothing there is ever unpickled: the folder may come from someone else.

    Returns ``(issues, sets, reused, broken)``: issues, CleanVision's table indexed by app id;
    sets, ``{duplicate type: [[app_id, ...], ...]}``; broken, the ids it could not decode (ids
    int; the saved files name them as CleanVision does, by file stem). ``progress``: its bars.
    """
    issues, sets, reused, broken = _run_cleanvision(
        data, {str(i): p for i, p in images.items()}, params, n_jobs, progress
    )
    issues.index = issues.index.astype("int64")
    sets = {t: [[int(i) for i in g] for g in groups] for t, groups in sets.items()}
    return issues, sets, reused, [int(b) for b in broken]


def _run_cleanvision(data, images: dict[str, Path], params: dict, n_jobs, progress: bool):
    import cleanvision

    stamps = {i: [p.stat().st_size, p.stat().st_mtime_ns] for i, p in images.items()}
    key = {"cleanvision": cleanvision.__version__, "pandas": pd.__version__, "issue_types": params}
    key["grayscale_from_pixels"] = GRAY_SPREAD  # results made before the pixel check recompute
    key["files"] = hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest()
    saved = _read_key(data)
    if saved.get("key") == key and set(saved["broken"]) <= set(images):
        loaded = _read_saved_cleanvision(data, images, params, saved["broken"])
        if loaded is not None:
            return (*loaded, True, saved["broken"])
    issues, sets, broken = _find_issues(images, params, n_jobs, progress)
    folder = layout.cleanvision_dir(data)
    with files.atomic_dir(folder) as tmp:
        tmp.mkdir()
        issues.rename_axis("app_id").reset_index().to_parquet(
            tmp / layout.cleanvision_issues_path(data).name, index=False
        )
        (tmp / layout.cleanvision_sets_path(data).name).write_text(json.dumps(sets))
        key_file = tmp / layout.cleanvision_key_path(data).name
        key_file.write_text(json.dumps({"key": key, "broken": broken}))
    return issues, sets, False, broken


def _read_key(data) -> dict:
    path = layout.cleanvision_key_path(data)
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        logger.warning("audit key file %s is damaged (%s); recomputing CleanVision", path, e)
        return {}
    ok = isinstance(saved, dict) and isinstance(saved.get("broken"), list)
    if not ok or not all(isinstance(b, str) for b in saved["broken"]):
        logger.warning("audit key file %s is not a key this package wrote; recomputing", path)
        return {}
    return saved


def _read_saved_cleanvision(data, images, params, broken):
    """``(issues, sets)`` as saved, or None with a warning when the files are damaged."""
    try:
        issues = pd.read_parquet(layout.cleanvision_issues_path(data)).set_index("app_id")
        issues.index = issues.index.astype(str)
        sets = json.loads(layout.cleanvision_sets_path(data).read_text())
        columns = [c for t in params for c in (f"is_{t}_issue", f"{t}_score")]
        missing = [c for c in columns if c not in issues]
        if missing:
            raise ValueError(f"columns {missing[:3]} missing")
        want = [t for t in params if t in DUPLICATE_TYPES]
        if not isinstance(sets, dict) or sorted(sets) != sorted(want):
            raise ValueError(f"duplicate sets for {want} expected")
        for groups in sets.values():
            if not isinstance(groups, list) or not all(
                isinstance(g, list) and all(isinstance(i, str) and i in images for i in g)
                for g in groups
            ):
                raise ValueError("duplicate sets are not lists of audited app ids")
        if set(issues.index) != set(images) - set(broken):
            raise ValueError("issues of other app ids than the audited ones")
    except Exception as e:  # damaged or foreign files are recomputed, never trusted
        logger.warning(
            "saved CleanVision results in %s are damaged (%s); recomputing",
            layout.cleanvision_dir(data),
            e,
        )
        return None
    return issues, sets


def _find_issues(images: dict[str, Path], params: dict, n_jobs, progress: bool):
    from cleanvision import Imagelab

    def run(paths):
        lab = Imagelab(filepaths=[str(p) for p in paths], verbose=False)
        # CleanVision's bars are tqdm.auto's: ours instead, so a saved notebook shows them done
        # (its verbose=False, which keeps its prints out, would also hide them when done).
        bars = {"unit": "banner", "leave": True, "disable": not progress}
        with bars_in("cleanvision", desc_prefix="CleanVision: ", **bars):
            lab.find_issues(params, n_jobs=n_jobs, verbose=False)
        issues = lab.issues.rename(index=lambda p: Path(p).stem)
        sets = {
            t: [[Path(p).stem for p in s] for s in lab.info[t]["sets"]]
            for t in params
            if t in DUPLICATE_TYPES
        }
        return issues, sets

    broken = []
    try:
        issues, sets = run(images.values())
    except Exception:  # CleanVision stops at the first file it cannot decode: find them, go on
        broken = [i for i, p in images.items() if not readable(p, decode=True)]
        if not broken or len(broken) == len(images):
            raise
        logger.warning("%d banners cannot be decoded: %s", len(broken), ", ".join(broken[:10]))
        issues, sets = run(p for i, p in images.items() if i not in set(broken))
    if "grayscale" in params:
        _grayscale_from_pixels(issues, {i: p for i, p in images.items() if i not in broken})
    return issues, sets, broken


def _grayscale_from_pixels(issues: pd.DataFrame, images: dict[str, Path]) -> None:
    """Flag grey banners whatever their mode (``codec.is_grayscale``) in CleanVision's columns.

    CleanVision's grayscale check reads the file's mode, so a grey banner saved as RGB (R = G =
    B, as every downloaded banner is stored) is never flagged; here its score becomes 0.
    """
    grey = []
    for i, path in images.items():
        with Image.open(path) as img:
            img.draft("RGB", (128, 128))  # JPEG: decode at 1/2..1/8 scale, enough for a spread
            if is_grayscale(img):
                grey.append(i)
    issues.loc[grey, "is_grayscale_issue"] = True
    issues.loc[grey, "grayscale_score"] = 0.0
