"""Preprocessing presets: what the model sees of a banner."""

from __future__ import annotations

import numpy as np
from PIL import Image

# ImageNet statistics: DINO, DINOv2 and DINOv3 were all trained with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (what it does, for the user)
PRESETS = {
    "crop256": "resize shorter side to 256 (bicubic), center crop 224: DINOv2's classification eval",
    "crop224": "resize shorter side to 224 (bicubic), center crop 224: the original steam-DINOv2",
    "full": "the whole 2:3 banner resized to 224x336 (WxH), no crop",
}
# 224x336 is 16x24 patches of 14 px, and a multiple of 16 and 8 for DINO v1 and DINOv3.
FULL_SIZE = (336, 224)  # (H, W)
# Far above any Steam banner (600x900 is 0.54 MP); every stage that decodes a file from the data
# folder, a download or a snapshot checks it on the header, before a single pixel is decoded.
MAX_PIXELS = 40_000_000


def check_pixels(img: Image.Image) -> None:
    """Raise ValueError when an opened (not yet decoded) image is above ``MAX_PIXELS``."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ValueError(f"image too large ({w}x{h} pixels, limit {MAX_PIXELS:,})")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: L, LA, P, RGBA, CMYK, I;16, I and F modes all occur on Steam.

    Transparent pixels are composited onto white (banners are designed for a light store page).
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # PIL's convert clips these to 0..255; scale the 16-bit range down instead.
        arr = np.asarray(img, dtype=np.float32)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def make_transform(preset: str = "crop256", *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The transform of a preset: PIL image of any mode -> (3, H, W) float32, normalised.

    Args:
        preset: one of ``PRESETS`` (crop256, crop224, full).
        mean, std: per-channel normalisation (ImageNet's, which DINO, DINOv2 and DINOv3 use).

    Returns:
        A callable; crop presets give (3, 224, 224), ``full`` gives (3, 336, 224).
    """
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    if preset == "crop256":
        # Resize 256 then crop 224: DINOv2's classification eval transform (dinov2/data/transforms.py).
        geometry = [T.Resize(256, interpolation=bicubic), T.CenterCrop(224)]
    elif preset == "crop224":
        geometry = [T.Resize(224, interpolation=bicubic), T.CenterCrop(224)]
    elif preset == "full":
        geometry = [T.Resize(FULL_SIZE, interpolation=bicubic)]
    else:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    return T.Compose([T.Lambda(to_rgb), *geometry, T.ToTensor(), T.Normalize(mean, std)])
