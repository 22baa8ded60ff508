"""Planted copies: a banner as a user meets it in the wild, embedded like the collection.

Each variant is deterministic (fixed parameters), so a sample of banners gives the same queries on
every run and for every setting.
"""

from __future__ import annotations

import io
import logging
import os
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from ..core.codec import check_pixels, to_rgb
from ..core.progress import tqdm
from ..embedding.embed import CPU_FORWARD_BATCH
from ..embedding.models import model_info
from ..embedding.pooling import pool_tokens
from ..embedding.preprocess import make_transform
from ..embedding.setting import as_setting

if TYPE_CHECKING:
    from ..embedding.setting import Setting

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
    setting: Setting | str | None = None,
    *,
    model=None,
    variants=tuple(VARIANTS),
    batch_size: int = 32,
    device="auto",
    progress: bool = False,
    desc: str = "copies",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embed every variant of every image as ``setting`` embeds the collection.

    Args:
        paths: the images.
        setting: a ``Setting`` or a setting name (None: ``Setting.create()``): its preset and pooling,
            and its model unless ``model`` is given.
        model: the setting's model already loaded by ``load_model`` (so it is not loaded twice).
        variants: among ``VARIANTS``.
        batch_size: images per batch (a forward pass on the CPU takes ``embed.CPU_FORWARD_BATCH``).
        device: where the model is loaded when ``model`` is None.
        progress: a bar over the V = len(paths) x len(variants) images to embed; it shows the
            count before the first batch and the time left once that batch is done.
        desc: the bar's label.

    Returns:
        ``(vectors, sources, kinds)``: (V, D') float32 L2-normalised, one row per variant made;
        ``sources`` (V,) int64 index into ``paths`` of each row's image; ``kinds`` its variant
        name. An unreadable image gives no rows (logged).
    """

    setting = as_setting(setting)
    model = setting.load_model(device=device) if model is None else model
    info = model_info(model)
    transform = make_transform(setting.preset, mean=info.mean, std=info.std)
    total = len(paths) * len(variants)
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        batches = _Embedder(model, setting.pooling, batch_size, bar.update)
        sources, kinds = [], []
        for i, path in enumerate(paths):
            image = _open_rgb(path)
            if image is None:
                bar.update(len(variants))
                continue
            for v in variants:
                batches.add(transform(make_variant(image, v)))
                sources.append(i)
                kinds.append(v)
        vectors = batches.finish()
    return vectors, np.asarray(sources, np.int64), kinds


def _open_rgb(path) -> Image.Image | None:
    """The image as RGB, or None (logged) when it cannot be read or is above ``codec.MAX_PIXELS``."""
    try:
        with Image.open(path) as img:
            check_pixels(img)
            img.load()
            return to_rgb(img)
    except Exception as e:  # an unreadable banner is a skipped sample, not a failed run
        logger.warning("copy sample %s skipped: %s: %s", path, type(e).__name__, e)
        return None


class _Embedder:
    """Transformed images in, pooled rows out, ``batch_size`` images a forward pass."""

    def __init__(self, model, pooling: str, batch_size: int, done=lambda n: None) -> None:

        self.model, self.pooling, self.batch_size = model, pooling, batch_size
        self.done = done  # called with the number of images each forward pass embedded
        self.device = next(model.parameters()).device
        self.step = CPU_FORWARD_BATCH if self.device.type == "cpu" else batch_size
        self.pending, self.chunks = [], []

    def add(self, x) -> None:
        self.pending.append(x)
        if len(self.pending) == self.batch_size:
            self._flush()

    def _flush(self) -> None:
        import torch

        x = torch.stack(self.pending).to(self.device)
        with torch.inference_mode():
            parts = [pool_tokens(self.model, part, self.pooling) for part in x.split(self.step)]
        self.chunks.append(torch.cat(parts).float().cpu().numpy())
        self.done(len(self.pending))
        self.pending.clear()

    def finish(self) -> np.ndarray:
        """(V, D') float32 of everything added ((0, 0) when nothing was)."""
        if self.pending:
            self._flush()
        dim = self.chunks[0].shape[1] if self.chunks else 0
        return np.concatenate(self.chunks) if self.chunks else np.zeros((0, dim), np.float32)
