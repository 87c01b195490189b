"""``xsyn compare``: the study's paired differences with bootstrap CIs over seeds × test images.

Example::

    xsyn compare --metrics results/metrics --dataset data/phantom --out results
    xsyn compare --metrics results/metrics/phantom/*/*/p10/s*.json --dataset data/phantom --out results

Reads every metrics file and the predictions beside it, rescores each run on resampled
test images (pycocotools' accumulation; ``report.bootstrap``), and writes
``OUT/tables/study.{md,csv}`` (AP mean ± std over seeds with its CI; Δ to each of
``report.bootstrap.references`` with its paired CI and half-width),
``OUT/plots/study_ap_vs_share.{png,csv}`` and ``OUT/study.json``; prints the table.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics", nargs="+", default=["results/metrics"],
        help="per-run metrics JSONs, or one folder of them (the workflow passes its matrix's files)",
    )
    parser.add_argument("--dataset", required=True, help="the prepared dataset the runs were scored on")
    parser.add_argument("--out", default="results", help="results folder (tables/, plots/, study.json)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xsyn.config import config_from_args
    from xsyn.report.study import write_study

    cfg = config_from_args(args)
    df = write_study(args.metrics, args.dataset, args.out, cfg["report"]["bootstrap"])
    print((Path(args.out) / "tables" / "study.md").read_text(), end="")
    print(f"\n{len(df)} rows → {args.out}/tables/study.md, {args.out}/plots/study_ap_vs_share.png, {args.out}/study.json")
    return 0
