"""Model registry and loading: DINOv2, DINO and DINOv3 vision transformers through timm or torch.hub."""

from __future__ import annotations

import os
import weakref
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from .precision import autocast_dtype, resolve_precision, weights_dtype
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .weights import load_weights_file, weights_tag

HUB_PREFIX = "hub:"
# Random weights come from this seed, so two runs (and a cache one made and the other extends) agree.
RANDOM_SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # timm name with its pretrained tag
    dim: int  # embedding size of one token
    patch_size: int
    family: str


@dataclass(frozen=True)
class ModelInfo:
    """What ``load_model`` knows about a model it returned (``model_info(model)``).

    Attributes:
        name: the name it was loaded by; arch: the timm architecture (or the hub name);
        weights_tag: "" (pretrained), "random" or "w-<sha>"; dim: token width;
        patch_size: pixels per patch side; mean, std: its normalisation;
        num_prefix_tokens: CLS plus register tokens before the patches;
        precision: "fp32", "bf16" or "fp16", what ``forward_tokens`` runs it in.
    """

    name: str
    arch: str
    weights_tag: str
    dim: int
    patch_size: int
    mean: tuple
    std: tuple
    num_prefix_tokens: int
    precision: str = "fp32"


# A model's info lives beside it, not on it: no attribute is attached to a torch module, and the
# entry goes when the model is garbage collected.
_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_info(model: torch.nn.Module) -> ModelInfo:
    """The ``ModelInfo`` of a model ``load_model`` returned; ValueError for any other model."""
    try:
        return _INFO[model]
    except (KeyError, TypeError):
        raise ValueError(
            f"{type(model).__name__} was not loaded by load_model; load it with "
            "steam_dinov2.load_model(name) so its preprocessing and tokens are known"
        ) from None


def _spec(arch: str, dim: int, patch: int, family: str) -> ModelSpec:
    return ModelSpec(arch, dim, patch, family)


# The names the original steam-DINOv2 / steam-DINO projects used (the torch.hub entry points), mapped
# to the timm port of the same weights. DINOv3 is new here.
MODELS: dict[str, ModelSpec] = {
    "dinov2_vits14": _spec("vit_small_patch14_dinov2.lvd142m", 384, 14, "DINOv2"),
    "dinov2_vitb14": _spec("vit_base_patch14_dinov2.lvd142m", 768, 14, "DINOv2"),
    "dinov2_vitl14": _spec("vit_large_patch14_dinov2.lvd142m", 1024, 14, "DINOv2"),
    "dinov2_vitg14": _spec("vit_giant_patch14_dinov2.lvd142m", 1536, 14, "DINOv2"),
    "dinov2_vits14_reg": _spec("vit_small_patch14_reg4_dinov2.lvd142m", 384, 14, "DINOv2"),
    "dinov2_vitb14_reg": _spec("vit_base_patch14_reg4_dinov2.lvd142m", 768, 14, "DINOv2"),
    "dinov2_vitl14_reg": _spec("vit_large_patch14_reg4_dinov2.lvd142m", 1024, 14, "DINOv2"),
    "dinov2_vitg14_reg": _spec("vit_giant_patch14_reg4_dinov2.lvd142m", 1536, 14, "DINOv2"),
    "dino_vits16": _spec("vit_small_patch16_224.dino", 384, 16, "DINO"),
    "dino_vits8": _spec("vit_small_patch8_224.dino", 384, 8, "DINO"),
    "dino_vitb16": _spec("vit_base_patch16_224.dino", 768, 16, "DINO"),
    "dino_vitb8": _spec("vit_base_patch8_224.dino", 768, 8, "DINO"),
    "dinov3_vits16": _spec("vit_small_patch16_dinov3.lvd1689m", 384, 16, "DINOv3"),
    "dinov3_vitb16": _spec("vit_base_patch16_dinov3.lvd1689m", 768, 16, "DINOv3"),
    "dinov3_vitl16": _spec("vit_large_patch16_dinov3.lvd1689m", 1024, 16, "DINOv3"),
}


def available_models() -> list[dict]:
    """The registry as rows: name, family, timm architecture, embedding size and patch size."""
    return [
        {"name": n, "family": s.family, "arch": s.arch, "dim": s.dim, "patch_size": s.patch_size}
        for n, s in MODELS.items()
    ]


