"""steam-dinov2: find Steam games whose store banners look alike, with DINOv2 and DINO."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the submodule that defines it. The submodules import torch, pandas, requests,
# PIL and faiss; they load on first use (PEP 562), so `import steam_dinov2` stays fast.
_SOURCES = {
    "Embeddings": "embedding.embed",
    "Setting": "embedding.setting",
    "audit_banners": "audit.audit",
    "available_models": "embedding.models",
    "build_index": "search",
    "map_catalog": "views.map",
    "download_banners": "steam.download",
    "embed_folder": "embedding.embed",
    "embed_images": "embedding.embed",
    "evaluate_settings": "evaluation.evaluate",
    "export_matches": "search_tables",
    "export_site": "views.site",
    "find_duplicate_groups": "search",
    "find_neighbors": "search",
    "import_snapshot": "collection.snapshot",
    "load_embeddings": "embedding.embed",
    "load_model": "embedding.models",
    "make_transform": "embedding.preprocess",
    "model_info": "embedding.models",
    "match_all": "search",
    "plot_catalog_map": "views.map_plots",
    "plot_comparison": "views.compare",
    "plot_image_grid": "views.grids",
    "plot_match_explained": "views.explain",
    "plot_matches": "views.grids",
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
