"""``xsyn train-detector``: train one ultralytics detector on real + synthetic data.

Example (one cell of the experiment matrix)::

    xsyn train-detector --dataset data/phantom --model yolov8n.yaml --share 10 \
        --source xsyn-a --seed 0 --out results/runs/phantom/yolov8n/xsyn-a/p10/s0

Sources are synthetic sets joined with '+' (``xsyn-a+tip``), ``none`` (real only), or the
study's controls ``real-repeat`` and ``budget`` (:data:`xsyn.methods.CONTROLS`); how many
images of each one epoch shows is ``detection.mix``.

Writes ``OUT/weights.pt`` (last, atomically), ``OUT/classes.json``, ``OUT/run.json``,
the YOLO mix under ``OUT/mix`` and ultralytics' logs under ``OUT/{train,pretrain,finetune}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="prepared real dataset folder, e.g. data/phantom")
    parser.add_argument("--model", required=True,
                        help="ultralytics model yaml (yolov8n.yaml, rtdetr-l.yaml: random init) or a local .pt "
                        "(its weights, e.g. a COCO-pretrained yolov8s.pt)")
    parser.add_argument("--name", default=None,
                        help="the run's model name in tables (default: yolov8n for yolov8n.yaml, yolov8s.pt for a .pt)")
    parser.add_argument("--share", type=float, required=True, help="percent of real training data (100 = train.json)")
    parser.add_argument(
        "--source", default="none",
        help="synthetic source(s) joined with '+', e.g. xsyn-a or xsyn-a+tip; 'none' = real only; "
             "controls: 'real-repeat' (real subset oversampled), 'budget' (+ the generator's pre-training scans)",
    )
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="run folder, e.g. results/runs/phantom/yolov8n/xsyn-a/p10/s0")
    parser.add_argument(
        "--synthetic-root", default=None,
        help="folder holding one synthetic set per source (default: data/synthetic/<dataset name>)",
    )
    parser.add_argument(
        "--budget", default=None,
        help="prepared dataset behind the source 'budget' (the generator's labelled pre-training scans; "
             "its split is detection.budget.split)",
    )


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args, resolve_device
    from xsyn.detection.train import train_detector
    from xsyn.methods import parse_sources

    cfg = config_from_args(args, arm=args.source)
    dataset = Path(args.dataset)
    sources = parse_sources(args.source)
    synthetic_root = Path(args.synthetic_root or Path("data") / "synthetic" / dataset.name)
    record = train_detector(
        dataset, args.model, args.share, sources, args.seed, args.out, synthetic_root,
        cfg["detection"], device=resolve_device(cfg["device"]), name=args.name, budget=args.budget,
    )
    print(
        f"trained {record['model']} ({record['init']['kind']}) on {record['dataset']} share {args.share:g}% + {record['source']} "
        f"(seed {args.seed}, images {record['images']}) in {record['train_seconds']} s → {args.out}/weights.pt"
    )
    return 0
