"""Images -> L2-normalised vectors, cached on disk per setting."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core import layout
from ..core.codec import check_pixels
from ..core.files import IMAGE_SUFFIXES, parse_image_id
from ..core.images import images_of, in_collection
from ..core.progress import tqdm
from .cache import (
    CHECKPOINT_EVERY,
    CachedRows,
    CacheTarget,
    Checkpointer,
    content_hash,
    folder_ref,
    library_versions,
    read_cache,
)
from .models import model_info, resolve_arch, select_device
from .pooling import POOLINGS, pool_tokens
from .precision import resolve_precision
from .preprocess import get_preset, make_transform, normalize
from .setting import PRETRAINED, Setting, as_setting, how_to_use, other_precisions, setting_of

logger = logging.getLogger(__name__)

CPU_FORWARD_BATCH = 8


def embed_images(
    paths,
    model: torch.nn.Module,
    *,
    preset: str = "crop256",
    pooling: str = "cls",
    batch_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    on_batch=None,
    desc: str = "embed",
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """Embed image files with a model from ``load_model``.

    Args:
        paths: image files, any format and mode PIL reads.
        model: from ``load_model``.
        preset: preprocessing preset (see ``preprocess.PRESETS``).
        pooling: one of ``POOLINGS``.
        batch_size: images per batch; None picks for the device (``default_batch_size``);
            results do not depend on it (within 1e-5).
        num_workers: DataLoader decoding processes; None picks for the device
            (``default_workers``).
        on_batch: called after every batch with ``(vectors, kept, errors)`` of that batch alone
            (same meaning as the return values), e.g. to checkpoint a long run.
        desc: the progress bar's label (``embed_folder`` names the setting).

    Returns:
        ``(vectors, kept, errors)``: vectors (M, D') float32 L2-normalised, one row per readable
        image; kept, the M indices into ``paths`` of those rows; errors, ``{path: reason}`` for the
        images skipped (unreadable, truncated, not an image, too large).
    """

    paths = [str(p) for p in paths]
    device = next(model.parameters()).device
    loader = image_loader(paths, preset, device, batch_size=batch_size, num_workers=num_workers)
    info = model_info(model)
    chunks, kept, errors = [], [], {}
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress)
    with torch.inference_mode(), bar:
        for x, idx, err in loader:
            good = torch.tensor([not e for e in err], dtype=torch.bool)
            batch_errors = {paths[i]: e for i, e in zip(idx.tolist(), err) if e}
            errors.update(batch_errors)
            pixels = x if good.all() else x[good]
            out = _forward(model, pixels, pooling, info.mean, info.std)
            chunks += [out] if len(out) else []
            kept.extend(batch_kept := idx[good].tolist())
            if on_batch is not None:
                on_batch(out, batch_kept, batch_errors)
            bar.update(len(idx))
            bar.set_postfix(skipped=len(errors))
    for p, e in errors.items():
        logger.warning("skipped %s: %s", p, e)
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    return vectors.astype(np.float32, copy=False), kept, errors


def _forward(model, x: torch.Tensor, pooling: str, mean, std) -> np.ndarray:
    """(n, D') float32 vectors of a batch of n decoded images ((n, 3, H, W) uint8 pixels),
    computed in the model's precision; an empty (0, 0) array for none."""
    if not len(x):
        return np.zeros((0, 0), np.float32)
    device = next(model.parameters()).device
    # uint8 crosses to a GPU (a quarter of float32's bytes) and is normalised there.
    x = x.to(device, non_blocking=True)
    # On a CPU a ViT runs fastest in small batches (2 cores: 13.2 img/s at 8, 11.7 at 32;
    # benchmarks/README.md); a GPU wants the whole batch. Each part is normalised just before
    # its forward: on a CPU its float32 copy is a quarter of the batch's, still in cache when the
    # model reads it (the same bits: normalising is per pixel).
    step = CPU_FORWARD_BATCH if device.type == "cpu" else len(x)
    parts = x.split(step)
    out = torch.cat([pool_tokens(model, normalize(p, mean=mean, std=std), pooling) for p in parts])
    return out.cpu().numpy()


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
    ids: list[int]  # app ids (own images' ids above Steam's), in row order
    vectors: np.ndarray
    meta: dict
    errors: dict[int, str] = field(default_factory=dict)
    embedded: int = 0  # of this call: images embedded now ...
    reused: int = 0  # ... and vectors taken from the cache or an interrupted run's checkpoints
    dropped: int = 0  # ... and cached rows dropped: their image left the collection (or folder)

    def made_from(self) -> dict:
        """Which rows these are, for a table computed from them to tell when it is stale: the
        cache generation, and what ``load_embeddings`` left out of it (when it did)."""
        made = {"vectors_file": self.meta.get("vectors_file", "")}
        if left_out := self.meta.get("left_out_sha256"):
            made["left_out_sha256"] = left_out
        return made


def load_embeddings(data: str | os.PathLike, setting: str | Setting) -> Embeddings:
    """Read one setting's cache (a ``Setting`` or its name); ValueError naming the cached
    settings when it is missing, or naming the damaged file and the fix when it cannot be
    trusted. A cache of the data folder's banners serves only the images still in the
    collection (``images_of(data)``), whatever it holds (``image_files.in_collection``)."""
    asked = setting
    setting = setting_of(setting)
    folder = layout.embeddings_dir(data, setting)
    if not layout.cache_meta_path(folder).is_file():
        cached = layout.list_settings(data)
        raise ValueError(
            f"no embeddings for setting {setting!r} in {data}"
            + _in_other_precision(asked, cached)
            + "; run `embed` first"
            + (f" (cached: {', '.join(cached)})" if cached else "")
        )
    meta, rows = read_cache(folder)
    ids, vectors = rows.ids, rows.vectors
    if meta.get("images") == folder_ref(layout.banners_dir(data), data):
        ids, vectors, meta = in_collection(data, setting, ids, vectors, meta)
    return Embeddings(setting, ids, vectors, meta)


def _in_other_precision(setting: Setting | str, cached: list[str]) -> str:
    """Part of a message: the caches of ``setting`` in another precision, and how to ask for
    one (a cache of another precision is served only when asked for)."""
    try:
        others = other_precisions(as_setting(setting), cached)
    except ValueError:  # a malformed name: the message names the cached settings anyway
        return ""
    asks = " or ".join(f"{s.name} with {how_to_use(s)}" for s in others)
    return f"; it is cached in another precision: use {asks}" if others else ""


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def embed_folder(
    images: str | os.PathLike | None,
    data: str | os.PathLike,
    *,
    setting: Setting | str | None = None,
    model: torch.nn.Module | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    device: str = "auto",
    checkpoint_every: int = CHECKPOINT_EVERY,
    progress: bool = True,
) -> Embeddings:
    """Embed the images ``images_of(data, images)`` names, reusing the setting's cache in ``data``.

    Vectors of unchanged files are reused, new or changed files embedded and appended, images
    that left (file gone, or no longer in the collection) dropped; a cache made with other
    weights or options is never mixed in. The model is loaded only when something needs
    embedding. A checkpoint every ``checkpoint_every`` images (and ``cache.CHECKPOINT_SECONDS``):
    a run killed at 80% keeps 80%, the next one embeds the rest.

    Args:
        images: ``layout.banners_dir(data)`` or None for the collection, else a folder of one's
            own images (an image's id is its file stem).
        data: the data folder; the cache goes to ``embeddings/<setting>/``.
        setting: a ``Setting`` or its name; None: the default ``Setting()``, or with ``model``
            that model's own (its name and weights, default preset and pooling).
        model: the model of ``setting`` already loaded (``setting.load_model()``), so it is not
            loaded twice; ValueError when it is another model or has other weights.
        batch_size, num_workers, device: run options (how fast, not which vectors); None picks
            the batch size and decoding workers for the device (``embed_images``).
        checkpoint_every: images per checkpoint (at least 1).

    Returns:
        Embeddings with ids in row order and (N, D') float32 L2-normalised vectors; ``errors``
        lists the images skipped as unreadable, ``dropped`` counts the cached rows left out.
    """
    setting = _checked_setting(setting, model, device)
    found, source = _images_to_embed(images, data, checkpoint_every)
    _refuse_silent_switch(setting, data)
    target = CacheTarget(Path(data), setting.name, setting.key(), source)
    cached = CachedRows.read(target)
    now = {i: _stamp(p) for i, p in found.items()}
    by_content = cached.refresh(now, found)
    reused, done = len(cached.ids), {*cached.ids, *cached.failed}
    if todo := [i for i in found if i not in done]:
        model = setting.load_model(device=device) if model is None else model
        hashes = {i: content_hash(found[i]) for i in todo}
        saver = Checkpointer(target, todo, now, checkpoint_every, hashes)
        new, kept, errs = embed_images(
            [found[i] for i in todo],
            model,
            preset=setting.preset,
            pooling=setting.pooling,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            on_batch=saver.add,
            desc=f"embed {target.setting}",  # which setting, when a cell embeds several
        )
        _add_new(cached, saver, new, kept, errs)
    return _saved(cached, target, model, reused, by_content)


def _add_new(cached: CachedRows, saver: Checkpointer, new, kept, errs) -> None:
    """Append what ``embed_images`` made of ``saver.todo`` (its vectors, ``kept`` rows and
    failures) to ``cached``."""
    now = saver.stamps
    for p, e in errs.items():  # every file here is named by its id (core.images)
        app_id = parse_image_id(Path(p).stem)
        cached.failed[app_id] = [e, *now[app_id]]
    ids = [saver.todo[j] for j in kept]
    cached.append(new, ids, [now[i] for i in ids], [saver.hashes[i] for i in ids])
    cached.changed = True


def _saved(cached: CachedRows, target: CacheTarget, model, reused: int, by_content: int):
    """Write ``cached`` when it changed, drop the checkpoints it now holds: the Embeddings."""
    if cached.changed:
        fresh = {**target.key, "dim": 0, "versions": library_versions()}
        extra = {"arch": model_info(model).arch} if model is not None else {}
        cached.write(target, {**(cached.meta or fresh), "images": target.source, **extra})
    for path in layout.embedding_checkpoints(target.data, target.setting, suffix=""):
        path.unlink(missing_ok=True)
    errors = {i: f[0] for i, f in cached.failed.items()}
    embedded = len(cached.ids) - reused
    counts = (embedded, reused, cached.dropped)
    logger.info(
        "%s: %d embedded, %d reused (%d by content), %d skipped, %d dropped (left the collection)",
        *(target.setting, embedded, reused, by_content, len(errors), cached.dropped),
    )
    ids, vectors, meta = cached.ids, cached.vectors, cached.meta
    return Embeddings(target.setting, ids, vectors, meta, errors, *counts)


def _refuse_silent_switch(setting: Setting, data) -> None:
    """ValueError when ``setting``'s precision was picked for this machine ("auto"), it has no
    cache in ``data``, but the same setting has one in another precision (made on another
    machine): neither re-embed everything nor mix, unless the user says which."""
    if not setting.auto_precision:
        return
    if layout.cache_meta_path(layout.embeddings_dir(data, setting.name)).is_file():
        return
    others = other_precisions(setting, layout.list_settings(data))
    if others:
        use = " or ".join(f"{how_to_use(s)} to extend {s.name}" for s in others)
        raise ValueError(
            f"this setting is cached in {data} in {', '.join(s.precision for s in others)}, "
            f"while this machine picks {setting.precision}: not embedding everything again "
            f"without being asked. Pass {use}, or {how_to_use(setting)} to embed anew"
        )


def _model_setting(model: torch.nn.Module, setting: Setting) -> Setting:
    """``setting`` as a loaded model makes it (its name, weights and precision)."""
    info = model_info(model)
    weights = info.weights_tag or PRETRAINED
    return Setting(info.name, setting.preset, setting.pooling, weights, info.precision)


def _checked_setting(setting, model, device) -> Setting:
    """The ``Setting`` ``embed_folder`` embeds with; ValueError for a bad choice, or a model or
    device that does not make its vectors."""
    if model is not None and not isinstance(model, torch.nn.Module):
        raise ValueError(
            f"model must be a model from load_model, not {type(model).__name__}: name the model "
            "in setting=Setting.create(model, preset, pooling, pretrained=..., weights=...)"
        )
    setting = None if setting is None else as_setting(setting)  # None: the model's own
    if model is not None:
        own = _model_setting(model, setting or Setting())
        if setting is not None and own.name != setting.name:
            raise ValueError(
                f"the model given embeds as {own.name}, not as setting {setting.name}: pass "
                "setting.load_model() as model, or no model"
            )
        setting = setting or own
    setting = setting or Setting()
    if model is None:  # a precision the device cannot run says so before any work
        resolve_precision(setting.precision, select_device(device))
    make_transform(setting.preset)  # a bad preset or pooling fails before any work
    if setting.pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {setting.pooling!r}; available: {', '.join(POOLINGS)}")
    resolve_arch(setting.model)
    return setting


def _images_to_embed(images, data, checkpoint_every: int) -> tuple[dict[str, Path], str]:
    """``images_of(data, images)`` and the folder as the cache records it (``folder_ref``);
    ValueError for a missing or empty folder or a bad ``checkpoint_every``."""
    folder = layout.banners_dir(data) if images is None else Path(images)
    if not folder.is_dir():
        fix = "" if images else "; run `download`, `import-snapshot` or `import-folder` first"
        raise ValueError(f"image folder not found: {folder}{fix}")
    if checkpoint_every < 1:
        raise ValueError(
            f"checkpoint_every is a number of images, at least 1; got {checkpoint_every}"
        )
    found = images_of(data, images)
    if not found:
        raise ValueError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return found, folder_ref(folder, data)


class ImageFiles(torch.utils.data.Dataset):
    """Decodes in DataLoader workers: ``(pixels, index, error)`` per file, pixels (3, H, W) uint8
    from ``pixels`` (a preset's); a bad file yields zeros and the reason, never raises."""

    def __init__(self, paths, pixels, shape):
        self.paths, self.pixels, self.shape = list(paths), pixels, shape

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            with Image.open(self.paths[i]) as img:
                check_pixels(img)
                img.load()
                return self.pixels(img), i, ""
        except Exception as e:  # any decoder failure is a skip to report, not a crash
            return torch.zeros(self.shape, dtype=torch.uint8), i, f"{type(e).__name__}: {e}"


def default_workers(device: torch.device) -> int:
    """DataLoader decoding processes for the device."""
    # A GPU waits for decoding: workers hide it. On a CPU the model already uses every core, so a
    # worker process only competes with it and adds a hand-over (one worker: 0.81x of decoding in
    # process at the bf16 rate on 2 cores), and so did a thread decoding ahead (0.876x vs 0.893x
    # model-only, 12 rounds; benchmarks/README.md).
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


# Images per batch on a GPU (an estimate, not measured here: no GPU): in inference a ViT-B/14 at
# 224 in half precision holds a few MB of activations per image at once (257 tokens x 768 wide,
# 4x that in its MLP, 12 heads of 257x257 attention), so 256 images take ~1-2 GB beside the
# weights and fit a 16 GB T4 with room, while each hand-over feeds the GPU a large batch; a GPU
# under 8 GB takes half.
CUDA_BATCH = 256
CUDA_SMALL_MEMORY = 8 << 30
# On a CPU a batch is cut into forwards of CPU_FORWARD_BATCH anyway; 32 is what it has measured.
CPU_BATCH = 32


def default_batch_size(device: torch.device) -> int:
    """Images per batch for the device: ``CUDA_BATCH`` on a GPU (half under ``CUDA_SMALL_MEMORY``
    of memory), ``CPU_BATCH`` elsewhere."""
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BATCH
    memory = torch.cuda.get_device_properties(device).total_memory
    return CUDA_BATCH if memory >= CUDA_SMALL_MEMORY else CUDA_BATCH // 2


def image_loader(
    paths: list[str],
    preset: str,
    device: torch.device,
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
):
    """A DataLoader of ``(pixels, indices, errors)`` batches for a model on ``device``: pixels
    (B, 3, H, W) uint8, to be ``normalize``d with the model's mean and std; pinned memory and
    worker processes where the device wants them, batch size and workers picked for the device
    where None."""
    p = get_preset(preset)
    device = torch.device(device)
    workers = default_workers(device) if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        ImageFiles(paths, p.pixels, (3, *p.size)),
        batch_size=default_batch_size(device) if batch_size is None else batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        # Each worker keeps this many batches ready: enough to cover a slow file while the GPU
        # computes. Workers are not kept between calls: one call is one pass over its files.
        prefetch_factor=PREFETCH_BATCHES if workers else None,
    )


PREFETCH_BATCHES = 4
