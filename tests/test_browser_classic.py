"""The Browser on Colab's own widget stack: ipywidgets 7.7.1 in Classic Notebook 6.5.7 with
widgetsnbextension 3.6.10, on 127.0.0.1, driven in headless Chromium by Playwright.

Voila 0.5 (``test_browser_e2e.py``) renders ipywidgets 8 only; Colab's front end runs 7, and Classic
Notebook is the closest stand-in for it here. Runs only in the environment ``.ci/colab-env`` builds
(skipped elsewhere, saying why):

    bash .ci/colab-env && .venv-colab/bin/python -m pytest tests/test_browser_classic.py

The data folder and the tile checks are the Voila test's (``download_data``, ``_check``); the page
is a notebook of one cell that shows ``Browser(DATA, k=3, explain_with=True)``, run from the page.
Screenshots land in pytest's temporary folder (the path is printed, see it with ``-s``).
"""

import contextlib
import hashlib
import importlib.metadata
import os
import re
import secrets
import sys
from pathlib import Path

import pytest
from chromium import local_page, missing, server_process
from test_browser_e2e import ALL_DRAWN, NAMES, SETTING, K, _check, _tiles, download_data

from steam_dinov2 import embed_folder, map_catalog


def _skip_reason() -> str | None:
    """Why this test cannot run here, or None: it needs Colab's widget stack and a browser."""
    found = {}
    for package in ("ipywidgets", "notebook", "widgetsnbextension"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "missing"
    majors = {p: v.split(".")[0] for p, v in found.items()}
    if majors != {"ipywidgets": "7", "notebook": "6", "widgetsnbextension": "3"}:
        here = ", ".join(f"{p} {v}" for p, v in found.items())
        return (
            f"Colab's widget stack only (ipywidgets 7, notebook 6; here {here}): bash .ci/colab-env"
        )
    lacking = missing("nbformat")
    return f"needs {', '.join(lacking)}" if lacking else None


SKIP = _skip_reason()
if SKIP and os.environ.get("REQUIRE_COLAB_STACK"):  # .ci/run sets it in the Colab env: never skip
    raise RuntimeError(f"REQUIRE_COLAB_STACK is set but this test cannot run: {SKIP}")
pytestmark = pytest.mark.skipif(bool(SKIP), reason=SKIP or "")

ROOT = Path(__file__).parent.parent
APP = ".widget-vbox:has(> .widget-gridbox)"  # the Browser's whole widget
NOTEBOOK_CELL = """\
import steam_dinov2 as sd

browser = sd.Browser({data!r}, k={k}, explain_with=True)
browser
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory, vits14):
    """The Voila test's 10 downloaded banners, embedded with random weights (its SETTING)."""
    data = download_data(tmp_path_factory.mktemp("classic") / "data")
    emb = embed_folder(data / "banners", data, model=vits14, num_workers=0, progress=False)
    assert emb.setting == SETTING
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Classic Notebook on 127.0.0.1 with a token; yields (base URL, token, notebook folder)."""
    home = tmp_path_factory.mktemp("notebook")
    notebooks = home / "notebooks"
    notebooks.mkdir()
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # random weights: nothing to fetch, and a hub call must fail at once
        "TQDM_DISABLE": "1",
        # Nothing from the user's own Jupyter set-up; the venv's nbextensions (widgets) still load.
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "share"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "notebook", "--no-browser", "--allow-root"]  # CI runs as root
    argv += ["--ip=127.0.0.1", "--port-retries=0", f"--NotebookApp.token={token}"]
    argv += [f"--notebook-dir={notebooks}"]
    log = home / "notebook.log"
    with server_process(
        lambda port: [*argv, f"--port={port}"], cwd=home, env=env, log=log, what="notebook"
    ) as port:
        yield f"http://127.0.0.1:{port}", token, notebooks


@pytest.fixture
def page():
    # blob: and data: are the images ipywidgets serves. Console errors are kept as well: a widget
    # view that fails to render in ipywidgets 7 says so only there.
    with local_page(width=1100, allow=("blob:", "data:")) as page:
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        yield page


KERNEL_ECHOES = """async () => {
    for (let i = 0; i < 60; i++) {
        const echoed = await new Promise(resolve => {
            const timer = setTimeout(() => resolve(false), 2000);
            Jupyter.notebook.kernel.execute("print('ready')", {iopub: {output: () => {
                clearTimeout(timer);
                resolve(true);
            }}}, {silent: false, store_history: false});
        });
        if (echoed) return true;
    }
    return false;
}"""


def open_browser(page, server, data, name: str):
    """Write a one-cell notebook showing the Browser, open it, run it; returns the app's locator."""
    import nbformat
    from playwright.sync_api import expect

    base, token, notebooks = server
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL.format(data=str(data), k=K))]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, notebooks / name)
    page.goto(f"{base}/notebooks/{name}?token={token}", timeout=60_000)
    # Run All (what the menu's "Cell > Run All" calls) once the kernel is connected and
    # widgetsnbextension has given it a widget manager; run earlier, the cell's widget comes out
    # as its text repr.
    page.wait_for_function(
        "() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel"
        " && Jupyter.notebook.kernel.is_connected() && Jupyter.notebook.kernel.widget_manager",
        timeout=120_000,
    )
    # A kernel whose output channel is not yet listened to loses what a cell shows: wait until a
    # probe's print comes back (each try waits 2 s), then run the notebook.
    assert page.evaluate(KERNEL_ECHOES), "the kernel never answered a print"
    page.evaluate("() => Jupyter.notebook.execute_all_cells()")
    app = page.locator(APP)
    # Importing torch and the package in a fresh kernel takes a while on a busy machine.
    try:
        expect(app).to_have_count(1, timeout=300_000)
    except AssertionError as e:
        out = page.locator(".output_area").all_inner_texts()
        raise AssertionError(f"{e}\nthe cell's output: {out}") from None
    expect(page.get_by_placeholder("game name or app id")).to_be_visible()
    return app


