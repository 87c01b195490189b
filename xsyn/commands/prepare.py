"""``xsyn prepare``: import a raw dataset tree into the xsyn contract (``data/<name>/``).

Known-benign defects of real copies (a box a few pixels outside its image, an empty file
name, an annotation without image or an image without annotation, class-name case) are
fixed or skipped and reported in ``<out>/prepare_report.json``; ``--strict`` stops at the
first instead. Anything else wrong stops with an error naming the file and the entry.
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", "-f", dest="fmt", metavar="F",
                        help="phantom | pidray | opixray | hixray | sixray | clcxray | coco (default: dataset.format)")
    parser.add_argument("--source", "-s", metavar="DIR", help="raw tree to import (default: dataset.source)")
    parser.add_argument("--name", "-n", metavar="N", help="dataset name (default: dataset.name)")
    parser.add_argument("--out", "-o", metavar="DIR",
                        help="dataset folder to write, replaced atomically (default: data/<name>)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="threads that decode and check images (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="stop at the first dirty entry instead of fixing or skipping it and "
                        "reporting it (default: dataset.strict)")


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args
    from xsyn.data.prepare import PrepareOptions, format_summary, prepare_dataset

    ds = config_from_args(args)["dataset"]
    name = args.name or ds["name"]
    out = args.out or os.path.join("data", name)
    opts = PrepareOptions(
        val_fraction=ds["val_fraction"],
        test_fraction=ds["test_fraction"],
        subset_shares=ds["subset_shares"],
        split_seed=ds["split_seed"],
        link_images=ds["link_images"],
        workers=args.workers,
        progress=not args.no_progress,
        strict=bool(args.strict or ds["strict"]),
        clamp_px=ds["clamp_px"],
    )
    fmt, source = args.fmt or ds["format"], args.source or ds["source"]
    summary = prepare_dataset(fmt, source, out, opts)
    print(f"prepared {fmt} dataset {source} → {out}")
    print(format_summary(summary))
    print("images: " + ", ".join(f"{n} {how}" for how, n in summary["files"].items()))
    return 0
