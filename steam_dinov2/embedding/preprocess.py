"""Preprocessing presets: what the model sees of a banner."""

from __future__ import annotations

# Decoding lives in codec.py; these stay importable from here, where the model stage finds them.
from ..core.codec import to_rgb

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
