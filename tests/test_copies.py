"""copies.embed_variants takes a Setting: its preset and pooling, checked against plain torch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import make_banner  # noqa: E402

from steam_dinov2.embedding.models import model_info  # noqa: E402
from steam_dinov2.embedding.pooling import pool_tokens  # noqa: E402
from steam_dinov2.embedding.preprocess import make_transform  # noqa: E402
from steam_dinov2.embedding.setting import Setting  # noqa: E402
from steam_dinov2.evaluation.copies import embed_variants, make_variant  # noqa: E402


@pytest.fixture
def banners(tmp_path):
    paths = []
    for i in (1, 2):
        paths.append(tmp_path / f"{i}.jpg")
        make_banner(i, (60, 90)).save(paths[-1])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    return [paths[0], tmp_path / "broken.jpg", paths[1]]


@pytest.mark.parametrize("preset,pooling", [("crop256", "cls"), ("full", "cls+avg")])
def test_variants_are_embedded_with_the_settings_preset_and_pooling(
    banners, vits14, preset, pooling
):
    setting = Setting("dinov2_vits14", preset, pooling, weights="random")
    vectors, sources, kinds = embed_variants(
        banners, setting, model=vits14, variants=("gray", "half"), batch_size=3
    )
    assert sources.tolist() == [0, 0, 2, 2]  # the unreadable file gives no rows
    assert kinds == ["gray", "half", "gray", "half"]
    info = model_info(vits14)
    transform = make_transform(preset, mean=info.mean, std=info.std)
    with Image.open(banners[2]) as img:
        x = transform(make_variant(img.convert("RGB"), "half"))[None]
    with torch.inference_mode():
        expected = pool_tokens(vits14, x, pooling).numpy()[0]
    np.testing.assert_allclose(vectors[3], expected, atol=1e-5)


def test_a_setting_name_is_accepted_and_a_weights_file_is_asked_for(banners, vits14):
    by_name, _, _ = embed_variants(
        banners[:1], "dinov2_vits14__crop256__gem__random", model=vits14, variants=("gray",)
    )
    by_value, _, _ = embed_variants(
        banners[:1], Setting(pooling="gem", weights="random"), model=vits14, variants=("gray",)
    )
    np.testing.assert_array_equal(by_name, by_value)
    with pytest.raises(ValueError, match="weights file"):  # no model given: it must be loaded
        embed_variants(banners[:1], "dinov2_vits14__crop256__cls__w-0123abcd", variants=("gray",))
