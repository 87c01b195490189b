"""``xsyn gather``: merge complete synthesis shards into one synthetic dataset.

Example::

    xsyn gather --shards data/synthetic-shards/phantom/xsyn-a/shard-* --out data/synthetic/phantom/xsyn-a

Writes OUT atomically: ``annotations.json`` (ids renumbered, provenance kept) + ``images/``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", nargs="+", required=True, metavar="DIR", help="shard folders")
    parser.add_argument("--out", required=True, help="synthetic set folder to write")


def run(args: argparse.Namespace) -> int:
    from xsyn.data.shards import gather

    merged = gather(args.shards, args.out)
    print(f"{args.out}: {len(merged['images'])} images, {len(merged['annotations'])} boxes "
          f"from {len(args.shards)} shards")
    return 0
