"""From CleanVision's findings and the embeddings to the audit's tables: duplicate groups (the
lowest app id kept), the embedding columns and each excluded app's reasons (``audit.audit_banners``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..search import duplicates_and_nearest
from .cleanvision import DUPLICATE_TYPES, PROPERTY_TYPES

EMBEDDING_DUPLICATES = "embedding_duplicates"


def issues_table(ids: list[int], found: pd.DataFrame, sets: dict, params: dict):
    """``(issues, groups)``: CleanVision's columns for ``ids`` (unaudited ones not flagged, NaN
    scores) and its duplicate groups, each sorted, kept id first."""
    issues = pd.DataFrame({"app_id": np.array(ids, np.int64)})
    groups: dict[str, list[list[int]]] = {}
    for t in params:
        is_col, score_col = f"is_{t}_issue", f"{t}_score"
        issues[is_col] = found[is_col].astype(bool).reindex(ids, fill_value=False).to_numpy()
        issues[score_col] = found[score_col].reindex(ids).astype(float).to_numpy()
        if t in DUPLICATE_TYPES:
            groups[t] = sorted_groups(sets[t])
            issues[f"{t}_group"] = group_column(groups[t], issues)
    return issues, groups


def embedding_duplicates(issues, emb, clean: list[int], threshold) -> list[list[int]]:
    """Duplicate groups of the ``clean`` apps by cosine; fills the embedding columns of ``issues``.

    Apps with a property issue stay out: dark, flat or blank banners all look alike to a ViT and
    would chain unrelated games into one group (they are excluded anyway).
    """

    at = {i: r for r, i in enumerate(emb.ids)}
    clean = [i for i in clean if i in at]
    vectors = emb.vectors[[at[i] for i in clean]]
    found, scores, nearest = duplicates_and_nearest(vectors, threshold)
    groups = sorted_groups([[clean[r] for r in g] for g in found])
    kept = group_column(groups, issues)
    issues[f"is_{EMBEDDING_DUPLICATES}_issue"] = kept.notna().to_numpy()
    issues[f"{EMBEDDING_DUPLICATES}_group"] = kept
    issues["embedding_nearest_id"] = pd.array([pd.NA] * len(issues), dtype="Int64")
    issues["embedding_nearest_cosine"] = np.full(len(issues), np.nan, np.float32)
    if len(clean) > 1:
        row = {int(a): r for r, a in enumerate(issues["app_id"])}
        rows = [row[i] for i in clean]
        issues.loc[rows, "embedding_nearest_id"] = [clean[r] for r in nearest]
        issues.loc[rows, "embedding_nearest_cosine"] = scores
    return groups


def sorted_groups(groups: list[list[int]]) -> list[list[int]]:
    groups = [sorted(g) for g in groups if len(g) > 1]
    return sorted(groups, key=lambda g: g[0])


def group_column(groups: list[list[int]], issues: pd.DataFrame) -> pd.Series:
    """The kept id of each row's group (Int64, NA outside every group)."""
    row = {int(a): r for r, a in enumerate(issues["app_id"])}
    out = pd.Series(pd.array([pd.NA] * len(issues), dtype="Int64"))
    for g in groups:
        out.iloc[[row[i] for i in g]] = int(g[0])
    return out


def exclusion_reasons(issues: pd.DataFrame, params, groups, bad) -> dict[int, list[str]]:
    reasons: dict[int, list[str]] = {i: ["unreadable"] for i in bad}
    ids = issues["app_id"].tolist()
    for t in (t for t in params if t in PROPERTY_TYPES):
        for i in issues.loc[issues[f"is_{t}_issue"], "app_id"].tolist():
            reasons.setdefault(i, []).append(t)
    for t, kind in zip((*DUPLICATE_TYPES, EMBEDDING_DUPLICATES), ("exact", "near", "embedding")):
        for g in groups.get(t, []):
            for i in g[1:]:
                have = reasons.setdefault(i, [])
                if not any(r.endswith(f"_duplicate_of:{g[0]}") for r in have):
                    have.append(f"{kind}_duplicate_of:{g[0]}")
    assert set(reasons) <= set(ids)
    return {i: reasons[i] for i in sorted(reasons) if reasons[i]}
