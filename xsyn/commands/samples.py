"""``xsyn samples``: a grid of a fine-tuned generator's samples, one row per class.

Example::

    xsyn samples --generator results/models/generator --dataset data/phantom \
        --out results/grids/generator.png

Columns: the generation-stage model on a blank canvas (when the folder keeps one under
``stages/``), then the inpainting model repainting a real box of another scan. A quick look
at whether fine-tuning worked; its own job, so redrawing it (e.g. with other
``synthesis.steps``) never re-runs the fine-tuning.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True, type=Path, help="generator folder written by xsyn finetune")
    parser.add_argument("--dataset", required=True, type=Path, help="prepared dataset folder (data/<name>)")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--per-class", type=int, default=2, help="samples per class and model (default 2)")


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args, resolve_device
    from xsyn.generator.factory import load_generator
    from xsyn.generator.samples import write_sample_grid
    from xsyn.io import atomic_path

    cfg = config_from_args(args)
    comps = load_generator(args.generator, device=resolve_device(cfg["device"]))
    with atomic_path(args.out, suffix=".png") as tmp:
        write_sample_grid(args.generator, args.dataset, cfg, tmp, per_class=args.per_class, comps=comps)
    print(f"{args.out}: samples of {args.generator}")
    return 0
