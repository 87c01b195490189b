"""Generic COCO import (CLCXray, MS-COCO-style sets, phantom, PIDray's extended release).

Layouts accepted (each fact from the dataset's release or the projects that load it):

- **MS-COCO** and every tool built on it: ``annotations/instances_train2017.json``,
  ``annotations/instances_val2017.json``, images in ``train2017/`` and ``val2017/``.
  The same ``annotations/`` folder of the full release also holds ``captions_*.json``,
  ``person_keypoints_*.json`` (and ``image_info_*.json`` for test); those are not
  detection files and are ignored (named in the notes).
- **CLCXray** (GreysonPhoenix/CLCXray; used e.g. as ``--cocogt CLCXray/annotation/
  CLCXray_train.json --image CLCXray/image/train`` in yonafalinie/xray-sam):
  ``annotation/CLCXray_{train,test}.json`` and ``image/{train,test}/`` (singular names).
- **xsyn's own contract / generic**: ``annotations/{train,val,test}.json`` with images in
  ``images/``, ``images/<split>/`` or ``<split>/``; PIDray's extended release
  (``annotations/train.json`` + ``test.json``, images ``train/`` and ``test/``) fits too.
- **phantom**: one ``annotations.json`` at the top (no word naming a split: "no splits,
  carve them"), images in ``images/``.

A file whose name says ``train``/``val``/``test`` gives that split, ``test_<part>`` a test
part. A file's image folder is the candidate (``images/<x>``, ``image/<x>`` or ``<x>`` for
``x`` = its split or a tail of its name, then ``images/``, ``image/``, the top folder)
that holds most of its first images. An image listed both by a ``test_<part>`` file and
by the whole ``test`` file is taken once, from the part. Extra keys on images and
annotations (phantom's ``segmentation``, ``occlusion``, ``visibility``,
``transmission_file``) and the top-level ``regions`` are carried as is.

Dirty entries: an image record whose ``file_name`` is empty or only an extension
(CLCXray's image id 7547 is ``".png"``, GreysonPhoenix/CLCXray issue #2) is skipped with
its boxes and reported.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xsyn.data.contract import DatasetError, check_relative_name, is_subset_name, validate_coco
from xsyn.data.dirty import DirtyLog
from xsyn.data.importers import ORIGIN, LayoutNotFound, RawDataset, is_junk
from xsyn.io import read_json

AUX_FILE_KEYS = ("transmission_file",)  # image keys naming a file relative to the source root
ANNOTATION_DIRS = ("annotations", "annotation")  # MS-COCO / PIDray, CLCXray; else the top folder
IMAGE_DIRS = ("images", "image")  # xsyn / most COCO exports, CLCXray
# MS-COCO files that share annotations/ with the detection files but hold no boxes
NON_DETECTION_PREFIXES = ("captions_", "person_keypoints_", "image_info_", "stuff_", "panoptic_")
EMPTY_NAME_RE = re.compile(r"\s*(\.[A-Za-z0-9]{1,5})?\s*")  # "", ".png": a name without a name
ROOT_SAMPLE = 50  # images per file used to find its image folder


@dataclass
class CocoFile:
    """One annotation file of a source: its images live under ``image_root``.

    ``skip`` holds the indices of image records dropped as dirty entries (their boxes go too).
    """

    path: Path
    image_root: Path
    split: str | None
    data: dict[str, Any] | None = None  # the parsed JSON, when already read
    skip: frozenset[int] = field(default_factory=frozenset)


def is_empty_file_name(name: Any) -> bool:
    """True for ``""``, ``".png"``, ``"images/.jpg"``: a record naming no file (not a non-string)."""
    return isinstance(name, str) and bool(EMPTY_NAME_RE.fullmatch(name.replace("\\", "/").rsplit("/", 1)[-1]))


def load_source_json(path: Path, dirty: DirtyLog | None = None, split: str | None = None
                     ) -> tuple[dict[str, Any], frozenset[int]]:
    """Read and validate one source COCO file; errors name the file and the entry.

    Returns the dict and the indices of image records with an empty file name: those are
    reported to ``dirty`` (skipped with their boxes); everything else about them is still
    validated, and error messages keep the file's own indices.
    """
    try:
        coco = read_json(path)
    except (FileNotFoundError, ValueError) as e:
        raise DatasetError(str(e)) from None
    empty: dict[int, str] = {}
    if isinstance(coco, dict) and isinstance(coco.get("images"), list):
        for i, img in enumerate(coco["images"]):
            if isinstance(img, dict) and is_empty_file_name(img.get("file_name")):
                empty[i] = img["file_name"]
                img["file_name"] = f"<empty file name of images[{i}]>"  # unique, so validation passes
    validate_coco(coco, path)
    dirty = dirty if dirty is not None else DirtyLog()
    for i, name in empty.items():
        img = coco["images"][i]
        img["file_name"] = name
        boxes = sum(1 for a in coco["annotations"] if a["image_id"] == img["id"])
        dirty.add("empty_file_name", f"{path}: images[{i}] (id {img['id']})",
                  f"file_name {name!r} names no image; skipped with its {boxes} box(es)", split=split)
    return coco, frozenset(empty)


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


def image_root_candidates(source: Path, split: str | None, stem: str) -> list[Path]:
    """Folders where the images of annotation file ``stem`` may lie, most specific first.

    ``x`` runs over the split (``test`` too for a ``test_<part>``) and the tails of the
    file name: ``instances_train2017`` → ``train2017``, ``CLCXray_test`` → ``test``.
    """
    parts = stem.split("_")
    names = [split] if split else []
    names += ["test"] if split and split.startswith("test_") else []
    names += ["_".join(parts[i:]) for i in range(len(parts))]
    names = list(dict.fromkeys(names))
    return ([source / d / n for d in IMAGE_DIRS for n in names] + [source / n for n in names]
            + [source / d for d in IMAGE_DIRS] + [source])


def choose_image_root(path: Path, coco: dict[str, Any], candidates: Sequence[Path],
                      skip: frozenset[int] = frozenset()) -> Path:
    """The candidate folder that holds most of the file's first images (ties: the earlier).

    None holding any is an error naming the file, its first image and the folders tried.
    """
    names = [check_relative_name(img["file_name"], str(path), f"images[{i}]")
             for i, img in enumerate(coco["images"]) if i not in skip][:ROOT_SAMPLE]
    folders = [c for c in dict.fromkeys(candidates) if c.is_dir()]
    if not names:
        return folders[0] if folders else path.parent
    best, hits = None, 0
    for folder in folders:
        n = sum((folder / name).is_file() for name in names)
        if n > hits:
            best, hits = folder, n
    if best is None:
        tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
        raise DatasetError(f"{path}: none of its images (first: {names[0]!r}) found; looked in {tried}")
    return best


def detection_files(source: Path) -> tuple[list[Path], list[Path]]:
    """The COCO detection files of ``source`` and the JSON files beside them that are not."""
    for folder in [source / d for d in ANNOTATION_DIRS] + [source]:
        if not folder.is_dir():
            continue
        found = sorted(folder.glob("*.json"))
        ignored = [p for p in found if is_junk(p) or p.name.startswith(NON_DETECTION_PREFIXES)]
        keep = [p for p in found if p not in ignored and not is_subset_name(p.stem)]
        if keep:
            return keep, ignored
    raise LayoutNotFound(
        f"{source}: no COCO annotation file (*.json) found; looked for annotations/*.json "
        "(MS-COCO instances_*.json, PIDray), annotation/*.json (CLCXray) and *.json at the top (phantom)"
    )


def find_coco_files(source: Path, dirty: DirtyLog | None = None) -> tuple[list[CocoFile], list[str]]:
    """The annotation files of a generic COCO source with their splits and image roots, and notes."""
    paths, ignored = detection_files(source)
    splits = [split_of(p.stem) for p in paths]
    if len(paths) > 1 and None in splits:
        odd = paths[splits.index(None)]
        raise DatasetError(f"{odd}: cannot tell which split this file is (name it *train*, *val* or *test*)")
    files = []
    for path, split in zip(paths, splits, strict=True):
        coco, skip = load_source_json(path, dirty, split)
        root = choose_image_root(path, coco, image_root_candidates(source, split, path.stem), skip)
        files.append(CocoFile(path, root, split, coco, skip))
    notes = [f"ignored {len(ignored)} JSON file(s) that hold no detection boxes: "
             + ", ".join(p.name for p in ignored)] if ignored else []
    return files, notes


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
    """Name under ``data/<name>/images``: the path below ``source/images`` (``image``) or ``source``."""
    for base in [source / d for d in IMAGE_DIRS] + [source]:
        try:
            return src.relative_to(base).as_posix()
        except ValueError:
            continue
    raise DatasetError(f"{src}: image lies outside the source folder {source}")


def import_coco_files(source: Path, files: Sequence[CocoFile], dirty: DirtyLog | None = None) -> RawDataset:
    """Merge several COCO files into one :class:`RawDataset` (ids kept when unique).

    Test parts are read before the whole ``test`` file, so an image both list is taken
    once, from its part.
    """
    files = sorted(files, key=lambda f: f.split == "test")  # stable: parts before the whole test set
    loaded = []
    for f in files:
        if f.data is None:
            f.data, f.skip = load_source_json(f.path, dirty, f.split)
        loaded.append((f, f.data))
    raw = RawDataset(categories=_categories(loaded), dirty=dirty if dirty is not None else DirtyLog())
    keep = {k: _ids_unique(loaded, k) for k in ("images", "annotations", "regions")}
    if not keep["images"]:
        raw.notes.append("image ids repeat across files; images renumbered 1..N")
    counters = {"images": 0, "annotations": 0, "regions": 0}
    in_parts: set[Path] = set()
    from_parts = 0

    def new_id(kind: str, old: int) -> int:
        counters[kind] += 1
        return old if keep[kind] else counters[kind]

    for f, coco in loaded:
        image_ids: dict[int, int] = {}
        for i, rec in enumerate(coco["images"]):
            if i in f.skip:
                continue
            where = f"{f.path}: images[{i}] (id {rec['id']})"
            src = f.image_root / check_relative_name(rec["file_name"], str(f.path), where)
            if not src.is_file():
                raise DatasetError(f"{where}: image file {src} not found")
            real = src.resolve()
            if f.split == "test" and real in in_parts:
                from_parts += 1
                continue
            if f.split and f.split.startswith("test_"):
                in_parts.add(real)
            img = copy.deepcopy(rec)
            img["id"] = image_ids[rec["id"]] = new_id("images", rec["id"])
            img["file_name"] = output_name(src, source)
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
                if rec["image_id"] not in image_ids:  # its image was skipped or taken from a part
                    continue
                item = copy.deepcopy(rec)
                item["id"] = new_id(kind, rec["id"])
                item["image_id"] = image_ids[rec["image_id"]]
                item[ORIGIN] = f"{f.path}: {kind}[{i}] (id {rec['id']})"
                target.append(item)
    if from_parts:
        raw.notes.append(f"{from_parts} image(s) of the whole test file are also in a test part file; "
                         "taken once, from the part")
    return raw


def import_coco(source: Path, dirty: DirtyLog | None = None) -> RawDataset:
    """Generic COCO source (CLCXray, MS-COCO layout, phantom, ...): find its files, then merge them."""
    files, notes = find_coco_files(source, dirty)
    raw = import_coco_files(source, files, dirty)
    raw.notes += notes
    return raw
