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

import pandas as pd

from ..core import files, layout
from ..core.files import OWN_ID_BASE
from ..core.manifest import collection_images
from ..embedding.embed import embed_folder
from ..embedding.setting import RANDOM, Setting, as_setting
from .cleanvision import ISSUE_TYPES, PROPERTY_TYPES, issue_params, readable, run_cleanvision
from .groups import (
    EMBEDDING_DUPLICATES,
    embedding_duplicates,
    exclusion_reasons,
    issues_table,
)

logger = logging.getLogger(__name__)

# Cosine of DINOv2 CLS vectors at or above which two banners are the same picture. A re-encoded,
# resized or lightly cropped copy moves a DINOv2 CLS vector very little (its training augments with
# exactly these; DINO's copy-detection eval matches copies by this cosine), while sequels and
# franchise entries that reuse key art under a new logo, the matches this product exists to show,
# must stay: 0.95 sits between the two. Not yet measured on the catalogue with pretrained weights:
# check the ``embedding_nearest_cosine`` column and pass another value if its histogram disagrees.
NEAR_DUP_THRESHOLD = 0.95
# CleanVision checks that only make sense for Steam's banners, all 2:3 at one of a few sizes and
# nearly never grey: in a folder of one's own pictures (import-folder), landscape, square, small
# and black-and-white pictures are normal, and these checks excluded every landscape one.
STEAM_ONLY_TYPES = ("odd_aspect_ratio", "odd_size", "grayscale")


@dataclass(frozen=True)
class Audit:
    """What ``audit_banners`` found; the same tables are on disk under ``DATA/audit/``.

    Attributes:
        issues: one row per audited app (see ``audit_banners``).
        exclusions: ``{app_id: [reasons...]}``, app ids as str, sorted numerically.
        groups: ``{duplicate type: [[app_id, ...], ...]}``, each group sorted, its first id kept.
        reused: True when CleanVision's results were loaded from disk, not recomputed.
        notes: what the caller must know about this audit (e.g. a step skipped, and why).
        rules: one row per CleanVision check: ``rule``, ``applied`` (bool), ``why`` (str).
    """

    issues: pd.DataFrame
    exclusions: dict[int, list[str]]
    groups: dict[str, list[list[int]]]
    reused: bool
    notes: tuple[str, ...] = ()
    rules: pd.DataFrame | None = None


def _audit_images(data: str | os.PathLike) -> dict[int, Path]:
    """``{app_id: banner}`` of the collection (``manifest.collection_images``)."""
    images = collection_images(data)
    if not images:
        raise ValueError(f"no banners to audit in {data}; run `download` first")
    return images


@dataclass(frozen=True)
class AuditRun:
    """How ``audit_banners`` runs, not what it finds.

    Attributes:
        batch_size, device: the embedding step's run options (as for ``embed_folder``).
        n_jobs: CleanVision worker processes (None: one per physical core).
        progress: show progress bars (tqdm).
    """

    batch_size: int | None = None
    device: str = "auto"
    n_jobs: int | None = None
    progress: bool = True


