"""Stage one of TIP: cut prohibited items out of real scans, as isolated transmissions.

Classic TIP scans each threat item alone in an empty tray. We only have cluttered
training scans, so an item is isolated in two steps:

1. *where* the item is: its mask when the dataset has one (COCO polygon or RLE), else
   an automatic mask from the box (attenuation above the estimated background, Otsu
   threshold, largest connected component);
2. *what it alone transmits*: the background behind it is estimated by inpainting the
   masked pixels from their surroundings (in attenuation space, where inpainting is a
   smooth interpolation of thickness), then divided out,
   ``T_item = T_observed / T_background`` (:func:`~xsyn.baselines.compositing.remove_background`).

An item that cannot be extracted raises :class:`ExtractionError` with a short ``reason``
code; callers count the reasons, so a report says what failed and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from xsyn.baselines.compositing import (
    attenuation,
    from_attenuation,
    remove_background,
)

MIN_BOX_PX = 4  # boxes thinner than this carry no usable item
MIN_CONTRAST = 0.05  # peak attenuation above background (summed over channels) of a real item
MIN_FILL = 0.05  # an automatic mask covering less of its box than this is noise
CONTEXT_MARGIN = 0.25  # share of the box size added around it as inpainting context
INPAINT_RADIUS = 3


class ExtractionError(Exception):
    """An item could not be cut out; ``reason`` is a short code for failure counts."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Foreground:
    """One isolated item: its transmission (1 outside the item) and mask, tightly cropped."""

    transmission: np.ndarray  # (h, w, C) float32 in [0, 1]
    mask: np.ndarray  # (h, w) bool
    category_id: int
    donor_image_id: int
    donor_annotation_id: int
    mask_source: str  # "segmentation" | "auto"


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """COCO polygon / RLE (compressed or not) → ``(H, W)`` bool mask; None when absent."""
    if segmentation is None or (isinstance(segmentation, list) and not segmentation):
        return None
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)  # uncompressed RLE
    elif isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"unknown segmentation type {type(segmentation).__name__}")
    mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"segmentation size {list(mask.shape)} is not the image's {[height, width]}")
    return mask


def inpaint_background(transmission: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Estimate what lies behind ``hole`` from the pixels around it (Navier–Stokes inpainting).

    Inpainted per channel on attenuations, float32 one-channel images. (Not Telea: on
    float32 input OpenCV 5's Telea returns garbage.) With no known pixel at all there is
    nothing to go by: assume air.
    """
    if hole.all():
        return np.ones_like(transmission, dtype=np.float32)
    att = attenuation(transmission)
    hole8 = hole.astype(np.uint8)
    channels = [
        cv2.inpaint(np.ascontiguousarray(att[..., c]), hole8, INPAINT_RADIUS, cv2.INPAINT_NS)
        for c in range(att.shape[-1])
    ]
    return from_attenuation(np.stack(channels, axis=-1))


def auto_mask(item_att: np.ndarray) -> np.ndarray:
    """Item pixels of a box from their attenuation above background: Otsu, largest blob.

    ``item_att`` is the background-removed attenuation summed over channels, ``(h, w)``.
    Otsu runs on ``log(1 + att / MIN_CONTRAST)``: on raw attenuations a metal core
    dominates the histogram and the cut keeps only the core (measured on the phantom,
    box recovery 0.64 mean IoU on linear attenuations, 0.98 on log-compressed ones).
    """
    peak = float(item_att.max())
    if peak < MIN_CONTRAST:
        raise ExtractionError("no_contrast", f"peak attenuation {peak:.3f} < {MIN_CONTRAST}")
    level = np.log1p(np.maximum(item_att, 0.0) / MIN_CONTRAST)
    top = float(level.max())
    scaled = np.clip(level / top * 255.0, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Otsu splits item from background; never accept a cut below the contrast floor.
    cut = max(otsu / 255.0 * top, float(np.log1p(1.0)))
    binary = (level > cut).astype(np.uint8)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        raise ExtractionError("no_contrast", "no pixel above the background")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` plus every background pixel it encloses (flood fill of the outside)."""
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return mask | (outside[1:-1, 1:-1] == 1)


def extract_item(
    transmission: np.ndarray,
    annotation: dict[str, Any],
    image: dict[str, Any],
    use_segmentation: bool = True,
) -> Foreground:
    """Cut the item of ``annotation`` out of the scan ``transmission`` (``(H, W, C)``).

    Raises :class:`ExtractionError` (reason codes: ``box_too_small``, ``bad_segmentation``,
    ``empty_mask``, ``no_contrast``, ``tiny_mask``).
    """
    H, W = transmission.shape[:2]
    x, y, w, h = (float(v) for v in annotation["bbox"])
    bx0, by0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    bx1, by1 = min(int(np.ceil(x + w)), W), min(int(np.ceil(y + h)), H)
    if bx1 - bx0 < MIN_BOX_PX or by1 - by0 < MIN_BOX_PX:
        raise ExtractionError("box_too_small", f"box {annotation['bbox']} is under {MIN_BOX_PX} px")

    mx = max(int(round(CONTEXT_MARGIN * (bx1 - bx0))), INPAINT_RADIUS + 1)
    my = max(int(round(CONTEXT_MARGIN * (by1 - by0))), INPAINT_RADIUS + 1)
    cx0, cy0, cx1, cy1 = max(bx0 - mx, 0), max(by0 - my, 0), min(bx1 + mx, W), min(by1 + my, H)
    crop = transmission[cy0:cy1, cx0:cx1]
    in_box = np.zeros(crop.shape[:2], dtype=bool)
    in_box[by0 - cy0 : by1 - cy0, bx0 - cx0 : bx1 - cx0] = True

    mask = None
    if use_segmentation:
        try:
            full = decode_segmentation(annotation.get("segmentation"), H, W)
        except (ValueError, KeyError, TypeError) as e:
            raise ExtractionError("bad_segmentation", str(e)) from None
        if full is not None:
            mask = full[cy0:cy1, cx0:cx1] & in_box
            if not mask.any():
                raise ExtractionError("empty_mask", "segmentation has no pixel inside the box")

    if mask is not None:
        # Holes enclosed by the mask are estimated with it: a dense core the label left
        # out (the phantom drops photon-starved pixels) is kept if darker than its
        # background, a real opening (a handcuff ring) comes out as air and is dropped.
        filled = fill_holes(mask)
        # Widen the hole a little: mask edges are blurred by the scanner and by resizing.
        hole = cv2.dilate(filled.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        item = remove_background(crop, inpaint_background(crop, hole))
        enclosed = filled & ~mask
        mask = mask | (enclosed & (attenuation(item).sum(axis=-1) > MIN_CONTRAST))
        source = "segmentation"
    else:
        item = remove_background(crop, inpaint_background(crop, in_box))
        att = np.where(in_box, attenuation(item).sum(axis=-1), 0.0)
        mask = auto_mask(att)
        fill = mask.sum() / in_box.sum()
        if fill < MIN_FILL:
            raise ExtractionError("tiny_mask", f"automatic mask fills {fill:.1%} of the box")
        source = "auto"

    item = np.where(mask[..., None], item, 1.0).astype(np.float32)
    ys, xs = np.nonzero(mask)
    sl = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return Foreground(
        transmission=item[sl],
        mask=mask[sl],
        category_id=int(annotation["category_id"]),
        donor_image_id=int(image["id"]),
        donor_annotation_id=int(annotation["id"]),
        mask_source=source,
    )
