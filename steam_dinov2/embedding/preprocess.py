"""Preprocessing presets: what the model sees of a banner, as one ``Preset`` value each."""

from __future__ import annotations

import dataclasses
import functools

from ..core.codec import scaled_size, to_rgb

# ImageNet statistics: DINO, DINOv2 and DINOv3 were all trained with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preset:
    """The geometry of a preprocessing preset, the one place it is spelled.

    Attributes:
        name: the preset's name (a cache name carries it).
        description: what it does, for the user.
        resize: the shorter side is resized to this (bicubic), keeping the aspect ratio; or, for
            a preset without a crop, the exact ``(H, W)`` the image is resized to.
        crop: the side of the centre square kept after the resize; None keeps the whole image.
    """

    name: str
    description: str
    resize: int | tuple[int, int]
    crop: int | None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of what the model sees."""
        return (self.crop, self.crop) if self.crop else tuple(self.resize)

    def seen_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in an image's own pixels: the part this preset shows the model."""
        if self.crop is None:
            return 0.0, 0.0, float(width), float(height)
        side = self.crop * min(width, height) / self.resize  # the centre crop, in original pixels
        x0, y0 = (width - side) / 2, (height - side) / 2
        return x0, y0, x0 + side, y0 + side

    def transform(self, *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        """PIL image of any mode -> (3, H, W) float32 normalised by ``mean``/``std`` (``size``)."""
        from torchvision import transforms as T

        geometry = [T.Resize(self.resize, interpolation=T.InterpolationMode.BICUBIC)]
        if self.crop:
            geometry.append(T.CenterCrop(self.crop))
        # Resize scales the shorter side: a 1x20000 strip would become 256x5,120,000 pixels.
        # The check comes first and raises ValueError, a skip for the loader (picklable for its
        # worker processes, so a partial of a module function rather than a lambda).
        bound = [T.Lambda(functools.partial(_bounded, shorter=self.resize))]
        if not isinstance(self.resize, int):
            bound = []  # an exact (H, W): the output is that size whatever the input
        return T.Compose(
            [*bound, T.Lambda(to_rgb), *geometry, T.ToTensor(), T.Normalize(mean, std)]
        )


def _bounded(img, shorter: int):
    """``img`` unchanged, after ``scaled_size`` checked its resize stays within the limit."""
    scaled_size(*img.size, shorter)
    return img


PRESETS = {
    p.name: p
    for p in (
        # Resize 256 then crop 224: DINOv2's classification eval transform (dinov2/data/transforms.py).
        Preset(
            "crop256",
            "resize shorter side to 256 (bicubic), center crop 224: DINOv2's classification eval",
            256,
            224,
        ),
        Preset(
            "crop224",
            "resize shorter side to 224 (bicubic), center crop 224: the original steam-DINOv2",
            224,
            224,
        ),
        # 224x336 is 16x24 patches of 14 px, and a multiple of 16 and 8 for DINO v1 and DINOv3.
        Preset("full", "the whole 2:3 banner resized to 224x336 (WxH), no crop", (336, 224), None),
    )
}


def get_preset(name: str | Preset) -> Preset:
    """The ``Preset`` of a name; ValueError naming the presets for any other."""
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]


def make_transform(preset: str = "crop256", *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The transform of a preset: PIL image of any mode -> (3, H, W) float32, normalised.

    Args:
        preset: one of ``PRESETS`` (crop256, crop224, full).
        mean, std: per-channel normalisation (ImageNet's, which DINO, DINOv2 and DINOv3 use).

    Returns:
        A callable; crop presets give (3, 224, 224), ``full`` gives (3, 336, 224).
    """
    return get_preset(preset).transform(mean=mean, std=std)
