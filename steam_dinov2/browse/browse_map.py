"""The browser's cluster pages (the catalogue map, ``catalog_map``) and its *Why?* buttons
(patch heatmaps, ``explain``)."""

from __future__ import annotations

import html
import io

from ..views.explain import plot_match_explained
from ..views.map import cluster_members, describe_clusters, map_catalog


class ClusterPages:
    """Mixin of ``browse.Browser``: *Clusters*, a cluster picker with pages, and *Why?* on every
    neighbor.

    Uses the browser's ``data``, ``names``, ``setting``, ``status``, ``grid``, ``widget``,
    ``tiles``, ``shown``, ``history``, ``position``, ``_guard``, ``_tile``, ``_emb_for``,
    ``current_setting`` and ``_model``.
    """

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
        self.cluster.observe(guard(lambda ch: self._show_cluster(ch["new"], 0)), "value")
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
        self.cluster.options = [
            (f"{c} ({n} games): {', '.join(central)}", int(c))
            for c, n, central in zip(summary["cluster"], summary["size"], summary["central_names"])
        ]

    def _show_cluster(self, cluster, step: int):

        if cluster is None or self.setting.value not in self._maps:
            return
        members = cluster_members(self._maps[self.setting.value], cluster)
        per_page = self.cluster_page_size
        pages = max(1, -(-len(members) // per_page))
        self.cluster_page = 0 if step == 0 else min(max(self.cluster_page + step, 0), pages - 1)
        start = self.cluster_page * per_page
        self.shown = [(i, None) for i in members[start : start + per_page]]
        self.tiles = [self._tile(i, html.escape(self.names.get(i, i)), i) for i, _ in self.shown]
        self.grid.children = self.tiles
        self.status.value = (
            f"cluster {int(cluster)}: {len(members)} games, page {self.cluster_page + 1} of {pages}"
        )

    def _add_why_buttons(self):
        import ipywidgets as w

        qid = self.history[self.position].get("id") if self.position >= 0 else None
        for tile in self.tiles:
            if qid and tile.app_id and self.explain_with:  # not asked for: no button
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
