"""Training data of the generator: scans with (phrase, box) grounding, as the authors fed GLIGEN.

Per image: centre crop + resize to the training resolution, boxes < ``min_box_area`` of the
image dropped, at most ``max_boxes`` kept (the largest), phrase "one {class}" per box and a
global caption of class names. Everything random (flip, caption drop, grounding drop,
inpainting masks) is drawn from a ``torch.Generator`` the caller seeds per step, so a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from xsyn.data.contract import (
    DatasetError,
    annotations_by_image,
    caption_for,
    category_names,
    load_split,
    phrase_for,
)


@dataclass
class Example:
    """One prepared scan: uint8 pixels (H, W, 3), normalised xyxy boxes, phrases, caption."""

    pixels: np.ndarray
    boxes: np.ndarray  # (n, 4) float32 in [0, 1], x0 y0 x1 y1
    phrases: list[str]
    caption: str
    file_name: str
    classes: list[str] | None = None  # class name per box (captions of crops); None: unknown
    # per class name, the union of its items as coverage in [0, 1] at the latent resolution
    # (only when an attention-alignment term asks for it: finetune.attention_alignment)
    class_masks: dict[str, np.ndarray] | None = None


def crop_resize(img: Image.Image, boxes_xywh: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop to a square, resize to ``size``; boxes → normalised, clipped xyxy."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.BICUBIC)
    b = boxes_xywh.astype(np.float64).reshape(-1, 4)
    xyxy = np.stack([b[:, 0] - left, b[:, 1] - top, b[:, 0] + b[:, 2] - left, b[:, 1] + b[:, 3] - top], 1)
    xyxy = np.clip(xyxy / side, 0.0, 1.0)
    return np.array(img, dtype=np.uint8), xyxy.astype(np.float32)


def latent_coverage(mask: np.ndarray, resolution: int, latent_size: int) -> np.ndarray:
    """An image-size bool mask → centre crop, resize, then coverage per latent cell (float16)."""
    import cv2

    h, w = mask.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    m = mask[top:top + side, left:left + side].astype(np.float32)
    m = cv2.resize(m, (resolution, resolution), interpolation=cv2.INTER_AREA) if side != resolution else m
    return cv2.resize(m, (latent_size, latent_size), interpolation=cv2.INTER_AREA).astype(np.float16)


def load_examples(
    root: str | os.PathLike,
    split: str,
    resolution: int,
    min_box_area: float = 0.01,
    max_boxes: int = 8,
) -> tuple[list[Example], list[str]]:
    """Read a prepared dataset split into memory (small sets: the smoke scans are 128 px).

    Returns the examples and the class names in category order.
    """
    root = Path(root)
    coco = load_split(root, split)
    names = category_names(coco)
    by_image = annotations_by_image(coco)
    examples = []
    for img_rec in coco["images"]:
        path = root / "images" / img_rec["file_name"]
        try:
            img = Image.open(path).convert("RGB")
        except (FileNotFoundError, OSError) as e:
            raise DatasetError(f"{root}/annotations/{split}.json: image id {img_rec['id']}: cannot read {path}: {e}") from None
        anns = by_image[img_rec["id"]]
        raw = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        pixels, boxes = crop_resize(img, raw, resolution)
        phrases = [a.get("phrase") or phrase_for(names[a["category_id"]]) for a in anns]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = [i for i in np.argsort(-area, kind="stable") if area[i] >= min_box_area][:max_boxes]
        keep.sort()
        kept_classes = [names[anns[i]["category_id"]] for i in keep]
        caption = img_rec.get("caption") if not keep or len(keep) == len(anns) else None
        examples.append(
            Example(
                pixels=pixels,
                boxes=boxes[keep] if keep else np.zeros((0, 4), np.float32),
                phrases=[phrases[i] for i in keep],
                caption=caption if caption is not None else caption_for(kept_classes),
                file_name=img_rec["file_name"],
                classes=kept_classes,
            )
        )
    if not examples:
        raise DatasetError(f"{root}/annotations/{split}.json: no images to train on")
    return examples, [names[k] for k in sorted(names)]


def class_masks_from_annotations(anns: Sequence[Mapping[str, Any]], names: Mapping[int, str],
                                 height: int, width: int, source: str) -> dict[str, np.ndarray]:
    """Per class name, the union of its items as an H×W bool mask (``source``: ``masks`` =
    segmentations where an annotation has one, rectangles otherwise; ``boxes`` = rectangles)."""
    from pycocotools import (
        mask as mask_utils,  # a dependency of evaluation; only loaded here when asked
    )

    out: dict[str, np.ndarray] = {}
    for a in anns:
        m = np.zeros((height, width), bool)
        seg = a.get("segmentation")
        if source == "masks" and seg:
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
            elif isinstance(seg.get("counts"), list):
                rle = mask_utils.frPyObjects(seg, height, width)
            else:
                rle = seg
            m = mask_utils.decode(rle).astype(bool)
        else:
            x, y, w, h = (float(v) for v in a["bbox"])
            m[max(0, int(y)):int(np.ceil(y + h)), max(0, int(x)):int(np.ceil(x + w))] = True
        name = names[a["category_id"]]
        out[name] = out[name] | m if name in out else m
    return out


def attach_class_masks(examples: list[Example], root: str | os.PathLike, split: str, resolution: int,
                       latent_size: int, source: str) -> None:
    """Give each example its class masks (the attention-alignment target) at ``latent_size``:
    ``source`` ``"masks"`` = item segmentations where the dataset has them, else box
    rectangles; ``"boxes"`` = rectangles. Read from the annotations only (no pixels)."""
    coco = load_split(root, split)
    names = category_names(coco)
    by_image = annotations_by_image(coco)
    by_file = {img["file_name"]: img for img in coco["images"]}
    for ex in examples:
        img = by_file.get(ex.file_name)
        if img is None:
            raise DatasetError(f"{root}/annotations/{split}.json: no image {ex.file_name!r} to take class masks from")
        full = class_masks_from_annotations(by_image[img["id"]], names, img["height"], img["width"], source)
        ex.class_masks = {c: latent_coverage(m, resolution, latent_size) for c, m in full.items()}


def batch_class_masks(masks: dict[str, np.ndarray], flipped: bool, offset: tuple[int, int] | None,
                      crop: int) -> dict[str, torch.Tensor]:
    """An example's latent-resolution class masks, flipped and cut like its pixels."""
    out = {}
    for name, m in masks.items():
        t = torch.from_numpy(m.astype(np.float32))
        if flipped:
            t = t.flip(-1)
        if offset is not None:
            t = t[offset[1]:offset[1] + crop, offset[0]:offset[0] + crop]
        out[name] = t
    return out


