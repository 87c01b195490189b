"""Is the phantom detection task learnable but not trivial? Train YOLO, score with COCO mAP.

Usage::

    python benchmarks/phantom_detector_sanity.py [--train 2000] [--test 500] [--size 256]
        [--epochs 5 | --hours 0.3] [--threads 1] [--out /tmp/xsyn_detector_sanity]

Generates ``train + test`` phantom scans (one seed, disjoint scans), exports the first
``train`` to YOLO format, trains ultralytics ``yolov8n.yaml`` from scratch (no download)
on CPU with ``workers=0``, predicts on the ``test`` held-out scans and scores them with
pycocotools (:func:`xsyn.detection.evaluate.coco_evaluate`). Prints AP (mAP50-95), AP50
and per-class AP, and writes them to ``OUT/metrics.json``. ``--hours`` caps training
time instead of epochs (ultralytics then fits its schedule to the time).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hours", type=float, default=None, help="train for this long instead of --epochs")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes for simulating the scans")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="/tmp/xsyn_detector_sanity")
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)

    from xsyn.data.phantom import SceneParams, generate
    from xsyn.data.yolo import write_data_yaml, write_yolo_split
    from xsyn.detection.evaluate import coco_evaluate
    from xsyn.detection.predict import predict_coco
    from xsyn.detection.train import build_model
    from xsyn.io import write_json

    out = Path(args.out)
    scans = out / "phantom"
    n = args.train + args.test
    t0 = time.time()
    if not (scans / "annotations.json").is_file():
        generate(scans, SceneParams(image_size=args.size), n, args.seed, workers=args.workers)
    from xsyn.data.contract import load_coco

    coco = load_coco(scans / "annotations.json")
    gen_s = time.time() - t0

    def subset(ids: set[int]) -> dict:
        return {**coco, "images": [im for im in coco["images"] if im["id"] in ids],
                "annotations": [a for a in coco["annotations"] if a["image_id"] in ids],
                "regions": []}

    ids = [im["id"] for im in coco["images"]]
    train, test = subset(set(ids[: args.train])), subset(set(ids[args.train:]))
    yolo = out / "yolo"
    for name, part in (("train", train), ("test", test)):
        if not (yolo / name / "labels").is_dir():
            write_yolo_split(part, scans / "images", yolo / name)
    names = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    data = write_data_yaml(yolo / "data.yaml", [yolo / "train"], [yolo / "test"], names)

    model = build_model("yolov8n.yaml")
    t0 = time.time()
    train_args = dict(epochs=args.epochs, imgsz=args.size, batch=args.batch, workers=0, device=args.device,
                      seed=args.seed, deterministic=True, amp=False, val=False, plots=False,
                      project=str((out / "runs").resolve()), name="yolov8n", exist_ok=True, verbose=False)
    if args.hours:
        train_args["time"] = args.hours
    model.train(data=str(data), **train_args)
    train_s = time.time() - t0
    epochs_done = model.trainer.epoch + 1
    weights = Path(model.trainer.last)
    detector = build_model(weights)
    class_to_cat = {i: c["id"] for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    dets = predict_coco(detector, class_to_cat, test, scans / "images", imgsz=args.size, batch=16,
                        device=args.device, desc="held-out")
    res = coco_evaluate(test, dets, source="held-out predictions")
    stats = res["stats"]
    summary = {
        "train_images": len(train["images"]), "test_images": len(test["images"]),
        "image_size": args.size, "epochs": epochs_done, "threads": args.threads,
        "generate_seconds": round(gen_s, 1), "train_seconds": round(train_s, 1),
        "AP": stats["AP"], "AP50": stats["AP50"], "AP75": stats["AP75"],
        "per_class": {r["name"]: {"AP": r["AP"], "AP50": r["AP50"], "n_gt": r["n_gt"]} for r in res["per_class"]},
    }
    write_json(out / "metrics.json", summary)
    print(res["summary"])
    print(f"yolov8n from scratch, {summary['train_images']} train / {summary['test_images']} held-out phantom "
          f"scans at {args.size}px, {epochs_done} epochs ({train_s / 60:.1f} min, {args.threads} CPU thread(s)):")
    print(f"  mAP50-95 {stats['AP']:.3f}   mAP50 {stats['AP50']:.3f}   mAP75 {stats['AP75']:.3f}")
    for name, r in summary["per_class"].items():
        ap = "n/a" if r["AP"] is None else f"{r['AP']:.3f}"
        ap50 = "n/a" if r["AP50"] is None else f"{r['AP50']:.3f}"
        print(f"  {name:10s} AP {ap}  AP50 {ap50}  ({r['n_gt']} boxes)")


if __name__ == "__main__":
    main()
