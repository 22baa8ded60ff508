"""steam-dinov2: find Steam games whose store banners look alike, with DINOv2 and DINO."""

from .audit import audit_banners
from .catalog_map import catalog_map, plot_catalog_map
from .compare import plot_comparison
from .download import download_banners
from .embed import Embeddings, embed_folder, embed_images, load_embeddings
from .explain import plot_match_explained
from .models import available_models, load_model
from .plot import plot_image_grid, plot_matches
from .preprocess import make_transform
from .search import build_index, find_duplicate_groups, find_neighbors, match_all
from .site import export_site
from .snapshot import import_snapshot

__version__ = "0.1.0"
__all__ = [
    "Embeddings",
    "audit_banners",
    "available_models",
    "build_index",
    "catalog_map",
    "download_banners",
    "embed_folder",
    "embed_images",
    "export_site",
    "find_duplicate_groups",
    "find_neighbors",
    "import_snapshot",
    "load_embeddings",
    "load_model",
    "make_transform",
    "match_all",
    "plot_comparison",
    "plot_catalog_map",
    "plot_image_grid",
    "plot_match_explained",
    "plot_matches",
]
