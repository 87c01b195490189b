"""PIDray: COCO files ``annotations/xray_train.json`` and ``xray_test_{easy,hard,hidden}.json``.

Images live in ``train/``, ``easy/``, ``hard/`` and ``hidden/``; they keep those folder
names under ``data/<name>/images/`` (so equal file names in two folders cannot clash).
The splits are the dataset's own: train, test_easy, test_hard, test_hidden (prepare adds
val carved from train and test = the union of the three test sets).
"""

from __future__ import annotations

from pathlib import Path

from xsyn.data.contract import DatasetError
from xsyn.data.importers import RawDataset
from xsyn.data.importers.coco import CocoFile, import_coco_files

# split → (annotation file, image folder)
PIDRAY_FILES = {
    "train": ("xray_train.json", "train"),
    "test_easy": ("xray_test_easy.json", "easy"),
    "test_hard": ("xray_test_hard.json", "hard"),
    "test_hidden": ("xray_test_hidden.json", "hidden"),
}


def import_pidray(source: Path) -> RawDataset:
    files = []
    for split, (json_name, folder) in PIDRAY_FILES.items():
        path = source / "annotations" / json_name
        if not path.is_file():
            raise DatasetError(f"{path}: PIDray annotation file not found")
        if not (source / folder).is_dir():
            raise DatasetError(f"{source / folder}: PIDray image folder not found")
        files.append(CocoFile(path, source / folder, split))
    return import_coco_files(source, files)