def audit_banners(
    data: str | os.PathLike,
    *,
    setting: Setting | str | None = None,
    issue_types=None,
    rules: dict[str, bool] | None = None,
    thresholds: dict[str, float] | None = None,
    near_dup_threshold: float | None = NEAR_DUP_THRESHOLD,
    random_weights_duplicates: bool = False,
    run: AuditRun = AuditRun(),
) -> Audit:
    """Audit the banners: CleanVision issues, embedding near-duplicates, the exclusion list.

    An app with an issue of the selected types is excluded with the type as its reason; in each
    duplicate group (CleanVision's exact and near ones; embedding groups among the apps without a
    property issue) the lowest id stays, the others get ``<exact|near|embedding>_duplicate_of:<kept
    id>`` (once per kept id); unreadable files get ``unreadable``.

    Args:
        data: the data folder (banners and manifest in, ``audit/`` out).
        setting: the embedding ``Setting`` (or its name; None: the default); its cache is reused.
        issue_types: CleanVision types to check, a subset of ``cleanvision.ISSUE_TYPES``. Default
            (None): all of them for Steam banners; for a collection with own images (ids from
            ``import_folder``) all but ``STEAM_ONLY_TYPES``, which are made for Steam's 2:3
            banners (``choose_rules``).
        rules: ``{type: True | False}`` switches single checks on or off over ``issue_types``
            (e.g. ``{"grayscale": True}`` for a folder of own pictures that should be in colour).
        thresholds: ``{property type: threshold}`` on CleanVision's score (flagged below it;
            scores in [0, 1], lower is worse); CleanVision's defaults otherwise.
        near_dup_threshold: cosine at or above which two banners are embedding duplicates
            (chained); None skips the embedding step.
        random_weights_duplicates: find embedding near duplicates even with random weights. Off
            by default: a random ViT maps unrelated banners close together (at the default
            threshold it excluded 101 of 147), so the step is skipped (warning, ``Audit.notes``).
        run: batch size, device, CleanVision workers, progress (``AuditRun``).

    Returns:
        Audit. ``issues`` has ``app_id`` (int64); per selected type ``is_<type>_issue`` (bool),
        ``<type>_score`` (float, [0, 1], lower is worse) and, for duplicate types,
        ``<type>_group`` (Int64, the kept id of the app's group); ``embedding_nearest_id`` and
        ``embedding_nearest_cosine`` (float32, to the nearest app without a property issue, NaN
        for apps with one); ``excluded`` (bool).
    """
    choose_rules([], issue_types, rules)  # the options are checked before the data folder
    issue_params(issue_types, thresholds)
    setting = as_setting(setting)
    threshold, notes = _embedding_threshold(setting, near_dup_threshold, random_weights_duplicates)
    images = _audit_images(data)
    table = choose_rules(list(images), issue_types, rules)
    params = issue_params(table["rule"][table["applied"]].tolist(), thresholds)
    for rule, why in zip(table["rule"][~table["applied"]], table["why"][~table["applied"]]):
        logger.info("audit rule %s off: %s", rule, why)
    emb = None if threshold is None else _embed_banners(data, setting, run)
    issues, groups, bad, reused = _find_issues(data, images, emb, params, run)
    if emb is not None:
        groups[EMBEDDING_DUPLICATES] = _embedding_groups(issues, emb, params, bad, threshold)
    exclusions = exclusion_reasons(issues, params, groups, bad)
    issues["excluded"] = issues["app_id"].isin(set(exclusions))
    _write_audit(data, issues, exclusions)
    logger.debug("audit: %d of %d banners excluded", len(exclusions), len(images))  # returned too
    return Audit(issues, exclusions, groups, reused, tuple(notes), table)


def choose_rules(ids, issue_types=None, rules: dict[str, bool] | None = None) -> pd.DataFrame:
    """Which CleanVision checks an audit of ``ids`` applies, and why.

    Args:
        ids: the audited image ids (int); own images are those from ``files.OWN_ID_BASE`` on.
        issue_types: the checks to apply (None: the collection's defaults, see ``audit_banners``).
        rules: ``{type: bool}`` switching single checks on or off over those.

    Returns:
        DataFrame with one row per ``ISSUE_TYPES`` entry: ``rule``, ``applied`` (bool), ``why``.
    """
    for name, value in (rules or {}).items():
        if name not in ISSUE_TYPES:
            raise ValueError(f"unknown rule {name!r}; available: {', '.join(ISSUE_TYPES)}")
        if not isinstance(value, bool):
            raise ValueError(f"rule {name!r} is True (on) or False (off), got {value!r}")
    issue_params(issue_types, None)  # unknown types named here
    own = sum(int(i) >= OWN_ID_BASE for i in ids)
    rows = []
    for rule in ISSUE_TYPES:
        if rules and rule in rules:
            on, why = rules[rule], f"switched {'on' if rules[rule] else 'off'} by you (rules)"
        elif issue_types is not None:
            on = rule in issue_types
            why = "chosen in issue_types" if on else "not in issue_types"
        elif own and rule in STEAM_ONLY_TYPES:
            on = False
            why = (
                f"off by default: {own} of {len(ids)} images are own images (import-folder), "
                "where other shapes, sizes and grey pictures are normal; this check is made for "
                "Steam's 2:3 banners"
            )
        else:
            on = True
            what = "own images" if own == len(ids) else "Steam banners" if not own else "images"
            why = f"default for {what}"
        rows.append((rule, on, why))
    return pd.DataFrame(rows, columns=["rule", "applied", "why"])