def kernel_repr(page, expression: str) -> str:
    """``repr(expression)`` evaluated in the notebook's kernel (for failure messages)."""
    return page.evaluate(
        """code => new Promise(resolve => Jupyter.notebook.kernel.execute(code, {iopub: {output:
            m => resolve(m.content.text || (m.content.ename + ": " + m.content.evalue))}},
            {silent: false, store_history: false}))""",
        f"print(repr({expression}))",
    ).strip()


@contextlib.contextmanager
def kernel_state_on_failure(page):
    """A failure inside says what the kernel's Browser holds: history, position, status."""
    try:
        yield
    except AssertionError as e:
        state = kernel_repr(page, "(browser.history, browser.position, browser.status.value)")
        raise type(e)(f"{e}\nkernel: (history, position, status) = {state}") from None


def status(app) -> str:
    return app.locator(":scope > .widget-html").first.inner_text()


def type_search(page, text: str):
    search = page.get_by_placeholder("game name or app id")
    search.click()
    search.press_sequentially(text, delay=60)  # key by key, as a user types


def test_browser_in_classic_notebook(server, data, page, tmp_path):
    """Search, pick, Similar, Back/Forward, Why?, Clusters and Upload, on ipywidgets 7."""
    from playwright.sync_api import expect

    app = open_browser(page, server, data, "browser.ipynb")
    with kernel_state_on_failure(page):
        grid = app.locator(".widget-gridbox")
        choices = app.locator(".widget-select select")

        # Search and pick a result.
        type_search(page, "stardew")
        expect(choices.locator("option")).to_have_text(["Stardew Valley (413150)"])
        choices.select_option(label="Stardew Valley (413150)")
        expect(grid).to_contain_text("QUERY\nStardew Valley", use_inner_text=True, timeout=60_000)
        expect(grid.locator("img")).to_have_count(K + 1)
        page.wait_for_function(ALL_DRAWN)
        stardew = _check(page, data, 413150)
        # (The status line after a pick is test_search_does_not_navigate_classic's: issue 20.)
        app.screenshot(path=tmp_path / "search.png")

        # Similar on the best neighbour, then Back and Forward.
        tiles = grid.locator(":scope > .widget-vbox")
        expect(tiles.first.get_by_role("button", name="Similar")).to_have_count(0)
        top = stardew[1]["lines"][-1]
        tiles.nth(1).get_by_role("button", name="Similar").click()
        expect(grid).to_contain_text(f"QUERY\n{NAMES[int(top)]}", use_inner_text=True)
        page.wait_for_function(ALL_DRAWN)
        _check(page, data, int(top))
        app.get_by_role("button", name="Back").click()
        expect(grid).to_contain_text("QUERY\nStardew Valley", use_inner_text=True)
        page.wait_for_function(ALL_DRAWN)
        _check(page, data, 413150)
        app.get_by_role("button", name="Forward").click()
        expect(grid).to_contain_text(f"QUERY\n{NAMES[int(top)]}", use_inner_text=True)
        expect(app.get_by_role("button", name="Forward")).to_be_disabled()
        page.wait_for_function(ALL_DRAWN)
        shown = _check(page, data, int(top))

        # Why? under the first neighbour: the patch heatmaps appear below the grid.
        tiles.nth(1).get_by_role("button", name="Why?").click()
        first = shown[1]["lines"][-1]
        expect(app.locator(":scope > .widget-html").first).to_contain_text(
            f"why {first} matches {top}", timeout=120_000
        )
        explained = app.locator(":scope > img.widget-image")
        expect(explained).to_be_visible(timeout=60_000)
        page.wait_for_function(
            "el => el.complete && el.naturalWidth > 0", arg=explained.element_handle()
        )
        app.screenshot(path=tmp_path / "why.png")

        # Clusters: lay out the catalogue, pick a cluster, see its members.
        app.get_by_role("button", name="Clusters").click()
        cluster = app.locator(".widget-dropdown:has-text('Cluster') select")
        expect(cluster.locator("option").first).to_have_text(
            re.compile(r"^0\s\(\d+\sgames\):\s"),
            timeout=300_000,  # ipywidgets 7 writes &nbsp;
        )
        table = map_catalog(data, SETTING)  # what the button computed, from its cache
        labels = cluster.locator("option").all_inner_texts()
        assert len(labels) == table["cluster"].nunique()
        last = int(table["cluster"].max())
        cluster.select_option(index=last)
        members = table.loc[table["cluster"] == last, "id"].tolist()
        expect(app.locator(":scope > .widget-html").first).to_contain_text(
            f"cluster {last}: {len(members)} games, page 1 of 1"
        )
        expect(grid.locator(":scope > .widget-vbox")).to_have_count(len(members))
        page.wait_for_function(ALL_DRAWN)
        captions = [t["lines"][-1] for t in _tiles(page)]
        assert sorted(captions) == sorted(str(i) for i in members)  # ids as text on the page
        app.screenshot(path=tmp_path / "cluster.png")

        # Upload a banner of the collection: it comes back as its own best match.
        banner = data / "banners" / "367520.jpg"
        # ipywidgets 7 keeps its <input type=file> out of the page: pick through the file chooser.
        with page.expect_file_chooser() as chooser:
            app.get_by_role("button", name=re.compile("Upload banner")).click()
        chooser.value.set_files(str(banner))
        digest = hashlib.sha256(banner.read_bytes()).hexdigest()[:8]
        expect(grid).to_contain_text(
            f"QUERY\noutside the collection: 367520.jpg [{digest}]",
            use_inner_text=True,
            timeout=120_000,
        )
        page.wait_for_function(ALL_DRAWN)
        uploaded = _tiles(page)
        assert uploaded[1]["lines"][0] == "Hollow Knight", uploaded
        assert float(uploaded[1]["lines"][-2]) > 0.95  # the score, above the id
        assert len(uploaded) == K + 1
        app.screenshot(path=tmp_path / "upload.png")
        print("screenshots:", *sorted(tmp_path.glob("*.png")))

        assert not page.blocked, page.blocked
        assert not page.errors, page.errors
        assert not page.dialogs, page.dialogs


