"""CAR — Cross-Attention Refinement of generated boxes (DESIGN §2).

The box the generator was asked to fill is only a request: the item it drew may be
smaller, shifted or tilted. CAR reads the class word's cross-attention map (summed over
denoising steps, upsampled to the image) and refines each box to the item drawn:

1. look in a *search window*: the requested box grown by ``margin`` on each side, because
   items are often drawn shifted out of their box;
2. threshold the map there (Otsu by default) into a high-attention region, and read
   prompt points from it (:func:`attention_points`);
3. let a segmenter (GrabCut, or SAM when local weights are given) turn box + points into
   a mask; the new box is the bounding rectangle of its largest contour
   (:func:`box_from_mask`);
4. sanity limits: a refined box whose area is outside ``[min_scale, max_scale]`` times the
   requested area (a collapse onto a speck, or an explosion into the bag) is replaced by
   the requested box and flagged, as is a window where nothing was found;
5. a trust gate (ours; off in the authors' rule): a refined box whose confidence is below
   ``min_score``, or whose IoU with the request is below ``min_overlap``, is replaced by the
   requested box and flagged too (:func:`gate`). A refiner that is right on average can
   still lose a box outright (AP50 drops when it does). Thresholds are chosen on val
   (``benchmarks/car_quality.py --gate-scores/--gate-overlaps``); on the smoke generator no
   gate beat the ungated boxes on mean IoU, so both profiles keep it off (benchmarks/README).

Two departures from the authors, both measured on phantom ground truth
(``benchmarks/car_quality.py``): the segmenter's mask is kept within a dilation
(``restrict`` × box side) of the attention region, so GrabCut cannot follow the item's
colour into touching clutter the model never attended to; and the box covers every
contour of at least ``merge_ratio`` × the largest one's area, because an occluder can cut
one item into pieces (``merge_ratio: 0`` and ``restrict: null`` give the authors' rule).

Confidence. Each result carries ``score`` = IoU between the segmenter's mask and the
high-attention region inside the window. The two are independent witnesses of where the
item is: the image's colours (segmenter) and the model's own attention to the class word.
When they agree the refined box is trustworthy; when the segmenter grabbed a clutter
object or the attention is diffuse, they disagree and the score drops. It is in [0, 1]
by construction. A fallback box gets the same agreement measured for the requested
rectangle, halved, so flagged boxes rank below refined ones that agree equally well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from xsyn.data.boxes import area_xywh, clip_xywh, iou_xywh, xywh_to_xyxy
from xsyn.synthesis.segmenters import Segmenter, make_segmenter, segment_many


@dataclass
class CarResult:
    box: list[float]  # refined xywh in pixels
    score: float  # confidence in [0,1]
    fallback: bool  # True when the requested box was kept (nothing found, collapse, explosion, gate)
    request_score: float = 0.0  # the score the requested box gets if it is kept instead


def search_window(box: Sequence[float], margin: float, width: int, height: int) -> list[float]:
    """The requested xywh box grown by ``margin`` × its size on every side, clipped."""
    x, y, w, h = (float(v) for v in box)
    grown = [x - margin * w, y - margin * h, w * (1 + 2 * margin), h * (1 + 2 * margin)]
    return clip_xywh(grown, width, height)


def _pixel_slice(box: Sequence[float], width: int, height: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels a float xywh box covers (at least one when inside)."""
    x1, y1, x2, y2 = xywh_to_xyxy(box)
    c1, r1 = min(max(int(np.floor(x1)), 0), width), min(max(int(np.floor(y1)), 0), height)
    c2, r2 = min(max(int(np.ceil(x2)), c1), width), min(max(int(np.ceil(y2)), r1), height)
    return slice(r1, r2), slice(c1, c2)


