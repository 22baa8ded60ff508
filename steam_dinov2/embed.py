"""Images -> L2-normalised vectors, cached on disk per setting."""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import layout
from .models import forward_tokens, load_model, resolve_arch, weights_tag
from .preprocess import FULL_SIZE, MAX_PIXELS, make_transform

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
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """Embed image files with a model from ``load_model``.

    Args:
        paths: image files, any format and mode PIL reads.
        model: from ``load_model``.
        preset: preprocessing preset (see ``preprocess.PRESETS``).
        pooling: one of ``POOLINGS``.
        batch_size: images per forward pass; results do not depend on it (within 1e-5).
        num_workers: DataLoader decoding processes; None picks for the device.

    Returns:
        ``(vectors, kept, errors)``: vectors (M, D') float32 L2-normalised, one row per readable
        image; kept, the M indices into ``paths`` of those rows; errors, ``{path: reason}`` for the
        images skipped (unreadable, truncated, not an image, too large).
    """
    from .progress import tqdm

    paths = [str(p) for p in paths]
    info = model.steam_info
    transform = make_transform(preset, mean=info["mean"], std=info["std"])
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
            errors.update({paths[i]: e for i, e in zip(idx.tolist(), err) if e})
            if good.any():
                x = (x if good.all() else x[good]).to(device, non_blocking=True)
                # On a CPU a ViT runs fastest in small batches (2 cores: 13.2 img/s at 8, 11.7 at
                # 32; benchmarks/README.md); a GPU wants the whole batch.
                step = CPU_FORWARD_BATCH if device.type == "cpu" else len(x)
                out = torch.cat([pool_tokens(model, part, pooling) for part in x.split(step)])
                chunks.append(out.cpu().numpy())
                kept.extend(idx[good].tolist())
            bar.update(len(idx))
            bar.set_postfix(skipped=len(errors))
    for p, e in errors.items():
        logger.warning("skipped %s: %s", p, e)
    dim = chunks[0].shape[1] if chunks else 0
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return vectors.astype(np.float32, copy=False), kept, errors


def embed_image(image: Image.Image, model: torch.nn.Module, *, preset="crop256", pooling="cls"):
    """One PIL image of any mode (a query from outside the collection) -> (D',) float32, unit norm."""
    info = model.steam_info
    x = make_transform(preset, mean=info["mean"], std=info["std"])(image)[None]
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


def load_embeddings(data: str | os.PathLike, setting: str) -> Embeddings:
    """Read one setting's cache; ValueError naming the cached settings when it is missing."""
    folder = layout.embeddings_dir(data, setting)
    if not (folder / "meta.json").is_file():
        cached = layout.list_settings(data)
        raise ValueError(
            f"no embeddings for setting {setting!r} in {data}; run `embed` first"
            + (f" (cached: {', '.join(cached)})" if cached else "")
        )
    meta, rows = _read_cache(folder)
    return Embeddings(setting, rows["ids"], rows["vectors"], meta)


def _read_cache(folder: Path) -> tuple[dict, dict]:
    meta = json.loads((folder / "meta.json").read_text())
    rows = json.loads((folder / meta["ids_file"]).read_text())
    rows["vectors"] = np.load(folder / meta["vectors_file"], allow_pickle=False)
    if not (len(rows["ids"]) == len(rows["stamps"]) == len(rows["vectors"]) == meta["count"]):
        raise ValueError(f"corrupt embedding cache {folder}: delete the folder to recompute")
    return meta, rows


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _write_cache(folder: Path, meta: dict, ids, stamps, vectors, failed) -> dict:
    # New files under a fresh generation name, then meta.json (the commit point) in one rename: a
    # kill at any moment leaves the old meta with its old files, or the new meta with the new ones.
    gen = uuid.uuid4().hex[:8]
    meta = {**meta, "count": len(ids), "dim": int(vectors.shape[1]) if len(ids) else meta["dim"]}
    meta.update(vectors_file=f"vectors-{gen}.npy", ids_file=f"ids-{gen}.json")
    with layout.atomic_path(folder / meta["vectors_file"]) as tmp:
        np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
    rows = {"ids": ids, "stamps": stamps, "failed": failed}
    layout.write_text_atomic(folder / meta["ids_file"], json.dumps(rows))
    layout.write_text_atomic(folder / "meta.json", json.dumps(meta, indent=1))
    for old in [*folder.glob("vectors-*.npy"), *folder.glob("ids-*.json")]:
        if old.name not in (meta["vectors_file"], meta["ids_file"]):
            old.unlink(missing_ok=True)
    return meta


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


