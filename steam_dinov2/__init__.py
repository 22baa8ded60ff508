"""steam-dinov2: find Steam games whose store banners look alike, with DINOv2 and DINO.

The package is one folder per stage of the README, data flowing down this list (each stage imports
only the ones below it; ``tests/test_house.py`` checks it):

    cli, colab      the command line; the notebooks' set-up
    browse/         the ipywidgets Browser
    views/          figures, comparison, explanation, catalogue map, static site
    lookalikes      pairs of look-alike banners from different studios, new games first
    audit/          CleanVision + near duplicates -> exclusions
    evaluation/     scoring settings against catalogue truths and planted copies
    search          exact cosine k-NN, all-pairs matches, duplicate groups, match tables, names
    embedding/      Setting, models, weights, presets, pooling, embed, the embedding cache
    steam/          talking to Steam: HTTP client, catalogue, banner fetch, download, metadata
    collection/     snapshots and folders of one's own images
    core/           the data folder: layout, atomic files and the lock, manifest, codec, progress

Everything a notebook needs is a name here: ``import steam_dinov2 as sd``, then ``sd.NAME``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it. The modules import torch, pandas, requests, PIL and
# faiss; they load on first use (PEP 562), so `import steam_dinov2` stays fast.
_SOURCES = {
    "read_manifest": "core.manifest",
    "load_names": "core.manifest",
    "download_banners": "steam.download",
    "fetch_metadata": "steam.metadata",
    "import_snapshot": "collection.snapshot",
    "pack_snapshot": "collection.snapshot",
    "import_folder": "collection.folder",
    "Setting": "embedding.setting",
    "Preset": "embedding.preprocess",
    "available_models": "embedding.models",
    "load_model": "embedding.models",
    "model_info": "embedding.models",
    "make_transform": "embedding.preprocess",
    "Embeddings": "embedding.embed",
    "embed_folder": "embedding.embed",
    "embed_images": "embedding.embed",
    "load_embeddings": "embedding.embed",
    "build_index": "search",
    "find_neighbors": "search",
    "match_all": "search",
    "find_duplicate_groups": "search",
    "export_matches": "search",
    "search_games": "search",
    "describe_exclusions": "search",
    "audit_banners": "audit.audit",
    "summarize_audit": "audit.audit",
    "load_exclusions": "audit.audit",
    "find_lookalikes": "lookalikes",
    "read_lookalikes": "lookalikes",
    "plot_lookalikes": "views.pairs",
    "evaluate_settings": "evaluation.evaluate",
    "rank_settings": "evaluation.scoreboard",
    "describe_best": "evaluation.scoreboard",
    "plot_evaluation": "evaluation.scoreboard",
    "plot_agreement": "evaluation.scoreboard",
    "tabulate_evaluation": "evaluation.scoreboard",
    "plot_image_grid": "views.grids",
    "plot_banners": "views.grids",
    "plot_matches": "views.grids",
    "plot_audit_examples": "views.grids",
    "plot_comparison": "views.compare",
    "plot_neighbors": "views.compare",
    "plot_match_explained": "views.explain",
    "map_catalog": "views.map",
    "plot_catalog_map": "views.map",
    "plot_cluster": "views.map",
    "describe_clusters": "views.map",
    "export_site": "views.site",
    "Browser": "browse.browser",
    "resolve_data_dir": "colab",
    "enable_widgets": "colab",
    "ensure_banners": "colab",
    "choose_runtime": "colab",
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
