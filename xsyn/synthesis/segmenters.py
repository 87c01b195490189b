"""Prompted segmenters for CAR: SAM (local weights) and the SAM-free GrabCut refiner.

CAR asks one question of a segmenter: "given this image, a search rectangle, and a few
positive / negative points read from the diffusion model's attention map, which pixels
belong to the item?". The authors answered it with SAM ViT-H; this machine has no SAM
weights, so the default answers it with OpenCV's GrabCut seeded by the same points and by
the thresholded attention map (DESIGN §5). Both implement :class:`Segmenter`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

Points = np.ndarray  # (K, 2) integer pixel coordinates, x then y


@runtime_checkable
class Segmenter(Protocol):
    """``segment(image, box_xyxy, pos_points, neg_points) -> bool mask`` (H×W); ``name``
    is the ``synthesis.car.segmenter`` value that selects it (recorded in provenance)."""

    name: str

    def segment(
        self,
        image: np.ndarray,
        box_xyxy: Sequence[float],
        pos_points: Points,
        neg_points: Points,
        prior: np.ndarray | None = None,
    ) -> np.ndarray: ...


def segment_many(
    segmenter: Segmenter,
    image: np.ndarray,
    boxes_xyxy: Sequence[Sequence[float]],
    pos_points: Sequence[Points],
    neg_points: Sequence[Points],
    priors: Sequence[np.ndarray | None],
) -> list[np.ndarray]:
    """All boxes of one image: batched when the segmenter can (SAM), else one by one."""
    if not len(boxes_xyxy):
        return []
    batched = getattr(segmenter, "segment_batch", None)
    if batched is not None:
        return batched(image, boxes_xyxy, pos_points, neg_points, priors)
    return [
        segmenter.segment(image, b, p, n, prior=pr)
        for b, p, n, pr in zip(boxes_xyxy, pos_points, neg_points, priors, strict=True)
    ]


def _int_box(box_xyxy: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel-index rectangle [x1, x2) × [y1, y2) covering the float box, clipped to the image."""
    x1, y1, x2, y2 = box_xyxy
    x1, y1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
    x2, y2 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
    return x1, y1, max(x2, x1), max(y2, y1)


class AttentionSegmenter:
    """The thresholded attention map itself: the cheapest refiner, and a CAR baseline."""

    name = "attention"

    def segment(self, image, box_xyxy, pos_points, neg_points, prior=None) -> np.ndarray:
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        if prior is not None:
            x1, y1, x2, y2 = _int_box(box_xyxy, w, h)
            mask[y1:y2, x1:x2] = prior[y1:y2, x1:x2]
        return mask