def inpaint_mask(boxes: torch.Tensor, valid: torch.Tensor, size: int) -> torch.Tensor:
    """Latent mask, 0 inside the boxes, 1 elsewhere (as ``StableDiffusionGLIGENPipeline``
    draws it: ``int(coord * size)`` bounds). boxes (n, 4), valid (n,) → (1, size, size)."""
    mask = torch.ones(size, size)
    for box, ok in zip(boxes.tolist(), valid.tolist(), strict=True):
        if ok:
            x0, y0, x1, y1 = (int(v * size) for v in box)
            mask[y0:y1, x0:x1] = 0
    return mask[None]


def item_window(
    boxes: torch.Tensor, anchor: int | None, size: int, window: int, generator: torch.Generator
) -> tuple[int, int]:
    """Top-left latent cell (x, y) of a ``window``-cell square inside a ``size``-cell latent
    that holds the ``anchor`` box whole (random among the positions that do; centred on the
    box when it is larger than the window); any position when there is no anchor."""
    offsets = []
    for axis in (0, 1):
        lo, hi = 0, size - window
        if anchor is not None:
            a0, a1 = float(boxes[anchor, axis]) * size, float(boxes[anchor, axis + 2]) * size
            lo, hi = max(0, math.ceil(a1) - window), min(int(a0), size - window)
            if lo > hi:
                lo = hi = min(max(round((a0 + a1 - window) / 2), 0), size - window)
        offsets.append(lo + int(torch.randint(hi - lo + 1, (1,), generator=generator)))
    return offsets[0], offsets[1]


