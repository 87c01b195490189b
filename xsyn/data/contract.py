"""The dataset contract of DESIGN §4, and its validation.

A dataset is a folder ``data/<name>/`` with ``images/…`` and COCO JSON files
``annotations/{train,val,test}.json`` (plus low-data subsets ``train_pNN.json``).
Extra keys that xsyn adds and pycocotools ignores:

- ``images[i]["caption"]``: class names joined by ", " (the generator's global caption);
- ``annotations[j]["phrase"]``: the grounding phrase ``"one {class}"``;
- ``regions``: a top-level list of benign-object records (``id, image_id, bbox, area,
  kind``, optional ``segmentation``) used as candidate places by Xsyn-A and BOM;
- ``images[i]["xsyn"]``: provenance of a synthetic image.

Every check raises :class:`DatasetError` naming the file and the entry, so a user with a
dirty dataset knows exactly what to fix.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from xsyn.io import read_json, write_json

SPLITS = ("train", "val", "test")
SUBSET_SHARES = (1, 5, 10, 25, 50)
BOX_TOLERANCE_PX = 1.0


class DatasetError(ValueError):
    """Bad input: the message names the file and the entry at fault."""


def share_tag(share: float) -> str:
    """A share of the real training data (percent) as paths and tables write it:
    ``10`` → ``"10"``, ``2.5`` → ``"2.5"`` (results/…/p10/, the ``real data (%)`` column)."""
    share = float(share)
    return f"{int(share):d}" if share.is_integer() else f"{share:g}"


def subset_name(share: float) -> str:
    """``5`` → ``train_p05``, ``2.5`` → ``train_p2.5``: the file stem of a nested low-data subset."""
    share = float(share)
    return f"train_p{int(share):02d}" if share.is_integer() else f"train_p{share:g}"


def train_split(share: float) -> str:
    """The training split holding ``share`` % of the real training data (100 → ``train``)."""
    return "train" if float(share) == 100 else subset_name(share)


def is_subset_name(stem: str) -> bool:
    """Whether a file stem names a low-data subset (``…train_p05``, ``…train_p2.5``)."""
    return re.search(r"train_p\d+(\.\d+)?$", stem) is not None


def annotation_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / "annotations" / f"{split}.json"


def phrase_for(class_name: str) -> str:
    """Grounding phrase of one box, as the authors trained it."""
    return f"one {class_name}"


def caption_for(class_names: Iterable[str]) -> str:
    """Global caption: the distinct class names in order of first appearance."""
    return ", ".join(dict.fromkeys(class_names))


def check_relative_name(name: Any, source: str, entry: str) -> str:
    """An image file name must be a relative path that stays inside the dataset root."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{source}: {entry}: file_name must be a non-empty string, got {name!r}")
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise DatasetError(f"{source}: {entry}: file_name {name!r} escapes the dataset root")
    return str(p)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_box(
    bbox: Any, width: float, height: float, source: str, entry: str, tol: float = BOX_TOLERANCE_PX
) -> None:
    """A COCO box: four finite numbers, positive size, inside the image (± ``tol`` px)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise DatasetError(f"{source}: {entry}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        raise DatasetError(f"{source}: {entry}: bbox {list(bbox)} has zero or negative area")
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise DatasetError(
            f"{source}: {entry}: bbox {list(bbox)} lies outside the {width}x{height} image"
        )


def _unique_int_ids(items: list, source: str, kind: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DatasetError(f"{source}: {kind}[{i}] is not an object")
        item_id = item.get("id")
        if not isinstance(item_id, int) or isinstance(item_id, bool):
            raise DatasetError(f"{source}: {kind}[{i}]: id must be an integer, got {item_id!r}")
        if item_id in out:
            raise DatasetError(f"{source}: {kind}[{i}]: duplicate id {item_id}")
        out[item_id] = item
    return out


def validate_coco(
    coco: Any, source: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> None:
    """Check a COCO dict against the contract; with ``image_root``, also that images exist."""
    source = str(source)
    if not isinstance(coco, dict):
        raise DatasetError(f"{source}: top level must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DatasetError(f"{source}: missing or non-list key {key!r}")
    images = _unique_int_ids(coco["images"], source, "images")
    cats = _unique_int_ids(coco["categories"], source, "categories")
    names = [c.get("name") for c in coco["categories"]]
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n:
            raise DatasetError(f"{source}: categories[{i}]: name must be a non-empty string")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"{source}: categories: duplicate class name {dup!r}")
    seen_files: set[str] = set()
    for i, img in enumerate(coco["images"]):
        entry = f"images[{i}] (id {img['id']})"
        name = check_relative_name(img.get("file_name"), source, entry)
        if name in seen_files:
            raise DatasetError(f"{source}: {entry}: duplicate file_name {name!r}")
        seen_files.add(name)
        for dim in ("width", "height"):
            v = img.get(dim)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise DatasetError(f"{source}: {entry}: {dim} must be a positive integer, got {v!r}")
        if image_root is not None and not (Path(image_root) / name).is_file():
            raise DatasetError(f"{source}: {entry}: image file {Path(image_root) / name} not found")
    _unique_int_ids(coco["annotations"], source, "annotations")
    for i, ann in enumerate(coco["annotations"]):
        entry = f"annotations[{i}] (id {ann['id']})"
        img = images.get(ann.get("image_id"))
        if img is None:
            raise DatasetError(f"{source}: {entry}: unknown image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in cats:
            raise DatasetError(f"{source}: {entry}: unknown category_id {ann.get('category_id')!r}")
        check_box(ann.get("bbox"), img["width"], img["height"], source, entry)
    regions = coco.get("regions", [])
    if not isinstance(regions, list):
        raise DatasetError(f"{source}: 'regions' must be a list")
    _unique_int_ids(regions, source, "regions")
    for i, reg in enumerate(regions):
        entry = f"regions[{i}] (id {reg['id']})"
        img = images.get(reg.get("image_id"))
        if img is None:
            raise DatasetError(f"{source}: {entry}: unknown image_id {reg.get('image_id')!r}")
        check_box(reg.get("bbox"), img["width"], img["height"], source, entry)


def load_coco(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Read and validate one annotation file of the contract."""
    try:
        coco = read_json(path)
    except (FileNotFoundError, ValueError) as e:
        raise DatasetError(str(e)) from None
    validate_coco(coco, path, image_root)
    return coco


def save_coco(path: str | os.PathLike, coco: dict[str, Any]) -> None:
    """Validate, then write atomically (an invalid dataset never reaches the disk)."""
    validate_coco(coco, path)
    write_json(path, coco, indent=None)


def load_split(root: str | os.PathLike, split: str, check_images: bool = False) -> dict[str, Any]:
    """``load_split("data/phantom", "train_p05")`` → the validated COCO dict."""
    root = Path(root)
    return load_coco(annotation_path(root, split), root / "images" if check_images else None)


def category_names(coco: dict[str, Any]) -> dict[int, str]:
    return {c["id"]: c["name"] for c in coco["categories"]}


def annotations_by_image(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    return by_image


def regions_by_image(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in coco["images"]}
    for reg in coco.get("regions", []):
        by_image[reg["image_id"]].append(reg)
    return by_image
