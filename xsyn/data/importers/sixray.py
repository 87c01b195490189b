"""SIXray: VOC XML boxes ``Annotation/<id>.xml``, images ``JPEGImage/<id>.jpg``.

Layout: the official download unpacks ``Annotation.zip`` / ``positive-Annotation.zip``
and ``JPEGImage.tar.gz00…17`` (file names of the release host
``aivc.ks3-cn-beijing.ksyun.com/data/public_data/SIXray``); VOC-style conversions use
``Annotations/`` + ``JPEGImages/``, others ``annotation(s)/`` + ``images/``. The first
annotation folder and the first image folder found are used.

SIXray's XML is known to be dirty, and every known defect is skipped or folded and
reported (file and object), not fatal: ``<object>`` elements without ``<name>``; an XML
whose image is absent; images without XML (the whole release holds about a million
negative scans beside the ~8.9k annotated ones); class names whose case differs
(loaders of SIXray lower-case them): each class is spelled as most of its objects are.
Every other defect (malformed XML, a missing or non-numeric ``<bndbox>``) is an error
naming the file and the object. The XML's ``<filename>`` is often stale: the image is
the file sharing the XML's stem. SIXray has no official split here: prepare carves val
and test.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

from xsyn.data.contract import DatasetError
from xsyn.data.dirty import DirtyLog
from xsyn.data.importers import (
    ORIGIN,
    ImageFinder,
    LayoutNotFound,
    RawDataset,
    image_size,
    is_junk,
    name_categories,
)

ANNOTATION_DIRS = ("Annotation", "Annotations", "positive-Annotation", "annotation", "annotations")
IMAGE_DIRS = ("JPEGImage", "JPEGImages", "images", "image")

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


def canonical_spellings(names: list[str]) -> dict[str, str]:
    """Case-folded name → the spelling most objects use (ties: the first in sorted order)."""
    by_key: dict[str, Counter] = defaultdict(Counter)
    for n in names:
        by_key[n.casefold()][n] += 1
    return {k: min(c, key=lambda s: (-c[s], s)) for k, c in by_key.items()}


def find_folders(source: Path) -> tuple[Path, Path]:
    ann_dir = next((source / d for d in ANNOTATION_DIRS if (source / d).is_dir()), None)
    img_dir = next((source / d for d in IMAGE_DIRS if (source / d).is_dir()), None)
    if ann_dir is None or img_dir is None:
        raise LayoutNotFound(
            f"{source}: no SIXray layout; looked for an annotation folder ({', '.join(ANNOTATION_DIRS)}) "
            f"and an image folder ({', '.join(IMAGE_DIRS)})"
        )
    return ann_dir, img_dir


def import_sixray(source: Path, dirty: DirtyLog | None = None) -> RawDataset:
    ann_dir, img_dir = find_folders(source)
    dirty = dirty if dirty is not None else DirtyLog()
    parsed = []
    for xml in sorted(ann_dir.glob("*.xml")):
        if is_junk(xml):
            continue
        try:
            text = xml.read_text()
        except UnicodeDecodeError:
            raise DatasetError(f"{xml}: not a text file") from None
        parsed.append((xml, *parse_voc_xml(text, str(xml))))
    spelling = canonical_spellings([name for _, _, objs in parsed for name, _, _ in objs if name])
    raw = RawDataset(categories=name_categories(sorted(spelling.values())), dirty=dirty)
    find_image = ImageFinder(dirty)
    used: set[Path] = set()
    for xml, _filename, objs in parsed:
        # the XML's <filename> is often stale in SIXray; the image shares the XML's stem
        src = find_image.find(img_dir, f"{xml.stem}.jpg", str(xml), image_id=len(raw.images) + 1)
        if src is None:
            dirty.add("image_missing", str(xml), f"no image {xml.stem}.* in {img_dir}; skipped with its "
                      f"{sum(1 for n, _, _ in objs if n)} box(es)")
            continue
        used.add(src)
        w, h = image_size(src, str(xml))
        image_id = len(raw.images) + 1
        raw.images.append({"id": image_id, "file_name": src.name, "width": w, "height": h, ORIGIN: str(xml)})
        raw.sources[image_id] = src
        for name, corners, k in objs:
            if name is None:
                dirty.add("nameless_object", str(xml), f"object {k} has no <name> (skipped)", image_id=image_id)
                continue
            x1, y1, x2, y2 = corners
            raw.annotations.append({
                "id": len(raw.annotations) + 1, "image_id": image_id,
                "category_id": raw.category_id(name, f"{xml}: object {k}", image_id),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0, ORIGIN: f"{xml}: object {k} ({name})",
            })
    for p in find_image.images(img_dir):
        if p not in used:
            dirty.add("no_annotation", str(p), f"no XML in {ann_dir}; skipped")
    return raw
