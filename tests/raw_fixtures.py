"""Tiny raw dataset trees in the real layouts of each public X-ray format (no real data here).

Each ``write_<format>(root)`` builds a source tree under ``root`` with generated images
(PNG, JPG, TIFF) and returns a :class:`Fixture` saying what an importer should find, so
tests can check counts and exact boxes. Boxes are integer corners well inside the image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PIDRAY_CLASSES = ["Baton", "Pliers", "Hammer", "Powerbank", "Scissors", "Wrench",
                  "Gun", "Bullet", "Sprayer", "HandCuffs", "Knife", "Lighter"]
SIXRAY_CLASSES = ["Gun", "Knife", "Pliers", "Scissors", "Wrench"]


@dataclass
class Fixture:
    """What a fixture tree holds: the source folder, per-split image and box counts, classes."""

    source: Path
    classes: list[str]
    images: dict[str, int] = field(default_factory=dict)  # split ("" = none) → image count
    boxes: dict[str, int] = field(default_factory=dict)  # split → box count
    skipped: int = 0
    # (split, image stem) → sorted [(class, [x, y, w, h])] exactly as the source says
    truth: dict[tuple[str, str], list] = field(default_factory=dict)


def write_image(path: Path, size: tuple[int, int], seed: int, fmt: str | None = None) -> Path:
    """A small noisy RGB 'scan' (random content so JPEG really compresses something)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def random_boxes(rng: np.random.Generator, size: tuple[int, int], n: int) -> list[list[int]]:
    """``n`` integer corner boxes ``[x1, y1, x2, y2]`` inside a ``size`` image."""
    w, h = size
    out = []
    for _ in range(n):
        x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x2, y2 = int(rng.integers(x1 + 2, w + 1)), int(rng.integers(y1 + 2, h + 1))
        out.append([x1, y1, x2, y2])
    return out


