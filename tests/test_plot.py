import matplotlib
import numpy as np
import pytest
from synthetic import make_banner

from steam_dinov2 import plot_image_grid, plot_matches
from steam_dinov2.views.grids import blank_banner, grid_shape, name_with_id, shorten

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


def test_titles_keep_the_app_id_and_cut_the_name():
    assert shorten("Euro Truck Simulator 2 (227300)", 25) == "Euro Truck Simu… (227300)"
    assert name_with_id("Euro Truck Simulator 2", 227300, 18) == "Euro Truck Simula…\n(227300)"
    assert name_with_id("Portal 2", 620) == "Portal 2 (620)"  # short enough: whole
    assert name_with_id("", 620) == name_with_id(None, "620") == "620"  # no name: the id alone
    assert shorten("A very long game name that goes on", 10) == "A very lo…"  # no id: plain cut
    fig = plot_matches(make_banner(1), [make_banner(2)], [0.5], ["Euro Truck Simulator 2 (227300)"])
    assert fig.axes[1].get_title() == "Euro Truck Simulat… (227300)\n0.500"


@pytest.mark.parametrize(
    "n, ncols, shape",
    [(6, 5, (2, 3)), (7, 6, (2, 4)), (10, 3, (5, 2)), (5, 5, (1, 5)), (12, 5, (3, 4))],
)
def test_grids_leave_no_tile_alone_on_a_row(n, ncols, shape):
    assert grid_shape(n, ncols) == shape
    rows, cols = shape
    assert n % cols != 1 and rows * cols >= n and cols <= ncols
    fig = plot_image_grid([blank_banner()] * n, ncols=ncols)
    assert len(fig.axes) == rows * cols


def test_matches_with_k6_fill_two_rows_with_the_query_framed():
    fig = plot_matches(blank_banner(0), [blank_banner()] * 6, [0.9] * 6)  # 7 tiles in rows of 6
    assert len(fig.axes) == 8 and sum(bool(ax.images) for ax in fig.axes) == 7
    framed = [ax for ax in fig.axes if ax.spines["top"].get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert framed == [fig.axes[0]] and framed[0].spines["top"].get_visible()
