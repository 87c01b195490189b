"""``xsyn aggregate``: metrics of every detector run → tables, plots, ``metrics.json``.

Example::

    xsyn aggregate --metrics results/metrics --out results

Writes ``OUT/metrics.json`` (per dataset/model/split/source/share: mean ± std of AP,
AP50, AP75 over seeds, Δ vs real-only, n seeds), ``OUT/tables/main.{csv,md}``,
``OUT/tables/per_class.{csv,md}``, ``OUT/plots/map_vs_share.{png,csv}``,
``OUT/plots/per_class_ap.png``, ``OUT/plots/pr_curves.{png,csv}`` and the headline metrics
``OUT/headline/<model>/<split>/<source>.json`` (mean AP and ΔAP per share, what
``dvc metrics show`` prints); prints the main table.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", default="results/metrics", help="folder of per-run metrics JSONs")
    parser.add_argument("--out", default="results", help="results folder (metrics.json, tables/, plots/)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xsyn.report.aggregate import aggregate

    summary = aggregate(args.metrics, args.out)
    print((Path(args.out) / "tables" / "main.md").read_text(), end="")
    print(f"\n{len(summary)} table rows → {args.out}/tables, {args.out}/plots, {args.out}/metrics.json")
    return 0
