"""Audit stage: CleanVision issues plus embedding near-duplicates -> the exclusion list.

Reads the banners the manifest lists as ``ok`` and writes, under ``DATA/audit/``: ``imagelab/``
(CleanVision's saved Imagelab, reused while the files and options are unchanged),
``issues.parquet`` (one row per app) and ``exclusions.json`` (``{app_id: [reasons...]}``), which
the match stage applies: an excluded app is never anyone's neighbour.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import layout
from .manifest import read_manifest

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
EMBEDDING_DUPLICATES = "embedding_duplicates"
# Cosine of DINOv2 CLS vectors at or above which two banners are the same picture. A re-encoded,
# resized or lightly cropped copy moves a DINOv2 CLS vector very little (its training augments with
# exactly these; DINO's copy-detection eval matches copies by this cosine), while sequels and
# franchise entries that reuse key art under a new logo, the matches this product exists to show,
# must stay: 0.95 sits between the two. Not yet measured on the catalogue with pretrained weights:
# check the ``embedding_nearest_cosine`` column and pass another value if its histogram disagrees.
NEAR_DUP_THRESHOLD = 0.95
_KEY_FILE = "steam_dinov2_key.json"


@dataclass(frozen=True)
class Audit:
    """What ``audit_banners`` found; the same tables are on disk under ``DATA/audit/``.

    Attributes:
        issues: one row per audited app (see ``audit_banners``).
        exclusions: ``{app_id: [reasons...]}``, app ids as str, sorted numerically.
        groups: ``{duplicate type: [[app_id, ...], ...]}``, each group sorted, its first id kept.
        reused: True when CleanVision's results were loaded from disk, not recomputed.
    """

    issues: pd.DataFrame
    exclusions: dict[str, list[str]]
    groups: dict[str, list[list[str]]]
    reused: bool


def _audit_images(data: str | os.PathLike) -> dict[str, Path]:
    """``{app_id: banner}`` for the manifest's ``ok`` rows, or every banner when there is none."""
    on_disk = layout.banner_files(data)  # valid ids, regular files inside banners/ only
    if layout.manifest_path(data).is_file():
        table = read_manifest(data)  # a damaged one: ValueError naming the file and the fix
        ids = table.loc[table["status"] == "ok", "app_id"].tolist()
    else:
        ids = list(on_disk)
    found = {}
    for i in ids:
        if i not in on_disk:
            logger.warning("manifest lists %s.jpg as ok but the file is missing", i)
        else:
            found[str(i)] = on_disk[i]
    return dict(sorted(found.items(), key=lambda kv: int(kv[0])))


def _readable(path: Path, *, decode: bool = False) -> bool:
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            return img.size[0] > 0 and img.size[1] > 0
    except Exception:
        return False


def _issue_params(issue_types, thresholds) -> dict[str, dict]:
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


def _run_imagelab(data, images: dict[str, Path], params: dict, n_jobs):
    """CleanVision's Imagelab over ``images``, loaded from ``DATA/audit/imagelab`` when its key
    (files with size and mtime, issue types, versions) is unchanged; else computed and saved.

    Returns ``(imagelab, reused, broken)``: broken lists the ids CleanVision could not decode.
    """
    import cleanvision
    from cleanvision import Imagelab

    stamps = {i: [p.stat().st_size, p.stat().st_mtime_ns] for i, p in images.items()}
    key = {"cleanvision": cleanvision.__version__, "pandas": pd.__version__, "issue_types": params}
    key["files"] = hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest()
    folder = layout.imagelab_dir(data)
    quiet = io.StringIO()  # Imagelab.save/load print unconditionally; library code never prints
    saved = json.loads((folder / _KEY_FILE).read_text()) if (folder / _KEY_FILE).is_file() else {}
    if saved.get("key") == key:
        try:
            with contextlib.redirect_stdout(quiet):
                return Imagelab.load(str(folder)), True, saved["broken"]
        except Exception as e:  # a damaged save is recomputed, never trusted
            logger.warning("could not load %s (%s); recomputing", folder, e)
    broken = []
    try:
        lab = Imagelab(filepaths=[str(p) for p in images.values()], verbose=False)
        lab.find_issues(params, n_jobs=n_jobs, verbose=False)
    except Exception:  # CleanVision stops at the first file it cannot decode: find them, go on
        broken = [i for i, p in images.items() if not _readable(p, decode=True)]
        if not broken or len(broken) == len(images):
            raise
        logger.warning("%d banners cannot be decoded: %s", len(broken), ", ".join(broken[:10]))
        paths = [str(p) for i, p in images.items() if i not in set(broken)]
        lab = Imagelab(filepaths=paths, verbose=False)
        lab.find_issues(params, n_jobs=n_jobs, verbose=False)
    with layout.atomic_dir(folder) as tmp, contextlib.redirect_stdout(quiet):
        lab.save(str(tmp))
        layout.write_text_atomic(tmp / _KEY_FILE, json.dumps({"key": key, "broken": broken}))
    return lab, False, broken


