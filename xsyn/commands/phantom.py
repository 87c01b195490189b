"""``xsyn phantom``: simulate dual-energy X-ray baggage scans with exact labels.

Writes ``DIR/images/<stem>.png`` (pseudo-colour), ``DIR/transmissions/<stem>.png``
(16-bit, T_low stacked over T_high) and ``DIR/annotations.json`` (COCO + ``regions``),
atomically. Defaults come from the ``phantom:`` config section; flags override it.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (replaced atomically)")
    parser.add_argument("--num-images", type=int, default=None, metavar="N", help="scans to write (phantom.num_images)")
    parser.add_argument("--image-size", type=int, default=None, metavar="S", help="side in px (phantom.image_size)")
    parser.add_argument("--seed", type=int, default=None, metavar="K", help="random seed (phantom.seed)")
    parser.add_argument("--workers", type=int, default=None, metavar="W", help="processes (phantom.workers)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args
    from xsyn.data.phantom import generate, params_from_config

    cfg = config_from_args(args)["phantom"]
    num = args.num_images if args.num_images is not None else cfg["num_images"]
    seed = args.seed if args.seed is not None else cfg["seed"]
    workers = args.workers if args.workers is not None else cfg["workers"]
    params = params_from_config(cfg, image_size=args.image_size)
    coco = generate(args.out, params, num, seed, workers=max(1, workers), progress=not args.no_progress)
    n_ann, n_reg = len(coco["annotations"]), len(coco["regions"])
    hidden = sum(img["hidden_items"] for img in coco["images"])
    print(f"{args.out}: {len(coco['images'])} scans, {n_ann} labelled items "
          f"({hidden} too hidden to label), {n_reg} benign regions")
    return 0
