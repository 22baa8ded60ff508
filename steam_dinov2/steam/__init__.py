"""Talking to Steam: the app catalogue, banner fetch, the resumable download and store metadata.
Imports only ``core``."""
