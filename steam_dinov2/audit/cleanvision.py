"""CleanVision over the banners, with its results kept as plain data under ``DATA/audit/``.

CleanVision's own pickled state is never written or read: a data folder may come from someone
else. Its results (issues as parquet, duplicate sets and the key they were made under as JSON)
are reused while the files and options are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
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
    from cleanvision.utils.utils import get_max_n_jobs

    # CleanVision would run a torchvision-style dataset in one process; keep its default for paths.
    n_jobs = n_jobs or get_max_n_jobs()
    dups = [t for t in params if t in DUPLICATE_TYPES]
    props = {t: p for t, p in params.items() if t in PROPERTY_TYPES}

    def run(paths):
        paths = list(paths)
        with tempfile.TemporaryDirectory(prefix="cleanvision-") as tmp:
            # With property types, the property pass decodes each file once and the duplicate
            # hashes and the grey check come from that same image (CleanVision's own hash pass
            # would decode every file again); with duplicate types alone, its hash pass decodes.
            extras = _Extras.make(Path(tmp), len(paths), params) if props else None
            banners = _Banners(paths, extras)
            lab = Imagelab(torchvision_dataset=banners, verbose=False)
            # CleanVision's bars are tqdm.auto's: ours instead, so a saved notebook shows them done
            # (its verbose=False, which keeps its prints out, would also hide them when done).
            bars = {"unit": "banner", "leave": True, "disable": not progress}
            with bars_in("cleanvision", desc_prefix="CleanVision: ", **bars):
                lab.find_issues(props or params, n_jobs=n_jobs, verbose=False)
            stems = [Path(p).stem for p in paths]
            issues = lab.issues.rename(index=lambda i: stems[i])
            if extras is None:
                sets = {t: [[stems[i] for i in s] for s in lab.info[t]["sets"]] for t in dups}
                return issues, sets, set()
            done = extras.read()
            sets = _duplicate_sets(done, dups)
            issues = issues.join(_duplicate_columns(sets, len(paths), dups).set_axis(stems))
            grey = {stems[i] for i in np.flatnonzero(done["grey"] == 1)}
            sets = {t: [[stems[i] for i in s] for s in groups] for t, groups in sets.items()}
            return issues, sets, grey

    broken = []
    try:
        issues, sets, grey = run(images.values())
    except Exception:  # CleanVision stops at the first file it cannot decode: find them, go on
        broken = [i for i, p in images.items() if not readable(p, decode=True)]
        if not broken or len(broken) == len(images):
            raise
        logger.warning("%d banners cannot be decoded: %s", len(broken), ", ".join(broken[:10]))
        issues, sets, grey = run(p for i, p in images.items() if i not in set(broken))
    if "grayscale" in params:
        _mark_grayscale(issues, sorted(grey))
    return issues, sets, broken


class _Banners:
    """The banners as a torchvision-style dataset for CleanVision: item i is ``(image,)``, file
    i decoded once, as CleanVision's own file reader does (``Image.open(f).copy()``).

    With ``extras``, reading item i also stores what else the audit needs from those pixels
    (duplicate hashes, the grey check) in a file shared with CleanVision's worker processes.
    """

    def __init__(self, paths: list, extras: _Extras | None):
        self._paths = [str(p) for p in paths]
        self._extras = extras
        self._last = None  # (i, image): CleanVision reads item 0 once to find the image in it

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: int):
        if self._last is not None and self._last[0] == i:
            return (self._last[1],)
        with Image.open(self._paths[i]) as f:
            image = f.copy()
        if self._extras is not None:
            self._extras.store(i, image)
        self._last = (i, image)
        return (image,)

    # CleanVision's worker processes get the dataset with every chunk of items: one string
    # pickles far faster than a list of 150,000, and the last image stays behind.
    def __getstate__(self):
        return {"paths": "\0".join(self._paths), "extras": self._extras}

    def __setstate__(self, state):
        self._paths = state["paths"].split("\0")
        self._extras, self._last = state["extras"], None


class _Extras:
    """Per-image results computed from the image CleanVision decoded, in a memory-mapped file
    (one fixed-size record an image) that its worker processes write and the caller reads."""

    def __init__(self, path: Path, n: int, hashes: dict[str, dict], grey: bool):
        self.path, self.n, self.hashes, self.grey = path, n, hashes, grey
        self._records = None

    @classmethod
    def make(cls, folder: Path, n: int, params: dict) -> _Extras:
        from cleanvision.issue_managers.duplicate_issue_manager import DuplicateIssueManager

        manager = DuplicateIssueManager()  # its default hash per type, as its own pass uses
        manager.update_params(params)
        # exact duplicates are always hashed: near-duplicate sets that are exact ones are dropped
        types = [t for t in DUPLICATE_TYPES if t in params or t == "exact_duplicates"]
        hashes = {t: manager.params[t] for t in types} if set(params) & set(DUPLICATE_TYPES) else {}
        extras = cls(folder / "extras.bin", n, hashes, "grayscale" in params)
        np.memmap(extras.path, dtype=extras._dtype(), mode="w+", shape=(max(n, 1),)).flush()
        return extras

    def _dtype(self):
        return np.dtype([("done", "u1"), ("grey", "u1")] + [(t, "S64") for t in self.hashes])

    def store(self, i: int, image: Image.Image) -> None:
        from cleanvision.issue_managers.duplicate_issue_manager import get_hash

        if self._records is None:  # opened in each process that reads images
            self._records = np.memmap(self.path, dtype=self._dtype(), mode="r+")
        rec = self._records[i]
        for t, params in self.hashes.items():
            rec[t] = get_hash(image, params).encode()
        rec["grey"] = self.grey and is_grayscale(image)
        rec["done"] = 1

    def read(self) -> np.ndarray:
        records = np.array(np.memmap(self.path, dtype=self._dtype(), mode="r")[: self.n])
        assert records["done"].all(), "CleanVision skipped images"
        return records

    def __getstate__(self):
        return {**self.__dict__, "_records": None}


def _duplicate_sets(records: np.ndarray, types: list[str]) -> dict[str, list[list[int]]]:
    """CleanVision's duplicate sets from the stored hashes: the rows sharing a hash, in row
    order, sets in order of first row; near-duplicate sets equal to an exact set are dropped."""
    found = {}
    for t in [t for t in records.dtype.names if t in DUPLICATE_TYPES]:
        rows: dict[bytes, list[int]] = {}
        for i, h in enumerate(records[t]):
            rows.setdefault(bytes(h), []).append(i)
        found[t] = [s for s in rows.values() if len(s) > 1]
    if "near_duplicates" in found:
        found["near_duplicates"] = [
            s for s in found["near_duplicates"] if s not in found["exact_duplicates"]
        ]
    return {t: found[t] for t in types}


def _duplicate_columns(sets: dict, n: int, types: list[str]) -> pd.DataFrame:
    """CleanVision's columns for duplicate types: score 1 / set size (1 outside a set)."""
    columns = {}
    for t in types:
        score = np.ones(n)
        for s in sets[t]:
            score[s] = 1.0 / len(s)
        columns[f"{t}_score"] = score
        columns[f"is_{t}_issue"] = score != 1
    return pd.DataFrame(columns)


def _mark_grayscale(issues: pd.DataFrame, grey: list[str]) -> None:
    """Flag grey banners whatever their mode (``codec.is_grayscale``) in CleanVision's columns.

    CleanVision's grayscale check reads the file's mode, so a grey banner saved as RGB (R = G =
    B, as every downloaded banner is stored) is never flagged; here its score becomes 0.
    """
    issues.loc[grey, "is_grayscale_issue"] = True
    issues.loc[grey, "grayscale_score"] = 0.0
