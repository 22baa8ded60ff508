"""Preprocessing fidelity: what the model sees of a stored banner vs of the banner Steam serves.

For each stored size (``codec.SIZES``: the old default 224x336, the new 256x384) and each preset
(``preprocess.PRESETS``), a 600x900 banner goes through the download path (``resize_banner``, JPEG
quality 95 as saved, decoded again) and then the preset; the reference is the preset applied to
the served image itself. PSNR (dB, peak 1) of the two tensors after undoing the normalisation,
averaged over the images. A stored size whose shorter side is below the preset's resize target
makes the preset upscale: two resamplings, and a blur the model never saw in training.

The banners are generated (600x900, smooth fields, shapes, lines, text and grain, JPEG quality 90 as
Steam serves them); real art has other detail, so read the gap between sizes more than the level.

Run: ``python benchmarks/bench_fidelity.py [--n 40]`` (about 20 s on 2 cores).
Ends with ``TARGET <name>: <measured> (target <goal>)`` lines.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
from PIL import Image, ImageDraw

from steam_dinov2.core.codec import SIZES, encode_jpeg, resize_banner
from steam_dinov2.embedding.preprocess import (
    FULL_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    make_transform,
)

SERVED = (600, 900)  # (W, H) of library_600x900.jpg
# Shorter side each preset resizes to before cropping (full: the width of FULL_SIZE).
RESIZE_TARGET = {"crop256": 256, "crop224": 224, "full": FULL_SIZE[1]}


def make_served(seed: int) -> bytes:
    """A 600x900 banner as Steam serves it (JPEG quality 90)."""
    rng = np.random.default_rng(seed)
    w, h = SERVED
    coarse = rng.integers(0, 256, (rng.integers(2, 7), rng.integers(2, 5), 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(6, 20)):
        x0, y0 = rng.integers(-80, w), rng.integers(-80, h)
        x1, y1 = x0 + rng.integers(20, 400), y0 + rng.integers(20, 400)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 12)))
    draw.text((40, h - 120), f"GAME TITLE {seed}", fill="white", font_size=48)
    arr = np.asarray(img, dtype=np.int16) + rng.integers(-10, 11, (h, w, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return x * std + mean


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((unnormalise(a) - unnormalise(b)) ** 2).mean())
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="banners (default 40)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    served = [make_served(i) for i in range(args.n)]
    originals = [Image.open(io.BytesIO(b)).convert("RGB") for b in served]
    sizes = [s for s in SIZES if SIZES[s] is not None]
    table = {}
    for size in sizes:
        stored = [Image.open(io.BytesIO(encode_jpeg(resize_banner(b, size=size)))) for b in served]
        for preset in PRESETS:
            t = make_transform(preset)
            table[size, preset] = float(
                np.mean([psnr(t(s), t(o)) for s, o in zip(stored, originals)])
            )
    print(
        f"{args.n} generated 600x900 banners; PSNR (dB) of stored-then-preset vs preset of served"
    )
    print(f"{'stored size':<12}" + "".join(f"{p:>10}" for p in PRESETS) + "   upscales for")
    for size in sizes:
        up = [p for p in PRESETS if min(SIZES[size]) < RESIZE_TARGET[p]]
        row = "".join(f"{table[size, p]:>10.2f}" for p in PRESETS)
        print(f"{size:<12}{row}   {', '.join(up) or '-'}")
    for preset in PRESETS:
        old, new = table["224x336", preset], table["256x384", preset]
        print(
            f"TARGET {preset} fidelity at 256x384 vs 224x336: {new:.1f} dB vs {old:.1f} dB "
            f"(target: 256x384 >= 224x336, no preset upscaling)"
        )


if __name__ == "__main__":
    main()
