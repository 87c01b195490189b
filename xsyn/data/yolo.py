"""YOLO (ultralytics) layout: export a COCO split, write ``data.yaml``, read it back.

ultralytics wants ``<dir>/images/<stem>.<ext>`` beside ``<dir>/labels/<stem>.txt`` with one
``class cx cy w h`` line per box, normalised to the image size. Nested ``file_name`` paths
are flattened (``a/b.png`` → ``a__b.png``) because ultralytics maps an image to its label
by replacing the *last* ``/images/`` in the path, which a sub-folder of that name would
break. Coordinates are written with 12 decimals and read back rounded to ``ROUND_PX``
pixel decimals, so COCO → YOLO → COCO returns the same boxes (exactly, for boxes with at
most ``ROUND_PX`` decimals, which covers every pixel-integer or 0.01-px source format).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from xsyn.data.boxes import xywh_to_yolo, yolo_to_xywh
from xsyn.data.contract import DatasetError, check_relative_name
from xsyn.data.importers import open_image
from xsyn.io import link_or_copy

DECIMALS = 12
ROUND_PX = 6
IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".heic"}


def default_class_index(coco: Mapping[str, Any]) -> dict[int, int]:
    """Category id → YOLO class index: categories sorted by id get 0..K-1."""
    return {c["id"]: i for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}


def yolo_names(coco: Mapping[str, Any], class_index: Mapping[int, int] | None = None) -> list[str]:
    """The ``names`` list of ``data.yaml`` matching ``class_index`` (index → class name)."""
    class_index = default_class_index(coco) if class_index is None else class_index
    names: dict[int, str] = {class_index[c["id"]]: c["name"] for c in coco["categories"] if c["id"] in class_index}
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"class_index {dict(class_index)} does not map onto 0..K-1")
    return [names[i] for i in range(len(names))]


def flat_name(file_name: str, prefix: str = "") -> str:
    """``"sub/dir/a.png"`` → ``prefix + "sub__dir__a.png"`` (one folder level for ultralytics)."""
    return prefix + file_name.replace("\\", "/").replace("/", "__")


def label_lines(
    anns: Sequence[Mapping[str, Any]], width: int, height: int, class_index: Mapping[int, int], entry: str
) -> list[str]:
    """YOLO label lines of one image's annotations (boxes must lie inside the image)."""
    lines = []
    for ann in anns:
        cat = ann["category_id"]
        if cat not in class_index:
            raise DatasetError(f"{entry}: annotation id {ann.get('id')}: category_id {cat!r} has no YOLO class")
        cx, cy, w, h = xywh_to_yolo(ann["bbox"], width, height)
        if w <= 0 or h <= 0 or cx - w / 2 < -1e-6 or cy - h / 2 < -1e-6 or cx + w / 2 > 1 + 1e-6 or cy + h / 2 > 1 + 1e-6:
            raise DatasetError(
                f"{entry}: annotation id {ann.get('id')}: bbox {ann['bbox']} is empty or outside the "
                f"{width}x{height} image (clip it before export)"
            )
        lines.append(f"{class_index[cat]} {cx:.{DECIMALS}f} {cy:.{DECIMALS}f} {w:.{DECIMALS}f} {h:.{DECIMALS}f}")
    return lines


