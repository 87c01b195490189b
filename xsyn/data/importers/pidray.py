"""PIDray: COCO files in ``annotations/``, in either of the two public releases.

- **First release**: ``annotations/xray_train.json`` and ``xray_test_{easy,hard,hidden}.json``,
  images in ``train/``, ``easy/``, ``hard/`` and ``hidden/`` (the layout most loaders of
  PIDray use, e.g. the ones that convert it to YOLO).
- **Extended release** (lutao2021/PIDray, ``configs/*_with_R0R1.py``):
  ``annotations/train.json`` and ``annotations/test.json``, images in ``train/`` and
  ``test/``; the Xsyn authors' copy adds ``annotations/test_{easy,hard,hidden}.json``
  (subsets of ``test.json`` whose images lie in ``test/``).

The image folder of each file is found as for any COCO file (``train/``, ``easy/``,
``test/easy/``, ``test/``, ``images/…``, ``image/…``: the one holding its images), and
images keep their folder under ``data/<name>/images/`` (equal file names in two folders
cannot clash). Splits: train, test_easy, test_hard, test_hidden when the level files
exist (prepare adds val carved from train and test = all test images), else train and test.
"""

from __future__ import annotations

from pathlib import Path

from xsyn.data.contract import DatasetError
from xsyn.data.dirty import DirtyLog
from xsyn.data.importers import LayoutNotFound, RawDataset
from xsyn.data.importers.coco import (
    ANNOTATION_DIRS,
    IMAGE_DIRS,
    CocoFile,
    choose_image_root,
    import_coco_files,
    load_source_json,
)

LEVELS = ("easy", "hard", "hidden")
PREFIXES = ("xray_", "")  # first release, extended release


def _folders(source: Path, names: list[str]) -> list[Path]:
    return [source / n for n in names] + [source / d / n for d in IMAGE_DIRS for n in names]


def find_pidray_files(source: Path) -> dict[str, Path]:
    """Split → annotation file, for whichever release lies under ``source``."""
    for ann_dir in (source / d for d in ANNOTATION_DIRS):
        for prefix in PREFIXES:
            train = ann_dir / f"{prefix}train.json"
            if not train.is_file():
                continue
            files = {"train": train}
            for level in LEVELS:
                if (ann_dir / f"{prefix}test_{level}.json").is_file():
                    files[f"test_{level}"] = ann_dir / f"{prefix}test_{level}.json"
            if (ann_dir / f"{prefix}test.json").is_file():
                files["test"] = ann_dir / f"{prefix}test.json"
            else:  # without the whole test file, the three level files are the test set
                for level in LEVELS:
                    if f"test_{level}" not in files:
                        path = ann_dir / f"{prefix}test_{level}.json"
                        raise DatasetError(f"{path}: PIDray annotation file not found")
            return files
    raise LayoutNotFound(
        f"{source}: no PIDray annotation files; looked for annotations/xray_train.json + "
        "xray_test_{easy,hard,hidden}.json (first release) and annotations/train.json + test.json "
        "[+ test_{easy,hard,hidden}.json] (extended release)"
    )


def import_pidray(source: Path, dirty: DirtyLog | None = None) -> RawDataset:
    files = []
    for split, path in find_pidray_files(source).items():
        coco, skip = load_source_json(path, dirty, split)
        if split == "train":
            candidates = _folders(source, ["train"])
        elif split == "test":
            candidates = _folders(source, ["test"])
        else:
            level = split.removeprefix("test_")
            candidates = _folders(source, [level, f"test/{level}", "test"])
        root = choose_image_root(path, coco, candidates, skip)
        files.append(CocoFile(path, root, split, coco, skip))
    return import_coco_files(source, files, dirty)
