"""Image bytes in and out: decode any banner safely, convert to RGB, resize, encode as stored.

The same steps serve downloads, snapshots, own folders and live queries, so a banner looks the
same to the model wherever it came from.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Shorter side 224 or 256 keeps DINOv2's "resize 256 (or 224), crop 224" from upscaling; a
# 600x900 banner becomes exactly 224x336 or 256x384 (the original project's img2dataset sizes).
SIZES = {"224x336": (224, 336), "256x384": (256, 384), "original": None}
# 256x384 serves every preset without upscaling (crop256 takes it as it is, crop224 and full
# downscale once); 224x336 made crop256 upscale 224 -> 256: benchmarks/bench_fidelity.py.
DEFAULT_SIZE = "256x384"
JPEG_QUALITY = 95
# Far above any Steam banner (600x900 is 0.54 MP); every stage that decodes a file from the data
# folder, a download or a snapshot checks it on the header, before a single pixel is decoded.
MAX_PIXELS = 40_000_000
# Largest difference between the colour channels of a pixel that still counts as grey: JPEG's
# chroma subsampling and rounding leave a few levels on a banner saved grey as RGB.
GRAY_SPREAD = 8
_GRAY_THUMB = 64  # the spread is measured on a copy this many pixels on its longer side


def check_pixels(img: Image.Image) -> None:
    """Raise ValueError when an opened (not yet decoded) image is above ``MAX_PIXELS``."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ValueError(f"image too large ({w}x{h} pixels, limit {MAX_PIXELS:,})")


def scaled_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """``(W, H)`` of a ``width`` x ``height`` image resized, aspect kept, so its shorter side is
    ``shorter``; ValueError when that is above ``MAX_PIXELS``.

    The input limit alone does not bound the output: a 1x20000 strip (20,000 pixels, a 70 KB PNG)
    would become 256x5,120,000 (3.9 GB of RGB). Every resize that scales the shorter side asks
    this first, so such an image is a reported skip.
    """
    scale = shorter / max(1, min(width, height))
    out = (max(1, round(width * scale)), max(1, round(height * scale)))
    if out[0] * out[1] > MAX_PIXELS:
        raise ValueError(
            f"image too elongated ({width}x{height} pixels would become {out[0]}x{out[1]} "
            f"when resized, limit {MAX_PIXELS:,})"
        )
    return out


_ORIENTATION = 0x0112  # EXIF tag; values 5..8 turn the picture a quarter
_QUARTER_TURNS = (5, 6, 7, 8)


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


def parse_size(size: str) -> tuple[int, int] | None:
    """``"224x336"`` -> (224, 336); ``"original"`` -> None."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; available: {', '.join(SIZES)}")
    return SIZES[size]


def resize_banner(
    image: bytes | Image.Image, *, size: str = DEFAULT_SIZE, upright: bool = False
) -> Image.Image:
    """Decode and resize a banner the same way for the collection and for live queries.

    Args:
        image: encoded bytes (JPEG, PNG, ... whatever the server sent) or a PIL image.
        size: one of ``SIZES``. The image is scaled, aspect kept, so its shorter side matches the
            size's shorter side (600x900 -> 224x336); ``"original"`` keeps the pixels.
        upright: apply the EXIF orientation first (``ImageOps.exif_transpose``): a phone photo
            is stored sideways with a tag saying how to turn it. For own images and uploads;
            Steam's banners are left exactly as served.

    Returns:
        RGB PIL image (HWC uint8 in [0, 255] as an array).

    Raises:
        ValueError: for an unknown size, bytes that are not a decodable image, or an image whose
            input or resized output is above ``MAX_PIXELS`` (``scaled_size``).
    """
    target = parse_size(size)
    try:
        img = Image.open(io.BytesIO(image)) if isinstance(image, bytes | bytearray) else image
        check_pixels(img)  # on the header: a decompression bomb is refused before decoding
        w, h = img.size
        turned = upright and img.getexif().get(_ORIENTATION) in _QUARTER_TURNS
        if target is None:
            return to_rgb(ImageOps.exif_transpose(img) if upright else img)
        out = scaled_size(*((h, w) if turned else (w, h)), min(target))
        if img.format == "JPEG" and min(target) < min(w, h):
            # DCT-domain downscale by 1/2, 1/4 or 1/8 while decoding, never below `out`.
            img.draft("RGB", out[::-1] if turned else out)
        if upright:
            img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
        return img if img.size == out else img.resize(out, Image.Resampling.BICUBIC)
    except UnidentifiedImageError:
        raise ValueError("not a decodable image: unknown format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a decodable image: {e}") from None


def encode_jpeg(img: Image.Image) -> bytes:
    """RGB JPEG bytes at quality 95, as saved in ``DATA/banners``."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def header_size(path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, never decoded; ValueError when it
    cannot be read or is above ``MAX_PIXELS``."""
    try:
        with Image.open(path) as img:
            check_pixels(img)
            return img.size
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(str(e)) from None


def original_size_mode(content: bytes) -> dict:
    """``orig_width``, ``orig_height``, ``orig_mode`` of an encoded image (header only)."""
    with Image.open(io.BytesIO(content)) as img:
        return {"orig_width": img.width, "orig_height": img.height, "orig_mode": img.mode}


def channel_spread(img: Image.Image) -> int:
    """Largest difference between the R, G and B of any pixel of a small copy of ``img``.

    0 for a banner whose pixels are all grey, whatever its mode (a grey banner saved as RGB has
    R = G = B); a colour banner has tens to hundreds. Returns an int in [0, 255].
    """
    small = to_rgb(img).copy()
    small.thumbnail((_GRAY_THUMB, _GRAY_THUMB), Image.Resampling.BOX)
    arr = np.asarray(small, dtype=np.int16)
    return int((arr.max(axis=2) - arr.min(axis=2)).max(initial=0))


def is_grayscale(img: Image.Image, *, spread: int = GRAY_SPREAD) -> bool:
    """True when every pixel of ``img`` is grey to within ``spread`` levels (see
    ``channel_spread``), from the pixels, not the mode."""
    return channel_spread(img) <= spread
