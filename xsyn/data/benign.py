"""Benign objects as a detection dataset: the phantom's stand-in for COCO pre-training.

The detectors of the study start from one shared initialisation, trained to find the
benign objects of a phantom set of its own (clothes, bottles, laptops, ...), never a
prohibited item. Their labels are the ``regions`` the simulator records (each benign
object's footprint box and ``kind``; DESIGN §4), turned here into an ordinary dataset
of the contract with one category per kind. The bag is left out: it fills most of the
scan and would teach the detector nothing about objects.

Category ids follow the sorted kind names, so the same data always gives the same ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from xsyn.data.contract import SPLITS, DatasetError, annotation_path, load_split, save_coco
from xsyn.io import atomic_dir, link_or_copy

EXCLUDED_KINDS = ("bag",)


def benign_kinds(cocos: Iterable[Mapping[str, Any]], exclude: Iterable[str] = EXCLUDED_KINDS) -> list[str]:
    """The sorted benign kinds recorded in ``regions`` of all ``cocos``, minus ``exclude``."""
    skip = set(exclude)
    return sorted({r["kind"] for coco in cocos for r in coco.get("regions", []) if r["kind"] not in skip})


def benign_coco(coco: Mapping[str, Any], kinds: list[str], source: str = "dataset") -> dict[str, Any]:
    """One split with its benign regions as the annotations (prohibited items dropped).

    ``kinds`` fixes the categories (id = position + 1), so every split shares them;
    regions of another kind (the bag) are dropped.
    """
    cat_id = {kind: i + 1 for i, kind in enumerate(kinds)}
    anns = []
    for reg in coco.get("regions", []):
        if "kind" not in reg:
            raise DatasetError(f"{source}: regions id {reg.get('id')}: no 'kind' (benign labels need it)")
        if reg["kind"] not in cat_id:
            continue
        x, y, w, h = (float(v) for v in reg["bbox"])
        anns.append({"id": len(anns) + 1, "image_id": reg["image_id"], "category_id": cat_id[reg["kind"]],
                     "bbox": [x, y, w, h], "area": float(reg.get("area") or w * h), "iscrowd": 0})
    images = [{k: img[k] for k in ("id", "file_name", "width", "height")} for img in coco["images"]]
    return {
        "info": {**dict(coco.get("info") or {}), "labels": "benign regions (no prohibited item)"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": kind, "supercategory": "benign"} for kind, i in cat_id.items()],
    }


def write_benign_dataset(
    source: str | os.PathLike, out: str | os.PathLike, splits: Iterable[str] = SPLITS,
    exclude: Iterable[str] = EXCLUDED_KINDS,
) -> dict[str, dict[str, int]]:
    """A prepared dataset ``source`` → ``out`` with benign labels only (atomic).

    Images are hard-linked where possible. Returns images and boxes per split.
    """
    source, out = Path(source), Path(out)
    splits = list(splits)
    cocos = {split: load_split(source, split) for split in splits}
    kinds = benign_kinds(cocos.values(), exclude)
    if not kinds:
        raise DatasetError(f"{source}: no benign regions to label (was it prepared from phantom scans?)")
    counts = {}
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        linked: set[str] = set()
        for split, coco in cocos.items():
            benign = benign_coco(coco, kinds, str(annotation_path(source, split)))
            for img in benign["images"]:
                if img["file_name"] not in linked:
                    dst = tmp / "images" / img["file_name"]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    link_or_copy(source / "images" / img["file_name"], dst)
                    linked.add(img["file_name"])
            save_coco(annotation_path(tmp, split), benign)
            counts[split] = {"images": len(benign["images"]), "boxes": len(benign["annotations"])}
    return counts
