"""SIXray: VOC XML boxes ``Annotation/<id>.xml``, images ``JPEGImage/<id>.jpg``.

SIXray's XML is known to be dirty: some ``<object>`` elements carry no ``<name>``. Those
objects are skipped, counted and reported (file and object index) instead of stopping
the import; every other defect (malformed XML, a missing or non-numeric ``<bndbox>``)
is an error naming the file and the object. Classes are the sorted distinct names
(ids 1..K). SIXray has no official split here: prepare carves val and test.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from xsyn.data.contract import DatasetError
from xsyn.data.importers import ORIGIN, ImageFinder, RawDataset, image_size, name_categories

Obj = tuple[str | None, list[float], int]  # (class name or None, [x1, y1, x2, y2], object index)


def parse_voc_xml(text: str, where: str) -> tuple[str | None, list[Obj]]:
    """VOC XML text → (``<filename>`` or None, objects); nameless objects come back with None."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise DatasetError(f"{where}: malformed XML: {e}") from None
    filename = (root.findtext("filename") or "").strip() or None
    objects: list[Obj] = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip() or None
        box = obj.find("bndbox")
        entry = f"{where}: object {k}" + (f" ({name})" if name else "")
        if box is None:
            if name is None:  # nothing usable at all: a dirty entry, reported by the caller
                objects.append((None, [], k))
                continue
            raise DatasetError(f"{entry}: no <bndbox>")
        corners = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            value = box.findtext(tag)
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise DatasetError(f"{entry}: <{tag}> must be a number, got {value!r}") from None
            if not math.isfinite(v):
                raise DatasetError(f"{entry}: <{tag}> is not finite: {value!r}")
            corners.append(v)
        objects.append((name, corners, k))
    return filename, objects


def import_sixray(source: Path) -> RawDataset:
    ann_dir, img_dir = source / "Annotation", source / "JPEGImage"
    for d in (ann_dir, img_dir):
        if not d.is_dir():
            raise DatasetError(f"{d}: folder not found (SIXray layout needs Annotation/ and JPEGImage/)")
    parsed = []
    for xml in sorted(ann_dir.glob("*.xml")):
        try:
            text = xml.read_text()
        except UnicodeDecodeError:
            raise DatasetError(f"{xml}: not a text file") from None
        parsed.append((xml, *parse_voc_xml(text, str(xml))))
    names = sorted({name for _, _, objs in parsed for name, _, _ in objs if name})
    raw = RawDataset(categories=name_categories(names))
    find_image = ImageFinder()
    for xml, _filename, objs in parsed:
        # the XML's <filename> is often stale in SIXray; the image shares the XML's stem
        src = find_image(img_dir, f"{xml.stem}.jpg", str(xml))
        w, h = image_size(src, str(xml))
        image_id = len(raw.images) + 1
        raw.images.append({"id": image_id, "file_name": src.name, "width": w, "height": h, ORIGIN: str(xml)})
        raw.sources[image_id] = src
        for name, corners, k in objs:
            if name is None:
                raw.skipped.append(f"{xml}: object {k} has no <name> (skipped)")
                continue
            x1, y1, x2, y2 = corners
            raw.annotations.append({
                "id": len(raw.annotations) + 1, "image_id": image_id,
                "category_id": raw.category_id(name, f"{xml}: object {k}"),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0, ORIGIN: f"{xml}: object {k} ({name})",
            })
    return raw