def high_attention(values: np.ndarray, threshold: str | float = "otsu") -> np.ndarray:
    """Boolean high-attention region of a map crop (min-max normalised first).

    ``"otsu"`` picks the threshold that best separates two populations (item vs the rest),
    which adapts to how peaked each map is; a number in (0, 1) is a fixed share of the
    crop's range. A flat crop has no high region.
    """
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return np.zeros(v.shape, bool)
    lo, hi = float(v.min()), float(v.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12 * max(abs(hi), 1.0):
        return np.zeros(v.shape, bool)
    norm = (v - lo) / (hi - lo)
    if threshold == "otsu":
        u8 = np.round(norm * 255).astype(np.uint8)
        t, _ = cv2.threshold(u8.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return u8 > t
    t = float(threshold)
    if not 0.0 < t < 1.0:
        raise ValueError(f"synthesis.car.threshold must be 'otsu' or a number in (0, 1), got {threshold!r}")
    return norm > t


def _median_split(coords: np.ndarray, values: np.ndarray, depth: int) -> list[np.ndarray]:
    """Recursive median split: halve the region at the attention-weighted median of its
    longer axis, ``depth`` times; each leaf contributes its highest-attention pixel.

    Why spatial halves: SAM (and GrabCut's seeds) outline an item better from positives
    spread over its extent than from a cluster at the single peak; splitting at the
    attention-weighted median puts more leaves where the attention mass is.
    """
    if depth <= 0 or len(coords) < 2:
        return [coords[int(np.argmax(values))]]
    extent = coords.max(0) - coords.min(0)
    axis = int(np.argmax(extent))
    if extent[axis] == 0:
        return [coords[int(np.argmax(values))]]
    order = np.argsort(coords[:, axis], kind="stable")
    cum = np.cumsum(np.maximum(values[order], 0) + 1e-12)
    cut_value = coords[order[int(np.searchsorted(cum, cum[-1] / 2))], axis]
    left = coords[:, axis] <= cut_value
    if left.all():  # the median sits on the last coordinate: split just below it
        left = coords[:, axis] < cut_value
    out: list[np.ndarray] = []
    for part in (left, ~left):
        out.extend(_median_split(coords[part], values[part], depth - 1))
    return out


def attention_points(
    attn: np.ndarray, box: Sequence[float], depth: int, threshold: str | float = "otsu"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Prompt points read from an H×W attention map inside an xywh ``box``.

    Returns ``(positives, negative)``: positives a ``(K, 2)`` int array of (x, y) pixels,
    K ≤ 2**depth, all in the high-attention region (empty when the map is flat there);
    negative the (x, y) of the lowest-attention pixel of the box outside that region, or
    ``None`` when there is no such pixel.
    """
    attn = np.asarray(attn, np.float64)
    if attn.ndim != 2:
        raise ValueError(f"attention map must be 2-D (H×W), got shape {attn.shape}")
    height, width = attn.shape
    rows, cols = _pixel_slice(box, width, height)
    crop = attn[rows, cols]
    empty = np.zeros((0, 2), int)
    if crop.size == 0:
        return empty, None
    high = high_attention(crop, threshold)
    offset = np.array([cols.start, rows.start])
    negative = None
    if (~high).any():
        low = np.where(high, np.inf, crop)
        r, c = np.unravel_index(int(np.argmin(low)), crop.shape)
        negative = np.array([c, r]) + offset
    if not high.any():
        return empty, negative
    rr, cc = np.nonzero(high)
    coords = np.stack([cc, rr], 1)
    pos = np.stack(_median_split(coords, crop[rr, cc], int(depth))) + offset
    return pos.astype(int), negative


def box_from_mask(mask: np.ndarray, merge_ratio: float = 0.0) -> list[float] | None:
    """xywh bounding rectangle of the mask's largest external contour; ``None`` if empty.

    Largest by enclosed area, ties (and one-pixel-thin shapes with zero area) broken by
    the rectangle's size: a stray speck never wins over the item. With ``merge_ratio`` > 0
    every contour whose area is at least that share of the largest joins the rectangle:
    an item cut in two by an occluder is still one item.
    """
    m = np.ascontiguousarray(np.asarray(mask, bool), dtype=np.uint8)
    if m.ndim != 2 or not m.any():
        return None
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None

    def size(c: np.ndarray) -> tuple[float, int]:
        _, _, w, h = cv2.boundingRect(c)
        return float(cv2.contourArea(c)), w * h

    largest = max(contours, key=size)
    if merge_ratio > 0:
        floor = merge_ratio * max(size(largest)[0], 1.0)
        keep = [c for c in contours if c is largest or size(c)[0] >= floor]
        largest = np.concatenate(keep)
    x, y, w, h = cv2.boundingRect(largest)
    return [float(x), float(y), float(w), float(h)]


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _rect_mask(box: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    rows, cols = _pixel_slice(box, shape[1], shape[0])
    m[rows, cols] = True
    return m


def _check_inputs(image: np.ndarray, maps: list[np.ndarray], boxes: list[list[float]]) -> None:
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"CAR: image must be H×W×3, got shape {image.shape}")
    if len(maps) != len(boxes):
        raise ValueError(f"CAR: {len(maps)} attention maps for {len(boxes)} boxes")
    height, width = image.shape[:2]
    for i, (m, b) in enumerate(zip(maps, boxes, strict=True)):
        if np.shape(m) != (height, width):
            raise ValueError(f"CAR: attention map {i} has shape {np.shape(m)}, image is {height}×{width}")
        if len(b) != 4 or not np.all(np.isfinite(b)):
            raise ValueError(f"CAR: box {i} must be 4 finite numbers [x, y, w, h], got {b!r}")


def _judge(
    requested: list[float], mask: np.ndarray | None, window: list[float], prior: np.ndarray, cfg: dict,
) -> CarResult:
    """One box's verdict from the segmenter's mask (``None``: no prompt points)."""
    shape = prior.shape
    win_mask = _rect_mask(window, shape)
    refined = None
    if mask is not None:
        mask = np.asarray(mask, bool) & win_mask
        if cfg["restrict"] is not None and prior.any():
            # Keep the segmenter inside a dilation of the attention region: the image
            # may continue the item's colour into touching clutter; the model did not.
            k = max(1, int(round(cfg["restrict"] * max(requested[2], requested[3]))))
            near = cv2.dilate(prior.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8))
            mask &= near.astype(bool)
        refined = box_from_mask(mask, cfg["merge_ratio"])
    req_area = area_xywh(requested)
    ok = refined is not None and req_area > 0
    if ok:
        ratio = area_xywh(refined) / req_area
        ok = cfg["min_scale"] <= ratio <= cfg["max_scale"]
    fallback_score = 0.5 * _agreement(_rect_mask(requested, shape) & win_mask, prior)
    if ok:
        result = CarResult(refined, _agreement(mask, prior), False, fallback_score)
        return gate(result, requested, cfg["min_score"], cfg["min_overlap"])
    return CarResult(requested, fallback_score, True, fallback_score)


def gate(result: CarResult, requested: Sequence[float], min_score: float, min_overlap: float) -> CarResult:
    """Keep the request unless the refined box is trusted: confidence ≥ ``min_score`` and IoU
    with the request ≥ ``min_overlap`` (both 0: every refined box passes, the authors' rule).

    Public so the benchmark can sweep thresholds over one set of refinements (the same
    boxes, so the rows differ only by the gate).
    """
    if result.fallback or (result.score >= min_score and iou_xywh(result.box, requested) >= min_overlap):
        return result
    return CarResult([float(v) for v in requested], result.request_score, True, result.request_score)


def refine_boxes(
    image: np.ndarray,
    maps: list[np.ndarray],
    boxes: list[list[float]],
    cfg: dict,
    segmenter: Segmenter | None = None,
) -> list[CarResult]:
    """Refine each requested xywh box of one generated image from its attention map.

    ``image`` H×W×3 uint8; ``maps`` one H×W float map per box (already image size);
    ``cfg`` = ``config["synthesis"]["car"]``. ``segmenter`` overrides the configured one
    (benchmarks compare several on the same inputs).
    """
    image = np.asarray(image)
    _check_inputs(image, maps, boxes)
    height, width = image.shape[:2]
    if not cfg["enabled"]:
        return [CarResult([float(v) for v in b], 1.0, True) for b in boxes]
    if not boxes:
        return []
    if cfg["min_scale"] > cfg["max_scale"]:
        raise ValueError(f"CAR: min_scale {cfg['min_scale']} > max_scale {cfg['max_scale']}")
    segmenter = segmenter or make_segmenter(cfg)

    windows, positives, negatives, priors = [], [], [], []
    for attn, box in zip(maps, boxes, strict=True):
        win = search_window(box, cfg["margin"], width, height)
        pos, neg = attention_points(attn, win, cfg["split_depth"], cfg["threshold"])
        prior = np.zeros((height, width), bool)
        rows, cols = _pixel_slice(win, width, height)
        prior[rows, cols] = high_attention(np.asarray(attn)[rows, cols], cfg["threshold"])
        windows.append(win)
        positives.append(pos)
        negatives.append(np.zeros((0, 2), int) if neg is None else neg.reshape(1, 2))
        priors.append(prior)

    todo = [i for i, p in enumerate(positives) if len(p)]
    masks: dict[int, np.ndarray] = {}
    if todo:
        got = segment_many(
            segmenter,
            image,
            [xywh_to_xyxy(windows[i]) for i in todo],
            [positives[i] for i in todo],
            [negatives[i] for i in todo],
            [priors[i] for i in todo],
        )
        masks = dict(zip(todo, got, strict=True))
    return [_judge([float(v) for v in box], masks.get(i), windows[i], priors[i], cfg)
            for i, box in enumerate(boxes)]
