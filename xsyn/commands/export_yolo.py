"""``xsyn export-yolo``: one prepared split → an ultralytics YOLO folder (+ ``data.yaml``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", "-d", required=True, metavar="DIR", help="prepared dataset folder (data/<name>)")
    parser.add_argument("--split", "-s", default="train", metavar="S",
                        help="annotation file stem: train, val, test, train_p05, ... (default: %(default)s)")
    parser.add_argument("--out", "-o", required=True, metavar="DIR",
                        help="folder to write (images/, labels/, data.yaml); replaced atomically")
    parser.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xsyn.data.contract import load_split
    from xsyn.data.yolo import write_data_yaml, write_yolo_split, yolo_names
    from xsyn.io import atomic_dir

    root, out = Path(args.dataset), Path(args.out)
    coco = load_split(root, args.split, check_images=True)
    names = yolo_names(coco)
    with atomic_dir(out) as tmp:
        written = write_yolo_split(coco, root / "images", tmp, link=not args.copy)
        # the yaml names the final location, which exists once atomic_dir renames tmp
        write_data_yaml(tmp / "data.yaml", [out / "images"], [out / "images"], names)
    boxes = len(coco["annotations"])
    print(f"{root}/{args.split}: {len(written)} images, {boxes} boxes, {len(names)} classes → {out}")
    return 0