class GrabCutSegmenter:
    """SAM-free refiner: OpenCV GrabCut initialised from the attention map.

    Seeds (why each): outside the search rectangle is sure background (the item was
    asked for inside it); the thresholded attention region is probable foreground (the
    model says the class word went there); small discs at the positive points are sure
    foreground and at the negative point sure background (the strongest and weakest
    attention evidence, as SAM would receive them). GrabCut then lets the image colours
    decide the exact outline, which the 16×16 attention map cannot resolve.

    GrabCut runs on a crop around the rectangle with ``context`` extra on each side, so
    its background colour model sees the surroundings without paying for the whole image.
    """

    name = "grabcut"

    def __init__(self, iterations: int = 5, point_radius: float = 0.04, context: float = 0.5):
        self.iterations = int(iterations)
        self.point_radius = float(point_radius)
        self.context = float(context)

    def segment(self, image, box_xyxy, pos_points, neg_points, prior=None) -> np.ndarray:
        h, w = image.shape[:2]
        out = np.zeros((h, w), bool)
        x1, y1, x2, y2 = _int_box(box_xyxy, w, h)
        bw, bh = x2 - x1, y2 - y1
        if bw < 2 or bh < 2:
            return out
        cx, cy = int(round(self.context * bw)), int(round(self.context * bh))
        X1, Y1 = max(x1 - cx, 0), max(y1 - cy, 0)
        X2, Y2 = min(x2 + cx, w), min(y2 + cy, h)
        crop = np.ascontiguousarray(image[Y1:Y2, X1:X2, :3], dtype=np.uint8)
        mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
        mask[y1 - Y1 : y2 - Y1, x1 - X1 : x2 - X1] = cv2.GC_PR_BGD
        if prior is not None:
            inside = np.zeros_like(mask, bool)
            inside[y1 - Y1 : y2 - Y1, x1 - X1 : x2 - X1] = True
            mask[inside & prior[Y1:Y2, X1:X2]] = cv2.GC_PR_FGD
        radius = max(1, int(round(self.point_radius * min(bw, bh))))
        for pts, label in ((neg_points, cv2.GC_BGD), (pos_points, cv2.GC_FGD)):
            for x, y in np.asarray(pts, dtype=int).reshape(-1, 2):
                cv2.circle(mask, (int(x) - X1, int(y) - Y1), radius, int(label), -1)
        has_fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
        has_bg = np.isin(mask, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
        if not (has_fg and has_bg):
            return out
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(crop, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            # Degenerate colour statistics (e.g. a flat crop): no evidence, let CAR fall back.
            return out
        fg = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
        out[Y1:Y2, X1:X2] = fg
        return out


class SamSegmenter:
    """Segment Anything through transformers' ``SamModel`` from a local folder.

    All boxes of one image go through the mask decoder in one batch (the image embedding,
    the expensive part, is computed once). Each box is prompted with its rectangle and
    its points; shorter point lists are padded with SAM's pad label (-10).
    """

    PAD = -10
    name = "sam"

    def __init__(self, path: str, device: str):
        import torch
        from transformers import SamModel, SamProcessor

        from xsyn.config import resolve_device
        from xsyn.generator.factory import pretrained_identity

        self.device = torch.device(resolve_device(device))
        self.weights = pretrained_identity({"sam": path})["sam"][:12] if Path(path).is_dir() else None
        try:
            self.processor = SamProcessor.from_pretrained(path, local_files_only=True)
            self.model = SamModel.from_pretrained(path, local_files_only=True)
        except OSError as e:
            raise FileNotFoundError(
                f"synthesis.car.sam_path={path!r}: not a SamModel/SamProcessor folder ({e})"
            ) from None
        self.model.to(self.device).eval()

    def segment(self, image, box_xyxy, pos_points, neg_points, prior=None) -> np.ndarray:
        return self.segment_batch(image, [box_xyxy], [pos_points], [neg_points], [prior])[0]

    def segment_batch(self, image, boxes_xyxy, pos_points, neg_points, priors) -> list[np.ndarray]:
        import torch

        points, labels = [], []
        for pos, neg in zip(pos_points, neg_points, strict=True):
            pos = np.asarray(pos, float).reshape(-1, 2)
            neg = np.asarray(neg, float).reshape(-1, 2)
            points.append(np.concatenate([pos, neg]).tolist())
            labels.append([1] * len(pos) + [0] * len(neg))
        n = max(1, max(len(p) for p in points))
        for p, lab in zip(points, labels, strict=True):
            p.extend([[float(self.PAD), float(self.PAD)]] * (n - len(p)))
            lab.extend([self.PAD] * (n - len(lab)))
        rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        inputs = self.processor(
            images=rgb,
            input_boxes=[[list(map(float, b)) for b in boxes_xyxy]],
            input_points=[points],
            input_labels=[labels],
            return_tensors="pt",
        )
        model_inputs = {
            k: v.to(self.device, dtype=torch.float32 if v.is_floating_point() else v.dtype)
            for k, v in inputs.items()
            if k in ("pixel_values", "input_boxes", "input_points", "input_labels")
        }
        with torch.no_grad():
            out = self.model(**model_inputs, multimask_output=False)
        masks = self.processor.post_process_masks(
            out.pred_masks.cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]  # (boxes, 1, H, W) bool
        return [m[0].numpy().astype(bool) for m in masks]


@functools.lru_cache(maxsize=4)
def _cached_sam(path: str, device: str) -> SamSegmenter:
    return SamSegmenter(path, device)


def make_segmenter(cfg: dict) -> Segmenter:
    """The segmenter ``synthesis.car`` asks for; SAM is loaded once per process and cached."""
    kind = cfg["segmenter"]
    if kind == "grabcut":
        return GrabCutSegmenter(iterations=cfg["grabcut_iterations"])
    if kind == "attention":
        return AttentionSegmenter()
    if kind == "sam":
        path = cfg["sam_path"]
        if not path:
            raise ValueError("synthesis.car.segmenter=sam needs synthesis.car.sam_path (a local SamModel folder)")
        return _cached_sam(str(path), cfg["device"])
    raise ValueError(f"synthesis.car.segmenter: unknown segmenter {kind!r} (grabcut | sam | attention)")