def _embed_banners(data, setting: Setting, run: AuditRun):

    options = {"batch_size": run.batch_size, "device": run.device, "progress": run.progress}
    return embed_folder(layout.banners_dir(data), data, setting=setting, **options)


def _embedding_groups(issues: pd.DataFrame, emb, params: dict, bad: list[int], threshold):
    """Embedding duplicate groups among the readable apps without a property issue."""
    flagged = issues[[f"is_{t}_issue" for t in params if t in PROPERTY_TYPES]].any(axis=1)
    clean = [int(i) for i, f in zip(issues["app_id"], flagged) if not f and i not in set(bad)]
    return embedding_duplicates(issues, emb, clean, threshold)


def _find_issues(data, images: dict[int, Path], emb, params: dict, run: AuditRun):
    """``(issues, groups, bad ids, reused)``: CleanVision over the readable banners."""
    bad = [i for i, p in images.items() if (emb is not None and i in emb.errors) or not readable(p)]
    if len(bad) == len(images):
        raise ValueError(f"none of the {len(images)} banners in {data} can be read")
    good = {i: p for i, p in images.items() if i not in set(bad)}
    found, sets, reused, broken = run_cleanvision(
        data, good, params, run.n_jobs, progress=run.progress
    )
    issues, groups = issues_table(list(images), found, sets, params)
    return issues, groups, bad + broken, reused


def _write_audit(data, issues: pd.DataFrame, exclusions: dict) -> None:
    with files.atomic_path(layout.issues_path(data)) as tmp:
        issues.to_parquet(tmp, index=False)
    files.write_text_atomic(layout.exclusions_path(data), json.dumps(exclusions, indent=1))


def _embedding_threshold(setting: Setting, threshold: float | None, force_random: bool):
    """``(threshold or None, notes)``: the embedding step is skipped when no threshold is given
    or (unless forced) the setting's weights are random."""
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ValueError(f"near_dup_threshold is a cosine in [-1, 1], got {threshold}")
    if threshold is None or setting.weights != RANDOM:
        return threshold, []
    if force_random:
        note = "embedding near duplicates found with RANDOM weights: they are not meaningful"
    else:
        note = (
            "embedding near duplicates skipped: the model has random weights, which would "
            "exclude unrelated banners (--random-weights-duplicates, or "
            "random_weights_duplicates=True, forces them)"
        )
        threshold = None
    logger.warning("audit: %s", note)  # loud for every caller; also in Audit.notes
    return threshold, [note]


def load_exclusions(data: str | os.PathLike) -> dict[int, list[str]]:
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
    return {int(i): r for i, r in found.items()}  # JSON's keys are strings; ids are ints


ALL_AUDITED = "all audited"  # summarize_audit's last row


def summarize_audit(data: str | os.PathLike) -> pd.DataFrame:
    """Counts per issue type: ``issue_type``, ``images`` (flagged), ``excluded`` (for that reason).

    The last row, ``all audited``, counts every banner audited and those excluded for any
    reason (its ``images`` is not a count of flagged banners: one with no issue counts too).
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
    rows.append((ALL_AUDITED, len(issues), int(issues["excluded"].sum())))
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
