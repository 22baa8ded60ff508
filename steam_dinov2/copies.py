"""Planted copies: a banner as a user meets it in the wild, embedded like the collection.

Each variant is deterministic (fixed parameters), so a sample of banners gives the same queries on
every run and for every setting.
"""

from __future__ import annotations

import io
import logging
import os

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from .preprocess import to_rgb

logger = logging.getLogger(__name__)

VARIANTS = {
    "jpeg30": "re-encoded as JPEG at quality 30",
    "half": "downscaled to half size and back (bilinear)",
    "crop85": "centre crop keeping 85% of each side",
    "rotate": "rotated by 5 degrees, corners filled white",
    "jitter": "colour jitter: brightness x1.2, contrast x0.8, saturation x1.3",
    "gray": "grayscale",
    "text": "a dark band with white sale text over the lower part",
}
MAX_PIXELS = 40_000_000  # as embed.MAX_PIXELS: refuse decompression bombs before decoding


def make_variant(image: Image.Image, variant: str) -> Image.Image:
    """One variant of an RGB image (see ``VARIANTS``); the same input gives the same output."""
    img = to_rgb(image)
    w, h = img.size
    if variant == "jpeg30":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=30)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if variant == "half":
        small = img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BILINEAR)
        return small.resize((w, h), Image.Resampling.BILINEAR)
    if variant == "crop85":
        cw, ch = max(1, round(w * 0.85)), max(1, round(h * 0.85))
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))
    if variant == "rotate":
        return img.rotate(5, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    if variant == "jitter":
        img = ImageEnhance.Brightness(img).enhance(1.2)
        img = ImageEnhance.Contrast(img).enhance(0.8)
        return ImageEnhance.Color(img).enhance(1.3)
    if variant == "gray":
        return img.convert("L").convert("RGB")
    if variant == "text":
        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        top = round(h * 0.72)
        draw.rectangle([0, top, w, top + round(h * 0.16)], fill=(0, 0, 0, 170))
        font = ImageFont.load_default(size=max(8, h // 14))
        draw.text((w // 12, top + h // 40), "SALE -75%", fill=(255, 255, 255, 255), font=font)
        return Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    raise ValueError(f"unknown variant {variant!r}; available: {', '.join(VARIANTS)}")


def embed_variants(
    paths: list[str | os.PathLike],
    model,
    *,
    variants=tuple(VARIANTS),
    preset: str = "crop256",
    pooling: str = "cls",
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embed every variant of every image with a model from ``load_model``.

    Returns:
        ``(vectors, sources, kinds)``: (V, D') float32 L2-normalised, one row per variant made;
        ``sources`` (V,) int64 index into ``paths`` of each row's image; ``kinds`` its variant
        name. An unreadable image gives no rows (logged).
    """
    import torch

    from .embed import CPU_FORWARD_BATCH, pool_tokens
    from .models import model_info
    from .preprocess import make_transform

    info = model_info(model)
    transform = make_transform(preset, mean=info.mean, std=info.std)
    device = next(model.parameters()).device
    step = CPU_FORWARD_BATCH if device.type == "cpu" else batch_size
    chunks, sources, kinds, batch = [], [], [], []

    def flush():
        x = torch.stack(batch).to(device)
        with torch.inference_mode():
            out = torch.cat([pool_tokens(model, part, pooling) for part in x.split(step)])
        chunks.append(out.float().cpu().numpy())
        batch.clear()

    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ValueError(f"image too large ({img.width}x{img.height} pixels)")
                img.load()
                image = to_rgb(img)
        except Exception as e:  # an unreadable banner is a skipped sample, not a failed run
            logger.warning("copy sample %s skipped: %s: %s", path, type(e).__name__, e)
            continue
        for v in variants:
            batch.append(transform(make_variant(image, v)))
            sources.append(i)
            kinds.append(v)
            if len(batch) == batch_size:
                flush()
    if batch:
        flush()
    dim = chunks[0].shape[1] if chunks else 0
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return vectors, np.asarray(sources, np.int64), kinds
