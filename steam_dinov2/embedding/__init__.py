"""Images -> vectors: ``Setting``, the model registry and weights, preprocessing presets, pooling,
``embed_folder`` and the embedding cache. Imports only ``core``."""
