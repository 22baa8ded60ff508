"""The browser's queries from outside the collection: an app id fetched from Steam, an uploaded
image; each embedded by the current setting's model, loaded only when that model is trusted."""

from __future__ import annotations

import hashlib
import html

from ..browse.settings import is_trusted_model
from ..core.codec import resize_banner
from ..embedding.embed import embed_image
from ..embedding.setting import Setting
from ..steam.fetch import fetch_banner


class OutsideQueries:
    """Mixin of ``browse.Browser``: the *Fetch* box and the *Upload* button.

    Uses the browser's ``data``, ``model``, ``chosen``, ``setting``, ``status``, ``upload``,
    ``images`` (outside images by key), ``_emb_for``, ``_models``, ``_vectors`` and ``show``.
    """

    def _vector(self, key: str):
        setting = self.setting.value
        if (key, setting) not in self._vectors:
            meta = self._emb_for().meta
            vector = embed_image(
                self.images[key], self._model(), preset=meta["preset"], pooling=meta["pooling"]
            )
            self._vectors[key, setting] = vector
        return self._vectors[key, setting]

    def current_setting(self) -> Setting:
        """The setting on screen as a ``Setting`` (from its cache's ``meta.json``), with the
        weights file of the ``Setting`` given to the browser when it is that setting's file."""
        meta = self._emb_for().meta
        chosen = self.chosen if self.chosen and self.chosen.weights == meta["weights"] else None
        return Setting(
            meta["model"],
            meta["preset"],
            meta["pooling"],
            weights=meta["weights"],
            precision=meta.get("precision", "fp32"),
            weights_file=chosen.weights_file if chosen else None,
        )

    def _model(self):
        """The current setting's model, loaded once; ValueError unless it is trusted."""
        name = self.setting.value
        if name not in self._models:
            setting = self.current_setting()
            if not is_trusted_model(setting.model, self.model):
                raise ValueError(
                    f"setting {name} names the model {setting.model!r}, which is neither in the "
                    "registry nor the one you gave: pass Browser(..., setting=Setting.create("
                    "NAME, ...)) with the model you trust to query images from outside"
                )
            if setting.weights.startswith("w-") and setting.weights_file is None:
                raise ValueError(
                    f"setting {name} was embedded with the weights file {setting.weights}: pass "
                    "Browser(..., setting=Setting.create(MODEL, ..., weights=PATH)) with that "
                    "file to query images from outside"
                )
            self._models[name] = setting.load_model()
        return self._models[name]

    def _show_outside_id(self, app_id: str):

        app_id = app_id.strip()
        if app_id in self._emb_for().ids:
            return self.show(app_id)
        if not app_id.isdigit():
            raise ValueError(f"an app id is a number, got {app_id!r}")
        try:
            self.images[app_id] = fetch_banner(int(app_id))
        except Exception as e:  # network, 404, not an image: say so in the app
            self.status.value = (
                f"<b>Could not fetch app {html.escape(app_id)}:</b> {html.escape(str(e))}"
            )
            return
        self.show(app_id, outside=True)

    def _show_upload(self):

        files = self.upload.value
        if not files:
            return
        item = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        content = bytes(item["content"])
        # ipywidgets 8 gives the name beside the content, 7 (what Colab ships) in "metadata".
        name = item.get("name") or item.get("metadata", {}).get("name", "upload")
        # Keyed by content too: two uploads named image.png are two different queries.
        key = f"{name} [{hashlib.sha256(content).hexdigest()[:8]}]"
        try:  # resize_banner turns every decoder failure into a ValueError with the reason
            self.images[key] = resize_banner(content)
        except ValueError as e:
            raise ValueError(f"could not read the upload {name}: {e}") from None
        self.show(key, outside=True)
