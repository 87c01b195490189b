"""``xsyn finetune``: train the box-grounded generator (tiny: from scratch) on a prepared dataset.

Writes a diffusers ``StableDiffusionGLIGENPipeline`` folder to ``--out`` (safetensors) with
``loss.csv``, ``loss.png``, ``samples.png`` and ``finetune.json`` beside the components, and
``stages/<name>/`` for each earlier stage (the generation model before inpainting).
Checkpoints go to ``--work-dir``; rerunning the same command resumes from the last one.
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
    parser.add_argument("--no-samples", action="store_true", help="skip the samples.png grid")


def run(args: argparse.Namespace) -> int:
    import time

    from xsyn.config import config_from_args
    from xsyn.generator.finetune import BudgetExceeded, finetune
    from xsyn.generator.samples import write_sample_grid

    cfg = config_from_args(args)
    if not args.dataset.is_dir():
        raise FileNotFoundError(f"--dataset {args.dataset}: folder not found")
    start = time.monotonic()

    def samples(comps, folder: Path) -> None:
        if not args.no_samples:
            write_sample_grid(folder, args.dataset, cfg, folder / "samples.png", comps=comps)

    try:
        finetune(cfg, args.dataset, args.out, args.work_dir, args.max_minutes, extra_outputs=samples)
    except BudgetExceeded as e:
        print(f"xsyn finetune: {e}", file=sys.stderr)
        return 3
    print(f"xsyn finetune: wrote {args.out} in {(time.monotonic() - start) / 60:.1f} min")
    return 0
