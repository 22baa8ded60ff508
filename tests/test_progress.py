"""Progress bars: tqdm.auto in a terminal; in a saved notebook, the final state, not "0%"."""

from pathlib import Path

import nbformat
import pytest
import tqdm.auto

from steam_dinov2.core import progress


def test_outside_a_notebook_the_bar_is_tqdm_auto():
    assert progress.tqdm is tqdm.auto.tqdm


def _saved_text(tmp_path, module):
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"from {module} import tqdm\nfor _ in tqdm(range(7), desc='work'):\n    pass"
        )
    ]
    nbformat.write(nb, tmp_path / "in.ipynb")
    out = tmp_path / f"{module}.ipynb"
    papermill.execute_notebook(
        tmp_path / "in.ipynb", out, progress_bar=False, kernel_name="python3"
    )
    outputs = nbformat.read(out, as_version=4).cells[0].outputs
    return [o.data["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]


def test_a_saved_notebook_shows_the_final_state_of_the_bar(tmp_path, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # conftest disables bars; not here
    monkeypatch.setenv("PYTHONPATH", str(Path(progress.__file__).parents[1]))  # the kernel
    ours = _saved_text(tmp_path, "steam_dinov2.core.progress")
    assert len(ours) == 1 and "100%" in ours[0] and "7/7" in ours[0]
    # What this fixes: tqdm.auto's widget is saved as it was first displayed.
    plain = _saved_text(tmp_path, "tqdm.auto")
    assert len(plain) == 1 and "0%" in plain[0] and "0/7" in plain[0]


@pytest.mark.parametrize("disable", [True, False])
def test_a_disabled_or_closed_twice_bar_is_harmless(disable):
    bar = progress.tqdm(range(3), disable=disable)
    assert list(bar) == [0, 1, 2]
    bar.close()
    bar.close()
