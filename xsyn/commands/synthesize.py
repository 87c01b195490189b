"""``xsyn synthesize``: generate one shard of a synthetic set.

Example::

    xsyn synthesize --method xsyn-a --dataset data/phantom --generator results/models/generator \
        --shard 0 --shards 2 --out data/synthetic-shards/phantom/xsyn-a/shard-000-of-002

Writes OUT atomically (``annotations.json`` + ``images/``; with ``synthesis.bom.write_non_bom``
also ``images/non_bom/``). A complete OUT is left as is (resume). The methods are those of
:data:`xsyn.methods.METHODS` (``xsyn synthesize --help`` lists them).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xsyn.methods import METHODS, describe_methods

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "methods:\n" + "\n".join("  " + line for line in describe_methods().splitlines())
    parser.add_argument("--method", required=True, choices=list(METHODS), help="synthetic-set recipe (see below)")
    parser.add_argument("--dataset", required=True, help="prepared real dataset folder, e.g. data/phantom")
    parser.add_argument("--generator", default=None,
                        help="generator folder (diffusers GLIGEN pipeline); not needed for tip")
    parser.add_argument("--candidates", default=None,
                        help="the shard's candidate regions (JSON from xsyn candidates); generator methods "
                        "find them on the fly without it")
    parser.add_argument("--shard", type=int, default=0, help="shard index, 0-based")
    parser.add_argument("--shards", type=int, default=1, help="shard count")
    parser.add_argument("--out", required=True, help="shard folder to write")


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args
    from xsyn.synthesize import synthesize_shard

    cfg = config_from_args(args, arm=args.method)
    summary = synthesize_shard(cfg, args.method, args.dataset, args.generator, args.shard,
                               args.shards, args.out, candidates=args.candidates)
    print(json.dumps(summary))
    return 0
