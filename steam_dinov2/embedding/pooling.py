"""Pooling: a ViT's tokens -> one L2-normalised vector per image, four ways (``POOLINGS``)."""

from __future__ import annotations

import torch

from .models import forward_tokens

POOLINGS = {
    "cls": "CLS token of the last block (DINO's k-NN eval; steam-DINO's 'Simple')",
    "cls+avg": "CLS concatenated with the mean patch token (DINO's linear eval, base models)",
    "last4cls": "CLS tokens of the last 4 blocks concatenated (DINO's linear eval, small models)",
    "gem": "GeM (p=3) over the patch tokens (DINO's copy detection pools this way)",
}
GEM_P = 3.0


def pool_tokens(model: torch.nn.Module, x: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
    """Embed a batch: (B, 3, H, W) normalised images -> (B, D') float32, rows L2-normalised.

    D' is the model's width D for ``cls`` and ``gem``, 2*D for ``cls+avg``, 4*D for ``last4cls``.
    Register tokens never count as patches.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; available: {', '.join(POOLINGS)}")
    layers = forward_tokens(model, x, n_last=4 if pooling == "last4cls" else 1)
    cls, patches = layers[-1]
    if pooling == "cls":
        out = cls
    elif pooling == "cls+avg":
        out = torch.cat([cls, patches.mean(dim=1)], dim=-1)
    elif pooling == "last4cls":
        out = torch.cat([c for c, _ in layers], dim=-1)
    else:
        # DINO's copy detection clamps to positive before GeM (it uses p=4 and adds the CLS token;
        # p=3 is the usual GeM default for retrieval).
        p = patches.float().clamp(min=1e-6)
        out = p.pow(GEM_P).mean(dim=1).pow(1.0 / GEM_P)
    return torch.nn.functional.normalize(out.float(), dim=-1)
