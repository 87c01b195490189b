"""Exact labels from the simulator: visible masks, tight boxes, occlusion, COCO RLE.

An object's pixel is *visible* when the object's own attenuation is at least
``visible_share`` of everything the ray crosses there, and the detector still receives
photons (``T_high ≥ 3 / I0``). Then

- ``visibility`` = visible area / footprint area (footprint: where the object attenuates
  at all), and labels with visibility below ``min_visibility`` are dropped;
- ``occlusion`` = 1 − mean share of the object's attenuation over its footprint, i.e.
  how much of what the scan shows at the item comes from other objects (bag included);
- ``bbox`` is tight around the visible mask; the segmentation is its COCO RLE.

A dropped item stays in the scan (as a real, hidden item would); each image records how
many were dropped in ``images[i]["hidden_items"]``.

Benign regions use their footprint (where a benign object *is*, the candidate place
for Xsyn-A and BOM), with the same occlusion measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from xsyn.data.phantom.scene import Scene, SceneObject

FOOTPRINT_EPS = 0.01  # attenuation (low+high) below which an object is absent


def rle(mask: np.ndarray) -> dict[str, Any]:
    """Binary mask → COCO RLE with a JSON-friendly ``counts`` string."""
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode("ascii")}


def _tight_box(mask: np.ndarray, x0: int, y0: int) -> list[float]:
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    return [float(x0 + cols[0]), float(y0 + rows[0]),
            float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def object_label(obj: SceneObject, scene: Scene, photons: float, visible_share: float,
                 use_footprint: bool = False) -> dict[str, Any] | None:
    """Box, mask, visibility and occlusion of one object (None if it left no footprint)."""
    p = obj.placed
    h, w = p.shape
    sl = (slice(p.y0, p.y0 + h), slice(p.x0, p.x0 + w))
    total = scene.a_low[sl] + scene.a_high[sl]
    foot = obj.a_own > FOOTPRINT_EPS
    n_foot = int(foot.sum())
    if n_foot == 0:
        return None
    share = np.where(foot, obj.a_own / np.maximum(total, 1e-6), 0.0)
    occlusion = float(np.clip(1.0 - share[foot].mean(), 0.0, 1.0))
    lit = np.exp(-scene.a_high[sl]) >= 3.0 / photons
    visible = foot & (share >= visible_share) & lit
    visibility = float(visible.sum()) / n_foot
    mask = foot if use_footprint else visible
    if not mask.any():
        return {"visibility": visibility, "occlusion": occlusion, "bbox": None}
    full = np.zeros(scene.a_low.shape, np.uint8)
    full[sl] = mask
    return {
        "bbox": _tight_box(mask, p.x0, p.y0),
        "area": float(mask.sum()),
        "segmentation": rle(full),
        "visibility": round(visibility, 4),
        "occlusion": round(occlusion, 4),
    }


def scene_labels(scene: Scene, photons: float, visible_share: float, min_visibility: float,
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """``(annotations, regions, hidden)`` of one scene, ids not yet assigned.

    ``hidden`` counts prohibited items drawn but not labelled (visibility too low).
    """
    anns, regions, hidden = [], [], 0
    for obj in scene.objects:
        if obj.category is not None:
            lab = object_label(obj, scene, photons, visible_share)
            if lab is None or lab["bbox"] is None or lab["visibility"] < min_visibility:
                hidden += 1
                continue
            anns.append({"category_id": obj.category, "iscrowd": 0, **lab})
        else:
            lab = object_label(obj, scene, photons, visible_share, use_footprint=True)
            if lab is None or lab["bbox"] is None:
                continue
            regions.append({"kind": obj.kind, **lab})
    return anns, regions, hidden
