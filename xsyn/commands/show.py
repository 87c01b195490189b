"""``xsyn show``: a contact sheet of scans with class-coloured boxes (and heat maps).

Boxes are the annotations' ``bbox`` (solid); where an annotation carries
``requested_bbox`` (synthetic sets) that box is drawn dashed. ``--heatmaps`` takes an
``.npz`` whose keys are ``"<image_id>:<label>"`` with HxW float arrays; those maps are
drawn beside their scan, and images that have maps are shown first.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, metavar="FILE.json", help="COCO file of the contract")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder the file_names are relative to")
    parser.add_argument("--out", required=True, metavar="PNG", help="contact sheet to write")
    parser.add_argument("--n", type=int, default=8, help="scans to show (default 8)")
    parser.add_argument("--cols", type=int, default=4, help="columns (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="which scans: random choice with this seed")
    parser.add_argument("--cell", type=int, default=256, help="tile side in px (default 256)")
    parser.add_argument("--heatmaps", default=None, metavar="FILE.npz",
                        help='heat maps keyed "<image_id>:<label>" shown beside their scan')


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from xsyn.data.contract import DatasetError, annotations_by_image, category_names, load_coco
    from xsyn.io import atomic_path
    from xsyn.report.grid import GridItem, draw_grid

    coco = load_coco(args.annotations)
    names = category_names(coco)
    by_image = annotations_by_image(coco)
    heat: dict[int, list[tuple[str, np.ndarray]]] = {}
    if args.heatmaps:
        with np.load(args.heatmaps) as z:
            for key in z.files:
                img_id, _, label = key.partition(":")
                if not img_id.isdigit() or not label:
                    raise DatasetError(f"{args.heatmaps}: key {key!r} must look like '<image_id>:<label>'")
                heat.setdefault(int(img_id), []).append((label, z[key]))
    images = coco["images"]
    if not images:
        raise DatasetError(f"{args.annotations}: no images to show")
    rng = np.random.default_rng(args.seed)
    with_maps = [im for im in images if im["id"] in heat]
    rest = [im for im in images if im["id"] not in heat]
    order = with_maps + [rest[i] for i in rng.permutation(len(rest))]
    chosen = order[: max(args.n, 1)]
    items = []
    for im in chosen:
        path = Path(args.images) / im["file_name"]
        if not path.is_file():
            raise DatasetError(f"{args.annotations}: image {im['id']}: file {path} not found")
        anns = by_image[im["id"]]
        items.append(GridItem(
            image=Image.open(path).convert("RGB"),
            boxes=[(a["bbox"], names[a["category_id"]]) for a in anns],
            dashed=[(a["requested_bbox"], names[a["category_id"]]) for a in anns if a.get("requested_bbox")],
            heatmaps=heat.get(im["id"], []),
            title=f"{im['id']}: {im['file_name']}" if heat else None,
        ))
    sheet = draw_grid(items, cols=args.cols, cell=args.cell, labels=[names[k] for k in sorted(names)])
    with atomic_path(args.out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    print(f"{args.out}: {len(items)} scans")
    return 0
