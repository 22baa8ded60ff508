"""The ipywidgets ``Browser``: search, neighbours, history, clusters, explanations and uploads."""
