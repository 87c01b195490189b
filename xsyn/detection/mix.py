"""The training mix of one detector run: a real subset plus synthetic sets, in YOLO layout.

A run trains on ``data/<dataset>/annotations/train_pNN.json`` (share 100 = ``train.json``)
plus zero or more synthetic sets ``<synthetic_root>/<source>/annotations.json``, each
repeated ``repeat`` times (a fractional part draws a seeded random share of its images).
Validation is always the real ``val.json``: the test split never reaches training.

Classes follow the real set: category ids sorted → YOLO indices 0..K-1; synthetic
categories are matched to them by name. :func:`write_classes` stores that order beside
the weights, so predictions map back to the dataset's category ids.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xsyn.data.boxes import clip_xywh
from xsyn.data.contract import DatasetError, annotation_path, load_coco, load_split, train_split
from xsyn.data.yolo import default_class_index, write_data_yaml, write_yolo_split, yolo_names
from xsyn.io import read_json, write_json


def load_real_train(dataset: str | os.PathLike, share: float) -> dict[str, Any]:
    split = train_split(share)
    path = annotation_path(dataset, split)
    if not path.is_file():
        raise DatasetError(f"{path}: no training subset for share {share:g}% (run `xsyn prepare` with this share)")
    return load_split(dataset, split)


def clip_annotations(coco: dict[str, Any]) -> dict[str, Any]:
    """Clip boxes to their image and drop empty ones (the contract tolerates 1 px overhang)."""
    coco = copy.copy(coco)
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    anns = []
    for ann in coco["annotations"]:
        box = clip_xywh(ann["bbox"], *sizes[ann["image_id"]])
        if box[2] > 0 and box[3] > 0:
            anns.append({**ann, "bbox": box})
    coco["annotations"] = anns
    return coco


def align_categories(syn: dict[str, Any], real: dict[str, Any], source: str) -> dict[str, Any]:
    """Renumber a synthetic set's category ids to the real set's, matching by class name."""
    real_ids = {c["name"]: c["id"] for c in real["categories"]}
    remap = {}
    for c in syn["categories"]:
        if c["name"] not in real_ids:
            raise DatasetError(
                f"{source}: category {c['name']!r} is not a class of the real dataset "
                f"({sorted(real_ids)})"
            )
        remap[c["id"]] = real_ids[c["name"]]
    syn = copy.copy(syn)
    syn["annotations"] = [{**a, "category_id": remap[a["category_id"]]} for a in syn["annotations"]]
    syn["categories"] = copy.deepcopy(real["categories"])
    return syn


def repeat_images(coco: dict[str, Any], repeat: float, seed: int) -> list[dict[str, Any]]:
    """Copies of ``coco`` making ``repeat`` passes: ⌊repeat⌋ whole ones + a seeded random share."""
    if repeat <= 0:
        raise ValueError(f"synthetic_repeat must be > 0, got {repeat}")
    copies = [coco] * int(math.floor(repeat))
    frac = repeat - math.floor(repeat)
    n = round(frac * len(coco["images"]))
    if n > 0:
        keep = {img["id"] for img in random.Random(seed).sample(coco["images"], n)}
        copies.append({
            **coco,
            "images": [img for img in coco["images"] if img["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        })
    return copies


@dataclass
class Mix:
    """What :func:`build_mix` wrote: YOLO folders, ``data.yaml`` files and counts."""

    names: list[str]
    classes: list[dict[str, Any]]
    real_dirs: list[Path] = field(default_factory=list)
    synthetic_dirs: list[Path] = field(default_factory=list)
    val_dirs: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def data_yaml(self, path: Path, train: Sequence[Path]) -> Path:
        return write_data_yaml(path, list(train), self.val_dirs, self.names)


def build_mix(
    dataset: str | os.PathLike,
    share: float,
    sources: Sequence[str],
    synthetic_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    repeat: float = 1.0,
    seed: int = 0,
) -> Mix:
    """Export the real subset, every synthetic source (× ``repeat``) and ``val`` to ``out_dir``."""
    dataset, synthetic_root, out_dir = Path(dataset), Path(synthetic_root), Path(out_dir)
    real = load_real_train(dataset, share)
    val = load_split(dataset, "val")
    class_index = default_class_index(real)
    names = yolo_names(real, class_index)
    classes = [{"index": class_index[c["id"]], "id": c["id"], "name": c["name"]}
               for c in sorted(real["categories"], key=lambda c: class_index[c["id"]])]
    if [c["name"] for c in val["categories"]] != [c["name"] for c in real["categories"]]:
        raise DatasetError(f"{annotation_path(dataset, 'val')}: categories differ from the training split")
    mix = Mix(names=names, classes=classes)
    images = dataset / "images"

    real_dir = out_dir / "real"
    write_yolo_split(clip_annotations(real), images, real_dir, class_index)
    mix.real_dirs.append(real_dir)
    mix.counts["real"] = len(real["images"])
    val_dir = out_dir / "val"
    write_yolo_split(clip_annotations(val), images, val_dir, class_index)
    mix.val_dirs.append(val_dir)
    mix.counts["val"] = len(val["images"])

    for source in sources:
        root = synthetic_root / source
        path = root / "annotations.json"
        if not path.is_file():
            raise DatasetError(f"{path}: synthetic set {source!r} not found")
        syn = clip_annotations(align_categories(load_coco(path), real, str(path)))
        n = 0
        for k, part in enumerate(repeat_images(syn, repeat, seed)):
            d = out_dir / f"syn-{source}-r{k}"
            write_yolo_split(part, root / "images", d, class_index, prefix=f"r{k}_")
            mix.synthetic_dirs.append(d)
            n += len(part["images"])
        mix.counts[source] = n
    return mix


def write_classes(path: str | os.PathLike, classes: list[dict[str, Any]]) -> None:
    write_json(path, {"classes": classes})


def read_classes(path: str | os.PathLike) -> dict[int, int]:
    """``classes.json`` → YOLO class index → dataset category id."""
    data = read_json(path)
    try:
        return {int(c["index"]): int(c["id"]) for c in data["classes"]}
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{path}: expected {{'classes': [{{index, id, name}}, ...]}}") from None
