"""steam-dinov2: find Steam games whose store banners look alike, with DINOv2 and DINO."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the submodule that defines it. The submodules import torch, pandas, requests,
# PIL and faiss; they load on first use (PEP 562), so `import steam_dinov2` stays fast.
_SOURCES = {
    "Embeddings": "embed",
    "Setting": "setting",
    "audit_banners": "audit",
    "available_models": "models",
    "build_index": "search",
    "map_catalog": "catalog_map",
    "download_banners": "download",
    "embed_folder": "embed",
    "embed_images": "embed",
    "evaluate_settings": "evaluate",
    "export_matches": "export",
    "export_site": "site",
    "find_duplicate_groups": "search",
    "find_neighbors": "search",
    "import_snapshot": "snapshot",
    "load_embeddings": "embed",
    "load_model": "models",
    "make_transform": "preprocess",
    "model_info": "models",
    "match_all": "search",
    "plot_catalog_map": "map_plots",
    "plot_comparison": "compare",
    "plot_image_grid": "plot",
    "plot_match_explained": "explain",
    "plot_matches": "plot",
}
__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value  # the next lookup skips __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
