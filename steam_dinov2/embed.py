"""Images -> L2-normalised vectors, cached on disk per setting."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import layout
from .cache import CHECKPOINT_EVERY, Checkpointer, read_cache, read_checkpoints, write_cache
from .models import forward_tokens, model_info, resolve_arch, select_device
from .preprocess import FULL_SIZE, MAX_PIXELS, make_transform
from .setting import Setting, precision_for, setting_of

logger = logging.getLogger(__name__)

POOLINGS = {
    "cls": "CLS token of the last block (DINO's k-NN eval; steam-DINO's 'Simple')",
    "cls+avg": "CLS concatenated with the mean patch token (DINO's linear eval, base models)",
    "last4cls": "CLS tokens of the last 4 blocks concatenated (DINO's linear eval, small models)",
    "gem": "GeM (p=3) over the patch tokens (DINO's copy detection pools this way)",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
GEM_P = 3.0
CPU_FORWARD_BATCH = 8


def pool_tokens(model: torch.nn.Module, x: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
    """Embed a batch: (B, 3, H, W) normalised images -> (B, D') float32, rows L2-normalised.

    D' is the model's width D for ``cls`` and ``gem``, 2*D for ``cls+avg``, 4*D for ``last4cls``.
    Register tokens never count as patches.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; available: {', '.join(POOLINGS)}")
    layers = forward_tokens(model, x, n_last=4 if pooling == "last4cls" else 1)
    cls, patches = layers[-1]
    if pooling == "cls":
        out = cls
    elif pooling == "cls+avg":
        out = torch.cat([cls, patches.mean(dim=1)], dim=-1)
    elif pooling == "last4cls":
        out = torch.cat([c for c, _ in layers], dim=-1)
    else:
        # DINO's copy detection clamps to positive before GeM (it uses p=4 and adds the CLS token;
        # p=3 is the usual GeM default for retrieval).
        p = patches.float().clamp(min=1e-6)
        out = p.pow(GEM_P).mean(dim=1).pow(1.0 / GEM_P)
    return torch.nn.functional.normalize(out.float(), dim=-1)


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


def list_images(folder: str | os.PathLike) -> dict[str, Path]:
    """``{id: path}`` of the images in a folder; an image's id is its file stem."""
    found, root = {}, Path(folder).resolve()
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if reason := layout.not_a_regular_file(p, root):  # FIFOs, folders, links out
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
    if not Path(images).is_dir():
        raise ValueError(f"image folder not found: {images}")
    if checkpoint_every < 1:
        raise ValueError(
            f"checkpoint_every is a number of images, at least 1; got {checkpoint_every}"
        )
    resolve_arch(setting.model)
    name = setting.name
    folder = layout.embeddings_dir(data, name)
    key = setting.key()
    source = _folder_ref(images, data)

    ids, stamps, vectors, failed, meta = [], [], np.zeros((0, 0), np.float32), {}, None
    if layout.cache_meta_path(folder).is_file():
        try:
            meta, rows = read_cache(folder)
        except (ValueError, OSError) as e:
            logger.warning("%s; recomputing", e)
        else:
            if meta.get("images", source) != source:
                raise ValueError(
                    f"{folder} holds embeddings of {meta['images']}, not {source}: embed that "
                    "folder with another data folder (--data), or delete this cache"
                )
            made = {k: meta.get(k, "fp32" if k == "precision" else None) for k in key}
            if made == key:
                ids, stamps, vectors, failed = (
                    rows["ids"],
                    rows["stamps"],
                    rows["vectors"],
                    rows["failed"],
                )
            else:
                logger.warning("cache %s was made with other options; recomputing", folder)
                meta = None
    resumed, have = 0, set(ids)
    for rows in read_checkpoints(data, name, key, source):
        new = [r for r, i in enumerate(rows["ids"]) if i not in have]
        if new and (len(ids) == 0 or rows["vectors"].shape[1] == vectors.shape[1]):
            vectors = np.concatenate([vectors, rows["vectors"][new]]) if ids else rows["vectors"]
            ids = ids + [rows["ids"][r] for r in new]
            stamps = stamps + [rows["stamps"][r] for r in new]
            have.update(ids[-len(new) :])
            resumed += len(new)
        failed = {**rows["failed"], **failed}
    if resumed:
        logger.info("resuming %s: %d images from checkpoints of an interrupted run", name, resumed)

    files = list_images(images)
    if not files:
        raise ValueError(f"no images in {images} (looked for {', '.join(IMAGE_SUFFIXES)})")
    now = {i: _stamp(p) for i, p in files.items()}
    keep = [r for r, i in enumerate(ids) if now.get(i) == stamps[r]]
    still_failed = {i: f for i, f in failed.items() if now.get(i) == f[1:] and i not in have}
    changed = meta is None or resumed or len(keep) != len(ids) or len(still_failed) != len(failed)
    failed = still_failed
    ids, stamps, vectors = [ids[r] for r in keep], [stamps[r] for r in keep], vectors[keep]
    done = set(ids) | set(failed)
    todo = [i for i in files if i not in done]
    if todo:
        model = loaded or setting.load_model(device=device)
        saver = Checkpointer(data, name, key, source, todo, now, checkpoint_every)
        new, kept, errs = embed_images(
            [files[i] for i in todo],
            model,
            preset=setting.preset,
            pooling=setting.pooling,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            on_batch=saver.add,
        )
        failed.update({Path(p).stem: [e, *now[Path(p).stem]] for p, e in errs.items()})
        if len(new):
            vectors = np.concatenate([vectors, new]) if len(ids) else new
            ids += [todo[j] for j in kept]
            stamps += [now[todo[j]] for j in kept]
        changed = True
    if changed:
        base = {**(meta or {**key, "dim": 0, "versions": _versions()}), "images": source}
        if isinstance(model, torch.nn.Module):
            base["arch"] = model_info(model).arch
        meta = write_cache(folder, base, ids, stamps, vectors, failed)
    for path in layout.embedding_checkpoints(data, name, suffix=""):  # in the cache now
        path.unlink(missing_ok=True)
    errors = {i: f[0] for i, f in failed.items()}
    return Embeddings(name, ids, vectors, meta, errors)