def select_device(device: str | torch.device = "auto") -> torch.device:
    """The best device available (cuda > mps > cpu) for "auto", else ``device`` itself."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_model(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> torch.nn.Module:
    """Load a model by registry name, any timm name, or ``hub:owner/repo:entry`` / ``hub:DIR:entry``.

    Args:
        name: a key of ``MODELS`` (see ``available_models()``), a timm model name, or a torch.hub
            entry point (``hub:facebookresearch/dinov2:dinov2_vits14``, or a local directory with a
            ``hubconf.py``) to use the official implementation exactly.
        pretrained: download the published weights; False gives the real architecture with random
            weights from a fixed seed (how the tests run offline).
        weights: a local weights file (official ``.pth`` or timm ``.safetensors``) for air-gapped use;
            takes precedence over ``pretrained``.
        device: "auto" (cuda > mps > cpu) or any torch device.
        precision: "auto" (``precision.choose_precision``: bf16 on a CPU with AMX or
            AVX512-BF16 or an Ampere GPU, fp16 on older GPUs, else fp32; the reason is logged),
            or "fp32", "bf16", "fp16".

    Returns:
        The model in eval mode on ``device``, its weights in the precision's dtype (bf16 on a
        CPU, else float32); ``model_info(model)`` gives its ``ModelInfo`` (name, arch,
        weights_tag, dim, patch_size, mean, std, num_prefix_tokens, precision).
    """
    # weights_tag refuses a weights file that is not there, naming it and --weights.
    tag = weights_tag(pretrained=pretrained, weights=weights)
    if name.startswith(HUB_PREFIX):
        model, info = _load_hub(name, pretrained=pretrained and weights is None, weights=weights)
    else:
        model, info = _load_timm(name, pretrained=pretrained and weights is None, weights=weights)
    device = select_device(device)
    precision, _ = resolve_precision(precision, device)
    model = model.eval().requires_grad_(False).to(device, weights_dtype(precision, device))
    _INFO[model] = ModelInfo(name=name, weights_tag=tag, precision=precision, **info)
    return model


def resolve_arch(name: str) -> str:
    """The timm architecture of a model name; ValueError naming the choices when there is none."""
    if name.startswith(HUB_PREFIX):
        return name
    if name in MODELS:
        return MODELS[name].arch
    import timm

    if timm.is_model(name.split(".")[0]):
        return name
    raise ValueError(
        f"unknown model {name!r}; available: {', '.join(MODELS)}, any timm model name, "
        "or hub:owner/repo:entry"
    )


def _load_timm(name: str, *, pretrained: bool, weights) -> tuple[torch.nn.Module, dict]:
    import timm

    arch = resolve_arch(name)
    # dynamic_img_size interpolates the position embeddings to any input size (the 224x336 preset).
    kwargs = {"dynamic_img_size": True}
    if pretrained:
        try:
            model = timm.create_model(arch, pretrained=True, **kwargs)
        except TypeError as e:
            raise _not_a_vit(name, e) from None
        except Exception as e:  # the hub raises many types: offline, DNS, HTTP, missing cache
            raise RuntimeError(
                f"could not get the pretrained weights of {name!r} ({arch}) from the Hugging Face "
                f"hub ({type(e).__name__}: {e}). Offline? Download the weights file elsewhere and "
                "pass weights=PATH (CLI: --weights PATH)."
            ) from e
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            try:
                model = timm.create_model(arch, pretrained=False, **kwargs)
            except TypeError as e:
                raise _not_a_vit(name, e) from None
        if weights is None:
            _init_layer_scale(model)
        else:
            load_weights_file(model, weights)
    patch = model.patch_embed.patch_size
    cfg = model.pretrained_cfg
    return model, {
        "arch": arch,
        "dim": model.num_features,
        "patch_size": patch[0] if isinstance(patch, tuple) else patch,
        "mean": tuple(cfg.get("mean", IMAGENET_MEAN)),
        "std": tuple(cfg.get("std", IMAGENET_STD)),
        "num_prefix_tokens": model.num_prefix_tokens,
    }


def _not_a_vit(name: str, error: Exception) -> ValueError:
    # Pooling needs CLS and patch tokens at any input size: timm's ViT family (dynamic_img_size).
    return ValueError(
        f"{name!r} is not a vision transformer with CLS and patch tokens ({error}); "
        f"use one of {', '.join(MODELS)} or another timm ViT"
    )


def _init_layer_scale(model: torch.nn.Module) -> None:
    # timm starts LayerScale at 1e-5 (the training recipe); with random weights every block is then
    # almost the identity and all images embed to nearly the same vector (cosine 0.9999998 between
    # unrelated banners). The official DINOv2 code initialises it at 1.0, which keeps a random model
    # discriminative, so tests of retrieval and duplicates mean something.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.rsplit(".", 1)[-1] in ("gamma", "gamma_1", "gamma_2"):
                p.fill_(1.0)


def _load_hub(name: str, *, pretrained: bool, weights) -> tuple[torch.nn.Module, dict]:
    repo, _, entry = name.removeprefix(HUB_PREFIX).rpartition(":")
    if not repo or not entry:
        raise ValueError(f"hub model {name!r} must look like hub:owner/repo:entry or hub:DIR:entry")
    source = "local" if Path(repo).is_dir() else "github"
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)  # random weights must agree between runs
            model = torch.hub.load(
                repo, entry, source=source, pretrained=pretrained, trust_repo=True
            )
    except Exception as e:
        if source == "local":
            raise
        raise RuntimeError(
            f"could not load {entry!r} from github.com/{repo} through torch.hub "
            f"({type(e).__name__}: {e}). Offline? Clone the repository elsewhere and use "
            f"hub:DIR:{entry}, and pass weights=PATH (CLI: --weights PATH) for the weights file."
        ) from e
    if weights is not None:
        load_weights_file(model, weights)
    patch = getattr(model, "patch_size", None) or model.patch_embed.patch_size
    return model, {
        "arch": name,
        "dim": model.embed_dim,
        "patch_size": patch[0] if isinstance(patch, tuple) else patch,
        "mean": tuple(IMAGENET_MEAN),
        "std": tuple(IMAGENET_STD),
        "num_prefix_tokens": 1 + getattr(model, "num_register_tokens", 0),
    }


def forward_tokens(model: torch.nn.Module, x: torch.Tensor, *, n_last: int = 1) -> list:
    """Final-normed CLS and patch tokens of the last ``n_last`` blocks, oldest first.

    Args:
        model: from ``load_model`` (timm, or a torch.hub DINO/DINOv2 model).
        x: (B, 3, H, W) float images, normalised, on the model's device; run in the model's
            precision (``ModelInfo.precision``: its weights' dtype, or under autocast).

    Returns:
        ``n_last`` pairs ``(cls, patches)``: cls (B, D), patches (B, H*W/patch**2, D), in the
        dtype the precision computes in (float32, bfloat16 or float16); register tokens are
        dropped.
    """
    info = model_info(model)
    device = x.device
    x = x.to(weights_dtype(info.precision, device))
    dtype = autocast_dtype(info.precision, device)
    autocast = nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
    with autocast:
        return _tokens(model, x, n_last, info.num_prefix_tokens)


def _tokens(model: torch.nn.Module, x: torch.Tensor, n_last: int, prefix: int) -> list:
    if hasattr(model, "forward_intermediates"):  # timm
        if n_last == 1:
            t = model.forward_features(x)
            return [(t[:, 0], t[:, prefix:])]
        out = model.forward_intermediates(
            x,
            indices=n_last,
            norm=True,
            output_fmt="NLC",
            intermediates_only=True,
            return_prefix_tokens=True,
        )
        return [(pre[:, 0], patches) for patches, pre in out]
    try:  # official DINOv2 hub models: registers already removed
        out = model.get_intermediate_layers(x, n=n_last, return_class_token=True, norm=True)
        return [(cls, patches) for patches, cls in out]
    except TypeError:  # official DINO (v1) hub models: whole token sequences, normed
        out = model.get_intermediate_layers(x, n=n_last)
        return [(t[:, 0], t[:, prefix:]) for t in out]
