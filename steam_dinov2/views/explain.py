"""Why two banners match: patch-level similarity between a query and a neighbor, as heatmaps.

For every patch token of one banner, its best cosine to any patch token of the other (same model,
same preset as the embeddings): a logo, a character or a palette that both banners share lights up
on both. The heatmap covers what the model saw (the preset's crop); the rest of the banner is veiled.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

import numpy as np
import torch

from ..core import layout
from ..core.codec import check_pixels, to_rgb
from ..core.manifest import load_names
from ..embedding.models import forward_tokens, model_info
from ..embedding.preprocess import get_preset, make_transform
from ..embedding.setting import Setting, as_setting
from .grids import as_image_array, escape_mathtext, shorten

SHADE = 0.8  # opacity of the black over a patch with the lowest cosine; 0 over the best match


@dataclass(frozen=True)
class MatchExplanation:
    """Patch similarity of a pair: ``heat_a[i, j]`` is the best cosine of A's patch (i, j) to B's
    patches, and the other way round for ``heat_b``; (rows, cols) float32 in [-1, 1]."""

    heat_a: np.ndarray
    heat_b: np.ndarray
    cosine: float  # cosine of the two mean-pooled patch sets, a summary of the pair
    preset: str


def explain_match(image_a, image_b, model: torch.nn.Module, *, preset: str = "crop256"):
    """Patch-to-patch similarity of two images under one model and preset.

    Args:
        image_a, image_b: paths, PIL images or HWC uint8 arrays.
        model: from ``load_model`` (any ViT the package supports).
        preset: the preprocessing preset the embeddings were made with.

    Returns:
        MatchExplanation; heatmaps are (H/patch, W/patch) of the preset's input (16x16 for a crop
        preset with ViT-S/14, 24x16 for ``full``).
    """
    from PIL import Image

    info = model_info(model)
    transform = make_transform(preset, mean=info.mean, std=info.std)
    x = torch.stack([transform(Image.fromarray(as_image_array(i))) for i in (image_a, image_b)])
    device = next(model.parameters()).device
    with torch.inference_mode():
        _, patches = forward_tokens(model, x.to(device))[-1]
    patches = torch.nn.functional.normalize(patches.float(), dim=-1).cpu()
    sim = patches[0] @ patches[1].T  # (P, P) cosines
    rows, cols = x.shape[2] // info.patch_size, x.shape[3] // info.patch_size
    assert rows * cols == sim.shape[0], (rows, cols, sim.shape)
    mean = torch.nn.functional.normalize(patches.mean(dim=1), dim=-1)
    return MatchExplanation(
        heat_a=sim.max(dim=1).values.reshape(rows, cols).numpy(),
        heat_b=sim.max(dim=0).values.reshape(rows, cols).numpy(),
        cosine=float(mean[0] @ mean[1]),
        preset=preset,
    )


def seen_box(width: int, height: int, preset: str) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` in an image's own pixels: the part the preset shows the model."""
    return get_preset(preset).seen_box(width, height)


def draw_heatmap(ax, image, heat: np.ndarray, preset: str, *, vmin: float, vmax: float = 1.0):
    """Draw ``image`` on ``ax`` with ``heat`` as shade over the part the model saw: a patch with a
    close match stays clear in its own colours, one without is darkened (no false colours mixed
    into the banner's); the part the model did not see is greyed out."""
    from matplotlib.colors import LinearSegmentedColormap

    img = as_image_array(image)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = seen_box(w, h, preset)
    ax.imshow(img)
    ax.imshow(np.full((1, 1, 4), (1, 1, 1, 0.65)), extent=(0, w, h, 0))  # grey out, then unveil
    ax.imshow(img[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))], extent=(x0, x1, y1, y0))
    shade = LinearSegmentedColormap.from_list("shade", [(0, 0, 0, SHADE), (0, 0, 0, 0)])
    artist = ax.imshow(
        heat, cmap=shade, vmin=vmin, vmax=vmax, extent=(x0, x1, y1, y0), interpolation="nearest"
    )
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    return artist


def caption(result: MatchExplanation, pooling: str) -> str:
    """What the colours and the mean of ``plot_match_explained`` mean, in words."""
    return (
        "Clear: a patch whose best match in the other banner has a high cosine (scale at right). "
        "Darkened: no close match. Greyed out: outside the "
        f"{result.preset} crop the model saw. Mean patch cosine {result.cosine:.3f}: the cosine "
        "of the two banners' average patch vectors, a summary of this picture; the neighbour "
        f"lists rank by the setting's {pooling} vector, so their score differs."
    )


_MODELS: dict = {}


