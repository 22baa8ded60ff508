"""A data folder made by an earlier release reads as it is: nothing re-embedded or recomputed.

``fixtures/release-c72f2a9`` was written by the code at c72f2a9, before the package moved into stage
folders (``fixtures/make_release_folder.py`` records how): 12 fake Steam games with banners,
manifest, metadata, audit, one embedding cache, matches, evaluation and a map.
"""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import steam_dinov2 as sd

FIXTURE = Path(__file__).parent / "fixtures" / "release-c72f2a9"
SETTING = "dinov2_vits14__crop256__cls__random"
IDS = set(range(10, 130, 10))


@pytest.fixture
def old(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    return data


def _stamps(data: Path) -> dict[str, int]:
    return {str(p.relative_to(data)): p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}


def test_the_old_folder_is_read_without_recomputing_anything(old):
    before = _stamps(old)
    setting = sd.Setting.create("dinov2_vits14", "crop256", "cls", pretrained=False)
    assert setting.name == SETTING
    emb = sd.embed_folder(None, old, setting=setting, progress=False)
    assert (emb.embedded, emb.reused, emb.dropped) == (0, 12, 0)
    assert set(emb.ids) == IDS and emb.vectors.shape == (12, 384)
    assert set(sd.load_embeddings(old, SETTING).ids) == IDS

    exclusions = sd.load_exclusions(old)
    assert exclusions and set(exclusions) <= IDS  # the fixture's grey banners
    audit = sd.summarize_audit(old)
    assert "all audited" in set(audit.issue_type)
    assert len(sd.read_manifest(old)) == 12 and len(sd.load_names(old)) == 12

    game_map = sd.map_catalog(old, SETTING)
    stored = pd.read_parquet(FIXTURE / "maps" / SETTING / "layout.parquet")
    assert list(game_map["x"]) == list(stored["x"])

    # The copy piece's old key was the banners' mtimes, which no clone keeps: copies=0 here; the
    # test below shows the new key (content) surviving a copy of the folder.
    evaluation = sd.evaluate_settings(old, k=10, copies=0, progress=False)
    assert set(evaluation.summary["setting"]) == {SETTING}
    # Reading is not recomputing: the map is untouched. The embedding cache records new file
    # stamps (a clone has new mtimes) under the same generation, with the same vectors, so every
    # table keyed by it stays valid. The evaluation pieces were scored with the definitions
    # before ranx's (and without the audit's exclusions): computed once more, then kept.
    after = _stamps(old)
    derived = ("maps/", "banners/", "matches/", "audit/")
    rewritten = [n for n, t in before.items() if n.startswith(derived) and after.get(n) != t]
    assert not rewritten, rewritten
    assert (evaluation.summary["n_excluded"] == len(exclusions)).all()
    sd.evaluate_settings(old, k=10, copies=0, progress=False)
    again = _stamps(old)
    pieces = [n for n in after if n.startswith("evaluation/cache/")]
    assert pieces and all(again[n] == after[n] for n in pieces)
    cache = old / "embeddings" / SETTING
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        p.name for p in (FIXTURE / "embeddings" / SETTING).iterdir()
    )
    vectors = next(cache.glob("vectors-*.npy")).name
    assert (cache / vectors).read_bytes() == (
        FIXTURE / "embeddings" / SETTING / vectors
    ).read_bytes()


def test_copy_scores_survive_new_mtimes(old):
    """A Drive round trip or a clone gives every banner a new mtime: same bytes, same scores."""
    sd.evaluate_settings(old, k=10, truths=["copy"], copies=4)
    piece = next((old / "evaluation" / "cache" / SETTING).glob("copy.parquet"))
    stamp = piece.stat().st_mtime_ns
    for banner in (old / "banners").iterdir():
        os.utime(banner, ns=(banner.stat().st_atime_ns, banner.stat().st_mtime_ns + 10**9))
    sd.evaluate_settings(old, k=10, truths=["copy"], copies=4)
    assert piece.stat().st_mtime_ns == stamp
    # ... and a changed banner is scored again.
    first = sorted((old / "banners").iterdir())[0]
    first.write_bytes(first.read_bytes() + b"\0")
    sd.evaluate_settings(old, k=10, truths=["copy"], copies=4)
    assert piece.stat().st_mtime_ns != stamp
