"""Audit stage: CleanVision issues plus embedding near-duplicates -> the exclusion list.

Reads the banners the manifest lists as ``ok`` and writes, under ``DATA/audit/``: ``cleanvision/``
(CleanVision's results as plain parquet and JSON, reused while the files and options are
unchanged; never a pickle, since a data folder may come from someone else),
``issues.parquet`` (one row per app) and ``exclusions.json`` (``{app_id: [reasons...]}``), which
the match stage applies: an excluded app is never anyone's neighbour.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import layout
from .audit_cleanvision import (  # noqa: F401 (the type names are public here too)
    DUPLICATE_TYPES,
    ISSUE_TYPES,
    PROPERTY_TYPES,
    issue_params,
    readable,
    run_cleanvision,
)
from .manifest import collection_images

logger = logging.getLogger(__name__)

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
    params = issue_params(issue_types, thresholds)
    if near_dup_threshold is not None and not -1.0 <= near_dup_threshold <= 1.0:
        raise ValueError(f"near_dup_threshold is a cosine in [-1, 1], got {near_dup_threshold}")
    images = _audit_images(data)
    if not images:
        raise ValueError(f"no banners to audit in {data}; run `download` first")
    setting = dict(model=model, preset=preset, pooling=pooling, pretrained=pretrained)
    setting |= dict(weights=weights, batch_size=batch_size, device=device, progress=progress)
    emb, near_dup_threshold, notes = _embed_for_audit(
        data, setting, near_dup_threshold, random_weights_duplicates
    )
    bad = [i for i, p in images.items() if (emb is not None and i in emb.errors) or not readable(p)]
    if len(bad) == len(images):
        raise ValueError(f"none of the {len(images)} banners in {data} can be read")
    good = {i: p for i, p in images.items() if i not in set(bad)}
    found, sets, reused, broken = run_cleanvision(data, good, params, n_jobs)
    bad += broken
    good = {i: p for i, p in good.items() if i not in set(broken)}
    issues, groups = _issues_table(list(images), found, sets, params)
    if emb is not None:
        flagged = issues[[f"is_{t}_issue" for t in params if t in PROPERTY_TYPES]].any(axis=1)
        clean = [i for i, f in zip(images, flagged) if not f and i in good]
        groups[EMBEDDING_DUPLICATES] = _embedding_duplicates(issues, emb, clean, near_dup_threshold)
    exclusions = _exclusions(issues, params, groups, bad)
    issues["excluded"] = issues["app_id"].astype(str).isin(set(exclusions))
    with layout.atomic_path(layout.issues_path(data)) as tmp:
        issues.to_parquet(tmp, index=False)
    layout.write_text_atomic(layout.exclusions_path(data), json.dumps(exclusions, indent=1))
    logger.debug("audit: %d of %d banners excluded", len(exclusions), len(images))  # returned too
    return Audit(issues, exclusions, groups, reused, tuple(notes))


def _embed_for_audit(data, setting: dict, threshold: float | None, force_random: bool):
    """``(embeddings or None, threshold or None, notes)``: the embedding step, skipped when no
    threshold is given or (unless forced) the weights are random."""
    notes = []
    random = _random_weights(setting["model"], setting["pretrained"], setting["weights"])
    if threshold is not None and random:
        if force_random:
            notes.append(
                "embedding near duplicates found with RANDOM weights: they are not meaningful"
            )
        else:
            notes.append(
                "embedding near duplicates skipped: the model has random weights, which would "
                "exclude unrelated banners (--random-weights-duplicates, or random_weights_duplicates=True, "
                "forces them)"
            )
            threshold = None
        logger.warning("audit: %s", notes[-1])  # loud for every caller; also in Audit.notes
    if threshold is None:
        return None, None, notes
    from .embed import embed_folder

    return embed_folder(layout.banners_dir(data), data, **setting), threshold, notes


def _issues_table(ids: list[str], found: pd.DataFrame, sets: dict, params: dict):
    """``(issues, groups)``: CleanVision's columns for ``ids`` (unaudited ones not flagged, NaN
    scores) and its duplicate groups, each sorted, kept id first."""
    issues = pd.DataFrame({"app_id": np.array([int(i) for i in ids], np.int64)})
    groups: dict[str, list[list[str]]] = {}
    for t in params:
        is_col, score_col = f"is_{t}_issue", f"{t}_score"
        issues[is_col] = found[is_col].astype(bool).reindex(ids, fill_value=False).to_numpy()
        issues[score_col] = found[score_col].reindex(ids).astype(float).to_numpy()
        if t in DUPLICATE_TYPES:
            groups[t] = _sorted_groups(sets[t])
            issues[f"{t}_group"] = _group_column(groups[t], issues)
    return issues, groups


def _random_weights(model, pretrained: bool, weights) -> bool:
    if isinstance(model, str):
        return not pretrained and weights is None
    from .models import model_info

    return model_info(model).weights_tag == "random"


def _embedding_duplicates(issues, emb, clean: list[str], threshold) -> list[list[str]]:
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
    kept = _group_column(groups, issues)
    issues[f"is_{EMBEDDING_DUPLICATES}_issue"] = kept.notna().to_numpy()
    issues[f"{EMBEDDING_DUPLICATES}_group"] = kept
    issues["embedding_nearest_id"] = pd.array([pd.NA] * len(issues), dtype="Int64")
    issues["embedding_nearest_cosine"] = np.full(len(issues), np.nan, np.float32)
    if len(clean) > 1:
        scores, nearest = search_index(
            build_index(vectors), vectors, k=1, self_rows=np.arange(len(clean))
        )
        row = {str(a): r for r, a in enumerate(issues["app_id"])}
        rows = [row[i] for i in clean]
        issues.loc[rows, "embedding_nearest_id"] = [int(clean[r]) for r in nearest[:, 0]]
        issues.loc[rows, "embedding_nearest_cosine"] = scores[:, 0]
    return groups


def _sorted_groups(groups: list[list[str]]) -> list[list[str]]:
    groups = [sorted(g, key=int) for g in groups if len(g) > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def _group_column(groups: list[list[str]], issues: pd.DataFrame) -> pd.Series:
    """The kept id of each row's group (Int64, NA outside every group)."""
    row = {str(a): r for r, a in enumerate(issues["app_id"])}
    out = pd.Series(pd.array([pd.NA] * len(issues), dtype="Int64"))
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
    issues = read_issues(data)
    reasons = [r.split(":")[0] for rs in load_exclusions(data).values() for r in rs]
    names = {"exact_duplicate_of": "exact_duplicates", "near_duplicate_of": "near_duplicates"}
    names["embedding_duplicate_of"] = EMBEDDING_DUPLICATES
    counted = pd.Series([names.get(r, r) for r in reasons], dtype=object).value_counts()
    rows = [
        (t, int(issues[f"is_{t}_issue"].sum()), int(counted.get(t, 0)))
        for t in audited_types(issues)
    ]
    rows.append(("any", len(issues), int(issues["excluded"].sum())))
    return pd.DataFrame(rows, columns=["issue_type", "images", "excluded"])


def audited_types(issues: pd.DataFrame) -> list[str]:
    """The issue types an ``issues`` table has columns for."""
    return [c[3:-6] for c in issues.columns if c.startswith("is_") and c.endswith("_issue")]


def read_issues(data) -> pd.DataFrame:
    """``DATA/audit/issues.parquet`` (see ``audit_banners``); ValueError when there is no audit."""
    path = layout.issues_path(data)
    if not path.is_file():
        raise ValueError(f"no audit in {data}; run `audit` first")
    return pd.read_parquet(path)


def __getattr__(name: str):  # plot_audit_examples moved to audit_plots.py; old imports still work
    if name == "plot_audit_examples":
        from .audit_plots import plot_audit_examples

        return plot_audit_examples
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
