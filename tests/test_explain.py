import numpy as np
import pytest
from conftest import make_banner
from PIL import Image

from steam_dinov2.embedding.setting import Setting
from steam_dinov2.views.explain import explain_match, plot_match_explained, seen_box

LOGO = 56  # 4x4 patches of 14 px
RANDOM = Setting(weights="random")  # the `vits14` fixture's setting


def _logo() -> Image.Image:
    """A high-contrast checkered emblem, unlike anything make_banner draws."""
    tile = np.indices((LOGO, LOGO)).sum(axis=0) // 7 % 2
    rgb = np.stack([tile * 255, tile * 40, 255 - tile * 200], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def _with_logo(seed: int, at: tuple[int, int]) -> Image.Image:
    img = make_banner(seed)
    img.paste(_logo(), at)
    return img


def test_exact_copy_is_uniformly_maximal(vits14):
    banner = make_banner(5)
    result = explain_match(banner, banner.copy(), vits14, preset="crop256")
    assert result.heat_a.shape == result.heat_b.shape == (16, 16)
    np.testing.assert_allclose(result.heat_a, 1.0, atol=1e-4)
    np.testing.assert_allclose(result.heat_b, 1.0, atol=1e-4)


def test_shared_logo_patches_score_highest(vits14):
    # "full" shows the model the 224x336 banner pixel for pixel: patch (r, c) is pixels 14r.., 14c..
    a = _with_logo(1, (28, 56))  # patches rows 4-7, cols 2-5
    b = _with_logo(2, (140, 224))  # rows 16-19, cols 10-13: elsewhere, on another background
    result = explain_match(a, b, vits14, preset="full")
    assert result.heat_a.shape == (24, 16)
    for heat, (r, c) in ((result.heat_a, (4, 2)), (result.heat_b, (16, 10))):
        inside = np.zeros(heat.shape, bool)
        inside[r : r + 4, c : c + 4] = True
        # The 16 patches that match best are the logo's (its border patches may tie with a
        # background patch, so at least 12 of them).
        top = np.argsort(heat, axis=None)[::-1][:16]
        assert inside.ravel()[top].sum() >= 12, heat.round(2)
        assert heat[inside].mean() > heat[~inside].max() - 0.05


def test_without_the_logo_the_same_patches_are_not_special(vits14):
    a = _with_logo(1, (28, 56))
    result = explain_match(a, make_banner(2), vits14, preset="full")
    inside = np.zeros(result.heat_a.shape, bool)
    inside[4:8, 2:6] = True
    assert result.heat_a[inside].mean() < result.heat_a[~inside].max()


def test_seen_box_is_the_centre_crop():
    # 224x336 banner, crop256: resized to 256x384, centre 224 -> 196 px of the original, centred.
    x0, y0, x1, y1 = seen_box(224, 336, "crop256")
    assert (x1 - x0, y1 - y0) == pytest.approx((196, 196))
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((112, 168))
    assert seen_box(224, 336, "full") == (0, 0, 224, 336)
    with pytest.raises(ValueError, match="unknown preset"):
        seen_box(224, 336, "nope")


def test_plot_from_app_ids_escapes_names(tmp_path, vits14):
    from steam_dinov2.core.manifest import write_manifest

    data = tmp_path / "data"
    (data / "banners").mkdir(parents=True)
    make_banner(1).save(data / "banners" / "10.jpg")
    make_banner(2).save(data / "banners" / "20.jpg")
    import pandas as pd

    write_manifest(data, pd.DataFrame({"app_id": [10, 20], "name": ["$x^2$ Game", "Other"]}))
    fig = plot_match_explained(10, 20, setting=RANDOM, model=vits14, data=data)
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles[0] == "QUERY\n\\$x^2\\$ Game"
    fig.savefig(tmp_path / "out.png")  # renders: mathtext would raise on unescaped '$'
    assert fig.explanation.heat_a.shape == (16, 16)
    with pytest.raises(ValueError, match="no banner for app 99"):
        plot_match_explained(10, 99, setting=RANDOM, model=vits14, data=data)


def test_model_must_be_a_loaded_model_of_the_setting(vits14):
    with pytest.raises(ValueError, match="model must be"):
        plot_match_explained(make_banner(1), make_banner(2), setting=RANDOM, model=3)
    with pytest.raises(ValueError, match="not the setting's .'dino_vits16'."):
        plot_match_explained(
            make_banner(1), make_banner(2), setting=Setting("dino_vits16"), model=vits14
        )


def test_the_setting_names_the_model_and_the_preset(vits14):
    # No model given: the setting's own (random, seeded) is loaded, with its preset.
    a, b = make_banner(1), make_banner(2)
    fig = plot_match_explained(a, b, setting="dinov2_vits14__full__cls__random")
    want = explain_match(a, b, vits14, preset="full")
    assert fig.explanation.preset == "full" and fig.explanation.heat_a.shape == (24, 16)
    np.testing.assert_allclose(fig.explanation.heat_a, want.heat_a, atol=1e-5)
    with pytest.raises(ValueError, match="pass that file as weights"):
        plot_match_explained(a, b, setting="dinov2_vits14__crop256__cls__w-0123abcd")


def test_an_app_id_without_data_says_what_to_pass(vits14):
    with pytest.raises(ValueError, match="pass data=DATA"):
        plot_match_explained(620, make_banner(2), setting=RANDOM, model=vits14)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, vits14):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 6000)).save(bomb)  # 48 Mpixels in a few kB
    with pytest.raises(ValueError, match="too large"):
        plot_match_explained(bomb, make_banner(1), setting=RANDOM, model=vits14)


def test_caption_says_what_the_shade_and_the_mean_mean(vits14, tmp_path):
    fig = plot_match_explained(make_banner(1), make_banner(2), setting=RANDOM, model=vits14)
    fig.savefig(tmp_path / "explained.png")
    text = " ".join(fig._supxlabel.get_text().split())
    cosine = fig.explanation.cosine
    assert f"Mean patch cosine {cosine:.3f}" in text and "rank by the setting's cls vector" in text
    assert "Darkened: no close match" in text and f"{cosine:.3f}" in fig._suptitle.get_text()
    # The overlay is shade only: black of varying opacity, no colours mixed into the banner's.
    heat = fig.axes[0].images[-1]
    rgba = heat.cmap(np.linspace(0, 1, 11))
    assert (rgba[:, :3] == 0).all() and rgba[0, 3] > rgba[-1, 3] == 0
