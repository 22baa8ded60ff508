"""The match notebook's browser in a real browser: Voila on 127.0.0.1, headless Chromium, Playwright.

Skipped unless Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` and
``voila`` packages are installed; Playwright drives the system Chromium, so ``playwright install``
(a download) is never needed. Run it alone with ``python -m pytest tests/test_browser_e2e.py``;
the screenshots land in pytest's temporary folder (the path is printed, see it with ``-s``).
"""

import hashlib
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from chromium import local_page, missing, server_process
from steam_server import App, FakeSteam

from steam_dinov2 import find_neighbors, load_embeddings
from steam_dinov2.steam.download import download_banners
from steam_dinov2.steam.metadata import load_labels

ROOT = Path(__file__).parent.parent
MISSING = missing("voila", "papermill")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")

NAMES = {
    227300: "Euro Truck Simulator 2",
    620: "Portal 2",
    413150: "Stardew Valley",
    10: "Counter-Strike",
    70: "Half-Life",
    220: "Half-Life 2",
    400: "Portal",
    1091500: "Cyberpunk 2077",
    367520: "Hollow Knight",
    4000: "Garrys Mod",
}
K = 3
SETTING = "dinov2_vits14__crop256__cls__random"
ALL_DRAWN = "[...document.querySelectorAll('.widget-gridbox img')].every(i => i.complete)"
# Each tile's caption and the SHA-256 of the image bytes it shows (ipywidgets serves them as blobs).
READ_TILES = """async tiles => Promise.all(tiles.map(async tile => {
    const img = tile.querySelector("img");
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return {
        caption: tile.querySelector(".widget-html-content").innerText,
        sha256: Array.from(digest, b => b.toString(16).padStart(2, "0")).join(""),
        loaded: img.complete && img.naturalWidth > 0,
    };
}))"""


def download_data(data: Path) -> Path:
    """``data``: a data folder of the 10 banners of ``NAMES``, downloaded from the fake Steam."""
    with FakeSteam([App(a, name=n) for a, n in NAMES.items()]) as steam:
        mp = pytest.MonkeyPatch()
        for k, v in steam.env().items():
            mp.setenv(k, v)
        try:
            source = pd.DataFrame({"app_id": list(NAMES), "name": list(NAMES.values())})
            report = download_banners(data, source=source, workers=4, progress=False)
        finally:
            mp.undo()
    assert len(list((data / "banners").glob("*.jpg"))) == len(NAMES), report
    return data


@pytest.fixture
def notebook(tmp_path):
    """A data folder of 10 banners from the fake Steam, and the match notebook parametrised for it."""
    import papermill

    data = download_data(tmp_path / "data")
    path = tmp_path / "match.ipynb"
    params = {
        "DATA_DIR": str(data),
        "MODEL": "dinov2_vits14",
        "PRETRAINED": False,
        "K": K,
        "QUERIES": ["Portal 2"],
        "COMPARE_SETTINGS": [["dinov2_vits14", "crop256", "cls"]],
        "PRECISION": "fp32",  # the kernel sees this CPU's real flags: bf16 on AMX otherwise
        "COPIES": 2,
    }
    papermill.execute_notebook(
        ROOT / "match_steam_images.ipynb",
        path,
        parameters=params,
        prepare_only=True,
        kernel_name="python3",
        progress_bar=False,
    )
    return path, data


@pytest.fixture
def voila(notebook, tmp_path):
    """Voila serving the notebook on 127.0.0.1; yields its URL. Voila runs the cells on page load."""
    path, _ = notebook
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # random weights: nothing to fetch, and a hub call must fail at once
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "voila", str(path), "--no-browser", "--Voila.ip=127.0.0.1"]
    argv += ["--Voila.port_retries=0", "--show_tracebacks=True"]
    log = tmp_path / "voila.log"
    with server_process(
        lambda port: [*argv, f"--port={port}"], cwd=tmp_path, env=env, log=log, what="voila"
    ) as port:
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture
def page():
    # blob: and data: are the images ipywidgets serves.
    with local_page(width=1100, allow=("blob:", "data:")) as page:
        yield page


