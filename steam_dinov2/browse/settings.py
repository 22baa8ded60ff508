"""Which settings the browser offers, and which models it may load: a data folder may come from
anyone, so a model named in a cache's ``meta.json`` is loaded only when it is in the registry or
is the model of the ``Setting`` the user gave."""

from __future__ import annotations

import logging

from ..core import layout
from ..embedding.cache import read_cache_meta
from ..embedding.models import MODELS
from ..embedding.setting import Setting

logger = logging.getLogger(__name__)


def offered_settings(data, settings, model, first=None) -> list[str]:
    """The settings the browser offers, ``first`` first: those named, else the cached ones whose
    model is in the registry or is ``model`` (those of ``model`` first, then the most recently
    embedded); others are left out with a warning, so a planted cache never becomes the default."""

    if first is not None:
        cached = layout.list_settings(data)
        if first not in cached:
            Setting.from_name(first)  # a malformed name says so before "no embedding cache"
            raise ValueError(
                f"setting {first!r} has no embedding cache in {data}; cached: "
                f"{', '.join(cached) or 'none (run the embed stage first)'}"
            )
        rest = offered_settings(data, settings, model)
        return [first] + [s for s in rest if s != first]
    if settings:
        return list(settings)
    offered = []
    for setting in layout.list_settings(data):
        try:
            meta = read_cache_meta(layout.embeddings_dir(data, setting))
        except ValueError as e:
            logger.warning("browser: leaving out setting %s: %s", setting, e)
            continue
        if not is_trusted_model(meta["model"], model):
            logger.warning(
                "browser: leaving out setting %s: its model %r is not in the registry; pass "
                "Browser(..., setting=Setting.create(NAME, ...)) or settings=[...] to use it",
                setting,
                meta["model"],
            )
            continue
        # A new cache generation writes files into the folder, so its time is the last embedding.
        made = layout.embeddings_dir(data, setting).stat().st_mtime_ns
        offered.append((model is None or meta["model"] != model, -made, setting))
    return [setting for *_, setting in sorted(offered)]


def is_trusted_model(name: str, chosen: str | None) -> bool:
    """Whether a cache naming the model ``name`` may load it: a registry model, or the one chosen."""

    return name in MODELS or (chosen is not None and name == chosen)
