"""Weights from a local file: its identity (a content hash, part of the setting name) and a safe
load (tensors only, never pickled objects) into a timm or torch.hub model."""

from __future__ import annotations

import functools
import hashlib
import os
import sys

import torch


def weights_tag(*, pretrained: bool = True, weights: str | os.PathLike | None = None) -> str:
    """Short name of the weights a model carries: "" (its pretrained weights), "random" or "w-<sha>"."""
    if weights is not None:
        check_weights_file(weights)
        st = os.stat(weights)
        return "w-" + _file_sha256(os.path.abspath(weights), st.st_size, st.st_mtime_ns)[:12]
    return "" if pretrained else "random"


def check_weights_file(path: str | os.PathLike) -> None:
    """ValueError naming the file and the flag when ``path`` is not a file."""
    if not os.path.isfile(path):
        raise ValueError(f"weights file not found: {os.fspath(path)} (--weights)")


@functools.lru_cache(maxsize=16)  # a run asks several times; a ViT-g file is 4.5 GB
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; ValueError naming the file and what is wrong with it."""
    import pickle

    check_weights_file(path)
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(path)
        except SafetensorError as e:
            raise ValueError(f"weights file {path} is not a valid safetensors file ({e})") from None
    else:
        # weights_only: never unpickle arbitrary objects from a file we did not write.
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch's own message suggests weights_only=False, i.e. running the file's code: no.
            raise ValueError(
                f"weights file {path} holds Python objects besides tensors, which are never "
                "loaded (they could run code); save model.state_dict() to a .pth or .safetensors"
            ) from None
        except Exception as e:  # text, truncated zip, ...: torch raises many types
            raise ValueError(
                f"weights file {path} is not a PyTorch checkpoint ({type(e).__name__})"
            ) from None
    for key in ("model", "state_dict", "teacher"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise ValueError(f"weights file {path} is not a state dict (names -> tensors)")
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in sd.items()}


def load_weights_file(model: torch.nn.Module, path: str | os.PathLike) -> None:
    sd = read_state_dict(path)
    # timm's own filter converts official checkpoints (DINOv2's mask_token, register_tokens, SwiGLU
    # names) and resamples position embeddings to the model's grid.
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        sd = filter_fn(sd, model)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).splitlines()[1:2] or [str(e)]
        raise ValueError(
            f"weights file {path} does not fit this model: {first[0].strip()}"
        ) from None
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not fit this model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
