"""Benign-object candidate regions of a real scan (places for Xsyn-A, patches for BOM).

Three sources, in order of preference:

1. the dataset's own ``regions`` records (the phantom simulator writes the exact boxes of
   its benign clutter);
2. a segmenter: transformers ``SamModel`` from a local folder (``synthesis.car.sam_path``),
   automatic mask generation, dropping the two largest masks (background and bag), as the
   authors did;
3. an image-only fallback for users with neither: X-ray scans are bright where nothing
   absorbs, so objects are darker blobs. The grey image is cut at several levels between
   its darkest and brightest non-empty pixel; the connected components of each level are
   candidates, except those covering more than ``max_share`` of the image (the bag).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def drop_largest(boxes: list[list[float]], n: int = 2) -> list[list[float]]:
    """Drop the ``n`` largest boxes by area (background and bag in a baggage scan)."""
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][2] * boxes[i][3], reverse=True)
    keep = sorted(order[n:])
    return [boxes[i] for i in keep]


def image_regions(image: np.ndarray, levels: Sequence[float] = (0.25, 0.5, 0.75),
                  min_pixels: int = 16, max_share: float = 0.5) -> list[list[float]]:
    """Image-only fallback: boxes of dark connected blobs at several attenuation levels."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    grey = cv2.GaussianBlur(grey, (3, 3), 0)
    dark = grey[grey < 250]
    if dark.size == 0:
        return []
    boxes: list[list[float]] = []
    lo, hi = float(dark.min()), float(dark.max())
    for q in levels:
        thresh = lo + q * (hi - lo)
        mask = (grey <= thresh).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for x, y, w, h, area in stats[1:n]:
            if area >= min_pixels and w * h <= max_share * grey.size:
                boxes.append([float(x), float(y), float(w), float(h)])
    return [list(b) for b in dict.fromkeys(tuple(b) for b in boxes)]


class SamRegions:
    """Automatic masks from a local transformers SAM checkpoint (loaded once)."""

    def __init__(self, path: str, device: str = "cpu", points_per_batch: int = 64):
        from transformers import pipeline

        self.generator = pipeline("mask-generation", model=path, device=device,
                                  points_per_batch=points_per_batch)

    def __call__(self, image: np.ndarray) -> list[list[float]]:
        from PIL import Image

        masks = self.generator(Image.fromarray(image), points_per_batch=64)["masks"]
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(np.asarray(m))
            if len(xs):
                boxes.append([float(xs.min()), float(ys.min()),
                              float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)])
        return drop_largest(boxes)


class CandidateSource:
    """Pick the candidate source once per dataset, then answer per image."""

    def __init__(self, coco: dict[str, Any], car_cfg: dict[str, Any], device: str = "cpu"):
        self.by_image: dict[int, list[list[float]]] | None = None
        self.sam: SamRegions | None = None
        if coco.get("regions"):
            self.kind = "regions"
            self.by_image = {}
            for r in coco["regions"]:
                self.by_image.setdefault(r["image_id"], []).append([float(v) for v in r["bbox"]])
        elif car_cfg.get("segmenter") == "sam" and car_cfg.get("sam_path"):
            self.kind = "sam"
            self.sam = SamRegions(car_cfg["sam_path"], device)
        else:
            self.kind = "image"

    def __call__(self, image_id: int, image: np.ndarray | None) -> list[list[float]]:
        if self.by_image is not None:
            return self.by_image.get(image_id, [])
        if image is None:
            raise ValueError(f"image {image_id}: candidate source {self.kind!r} needs the pixels")
        return self.sam(image) if self.sam is not None else image_regions(image)
