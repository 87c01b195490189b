"""``xsyn import-yolo``: a YOLO folder (``images/`` + ``labels/``) → one contract COCO file."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yolo", "-y", required=True, metavar="DIR", help="folder with images/ and labels/")
    parser.add_argument("--names-from", required=True, metavar="DATASET_OR_YAML",
                        help="class names: a prepared dataset folder (keeps its category ids) "
                        "or an ultralytics data.yaml (ids 1..K)")
    parser.add_argument("--out", "-o", required=True, metavar="FILE.json", help="COCO file to write")


def class_names(source: str) -> list:
    """Classes in YOLO index order: COCO categories of a dataset, or a data.yaml's names."""
    from pathlib import Path

    from xsyn.config import read_yaml
    from xsyn.data.contract import DatasetError, annotation_path, load_coco

    p = Path(source)
    if p.is_dir():
        stems = sorted(p.glob("annotations/*.json"))
        if not stems:
            raise DatasetError(f"{p}: no annotations/*.json (not a prepared dataset)")
        first = annotation_path(p, "train") if annotation_path(p, "train").is_file() else stems[0]
        return sorted(load_coco(first)["categories"], key=lambda c: c["id"])
    data = read_yaml(p)
    names = data.get("names")
    if isinstance(names, dict):
        return [names[k] for k in sorted(names)]
    if isinstance(names, list):
        return names
    raise DatasetError(f"{p}: no 'names' list or mapping")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xsyn.data.contract import save_coco, validate_coco
    from xsyn.data.yolo import read_yolo

    coco = read_yolo(args.yolo, class_names(args.names_from))
    validate_coco(coco, args.out, Path(args.yolo) / "images")
    save_coco(args.out, coco)
    print(f"{args.yolo}: {len(coco['images'])} images, {len(coco['annotations'])} boxes → {args.out} "
          f"(file names relative to {Path(args.yolo) / 'images'})")
    return 0
