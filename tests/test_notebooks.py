"""The three notebooks executed headless (papermill) against the local Steam server, in order."""

import ast
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image
from steam_server import App, FakeSteam

ROOT = Path(__file__).parent.parent
NOTEBOOKS = ["download_steam_images.ipynb", "find_dataset_issues.ipynb", "match_steam_images.ipynb"]
NAMES = {
    227300: "Euro Truck Simulator 2", 620: "Portal 2", 413150: "Stardew Valley", 10: "Counter-Strike",
    20: "Team Fortress Classic", 70: "Half-Life", 220: "Half-Life 2", 400: "Portal",
    1091500: "Cyberpunk 2077", 367520: "Hollow Knight",
}  # fmt: skip


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_shape(name):
    nb = nbformat.read(ROOT / name, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert "colab-badge.svg" in cells[0].source and name in cells[0].source
    assert 'IN_COLAB = "google.colab" in sys.modules' in cells[1].source
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "DATA_DIR = " in params[0].source
    assert all(
        re.fullmatch(r"[A-Z_0-9]+", t.id) for t in ast.parse(params[0].source).body[0].targets
    )
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


@pytest.fixture(scope="module")
def steam():
    apps = [
        App(a, name=n, banner=f)
        for (a, n), f in zip(NAMES.items(), ["rgb", "gray", "cmyk", "png"] * 3)
    ]
    apps.append(App(999, name="No Art Game", banner=None))
    apps.append(App(4000, name="Garry's Mod", hashed=True))
    with FakeSteam(apps) as server:
        yield server


@pytest.fixture(scope="module")
def executed(steam, tmp_path_factory):
    """Run the notebooks one after another, as a user would, on one data folder."""
    import papermill

    tmp = tmp_path_factory.mktemp("nb")
    env = {
        "STEAM_API_BASE": steam.base,
        "STEAM_ASSETS_BASE": steam.assets_base,
        "STEAMSPY_BASE": steam.base,
    }
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)  # the kernel inherits the environment
    data = tmp / "data"
    common = {"DATA_DIR": str(data)}
    runs = {
        "download_steam_images.ipynb": {"SOURCE": "steamspy", "LIMIT": 20, "WORKERS": 4, "PACK_SNAPSHOT": str(tmp / "snap.tar.gz")},
        "find_dataset_issues.ipynb": {"MODEL": "dinov2_vits14", "PRETRAINED": False, "EXAMPLES": 3},
        "match_steam_images.ipynb": {
            "MODEL": "dinov2_vits14", "PRETRAINED": False, "K": 3,
            "COMPARE_SETTINGS": [["dinov2_vits14", "crop256", "cls"], ["dinov2_vits14", "full", "gem"]],
        },
    }  # fmt: skip
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
    assert len(manifest) == 12
    status = dict(zip(manifest.app_id, manifest.status))
    assert status[999] == "no_banner" and status[4000] == "ok"
    assert (manifest.status == "ok").sum() == 11
    for app_id in manifest.app_id[manifest.status == "ok"]:
        with Image.open(data / "banners" / f"{app_id}.jpg") as img:
            assert img.size == (224, 336) and img.mode == "RGB"
    assert (tmp / "snap.tar.gz").stat().st_size > 10_000


def test_audit_notebook_wrote_issues_and_exclusions(executed):
    _, data = executed
    issues = pd.read_parquet(data / "audit" / "issues.parquet")
    assert sorted(issues.app_id.astype(int)) == sorted(a for a in [*NAMES, 4000])
    exclusions = json.loads((data / "audit" / "exclusions.json").read_text())
    assert set(exclusions) <= {str(a) for a in issues.app_id}


def test_match_notebook_wrote_matches_comparison_and_export(executed):
    tmp, data = executed
    setting = "dinov2_vits14__crop256__cls__random"
    table = pd.read_parquet(data / "matches" / setting / "neighbors.parquet")
    exclusions = json.loads((data / "audit" / "exclusions.json").read_text())
    assert set(table.query_id) == {str(a) for a in [*NAMES, 4000]}
    assert not set(table.id) & set(exclusions)
    assert table.groupby("query_id").size().eq(3).all()
    served = json.loads((data / "matches" / setting / "neighbors.json").read_text())
    first = table[(table.query_id == "620")].sort_values("rank")
    assert [n["id"] for n in served["620"]] == list(first.id)
    names = dict(
        zip(*pd.read_parquet(data / "manifest.parquet", columns=["app_id", "name"]).T.values)
    )
    assert served["620"][0]["name"] == names[int(first.id.iloc[0])]
    assert (data / "embeddings" / "dinov2_vits14__full__gem__random" / "meta.json").is_file()
    out = nbformat.read(tmp / "match_steam_images.ipynb", as_version=4)
    images = sum(
        1 for c in out.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    )
    assert images >= 3  # the well-known games found plus the comparison


def test_match_notebook_mapped_explained_and_exported_a_site(executed):
    tmp, data = executed
    setting = "dinov2_vits14__crop256__cls__random"
    game_map = pd.read_parquet(data / "maps" / setting / "layout.parquet")
    assert set(game_map.id) == {str(a) for a in [*NAMES, 4000]}
    games = json.loads((tmp / "steam-site" / "data" / "games.json").read_text())
    assert sorted(games["ids"]) == sorted(game_map.id) and games["k"] == 3
    out = nbformat.read(tmp / "match_steam_images.ipynb", as_version=4)
    why = next(c for c in out.cells if "plot_match_explained" in c.source)
    assert any("image/png" in o.get("data", {}) for o in why.outputs)  # the heatmap figure
