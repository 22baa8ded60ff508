"""The three notebooks executed headless (papermill) against the local Steam server, in order."""

import ast
import json
import os
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image
from steam_server import App, FakeSteam

ROOT = Path(__file__).parent.parent
NOTEBOOKS = ["download_steam_images.ipynb", "find_dataset_issues.ipynb", "match_steam_images.ipynb"]
SETTING_LINE = (
    "SETTING = sd.Setting.create(\n"
    "    MODEL, PRESET, POOLING, pretrained=PRETRAINED, weights=WEIGHTS, precision=PRECISION\n)"
)
NAMES = {
    227300: "Euro Truck Simulator 2",
    620: "Portal 2",
    413150: "Stardew Valley",
    10: "Counter-Strike",
    20: "Team Fortress Classic",
    70: "Half-Life",
    220: "Half-Life 2",
    400: "Portal",
    1091500: "Cyberpunk 2077",
    367520: "Hollow Knight",
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_shape(name):
    nb = nbformat.read(ROOT / name, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert "colab-badge.svg" in cells[0].source and name in cells[0].source
    assert 'IN_COLAB = "google.colab" in sys.modules' in cells[1].source
    # One marked place for the repository, installed with the line that works from a fork.
    assert re.search(
        r'(?m)^REPO_URL = "https://github.com/.+"  # change this for a fork$', cells[1].source
    )
    assert '%pip install -q "git+{REPO_URL}"' in cells[1].source
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "DATA_DIR = " in params[0].source
    names = [t.id for node in ast.parse(params[0].source).body for t in node.targets]
    assert names[:2] == ["DATA_DIR", "MOUNT_DRIVE"] and len(names) >= 5
    assert all(re.fullmatch(r"[A-Z_0-9]+", n) for n in names), names
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    # The set-up helper, widgets enabled, and paths inside the data folder only through layout.
    assert "resolve_data_dir(DATA_DIR, mount_drive=MOUNT_DRIVE)" in code
    assert "enable_widgets()" in code
    assert not re.search(r'DATA_DIR / "', code)
    if name != "download_steam_images.ipynb":  # opened alone: fetch or say what to run first
        assert {"IF_EMPTY", "WEIGHTS", "MODEL", "PRECISION"} <= set(names)
        assert "ensure_banners(DATA_DIR, if_empty=IF_EMPTY)" in code
        # One Setting, made once from the knobs, carries model, preset, pooling and weights to
        # every call that embeds or loads a model: no loose model/preset/pretrained/weights.
        assert code.count(SETTING_LINE) == 1 and code.count("sd.Setting.create(") == 1
        loose = re.findall(
            r"\b(model|preset|pooling|pretrained)=[A-Z]", code.replace(SETTING_LINE, "")
        )
        assert not loose, loose
        calls = ["embed_folder(", "audit_banners(", "Browser(", "plot_match_explained("]
        using = [c.source for c in cells for call in calls if call in c.source]
        assert using and all("setting=SETTING" in src for src in using)
    for cell in cells:
        if cell.cell_type != "code":
            continue
        assert not cell.outputs and cell.execution_count is None, "commit notebooks stripped"
        # IPython magics become `pass` so the cell parses as Python.
        source = re.sub(r"(?m)^(\s*)[%!].*$", r"\1pass", cell.source)
        defs = [
            n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
        ]
        assert not defs, "logic belongs in the package, under test"
    assert "widgets" not in nb.metadata
    ids = [c.id for c in cells]
    assert len(ids) == len(set(ids)), "cell ids are unique"
    if name == "match_steam_images.ipynb":
        # The browser opens on the setting just computed and explains with the same model.
        browser = next(c.source for c in cells if "Browser(" in c.source)
        assert "setting=SETTING" in browser and "explain_with=True" in browser
        assert "dataclasses.replace(SETTING" in code  # the comparison's rows
        assert "browser.explain_with" not in code


@pytest.fixture(scope="module", autouse=True)
def kernel_imports_this_checkout():
    """The notebooks' kernels import the package from this checkout, not from wherever the
    environment installed it (an editable install of another checkout)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def steam():
    apps = [
        App(a, name=n, banner=f)
        for (a, n), f in zip(NAMES.items(), ["rgb", "gray", "cmyk", "png"] * 3)
    ]
    apps.append(App(999, name="No Art Game", banner=None))
    apps.append(App(4000, name="Garry's Mod", hashed=True))
    # Banners are drawn from app_id % 6400 (no two of the others collide): 6410 is an exact copy of
    # 10's, served as the same PNG. Random weights find no embedding duplicates (audit refuses
    # them), so CleanVision's exact duplicates must find it.
    apps.append(App(6410, name="Counter-Strike Copy", banner="png"))
    assert apps[3].app_id == 10 and apps[3].banner == "png"
    with FakeSteam(apps, banner_variants=6400) as server:
        yield server


@pytest.fixture(scope="module")
def executed(steam, tmp_path_factory):
    """Run the notebooks one after another, as a user would, on one data folder."""
    import papermill

    tmp = tmp_path_factory.mktemp("nb")
    data = tmp / "data"  # empty: the download notebook starts alone
    mp = pytest.MonkeyPatch()
    for k, v in steam.env().items():
        mp.setenv(k, v)  # the kernel inherits the environment
    # fp32 on any machine: the cache names below are fp32's ("auto" is tested in test_precision).
    common = {"DATA_DIR": str(data), "PRECISION": "fp32"}
    runs = {
        "download_steam_images.ipynb": {
            "SOURCE": "steamspy",
            "LIMIT": 20,
            "DOWNLOAD_WORKERS": 4,
            "PACK_SNAPSHOT": str(tmp / "snap.tar.gz"),
        },
        "find_dataset_issues.ipynb": {"MODEL": "dinov2_vits14", "PRETRAINED": False, "EXAMPLES": 3},
        "match_steam_images.ipynb": {
            "MODEL": "dinov2_vits14",
            "PRETRAINED": False,
            "K": 3,
            "COMPARE_SETTINGS": [
                ["dinov2_vits14", "crop256", "cls"],
                ["dinov2_vits14", "full", "gem"],
            ],
            "SITE_DIR": str(tmp / "steam-site"),
        },
    }
    try:
        for name, params in runs.items():
            papermill.execute_notebook(
                ROOT / name,
                tmp / name,
                parameters={**common, **params},
                cwd=tmp,
                progress_bar=False,
                kernel_name="python3",
            )
    finally:
        mp.undo()
    return tmp, data


def test_download_notebook_wrote_banners_manifest_and_snapshot(executed):
    tmp, data = executed
    manifest = pd.read_parquet(data / "manifest.parquet")
    assert len(manifest) == 13
    status = dict(zip(manifest.app_id, manifest.status))
    assert status[999] == "no_banner" and status[4000] == "ok"
    assert (manifest.status == "ok").sum() == 12
    for app_id in manifest.app_id[manifest.status == "ok"]:
        with Image.open(data / "banners" / f"{app_id}.jpg") as img:
            assert img.size == (256, 384) and img.mode == "RGB"
    assert (tmp / "snap.tar.gz").stat().st_size > 10_000


def test_audit_notebook_wrote_issues_and_exclusions(executed):
    tmp, data = executed
    out = nbformat.read(tmp / "find_dataset_issues.ipynb", as_version=4)
    assert "setting: dinov2_vits14__crop256__cls__random\n" in _output_text(out, SETTING_LINE)
    # Its random weights made the audit skip embedding duplicates, and say why.
    assert "random weights" in _output_text(out, "audit_banners(")
    issues = pd.read_parquet(data / "audit" / "issues.parquet")
    assert sorted(issues.app_id.astype(int)) == sorted(a for a in [*NAMES, 4000, 6410])
    exclusions = json.loads((data / "audit" / "exclusions.json").read_text())
    assert set(exclusions) <= {str(a) for a in issues.app_id}
    assert any(r.endswith("duplicate_of:10") for r in exclusions["6410"])  # the copy, not 10
    assert "10" not in exclusions


def test_match_notebook_wrote_matches_comparison_and_export(executed):
    tmp, data = executed
    setting = "dinov2_vits14__crop256__cls__random"
    table = pd.read_parquet(data / "matches" / setting / "neighbors.parquet")
    exclusions = json.loads((data / "audit" / "exclusions.json").read_text())
    assert set(table.query_id) == {*NAMES, 4000, 6410}
    assert "6410" in exclusions and not set(table.id) & {int(i) for i in exclusions}
    assert table.groupby("query_id").size().eq(3).all()
    served = json.loads((data / "matches" / setting / "neighbors.json").read_text())
    first = table[(table.query_id == 620)].sort_values("rank")
    assert [n["id"] for n in served["620"]] == [str(i) for i in first.id]  # JSON: ids as strings
    names = dict(
        zip(*pd.read_parquet(data / "manifest.parquet", columns=["app_id", "name"]).T.values)
    )
    assert served["620"][0]["name"] == names[int(first.id.iloc[0])]
    assert (data / "embeddings" / "dinov2_vits14__full__gem__random" / "meta.json").is_file()
    # Look-alikes: 6410 is a copy of 10, but both are "Studio 2"'s (the fake's default developer).
    pairs = pd.read_parquet(data / "lookalikes" / f"{setting}.parquet")
    assert len(pairs) and {10, 6410} not in [set(p) for p in zip(pairs.id_a, pairs.id_b)]
    out = nbformat.read(tmp / "match_steam_images.ipynb", as_version=4)
    images = sum(
        1 for c in out.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    )
    assert images >= 3  # the well-known games found plus the comparison
    # The notebook's one Setting: printed where it is made, and the name of the cache it filled.
    assert f"setting: {setting}\n" in _output_text(out, SETTING_LINE)
    assert (data / "embeddings" / setting / "meta.json").is_file()
    rows = _output_text(out, "ranked.reindex")  # the comparison's rows with their figures
    assert "dinov2_vits14__crop256__cls__random" in rows
    assert "dinov2_vits14__full__gem__random" in rows


def _output_text(notebook, marker: str) -> str:
    """Everything the (first) cell whose source holds ``marker`` printed or displayed as text."""
    cell = next(c for c in notebook.cells if marker in c.source)
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs
    )


def _run(name, out, params, cwd):
    import papermill

    return papermill.execute_notebook(
        ROOT / name, out, parameters=params, cwd=cwd, progress_bar=False, kernel_name="python3"
    )


@pytest.mark.parametrize("name", ["find_dataset_issues.ipynb", "match_steam_images.ipynb"])
def test_notebook_opened_alone_in_an_empty_folder_stops_with_one_line(name, tmp_path):
    from papermill.exceptions import PapermillExecutionError

    data = tmp_path / "empty"
    with pytest.raises(PapermillExecutionError) as info:
        _run(name, tmp_path / name, {"DATA_DIR": str(data), "PRETRAINED": False}, tmp_path)
    assert info.value.ename == "NothingToDo"
    out = nbformat.read(tmp_path / name, as_version=4)
    errors = [o for c in out.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 1 and len(errors[0].traceback) == 1  # the line, no traceback
    line = errors[0].traceback[0]
    assert "run download_steam_images.ipynb first" in line and str(data) in line
    assert not any((data / d).exists() for d in ("embeddings", "audit", "matches"))


@pytest.fixture(scope="module")
def own_images_with_weights(tmp_path_factory, vits14):
    """A folder of own images imported by the download notebook, then the audit and match
    notebooks with a local weights file (HF_HUB_OFFLINE: anything reaching for the hub fails)."""
    import torch
    from conftest import make_banner

    tmp = tmp_path_factory.mktemp("own")
    photos = tmp / "photos"
    (photos / "sketches").mkdir(parents=True)
    for i, stem in enumerate(["cat on a mat", "dog", "fish", "bird", "tree"], 1):
        make_banner(i, (400 + 40 * i, 500)).save(photos / f"{stem}.png")
    make_banner(1, (440, 500)).save(photos / "sketches" / "cat again.jpg")  # a near copy
    weights = tmp / "vits14.pth"
    torch.save(vits14.state_dict(), weights)
    data = tmp / "data"
    common = {"DATA_DIR": str(data), "MODEL": "dinov2_vits14", "WEIGHTS": str(weights)}
    common["PRECISION"] = "fp32"  # the names below are fp32's on any machine
    _run(
        "download_steam_images.ipynb",
        tmp / "d.ipynb",
        {"DATA_DIR": str(data), "IMPORT_FOLDER": str(photos)},
        tmp,
    )
    _run("find_dataset_issues.ipynb", tmp / "a.ipynb", {**common, "EXAMPLES": 2}, tmp)
    _run("match_steam_images.ipynb", tmp / "m.ipynb", {**common, "K": 3, "QUERIES": ["cat"]}, tmp)
    return tmp, data, weights


def test_own_images_go_through_audit_and_match_with_a_weights_file(own_images_with_weights):
    from steam_dinov2.collection.folder import own_image_id
    from steam_dinov2.core import layout
    from steam_dinov2.core.files import OWN_ID_BASE
    from steam_dinov2.embedding.models import weights_tag

    tmp, data, weights = own_images_with_weights
    manifest = pd.read_parquet(data / "manifest.parquet")
    assert (
        dict(zip(manifest.app_id, manifest.name))[own_image_id("cat on a mat.png")]
        == "cat on a mat"
    )
    assert (manifest.app_id >= OWN_ID_BASE).all() and len(manifest) == 6
    tag = weights_tag(weights=weights)
    setting = layout.setting_name("dinov2_vits14", "crop256", "cls", weights_tag=tag)
    # Every model came from the file, none random: the setting and, on a CPU runtime, the
    # comparison's second ViT-S row (choose_runtime), both with the file's weights.
    settings = layout.list_settings(data)
    assert setting in settings and all(s.endswith(f"__{tag}") for s in settings), settings
    issues = pd.read_parquet(layout.issues_path(data))
    assert sorted(issues.app_id) == sorted(manifest.app_id)
    table = pd.read_parquet(layout.neighbors_path(data, setting))
    assert set(table.query_id) == set(manifest.app_id)
    out = nbformat.read(tmp / "m.ipynb", as_version=4)
    assert not [o for c in out.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert setting in _output_text(out, "ranked.reindex")  # the weights file's row and figures
    for name in ("a.ipynb", "m.ipynb"):  # each notebook's one Setting carried the file
        printed = _output_text(nbformat.read(tmp / name, as_version=4), SETTING_LINE)
        assert f"setting: {setting}\n" in printed


def test_match_notebook_scored_the_settings(executed):
    tmp, data = executed
    summary = pd.read_parquet(data / "evaluation" / "summary.parquet")
    assert set(summary.setting) == {
        "dinov2_vits14__crop256__cls__random",
        "dinov2_vits14__full__gem__random",
    }
    assert {"franchise", "developer", "publisher", "tags", "copy"} <= set(summary.truth)
    assert (summary.n_queries > 0).all() and summary.baseline.between(0, 1).all()
    assert (data / "evaluation" / "agreement.parquet").is_file()
    assert (summary.ci_low <= summary.value).all() and (summary.value <= summary.ci_high).all()
    out = nbformat.read(tmp / "match_steam_images.ipynb", as_version=4)
    outputs = [o for c in out.cells for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    # 12 games: the label truths have under 30 queries and are left out of the ranking; the
    # copies (12 banners x 7 variants) rank the settings, with a paired interval either way.
    assert "Too few queries to tell (under 30): franchise (" in text
    assert re.search(r"(Best setting|No single best setting): dinov2_vits14__", text)
    assert "evaluate: " in text and "copies dinov2_vits14__" in text  # the progress bars


def test_match_notebook_mapped_explained_and_exported_a_site(executed):
    tmp, data = executed
    setting = "dinov2_vits14__crop256__cls__random"
    game_map = pd.read_parquet(data / "maps" / setting / "layout.parquet")
    # The map and the site hold every game with a banner (the excluded copy too, as a query).
    assert set(game_map.id) == {*NAMES, 4000, 6410}
    games = json.loads((tmp / "steam-site" / "data" / "games.json").read_text())
    assert sorted(map(int, games["ids"])) == sorted(game_map.id) and games["k"] == 3
    out = nbformat.read(tmp / "match_steam_images.ipynb", as_version=4)
    why = next(c for c in out.cells if "plot_match_explained" in c.source)
    assert any("image/png" in o.get("data", {}) for o in why.outputs)  # the heatmap figure


# tqdm's text form of a bar: "{desc}: {pct}%|{bar}| {n}/{total} [..." with a total, else
# "{desc}: {n}{unit} [...", each with "[elapsed" after it.
BAR = re.compile(
    r"(?:(?P<desc>.+?): )?(?:\s*(?P<pct>\d+)%\|[^|]*\| *(?P<n>\S+)/(?P<total>\S+)"
    r"|(?P<count>[\d.]+[kMGT]?)[^\s\d]*) \[\d+:\d\d.*"
)


def _saved_bars(notebook) -> list[tuple[int, str]]:
    """(cell index, text) of every progress bar (tqdm widget) in a saved notebook."""
    return [
        (i, o.data["text/plain"])
        for i, c in enumerate(notebook.cells)
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        and BAR.fullmatch(o.data.get("text/plain", ""))
    ]


@pytest.mark.parametrize("run", ["executed", "own_images_with_weights"])
def test_saved_notebooks_show_every_bar_done_and_no_warning(run, request):
    """What a notebook saved under the installed widget stack (ipywidgets 8 here, 7 in the
    Colab venv of .ci/run) shows: every bar, ours and CleanVision's, at its final count, saying
    what it counts (and, where a cell has several, for which setting), whole; no warning."""
    tmp = request.getfixturevalue(run)[0]
    saved = sorted(p for p in tmp.glob("*.ipynb"))
    assert len(saved) == 3
    descs = []
    for path in saved:
        notebook = nbformat.read(path, as_version=4)
        bars = _saved_bars(notebook)
        for i, text in bars:
            bar = BAR.fullmatch(text)
            assert bar["desc"], f"{path.name} cell {i}: a bar that does not say what: {text}"
            assert not text.endswith("…"), f"{path.name} cell {i}: cut: {text}"
            if bar["total"]:
                assert bar["pct"] == "100" and bar["n"] == bar["total"], f"{path.name}: {text}"
            else:
                assert bar["count"] != "0", f"{path.name}: {text}"
        in_cell = [(i, BAR.fullmatch(t)["desc"]) for i, t in bars]
        assert len(in_cell) == len(set(in_cell)), f"{path.name}: bars alike in one cell"
        descs += [d for _, d in in_cell]
        for i, c in enumerate(notebook.cells):
            for o in c.get("outputs", []):
                text = o.get("text", "") + o.get("data", {}).get("text/plain", "")
                assert "Warning" not in text, f"{path.name} cell {i}: {text}"
            lines = [line for o in c.get("outputs", []) for line in o.get("text", "").splitlines()]
            assert len(lines) == len(set(lines)), f"{path.name} cell {i}: said twice: {lines}"
    # CleanVision's property pass (its duplicate hashes come from the same decode: no hash pass).
    assert "CleanVision: Computing scores" in descs
    assert any(d.startswith("embed dinov2_vits14__") for d in descs)
