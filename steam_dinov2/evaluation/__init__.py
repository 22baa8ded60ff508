"""Scoring settings against catalogue truths (franchise, developer, publisher, tags) and planted
copies (``evaluate_settings``): truths, metrics, ranking, copies, the cached pieces, the scoreboard."""