def crop_boxes(boxes: torch.Tensor, offset: tuple[int, int], size: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (n, 4) in window coordinates, clipped, and which of them keep ≥ half their area
    (the others are cut items: context, neither grounded nor masked)."""
    shift = torch.tensor([offset[0], offset[1], offset[0], offset[1]], dtype=boxes.dtype)
    inside = ((boxes * size - shift) / window).clamp(0.0, 1.0)
    def area(b: torch.Tensor) -> torch.Tensor:
        return (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    full = area(boxes) * size**2
    kept = area(inside) * window**2 >= 0.5 * full.clamp_min(1e-9)
    return inside, kept & (full > 0)


@dataclass
class _Sample:
    """One example as a batch row (see :func:`make_batch` for the fields' meaning)."""

    pixels: torch.Tensor
    boxes: torch.Tensor            # (max_boxes, 4), zero-padded
    valid: torch.Tensor            # (max_boxes,) grounded boxes
    phrases: list[str]             # max_boxes phrases, "" where not grounded
    caption: str
    flipped: bool
    mask: torch.Tensor | None      # (1, h, w) inpainting mask
    offset: tuple[int, int] | None  # item window's latent (x, y)


def _crop_to_item(
    ex: Example, img: torch.Tensor, b: torch.Tensor, names: list[str], caption: str, chosen: torch.Tensor,
    latent_size: int, crop: int, generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, list[str], str, tuple[int, int]]:
    """Cut the square window around one random item: the item is masked, other whole items
    in the window may be; boxes, phrases, caption and ``chosen`` then describe the window."""
    n = len(b)
    anchor = int(torch.randint(n, (1,), generator=generator)) if n else None
    off = item_window(b, anchor, latent_size, crop, generator)
    factor = img.shape[-1] // latent_size
    img = img[:, off[1] * factor : (off[1] + crop) * factor, off[0] * factor : (off[0] + crop) * factor]
    b, kept = crop_boxes(b, off, latent_size, crop)
    if anchor is not None:
        kept[anchor] = True
    order = [int(i) for i in torch.nonzero(kept).flatten()]
    pick = torch.rand(n, generator=generator) < 0.5
    if anchor is not None:
        pick[anchor] = True
    b, names = b[order], [names[i] for i in order]
    chosen[:] = False
    chosen[: len(order)] = pick[order]
    if ex.classes is not None:
        caption = caption_for(ex.classes[i] for i in order)
    return img, b, names, caption, off


def _sample(
    ex: Example, generator: torch.Generator, max_boxes: int, caption_drop_prob: float,
    grounding_drop_prob: float, flip: bool, inpaint: bool, latent_size: int | None, crop: int,
) -> _Sample:
    """One example's row, every random choice drawn from ``generator`` in a fixed order."""
    r = torch.rand(4, generator=generator)
    img = torch.from_numpy(ex.pixels).permute(2, 0, 1).float() / 127.5 - 1.0
    b = torch.from_numpy(ex.boxes[:max_boxes]).clone()
    flipped = bool(flip and r[0] < 0.5)
    if flipped:
        img = img.flip(-1)
        b[:, [0, 2]] = 1.0 - b[:, [2, 0]]
    names, caption, offset = list(ex.phrases), ex.caption, None
    chosen = torch.zeros(max_boxes, dtype=torch.bool)
    chosen[: len(b)] = True
    if inpaint and crop:
        img, b, names, caption, offset = _crop_to_item(ex, img, b, names, caption, chosen, latent_size, crop,
                                                       generator)
    elif inpaint and len(b):
        pick = torch.rand(len(b), generator=generator) < 0.5
        pick[torch.randint(len(b), (1,), generator=generator)] = True
        chosen[: len(b)] = pick
    n = len(b)
    # grounding drop trains the null tokens the pipeline's unconditional branch uses
    valid = chosen & ~(r[1] < grounding_drop_prob)
    padded = torch.zeros(max_boxes, 4)
    padded[:n] = b
    phrases = [names[i] if i < n and valid[i] else "" for i in range(max_boxes)]
    mask = inpaint_mask(padded, chosen, crop or latent_size) if inpaint else None
    return _Sample(img, padded, valid, phrases, "" if r[2] < caption_drop_prob else caption, flipped, mask,
                   offset)


def make_batch(
    examples: list[Example],
    indices: list[int],
    generator: torch.Generator,
    max_boxes: int,
    caption_drop_prob: float,
    grounding_drop_prob: float = 0.0,
    flip: bool = True,
    inpaint: bool = False,
    latent_size: int | None = None,
    crop: int = 0,
) -> dict[str, Any]:
    """Collate examples into tensors, drawing every random choice from ``generator``.

    Keys: ``pixel_values`` (B, 3, H, W) in [-1, 1]; ``boxes`` (B, N, 4); ``box_mask`` (B, N);
    ``phrases`` (B×N strings, "" where padded); ``captions`` (B strings); ``indices`` and
    ``flipped`` (B,) to look up cached latents; with ``inpaint``
    also ``inpaint_mask`` (B, 1, h, w) from a random non-empty subset of the boxes, which are
    then the only grounded ones (the pipeline grounds exactly the boxes it masks).

    ``crop`` (latent cells, with ``inpaint``; 0 = off) cuts a square window around one
    random item per example: the item is masked, other whole items in the window may be,
    and boxes, phrases and caption describe the window. ``pixel_values`` is the window and
    ``crop_offsets`` (B, 2) its latent (x, y), so cached latents can be cut the same way.
    Why: the items are a few percent of a scan; windows put a tiny model's steps on them.
    """
    if inpaint and latent_size is None:
        raise ValueError("make_batch: inpaint needs latent_size")
    rows = [_sample(examples[i], generator, max_boxes, caption_drop_prob, grounding_drop_prob, flip, inpaint,
                    latent_size, crop) for i in indices]
    out = {
        "pixel_values": torch.stack([r.pixels for r in rows]),
        "boxes": torch.stack([r.boxes for r in rows]),
        "box_mask": torch.stack([r.valid for r in rows]).float(),
        "phrases": [p for r in rows for p in r.phrases],
        "captions": [r.caption for r in rows],
        "indices": list(indices),
        "flipped": torch.tensor([r.flipped for r in rows]),
    }
    if inpaint:
        out["inpaint_mask"] = torch.stack([r.mask for r in rows])
    offsets = [r.offset for r in rows if r.offset is not None]
    if offsets:
        out["crop_offsets"] = torch.tensor(offsets)
        out["crop"] = crop
    with_masks = [examples[i].class_masks is not None for i in indices]
    if any(with_masks):
        if not all(with_masks):
            raise ValueError("make_batch: some examples carry class masks and others do not")
        out["class_masks"] = [batch_class_masks(examples[i].class_masks, r.flipped, r.offset, crop)
                              for i, r in zip(indices, rows, strict=True)]
    return out


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The ``step``-th batch of an epoch-wise shuffled stream: a pure function of (step, seed)."""
    out = []
    start = step * batch_size
    for pos in range(start, start + batch_size):
        epoch, offset = divmod(pos, num_examples)
        perm = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perm[offset]))
    return out


def random_crop(pix: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``size`` × ``size`` crop per image (the VAE is convolutional: small crops
    teach it the same textures at a fraction of the cost)."""
    n, _, h, w = pix.shape
    if size <= 0 or size >= min(h, w):
        return pix
    ys = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    return torch.stack([p[:, y : y + size, x : x + size] for p, y, x in zip(pix, ys, xs, strict=True)])
