"""The audit's CleanVision call against CleanVision's own run over the same files: same issues and
duplicate sets, and each file decoded once instead of once per CleanVision pass."""

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile
from synthetic import make_banner

from steam_dinov2.audit import cleanvision as cv


def _folder(tmp_path: Path) -> dict[str, Path]:
    """12 banners: colour ones, a byte copy, a resized re-encoded copy (same phash), a dark one,
    a grey one saved as RGB, an odd size."""
    paths = {}
    for i in range(8):
        paths[str(10 + i)] = tmp_path / f"{10 + i}.jpg"
        make_banner(i).save(paths[str(10 + i)], quality=95)
    paths["50"] = tmp_path / "50.jpg"
    paths["50"].write_bytes(paths["10"].read_bytes())
    paths["60"] = tmp_path / "60.jpg"
    make_banner(0).resize((200, 300)).resize((224, 336)).save(paths["60"], quality=80)
    paths["70"] = tmp_path / "70.jpg"
    Image.fromarray(np.full((336, 224, 3), (30, 4, 40), np.uint8)).save(paths["70"])
    paths["80"] = tmp_path / "80.jpg"
    make_banner(3).convert("L").convert("RGB").save(paths["80"], quality=95)
    paths["90"] = tmp_path / "90.png"
    make_banner(5, size=(500, 300)).save(paths["90"])
    return paths


@pytest.fixture
def decodes(monkeypatch):
    """Counts decodes by file name: a load that reads pixel data (``tile`` set)."""
    counts = Counter()
    real = ImageFile.ImageFile.load

    def load(self):
        if getattr(self, "tile", None):
            counts[Path(self.filename).stem] += 1
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return counts


@pytest.mark.parametrize("types", [None, ["exact_duplicates", "near_duplicates"], ["dark"]])
def test_same_results_as_cleanvision_with_one_decode_a_file(tmp_path, decodes, types):
    from cleanvision import Imagelab

    paths = _folder(tmp_path)
    params = cv.issue_params(types, None)
    issues, sets, broken = cv._find_issues(paths, params, 1, False)
    assert broken == []
    assert decodes == Counter({i: 1 for i in paths})

    lab = Imagelab(filepaths=[str(p) for p in paths.values()], verbose=False)
    lab.find_issues(params, n_jobs=1, verbose=False)
    want = lab.issues.rename(index=lambda p: Path(p).stem)
    if "grayscale" in params:  # the one difference, on purpose: grey pixels in an RGB file
        assert not want.loc["80", "is_grayscale_issue"] and issues.loc["80", "is_grayscale_issue"]
        want.loc["80", ["is_grayscale_issue", "grayscale_score"]] = [True, 0.0]
    pd.testing.assert_frame_equal(issues, want, check_like=False)
    want_sets = {
        t: [[Path(p).stem for p in s] for s in lab.info[t]["sets"]]
        for t in params
        if t in cv.DUPLICATE_TYPES
    }
    assert sets == want_sets
    if types is None:  # the folder holds what each check is there for
        # 80 is 13 in grey: phash reads luminance only
        near = [["10", "50", "60"], ["13", "80"]]
        assert sets == {"exact_duplicates": [["10", "50"]], "near_duplicates": near}
        assert issues.loc["70", "is_dark_issue"] and issues.loc["90", "is_odd_size_issue"]


def test_worker_processes_give_the_same_results(tmp_path):
    paths = _folder(tmp_path)
    params = cv.issue_params(None, None)
    one = cv._find_issues(paths, params, 1, False)
    two = cv._find_issues(paths, params, 2, False)
    pd.testing.assert_frame_equal(one[0], two[0])
    assert one[1:] == two[1:]
