"""Audit stage: CleanVision issues plus embedding near-duplicates -> the exclusion list.

Reads the banners the manifest lists as ``ok`` and writes, under ``DATA/audit/``: ``cleanvision/``
(CleanVision's results as plain parquet and JSON, reused while the files and options are
unchanged; never a pickle, since a data folder may come from someone else),
``issues.parquet`` (one row per app) and ``exclusions.json`` (``{app_id: [reasons...]}``), which
the match stage applies: an excluded app is never anyone's neighbour.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import layout
from .manifest import collection_images

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


@dataclass(frozen=True)
class Audit:
    """What ``audit_banners`` found; the same tables are on disk under ``DATA/audit/``.

    Attributes:
        issues: one row per audited app (see ``audit_banners``).
        exclusions: ``{app_id: [reasons...]}``, app ids as str, sorted numerically.
        groups: ``{duplicate type: [[app_id, ...], ...]}``, each group sorted, its first id kept.
        reused: True when CleanVision's results were loaded from disk, not recomputed.
        notes: what the caller must know about this audit (e.g. a step skipped, and why).
    """

    issues: pd.DataFrame
    exclusions: dict[str, list[str]]
    groups: dict[str, list[list[str]]]
    reused: bool
    notes: tuple[str, ...] = ()


def _audit_images(data: str | os.PathLike) -> dict[str, Path]:
    """``{app_id: banner}`` (ids as str) of the collection (``manifest.collection_images``)."""
    return {str(a): p for a, p in collection_images(data).items()}


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


def _run_cleanvision(data, images: dict[str, Path], params: dict, n_jobs):
    """CleanVision over ``images``; its results are saved under ``DATA/audit/cleanvision/`` as
    plain data and read back while their key (files with size and mtime, issue types, versions)
    is unchanged. Nothing there is ever unpickled: the folder may come from someone else.

    Returns ``(issues, sets, reused, broken)``: issues, CleanVision's table indexed by app id;
    sets, ``{duplicate type: [[app_id, ...], ...]}``; broken, the ids it could not decode.
    """
    import cleanvision

    stamps = {i: [p.stat().st_size, p.stat().st_mtime_ns] for i, p in images.items()}
    key = {"cleanvision": cleanvision.__version__, "pandas": pd.__version__, "issue_types": params}
    key["files"] = hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest()
    saved = _read_key(data)
    if saved.get("key") == key and set(saved["broken"]) <= set(images):
        loaded = _read_saved_cleanvision(data, images, params, saved["broken"])
        if loaded is not None:
            return (*loaded, True, saved["broken"])
    issues, sets, broken = _find_issues(images, params, n_jobs)
    folder = layout.cleanvision_dir(data)
    with layout.atomic_dir(folder) as tmp:
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


def _find_issues(images: dict[str, Path], params: dict, n_jobs):
    from cleanvision import Imagelab

    def run(paths):
        lab = Imagelab(filepaths=[str(p) for p in paths], verbose=False)
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
        broken = [i for i, p in images.items() if not _readable(p, decode=True)]
        if not broken or len(broken) == len(images):
            raise
        logger.warning("%d banners cannot be decoded: %s", len(broken), ", ".join(broken[:10]))
        issues, sets = run(p for i, p in images.items() if i not in set(broken))
    return issues, sets, broken


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
    random_weights_duplicates: bool = False,
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
        random_weights_duplicates: find embedding near duplicates even with random weights. Off
            by default: a random ViT maps unrelated banners close together (at the default
            threshold it excluded 101 of 147 banners), so the step is skipped with a warning and
            a note in ``Audit.notes``.

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
    emb, notes = None, []
    if near_dup_threshold is not None and _random_weights(model, pretrained, weights):
        if random_weights_duplicates:
            notes.append(
                "embedding near duplicates found with RANDOM weights: they are not meaningful"
            )
        else:
            notes.append(
                "embedding near duplicates skipped: the model has random weights, which would "
                "exclude unrelated banners (pass random_weights_duplicates=True to force)"
            )
            near_dup_threshold = None
        logger.warning("audit: %s", notes[-1])
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
    found, sets, reused, broken = _run_cleanvision(data, good, params, n_jobs)
    bad += broken
    good = {i: p for i, p in good.items() if i not in set(broken)}

    issues = pd.DataFrame({"app_id": np.array([int(i) for i in images], np.int64)})
    row = {i: r for r, i in enumerate(images)}
    groups: dict[str, list[list[str]]] = {}
    for t in params:
        is_col, score_col = f"is_{t}_issue", f"{t}_score"
        issues[is_col] = (
            found[is_col].astype(bool).reindex(list(images), fill_value=False).to_numpy()
        )
        issues[score_col] = found[score_col].reindex(list(images)).astype(float).to_numpy()
        if t in DUPLICATE_TYPES:
            groups[t] = _sorted_groups(sets[t])
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
    return Audit(issues, exclusions, groups, reused, tuple(notes))


def _random_weights(model, pretrained: bool, weights) -> bool:
    if isinstance(model, str):
        return not pretrained and weights is None
    return model.steam_info["weights_tag"] == "random"


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
    A damaged file raises ValueError naming it and the fix (rerun the audit or delete it).
    """
    path = layout.exclusions_path(data)
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        found = e
    ok = isinstance(found, dict) and all(
        isinstance(i, str)
        and i.isdigit()
        and isinstance(r, list)
        and all(isinstance(x, str) for x in r)
        for i, r in found.items()
    )
    if not ok:
        why = f"not JSON ({found})" if isinstance(found, Exception) else "not {app_id: [reasons]}"
        raise ValueError(
            f"exclusion list {path} is damaged ({why}): rerun `audit`, or delete the file to "
            "apply no exclusions"
        )
    return found


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
