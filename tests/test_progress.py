"""Progress bars: tqdm.auto in a terminal; in a saved notebook, the final state, not "0%"."""

from pathlib import Path

import nbformat
import pytest
import tqdm.auto

from steam_dinov2.core import progress


def test_outside_a_notebook_the_bar_is_tqdm_auto():
    assert progress.tqdm is tqdm.auto.tqdm


def _saved_outputs(tmp_path, module, options=""):
    """The display outputs a papermill-saved notebook keeps of one bar over 7 items."""
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import time\nfrom {module} import tqdm\n"
            f"for _ in tqdm(range(7), desc='work'{options}):\n    time.sleep(0.02)"
        )
    ]
    nbformat.write(nb, tmp_path / "in.ipynb")
    out = tmp_path / f"{module}.ipynb"
    papermill.execute_notebook(
        tmp_path / "in.ipynb", out, progress_bar=False, kernel_name="python3"
    )
    outputs = nbformat.read(out, as_version=4).cells[0].outputs
    return [o.data for o in outputs if "text/plain" in o.get("data", {})]


WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel_env(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # conftest disables bars; not here
    monkeypatch.setenv("PYTHONPATH", str(Path(progress.__file__).parents[2]))  # the kernel's


# One bundle each, saved at its final state, under ipywidgets 7 (Colab's) and 8: a widget while it
# is open; a bar closed with leave=False keeps its final line as text; a delayed bar shows on its
# first refresh (0.14 s > 0.05 s) and is then updated the same way.
@pytest.mark.parametrize(
    "options, widget", [("", True), (", leave=False", False), (", delay=0.05", True)]
)
def test_a_saved_notebook_shows_the_final_state_of_the_bar(tmp_path, kernel_env, options, widget):
    ours = _saved_outputs(tmp_path, "steam_dinov2.core.progress", options)
    assert len(ours) == 1, ours  # ipywidgets 7 once published the bar a second time
    text = ours[0]["text/plain"]
    assert text.startswith("work: 100%|") and "| 7/7 [" in text
    assert (WIDGET in ours[0]) == widget


def test_tqdm_auto_alone_saves_the_first_state(tmp_path, kernel_env):
    # What this module fixes: tqdm.auto's widget is saved as it was first displayed.
    plain = _saved_outputs(tmp_path, "tqdm.auto")
    assert len(plain) == 1 and "0%" in plain[0]["text/plain"] and "0/7" in plain[0]["text/plain"]


def test_bars_in_lends_our_bar_to_a_package_and_gives_it_back():
    import io

    from cleanvision.issue_managers import duplicate_issue_manager as cleanvision_module

    out = io.StringIO()
    options = {"unit": "banner", "file": out, "disable": False}
    with (
        pytest.raises(RuntimeError),
        progress.bars_in("cleanvision", desc_prefix="CV: ", **options),
    ):
        for _ in cleanvision_module.tqdm(range(3), desc="Computing hashes"):
            pass
        raise RuntimeError("CleanVision failed")
    assert "CV: Computing hashes: 100%" in out.getvalue() and "3/3" in out.getvalue()
    assert "banner/s" in out.getvalue()
    assert cleanvision_module.tqdm is tqdm.auto.tqdm  # restored, after an error too


@pytest.mark.parametrize("disable", [True, False])
def test_a_disabled_or_closed_twice_bar_is_harmless(disable):
    bar = progress.tqdm(range(3), disable=disable)
    assert list(bar) == [0, 1, 2]
    bar.close()
    bar.close()
