"""``xsyn candidates``: benign-object candidate regions of one shard of source scans.

Example::

    xsyn candidates --dataset data/pidray --split train_p10 --shard 0 --shards 16 \
        --out data/candidates/pidray/train_p10/shard-000-of-016.json

Writes OUT (JSON, atomically): per source image id, the candidate boxes (xywh, original
image pixels), which source found them (``regions``: the dataset's records; ``sam``: SAM
automatic masks on the run's device, with a digest of its weights; ``image``: dark blobs)
and how long it took. Every synthesis method of that shard reads this file
(``xsyn synthesize --candidates``), so SAM runs once per scan, not once per method.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="prepared real dataset folder, e.g. data/pidray")
    parser.add_argument("--split", required=True, help="source split (synthesis.source_split), e.g. train_p10")
    parser.add_argument("--shard", type=int, default=0, help="shard index, 0-based (as the synthesis shards)")
    parser.add_argument("--shards", type=int, default=1, help="shard count")
    parser.add_argument("--out", required=True, help="JSON file to write")


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args, resolve_device
    from xsyn.io import write_json
    from xsyn.synthesis.candidates import find_candidates

    cfg = config_from_args(args)
    found = find_candidates(args.dataset, args.split, args.shard, args.shards, cfg["synthesis"]["car"],
                            resolve_device(cfg["device"]))
    write_json(args.out, found)
    boxes = sum(len(b) for b in found["images"].values())
    print(f"{args.out}: {boxes} candidate regions in {len(found['images'])} scans "
          f"(source {found['source']}, {found['seconds']} s)")
    return 0
