"""``xsyn config``: print the merged, validated configuration (or just validate it)."""

from __future__ import annotations

import argparse

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="only validate, print nothing")


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args

    cfg = config_from_args(args)
    if not args.quiet:
        print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0
