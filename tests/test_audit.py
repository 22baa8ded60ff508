"""Audit stage on generated banners with known defects: exact reasons per app id, offline."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter

from steam_dinov2 import load_model
from steam_dinov2.audit import audit
from steam_dinov2.audit.cleanvision import ISSUE_TYPES
from steam_dinov2.core import layout
from steam_dinov2.core.files import OWN_ID_BASE
from steam_dinov2.core.manifest import load_names, read_manifest, write_manifest
from steam_dinov2.embedding.embed import embed_folder
from steam_dinov2.embedding.setting import Setting
from steam_dinov2.search import match_all
from steam_dinov2.views.grids import plot_audit_examples

W, H = 224, 336
# Random-weight dinov2_vits14 on these banners (measured): unrelated pairs reach cosine 0.960, the
# re-encoded resized copy 0.99998, the cropped copy 0.9987. Pretrained weights use the default.
THRESHOLD = 0.98
RANDOM = Setting(weights="random")  # what the module's `model` fixture is
ONE_JOB = audit.AuditRun(n_jobs=1)
NORMAL_IDS = list(range(100, 130))
EXPECTED = {
    20: ["dark"],
    21: ["light"],
    22: ["blurry"],
    23: ["low_information"],
    24: ["grayscale"],
    25: ["odd_size"],
    26: ["odd_aspect_ratio", "odd_size"],  # every other banner is 224x336: any other size is odd
    27: ["unreadable"],  # HTML saved as .jpg
    28: ["unreadable"],  # truncated JPEG: the header reads, the pixels do not
    29: ["grayscale"],  # grey pixels saved as RGB (R = G = B): CleanVision's mode check misses it
    50: ["exact_duplicate_of:10"],  # byte copy: also a phash and an embedding duplicate of 10
    60: ["near_duplicate_of:10"],  # resized and re-encoded: same phash, and an embedding match
    70: ["embedding_duplicate_of:10"],  # cropped 5% and resized back: phash differs
    140: ["embedding_duplicate_of:30"],  # the original; its re-encoded copy has the lower id
}


def _normal(seed: int) -> Image.Image:
    """A varied, sharp, mid-brightness banner: stripes, checkers, blocks or rings, plus shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if seed % 4 == 0:
        a, p = rng.uniform(0, np.pi), rng.uniform(8, 40)
        t = (np.sin((xx * np.cos(a) + yy * np.sin(a)) / p * 2 * np.pi) + 1) / 2
    elif seed % 4 == 1:
        s = int(rng.integers(10, 50))
        t = ((xx // s + yy // s) % 2).astype(float)
    elif seed % 4 == 2:
        s = int(rng.integers(4, 24))
        t = np.kron(rng.random((H // s + 1, W // s + 1)), np.ones((s, s)))[:H, :W]
    else:
        cx, cy, p = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(6, 30)
        t = (np.sin(np.hypot(xx - cx, yy - cy) / p * 2 * np.pi) + 1) / 2
    img = Image.fromarray((c0 * t[..., None] + c1 * (1 - t[..., None])).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 10))):
        x0, y0 = int(rng.integers(0, W)), int(rng.integers(0, H))
        box = [x0, y0, x0 + int(rng.integers(20, 120)), y0 + int(rng.integers(20, 160))]
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return img


def _make_data(root) -> str:
    data = root / "data"
    folder = layout.banners_dir(data)
    folder.mkdir(parents=True)

    def save(app_id, img, quality=95):
        img.save(layout.banner_path(data, app_id), quality=quality)

    for i in NORMAL_IDS:
        save(i, _normal(i))
    original = _normal(7)
    save(10, original)
    shutil.copyfile(layout.banner_path(data, 10), layout.banner_path(data, 50))
    save(60, original.resize((200, 300), Image.BICUBIC).resize((W, H), Image.BICUBIC), 70)
    save(70, original.crop((12, 18, W - 12, H - 18)).resize((W, H), Image.BICUBIC), 90)
    save(140, _normal(8))
    save(30, _normal(8).crop((8, 12, W - 8, H - 12)).resize((W, H), Image.BICUBIC), 60)
    save(20, Image.fromarray((np.asarray(_normal(9)) * 0.1).astype(np.uint8)))
    light = 255 - (255 - np.asarray(_normal(11)).astype(float)) * 0.05
    save(21, Image.fromarray(light.astype(np.uint8)))
    # CleanVision's blur check reads PIL's FIND_EDGES, which leaves the 1-pixel border unfiltered:
    # a blurred banner is only "blurry" when its border is dark too, hence the vignette.
    yy, xx = np.mgrid[0:H, 0:W]
    vignette = (np.sin(np.pi * yy / (H - 1)) * np.sin(np.pi * xx / (W - 1)))[..., None]
    vignetted = Image.fromarray((np.asarray(_normal(12)) * vignette).astype(np.uint8))
    save(22, vignetted.filter(ImageFilter.GaussianBlur(6)))
    save(23, Image.new("RGB", (W, H), (90, 120, 160)))
    save(24, _normal(14).convert("L"))  # CleanVision's grayscale is the file's mode "L"
    save(29, _normal(17).convert("L").convert("RGB"))  # how a grey banner is downloaded
    save(25, _normal(13).resize((112, 168)))
    save(26, _normal(15).resize((150, 500)))
    layout.banner_path(data, 27).write_bytes(b"<html>not an image</html>")
    whole = layout.banner_path(data, 100).read_bytes()
    layout.banner_path(data, 28).write_bytes(whole[: len(whole) // 2])
    save(999, _normal(16).convert("L"))  # on disk but not ok in the manifest: never audited

    ok = sorted(int(p.stem) for p in folder.glob("*.jpg") if p.stem != "999")
    rows = [{"app_id": i, "status": "ok"} for i in ok]
    rows += [{"app_id": 999, "status": "error"}, {"app_id": 998, "status": "no_banner"}]
    pd.DataFrame(rows).to_parquet(layout.manifest_path(data), index=False)
    return str(data)


@pytest.fixture(scope="module")
def model():
    return load_model("dinov2_vits14", pretrained=False)


@pytest.fixture(scope="module")
def audited(tmp_path_factory, model):
    data = _make_data(tmp_path_factory.mktemp("audit"))
    result = audit.audit_banners(
        data,
        setting=RANDOM,
        near_dup_threshold=THRESHOLD,
        run=audit.AuditRun(n_jobs=1, progress=False),
        random_weights_duplicates=True,  # forced: the exact reasons are measured on these
    )
    return data, result


def test_exact_exclusion_reasons(audited, capsys):
    data, result = audited
    assert result.exclusions == EXPECTED
    assert audit.load_exclusions(data) == EXPECTED
    assert not result.reused
    issues = pd.read_parquet(layout.issues_path(data))
    manifest = pd.read_parquet(layout.manifest_path(data))
    assert issues["app_id"].tolist() == sorted(manifest.loc[manifest.status == "ok", "app_id"])
    assert set(issues.loc[issues.excluded, "app_id"]) == set(EXPECTED)
    for t in ISSUE_TYPES:
        assert issues[f"is_{t}_issue"].dtype == bool and f"{t}_score" in issues
    assert capsys.readouterr().out == ""  # library code never prints (CleanVision does)


def test_representative_is_lowest_id(audited):
    data, result = audited
    assert result.groups == {
        "exact_duplicates": [[10, 50]],
        "near_duplicates": [[10, 50, 60]],
        "embedding_duplicates": [[10, 50, 60, 70], [30, 140]],
    }
    issues = pd.read_parquet(layout.issues_path(data)).set_index("app_id")
    assert issues.loc[[10, 50, 60, 70], "embedding_duplicates_group"].tolist() == [10] * 4
    assert issues.loc[140, "embedding_duplicates_group"] == 30
    assert not issues.loc[[10, 30], "excluded"].any()
    assert issues.loc[70, "embedding_nearest_cosine"] >= THRESHOLD
    # Banners with a property issue are kept out of the embedding step.
    assert issues.loc[[20, 21, 22, 23], "embedding_nearest_cosine"].isna().all()


def test_match_never_returns_an_excluded_app(audited, model):
    data, _ = audited
    emb = embed_folder(layout.banners_dir(data), data, model=model, progress=False)
    excluded = audit.load_exclusions(data)
    table = match_all(emb, k=5, exclude=excluded, data=data, progress=False)
    assert not set(table["id"]) & set(excluded)
    assert {50, 70, 140} <= set(table["query_id"])  # still queryable
    everything = match_all(emb, k=5, progress=False)
    assert set(everything["id"]) & set(excluded)


def test_rerun_reuses_saved_cleanvision_results(tmp_path, monkeypatch):
    from cleanvision import Imagelab

    data = _make_data(tmp_path)
    calls = []
    real = Imagelab.find_issues
    monkeypatch.setattr(
        Imagelab, "find_issues", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    # CleanVision only (embedding cache reuse is embed's business), in 2 worker processes.
    kwargs = dict(near_dup_threshold=None, run=audit.AuditRun(n_jobs=2, progress=False))
    expected = {i: r for i, r in EXPECTED.items() if not r[0].startswith("embedding_")}
    first = audit.audit_banners(data, **kwargs)
    ran = len(calls)  # 2: the truncated banner stops CleanVision once; it reruns without it
    saved = {p.name: p.stat().st_mtime_ns for p in layout.cleanvision_dir(data).iterdir()}
    second = audit.audit_banners(data, **kwargs)
    assert (ran, len(calls), first.reused, second.reused) == (2, 2, False, True)
    assert second.exclusions == first.exclusions == expected
    assert {p.name: p.stat().st_mtime_ns for p in layout.cleanvision_dir(data).iterdir()} == saved
    pd.testing.assert_frame_equal(first.issues, second.issues)
    # Other issue types, or a changed banner, recompute.
    audit.audit_banners(data, **kwargs, issue_types=["dark", "light"])
    _normal(5).save(layout.banner_path(data, 20))
    third = audit.audit_banners(data, **kwargs)
    assert len(calls) > ran and not third.reused and 20 not in third.exclusions


def test_issue_types_thresholds_and_no_embeddings(tmp_path):
    data = _make_data(tmp_path)
    result = audit.audit_banners(
        data, issue_types=["dark", "exact_duplicates"], near_dup_threshold=None, run=ONE_JOB
    )
    assert result.exclusions == {
        20: ["dark"],
        27: ["unreadable"],
        28: ["unreadable"],
        50: ["exact_duplicate_of:10"],
    }
    issues = result.issues
    assert not any(c.startswith(("is_light", "is_embedding", "embedding_")) for c in issues)
    # A threshold above every banner's dark score flags them all.
    result = audit.audit_banners(
        data, issue_types=["dark"], thresholds={"dark": 1.01}, near_dup_threshold=None, run=ONE_JOB
    )
    assert len(result.exclusions) == len(issues)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"issue_types": ["darkish"]}, "unknown issue type 'darkish'; available: dark, light"),
        ({"thresholds": {"near_duplicates": 0.5}}, "near_duplicates has no threshold"),
        ({"issue_types": ["dark"], "thresholds": {"light": 0.1}}, "not among the issue types"),
        ({"near_dup_threshold": 1.5}, "cosine in [-1, 1]"),
        ({"setting": 3}, "setting must be a Setting, a setting name"),
        (
            {"setting": "dinov2_vits14"},
            "a setting name (model__preset__pooling) or model:preset:pooling",
        ),
    ],
)
def test_bad_options_name_the_choices(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as e:
        audit.audit_banners(tmp_path, **kwargs)
    assert message in str(e.value)


def test_no_manifest_audits_every_banner(tmp_path):
    data = _make_data(tmp_path)
    layout.manifest_path(data).unlink()
    result = audit.audit_banners(
        data, issue_types=["grayscale"], near_dup_threshold=None, run=ONE_JOB
    )
    assert result.exclusions == {
        24: ["grayscale"],
        27: ["unreadable"],
        28: ["unreadable"],
        29: ["grayscale"],
    } | {999: ["grayscale"]}
    with pytest.raises(ValueError, match="no banners to audit"):
        audit.audit_banners(tmp_path / "empty", near_dup_threshold=None)


def test_summary_and_example_grids(audited):
    data, _ = audited
    summary = audit.summarize_audit(data).set_index("issue_type")
    assert summary.loc["odd_size"].tolist() == [2, 2]
    assert summary.loc["embedding_duplicates"].tolist() == [6, 2]  # 50, 60: stronger reasons
    assert summary.loc["near_duplicates"].tolist() == [3, 1]
    assert summary.loc["all audited"].tolist() == [46, len(EXPECTED)]
    fig = plot_audit_examples(data, "embedding_duplicates")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["10\nkept", "50\n= 10", "60\n= 10", "70\n= 10", "30\nkept", "140\n= 30"]
    assert fig.get_suptitle() == "embedding duplicates: 6 of 46 banners"
    assert len(fig.axes) == 6  # 6 tiles in rows of at most 5: two rows of 3, no lone tile
    fig = plot_audit_examples(data, "odd_size", n=1)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes if ax.images] == ["25"]
    assert fig.get_suptitle().startswith("odd size: 2 of ")
    named = read_manifest(data).assign(
        name=lambda m: m["app_id"].map({10: "Euro Truck Simulator 2"})
    )
    write_manifest(data, named.fillna({"name": ""}))
    fig = plot_audit_examples(data, "embedding_duplicates", n=2)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["Euro Truck Simulator 2 (10)\nkept", "50\n= Euro Truck Simulator 2\n(10)"]
    with pytest.raises(ValueError, match="available: dark"):
        plot_audit_examples(data, "blurriness")


def test_load_exclusions_without_audit(tmp_path):
    assert audit.load_exclusions(tmp_path) == {}


STAMPS = Path("/usr/share/tuxpaint/stamps")


@pytest.mark.skipif(
    not STAMPS.is_dir(), reason="needs real pictures: apt-get install tuxpaint-stamps-default"
)
def test_own_pictures_keep_their_landscape_ones(tmp_path, capsys):
    """40 Tux Paint stamps (real drawings, every shape), imported as a collection of own images:
    the checks made for Steam's 2:3 banners are off, so no landscape picture is excluded; the
    CLI switches them back on, and then they are."""
    from steam_dinov2.cli import main

    shapes = {}
    for p in sorted(STAMPS.rglob("*.png")):
        with Image.open(p) as img:
            shapes.setdefault(p.stem, (p, img.width / img.height))  # stems name the images
    wide = [p for p, ratio in shapes.values() if ratio >= 2][:15]
    rest = [p for p, ratio in shapes.values() if ratio < 1.3][:25]
    src = tmp_path / "stamps"
    src.mkdir()
    for p in wide + rest:
        shutil.copyfile(p, src / p.name)
    data = tmp_path / "data"
    assert main(["import-folder", str(src), "--data", str(data)]) == 0
    by_name = {name: i for i, name in load_names(data).items()}
    wide_ids = {by_name[p.stem] for p in wide}
    assert len(by_name) == 40 and min(by_name.values()) >= OWN_ID_BASE

    result = audit.audit_banners(data, near_dup_threshold=None, run=ONE_JOB)
    rules = result.rules.set_index("rule")
    assert list(rules.index) == list(ISSUE_TYPES)
    assert not rules.loc[list(audit.STEAM_ONLY_TYPES), "applied"].any()
    assert rules.loc[["dark", "light", "blurry", "exact_duplicates"], "applied"].all()
    assert "40 of 40 images are own images" in rules.loc["odd_aspect_ratio", "why"]
    assert not wide_ids & set(result.exclusions)
    assert "is_odd_aspect_ratio_issue" not in result.issues

    argv = ["audit", "--data", str(data), "--no-pretrained", "--near-dup-threshold", "0"]
    rules_on = ["--rule", "odd_aspect_ratio=on", "--rule", "odd_size=on", "--rule", "dark=off"]
    capsys.readouterr()
    assert main([*argv, *rules_on]) == 0
    out = capsys.readouterr().out
    assert "odd_aspect_ratio  on   switched on by you" in out
    assert "dark              off  switched off by you" in out
    excluded = audit.load_exclusions(data)
    assert wide_ids & set(excluded)  # the Steam checks, switched on, flag landscape pictures
    assert all("dark" not in r for r in excluded.values())
    assert main([*argv, "--rule", "dark=maybe"]) == 2
    assert "--rule wants TYPE=on or TYPE=off" in capsys.readouterr().err


def test_unknown_rule_names_the_rules(tmp_path):
    with pytest.raises(ValueError, match="unknown rule 'gray'; available: dark, light"):
        audit.choose_rules([1, 2], None, {"gray": True})
    with pytest.raises(ValueError, match="rule 'dark' is True"):
        audit.choose_rules([1, 2], None, {"dark": "yes"})
    steam = audit.choose_rules([10, 20], None, None)  # Steam banners: every check, as before
    assert steam["applied"].all() and set(steam["why"]) == {"default for Steam banners"}
