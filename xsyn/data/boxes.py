"""Box geometry shared by every stage. COCO boxes are ``[x, y, w, h]`` in pixels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = Sequence[float]


def xyxy_to_xywh(box: Box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def xywh_to_xyxy(box: Box) -> list[float]:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def clip_xywh(box: Box, width: float, height: float) -> list[float]:
    """Clip to the image; a box fully outside comes back with zero width or height."""
    x1, y1, x2, y2 = xywh_to_xyxy(box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return [x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)]


def outside_px(box: Box, width: float, height: float) -> float:
    """How far the box reaches past the image's edges, in pixels (0 for a box inside)."""
    x1, y1, x2, y2 = xywh_to_xyxy(box)
    return max(0.0, -x1, -y1, x2 - width, y2 - height)


def xywh_to_unit_xyxy(box: Box, width: float, height: float) -> list[float]:
    """Pixels xywh → xyxy in [0, 1] of the image (GLIGEN's box format), clipped."""
    x1, y1, x2, y2 = xywh_to_xyxy(box)
    return [min(max(v, 0.0), 1.0) for v in (x1 / width, y1 / height, x2 / width, y2 / height)]


def area_xywh(box: Box) -> float:
    return max(float(box[2]), 0.0) * max(float(box[3]), 0.0)


def iou_xywh(a: Box, b: Box) -> float:
    ax1, ay1, ax2, ay2 = xywh_to_xyxy(a)
    bx1, by1, bx2, by2 = xywh_to_xyxy(b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = area_xywh(a) + area_xywh(b) - inter
    # clamp: inter comes from corners, areas from sizes, so rounding can push it past 1
    return min(inter / union, 1.0) if union > 0 else 0.0


def iou_matrix_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two ``(N, 4)`` and ``(M, 4)`` arrays of xywh boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.clip(np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0), 0.0, 1.0)


def xywh_to_yolo(box: Box, width: float, height: float) -> list[float]:
    """Pixel xywh → normalised (cx, cy, w, h) as ultralytics labels want."""
    x, y, w, h = (float(v) for v in box)
    return [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height]


def yolo_to_xywh(yolo: Box, width: float, height: float) -> list[float]:
    cx, cy, w, h = (float(v) for v in yolo)
    return [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
