"""OPIXray and HiXray: one ``.txt`` per image, a line ``<image> <class> <x1> <y1> <x2> <y2>`` per box.

Layout: ``{train,test}/{train,test}_image/`` and ``{train,test}/{train,test}_annotation/``.
The image a line names may be stored as ``.jpg``, ``.tiff`` or ``.TIFF`` whatever the
line says (see :class:`~xsyn.data.importers.ImageFinder`). Corner boxes become COCO
``[x1, y1, x2 - x1, y2 - y1]``. The class sets are fixed, so an unknown class name is a
typo or a foreign file, and an error. An image without an annotation file is skipped
and reported (it may be unlabelled, not empty).
"""

from __future__ import annotations

import math
from pathlib import Path

from xsyn.data.contract import DatasetError, check_relative_name
from xsyn.data.importers import (
    IMAGE_SUFFIXES,
    ORIGIN,
    ImageFinder,
    RawDataset,
    image_size,
    name_categories,
)

OPIXRAY_CLASSES = ["Folding_Knife", "Straight_Knife", "Scissor", "Utility_Knife", "Multi-tool_Knife"]
HIXRAY_CLASSES = [
    "Portable_Charger_1", "Portable_Charger_2", "Mobile_Phone", "Laptop",
    "Tablet", "Cosmetic", "Water", "Nonmetallic_Lighter",
]
SPLITS = ("train", "test")


def parse_txt_line(line: str, where: str) -> tuple[str, str, list[float]]:
    """``"a.jpg Gun 1 2 30 40"`` → ("a.jpg", "Gun", [1, 2, 30, 40]) (image names may hold spaces)."""
    parts = line.split()
    if len(parts) < 6:
        raise DatasetError(f"{where}: expected '<image> <class> <x1> <y1> <x2> <y2>', got {line.strip()!r}")
    try:
        corners = [float(v) for v in parts[-4:]]
    except ValueError:
        raise DatasetError(f"{where}: non-numeric coordinate in {line.strip()!r}") from None
    if not all(math.isfinite(v) for v in corners):
        raise DatasetError(f"{where}: non-finite coordinate in {line.strip()!r}")
    return " ".join(parts[:-5]), parts[-5], corners


def parse_txt_file(path: Path) -> list[tuple[str, str, list[float], int]]:
    """All boxes of one annotation file as (image, class, corners, line number)."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file") from None
    return [
        (*parse_txt_line(line, f"{path}: line {n}"), n)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]


def import_txt_boxes(source: Path, classes: list[str]) -> RawDataset:
    raw = RawDataset(categories=name_categories(classes))
    find_image = ImageFinder()
    for split in SPLITS:
        img_dir = source / split / f"{split}_image"
        ann_dir = source / split / f"{split}_annotation"
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise DatasetError(f"{d}: folder not found ({source.name} layout needs {split}/{d.name}/)")
        used: set[Path] = set()
        for txt in sorted(ann_dir.glob("*.txt")):
            by_image: dict[str, list] = {}
            for name, cls, corners, n in parse_txt_file(txt):
                check_relative_name(name, str(txt), f"line {n}")
                by_image.setdefault(name, []).append((cls, corners, f"{txt}: line {n}"))
            if not by_image:  # an empty file: the image is named by the file itself
                by_image[txt.stem + ".jpg"] = []
            for name, boxes in by_image.items():
                src = find_image(img_dir, name, f"{txt}")
                if src in used:
                    raise DatasetError(f"{txt}: image {src.name} is already annotated by another file")
                used.add(src)
                w, h = image_size(src, str(txt))
                image_id = len(raw.images) + 1
                raw.images.append({
                    "id": image_id, "file_name": f"{split}/{src.name}", "width": w, "height": h,
                    ORIGIN: f"{txt}",
                })
                raw.sources[image_id] = src
                raw.splits[image_id] = split
                for cls, (x1, y1, x2, y2), where in boxes:
                    raw.annotations.append({
                        "id": len(raw.annotations) + 1, "image_id": image_id,
                        "category_id": raw.category_id(cls, where),
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0, ORIGIN: where,
                    })
        for p in sorted(img_dir.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and p not in used:
                raw.skipped.append(f"{p}: no annotation file in {ann_dir}")
    return raw


def import_opixray(source: Path) -> RawDataset:
    return import_txt_boxes(source, OPIXRAY_CLASSES)


def import_hixray(source: Path) -> RawDataset:
    return import_txt_boxes(source, HIXRAY_CLASSES)