def audit_banners(
    data: str | os.PathLike,
    *,
    issue_types=None,
    thresholds: dict[str, float] | None = None,
    near_dup_threshold: float | None = NEAR_DUP_THRESHOLD,
    model="dinov2_vits14",
    preset: str = "crop256",
    pooling: str = "cls",
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    batch_size: int = 32,
    device: str = "auto",
    n_jobs: int | None = None,
    progress: bool = True,
) -> Audit:
    """Audit the banners: CleanVision issues, embedding near-duplicates, the exclusion list.

    Every app with an issue of the selected types is excluded, with the type as its reason. In each
    duplicate group (CleanVision's exact and near duplicates, and embedding groups found among the
    apps without a property issue) the lowest app id stays and the others are excluded with the
    reason ``<kind>_duplicate_of:<kept id>`` (kind: exact, near or embedding; a later kind is not
    repeated for the same kept id). Unreadable files are excluded as ``unreadable``.

    Args:
        data: the data folder (banners and manifest in, ``audit/`` out).
        issue_types: CleanVision types to check, a subset of ``ISSUE_TYPES`` (default: all).
        thresholds: ``{property type: threshold}`` on CleanVision's score (an image is flagged when
            its score, in [0, 1], lower is worse, is below it); CleanVision's defaults otherwise.
        near_dup_threshold: cosine at or above which two banners are embedding duplicates
            (chained); None skips the embedding step.
        model, preset, pooling, pretrained, weights, batch_size, device: the embedding setting,
            as for ``embed_folder``; its cache is reused.
        n_jobs: CleanVision worker processes (None: one per physical core).

    Returns:
        Audit. ``issues`` has ``app_id`` (int64); per selected type ``is_<type>_issue`` (bool),
        ``<type>_score`` (float, [0, 1], lower is worse) and, for duplicate types,
        ``<type>_group`` (Int64, the kept id of the app's group); ``embedding_nearest_id`` and
        ``embedding_nearest_cosine`` (float32, to the nearest app without a property issue, NaN
        for apps with one); ``excluded`` (bool).
    """
    params = _issue_params(issue_types, thresholds)
    if near_dup_threshold is not None and not -1.0 <= near_dup_threshold <= 1.0:
        raise ValueError(f"near_dup_threshold is a cosine in [-1, 1], got {near_dup_threshold}")
    images = _audit_images(data)
    if not images:
        raise ValueError(f"no banners to audit in {data}; run `download` first")
    emb = None
    if near_dup_threshold is not None:
        from .embed import embed_folder

        emb = embed_folder(
            layout.banners_dir(data),
            data,
            model=model,
            preset=preset,
            pooling=pooling,
            pretrained=pretrained,
            weights=weights,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
    bad = [
        i for i, p in images.items() if (emb is not None and i in emb.errors) or not _readable(p)
    ]
    if len(bad) == len(images):
        raise ValueError(f"none of the {len(images)} banners in {data} can be read")
    good = {i: p for i, p in images.items() if i not in set(bad)}
    lab, reused, broken = _run_imagelab(data, good, params, n_jobs)
    bad += broken
    good = {i: p for i, p in good.items() if i not in set(broken)}

    issues = pd.DataFrame({"app_id": np.array([int(i) for i in images], np.int64)})
    row = {i: r for r, i in enumerate(images)}
    found = lab.issues.rename(index=lambda p: Path(p).stem)
    groups: dict[str, list[list[str]]] = {}
    for t in params:
        is_col, score_col = f"is_{t}_issue", f"{t}_score"
        issues[is_col] = (
            found[is_col].astype(bool).reindex(list(images), fill_value=False).to_numpy()
        )
        issues[score_col] = found[score_col].reindex(list(images)).astype(float).to_numpy()
        if t in DUPLICATE_TYPES:
            sets = lab.info[t]["sets"]
            groups[t] = _sorted_groups([[Path(p).stem for p in s] for s in sets])
            issues[f"{t}_group"] = _group_column(groups[t], row, len(images))
    if emb is not None:
        flagged = issues[[f"is_{t}_issue" for t in params if t in PROPERTY_TYPES]].any(axis=1)
        clean = [i for i, f in zip(images, flagged) if not f and i in good]
        groups[EMBEDDING_DUPLICATES] = _embedding_duplicates(
            issues, emb, clean, row, near_dup_threshold
        )

    exclusions = _exclusions(issues, params, groups, bad)
    issues["excluded"] = issues["app_id"].astype(str).isin(set(exclusions))
    with layout.atomic_path(layout.issues_path(data)) as tmp:
        issues.to_parquet(tmp, index=False)
    layout.write_text_atomic(layout.exclusions_path(data), json.dumps(exclusions, indent=1))
    logger.debug("audit: %d of %d banners excluded", len(exclusions), len(images))  # returned too
    return Audit(issues, exclusions, groups, reused)


def _embedding_duplicates(issues, emb, clean: list[str], row, threshold) -> list[list[str]]:
    """Duplicate groups of the ``clean`` apps by cosine; fills the embedding columns of ``issues``.

    Apps with a property issue stay out: dark, flat or blank banners all look alike to a ViT and
    would chain unrelated games into one group (they are excluded anyway).
    """
    from .search import build_index, find_duplicate_groups, search_index

    at = {i: r for r, i in enumerate(emb.ids)}
    clean = [i for i in clean if i in at]
    vectors = emb.vectors[[at[i] for i in clean]]
    groups = _sorted_groups(
        [[clean[r] for r in g] for g in find_duplicate_groups(vectors, threshold)]
    )
    kept = _group_column(groups, row, len(issues))
    issues[f"is_{EMBEDDING_DUPLICATES}_issue"] = kept.notna().to_numpy()
    issues[f"{EMBEDDING_DUPLICATES}_group"] = kept
    issues["embedding_nearest_id"] = pd.array([pd.NA] * len(issues), dtype="Int64")
    issues["embedding_nearest_cosine"] = np.full(len(issues), np.nan, np.float32)
    if len(clean) > 1:
        scores, nearest = search_index(
            build_index(vectors), vectors, k=1, self_rows=np.arange(len(clean))
        )
        rows = [row[i] for i in clean]
        issues.loc[rows, "embedding_nearest_id"] = [int(clean[r]) for r in nearest[:, 0]]
        issues.loc[rows, "embedding_nearest_cosine"] = scores[:, 0]
    return groups


def _sorted_groups(groups: list[list[str]]) -> list[list[str]]:
    groups = [sorted(g, key=int) for g in groups if len(g) > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def _group_column(groups: list[list[str]], row: dict[str, int], n: int) -> pd.Series:
    out = pd.Series(pd.array([pd.NA] * n, dtype="Int64"))
    for g in groups:
        out.iloc[[row[i] for i in g]] = int(g[0])
    return out


def _exclusions(issues: pd.DataFrame, params, groups, bad) -> dict[str, list[str]]:
    reasons: dict[str, list[str]] = {i: ["unreadable"] for i in bad}
    ids = issues["app_id"].astype(str).tolist()
    for t in (t for t in params if t in PROPERTY_TYPES):
        for i in issues.loc[issues[f"is_{t}_issue"], "app_id"].astype(str):
            reasons.setdefault(i, []).append(t)
    for t, kind in zip((*DUPLICATE_TYPES, EMBEDDING_DUPLICATES), ("exact", "near", "embedding")):
        for g in groups.get(t, []):
            for i in g[1:]:
                have = reasons.setdefault(i, [])
                if not any(r.endswith(f"_duplicate_of:{g[0]}") for r in have):
                    have.append(f"{kind}_duplicate_of:{g[0]}")
    assert set(reasons) <= set(ids)
    return {i: reasons[i] for i in sorted(reasons, key=int) if reasons[i]}


def load_exclusions(data: str | os.PathLike) -> dict[str, list[str]]:
    """``{app_id: [reasons...]}`` from ``DATA/audit/exclusions.json``; {} when there is no audit.

    Pass it as ``exclude=`` to ``match_all`` or ``find_neighbors`` (only the keys are used).
    """
    path = layout.exclusions_path(data)
    return json.loads(path.read_text()) if path.is_file() else {}


def summarize_audit(data: str | os.PathLike) -> pd.DataFrame:
    """Counts per issue type: ``issue_type``, ``images`` (flagged), ``excluded`` (for that reason).

    The last row, ``any``, counts the apps excluded for any reason.
    """
    issues = _read_issues(data)
    reasons = [r.split(":")[0] for rs in load_exclusions(data).values() for r in rs]
    names = {"exact_duplicate_of": "exact_duplicates", "near_duplicate_of": "near_duplicates"}
    names["embedding_duplicate_of"] = EMBEDDING_DUPLICATES
    counted = pd.Series([names.get(r, r) for r in reasons], dtype=object).value_counts()
    rows = [
        (t, int(issues[f"is_{t}_issue"].sum()), int(counted.get(t, 0)))
        for t in _audited_types(issues)
    ]
    rows.append(("any", len(issues), int(issues["excluded"].sum())))
    return pd.DataFrame(rows, columns=["issue_type", "images", "excluded"])


def plot_audit_examples(data: str | os.PathLike, issue_type: str, *, n: int = 10, ncols: int = 5):
    """A grid of banners with one issue: the worst scores first, or duplicate groups (kept first).

    Returns:
        matplotlib Figure (empty grid when nothing was flagged).
    """
    from .plot import plot_image_grid

    issues = _read_issues(data)
    if issue_type not in _audited_types(issues):
        raise ValueError(
            f"issue type {issue_type!r} was not audited; available: "
            + ", ".join(_audited_types(issues))
        )
    hit = issues[issues[f"is_{issue_type}_issue"]]
    group = f"{issue_type}_group"
    if group in hit:
        hit = hit.sort_values([group, "app_id"]).head(n)
        titles = [
            f"{a}\n" + ("kept" if a == g else f"= {g}") for a, g in zip(hit.app_id, hit[group])
        ]
    else:
        hit = hit.sort_values(f"{issue_type}_score").head(n)
        titles = [f"{a}\n{s:.3f}" for a, s in zip(hit["app_id"], hit[f"{issue_type}_score"])]
    return plot_image_grid(
        [layout.banner_path(data, a) for a in hit["app_id"]], titles, ncols=ncols
    )


def _audited_types(issues: pd.DataFrame) -> list[str]:
    return [c[3:-6] for c in issues.columns if c.startswith("is_") and c.endswith("_issue")]


def _read_issues(data) -> pd.DataFrame:
    path = layout.issues_path(data)
    if not path.is_file():
        raise ValueError(f"no audit in {data}; run `audit` first")
    return pd.read_parquet(path)
