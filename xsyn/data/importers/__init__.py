"""Importers: one per public X-ray format, each turning a raw tree into a :class:`RawDataset`.

An importer only *reads*: it parses the source annotations, resolves every image to an
absolute path and names the split when the format has one. Checking images, carving
splits, captions and writing the contract folder are :mod:`xsyn.data.prepare`'s job, so
every format gets them identically. Modules are imported lazily by :func:`get_importer`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xsyn.data.contract import DatasetError

ORIGIN = "_origin"  # key on image/annotation records: where it came from (stripped before writing)


@dataclass
class RawDataset:
    """A dataset in memory, before splitting and writing.

    ``images`` are COCO image records whose ``file_name`` is the name wanted under
    ``data/<name>/images/`` (relative, unique); ``sources`` maps image id → the absolute
    file to link or convert. ``splits`` maps image id → split name (``train``, ``val``,
    ``test`` or ``test_<subset>``) and is empty when the format has no splits.
    ``aux_files`` maps a path relative to the dataset root → the source file to link there
    (phantom transmissions). ``skipped`` lists entries dropped on purpose, one line each; ``notes`` other things the
    user should know (renumbered ids).
    Records may carry an ``_origin`` string (file and line/entry) used in error messages.
    """

    categories: list[dict[str, Any]]
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[int, Path] = field(default_factory=dict)
    splits: dict[int, str] = field(default_factory=dict)
    regions: list[dict[str, Any]] = field(default_factory=list)
    aux_files: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def category_id(self, name: str, where: str) -> int:
        """Category id of a class name; an unknown name is an error naming ``where``."""
        for c in self.categories:
            if c["name"] == name:
                return c["id"]
        known = ", ".join(c["name"] for c in self.categories)
        raise DatasetError(f"{where}: unknown class name {name!r} (known: {known})")


Importer = Callable[[Path], RawDataset]

# format name → "module:function" under xsyn.data.importers
IMPORTERS: dict[str, str] = {
    "coco": "coco:import_coco",
    "clcxray": "coco:import_coco",
    "phantom": "coco:import_coco",
    "pidray": "pidray:import_pidray",
    "opixray": "txt_boxes:import_opixray",
    "hixray": "txt_boxes:import_hixray",
    "sixray": "sixray:import_sixray",
}


def get_importer(fmt: str) -> Importer:
    if fmt not in IMPORTERS:
        raise DatasetError(f"unknown dataset format {fmt!r} (known: {', '.join(sorted(IMPORTERS))})")
    module_name, func = IMPORTERS[fmt].split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, func)


def import_dataset(fmt: str, source: str | os.PathLike) -> RawDataset:
    """Read the raw tree ``source`` of format ``fmt`` into memory."""
    source = Path(source)
    if not source.is_dir():
        raise DatasetError(f"{source}: dataset source folder not found")
    return get_importer(fmt)(source.resolve())


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


class ImageFinder:
    """Resolve images named in annotations, tolerating a different image extension.

    OPIXray/HiXray/SIXray annotations name ``x.jpg`` where the file may be ``x.tiff`` or
    ``x.TIFF``; the one file with the same stem and an image suffix is taken (two such
    files are ambiguous: an error naming both). Each folder is listed once, so resolving
    N images costs O(N), not N directory scans.
    """

    def __init__(self) -> None:
        self._stems: dict[Path, dict[str, list[Path]]] = {}

    def _index(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._stems:
            index: dict[str, list[Path]] = {}
            if folder.is_dir():
                for p in sorted(folder.iterdir()):
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                        index.setdefault(p.stem, []).append(p)
            self._stems[folder] = index
        return self._stems[folder]

    def __call__(self, folder: Path, name: str, where: str) -> Path:
        path = folder / name
        if path.is_file():
            return path
        candidates = self._index(path.parent).get(Path(name).stem, [])
        if len(candidates) > 1:
            found = ", ".join(p.name for p in candidates)
            raise DatasetError(f"{where}: image {name!r} is ambiguous in {folder}: {found}")
        if candidates:
            return candidates[0]
        raise DatasetError(f"{where}: image {name!r} not found in {folder}")


def open_image(path: Path):
    """``PIL.Image.open`` without ultralytics' patch.

    Once ultralytics is imported, its wrapper of ``Image.open`` answers an unidentifiable
    file by installing pi-heif; offline that raises ModuleNotFoundError instead of PIL's
    error, which would hide "this image is unreadable" behind an unrelated message.
    """
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open)(path)


def image_size(path: Path, where: str) -> tuple[int, int]:
    """(width, height) from the image header; an unreadable file is an error naming it."""
    try:
        with open_image(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{where}: unreadable image {path}: {e}") from None


def name_categories(names: list[str]) -> list[dict[str, Any]]:
    """Class names in order → categories with ids 1..K."""
    return [{"id": i, "name": n} for i, n in enumerate(names, 1)]
