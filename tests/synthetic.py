"""Synthetic Steam-like banners for tests and benchmarks: one generator, numpy and PIL only."""

import numpy as np
from PIL import Image, ImageDraw


def make_banner(seed: int, size=(224, 336)) -> Image.Image:
    """A banner-like RGB image: a two-colour gradient with random shapes, different for every seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = Image.fromarray(((1 - t) * top + t * bottom).repeat(w, 1).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(15, w // 2)), y0 + int(rng.integers(15, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1, y1], fill=colour)
    draw.text(
        (int(rng.integers(5, w // 2)), int(rng.integers(5, h - 20))), f"GAME {seed}", fill="white"
    )
    return img
