"""``xsyn finetune``: train the box-grounded generator (tiny: from scratch) on a prepared dataset.

Writes a diffusers ``StableDiffusionGLIGENPipeline`` folder to ``--out`` (safetensors) with
``loss.csv``, ``loss.png`` and ``finetune.json`` beside the components, and
``stages/<name>/`` for each earlier stage (the generation model before inpainting).
Checkpoints go to ``--work-dir``; rerunning the same command resumes from the last one.
``xsyn samples`` draws the model's sample grid (a job of its own).

With several processes (``accelerate launch --num_processes N -m xsyn finetune …``, what the
workflow runs when ``finetune.gpus`` > 1) the same loop trains data-parallel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, type=Path, help="prepared dataset folder (data/<name>)")
    parser.add_argument("--out", required=True, type=Path, help="output diffusers folder")
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="checkpoints and stage snapshots (default: OUT.work); a rerun resumes from here",
    )
    parser.add_argument(
        "--max-minutes", type=float, default=None,
        help="wall-clock budget: checkpoint and stop (exit 3) when it runs out; rerun to resume",
    )


def run(args: argparse.Namespace) -> int:
    import time

    from xsyn.config import config_from_args
    from xsyn.generator.finetune import BudgetExceeded, finetune

    cfg = config_from_args(args)
    if not args.dataset.is_dir():
        raise FileNotFoundError(f"--dataset {args.dataset}: folder not found")
    start = time.monotonic()
    try:
        finetune(cfg, args.dataset, args.out, args.work_dir, args.max_minutes)
    except BudgetExceeded as e:
        print(f"xsyn finetune: {e}", file=sys.stderr)
        return 3
    print(f"xsyn finetune: wrote {args.out} in {(time.monotonic() - start) / 60:.1f} min")
    return 0
