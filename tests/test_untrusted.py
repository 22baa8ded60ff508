"""A data folder is untrusted input: each test plants one hostile or damaged file and asserts the
exact outcome (no code ran, a clear error naming the file and the fix, or a rebuild with a warning).
"""

import hashlib
import io
import json
import logging
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cleanvision
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_banner, upload_to_browser

import steam_dinov2.embedding.embed as embed_mod
from steam_dinov2.audit import audit
from steam_dinov2.audit.cleanvision import ISSUE_TYPES
from steam_dinov2.browse.browser import Browser
from steam_dinov2.cli import main
from steam_dinov2.core import layout
from steam_dinov2.embedding.embed import embed_folder, load_embeddings
from steam_dinov2.embedding.setting import Setting
from steam_dinov2.search import describe_exclusions, find_neighbors, match_all
from steam_dinov2.views.compare import plot_comparison, plot_games, plot_neighbors

matplotlib.use("Agg")
SETTING = "dinov2_vits14__crop256__cls__random"
ONE_JOB, QUIET = audit.AuditRun(n_jobs=1), audit.AuditRun(n_jobs=1, progress=False)
XSS = "<img src=x onerror=alert(1)>"
XSS_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


class _Payload:
    """Unpickling this creates ``path``: proof that code from the data folder ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _data(tmp_path, banner_dir, vits14, names=None):
    data = tmp_path / "data"
    data.mkdir()
    banner_dir.rename(data / "banners")
    ids = [int(p.stem) for p in (data / "banners").glob("*.jpg") if p.stem.isdigit()]
    names = names or {}
    table = pd.DataFrame({"app_id": ids, "name": [names.get(i, f"Game {i}") for i in ids]})
    table["status"] = "ok"
    table.to_parquet(layout.manifest_path(data))
    embed_folder(data / "banners", data, model=vits14, num_workers=0, progress=False)
    return data


# --- 1. no pickle in the audit -----------------------------------------------------------------
def _audit_data(root):
    data = root / "data"
    layout.banners_dir(data).mkdir(parents=True)
    for i in range(1, 7):
        make_banner(i).save(layout.banner_path(data, i * 10), quality=95)
    layout.banner_path(data, 70).write_bytes(layout.banner_path(data, 10).read_bytes())
    return data


def test_audit_never_unpickles_and_recomputes_planted_results(tmp_path, caplog):
    reference = audit.audit_banners(
        _audit_data(tmp_path / "ref"), near_dup_threshold=None, run=ONE_JOB
    )
    assert reference.exclusions[70] == ["exact_duplicate_of:10"]
    data = _audit_data(tmp_path / "attacked")
    audit.audit_banners(data, near_dup_threshold=None, run=ONE_JOB)  # a valid key for these files
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker))
    # Where the old code unpickled CleanVision's Imagelab (audit/imagelab/imagelab.pkl, through
    # Imagelab.load), with the key file it checked first, made to match these files exactly.
    old = layout.audit_dir(data) / "imagelab"
    old.mkdir()
    (old / "imagelab.pkl").write_bytes(evil)
    files = sorted(layout.banners_dir(data).glob("*.jpg"), key=lambda p: int(p.stem))
    stamps = {p.stem: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    old_key = {
        "cleanvision": cleanvision.__version__,
        "pandas": pd.__version__,
        "issue_types": {t: {} for t in ISSUE_TYPES},
        "files": hashlib.sha256(json.dumps(stamps, sort_keys=True).encode()).hexdigest(),
    }
    (old / "steam_dinov2_key.json").write_text(json.dumps({"key": old_key, "broken": []}))
    # And garbage where the new code reads its plain data back.
    layout.cleanvision_issues_path(data).write_bytes(evil)
    layout.cleanvision_sets_path(data).write_bytes(evil)
    with caplog.at_level(logging.WARNING):
        result = audit.audit_banners(data, near_dup_threshold=None, run=ONE_JOB)
    assert not marker.exists() and (old / "imagelab.pkl").read_bytes() == evil
    assert not result.reused and result.exclusions == reference.exclusions
    assert "saved CleanVision results in" in caplog.text and "damaged" in caplog.text
    again = audit.audit_banners(data, near_dup_threshold=None, run=ONE_JOB)
    assert again.reused and again.exclusions == reference.exclusions  # rebuilt, fast again
    assert not marker.exists()


@pytest.mark.parametrize("content", ["", "garbage{", "[]", '{"key": 1}'])
def test_empty_or_garbage_audit_key_is_rebuilt_with_a_warning(tmp_path, caplog, content):
    data = _audit_data(tmp_path)
    first = audit.audit_banners(data, near_dup_threshold=None, run=ONE_JOB)
    layout.cleanvision_key_path(data).write_text(content)
    with caplog.at_level(logging.WARNING):
        result = audit.audit_banners(data, near_dup_threshold=None, run=ONE_JOB)
    assert not result.reused and result.exclusions == first.exclusions
    if content in ("", "garbage{"):
        assert f"audit key file {layout.cleanvision_key_path(data)} is damaged" in caplog.text
    elif content == "[]":
        assert "is not a key this package wrote" in caplog.text
    assert json.loads(layout.cleanvision_key_path(data).read_text())["key"]["files"]
    assert audit.audit_banners(data, near_dup_threshold=None, run=ONE_JOB).reused


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"10": "dark"}', '{"x": ["dark"]}'])
def test_corrupt_exclusions_are_refused_naming_the_file_and_the_fix(tmp_path, capsys, content):
    path = layout.exclusions_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ValueError) as e:
        audit.load_exclusions(tmp_path)
    assert f"exclusion list {path} is damaged" in str(e.value)
    assert "rerun `audit`, or delete the file" in str(e.value)
    assert main(["match", "--data", str(tmp_path), "--no-pretrained"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"exclusion list {path} is damaged" in err[0]


# --- 2. no model chosen by data ------------------------------------------------------------------
def _plant_hub_setting(data, tmp_path, name="aaa_evil"):
    """A setting whose meta.json names a local torch.hub repo whose hubconf.py leaves a marker."""
    marker = tmp_path / "hub_ran"
    repo = tmp_path / "evilhub"
    repo.mkdir()
    (repo / "hubconf.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef evil(pretrained=True):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
    )
    real = load_embeddings(data, SETTING)
    folder = layout.embeddings_dir(data, name)
    folder.mkdir(parents=True)
    for f in (real.meta["vectors_file"], real.meta["ids_file"]):
        (folder / f).write_bytes((layout.embeddings_dir(data, SETTING) / f).read_bytes())
    meta = {**real.meta, "model": f"hub:{repo}:evil", "weights": "pretrained"}
    (folder / "meta.json").write_text(json.dumps(meta))
    return marker


def _png(seed):
    buf = io.BytesIO()
    make_banner(seed, size=(300, 450)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_planted_hub_model_in_meta_json_never_runs(tmp_path, banner_dir, vits14, caplog):
    data = _data(tmp_path, banner_dir, vits14)
    marker = _plant_hub_setting(data, tmp_path)
    with caplog.at_level(logging.WARNING):
        b = Browser(data, k=3)
    # Left out with a warning: the alphabetically first planted setting is not the default.
    assert b.settings == [SETTING] and b.setting.value == SETTING
    assert "leaving out setting aaa_evil: its model 'hub:" in caplog.text
    # Named by the user, the setting is browsable, but its model is never loaded from meta.json.
    b = Browser(data, settings=["aaa_evil"], k=3)
    b.show(30)
    assert len(b.shown) == 3
    upload_to_browser(b, "mine.png", _png(5))
    assert "neither in the registry nor the one you gave" in b.status.value
    assert b.history == [{"id": 30}]
    # The search and compare paths read the same cache without loading any model.
    emb = load_embeddings(data, "aaa_evil")
    assert len(find_neighbors(emb, 30, k=3)) == 3 and len(match_all(emb, k=2)) == 18
    fig = plot_comparison(data, 30, [SETTING], k=2)
    fig.savefig(io.BytesIO(), format="png")
    assert not marker.exists()


def test_a_setting_of_the_model_the_user_gave_comes_first(tmp_path, banner_dir, vits14):
    data = _data(tmp_path, banner_dir, vits14)
    gem = SETTING.replace("__cls__", "__gem__")
    embed_folder(data / "banners", data, setting=gem, model=vits14, num_workers=0)
    b = Browser(data, k=3)
    assert b.setting.value == SETTING.replace("__cls__", "__gem__")  # both registry: the latest
    folder = layout.embeddings_dir(data, "aaa_unknown_timm")
    folder.mkdir()
    real = load_embeddings(data, SETTING)
    for f in (real.meta["vectors_file"], real.meta["ids_file"]):
        (folder / f).write_bytes((layout.embeddings_dir(data, SETTING) / f).read_bytes())
    meta = {**real.meta, "model": "vit_small_patch14_dinov2"}  # timm, not in the registry
    (folder / "meta.json").write_text(json.dumps(meta))
    assert "aaa_unknown_timm" not in Browser(data, k=3).settings
    # The user's own Setting of that model (a cache of it too): its model's settings come first.
    mine = Setting("vit_small_patch14_dinov2", weights="random")
    shutil.copytree(folder, layout.embeddings_dir(data, mine.name))
    chosen = Browser(data, k=3, setting=mine)
    assert chosen.settings[:2] == [mine.name, "aaa_unknown_timm"] and len(chosen.settings) == 4


@pytest.mark.parametrize("meta", ["[]", "{}", "garbage", '{"model": 3}'])
def test_browser_leaves_out_a_damaged_meta_json(tmp_path, banner_dir, vits14, caplog, meta):
    data = _data(tmp_path, banner_dir, vits14)
    folder = layout.embeddings_dir(data, "aaa_broken")
    folder.mkdir()
    (folder / "meta.json").write_text(meta)
    with caplog.at_level(logging.WARNING):
        b = Browser(data, k=3)
    assert b.settings == [SETTING]
    assert f"embedding cache file {folder / 'meta.json'} is damaged" in caplog.text


# --- 3. strings escaped for HTML and mathtext ----------------------------------------------------
def _html_values(browser):
    tiles = [browser.query_tile, *browser.tiles]
    return [browser.status.value] + [c.value for t in tiles for c in t.children[1:2]]


def test_hostile_names_ids_settings_and_file_names_are_escaped(tmp_path, banner_dir, vits14):
    data = _data(tmp_path, banner_dir, vits14, names={30: XSS, 90: XSS})
    # banners/ only takes app ids as names, but a cache embedded from a folder of one's own
    # images takes any file name as an id: such a cache reaches the Browser as well.
    own = shutil.copytree(layout.banners_dir(data), tmp_path / "own")
    make_banner(9).save(own / f"{XSS}.jpg")
    shutil.rmtree(layout.embeddings_dir(data, SETTING))
    embed_folder(own, data, model=vits14, num_workers=0, progress=False)
    hostile_setting = layout.embeddings_dir(data, XSS)
    layout.embeddings_dir(data, SETTING).rename(hostile_setting)
    b = Browser(data, k=8)
    assert b.settings == [XSS]
    b.show(30)
    with pytest.raises(ValueError, match="not a Steam app id"):  # ids are ints: no markup
        b.show(XSS)
    values = _html_values(b)
    assert all("<img" not in v for v in values)
    text = "\n".join(values)
    assert text.count(XSS_ESCAPED) >= 2  # a neighbour's name, the setting
    upload_to_browser(b, XSS + ".png", _png(5))
    assert "outside the collection: " + XSS_ESCAPED in "\n".join(_html_values(b))
    upload_to_browser(b, XSS + ".txt", b"not an image")
    assert XSS_ESCAPED in b.status.value and "<img" not in b.status.value
    assert all("<img" not in v for v in _html_values(b))


def test_dollar_signs_in_names_never_break_a_figure(tmp_path, banner_dir, vits14):
    name = "Money $_$ Maker"
    data = _data(tmp_path, banner_dir, vits14, names={i: name for i in range(10, 100, 10)})
    emb = load_embeddings(data, SETTING)
    figures = [
        plot_games(data, emb, k=3, title=True),  # run's preview
        plot_neighbors(data, emb, 30, k=3),
        plot_comparison(data, 30, [SETTING], k=3),
    ]
    for fig in figures:
        fig.savefig(io.BytesIO(), format="png")  # draws every text: mathtext would raise here
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert titles and all(r"Money \$_\$ Maker" in t for t in titles)


# --- 4. damaged caches -----------------------------------------------------------------------
def _break(folder, how, marker):
    meta = json.loads((folder / "meta.json").read_text())
    ids_file, vectors_file = folder / meta["ids_file"], folder / meta["vectors_file"]
    if how in ("[]", "{}", "garbage"):
        (folder / "meta.json").write_text(how)
        return folder / "meta.json"
    if how == "ids without stamps":
        rows = json.loads(ids_file.read_text())
        del rows["stamps"]
        ids_file.write_text(json.dumps(rows))
        return ids_file
    vectors = np.load(vectors_file)
    if how == "wrong shape":
        np.save(vectors_file, vectors[:, :100])
    elif how == "NaN row":
        vectors[3] = np.nan
        np.save(vectors_file, vectors)
    elif how == "object array":
        np.save(vectors_file, np.array([_Payload(marker)] * len(vectors), dtype=object))
    return vectors_file


@pytest.mark.parametrize(
    "how", ["[]", "{}", "garbage", "ids without stamps", "wrong shape", "NaN row", "object array"]
)
def test_damaged_cache_refused_when_read_and_rebuilt_when_embedded(
    tmp_path, banner_dir, vits14, caplog, how
):
    data = tmp_path / "data"
    clean = embed_folder(banner_dir, data, model=vits14, num_workers=0, progress=False)
    marker = tmp_path / "pwned"
    damaged = _break(layout.embeddings_dir(data, SETTING), how, marker)
    with pytest.raises(ValueError) as e:
        load_embeddings(data, SETTING)
    message = str(e.value)
    assert f"embedding cache file {damaged} is damaged" in message
    assert "rerun `embed` to recompute it" in message and "\n" not in message
    with caplog.at_level(logging.WARNING):
        rebuilt = embed_folder(banner_dir, data, model=vits14, num_workers=0, progress=False)
    assert f"{damaged} is damaged" in caplog.text and "recomputing" in caplog.text
    assert "rerun `embed`" not in caplog.text  # embed is recomputing it: no advice to delete
    assert rebuilt.ids == clean.ids
    np.testing.assert_allclose(rebuilt.vectors, clean.vectors, atol=1e-5)
    assert load_embeddings(data, SETTING).ids == clean.ids
    assert not marker.exists()


def test_meta_json_naming_files_outside_the_cache_is_refused(tmp_path, banner_dir, vits14):
    data = tmp_path / "data"
    embed_folder(banner_dir, data, model=vits14, num_workers=0, progress=False)
    meta_file = layout.embeddings_dir(data, SETTING) / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "ids_file": "../../../etc/passwd"}))
    with pytest.raises(ValueError, match="'ids_file' is not a file name this package writes"):
        load_embeddings(data, SETTING)


# --- 5. --k and --weights ----------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["match", "run"])
def test_k_below_one_is_refused_in_one_line(tmp_path, capsys, stage):
    assert main([stage, "--data", str(tmp_path), "--k", "0", "--no-pretrained"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --k is the number of neighbours per image, at least 1; got 0"]
    assert not list(tmp_path.iterdir())  # `run` refused before downloading anything


def test_k_below_one_is_refused_by_the_api(tmp_path, banner_dir, vits14):
    emb = embed_folder(banner_dir, tmp_path, model=vits14, num_workers=0, progress=False)
    for call in (
        lambda: match_all(emb, k=0),
        lambda: find_neighbors(emb, 10, k=-1),
        lambda: Browser(tmp_path, k=0),
    ):
        with pytest.raises(ValueError, match="at least 1; got"):
            call()


class _Custom:
    """A class of the test's own: ``weights_only=True`` refuses to rebuild it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text.pth", "is not a PyTorch checkpoint"),
        ("garbage.safetensors", "is not a valid safetensors file"),
        ("objects.pth", "holds Python objects besides tensors, which are never loaded"),
        ("tensor.pth", "is not a state dict"),
    ],
)
def test_bad_weights_files_are_refused_in_one_line(tmp_path, banner_dir, capsys, kind, message):
    path = tmp_path / kind
    marker = tmp_path / "pwned"
    if kind == "text.pth":
        path.write_text("these are not weights\n")
    elif kind == "garbage.safetensors":
        path.write_bytes(os.urandom(256))
    elif kind == "objects.pth":
        torch.save({"pos_embed": torch.zeros(1), "extra": _Custom(marker)}, path)
    else:
        torch.save(torch.zeros(3), path)
    args = ["embed", "--images", str(banner_dir), "--data", str(tmp_path / "d"), "--weights"]
    assert main([*args, str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"weights file {path} " in err[0] and message in err[0]
    assert "weights_only" not in err[0] and not marker.exists()


# --- 6. embed checkpoints: a SIGKILL keeps what was done ----------------------------------------
_SLOW_EMBED = textwrap.dedent(
    """
    import sys, time
    import steam_dinov2.embedding.embed as e
    real = e.pool_tokens
    def slow(*a, **k):  # slows the real run down so the test can kill it part way
        time.sleep(0.4)
        return real(*a, **k)
    e.pool_tokens = slow
    e.embed_folder(sys.argv[1], sys.argv[2], setting="dinov2_vits14__crop256__cls__random",
                   batch_size=4, num_workers=0, device="cpu", checkpoint_every=8, progress=False)
    """
)


def test_a_killed_embed_keeps_its_checkpoints_and_resumes(tmp_path, monkeypatch):
    images, data = tmp_path / "images", tmp_path / "data"
    images.mkdir()
    for i in range(40):
        make_banner(100 + i, size=(112, 168)).save(images / f"{1000 + i}.jpg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_EMBED, images, data], env=env)
    deadline = time.monotonic() + 300
    while len(layout.embedding_checkpoints(data, SETTING)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "embed ended too early"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (layout.embeddings_dir(data, SETTING) / "meta.json").exists()
    saved = [json.loads(p.read_text())["ids"] for p in layout.embedding_checkpoints(data, SETTING)]
    done = [i for ids in saved for i in ids]
    assert len(done) >= 16 and len(done) % 8 == 0 and len(done) < 40

    calls = []
    real = embed_mod.embed_images

    def counting(paths, model, **kw):
        calls.append([Path(p).stem for p in paths])
        return real(paths, model, **kw)

    monkeypatch.setattr(embed_mod, "embed_images", counting)
    resumed = embed_folder(images, data, setting=SETTING, num_workers=0)
    assert sorted(calls[0]) == sorted(set(map(str, range(1000, 1040))) - set(done))
    assert not layout.embedding_checkpoints(data, SETTING)  # merged into the cache
    monkeypatch.undo()
    clean = embed_folder(images, tmp_path / "clean", setting=SETTING)
    assert sorted(resumed.ids) == sorted(clean.ids) and len(clean.ids) == 40
    order = [clean.ids.index(i) for i in resumed.ids]
    assert np.abs(resumed.vectors - clean.vectors[order]).max() < 1e-5
    assert load_embeddings(data, SETTING).ids == resumed.ids


def test_a_damaged_checkpoint_is_skipped_with_a_warning(tmp_path, banner_dir, caplog):
    data = tmp_path / "data"
    path = layout.embedding_checkpoint_path(data, SETTING, "0001")
    path.parent.mkdir(parents=True)
    path.write_text('{"ids": ["10"]}')
    stray = layout.embedding_checkpoint_path(data, SETTING, "0002").with_suffix(".npy")
    stray.write_bytes(b"killed before its .json was written")
    with caplog.at_level(logging.WARNING):
        emb = embed_folder(banner_dir, data, setting=SETTING)
    assert "ignoring checkpoint" in caplog.text and str(path) in caplog.text
    assert "rerun `embed`" not in caplog.text  # its images are embedded again right now
    assert len(emb.ids) == 9 and not path.exists() and not stray.exists()


# --- 7. random weights and the exclusions each stage applies -------------------------------------
def test_random_weights_skip_embedding_duplicates_unless_forced(tmp_path, caplog):
    data = _audit_data(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = audit.audit_banners(data, setting=SETTING, run=QUIET)
    assert "embedding near duplicates skipped: the model has random weights" in caplog.text
    assert result.notes and "random_weights_duplicates=True" in result.notes[0]
    assert "embedding_duplicates" not in result.groups
    assert not any(c.startswith("embedding_") for c in result.issues)
    forced = audit.audit_banners(
        data,
        setting=SETTING,
        run=QUIET,
        random_weights_duplicates=True,
        near_dup_threshold=0.9999,
    )
    assert "embedding_duplicates" in forced.groups and "RANDOM weights" in forced.notes[0]
    assert forced.issues["embedding_nearest_cosine"].notna().sum() > 0


def test_every_stage_reports_the_exclusions_it_applies(
    tmp_path, banner_dir, vits14, caplog, capsys
):
    data = _data(tmp_path, banner_dir, vits14)
    exclusions = {"20": ["dark"], "50": ["dark", "odd_size"], "90": ["near_duplicate_of:30"]}
    layout.exclusions_path(data).parent.mkdir()
    layout.exclusions_path(data).write_text(json.dumps(exclusions))
    summary = "3 excluded (dark: 2, near_duplicate_of: 1, odd_size: 1)"
    assert describe_exclusions(exclusions) == summary
    assert main(["match", "--data", str(data), "--no-pretrained", "--k", "2"]) == 0
    assert f"audit exclusions applied: {summary}; never neighbours" in capsys.readouterr().out
    emb = load_embeddings(data, SETTING)
    with caplog.at_level(logging.INFO):
        b = Browser(data, k=3)
        b.show(30)
        plot_comparison(data, 30, [SETTING], k=2, exclude=exclusions)
        plot_games(data, emb, k=2, exclude=exclusions)
        match_all(emb, k=2, exclude=exclusions)
    assert f"audit: {summary}" in b.status.value
    assert f"browser: audit exclusions applied: {summary}" in caplog.text
    assert f"comparison: {summary} never neighbours" in caplog.text
    assert f"preview: {summary} never neighbours" in caplog.text
    assert f"match {SETTING}: {summary} never neighbours" in caplog.text


def test_reduced_precision_vectors_never_share_a_cache_with_fp32():
    names = {Setting("m", "p", "cls", precision=p).name for p in ("fp32", "bf16", "fp16")}
    assert names == {"m__p__cls", "m__p__cls__bf16", "m__p__cls__fp16"}
    assert layout.setting_name("m", "p", "cls", weights_tag="random", precision="fp16") == (
        "m__p__cls__random__fp16"
    )
    assert layout.setting_name("m", "p", "cls") == "m__p__cls"


# Derived files (match tables, maps) are checked when read: what is off is made again, with a
# warning, and never reaches a page, a figure or the browser.


def _forge(path, table: pd.DataFrame) -> None:
    """Rewrite a keyed parquet with other rows under the same key (what a forger can do)."""
    from steam_dinov2.core import files

    files.write_keyed_parquet(path, table, files.read_parquet_key(path))


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda t: t.assign(x=t["x"] * 1e6), "coordinates outside [0, 1]"),
        (lambda t: t.assign(x=np.nan), "coordinates outside [0, 1]"),
        (lambda t: t.assign(id=t["id"] + 1), "rows that are not the embeddings' ids"),
        (lambda t: t.assign(cluster=-9223372036854775808), "clusters out of range"),
        (lambda t: t.assign(id="x"), "ValueError"),
    ],
)
def test_a_forged_map_is_computed_again(tmp_path, banner_dir, vits14, caplog, change, why):
    from steam_dinov2.views.map import map_catalog

    data = _data(tmp_path, banner_dir, vits14)
    honest = map_catalog(data, SETTING, n_clusters=2)
    _forge(layout.map_path(data, SETTING), change(honest.copy()))
    with caplog.at_level(logging.WARNING):
        again = map_catalog(data, SETTING, n_clusters=2)
    assert f"is damaged ({why}" in caplog.text
    pd.testing.assert_frame_equal(again, honest)


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda t: t.assign(score=t["score"] * 1e9), "cosines outside [-1, 1]"),
        (lambda t: t.assign(id=t["id"] + 7), "ids that are not in the collection"),
        (lambda t: t.assign(rank=0), "ranks below 1"),
        (lambda t: t.drop(columns="score"), "unreadable"),
    ],
)
def test_a_forged_match_table_is_never_served(tmp_path, banner_dir, vits14, caplog, change, why):
    from steam_dinov2.search import export_matches

    data = _data(tmp_path, banner_dir, vits14)
    emb = load_embeddings(data, SETTING)
    honest = match_all(emb, k=3, data=data)
    path = layout.neighbors_path(data, SETTING)
    _forge(path, change(honest.copy()))
    with pytest.raises(ValueError, match=re.escape(why) + ".*rerun `match`"):
        export_matches(data, SETTING)
    b = Browser(data, k=3)
    with caplog.at_level(logging.WARNING):
        b.show(30)
    assert "not used: searching again" in caplog.text and why in caplog.text
    live = find_neighbors(emb, 30, k=3)
    assert [i for i, _ in b.shown] == list(live["id"])
