"""BOM — Background Occlusion Modelling, the latent blend of DESIGN §2.

Real scans show prohibited items *through* other objects. BOM takes the latent of one
real benign object (a patch of the source scan's VAE latent, noised to the current
timestep), places it at a random offset that is guaranteed to overlap each generated
box, and blends it in: ``z[dst] = α · z_real[src] + (1 − α) · z[dst]``. Planning (which
patch goes where) is separate from blending so the plan can be drawn once per image from
its own seed and reused at every step when ``when = during``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

Slice2D = tuple[int, int, int, int]  # y0, x0, y1, x1 (half-open, latent cells)


@dataclass(frozen=True)
class BomPatch:
    """One blend: copy ``src`` of the real latent onto ``dst`` of the sample (same size)."""

    src: Slice2D
    dst: Slice2D


def box_to_latent(box_xywh: Sequence[float], scale: float, size: tuple[int, int]) -> Slice2D:
    """Pixel xywh → the latent cells it touches (outward rounding, clipped, ≥ 1 cell)."""
    h, w = size
    x, y, bw, bh = (float(v) for v in box_xywh)
    x0 = min(max(int(math.floor(x / scale)), 0), w - 1)
    y0 = min(max(int(math.floor(y / scale)), 0), h - 1)
    x1 = max(min(int(math.ceil((x + bw) / scale)), w), x0 + 1)
    y1 = max(min(int(math.ceil((y + bh) / scale)), h), y0 + 1)
    return y0, x0, y1, x1


def place_patch(patch: Slice2D, box: Slice2D, size: tuple[int, int],
                rng: np.random.Generator) -> BomPatch:
    """Put ``patch`` (a real region, latent cells) at a random offset overlapping ``box``.

    The placed patch keeps its own size and is clipped to the latent; the source slice
    is clipped identically, so ``src`` and ``dst`` always have the same shape and the
    clipped patch still overlaps the box (the box lies inside the latent).
    """
    h, w = size
    py0, px0, py1, px1 = patch
    ph, pw = py1 - py0, px1 - px0
    by0, bx0, by1, bx1 = box
    # Top-left corners whose patch overlaps the box: dy in [by0 - ph + 1, by1 - 1].
    dy = int(rng.integers(by0 - ph + 1, by1))
    dx = int(rng.integers(bx0 - pw + 1, bx1))
    cy0, cx0 = max(dy, 0), max(dx, 0)
    cy1, cx1 = min(dy + ph, h), min(dx + pw, w)
    src = (py0 + cy0 - dy, px0 + cx0 - dx, py0 + cy1 - dy, px0 + cx1 - dx)
    return BomPatch(src=src, dst=(cy0, cx0, cy1, cx1))


def plan_bom(region_xywh: Sequence[float] | None, boxes_xywh: Sequence[Sequence[float]],
             image_size: int, latent_size: tuple[int, int], seed: int) -> list[BomPatch]:
    """The patches of one image: one per generated box, all from the same benign region.

    No region (the scan has no benign-object candidate) → no occlusion for this image.
    """
    if region_xywh is None or not boxes_xywh:
        return []
    scale = image_size / latent_size[1]
    rng = np.random.default_rng(seed)
    patch = box_to_latent(region_xywh, scale, latent_size)
    return [place_patch(patch, box_to_latent(b, scale, latent_size), latent_size, rng)
            for b in boxes_xywh]


def apply_bom(z: torch.Tensor, z_real: torch.Tensor, plans: Sequence[Sequence[BomPatch]],
              alpha: float) -> torch.Tensor:
    """Blend every image's patches into a copy of ``z`` (B, C, H, W); ``z`` is untouched.

    ``z_real`` is the real scans' latent at the same noise level as ``z``; patches of one
    image are applied in order (a later patch blends over an earlier one).
    """
    out = z.clone()
    for b, patches in enumerate(plans):
        for p in patches:
            sy0, sx0, sy1, sx1 = p.src
            dy0, dx0, dy1, dx1 = p.dst
            region = out[b, :, dy0:dy1, dx0:dx1]
            region.mul_(1.0 - alpha).add_(z_real[b, :, sy0:sy1, sx0:sx1], alpha=alpha)
    return out