def test_search_does_not_navigate_classic(server, data, page, tmp_path):
    """Issue 20: typing a search never opens a game; only a pick does.

    In ipywidgets 7, assigning ``Select.options`` selects the first option and fires the Browser's
    selection handler; the Browser must not take that for a pick, or every keystroke of a search
    opens its first match and fills the history. Nothing opens until the user picks; the status
    keeps saying how many games match.
    """
    from playwright.sync_api import expect

    app = open_browser(page, server, data, "search.ipynb")
    with kernel_state_on_failure(page):
        grid = app.locator(".widget-gridbox")
        choices = app.locator(".widget-select select")
        type_search(page, "half")
        expect(choices.locator("option")).to_have_text(["Half-Life (70)", "Half-Life 2 (220)"])
        app.screenshot(path=tmp_path / "typed.png")
        print("screenshot:", tmp_path / "typed.png")

        said, opened = status(app), grid.inner_text()
        assert said == "2 matches: pick one", f"the status says {said!r}"
        assert opened == "", f"typing opened a game before any was picked: {opened!r}"
        picked = choices.evaluate("s => s.selectedIndex")
        assert picked == -1, f"match {picked} is selected before a pick"

        choices.select_option(label="Half-Life 2 (220)")
        expect(grid).to_contain_text("QUERY\nHalf-Life 2", use_inner_text=True, timeout=60_000)
        expect(app.locator(":scope > .widget-html").first).to_contain_text("neighbours in")
        # The pick is the first entry of the history.
        back = app.get_by_role("button", name="Back")
        assert back.is_disabled(), "Back is enabled: typing put games in the history"
        page.wait_for_function(ALL_DRAWN)
        _check(page, data, 220)
        assert not page.errors, page.errors
