"""The ``xsyn`` command line: the only way Snakemake rules touch the package.

Subcommands live in :mod:`xsyn.commands`, one module each, imported only when that
subcommand runs, so ``xsyn --help`` answers instantly without importing torch.
Each module defines ``add_arguments(parser)`` and ``run(args) -> int | None``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import xsyn
from xsyn.config import ConfigError

# name → (module, one-line purpose), in workflow order.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("xsyn.commands.config", "validate the configuration and print it merged"),
    "phantom": ("xsyn.commands.phantom", "simulate dual-energy X-ray baggage scans with exact labels"),
    "prepare": ("xsyn.commands.prepare", "import a dataset (PIDray, OPIXray, HiXray, SIXray, COCO, phantom) into the xsyn contract"),
    "export-yolo": ("xsyn.commands.export_yolo", "write a prepared split in ultralytics YOLO format"),
    "import-yolo": ("xsyn.commands.import_yolo", "read a YOLO-format folder back into the xsyn contract"),
    "show": ("xsyn.commands.show", "draw a grid of scans with their boxes (and attention maps)"),
    "finetune": ("xsyn.commands.finetune", "train the box-grounded generator (generation, then inpainting)"),
    "samples": ("xsyn.commands.samples", "draw a grid of a fine-tuned generator's samples, one row per class"),
    "candidates": ("xsyn.commands.candidates", "find benign-object candidate regions of source scans (dataset records, SAM, or image blobs)"),
    "synthesize": ("xsyn.commands.synthesize", "generate one shard of a synthetic set (Xsyn-M/A, CAR, BOM, TIP, ...)"),
    "gather": ("xsyn.commands.gather", "merge synthesis shards into one synthetic dataset"),
    "train-detector": ("xsyn.commands.train_detector", "train an ultralytics detector on real + synthetic data"),
    "evaluate": ("xsyn.commands.evaluate", "score a detector on real test splits with pycocotools"),
    "aggregate": ("xsyn.commands.aggregate", "collect metrics into tables and plots (mean ± std over seeds)"),
    "compare": ("xsyn.commands.compare", "paired differences between arms with bootstrap CIs over seeds × test images"),
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config", "-c", action="append", default=[], metavar="PROFILE",
        help="profile name (smoke, paper) or YAML file merged over the smoke defaults; repeatable",
    )
    group.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override one value, e.g. --set synthesis.steps=50; repeatable",
    )
    group.add_argument(
        "--config-json", action="append", default=[], metavar="JSON",
        help="a JSON fragment merged over the config (what Snakemake rules pass)",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xsyn",
        description="Labelled synthetic X-ray baggage scans from a box-grounded diffusion model, "
        "and the detector experiments that measure whether they help.",
        epilog="Run `xsyn COMMAND --help` for a command's options. "
        "The whole workflow: `snakemake --cores all` (see README).",
    )
    parser.add_argument("--version", action="version", version=f"xsyn {xsyn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, purpose) in COMMANDS.items():
        p = sub.add_parser(name, help=purpose, description=purpose)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            add_config_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        result = args._run(args)
    except ConfigError as e:
        print(f"xsyn {args.command}: configuration error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        # Bad input (DatasetError is a ValueError): one clear line, no traceback.
        print(f"xsyn {args.command}: error: {e}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
