"""Images -> L2-normalised vectors, cached on disk per setting."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import files, layout
from .cache import CHECKPOINT_EVERY, CachedRows, Checkpointer, content_hash, read_cache
from .models import model_info, resolve_arch, select_device
from .pooling import GEM_P, POOLINGS, pool_tokens  # noqa: F401  (public here too)
from .preprocess import FULL_SIZE, MAX_PIXELS, make_transform
from .setting import Setting, precision_for, setting_of

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
CPU_FORWARD_BATCH = 8


class _ImageFiles(torch.utils.data.Dataset):
    """Decodes in DataLoader workers; a bad file yields a zero image and the reason, never raises."""

    def __init__(self, paths, transform, shape):
        self.paths, self.transform, self.shape = list(paths), transform, shape

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            with Image.open(self.paths[i]) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ValueError(f"image too large ({w}x{h} pixels)")
                img.load()
                return self.transform(img), i, ""
        except Exception as e:  # any decoder failure is a skip to report, not a crash
            return torch.zeros(self.shape), i, f"{type(e).__name__}: {e}"


def precision_tag(device: torch.device) -> str:
    """ "fp16" where ``embed_images`` runs in half precision (CUDA autocast), else "" (float32):
    part of the setting name, so fp16 and fp32 vectors never share a cache."""
    return "" if precision_for(torch.device(device)) == "fp32" else "fp16"


def _default_workers(device: torch.device) -> int:
    # A GPU waits for decoding: workers hide it. On a CPU the model already uses every core, so a
    # worker process only competes with it and adds a hand-over: decoding in this process measured
    # 1.01x model-only vs 0.985x with one worker (2 cores, 256 images; benchmarks/README.md).
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def embed_images(
    paths,
    model: torch.nn.Module,
    *,
    preset: str = "crop256",
    pooling: str = "cls",
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = True,
    on_batch=None,
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """Embed image files with a model from ``load_model``.

    Args:
        paths: image files, any format and mode PIL reads.
        model: from ``load_model``.
        preset: preprocessing preset (see ``preprocess.PRESETS``).
        pooling: one of ``POOLINGS``.
        batch_size: images per forward pass; results do not depend on it (within 1e-5).
        num_workers: DataLoader decoding processes; None picks for the device.
        on_batch: called after every batch with ``(vectors, kept, errors)`` of that batch alone
            (same meaning as the return values), e.g. to checkpoint a long run.

    Returns:
        ``(vectors, kept, errors)``: vectors (M, D') float32 L2-normalised, one row per readable
        image; kept, the M indices into ``paths`` of those rows; errors, ``{path: reason}`` for the
        images skipped (unreadable, truncated, not an image, too large).
    """
    from .progress import tqdm

    paths = [str(p) for p in paths]
    info = model_info(model)
    transform = make_transform(preset, mean=info.mean, std=info.std)
    shape = (3, 224, 224) if preset != "full" else (3, *FULL_SIZE)
    device = next(model.parameters()).device
    workers = _default_workers(device) if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        _ImageFiles(paths, transform, shape),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    chunks, kept, errors = [], [], {}
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")
    with (
        torch.inference_mode(),
        autocast,
        tqdm(total=len(paths), unit="img", disable=not progress) as bar,
    ):
        for x, idx, err in loader:
            good = torch.tensor([not e for e in err], dtype=torch.bool)
            batch_errors = {paths[i]: e for i, e in zip(idx.tolist(), err) if e}
            errors.update(batch_errors)
            out = None
            if good.any():
                x = (x if good.all() else x[good]).to(device, non_blocking=True)
                # On a CPU a ViT runs fastest in small batches (2 cores: 13.2 img/s at 8, 11.7 at
                # 32; benchmarks/README.md); a GPU wants the whole batch.
                step = CPU_FORWARD_BATCH if device.type == "cpu" else len(x)
                out = torch.cat([pool_tokens(model, part, pooling) for part in x.split(step)])
                out = out.cpu().numpy()
                chunks.append(out)
                kept.extend(idx[good].tolist())
            if on_batch is not None:
                out = np.zeros((0, 0), np.float32) if out is None else out
                on_batch(out, idx[good].tolist(), batch_errors)
            bar.update(len(idx))
            bar.set_postfix(skipped=len(errors))
    for p, e in errors.items():
        logger.warning("skipped %s: %s", p, e)
    dim = chunks[0].shape[1] if chunks else 0
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return vectors.astype(np.float32, copy=False), kept, errors


def embed_image(image: Image.Image, model: torch.nn.Module, *, preset="crop256", pooling="cls"):
    """One PIL image of any mode (a query from outside the collection) -> (D',) float32, unit norm."""
    info = model_info(model)
    x = make_transform(preset, mean=info.mean, std=info.std)(image)[None]
    device = next(model.parameters()).device
    with torch.inference_mode():
        return pool_tokens(model, x.to(device), pooling)[0].cpu().numpy()


@dataclass(frozen=True)
class Embeddings:
    """One setting's cached embeddings: ``vectors[i]`` (float32, L2-normalised) belongs to ``ids[i]``."""

    setting: str
    ids: list[str]
    vectors: np.ndarray
    meta: dict
    errors: dict[str, str] = field(default_factory=dict)
    embedded: int = 0  # of this call: images embedded now ...
    reused: int = 0  # ... and vectors taken from the cache or an interrupted run's checkpoints


def list_images(folder: str | os.PathLike) -> dict[str, Path]:
    """``{id: path}`` of the images in a folder; an image's id is its file stem."""
    found, root = {}, Path(folder).resolve()
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if reason := files.not_a_regular_file(p, root):  # FIFOs, folders, links out
                logger.warning("skipped %s: %s", p, reason)
                continue
            if p.stem in found:
                logger.warning("two images share the id %s; using %s", p.stem, found[p.stem].name)
                continue
            found[p.stem] = p
    return found


def load_embeddings(data: str | os.PathLike, setting: str | Setting) -> Embeddings:
    """Read one setting's cache (a ``Setting`` or its name); ValueError naming the cached
    settings when it is missing, or naming the damaged file and the fix when it cannot be
    trusted."""
    setting = setting_of(setting)
    folder = layout.embeddings_dir(data, setting)
    if not layout.cache_meta_path(folder).is_file():
        cached = layout.list_settings(data)
        raise ValueError(
            f"no embeddings for setting {setting!r} in {data}; run `embed` first"
            + (f" (cached: {', '.join(cached)})" if cached else "")
        )
    meta, rows = read_cache(folder)
    return Embeddings(setting, rows["ids"], rows["vectors"], meta)


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _folder_ref(images, data) -> str:
    """The image folder as the cache records it: relative to the data folder when inside it (so
    a data folder can move, e.g. onto Google Drive), else absolute."""
    images, data = Path(images).resolve(), Path(data).resolve()
    return images.relative_to(data).as_posix() if images.is_relative_to(data) else str(images)


def _versions() -> dict:
    import timm
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
    }


def _setting_for(model, preset, pooling, pretrained, weights, device) -> Setting:
    """The setting of ``embed_folder``'s loose arguments; a loaded model brings its own."""
    if isinstance(model, torch.nn.Module):
        info = model_info(model)
        return Setting(
            info.name,
            preset,
            pooling,
            weights=info.weights_tag or "pretrained",
            precision=precision_for(next(model.parameters()).device),
        )
    return Setting.create(
        model, preset, pooling, pretrained=pretrained, weights=weights, device=device
    )


def embed_folder(
    images: str | os.PathLike,
    data: str | os.PathLike,
    *,
    setting: Setting | None = None,
    model: str | torch.nn.Module = "dinov2_vits14",
    preset: str = "crop256",
    pooling: str = "cls",
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str = "auto",
    checkpoint_every: int = CHECKPOINT_EVERY,
    progress: bool = True,
) -> Embeddings:
    """Embed every image in a folder, reusing the setting's cache under ``data``.

    Cached vectors of unchanged files are kept, new or changed files are embedded and appended,
    vanished files are dropped; a cache made with other weights or options is never mixed in.
    The model is loaded only when something needs embedding. A long run writes a checkpoint every
    ``checkpoint_every`` images (and at least every ``cache.CHECKPOINT_SECONDS``): a run killed at 80%
    keeps 80%, and the next run embeds only the rest.

    Args:
        images: folder of images; an image's id is its file stem (for banners, the app id).
        data: the data folder; the cache goes to ``embeddings/<setting>/``.
        setting: the ``Setting`` to embed with; when given, it replaces model, preset, pooling,
            pretrained and weights (its precision must be the device's).
        model: a name for ``load_model``, or a model it returned (then pretrained/weights are
            taken from the model).
        preset, pooling: see ``preprocess.PRESETS`` and ``POOLINGS``.
        batch_size, num_workers, device: run options (how fast, not which vectors).
        checkpoint_every: images per checkpoint (at least 1).

    Returns:
        Embeddings with ids in row order and (N, D') float32 L2-normalised vectors; ``errors``
        lists the images skipped as unreadable.
    """
    loaded = model if isinstance(model, torch.nn.Module) else None
    setting = _checked_setting(setting, model, preset, pooling, pretrained, weights, device)
    _check_folder_options(images, checkpoint_every)
    name, key, source = setting.name, setting.key(), _folder_ref(images, data)
    cached = CachedRows.read(data, name, key, source)
    if cached.resumed:
        logger.info("resuming %s: %d from checkpoints of an interrupted run", name, cached.resumed)
    files = list_images(images)
    if not files:
        raise ValueError(f"no images in {images} (looked for {', '.join(IMAGE_SUFFIXES)})")
    now = {i: _stamp(p) for i, p in files.items()}
    by_content = cached.refresh(now, files)
    reused = len(cached.ids)
    done = set(cached.ids) | set(cached.failed)
    todo = [i for i in files if i not in done]
    if todo:
        model = loaded or setting.load_model(device=device)
        hashes = {i: content_hash(files[i]) for i in todo}
        saver = Checkpointer(data, name, key, source, todo, now, checkpoint_every, hashes)
        run = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress}
        paths = [files[i] for i in todo]
        opts = {"preset": setting.preset, "pooling": setting.pooling, "on_batch": saver.add}
        new, kept, errs = embed_images(paths, model, **opts, **run)
        cached.failed.update({Path(p).stem: [e, *now[Path(p).stem]] for p, e in errs.items()})
        ids = [todo[j] for j in kept]
        cached.append(new, ids, [now[i] for i in ids], [hashes[i] for i in ids])
        cached.changed = True
    if cached.changed:
        fresh = {**key, "dim": 0, "versions": _versions()}
        extra = {"arch": model_info(model).arch} if isinstance(model, torch.nn.Module) else {}
        cached.write(data, name, {**(cached.meta or fresh), "images": source, **extra})
    for path in layout.embedding_checkpoints(data, name, suffix=""):  # in the cache now
        path.unlink(missing_ok=True)
    errors = {i: f[0] for i, f in cached.failed.items()}
    embedded = len(cached.ids) - reused
    counts = (embedded, reused, by_content, len(errors))
    logger.info("%s: %d embedded, %d reused (%d by content), %d skipped", name, *counts)
    return Embeddings(name, cached.ids, cached.vectors, cached.meta, errors, embedded, reused)


def _checked_setting(setting, model, preset, pooling, pretrained, weights, device) -> Setting:
    """``setting``, or the one the loose arguments name; ValueError for a bad choice."""
    if setting is None:
        setting = _setting_for(model, preset, pooling, pretrained, weights, device)
    elif precision_for(select_device(device)) != setting.precision:
        raise ValueError(
            f"setting {setting.name} embeds in {setting.precision}; device {device!r} runs "
            f"{precision_for(select_device(device))}: pick the device it was made on"
        )
    make_transform(setting.preset)  # a bad preset or pooling fails before any work
    if setting.pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {setting.pooling!r}; available: {', '.join(POOLINGS)}")
    resolve_arch(setting.model)
    return setting


def _check_folder_options(images, checkpoint_every: int) -> None:
    if not Path(images).is_dir():
        raise ValueError(f"image folder not found: {images}")
    if checkpoint_every < 1:
        raise ValueError(
            f"checkpoint_every is a number of images, at least 1; got {checkpoint_every}"
        )
