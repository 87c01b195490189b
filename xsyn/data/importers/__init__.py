"""Importers: one per public X-ray format, each turning a raw tree into a :class:`RawDataset`.

An importer only *reads*: it finds its format's layout under the source folder (each
accepts the layouts the dataset's own release and the projects that load it use, and
says which it looked for when it finds none), parses the annotations, resolves every
image to an absolute path and names the split when the format has one. Known-benign
defects go to the :class:`~xsyn.data.dirty.DirtyLog` (skipped or fixed, and reported).
Checking images, carving splits, captions and writing the contract folder are
:mod:`xsyn.data.prepare`'s job, so every format gets them identically. Modules are
imported lazily by :func:`get_importer`.
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
from xsyn.data.dirty import DirtyLog

ORIGIN = "_origin"  # key on image/annotation records: where it came from (stripped before writing)


class LayoutNotFound(DatasetError):
    """The source holds none of the format's layouts; the message lists those looked for."""


@dataclass
class RawDataset:
    """A dataset in memory, before splitting and writing.

    ``images`` are COCO image records whose ``file_name`` is the name wanted under
    ``data/<name>/images/`` (relative, unique); ``sources`` maps image id → the absolute
    file to link or convert. ``splits`` maps image id → split name (``train``, ``val``,
    ``test`` or ``test_<subset>``) and is empty when the format has no splits.
    ``aux_files`` maps a path relative to the dataset root → the source file to link there
    (phantom transmissions). ``dirty`` holds the entries skipped, clamped or folded on
    purpose; ``notes`` other things the user should know (renumbered ids, ignored files).
    Records may carry an ``_origin`` string (file and line/entry) used in error messages.
    """

    categories: list[dict[str, Any]]
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[int, Path] = field(default_factory=dict)
    splits: dict[int, str] = field(default_factory=dict)
    regions: list[dict[str, Any]] = field(default_factory=list)
    aux_files: dict[str, Path] = field(default_factory=dict)
    dirty: DirtyLog = field(default_factory=DirtyLog)
    notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        """One line per skipped entry (file, entry, reason)."""
        return self.dirty.lines("skipped")

    def category_id(self, name: str, where: str, image_id: int | None = None) -> int:
        """Category id of a class name; a name differing only in case is folded (and reported).

        An unknown name is an error naming ``where``: a typo or a foreign file, not a
        benign defect.
        """
        for c in self.categories:
            if c["name"] == name:
                return c["id"]
        folded = [c for c in self.categories if c["name"].casefold() == name.casefold()]
        if len(folded) == 1:
            canonical = folded[0]["name"]
            self.dirty.add("class_case", where, f"class {name!r} folded into {canonical!r}",
                           cls=canonical, image_id=image_id)
            return folded[0]["id"]
        known = ", ".join(c["name"] for c in self.categories)
        raise DatasetError(f"{where}: unknown class name {name!r} (known: {known})")


Importer = Callable[[Path, DirtyLog], RawDataset]

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


def import_dataset(fmt: str, source: str | os.PathLike, strict: bool = False) -> RawDataset:
    """Read the raw tree ``source`` of format ``fmt`` into memory.

    When ``source`` holds none of the format's layouts but its one sub-folder does (the
    wrapper folder an archive unpacks into: ``OPIXray_Dataset/``, ``pidray/``), that one
    is read. ``strict``: the first dirty entry is an error instead of a reported skip/fix.
    """
    source = Path(source)
    if not source.is_dir():
        raise DatasetError(f"{source}: dataset source folder not found")
    importer = get_importer(fmt)
    source = source.resolve()
    try:
        return importer(source, DirtyLog(strict))
    except LayoutNotFound:
        inner = [d for d in sorted(source.iterdir())
                 if d.is_dir() and not d.name.startswith(".") and d.name != "__MACOSX"]  # zip by-product
        if len(inner) != 1:
            raise
        try:
            raw = importer(inner[0], DirtyLog(strict))
        except LayoutNotFound:
            raise LayoutNotFound(f"{source}: neither it nor its one folder {inner[0].name}/ holds a "
                                 f"{fmt} layout") from None
        raw.notes.append(f"layout found in the wrapper folder {inner[0]}")
        return raw


def is_junk(path: Path) -> bool:
    """macOS archive by-products (``._x.json``, ``._x.xml``) sit beside real files; never data."""
    return path.name.startswith("._")


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


class ImageFinder:
    """Resolve images named in annotations, tolerating another extension or letter case.

    OPIXray/HiXray/SIXray annotations name ``x.jpg`` where the file may be ``x.tiff`` or
    ``x.TIFF`` (the official OPIXray/HiXray loaders try ``.TIFF``, ``.tiff`` and ``.jpg``
    in turn): the one file with the same stem and an image suffix is taken (two such
    files are ambiguous: an error naming both). A stem that matches only when case is
    ignored (``p00001`` for ``P00001.jpg``) is taken too and reported as folded in
    ``dirty``. Each folder is listed once, so resolving N images costs O(N).
    """

    def __init__(self, dirty: DirtyLog | None = None) -> None:
        self._stems: dict[Path, dict[str, list[Path]]] = {}
        self._dirty = dirty if dirty is not None else DirtyLog()

    def _index(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._stems:
            index: dict[str, list[Path]] = {}
            if folder.is_dir():
                for p in sorted(folder.iterdir()):
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not is_junk(p):
                        index.setdefault(p.stem, []).append(p)
            self._stems[folder] = index
        return self._stems[folder]

    def images(self, folder: Path) -> list[Path]:
        """Every image file directly in ``folder``, sorted."""
        return sorted(p for paths in self._index(folder).values() for p in paths)

    def find(self, folder: Path, name: str, where: str, split: str | None = None,
             image_id: int | None = None) -> Path | None:
        """The file ``name`` stands for, or None when there is none.

        ``split`` and ``image_id`` (the id the image will get) label a folded entry.
        """
        path = folder / name
        if path.is_file():
            return path
        index = self._index(path.parent)
        stem = Path(name).stem
        candidates = index.get(stem, [])
        folded = False
        if not candidates:
            candidates = [p for s, paths in index.items() if s.casefold() == stem.casefold() for p in paths]
            folded = bool(candidates)
        if len(candidates) > 1:
            found = ", ".join(p.name for p in candidates)
            raise DatasetError(f"{where}: image {name!r} is ambiguous in {folder}: {found}")
        if not candidates:
            return None
        if folded:
            self._dirty.add("file_name_case", where, f"image {name!r} found as {candidates[0].name!r}",
                            split=split, image_id=image_id)
        return candidates[0]

    def __call__(self, folder: Path, name: str, where: str, split: str | None = None,
                 image_id: int | None = None) -> Path:
        found = self.find(folder, name, where, split, image_id)
        if found is None:
            raise DatasetError(f"{where}: image {name!r} not found in {folder}")
        return found


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
