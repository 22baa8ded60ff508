"""Decoding helpers: grey detected from the pixels, whatever the mode."""

import io

import numpy as np
from PIL import Image
from synthetic import make_banner

from steam_dinov2.core.codec import GRAY_SPREAD, channel_spread, encode_jpeg, is_grayscale


def test_grey_pixels_are_grey_in_any_mode():
    colour = make_banner(3)
    grey_rgb = colour.convert("L").convert("RGB")  # R = G = B, mode RGB: what a download stores
    stored = Image.open(io.BytesIO(encode_jpeg(grey_rgb)))  # and after the JPEG round trip
    assert stored.mode == "RGB" and is_grayscale(stored)
    assert is_grayscale(grey_rgb) and is_grayscale(colour.convert("L"))
    assert channel_spread(grey_rgb) == 0
    assert not is_grayscale(colour) and channel_spread(colour) > 4 * GRAY_SPREAD


def test_one_coloured_corner_is_not_grey():
    arr = np.asarray(make_banner(4).convert("L").convert("RGB")).copy()
    arr[:40, :40] = (200, 30, 30)  # a red logo on a grey banner
    assert not is_grayscale(Image.fromarray(arr))
