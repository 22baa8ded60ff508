"""Preprocessing presets: what the model sees of a banner, as one ``Preset`` value each."""

from __future__ import annotations

import dataclasses
import functools
import math

from PIL import Image

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

    def pixels(self, img):
        """PIL image of any mode -> (3, H, W) uint8 in [0, 255] (``size``): the pixels the model
        sees, before ``normalize``; the same pixels as torchvision's ``Resize`` (bicubic) and
        ``CenterCrop``, bit for bit.

        ValueError when the resize would exceed ``MAX_PIXELS`` (a skip for the loader): Resize
        scales the shorter side, so a 1x20000 strip would become 256x5,120,000 pixels.
        """
        from torchvision.transforms import functional as F

        if isinstance(self.resize, int):
            scaled_size(*img.size, self.resize)
        img = to_rgb(img)
        if self.crop is None:
            img = img.resize(self.resize[::-1], Image.Resampling.BICUBIC)
        else:
            img = _resize_crop(img, self.resize, self.crop)
        return F.pil_to_tensor(img)

    def transform(self, *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        """PIL image of any mode -> (3, H, W) float32 normalised by ``mean``/``std`` (``size``):
        ``normalize(pixels(img))``, which equals torchvision's Resize, CenterCrop, ToTensor and
        Normalize."""
        return functools.partial(_transform, self, mean=mean, std=std)


def _transform(preset: Preset, img, *, mean, std):
    return normalize(preset.pixels(img), mean=mean, std=std)


def normalize(x, *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(..., 3, H, W) uint8 pixels (one image or a batch, on any device) -> float32 normalised by
    ``mean``/``std``: torchvision's ToTensor then Normalize, the same operations in the same order
    (so one image or a batch gives the same bits)."""
    import torch
    from torchvision.transforms import functional as F

    # One float32 copy, then in place: the same roundings as ToTensor's division and Normalize,
    # without a second temporary of 4 bytes a pixel (its allocation cost more than the division).
    return F.normalize(x.to(torch.float32, copy=True).div_(255), mean, std, inplace=True)


def _resize_crop(img, shorter: int, crop: int):
    """``img`` (RGB) resized so its shorter side is ``shorter`` (bicubic), then its centre
    ``crop`` x ``crop`` square: torchvision's ``Resize(shorter)`` and ``CenterCrop(crop)``, bit
    for bit, computing only the pixels that are kept where that is exact.

    PIL resizes in two passes, horizontal then vertical, each output pixel a weighted sum of the
    input pixels around its centre ``(i + 0.5) * scale``; given a box it computes those of the
    box alone, with the same weights when every centre is the same float. That holds when
    ``scale`` is a dyadic fraction (224 -> 256 is 7/8, 600 -> 256 is 75/32: the usual banner
    sizes), so the crop is computed directly, pass by pass in PIL's order, on the rows the
    vertical pass reads (the crop of 600x900 costs about half of the resize it replaces).
    Otherwise the whole image is resized and then cropped.
    """
    w, h = img.size
    # torchvision's output size: the shorter side is `shorter`, the longer one truncated.
    ow, oh = (shorter, int(shorter * h / w)) if w <= h else (int(shorter * w / h), shorter)
    # torchvision's CenterCrop offsets.
    left, top = int(round((ow - crop) / 2.0)), int(round((oh - crop) / 2.0))
    if (ow, oh) != (w, h) and _dyadic(w, ow) and _dyadic(h, oh):
        sx, sy = w / ow, h / oh
        # Rows the vertical pass reads: its centres +- its support (2 input pixels for bicubic,
        # widened by the scale when shrinking), one more each side to stay clear of rounding.
        support = 2 * max(sy, 1.0)
        r0 = max(0, math.floor((top + 0.5) * sy - support) - 1)
        r1 = min(h, math.ceil((top + crop - 0.5) * sy + support) + 1)
        rows = img.crop((0, r0, w, r1))
        box = (left * sx, 0, (left + crop) * sx, r1 - r0)
        wide = rows.resize((crop, r1 - r0), Image.Resampling.BICUBIC, box=box)
        box = (0, top * sy - r0, crop, (top + crop) * sy - r0)
        return wide.resize((crop, crop), Image.Resampling.BICUBIC, box=box)
    if (ow, oh) != (w, h):
        img = img.resize((ow, oh), Image.Resampling.BICUBIC)
    return img.crop((left, top, left + crop, top + crop))


def _dyadic(size: int, resized: int) -> bool:
    """True when ``size / resized`` is a dyadic fraction (its reduced denominator a power of 2),
    so every product of it with a half-integer is exact in floating point."""
    q = resized // math.gcd(size, resized)
    return q & (q - 1) == 0


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
