"""Generic COCO import (CLCXray, phantom, any COCO set); PIDray builds on it.

The source is a folder with COCO JSON files (``annotations/*.json`` or ``*.json`` at
the top) and their images (``images/``, ``images/<split>/``, ``<split>/`` or the folder
itself). A file whose name says ``train``/``val``/``test`` gives that split; a single
file with no such word (phantom's ``annotations.json``) means "no splits, carve them".
Extra keys on images and annotations (phantom's ``segmentation``, ``occlusion``,
``visibility``, ``transmission_file``) and the top-level ``regions`` are carried as is.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xsyn.data.contract import DatasetError, check_relative_name, is_subset_name, validate_coco
from xsyn.data.importers import ORIGIN, RawDataset
from xsyn.io import read_json

AUX_FILE_KEYS = ("transmission_file",)  # image keys naming a file relative to the source root


@dataclass
class CocoFile:
    """One annotation file of a source: its images live under ``image_root``."""

    path: Path
    image_root: Path
    split: str | None
    data: dict[str, Any] | None = None  # the parsed JSON, when already read


def load_source_json(path: Path) -> dict[str, Any]:
    """Read and validate one source COCO file; errors name the file and the entry."""
    try:
        coco = read_json(path)
    except (FileNotFoundError, ValueError) as e:
        raise DatasetError(str(e)) from None
    validate_coco(coco, path)
    return coco


def split_of(stem: str) -> str | None:
    """``instances_train2017`` → train, ``xray_test_hard`` → test_hard, ``annotations`` → None."""
    s = stem.lower()
    m = re.search(r"test[_-]([a-z]+)$", s)
    if m:
        return f"test_{m.group(1)}"
    for split in ("train", "val", "test"):
        if split in s:
            return split
    return None


def _image_root(source: Path, coco: dict[str, Any], split: str | None, stem: str) -> Path:
    """The folder under which ``coco``'s file names resolve (first that holds its first image)."""
    names = [split, stem] if split else [stem]
    candidates = [source / "images" / n for n in names if n] + [source / n for n in names if n]
    candidates += [source / "images", source]
    if coco["images"]:
        first = coco["images"][0]["file_name"]
        for c in candidates:
            if (c / first).is_file():
                return c
    return source / "images" if (source / "images").is_dir() else source


def find_coco_files(source: Path) -> list[CocoFile]:
    """The annotation files of a generic COCO source, with their splits and image roots."""
    folder = source / "annotations" if (source / "annotations").is_dir() else source
    paths = sorted(p for p in folder.glob("*.json") if not is_subset_name(p.stem))
    if not paths:
        raise DatasetError(f"{source}: no COCO annotation file (*.json) in {folder}")
    splits = [split_of(p.stem) for p in paths]
    if len(paths) > 1 and None in splits:
        odd = paths[splits.index(None)]
        raise DatasetError(f"{odd}: cannot tell which split this file is (name it *train*, *val* or *test*)")
    files = []
    for path, split in zip(paths, splits, strict=True):
        coco = load_source_json(path)
        files.append(CocoFile(path, _image_root(source, coco, split, path.stem), split, coco))
    return files


def _categories(files: Sequence[tuple[CocoFile, dict]]) -> list[dict[str, Any]]:
    """The one category list: every file must agree with the first on id → name."""
    first_file, first = files[0]
    cats = copy.deepcopy(sorted(first["categories"], key=lambda c: c["id"]))
    ref = {c["id"]: c["name"] for c in cats}
    for f, coco in files[1:]:
        other = {c["id"]: c["name"] for c in coco["categories"]}
        if other != ref:
            raise DatasetError(
                f"{f.path}: categories {other} differ from those of {first_file.path} {ref}"
            )
    return cats


def _ids_unique(files: Sequence[tuple[CocoFile, dict]], key: str) -> bool:
    ids = [rec["id"] for _, coco in files for rec in coco.get(key, [])]
    return len(ids) == len(set(ids))


def output_name(src: Path, source: Path) -> str:
    """Name under ``data/<name>/images``: the path below ``source/images`` (or ``source``)."""
    base = source / "images"
    try:
        return src.relative_to(base).as_posix()
    except ValueError:
        return src.relative_to(source).as_posix()


def import_coco_files(source: Path, files: Sequence[CocoFile]) -> RawDataset:
    """Merge several COCO files into one :class:`RawDataset` (ids kept when unique)."""
    loaded = [(f, f.data if f.data is not None else load_source_json(f.path)) for f in files]
    raw = RawDataset(categories=_categories(loaded))
    keep = {k: _ids_unique(loaded, k) for k in ("images", "annotations", "regions")}
    if not keep["images"]:
        raw.notes.append("image ids repeat across files; images renumbered 1..N")
    counters = {"images": 0, "annotations": 0, "regions": 0}

    def new_id(kind: str, old: int) -> int:
        counters[kind] += 1
        return old if keep[kind] else counters[kind]

    for f, coco in loaded:
        image_ids: dict[int, int] = {}
        for i, rec in enumerate(coco["images"]):
            where = f"{f.path}: images[{i}] (id {rec['id']})"
            src = f.image_root / check_relative_name(rec["file_name"], str(f.path), where)
            if not src.is_file():
                raise DatasetError(f"{where}: image file {src} not found")
            img = copy.deepcopy(rec)
            img["id"] = image_ids[rec["id"]] = new_id("images", rec["id"])
            img["file_name"] = output_name(src.resolve(), source)
            img[ORIGIN] = where
            for key in AUX_FILE_KEYS:
                if key in img:
                    rel = check_relative_name(img[key], str(f.path), where)
                    aux = source / rel
                    if not aux.is_file():
                        raise DatasetError(f"{where}: {key} {aux} not found")
                    raw.aux_files[rel] = aux
            raw.images.append(img)
            raw.sources[img["id"]] = src
            if f.split:
                raw.splits[img["id"]] = f.split
        for kind, target in (("annotations", raw.annotations), ("regions", raw.regions)):
            for i, rec in enumerate(coco.get(kind, [])):
                item = copy.deepcopy(rec)
                item["id"] = new_id(kind, rec["id"])
                item["image_id"] = image_ids[rec["image_id"]]
                item[ORIGIN] = f"{f.path}: {kind}[{i}] (id {rec['id']})"
                target.append(item)
    return raw


def import_coco(source: Path) -> RawDataset:
    """Generic COCO source (CLCXray, phantom, ...): find its files, then merge them."""
    return import_coco_files(source, find_coco_files(source))
