"""OPIXray and HiXray: one ``.txt`` per image, a line ``<image> <class> <x1> <y1> <x2> <y2>`` per box.

Layout (OPIXray-author/OPIXray ``DOAM/data/OPIXray.py``, HiXray-author/HiXray
``MuBo/data/HiXray.py``): ``{train,test}/{train,test}_image/`` and
``{train,test}/{train,test}_annotation/``, beside the image lists the official scripts
read: ``train/train_knife.txt`` and ``test/test_knife.txt`` (OPIXray),
``train/train_name.txt`` and ``test/test_name.txt`` (HiXray), one image stem a line.
These whole-split lists add nothing to the annotation folders and are not read.

Any other list in ``test/`` defines a test part, written as its own split beside
``test`` (as PIDray's easy/hard/hidden): OPIXray's occlusion levels
``test_knife-{1,2,3}.txt`` become ``test_ol1``, ``test_ol2``, ``test_ol3`` (the paper's
OL1–OL3); another ``test/test_<name>.txt`` becomes ``test_<name>`` (letters and digits);
other ``.txt`` files there are not lists.

The image a line names may be stored as ``.jpg``, ``.tiff`` or ``.TIFF`` whatever the
line says (the official loaders try all three; see :class:`~xsyn.data.importers.ImageFinder`).
Corner boxes become COCO ``[x1, y1, x2 - x1, y2 - y1]``; boxes a few pixels outside the
image (the official loaders clamp them) are clamped by prepare. The class sets are fixed:
a name differing only in case is folded, any other unknown name is a typo or a foreign
file, and an error. Dirty entries reported: an image without an annotation file
(unlabelled, not empty), a list entry naming no test image, an image in two lists.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from xsyn.data.contract import DatasetError, check_relative_name
from xsyn.data.dirty import DirtyLog
from xsyn.data.importers import (
    IMAGE_SUFFIXES,
    ORIGIN,
    ImageFinder,
    LayoutNotFound,
    RawDataset,
    image_size,
    is_junk,
    name_categories,
)

OPIXRAY_CLASSES = ["Folding_Knife", "Straight_Knife", "Scissor", "Utility_Knife", "Multi-tool_Knife"]
HIXRAY_CLASSES = [
    "Portable_Charger_1", "Portable_Charger_2", "Mobile_Phone", "Laptop",
    "Tablet", "Cosmetic", "Water", "Nonmetallic_Lighter",
]
SPLITS = ("train", "test")
WHOLE_SPLIT_LISTS = {"train_knife", "test_knife", "train_name", "test_name"}  # OPIXray, HiXray READMEs
OPIXRAY_LEVEL_RE = re.compile(r"test_knife-(\d+)$")  # occlusion level k → split test_ol<k>


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


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file") from None


def parse_txt_file(path: Path) -> list[tuple[str, str, list[float], int]]:
    """All boxes of one annotation file as (image, class, corners, line number)."""
    return [
        (*parse_txt_line(line, f"{path}: line {n}"), n)
        for n, line in enumerate(read_text(path).splitlines(), 1)
        if line.strip()
    ]


def part_split_name(stem: str) -> str | None:
    """``test_knife-2`` → ``test_ol2``; ``test_small`` → ``test_small``; a whole-split list or a
    file not named ``test…`` (a readme) → None."""
    if stem in WHOLE_SPLIT_LISTS or not stem.lower().startswith("test"):
        return None
    m = OPIXRAY_LEVEL_RE.fullmatch(stem)
    if m:
        return f"test_ol{int(m.group(1))}"
    slug = re.sub(r"[^a-z0-9]", "", stem.lower().removeprefix("test"))
    return f"test_{slug}" if slug else None


def find_layout(source: Path) -> None:
    """Fail unless ``source`` holds the train/test layout (naming what was looked for)."""
    wanted = [source / s / f"{s}_{kind}" for s in SPLITS for kind in ("image", "annotation")]
    if not any((source / s).is_dir() for s in SPLITS):
        raise LayoutNotFound(f"{source}: no {source.name} layout; looked for "
                             + ", ".join(str(p.relative_to(source)) + "/" for p in wanted))
    for d in wanted:
        if not d.is_dir():
            raise DatasetError(f"{d}: folder not found ({source.name} layout needs {d.parent.name}/{d.name}/)")


def assign_parts(raw: RawDataset, source: Path, stems: dict[str, int]) -> None:
    """Move test images named by a part list (``test/test_knife-1.txt``) into that part's split."""
    listed_in: dict[int, Path] = {}
    for lst in sorted((source / "test").glob("*.txt")):
        split = None if is_junk(lst) else part_split_name(lst.stem)
        if split is None:
            continue
        count = 0
        for n, line in enumerate(read_text(lst).splitlines(), 1):
            name = line.strip()
            if not name:
                continue
            stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name
            where = f"{lst}: line {n}"
            image_id = stems.get(stem)
            if image_id is None:
                raw.dirty.add("list_entry_missing", where, f"{name!r} names no annotated test image; ignored",
                              split=split)
            elif image_id in listed_in:
                raw.dirty.add("listed_twice", where,
                              f"{name!r} is already in {listed_in[image_id].name}; kept there", image_id=image_id)
            else:
                listed_in[image_id] = lst
                raw.splits[image_id] = split
                count += 1
        raw.notes.append(f"{lst.name}: {count} test image(s) → split {split}")


def import_txt_boxes(source: Path, classes: list[str], dirty: DirtyLog | None = None) -> RawDataset:
    find_layout(source)
    raw = RawDataset(categories=name_categories(classes), dirty=dirty if dirty is not None else DirtyLog())
    find_image = ImageFinder(raw.dirty)
    test_stems: dict[str, int] = {}
    for split in SPLITS:
        img_dir = source / split / f"{split}_image"
        ann_dir = source / split / f"{split}_annotation"
        used: set[Path] = set()
        for txt in sorted(ann_dir.glob("*.txt")):
            if is_junk(txt):
                continue
            by_image: dict[str, list] = {}
            for name, cls, corners, n in parse_txt_file(txt):
                check_relative_name(name, str(txt), f"line {n}")
                by_image.setdefault(name, []).append((cls, corners, f"{txt}: line {n}"))
            if not by_image:  # an empty file: the image is named by the file itself
                by_image[txt.stem + ".jpg"] = []
            for name, boxes in by_image.items():
                src = find_image(img_dir, name, f"{txt}", split, len(raw.images) + 1)
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
                if split == "test":
                    test_stems[src.stem] = image_id
                for cls, (x1, y1, x2, y2), where in boxes:
                    raw.annotations.append({
                        "id": len(raw.annotations) + 1, "image_id": image_id,
                        "category_id": raw.category_id(cls, where, image_id),
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0, ORIGIN: where,
                    })
        for p in find_image.images(img_dir):
            if p not in used:
                raw.dirty.add("no_annotation", str(p), f"no annotation file in {ann_dir}; skipped", split=split)
    assign_parts(raw, source, test_stems)
    return raw


def import_opixray(source: Path, dirty: DirtyLog | None = None) -> RawDataset:
    return import_txt_boxes(source, OPIXRAY_CLASSES, dirty)


def import_hixray(source: Path, dirty: DirtyLog | None = None) -> RawDataset:
    return import_txt_boxes(source, HIXRAY_CLASSES, dirty)