def _coco_split(
    fx: Fixture, split: str, img_dir: Path, start_id: int, n: int, rng: np.random.Generator,
    suffix: str = ".png", cat_ids: list[int] | None = None,
) -> dict:
    """Images in ``img_dir`` and their COCO dict; class k of image i cycles through the classes."""
    cat_ids = cat_ids or list(range(1, len(fx.classes) + 1))
    images, anns = [], []
    for i in range(n):
        size = (int(rng.integers(40, 64)), int(rng.integers(30, 50)))
        name = f"{split}_{i:03d}{suffix}"
        write_image(img_dir / name, size, seed=int(rng.integers(1 << 30)))
        image_id = start_id + i
        images.append({"id": image_id, "file_name": name, "width": size[0], "height": size[1]})
        truth = []
        for k, (x1, y1, x2, y2) in enumerate(random_boxes(rng, size, 1 + i % 2)):
            c = (i + k) % len(fx.classes)
            bbox = [x1, y1, x2 - x1, y2 - y1]
            anns.append({"id": 1000 * start_id + len(anns) + 1, "image_id": image_id, "category_id": cat_ids[c],
                         "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
            truth.append((fx.classes[c], [float(v) for v in bbox]))
        fx.truth[(split, Path(name).stem)] = sorted(truth)
    fx.images[split] = fx.images.get(split, 0) + n
    fx.boxes[split] = fx.boxes.get(split, 0) + len(anns)
    cats = [{"id": cid, "name": name, "supercategory": "item"} for cid, name in zip(cat_ids, fx.classes, strict=True)]
    return {"images": images, "annotations": anns, "categories": cats}


def _dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_pidray(root: Path, n_train: int = 12, n_test: int = 3, seed: int = 0) -> Fixture:
    """PIDray: ``annotations/xray_{train,test_easy,test_hard,test_hidden}.json`` + image folders.

    Every file numbers its images from 1, as separate exports do, so ids collide across files.
    """
    fx = Fixture(root, PIDRAY_CLASSES[:6])
    rng = np.random.default_rng(seed)
    for split, json_name, folder, n in (
        ("train", "xray_train", "train", n_train),
        ("test_easy", "xray_test_easy", "easy", n_test),
        ("test_hard", "xray_test_hard", "hard", n_test),
        ("test_hidden", "xray_test_hidden", "hidden", n_test),
    ):
        _dump(root / "annotations" / f"{json_name}.json", _coco_split(fx, split, root / folder, 1, n, rng))
    return fx


def write_coco(root: Path, n: dict[str, int] | None = None, seed: int = 0) -> Fixture:
    """Generic COCO (CLCXray-like): ``annotations/instances_{split}.json`` + ``images/{split}/``.

    Category ids are deliberately not 1..K (they must be kept as they are).
    """
    n = n or {"train": 10, "val": 3, "test": 4}
    fx = Fixture(root, ["blade", "cell_phone", "lighter"])
    rng = np.random.default_rng(seed)
    start = 1
    for split, count in n.items():
        coco = _coco_split(fx, split, root / "images" / split, start, count, rng, ".jpg", cat_ids=[3, 7, 11])
        _dump(root / "annotations" / f"instances_{split}.json", coco)
        start += count
    return fx


def write_phantom(root: Path, n: int = 16, seed: int = 0) -> Fixture:
    """Phantom: one ``annotations.json`` (no splits), ``images/``, ``transmissions/`` and ``regions``."""
    fx = Fixture(root, ["Gun", "Knife", "Lighter"])
    rng = np.random.default_rng(seed)
    coco = _coco_split(fx, "", root / "images", 1, n, rng)
    for img in coco["images"]:
        rel = f"transmissions/{Path(img['file_name']).stem}.raw"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(np.full(8, img["id"], dtype=np.uint16).tobytes())
        img["transmission_file"] = rel
        img["bag"] = {"seed": img["id"]}
    for ann in coco["annotations"]:
        ann["visibility"] = 0.75
        ann["occlusion"] = 0.25
        ann["segmentation"] = {"size": [4, 4], "counts": "04"}
    coco["regions"] = [
        {"id": i + 1, "image_id": img["id"], "bbox": [1, 1, 5, 5], "area": 25, "kind": "bottle",
         "segmentation": {"size": [4, 4], "counts": "04"}}
        for i, img in enumerate(coco["images"])
    ]
    _dump(root / "annotations.json", coco)
    return fx


def write_txt_boxes(root: Path, classes: list[str], n: dict[str, int] | None = None, seed: int = 0) -> Fixture:
    """OPIXray/HiXray: ``{split}/{split}_image/`` + ``{split}/{split}_annotation/<stem>.txt``.

    Images cycle through .jpg, .tiff and .TIFF while their lines always say ``<stem>.jpg``
    (as the real files do); one extra image has no annotation file (reported, skipped).
    """
    n = n or {"train": 9, "test": 3}
    fx = Fixture(root, classes)
    rng = np.random.default_rng(seed)
    suffixes = [(".jpg", "JPEG"), (".tiff", "TIFF"), (".TIFF", "TIFF")]
    for split, count in n.items():
        img_dir, ann_dir = root / split / f"{split}_image", root / split / f"{split}_annotation"
        ann_dir.mkdir(parents=True, exist_ok=True)
        boxes = 0
        for i in range(count):
            stem = f"{i:06d}"
            suffix, fmt = suffixes[i % 3]
            size = (int(rng.integers(40, 64)), int(rng.integers(30, 50)))
            write_image(img_dir / f"{stem}{suffix}", size, seed=int(rng.integers(1 << 30)), fmt=fmt)
            lines, truth = [], []
            for k, (x1, y1, x2, y2) in enumerate(random_boxes(rng, size, 1 + i % 2)):
                c = classes[(i + k) % len(classes)]
                lines.append(f"{stem}.jpg {c} {x1} {y1} {x2} {y2}")
                truth.append((c, [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]))
            (ann_dir / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            fx.truth[(split, stem)] = sorted(truth)
            boxes += len(lines)
        write_image(img_dir / "unlabelled.jpg", (40, 30), seed=1)
        fx.skipped += 1
        fx.images[split], fx.boxes[split] = count, boxes
    return fx


def write_sixray(root: Path, n: int = 12, nameless: int = 2, seed: int = 0) -> Fixture:
    """SIXray: VOC XML ``Annotation/<id>.xml`` + ``JPEGImage/<id>.jpg``; ``nameless`` objects lack <name>."""
    fx = Fixture(root, SIXRAY_CLASSES)
    rng = np.random.default_rng(seed)
    (root / "Annotation").mkdir(parents=True, exist_ok=True)
    boxes = 0
    for i in range(n):
        stem = f"P{i:05d}"
        size = (int(rng.integers(40, 64)), int(rng.integers(30, 50)))
        write_image(root / "JPEGImage" / f"{stem}.jpg", size, seed=int(rng.integers(1 << 30)))
        objs, truth = [], []
        for k, (x1, y1, x2, y2) in enumerate(random_boxes(rng, size, 1 + i % 2)):
            c = SIXRAY_CLASSES[(i + k) % len(SIXRAY_CLASSES)]
            box = f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>"
            objs.append(f"<object><name>{c}</name><pose>Unspecified</pose>{box}</object>")
            truth.append((c, [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]))
        if i < nameless:
            objs.append("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>")
        xml = (f"<annotation><folder>JPEGImage</folder><filename>{stem}.jpg</filename>"
               f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
               + "".join(objs) + "</annotation>")
        (root / "Annotation" / f"{stem}.xml").write_text(xml)
        fx.truth[("", stem)] = sorted(truth)
        boxes += len(truth)
    fx.images[""], fx.boxes[""], fx.skipped = n, boxes, nameless
    return fx


WRITERS = {
    "pidray": write_pidray,
    "coco": write_coco,
    "clcxray": write_coco,
    "phantom": write_phantom,
    "opixray": lambda root, **kw: write_txt_boxes(root, ["Folding_Knife", "Straight_Knife", "Scissor"], **kw),
    "hixray": lambda root, **kw: write_txt_boxes(root, ["Mobile_Phone", "Laptop", "Water", "Cosmetic"], **kw),
    "sixray": write_sixray,
}


def write_fixture(fmt: str, root: Path, **kw) -> Fixture:
    """The fixture tree of format ``fmt`` under ``root``."""
    return WRITERS[fmt](root, **kw)