def _model_for(setting: Setting, model: torch.nn.Module | None) -> torch.nn.Module:
    """``model`` (already loaded for ``setting``), else the setting's, loaded once."""
    if model is not None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"model must be a model load_model returned (or None), got {type(model).__name__}"
            )
        if model_info(model).name != setting.model:
            raise ValueError(
                f"model {model_info(model).name!r} is not the setting's ({setting.model!r}): "
                "explain with the model the embeddings were made with"
            )
        return model
    key = (setting, setting.weights_file)
    if key not in _MODELS:  # a Browser explains many pairs: load once
        _MODELS.clear()
        _MODELS[key] = setting.load_model()
    return _MODELS[key]


def plot_match_explained(
    query,
    neighbor,
    *,
    setting: Setting | str | None = None,
    data: str | os.PathLike | None = None,
    names: dict | None = None,
    model: torch.nn.Module | None = None,
):
    """Two banners side by side, each with the heatmap of its patches' best match in the other.

    Args:
        query, neighbor: app ids (with ``data``: their banners in ``DATA/banners``), or paths,
            PIL images or HWC uint8 arrays.
        setting: the ``Setting`` (or its name) the embeddings were made with: its model, weights
            and preset (the heatmap covers that preset's crop); None: the default.
        data: the data folder, for app ids and game names.
        names: ``{id: name}`` for titles (default: the manifest's, with ``data``).
        model: the setting's model when it is already loaded (``load_model``), to not load it
            again; None loads it (once for a run of calls).

    Returns:
        matplotlib Figure: the two banners and a colour bar (cosine).
    """
    from matplotlib.figure import Figure

    setting = as_setting(setting)
    images, titles = _pair(query, neighbor, data, names)
    pil = [to_rgb(_open(i)) for i in images]
    net = _model_for(setting, model)
    result = explain_match(pil[0], pil[1], net, preset=setting.preset)
    vmin = float(min(result.heat_a.min(), result.heat_b.min()))
    vmin = min(vmin, 0.99)  # an exact copy is uniformly 1: keep a visible scale
    fig = Figure(figsize=(6.4, 6.0), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, img, heat, title in zip(axes, pil, (result.heat_a, result.heat_b), titles):
        artist = draw_heatmap(ax, img, heat, setting.preset, vmin=vmin)
        ax.set_title(escape_mathtext(title), fontsize=9)
    fig.colorbar(artist, ax=list(axes), shrink=0.7, label="best patch cosine in the other banner")
    where = escape_mathtext(setting.preset)
    fig.suptitle(
        f"Why they match, patch by patch: mean patch cosine {result.cosine:.3f} ({where})",
        fontsize=9.5,
    )
    text = textwrap.fill(caption(result, setting.pooling), 100)
    fig.supxlabel(escape_mathtext(text), fontsize=7.5, ha="center", multialignment="left")
    fig.explanation = result
    return fig


def _pair(query, neighbor, data, names) -> tuple[list, list[str]]:
    """``(images, titles)`` of a query and its neighbor: app ids (with ``data``) or images."""

    if names is None:
        names = load_names(data) if data is not None else {}
    images, titles = [], []
    for role, item in (("QUERY", query), ("neighbor", neighbor)):
        is_id = (
            data is not None and isinstance(item, (str, int, np.integer)) and str(item).isdigit()
        )
        if is_id:
            path = layout.banner_path(data, item)
            if not path.is_file():
                raise ValueError(f"no banner for app {item} in {layout.banners_dir(data)}")
            images.append(path)
            titles.append(f"{role}\n{shorten(names.get(int(item), item))}")
        else:
            if isinstance(item, int) or (isinstance(item, str) and not os.path.isfile(item)):
                raise ValueError(f"{item!r} is not an image file; to use app ids, pass data=DATA")
            images.append(item)
            label = os.path.basename(item) if isinstance(item, (str, os.PathLike)) else ""
            titles.append(f"{role}\n{shorten(label)}" if label else role)
    return images, titles


def overlay_matches(axes, images, *, setting: Setting, model=None) -> None:
    """Heatmaps over a row of drawn banners: ``images[0]`` is the query, the rest its neighbours
    (None for an empty cell), under ``setting`` (its model, or ``model`` when already loaded).
    Each neighbor shows its patches' best match in the query; the query shows its best match in
    the first neighbor. Used by ``compare.plot_comparison(explain=True)``.
    """
    net, preset = _model_for(setting, model), setting.preset
    query = to_rgb(_open(images[0]))
    pairs = [(ax, to_rgb(_open(img))) for ax, img in zip(axes[1:], images[1:]) if img is not None]
    results = [explain_match(query, img, net, preset=preset) for _, img in pairs]
    if not results:
        return
    vmin = min(0.99, min(float(min(r.heat_a.min(), r.heat_b.min())) for r in results))
    draw_heatmap(axes[0], query, results[0].heat_a, preset, vmin=vmin)
    for (ax, img), r in zip(pairs, results):
        draw_heatmap(ax, img, r.heat_b, preset, vmin=vmin)


def _open(image):
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as img:
            try:
                check_pixels(img)  # a decompression bomb in the data folder
            except ValueError as e:
                raise ValueError(f"{image}: {e}") from None
            img.load()
            return img.copy()
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    return image
