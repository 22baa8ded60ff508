"""An ipywidgets browser over the cached settings: find a game, see its look-alikes, click through."""

from __future__ import annotations

import hashlib
import html
import io
import logging
import random
import urllib.parse

import numpy as np
import pandas as pd

from ..audit.audit import load_exclusions
from ..core import layout
from ..core.codec import resize_banner
from ..core.files import is_steam_id, parse_image_id
from ..core.manifest import load_names
from ..embedding.embed import embed_image, load_embeddings
from ..embedding.setting import Setting, setting_of
from ..search import (
    check_k,
    describe_exclusions,
    find_neighbors,
    index_collection,
    search_games,
    stored_matches,
)
from ..steam.fetch import fetch_banner
from ..steam.metadata import load_labels
from ..views.explain import plot_match_explained
from ..views.map import cluster_members, describe_clusters, map_catalog
from .settings import is_trusted_model, offered_settings

logger = logging.getLogger(__name__)
STORE_URL = "https://store.steampowered.com/app/{}"


class Browser:
    """The widget app; ``browser.widget`` is what a notebook displays (displaying the object works too).

    The state is plain Python so tests can drive it: ``search.value``, ``choices.value``,
    ``tiles[i].button.click()``, ``back.click()``, ``other_studios.value``, ``tag.value``;
    ``shown`` is ``[(id, score), ...]`` on screen.

    Each tile names the game's studio and top tags (``metadata.parquet``). *Other studios only*
    keeps neighbours whose developers and publishers are all different from the query's (games
    without a known developer or publisher are left out then); *Tag* keeps those with that store
    tag. Both filter the k nearest that pass, not the k nearest: the grid stays k wide.
    """

    def __init__(
        self,
        data,
        *,
        setting: Setting | str | None = None,
        settings=None,
        k: int = 10,
        include_excluded: bool = False,
        explain_with: bool = False,
    ):
        """Args:
        data: the data folder.
        setting: the setting to open on, offered first; it must have an embedding cache in
            ``data``. A ``Setting`` (e.g. the one just embedded with) also names the model you
            trust: the data folder may come from anyone, so a model is loaded (for images from
            outside the collection and *Why?*) only when a cache's ``meta.json`` names a
            registry model or this one, with its weights file for a ``w-`` setting. A setting
            name trusts registry models only. None: the most recently embedded setting.
        settings: setting names to offer (default: every cached setting made with a registry
            model or the setting's, those of the setting's model first, the latest first).
        k: neighbours shown (at least 1).
        include_excluded: also show the games the audit excluded.
        explain_with: show a *Why?* button under each neighbour (patch heatmaps, made with the
            current setting's model).
        """
        check_k(k)
        self.data, self.chosen = data, setting if isinstance(setting, Setting) else None
        self.model = self.chosen.model if self.chosen else None  # the model the user trusts
        first = None if setting is None else setting_of(setting)
        self.settings = offered_settings(data, settings, self.model, first)
        if not self.settings:
            raise ValueError(
                f"no cached embeddings in {data}: run the embed stage (or the match notebook) first"
            )
        self.names = load_names(data)
        self.labels = load_labels(data)
        self.exclude = {} if include_excluded else load_exclusions(data)
        if self.exclude:
            logger.info("browser: audit exclusions applied: %s", describe_exclusions(self.exclude))
        self._emb, self._tables, self._index, self._models, self._vectors = {}, {}, {}, {}, {}
        self.images = {}  # images from outside the collection, by app id or file name
        self.history, self.position, self.shown = [], -1, []
        self._listing = False  # True while the search lists its matches (not a pick)
        self._build_widgets(k)
        self._add_clusters_and_explain(bool(explain_with))

    def _build_widgets(self, k: int):
        import ipywidgets as w

        self.search = w.Text(placeholder="game name or app id", description="Search")
        self.choices = w.Select(options=[], rows=6, layout=w.Layout(width="420px"))
        self.random = w.Button(description="Random game", icon="random")
        self.back, self.forward = w.Button(description="Back"), w.Button(description="Forward")
        self.k = w.IntSlider(value=min(k, 50), min=1, max=50, description="k")
        self.setting = w.Dropdown(
            options=self.settings, description="Setting", layout=w.Layout(width="520px")
        )
        self.outside = w.Text(
            placeholder="app id not in the collection", description="Fetch", continuous_update=False
        )
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="Upload banner")
        self.other_studios = w.Checkbox(value=False, description="Other studios only")
        # Options are set here, once, before any observer: ipywidgets 7 (Colab) selects the first
        # option and fires observers when options are assigned; a change only re-renders.
        self.tag = w.Dropdown(
            options=self._tag_options(), value=0, description="Tag", layout=w.Layout(width="300px")
        )
        self.status = w.HTML()
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns="repeat(6, 130px)"))
        self.tiles = []

        guard = self._guard
        self.search.observe(guard(lambda _: self._on_search()), "value")
        self.choices.observe(guard(self._on_pick), "value")
        self.random.on_click(guard(lambda _: self.show(random.choice(self._emb_for().ids))))
        self.back.on_click(guard(lambda _: self._step(-1)))
        self.forward.on_click(guard(lambda _: self._step(+1)))
        self.k.observe(guard(lambda _: self._render()), "value")
        self.setting.observe(guard(lambda _: self._render()), "value")
        self.other_studios.observe(guard(lambda _: self._render()), "value")
        self.tag.observe(guard(lambda _: self._render()), "value")
        self.outside.observe(
            guard(lambda ch: ch["new"] and self._show_outside_id(ch["new"])), "value"
        )
        self.upload.observe(guard(lambda _: self._show_upload()), "value")
        self.widget = w.VBox(
            [
                w.HBox([self.search, self.random, self.back, self.forward]),
                self.choices,
                w.HBox([self.setting, self.k]),
                w.HBox([self.other_studios, self.tag]),
                w.HBox([self.outside, self.upload]),
                self.status,
                self.grid,
            ]
        )

    def _guard(self, handler):
        # A widget callback that raises only writes to a hidden log: show the reason instead.
        def run(*args):
            try:
                handler(*args)
            except Exception as e:
                logger.warning("browser: %s", e)
                self.status.value = f"<b>{type(e).__name__}:</b> {html.escape(str(e))}"

        return run

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # --- state -----------------------------------------------------------------------------
    def _emb_for(self, setting=None):
        setting = setting or self.setting.value
        if setting not in self._emb:
            self._emb[setting] = load_embeddings(self.data, setting)
        return self._emb[setting]

    def _on_search(self):
        text = self.search.value
        ids = search_games(self.names, text, ids=self._emb_for().ids)
        # Listing matches is not picking one: ipywidgets 7 (Colab's) selects the first option when
        # the options change, which would navigate on every keystroke; 8 selects none. Both end
        # with nothing selected, so a click on any match, the first too, is a change.
        self._listing = True
        try:
            self.choices.options = [(f"{self.names.get(i, '')} ({i})", i) for i in ids]
            self.choices.index = None
        finally:
            self._listing = False
        if text.strip() and not ids:
            self.status.value = f"no game matches <b>{html.escape(repr(text.strip()))}</b>"
        elif ids:
            self.status.value = f"{len(ids)} match{'es' if len(ids) > 1 else ''}: pick one"

    def _on_pick(self, change):
        if not self._listing and change["new"] is not None:
            self.show(change["new"])

    def show(self, query, *, outside: bool = False):
        """Make ``query`` the current query: an id in the collection, or (with ``outside=True``) the
        key of an image fetched or uploaded into ``self.images``, embedded by each setting in turn."""
        entry = {"image": query} if outside else {"id": parse_image_id(query, "query")}
        if self.position >= 0 and self.history[self.position] == entry:
            return self._render()  # already the query: the history does not repeat it
        previous = self.history[:], self.position
        del self.history[self.position + 1 :]
        self.history.append(entry)
        self.position = len(self.history) - 1
        try:
            self._render()
        except Exception:  # a query that cannot be shown does not enter the history
            self.history, self.position = previous
            raise

    def _step(self, delta: int):
        if 0 <= self.position + delta < len(self.history):
            self.position += delta
            self._render()

    def _tag_options(self, most: int = 200) -> list[tuple[str, int]]:
        """("any tag", 0), then the ``most`` commonest store tags of the collection's games."""
        counts: dict[tuple[str, int], int] = {}
        for label in self.labels.values():
            for t, name in zip(label.tagids, label.tags):
                counts[name, t] = counts.get((name, t), 0) + 1
        common = sorted(counts, key=lambda nt: (-counts[nt], nt[0]))[:most]
        return [("any tag", 0)] + [(f"{n} ({counts[n, t]})", t) for n, t in sorted(common)]

    def _keeps(self, entry: dict):
        """A predicate on neighbour ids for the filters on screen, or None when none is on."""
        tag, makers = self.tag.value, None
        if self.other_studios.value and "id" in entry:  # an upload has no studio to differ from
            label = self.labels.get(entry["id"])
            makers = label.makers if label and label.makers else None
            if makers is None:
                raise ValueError(
                    f"{self.names.get(entry['id'], entry['id'])} has no known developer or "
                    "publisher (run `metadata`): untick Other studios only"
                )
        if not tag and makers is None:
            return None

        def keeps(app_id) -> bool:
            label = self.labels.get(int(app_id))
            if label is None or (tag and tag not in label.tagids):
                return False
            return makers is None or bool(label.makers and not label.makers & makers)

        return keeps

    def neighbors(self, entry: dict, k: int) -> pd.DataFrame:
        """rank, id, score of an entry's k neighbours in the current setting that pass the
        filters (*Other studios only*, *Tag*); ``rank`` is the rank among all neighbours."""
        keeps = self._keeps(entry)
        if keeps is None:
            return self._nearest(entry, k)
        total, depth = len(self._emb_for().ids), k
        while True:  # deeper until k pass or every game was looked at
            depth = min(total, depth * 4 + 16)
            table = self._nearest(entry, depth)
            kept = table[[keeps(i) for i in table["id"]]]
            if len(kept) >= k or depth >= total:
                return kept.head(k)

    def _nearest(self, entry: dict, k: int) -> pd.DataFrame:
        setting = self.setting.value
        if "id" in entry:
            table, spans = self._precomputed(setting)
            start, stop = spans.get(entry["id"], (0, 0))
            if stop - start >= k:
                return table.iloc[start : start + k]
        if setting not in self._index:
            self._index[setting] = index_collection(self._emb_for(), self.exclude)
        query = entry["id"] if "id" in entry else self._vector(entry["image"])
        return find_neighbors(self._emb_for(), query, k=k, index=self._index[setting])

    def _precomputed(self, setting):
        # The match stage's table, when it was made from the current cache with the same exclusions:
        # a lookup, no search per click. Otherwise every query is a live search.
        if setting not in self._tables:
            columns = ["query_id", "rank", "id", "score"]
            table = stored_matches(self.data, self._emb_for(setting), self.exclude)
            table = pd.DataFrame(columns=columns) if table is None else table
            table = table.sort_values(["query_id", "rank"], kind="stable").reset_index(drop=True)
            queries, starts = np.unique(table["query_id"].to_numpy(np.int64), return_index=True)
            stops = np.append(starts[1:], len(table))
            spans = dict(zip(queries.tolist(), zip(starts.tolist(), stops.tolist())))
            self._tables[setting] = (table[["rank", "id", "score"]], spans)
        return self._tables[setting]

    # --- view -------------------------------------------------------------------------------
    def _render(self):
        if self.position < 0:
            return
        entry = self.history[self.position]
        table = self.neighbors(entry, self.k.value)
        self.shown = list(zip(table["id"], table["score"].astype(float)))
        qid = entry.get("id")
        title = (
            self.names.get(qid, str(qid))
            if qid is not None
            else f"outside the collection: {entry['image']}"
        )
        esc = html.escape
        caption = f"<b>QUERY</b><br>{esc(title)}{self._caption(qid)}"
        key = qid if qid is not None else entry["image"]
        self.query_tile = self._tile(key, caption, qid, similar=False)
        self.tiles = [
            self._tile(i, f"{esc(self.names.get(i, str(i)))}{self._caption(i)}<br>{s:.3f}", i)
            for i, s in self.shown
        ]
        self._add_why_buttons()
        self.grid.children = [self.query_tile] + self.tiles
        self.back.disabled = self.position == 0
        self.forward.disabled = self.position == len(self.history) - 1
        excluded = f"; audit: {describe_exclusions(self.exclude)}" if self.exclude else ""
        only = [
            *(["other studios"] if self.other_studios.value and qid is not None else []),
            *([f"tag {self.tag.label.rsplit(' (', 1)[0]}"] if self.tag.value else []),
        ]
        excluded += f"; only {' and '.join(only)}" if only else ""
        self.status.value = (
            f"{len(self.shown)} neighbours in <code>{esc(self.setting.value)}</code>{esc(excluded)}"
        )

    def _caption(self, app_id) -> str:
        """The studio and top tags under a tile's name, escaped; "" when unknown."""
        label = self.labels.get(app_id) if app_id is not None else None
        if label is None or not label.caption():
            return ""
        style = "color:#666;font-size:10px"
        return f"<br><span style='{style}'>{html.escape(label.caption())}</span>"

    def _tile(self, key, caption, app_id, *, similar: bool = True):
        import ipywidgets as w

        path = layout.banner_path(self.data, app_id) if app_id is not None else None
        if path is not None and path.is_file():
            data = path.read_bytes()
        else:
            buf = io.BytesIO()
            self.images.get(key, _blank()).save(buf, format="JPEG")
            data = buf.getvalue()
        url = STORE_URL.format(urllib.parse.quote(str(app_id), safe=""))
        link = (
            f'<a href="{html.escape(url)}" target="_blank">{app_id}</a>'
            if app_id is not None and is_steam_id(app_id)
            else html.escape("" if app_id is None else str(app_id))  # own image: no store page
        )
        tile = w.VBox(
            [
                w.Image(value=data, format="jpeg", width=112, height=168),
                w.HTML(f"<div style='font-size:11px;line-height:1.2'>{caption}<br>{link}</div>"),
            ]
        )
        tile.app_id = app_id
        if app_id is not None and similar:  # the query tile has none: it is already the query
            tile.button = w.Button(description="Similar", layout=w.Layout(width="112px"))
            tile.button.on_click(lambda _: self.show(app_id))
            tile.children += (tile.button,)
        return tile

    # --- the *Fetch* box and the *Upload* button.

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
        return Setting.from_meta(meta, weights_file=chosen.weights_file if chosen else None)

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

    def _show_outside_id(self, text: str):
        text = text.strip()
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"an app id is a number, got {text!r}")
        app_id = parse_image_id(text, "app id")
        if app_id in self._emb_for().ids:
            return self.show(app_id)
        try:
            self.images[text] = fetch_banner(app_id)  # outside images are keyed by text
        except Exception as e:  # network, 404, not an image: say so in the app
            self.status.value = (
                f"<b>Could not fetch app {html.escape(text)}:</b> {html.escape(str(e))}"
            )
            return
        self.show(text, outside=True)

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
            self.images[key] = resize_banner(content, upright=True)  # a phone photo: EXIF-turned
        except ValueError as e:
            raise ValueError(f"could not read the upload {name}: {e}") from None
        self.show(key, outside=True)

    # --- *Clusters*, a cluster picker with pages, and *Why?* on every

    def _add_clusters_and_explain(self, explain_with):
        """Widgets to page through a cluster of the map, and, when ``explain_with``, a "Why?"
        button on every neighbor (patch heatmaps with the current setting's model)."""
        import ipywidgets as w

        self.explain_with, self._maps = explain_with, {}
        self.cluster_page, self.cluster_page_size = 0, 24
        self.clusters = w.Button(description="Clusters", tooltip="group the games by look")
        self.cluster = w.Dropdown(options=[], description="Cluster", layout=w.Layout(width="520px"))
        self.cluster_prev, self.cluster_next = w.Button(description="<"), w.Button(description=">")
        self.explained = w.Image(format="png", layout=w.Layout(display="none"))
        guard = self._guard
        self.clusters.on_click(guard(lambda _: self._load_clusters()))
        self.cluster.observe(
            guard(lambda ch: self._listing or self._show_cluster(ch["new"], 0)), "value"
        )
        self.cluster_prev.on_click(guard(lambda _: self._show_cluster(self.cluster.value, -1)))
        self.cluster_next.on_click(guard(lambda _: self._show_cluster(self.cluster.value, +1)))
        row = w.HBox([self.clusters, self.cluster, self.cluster_prev, self.cluster_next])
        self.widget.children += (row, self.explained)

    def _load_clusters(self):

        setting = self.setting.value
        if setting not in self._maps:
            self.status.value = "laying out the catalogue (once per setting)..."
            self._maps[setting] = map_catalog(self.data, setting)
        summary = describe_clusters(self._maps[setting], self.names, top=3)
        self._listing = True  # listing the clusters is not picking one (see _on_search)
        try:
            self.cluster.options = [
                (f"{c} ({n} games): {', '.join(central)}", int(c))
                for c, n, central in zip(
                    summary["cluster"], summary["size"], summary["central_names"]
                )
            ]
            self.cluster.index = None
        finally:
            self._listing = False

    def _show_cluster(self, cluster, step: int):

        if cluster is None or self.setting.value not in self._maps:
            return
        members = cluster_members(self._maps[self.setting.value], cluster)
        per_page = self.cluster_page_size
        pages = max(1, -(-len(members) // per_page))
        self.cluster_page = 0 if step == 0 else min(max(self.cluster_page + step, 0), pages - 1)
        start = self.cluster_page * per_page
        self.shown = [(i, None) for i in members[start : start + per_page]]
        self.tiles = [
            self._tile(i, html.escape(self.names.get(i, str(i))), i) for i, _ in self.shown
        ]
        self.grid.children = self.tiles
        self.status.value = (
            f"cluster {int(cluster)}: {len(members)} games, page {self.cluster_page + 1} of {pages}"
        )

    def _add_why_buttons(self):
        import ipywidgets as w

        qid = self.history[self.position].get("id") if self.position >= 0 else None
        for tile in self.tiles:
            if qid is not None and tile.app_id is not None and self.explain_with:
                tile.why = w.Button(description="Why?", layout=w.Layout(width="112px"))
                tile.why.on_click(self._guard(lambda _, n=tile.app_id: self.explain(qid, n)))
                tile.children += (tile.why,)

    def explain(self, query, neighbor):
        """Show the patch heatmaps of a pair (``explain.plot_match_explained``) under the grid."""

        if not self.explain_with:
            raise ValueError(
                "to explain matches, open the browser with Browser(..., explain_with=True)"
            )
        fig = plot_match_explained(
            query,
            neighbor,
            setting=self.current_setting(),
            model=self._model(),
            data=self.data,
            names=self.names,
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        self.explained.value = buf.getvalue()
        self.explained.layout.display = ""
        self.status.value = f"why {html.escape(str(neighbor))} matches {html.escape(str(query))}"


def _blank():
    from PIL import Image

    return Image.new("RGB", (224, 336), (40, 40, 40))
