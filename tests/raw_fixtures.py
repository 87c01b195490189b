"""Tiny raw dataset trees in the real layouts of each public X-ray format (no real data here).

Each ``write_<layout>(root)`` builds a source tree under ``root`` with generated images
(PNG, JPG, TIFF) and returns a :class:`Fixture` saying what an importer should find, so
tests can check counts and exact boxes. Boxes are integer corners well inside the image.
The layouts are those of the datasets' releases and of the projects that load them
(sources cited in each writer and in ``xsyn/data/importers``), not only those the
importers were first written for. :data:`LAYOUTS` maps a layout name to (format, writer).
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


def write_pidray_extended(root: Path, n_train: int = 12, n_test: int = 9, levels: bool = False,
                          seed: int = 0) -> Fixture:
    """PIDray's extended release: ``annotations/{train,test}.json``, images ``train/`` and ``test/``.

    As lutao2021/PIDray's configs read it (``ann_file='/mnt/PIDray/annotations/train.json'``,
    ``img_prefix='/mnt/PIDray/train/'``; same for test). ``levels``: the Xsyn authors' copy,
    which adds ``annotations/test_{easy,hard,hidden}.json``, subsets of ``test.json`` whose
    images lie in ``test/`` (image i of test has level i % 3).
    """
    fx = Fixture(root, PIDRAY_CLASSES[:6])
    rng = np.random.default_rng(seed)
    _dump(root / "annotations" / "train.json", _coco_split(fx, "train", root / "train", 1, n_train, rng))
    test = _coco_split(fx, "test", root / "test", 1, n_test, rng)
    _dump(root / "annotations" / "test.json", test)
    if levels:
        for k, level in enumerate(("easy", "hard", "hidden")):
            ids = {img["id"] for i, img in enumerate(test["images"]) if i % 3 == k}
            part = {**test, "images": [i for i in test["images"] if i["id"] in ids],
                    "annotations": [a for a in test["annotations"] if a["image_id"] in ids]}
            _dump(root / "annotations" / f"test_{level}.json", part)
            for img in part["images"]:
                stem = Path(img["file_name"]).stem
                fx.truth[(f"test_{level}", stem)] = fx.truth.pop(("test", stem))
            fx.images[f"test_{level}"] = len(part["images"])
            fx.boxes[f"test_{level}"] = len(part["annotations"])
        del fx.images["test"], fx.boxes["test"]
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


def write_mscoco(root: Path, n: dict[str, int] | None = None, seed: int = 0) -> Fixture:
    """MS-COCO 2017 as every COCO tool lays it out: ``annotations/instances_{train,val}2017.json``,
    images ``train2017/`` and ``val2017/`` with 12-digit names; ``annotations/`` also holds
    ``captions_*2017.json`` and ``person_keypoints_*2017.json`` (no detection files: no
    ``categories`` in captions, another category list in keypoints), which must be ignored.
    """
    n = n or {"train": 10, "val": 4}
    fx = Fixture(root, ["person", "bicycle", "car"])
    rng = np.random.default_rng(seed)
    start = 1
    for split, count in n.items():
        coco = _coco_split(fx, split, root / f"{split}2017", start, count, rng, ".jpg")
        for img in coco["images"]:  # 000000000139.jpg style names
            old = root / f"{split}2017" / img["file_name"]
            img["file_name"] = f"{139 + img['id']:012d}.jpg"
            old.rename(old.with_name(img["file_name"]))
            fx.truth[(split, Path(img["file_name"]).stem)] = fx.truth.pop((split, old.stem))
        _dump(root / "annotations" / f"instances_{split}2017.json", coco)
        captions = {"info": {}, "licenses": [], "images": coco["images"],
                    "annotations": [{"id": i, "image_id": img["id"], "caption": "a scan"}
                                    for i, img in enumerate(coco["images"], 1)]}
        _dump(root / "annotations" / f"captions_{split}2017.json", captions)
        keypoints = {"images": coco["images"], "categories": [{"id": 1, "name": "person", "keypoints": ["nose"]}],
                     "annotations": [{"id": 1, "image_id": coco["images"][0]["id"], "category_id": 1,
                                      "bbox": [1, 1, 5, 5], "keypoints": [2, 2, 2], "num_keypoints": 1}]}
        _dump(root / "annotations" / f"person_keypoints_{split}2017.json", keypoints)
        start += count
    return fx


def write_clcxray(root: Path, n: dict[str, int] | None = None, empty_name: bool = False, seed: int = 0) -> Fixture:
    """CLCXray as it is used: ``annotation/CLCXray_{train,test}.json``, ``image/{train,test}/*.png``.

    (Singular folder names; e.g. yonafalinie/xray-sam runs ``--image CLCXray/image/train
    --cocogt CLCXray/annotation/CLCXray_train.json``.) ``empty_name``: add train image id
    7547 with ``file_name ".png"`` and one box, as the real file has it (GreysonPhoenix/CLCXray
    issue #2); it must be skipped and reported.
    """
    n = n or {"train": 10, "test": 4}
    fx = Fixture(root, ["blade", "dagger", "knife", "scissors", "Cans", "GlassBottle"])
    rng = np.random.default_rng(seed)
    start = 1
    for split, count in n.items():
        coco = _coco_split(fx, split, root / "image" / split, start, count, rng, ".png")
        if empty_name and split == "train":
            coco["images"].insert(3, {"id": 7547, "file_name": ".png", "width": 50, "height": 40})
            coco["annotations"].append({"id": 99_999, "image_id": 7547, "category_id": 1, "bbox": [1, 1, 9, 9],
                                        "area": 81, "iscrowd": 0})
            fx.skipped += 1
        _dump(root / "annotation" / f"CLCXray_{split}.json", coco)
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


def write_txt_boxes(root: Path, classes: list[str], n: dict[str, int] | None = None, seed: int = 0,
                    lists: str = "knife", levels: int = 0) -> Fixture:
    """OPIXray/HiXray: ``{split}/{split}_image/`` + ``{split}/{split}_annotation/<stem>.txt``.

    Images cycle through .jpg, .tiff and .TIFF while their lines always say ``<stem>.jpg``
    (as the real files do); one extra image has no annotation file (reported, skipped).
    Beside them the official image lists, one stem a line: ``{split}/{split}_<lists>.txt``
    (OPIXray ``train_knife.txt``/``test_knife.txt``, HiXray ``train_name.txt``/``test_name.txt``)
    and, with ``levels``, OPIXray's occlusion lists ``test/test_knife-<k>.txt`` (test image
    i has level i % levels + 1), which become splits ``test_ol<k>``.
    """
    n = n or {"train": 9, "test": 3}
    fx = Fixture(root, classes)
    rng = np.random.default_rng(seed)
    suffixes = [(".jpg", "JPEG"), (".tiff", "TIFF"), (".TIFF", "TIFF")]
    for split, count in n.items():
        img_dir, ann_dir = root / split / f"{split}_image", root / split / f"{split}_annotation"
        ann_dir.mkdir(parents=True, exist_ok=True)
        boxes, stems = 0, []
        for i in range(count):
            stem = f"{i:06d}"
            stems.append(stem)
            suffix, fmt = suffixes[i % 3]
            size = (int(rng.integers(40, 64)), int(rng.integers(30, 50)))
            write_image(img_dir / f"{stem}{suffix}", size, seed=int(rng.integers(1 << 30)), fmt=fmt)
            lines, truth = [], []
            for k, (x1, y1, x2, y2) in enumerate(random_boxes(rng, size, 1 + i % 2)):
                c = classes[(i + k) % len(classes)]
                lines.append(f"{stem}.jpg {c} {x1} {y1} {x2} {y2}")
                truth.append((c, [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]))
            (ann_dir / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            part = f"test_ol{i % levels + 1}" if split == "test" and levels else split
            fx.truth[(part, stem)] = sorted(truth)
            fx.images[part] = fx.images.get(part, 0) + 1
            fx.boxes[part] = fx.boxes.get(part, 0) + len(lines)
            boxes += len(lines)
        if lists:
            (root / split / f"{split}_{lists}.txt").write_text("\n".join(stems) + "\n")
        if split == "test":
            for k in range(1, levels + 1):
                listed = [s for i, s in enumerate(stems) if i % levels + 1 == k]
                (root / split / f"test_{lists}-{k}.txt").write_text("\n".join(listed) + "\n")
        write_image(img_dir / "unlabelled.jpg", (40, 30), seed=1)
        fx.skipped += 1
    return fx


def write_sixray(root: Path, n: int = 12, nameless: int = 2, seed: int = 0, negatives: int = 0,
                 folders: tuple[str, str] = ("Annotation", "JPEGImage")) -> Fixture:
    """SIXray: VOC XML ``Annotation/<id>.xml`` + ``JPEGImage/<id>.jpg``; ``nameless`` objects lack <name>.

    ``negatives``: images without XML beside them (``N00001.jpg``), as in the full release
    whose ``JPEGImage.tar.gz00…17`` hold the negative scans too; they are reported, skipped.
    ``folders``: the annotation and image folder names (VOC conversions: Annotations, JPEGImages).
    """
    fx = Fixture(root, SIXRAY_CLASSES)
    rng = np.random.default_rng(seed)
    ann_name, img_name = folders
    (root / ann_name).mkdir(parents=True, exist_ok=True)
    boxes = 0
    for i in range(n):
        stem = f"P{i:05d}"
        size = (int(rng.integers(40, 64)), int(rng.integers(30, 50)))
        write_image(root / img_name / f"{stem}.jpg", size, seed=int(rng.integers(1 << 30)))
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
        (root / ann_name / f"{stem}.xml").write_text(xml)
        fx.truth[("", stem)] = sorted(truth)
        boxes += len(truth)
    for i in range(negatives):
        write_image(root / img_name / f"N{i:05d}.jpg", (40, 30), seed=100 + i)
    fx.images[""], fx.boxes[""], fx.skipped = n, boxes, nameless + negatives
    return fx


OPIXRAY_FIXTURE_CLASSES = ["Folding_Knife", "Straight_Knife", "Scissor"]
HIXRAY_FIXTURE_CLASSES = ["Mobile_Phone", "Laptop", "Water", "Cosmetic"]


def write_opixray(root: Path, **kw) -> Fixture:
    """OPIXray as released: ``train_knife.txt``, ``test_knife.txt`` and the three occlusion lists."""
    return write_txt_boxes(root, OPIXRAY_FIXTURE_CLASSES, **{"lists": "knife", "levels": 3, **kw})


def write_hixray(root: Path, **kw) -> Fixture:
    """HiXray as released: ``train/train_name.txt``, ``test/test_name.txt`` (no test parts)."""
    return write_txt_boxes(root, HIXRAY_FIXTURE_CLASSES, **{"lists": "name", **kw})


# layout name → (format to import it as, writer); the first name of each format is its default
LAYOUTS = {
    "pidray": ("pidray", write_pidray),
    "pidray-extended": ("pidray", write_pidray_extended),
    "pidray-extended-levels": ("pidray", lambda root, **kw: write_pidray_extended(root, levels=True, **kw)),
    "coco": ("coco", write_coco),
    "mscoco": ("coco", write_mscoco),
    "clcxray": ("clcxray", write_clcxray),
    "phantom": ("phantom", write_phantom),
    "opixray": ("opixray", write_opixray),
    "hixray": ("hixray", write_hixray),
    "sixray": ("sixray", write_sixray),
    "sixray-release": ("sixray", lambda root, **kw: write_sixray(root, negatives=3, **kw)),
    "sixray-voc": ("sixray", lambda root, **kw: write_sixray(root, folders=("Annotations", "JPEGImages"), **kw)),
}
WRITERS: dict = {}  # format → the writer of its default layout
for _fmt, _writer in LAYOUTS.values():
    WRITERS.setdefault(_fmt, _writer)


def write_fixture(fmt: str, root: Path, **kw) -> Fixture:
    """The fixture tree of format ``fmt`` (its default layout) under ``root``."""
    return WRITERS[fmt](root, **kw)


def write_layout(layout: str, root: Path, **kw) -> tuple[str, Fixture]:
    """(format, fixture) of layout ``layout`` under ``root``."""
    fmt, writer = LAYOUTS[layout]
    return fmt, writer(root, **kw)