def write_yolo_split(
    coco: Mapping[str, Any],
    image_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    class_index: Mapping[int, int] | None = None,
    prefix: str = "",
    link: bool = True,
) -> list[Path]:
    """Write ``coco``'s images and boxes to ``out_dir/images`` + ``out_dir/labels``.

    ``class_index`` maps category id → YOLO class (default: categories sorted by id).
    ``prefix`` is prepended to every file stem so several sources (real, synthetic) can
    share one folder; files already there with other names are kept. Images without
    boxes get an empty label file (ultralytics treats them as background). Returns the
    written image paths, in the order of ``coco["images"]``.
    """
    image_root, out_dir = Path(image_root), Path(out_dir)
    class_index = default_class_index(coco) if class_index is None else dict(class_index)
    by_image: dict[int, list] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        if ann["image_id"] not in by_image:
            raise DatasetError(f"annotation id {ann.get('id')}: unknown image_id {ann['image_id']!r}")
        by_image[ann["image_id"]].append(ann)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stems: dict[str, str] = {}
    for img in coco["images"]:
        entry = f"image id {img['id']} ({img.get('file_name')!r})"
        name = check_relative_name(img.get("file_name"), str(image_root), entry)
        dst_name = flat_name(name, prefix)
        stem = Path(dst_name).stem
        if stem in stems:
            raise DatasetError(f"{entry}: YOLO file stem {stem!r} collides with {stems[stem]!r}")
        stems[stem] = name
        src = image_root / name
        if not src.is_file():
            raise DatasetError(f"{entry}: image file {src} not found")
        lines = label_lines(by_image[img["id"]], img["width"], img["height"], class_index, entry)
        dst = out_dir / "images" / dst_name
        link_or_copy(src, dst, link)
        (out_dir / "labels" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
        written.append(dst)
    return written


def _images_dir(d: str | os.PathLike) -> str:
    d = Path(d).resolve()
    return str(d / "images") if (d / "images").is_dir() else str(d)


def write_data_yaml(
    path: str | os.PathLike,
    train_dirs: Sequence[str | os.PathLike],
    val_dirs: Sequence[str | os.PathLike],
    names: Sequence[str] | Mapping[int, str],
) -> Path:
    """Write an ultralytics ``data.yaml``; dirs are folders made by :func:`write_yolo_split`."""
    names_map = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    data = {
        "train": [_images_dir(d) for d in train_dirs],
        "val": [_images_dir(d) for d in val_dirs],
        "nc": len(names_map),
        "names": {int(k): str(v) for k, v in sorted(names_map.items())},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _categories(names: Sequence[str] | Sequence[Mapping[str, Any]] | Mapping[int, str]) -> list[dict[str, Any]]:
    """YOLO index order → COCO categories (dicts keep their ids; plain names get 1..K)."""
    if isinstance(names, Mapping):
        names = [names[k] for k in sorted(names)]
    cats = []
    for i, n in enumerate(names):
        if isinstance(n, Mapping):
            cats.append({"id": int(n["id"]), "name": str(n["name"])})
        else:
            cats.append({"id": i + 1, "name": str(n)})
    return cats


def _parse_label_file(path: Path, nc: int) -> list[tuple[int, list[float]]]:
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}: line {lineno}"
        if len(parts) != 5:
            raise DatasetError(f"{where}: expected 'class cx cy w h', got {line!r}")
        try:
            cls = int(parts[0])
            vals = [float(v) for v in parts[1:]]
        except ValueError:
            raise DatasetError(f"{where}: non-numeric value in {line!r}") from None
        if not 0 <= cls < nc:
            raise DatasetError(f"{where}: class index {cls} outside 0..{nc - 1}")
        rows.append((cls, vals))
    return rows


def read_yolo(
    folder: str | os.PathLike, names: Sequence[str] | Sequence[Mapping[str, Any]] | Mapping[int, str]
) -> dict[str, Any]:
    """Read ``folder/images`` + ``folder/labels`` into a COCO dict (sizes read from the images).

    ``names`` gives the classes in YOLO index order: plain names (category ids 1..K) or
    COCO category dicts (their ids are kept, which makes the round trip exact). File names
    are relative to ``folder/images``; images are numbered 1..N in sorted name order.
    """
    folder = Path(folder)
    img_dir, lbl_dir = folder / "images", folder / "labels"
    if not img_dir.is_dir():
        raise DatasetError(f"{folder}: no images/ folder (not a YOLO dataset)")
    cats = _categories(names)
    images, annotations = [], []
    files = sorted(p for p in img_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for image_id, p in enumerate(files, 1):
        rel = p.relative_to(img_dir).as_posix()
        try:
            with open_image(p) as im:
                width, height = im.size
        except (OSError, SyntaxError) as e:
            raise DatasetError(f"{p}: unreadable image: {e}") from None
        images.append({"id": image_id, "file_name": rel, "width": width, "height": height})
        label = (lbl_dir / rel).with_suffix(".txt")
        if not label.is_file():
            continue
        for cls, yolo in _parse_label_file(label, len(cats)):
            bbox = [round(v, ROUND_PX) + 0.0 for v in yolo_to_xywh(yolo, width, height)]
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": cats[cls]["id"],
                "bbox": bbox,
                "area": round(bbox[2] * bbox[3], ROUND_PX),
                "iscrowd": 0,
            })
    return {"images": images, "annotations": annotations, "categories": cats}
