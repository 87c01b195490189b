"""TIP, threat image projection: the two-stage baseline every Xsyn claim is compared with.

Stage one (:mod:`xsyn.baselines.foreground`) cuts prohibited items out of real training
scans; stage two (:mod:`xsyn.baselines.compositing`) pastes them into other real scans
by X-ray physics, ``T_bag · T_item``, at a random place on the bag with a random
rotation, flip and scale. The pasted item's label is its visible mask's box, so no
refinement is needed (``requested_bbox`` = ``bbox``).

Output is one shard of a synthetic set through :class:`~xsyn.synthesis.shards.ShardWriter`,
exactly like the diffusion sources, so ``gather``, the detectors and the tables treat TIP
as one more source. Every random draw of a source image comes from a generator seeded by
``(seed, source_image_id)``: a scan comes out the same whatever the sharding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from xsyn.baselines.compositing import (
    ScanCodec,
    attenuation,
    from_attenuation,
    paste,
    select_codec,
)
from xsyn.baselines.foreground import (
    ExtractionError,
    Foreground,
    decode_segmentation,
    extract_item,
)
from xsyn.data.boxes import iou_xywh
from xsyn.data.contract import category_names, load_split, phrase_for
from xsyn.data.shards import ShardWriter, shard_slice
from xsyn.io import write_json

METHOD = "tip"
SUMMARY_FILE = "tip_summary.json"
DONOR_TRIES = 20  # donors tried per item slot before giving the slot up
PLACEMENT_TRIES = 30  # random places tried per donor
BAG_ATTENUATION = 0.15  # summed -log T above which a pixel belongs to the bag, not the air
MIN_LABEL_PX = 2  # a pasted box thinner than this is no label
MASK_EPS = 1e-3  # interpolated mask weight above which a warped pixel belongs to the item


@dataclass(frozen=True)
class TipParams:
    """The ``tip:`` config section, typed (every field from the config: no defaults here)."""

    scale: tuple[float, float]
    rotation: float
    flip: bool
    min_visibility: float
    items_per_image: int
    max_iou: float
    white_level: float | None
    transmission: str

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TipParams:
        tip = dict(cfg["tip"])
        tip.pop("seed", None)
        if "scale" in tip:
            lo, hi = (float(v) for v in tip["scale"])
            if not 0 < lo <= hi:
                raise ValueError(f"tip.scale must be 0 < min <= max, got {tip['scale']}")
            tip["scale"] = (lo, hi)
        unknown = set(tip) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"tip: unknown keys {sorted(unknown)}")
        return cls(**{name: tip[name] for name in cls.__dataclass_fields__})


@dataclass
class Placed:
    """One pasted item: what was pasted where, for labels and provenance."""

    foreground: Foreground
    bbox: list[float]
    scale: float
    rotation: float
    flip: bool
    visibility: float
    mask: np.ndarray  # (H, W) bool, visible pixels in the output scan


def transform_item(
    fg: Foreground, scale: float, angle: float, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Flip, rotate (degrees, counter-clockwise) and scale an item onto a fitting canvas.

    Warped as attenuation (thickness), which interpolates linearly, with air (0) outside.
    Returns the item's transmission ``(h, w, C)`` and its mask ``(h, w)``.
    """
    att = attenuation(fg.transmission)
    mask = fg.mask.astype(np.float32)
    if flip:
        att, mask = att[:, ::-1], mask[:, ::-1]
    h, w = mask.shape
    # Pixel centres sit on integers, so the item spans [-0.5, w - 0.5] × [-0.5, h - 0.5].
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), float(scale))
    corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [-0.5, h - 0.5, 1],
                        [w - 0.5, h - 0.5, 1]], dtype=np.float64) @ m.T
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    m[:, 2] -= lo + 0.5
    size = (max(math.ceil(hi[0] - lo[0] - 1e-6), 1), max(math.ceil(hi[1] - lo[1] - 1e-6), 1))
    warp = {"flags": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    channels = [cv2.warpAffine(np.ascontiguousarray(att[..., c]), m, size, **warp)
                for c in range(att.shape[-1])]
    # Every pixel the item touches after interpolation is the item's: the label then
    # covers all it darkens, and the air around it stays exactly air.
    warped_mask = cv2.warpAffine(np.ascontiguousarray(mask), m, size, **warp) > MASK_EPS
    att = np.where(warped_mask[..., None], np.stack(channels, axis=-1), 0.0)
    return from_attenuation(att), warped_mask


def bag_mask(transmission: np.ndarray, regions: list[dict[str, Any]]) -> np.ndarray:
    """Where pasted items may go: the inside of the bag, ``(H, W)`` bool.

    The bag is the ``regions`` records whose kind names a bag when the dataset has them
    (their footprint may be just the frame), else the largest attenuating blob; either
    way filled to its convex hull. A scan with no bag found gives the whole image.
    """
    H, W = transmission.shape[:2]
    outline = np.zeros((H, W), dtype=bool)
    for reg in regions:
        if "bag" not in str(reg.get("kind", "")).lower():
            continue
        seg = decode_segmentation(reg.get("segmentation"), H, W)
        if seg is None:
            x, y, w, h = (int(round(v)) for v in reg["bbox"])
            seg = np.zeros((H, W), dtype=bool)
            seg[max(y, 0) : y + h, max(x, 0) : x + w] = True
        outline |= seg
    if not outline.any():
        dense = (attenuation(transmission).sum(axis=-1) > BAG_ATTENUATION).astype(np.uint8)
        dense = cv2.morphologyEx(dense, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(dense, connectivity=8)
        if n > 1:
            outline = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    bag = np.zeros((H, W), dtype=np.uint8)
    if outline.any():
        cv2.fillConvexPoly(bag, cv2.convexHull(np.argwhere(outline)[:, ::-1].astype(np.int32)), 1)
    if bag.sum() < 0.01 * H * W:
        return np.ones((H, W), dtype=bool)
    return bag.astype(bool)


def item_centres(bag: np.ndarray, item_mask: np.ndarray) -> np.ndarray:
    """Centres ``(x, y)`` that keep the item's whole box inside the bag (else on the bag)."""
    h, w = item_mask.shape
    inside = cv2.erode(bag.astype(np.uint8), np.ones((h, w), np.uint8),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0)
    centres = np.argwhere(inside)
    return (centres if len(centres) else np.argwhere(bag))[:, ::-1]


def place_item(
    canvas: np.ndarray,
    item: np.ndarray,
    item_mask: np.ndarray,
    bag: np.ndarray,
    taken: list[list[float]],
    params: TipParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[float], float, np.ndarray] | None:
    """Try random places in ``bag``; the first that passes the rules is pasted.

    Places keep the item's box inside the bag where the bag is large enough. Rules: the share of the item's mask inside the image is at least ``min_visibility``;
    its visible box overlaps no box in ``taken`` by more than ``max_iou``.
    Returns ``(new canvas, box xywh, visibility, visible mask)`` or None.
    """
    H, W = canvas.shape[:2]
    h, w = item_mask.shape
    total = int(item_mask.sum())
    if total == 0:
        return None
    centres = item_centres(bag, item_mask)
    for _ in range(PLACEMENT_TRIES):
        cx, cy = centres[rng.integers(len(centres))]
        x, y = int(cx) - w // 2, int(cy) - h // 2
        full = np.zeros((H, W), dtype=bool)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x0 >= x1 or y0 >= y1:
            continue
        full[y0:y1, x0:x1] = item_mask[y0 - y : y1 - y, x0 - x : x1 - x]
        visible = int(full.sum())
        if visible == 0 or visible / total < params.min_visibility:
            continue
        ys, xs = np.nonzero(full)
        box = [float(xs.min()), float(ys.min()),
               float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        if box[2] < MIN_LABEL_PX or box[3] < MIN_LABEL_PX:
            continue
        if any(iou_xywh(box, other) > params.max_iou for other in taken):
            continue
        return paste(canvas, item, x, y), box, visible / total, full
    return None


class DonorBank:
    """Every item of the split, extracted lazily (only those drawn) and remembered.

    Extraction failures are remembered too, so each annotation is tried once and the
    counts in :meth:`stats` are per annotation.
    """

    def __init__(self, coco: dict[str, Any], codec: ScanCodec):
        self.codec = codec
        self.images = {img["id"]: img for img in coco["images"]}
        self.annotations = sorted(coco["annotations"], key=lambda a: a["id"])
        self._items: dict[int, Foreground | ExtractionError] = {}

    def __len__(self) -> int:
        return len(self.annotations)

    def get(self, index: int) -> Foreground | ExtractionError:
        ann = self.annotations[index]
        if ann["id"] not in self._items:
            image = self.images[ann["image_id"]]
            try:
                self._items[ann["id"]] = extract_item(self.codec.load(image)[0], ann, image)
            except ExtractionError as e:
                self._items[ann["id"]] = e
        return self._items[ann["id"]]

    def stats(self) -> dict[str, Any]:
        failures: dict[str, int] = {}
        sources: dict[str, int] = {}
        for item in self._items.values():
            if isinstance(item, ExtractionError):
                failures[item.reason] = failures.get(item.reason, 0) + 1
            else:
                sources[item.mask_source] = sources.get(item.mask_source, 0) + 1
        return {"attempted": len(self._items), "failed": sum(failures.values()),
                "failures": dict(sorted(failures.items())), "mask_sources": dict(sorted(sources.items()))}

    def extract_all(self) -> dict[str, Any]:
        """Extract every item (for a report of what fails on a whole split)."""
        for i in tqdm(range(len(self)), desc="tip: extract", unit="item", leave=False):
            self.get(i)
        return self.stats()


def synthesize_one(
    image: dict[str, Any],
    annotations: list[dict[str, Any]],
    regions: list[dict[str, Any]],
    bank: DonorBank,
    params: TipParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, Any, list[Placed], int]:
    """Paste ``items_per_image`` donor items into one real scan.

    Returns ``(transmission, codec context, placed items, slots that found no place)``.
    """
    canvas, context = bank.codec.load(image)
    bag = bag_mask(canvas, regions)
    taken = [list(map(float, a["bbox"])) for a in annotations]
    placed: list[Placed] = []
    unplaced = 0
    other_images = any(a["image_id"] != image["id"] for a in bank.annotations)
    for _ in range(params.items_per_image):
        for _ in range(DONOR_TRIES):
            index = int(rng.integers(len(bank)))
            if other_images and bank.annotations[index]["image_id"] == image["id"]:
                continue
            fg = bank.get(index)
            if isinstance(fg, ExtractionError):
                continue
            scale = float(rng.uniform(*params.scale))
            angle = float(rng.uniform(-params.rotation, params.rotation))
            flip = bool(params.flip and rng.random() < 0.5)
            item, item_mask = transform_item(fg, scale, angle, flip)
            if item.shape[-1] != canvas.shape[-1]:
                raise ValueError(
                    f"image {fg.donor_image_id} has {item.shape[-1]} channels, "
                    f"image {image['id']} has {canvas.shape[-1]}"
                )
            result = place_item(canvas, item, item_mask, bag, taken, params, rng)
            if result is None:
                continue
            canvas, box, visibility, full_mask = result
            taken.append(box)
            placed.append(Placed(fg, box, scale, angle, flip, visibility, full_mask))
            break
        else:
            unplaced += 1
    return canvas, context, placed, unplaced


def _encode_mask(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _labels(
    annotations: list[dict[str, Any]], placed: list[Placed], names: dict[int, str]
) -> list[dict[str, Any]]:
    """Real items keep their labels; pasted ones get their visible box and mask."""
    labels = []
    for ann in annotations:
        keep = {k: ann[k] for k in ("bbox", "category_id", "area", "segmentation", "phrase") if k in ann}
        labels.append({**keep, "source_annotation_id": ann["id"]})
    for p in placed:
        labels.append({
            "bbox": p.bbox,
            "requested_bbox": list(p.bbox),
            "category_id": p.foreground.category_id,
            "area": float(p.mask.sum()),
            "segmentation": _encode_mask(p.mask),
            "phrase": phrase_for(names[p.foreground.category_id]),
            "donor_image_id": p.foreground.donor_image_id,
            "donor_annotation_id": p.foreground.donor_annotation_id,
        })
    return labels


def _provenance(image: dict[str, Any], seed: int, tip_seed: int, codec: ScanCodec,
                placed: list[Placed]) -> dict[str, Any]:
    first = placed[0]
    return {
        "source_image_id": image["id"],
        "seed": seed,
        "tip_seed": tip_seed,
        "transmission": codec.name,
        "donor_image_id": first.foreground.donor_image_id,
        "donor_annotation_id": first.foreground.donor_annotation_id,
        "pasted_box": first.bbox,
        "pasted": [
            {"donor_image_id": p.foreground.donor_image_id,
             "donor_annotation_id": p.foreground.donor_annotation_id,
             "category_id": p.foreground.category_id, "bbox": p.bbox,
             "scale": round(p.scale, 4), "rotation": round(p.rotation, 2), "flip": p.flip,
             "visibility": round(p.visibility, 4), "mask_source": p.foreground.mask_source}
            for p in placed
        ],
    }


def run_tip_shard(
    cfg: dict[str, Any],
    dataset_root: Path,
    split: str,
    shard_index: int,
    shard_count: int,
    out_dir: Path,
    seed: int,
) -> dict[str, Any]:
    """Write one TIP shard to ``out_dir`` (atomic) and return its summary.

    Source images are part ``shard_index`` of ``shard_count`` of the split's images sorted
    by id; donors come from the whole split. The draws of source image ``i`` are seeded
    by ``(seed, tip.seed, i)``: the caller's seed (``synthesis.seed``) and TIP's own. A source image where no item found a place
    is skipped (it would only duplicate the real scan) and counted.
    """
    start = time.perf_counter()
    params = TipParams.from_config(cfg)
    tip_seed = int(cfg["tip"]["seed"])
    dataset_root = Path(dataset_root)
    coco = load_split(dataset_root, split)
    codec = select_codec(dataset_root, coco, params.transmission, params.white_level)
    names = category_names(coco)
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    regions: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in coco["images"]}
    for reg in coco.get("regions", []):
        regions[reg["image_id"]].append(reg)
    sources = shard_slice(sorted(coco["images"], key=lambda im: im["id"]), shard_index, shard_count)
    bank = DonorBank(coco, codec)
    if len(bank) == 0:
        raise ValueError(f"{dataset_root}/annotations/{split}.json: no annotated item to paste")

    written = skipped = pasted = unplaced = 0
    with ShardWriter(out_dir, coco["categories"], method=METHOD) as shard:
        for image in tqdm(sources, desc=f"tip shard {shard_index + 1}/{shard_count}", unit="img"):
            rng = np.random.default_rng([seed, tip_seed, image["id"]])
            began = time.perf_counter()
            canvas, context, placed, missed = synthesize_one(
                image, by_image[image["id"]], regions[image["id"]], bank, params, rng
            )
            unplaced += missed
            if not placed:
                skipped += 1
                continue
            shard.add_image(
                codec.render(canvas, context),
                f"{image['id']:06d}_tip.png",
                annotations=_labels(by_image[image["id"]], placed, names),
                provenance=_provenance(image, seed, tip_seed, codec, placed),
                seconds=time.perf_counter() - began,
            )
            written += 1
            pasted += len(placed)
        summary = {
            "method": METHOD, "split": split, "shard_index": shard_index,
            "shard_count": shard_count, "seed": seed, "tip_seed": tip_seed,
            "transmission": codec.name,
            "source_images": len(sources), "written_images": written,
            "skipped_images": skipped, "pasted_items": pasted, "unplaced_items": unplaced,
            "extraction": bank.stats(),
        }
        assert shard.tmp is not None
        write_json(shard.tmp / SUMMARY_FILE, summary)
        shard.info = {"method": METHOD, "shard": [shard_index, shard_count], "source_images": len(sources),
                      "images": written, "seconds": round(time.perf_counter() - start, 3)}
    return summary


def extraction_report(cfg: dict[str, Any], dataset_root: Path, split: str) -> dict[str, Any]:
    """Try to extract every item of a split; counts of successes and failure reasons."""
    params = TipParams.from_config(cfg)
    coco = load_split(Path(dataset_root), split)
    codec = select_codec(Path(dataset_root), coco, params.transmission, params.white_level)
    return {"split": split, "items": len(coco["annotations"]), "transmission": codec.name,
            **DonorBank(coco, codec).extract_all()}