def embed_folder(
    images: str | os.PathLike,
    data: str | os.PathLike,
    *,
    model: str | torch.nn.Module = "dinov2_vits14",
    preset: str = "crop256",
    pooling: str = "cls",
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Embeddings:
    """Embed every image in a folder, reusing the setting's cache under ``data``.

    Cached vectors of unchanged files are kept, new or changed files are embedded and appended,
    vanished files are dropped; a cache made with other weights or options is never mixed in.
    The model is loaded only when something needs embedding.

    Args:
        images: folder of images; an image's id is its file stem (for banners, the app id).
        data: the data folder; the cache goes to ``embeddings/<setting>/``.
        model: a name for ``load_model``, or a model it returned (then pretrained/weights are
            taken from the model).
        preset, pooling: see ``preprocess.PRESETS`` and ``POOLINGS``.

    Returns:
        Embeddings with ids in row order and (N, D') float32 L2-normalised vectors; ``errors``
        lists the images skipped as unreadable.
    """
    make_transform(preset)  # a bad preset or pooling fails before any work
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; available: {', '.join(POOLINGS)}")
    if not Path(images).is_dir():
        raise ValueError(f"image folder not found: {images}")
    if isinstance(model, torch.nn.Module):
        name, tag = model.steam_info["name"], model.steam_info["weights_tag"]
    else:
        resolve_arch(model)
        name, tag = model, weights_tag(pretrained=pretrained, weights=weights)
    setting = layout.setting_name(name, preset, pooling, weights_tag=tag)
    folder = layout.embeddings_dir(data, setting)
    key = {"model": name, "weights": tag or "pretrained", "preset": preset, "pooling": pooling}
    source = _folder_ref(images, data)

    ids, stamps, vectors, failed, meta = [], [], np.zeros((0, 0), np.float32), {}, None
    if (folder / "meta.json").is_file():
        try:
            meta, rows = _read_cache(folder)
        except (ValueError, OSError, KeyError) as e:
            logger.warning("ignoring unreadable cache %s (%s); recomputing", folder, e)
        else:
            if meta.get("images", source) != source:
                raise ValueError(
                    f"{folder} holds embeddings of {meta['images']}, not {source}: embed that "
                    "folder with another data folder (--data), or delete this cache"
                )
            if {k: meta.get(k) for k in key} == key:
                ids, stamps, vectors, failed = (
                    rows["ids"],
                    rows["stamps"],
                    rows["vectors"],
                    rows["failed"],
                )
            else:
                logger.warning("cache %s was made with other options; recomputing", folder)
                meta = None

    files = list_images(images)
    if not files:
        raise ValueError(f"no images in {images} (looked for {', '.join(IMAGE_SUFFIXES)})")
    now = {i: _stamp(p) for i, p in files.items()}
    keep = [r for r, i in enumerate(ids) if now.get(i) == stamps[r]]
    still_failed = {i: f for i, f in failed.items() if now.get(i) == f[1:]}
    changed = meta is None or len(keep) != len(ids) or len(still_failed) != len(failed)
    failed = still_failed
    ids, stamps, vectors = [ids[r] for r in keep], [stamps[r] for r in keep], vectors[keep]
    done = set(ids) | set(failed)
    todo = [i for i in files if i not in done]
    if todo:
        if not isinstance(model, torch.nn.Module):
            model = load_model(name, pretrained=pretrained, weights=weights, device=device)
        new, kept, errs = embed_images(
            [files[i] for i in todo],
            model,
            preset=preset,
            pooling=pooling,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
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
            base["arch"] = model.steam_info["arch"]
        meta = _write_cache(folder, base, ids, stamps, vectors, failed)
    errors = {i: f[0] for i, f in failed.items()}
    return Embeddings(setting, ids, vectors, meta, errors)
