import matplotlib
import numpy as np
import pytest
from synthetic import make_banner

from steam_dinov2 import plot_image_grid, plot_matches

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def no_show(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show() called"))


def test_grid_shows_every_image_with_its_title(banner_dir):
    paths = sorted(banner_dir.iterdir())[:7]
    fig = plot_image_grid(paths, titles=[p.stem for p in paths], ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 9 and len(shown) == 7
    assert [ax.get_title() for ax in shown] == [p.stem for p in paths]
    assert shown[0].images[0].get_array().shape == (336, 224, 3)
    with pytest.raises(ValueError, match="2 titles for 7 images"):
        plot_image_grid(paths, titles=["a", "b"])


def test_matches_put_the_query_first_with_names_and_scores(tmp_path):
    query = make_banner(1)
    neighbors = [make_banner(2), np.asarray(make_banner(3).convert("L").convert("RGB"))]
    fig = plot_matches(
        query,
        neighbors,
        [0.91234, 0.5],
        ["Portal 2", "A very long game name that goes on"],
        query_name="Portal",
    )
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles[0] == "QUERY\nPortal"
    assert titles[1] == "Portal 2\n0.912"
    assert titles[2].endswith("…\n0.500")
    assert fig.axes[0].spines["top"].get_edgecolor()[:3] == (1.0, 0.0, 0.0)
    fig.savefig(tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000
