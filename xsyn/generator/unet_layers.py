"""Where a UNet's cross-attention layers run: what CAR captures and the alignment term trains.

Both must pick the same ``attn2`` layers by block kind and the latent side they run at, so
the mapping from module names to (block, side) lives here, with the model.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention


def attn2_resolutions(unet: torch.nn.Module, latent_side: int) -> dict[str, tuple[str, int]]:
    """Every ``attn2`` module name → (block kind, latent side it runs at).

    In ``UNet2DConditionModel`` down block ``i`` runs at ``latent / 2^i`` (each block but
    the last downsamples at its end), the mid block at the coarsest side, and up block
    ``j`` at ``latent / 2^(n-1-j)`` (each upsamples at its end).
    """
    n = len(unet.down_blocks)
    out = {}
    for name, module in unet.named_modules():
        if not (name.endswith(".attn2") and isinstance(module, Attention)):
            continue
        parts = name.split(".")
        if parts[0] == "down_blocks":
            kind, level = "down", int(parts[1])
        elif parts[0] == "up_blocks":
            kind, level = "up", n - 1 - int(parts[1])
        elif parts[0] == "mid_block":
            kind, level = "mid", n - 1
        else:
            continue
        out[name] = (kind, latent_side // 2 ** level)
    return out
