"""``xsyn evaluate``: predict on real test split(s) and score with pycocotools.

Example::

    xsyn evaluate --weights results/runs/phantom/yolov8n/xsyn-a/p10/s0/weights.pt \
        --dataset data/phantom --splits test \
        --out results/metrics/phantom/yolov8n/xsyn-a/p10/s0.json

Writes OUT (run identity, the 12 COCO stats, per-class AP/AP50, PR curves per split)
and ``<OUT stem>.predictions.<split>.json`` (COCO results) beside it.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="RUN/weights.pt written by train-detector")
    parser.add_argument("--dataset", required=True, help="prepared real dataset folder, e.g. data/phantom")
    parser.add_argument(
        "--splits", nargs="+", default=None,
        help="splits to score (default: config detection.eval_splits, what the workflow uses); "
        "PIDray: test_easy test_hard test_hidden",
    )
    parser.add_argument("--out", required=True, help="metrics JSON path")


def run(args: argparse.Namespace) -> int:
    from xsyn.config import config_from_args, resolve_device
    from xsyn.detection.evaluate import evaluate_weights

    cfg = config_from_args(args)
    splits = args.splits or cfg["detection"]["eval_splits"]
    metrics = evaluate_weights(
        args.weights, args.dataset, splits, args.out, cfg["detection"], device=resolve_device(cfg["device"])
    )
    for split, result in metrics["splits"].items():
        s = result["stats"]
        print(f"{split}: AP {s['AP']:.4f}  AP50 {s['AP50']:.4f}  AP75 {s['AP75']:.4f}  "
              f"({result['n_detections']} detections on {result['n_images']} images)")
    print(f"metrics → {args.out}")
    return 0