def _tiles(page) -> list[dict]:
    """Query tile then neighbours: ``{"lines": caption lines, "sha256": ..., "loaded": ...}``."""
    tiles = page.locator(".widget-gridbox > .widget-vbox").evaluate_all(READ_TILES)
    return [{**t, "lines": t["caption"].split("\n")} for t in tiles]


def _expected(data, app_id) -> list[dict]:
    """What the tiles must show for ``app_id``: its own banner, then find_neighbors' top K.

    No audit ran, so nothing is excluded; the scores are shown to 3 decimals.
    """
    names = {str(a): n for a, n in NAMES.items()}  # the page shows ids as text
    # Under each name, the studio and top tags the store metadata gives (issue 22's caption).
    labels = {str(a): [g.caption()] if g.caption() else [] for a, g in load_labels(data).items()}
    table = find_neighbors(load_embeddings(data, SETTING), app_id, k=K)
    rows = [(str(app_id), ["QUERY", names[str(app_id)], *labels.get(str(app_id), []), str(app_id)])]
    rows += [
        (str(i), [names[str(i)], *labels.get(str(i), []), f"{s:.3f}", str(i)])
        for i, s in zip(table["id"], table["score"])
    ]
    return [
        {
            "lines": lines,
            "sha256": hashlib.sha256((data / "banners" / f"{i}.jpg").read_bytes()).hexdigest(),
        }
        for i, lines in rows
    ]


def _check(page, data, app_id):
    shown, want = _tiles(page), _expected(data, app_id)
    assert [t["lines"] for t in shown] == [w["lines"] for w in want]
    assert [t["sha256"] for t in shown] == [w["sha256"] for w in want]
    assert all(t["loaded"] for t in shown), "every thumbnail decoded and drawn"
    return shown


def test_typing_a_game_name_shows_its_neighbors(voila, notebook, page, tmp_path):
    from playwright.sync_api import expect

    _, data = notebook
    # Voila runs every cell (embedding, evaluation, map, site export) before the page is whole:
    # on a busy machine that takes minutes, so wait for the response, then for the browser.
    page.goto(voila, wait_until="commit", timeout=600_000)
    app = page.locator(".widget-vbox:has(> .widget-gridbox)")  # the Browser's whole widget
    grid = app.locator(".widget-gridbox")
    # The browser cell shows the first query's neighbours; embedding the banners comes first.
    expect(grid).to_contain_text("QUERY\nPortal 2", use_inner_text=True, timeout=600_000)
    expect(grid.locator("img")).to_have_count(K + 1)
    page.wait_for_function(ALL_DRAWN)
    before = _check(page, data, 620)
    app.screenshot(path=tmp_path / "before.png")

    # The query tile has no "Similar" (it is the query already); a neighbour's opens it, and
    # "Back" returns to Portal 2.
    tiles = grid.locator(":scope > .widget-vbox")
    expect(tiles.first.get_by_role("button", name="Similar")).to_have_count(0)
    top = before[1]["lines"][-1]  # the app id under the best neighbour
    tiles.nth(1).get_by_role("button", name="Similar").click()
    expect(grid).to_contain_text(f"QUERY\n{NAMES[int(top)]}", use_inner_text=True)
    page.get_by_role("button", name="Back").click()
    expect(grid).to_contain_text("QUERY\nPortal 2", use_inner_text=True)
    page.wait_for_function(ALL_DRAWN)
    _check(page, data, 620)

    search = page.get_by_placeholder("game name or app id")
    search.press_sequentially("stardew", delay=30)  # key by key, as a user types
    choices = page.locator(".widget-select select")
    expect(choices.locator("option")).to_have_text(["Stardew Valley (413150)"])
    choices.select_option(label="Stardew Valley (413150)")
    expect(grid).to_contain_text("QUERY\nStardew Valley", use_inner_text=True, timeout=30_000)
    page.wait_for_function(ALL_DRAWN)
    after = _check(page, data, 413150)
    app.screenshot(path=tmp_path / "after.png")
    print("screenshots:", tmp_path / "before.png", tmp_path / "after.png")

    assert [t["sha256"] for t in after] != [t["sha256"] for t in before]
    # Voila's icon font and the notebook's Colab badge are the only things the page asks the web for.
    hosts = {urlsplit(u).hostname for u in page.blocked}
    assert hosts <= {"cdn.jsdelivr.net", "colab.research.google.com"}, page.blocked
    assert not page.errors
