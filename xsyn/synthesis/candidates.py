"""Benign-object candidate regions of a real scan (places for Xsyn-A, patches for BOM).

Three sources, in order of preference:

1. the dataset's own ``regions`` records (the phantom simulator writes the exact boxes of
   its benign clutter);
2. a segmenter: transformers ``SamModel`` from a local folder (``synthesis.car.sam_path``),
   automatic mask generation, dropping the two largest masks (background and bag), as the
   authors did; a scan where that leaves nothing (SAM saw only bag and background) gets
   the image-only candidates below, and the record names it (``fallback``);
3. an image-only fallback for users with neither: X-ray scans are bright where nothing
   absorbs, so objects are darker blobs. The grey image is cut at several levels between
   its darkest and brightest non-empty pixel; the connected components of each level are
   candidates, except those covering more than ``max_share`` of the image (the bag).

SAM is the expensive one (PIDray: 1,024 point prompts per scan through ViT-H), so
``xsyn candidates`` runs it once per source scan, on the run's device, one job per
synthesis shard, and every method of that shard reads the stored boxes
(:class:`StoredCandidates`) instead of asking SAM again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
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
    """Automatic masks from a local transformers SAM checkpoint (loaded once), on ``device``."""

    def __init__(self, path: str, device: str, points_per_batch: int = 64):
        from transformers import pipeline

        self.points_per_batch = points_per_batch
        self.generator = pipeline("mask-generation", model=path, device=device,
                                  points_per_batch=points_per_batch)

    def __call__(self, image: np.ndarray) -> list[list[float]]:
        from PIL import Image

        masks = self.generator(Image.fromarray(image), points_per_batch=self.points_per_batch)["masks"]
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(np.asarray(m))
            if len(xs):
                boxes.append([float(xs.min()), float(ys.min()),
                              float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)])
        return drop_largest(boxes)


class CandidateSource:
    """Pick the candidate source once per dataset, then answer per image.

    ``car_cfg`` is ``synthesis.car`` (its ``segmenter`` and ``sam_path`` say whether SAM
    runs); ``device`` is where SAM runs (the run's device, resolved). Boxes are xywh in the
    pixels of the image passed in (the dataset's records are in the original image's).
    """

    def __init__(self, coco: dict[str, Any], car_cfg: Mapping[str, Any], device: str):
        self.by_image: dict[int, list[list[float]]] | None = None
        self.sam: SamRegions | None = None
        self.weights: str | None = None
        self.fallback: set[int] = set()  # scans where SAM left nothing: image-only candidates
        if coco.get("regions"):
            self.kind = "regions"
            self.by_image = {}
            for r in coco["regions"]:
                self.by_image.setdefault(r["image_id"], []).append([float(v) for v in r["bbox"]])
        elif car_cfg["segmenter"] == "sam" and car_cfg["sam_path"]:
            from xsyn.generator.factory import pretrained_identity

            self.kind = "sam"
            self.sam = SamRegions(car_cfg["sam_path"], device)
            self.weights = pretrained_identity({"sam": car_cfg["sam_path"]})["sam"][:12]
        else:
            self.kind = "image"

    def identity(self, image_id: int) -> dict[str, Any]:
        """What found an image's regions: ``regions`` (the dataset's records), ``sam`` (with a
        digest of its weights folder) or ``image`` (dark blobs); ``fallback: image`` when SAM
        left nothing on that scan."""
        return {"source": self.kind, "weights": self.weights,
                "fallback": "image" if image_id in self.fallback else None}

    def __call__(self, image_id: int, image: np.ndarray | None) -> list[list[float]]:
        if self.by_image is not None:
            return self.by_image.get(image_id, [])
        if image is None:
            raise ValueError(f"image {image_id}: candidate source {self.kind!r} needs the pixels")
        if self.sam is None:
            return image_regions(image)
        found = self.sam(image)
        if not found:
            self.fallback.add(image_id)
            found = image_regions(image)
        return found


def find_candidates(dataset_root: str | Path, split: str, shard_index: int, shard_count: int,
                    car_cfg: Mapping[str, Any], device: str) -> dict[str, Any]:
    """Candidate regions of every source scan of one synthesis shard, once for all methods.

    The scans are part ``shard_index`` of ``shard_count`` of ``split`` (the same cut as the
    synthesis shards), read at their own size, so boxes are in original-image pixels like
    the dataset's records. The result is what ``xsyn candidates`` writes.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from xsyn.data.contract import load_split
    from xsyn.data.shards import shard_slice

    root = Path(dataset_root)
    coco = load_split(root, split)
    images = shard_slice(sorted(coco["images"], key=lambda im: im["id"]), shard_index, shard_count)
    source = CandidateSource(coco, car_cfg, device)
    found: dict[str, list[list[float]]] = {}
    start = time.perf_counter()
    for img in tqdm(images, desc=f"candidates {split} {shard_index + 1}/{shard_count}", unit="img"):
        pixels = None if source.kind == "regions" else np.asarray(
            Image.open(root / "images" / img["file_name"]).convert("RGB"))
        found[str(img["id"])] = source(img["id"], pixels)
    return {"source": source.kind, "weights": source.weights, "device": device, "split": split,
            "shard": [shard_index, shard_count], "seconds": round(time.perf_counter() - start, 3),
            "fallback": {"image": sorted(source.fallback)}, "images": found}


class StoredCandidates:
    """Candidates computed earlier (``xsyn candidates``), answering like :class:`CandidateSource`."""

    def __init__(self, path: str | Path, split: str, shard_index: int, shard_count: int):
        from xsyn.io import read_json

        self.path = Path(path)
        data = read_json(self.path)
        if data["split"] != split or list(data["shard"]) != [shard_index, shard_count]:
            raise ValueError(f"{self.path}: candidates of {data['split']} shard {data['shard']}, "
                             f"not of {split} shard {[shard_index, shard_count]}")
        self.kind, self.weights, self.images = data["source"], data["weights"], data["images"]
        self.fallback = set(data["fallback"]["image"])

    def identity(self, image_id: int) -> dict[str, Any]:
        return {"source": self.kind, "weights": self.weights,
                "fallback": "image" if image_id in self.fallback else None}

    def __call__(self, image_id: int, image: np.ndarray | None) -> list[list[float]]:
        try:
            return self.images[str(image_id)]
        except KeyError:
            raise ValueError(f"{self.path}: no candidates for image {image_id}") from None
