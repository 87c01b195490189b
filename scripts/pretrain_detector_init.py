"""Remake assets/detector-init: the shared detector initialisation of the study.

The paper's detectors start from ImageNet/COCO weights; ours would start from nothing and,
on a few dozen phantom scans, learn next to nothing (the smoke run's real-only AP is 0.3).
The phantom's analogue of that pre-training is this: a YOLOv8n built from ``yolov8n.yaml``
and trained to find the *benign* objects of a phantom set of its own (``phantom.seed: 3``,
config/pretrain-detector.yaml), labelled from the simulator's ``regions`` (bag left out).
It never sees a prohibited-item label, and its scans are in no split of the study.

Study detectors load it as a local ``.pt`` (``detection.models``); ultralytics transfers
every tensor whose shape fits and builds a new class layer for the 12 prohibited classes
(tests/test_detector_init.py checks both).

usage: python scripts/pretrain_detector_init.py [--work DIR] [--out assets/detector-init]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from asset_run import REPO, git_commit, xsyn

from xsyn.config import load_config
from xsyn.data.benign import write_benign_dataset
from xsyn.io import atomic_dir, read_json

CONFIG = REPO / "config" / "pretrain-detector.yaml"
WEIGHTS = "yolov8n-benign.pt"
# phantom seeds other data of the project use: the smoke/study data, the tiny generator's
# pre-training set (config/pretrain-tiny.yaml), the CAR referee's set (benchmarks/referee.py)
TAKEN_SEEDS = {0: "the smoke/study dataset", 1: "the tiny generator's pre-training set", 2: "the CAR referee's set"}


def started(work: Path) -> dict:
    """The commit and clock of the run's first start (kept in the work dir, so a resumed or
    re-exported run still names the code that trained it)."""
    path = work / "started.json"
    if not path.is_file():
        work.mkdir(parents=True, exist_ok=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        path.write_text(json.dumps({"commit": git_commit(), "uncommitted_changes": bool(dirty),
                                    "time": time.time(), "torch_threads": torch_threads()}) + "\n")
    return read_json(path)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def export(work: Path, out: Path, minutes: float, extra: list[str], seed: int, counts: dict) -> None:
    """The weights (ultralytics stores them in float16, optimizer stripped), the per-epoch
    loss and val record, the run's figures and a model card."""
    run = work / "run"
    metrics = read_json(work / "metrics.json")["splits"]["val"]
    record = read_json(run / "run.json")
    start = started(work)
    commit = start["commit"]
    classes = [c["name"] for c in read_json(run / "classes.json")["classes"]]
    stats = metrics["stats"]
    with atomic_dir(out) as tmp:
        shutil.copyfile(run / "weights.pt", tmp / WEIGHTS)
        shutil.copyfile(run / "train" / "results.csv", tmp / "results.csv")
        (tmp / "init.json").write_text(json.dumps({
            "command": "python scripts/pretrain_detector_init.py" + "".join(f" --set {kv}" for kv in extra),
            "config": str(CONFIG.relative_to(REPO)), "overrides": extra, "commit": commit,
            "minutes": round(minutes, 1), "torch_threads": start["torch_threads"],
            "uncommitted_changes": start["uncommitted_changes"],
            "phantom_seed": seed, "data": counts, "classes": classes,
            "val": {"stats": stats, "per_class": metrics["per_class"]},
            "train_seconds": record["train_seconds"], "detection": record["detection"],
        }, indent=1) + "\n")
        (tmp / "README.md").write_text(MODEL_CARD.format(
            minutes=minutes, commit=commit[:10], threads=start["torch_threads"], seed=seed, classes=", ".join(classes),
            train=counts["train"]["images"], train_boxes=counts["train"]["boxes"],
            val=counts["val"]["images"], val_boxes=counts["val"]["boxes"],
            epochs=record["detection"]["epochs"], imgsz=record["detection"]["imgsz"],
            ap=100 * stats["AP"], ap50=100 * stats["AP50"], weights=WEIGHTS,
            size=(tmp / WEIGHTS).stat().st_size / 2**20,
        ))


MODEL_CARD = """# detector-init

The shared initialisation of the study's detectors (`config/study.yaml`,
`detection.models: [assets/detector-init/{weights}]`): the phantom's analogue of the
ImageNet/COCO pre-training the paper's detectors start from.

- A YOLOv8n built from `yolov8n.yaml` (no download), trained by
  `python scripts/pretrain_detector_init.py` (config `config/pretrain-detector.yaml`,
  commit {commit}) in {minutes:.0f} min wall (torch threads: {threads}; a 2-core CPU shared
  with other jobs), {epochs} epochs at {imgsz} px.
- Data: a phantom set of its own, `phantom.seed: {seed}` ({train} training scans, {train_boxes}
  boxes; {val} val scans, {val_boxes} boxes), labelled **only with benign objects** (the
  simulator's `regions`, the bag left out): {classes}. No prohibited-item label was
  used, and no scan of the study/smoke data (seed 0), of the tiny generator's pre-training
  set (seed 1) or of the CAR referee's set (seed 2).
- Its own val split (benign classes): AP {ap:.1f} %, AP50 {ap50:.1f} % (pycocotools).
- `{weights}` ({size:.1f} MB): ultralytics checkpoint, float16, optimizer stripped.
  `results.csv` holds ultralytics' per-epoch losses and val metrics, `init.json` the run's
  figures (command, commit, data, per-class val AP).

A study detector loads it as a local `.pt`: ultralytics transfers every tensor whose shape
fits the 12-class model (backbone, neck and the head's hidden layers) and makes a new
class layer for the 12 prohibited classes.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="results/detector-init", help="phantom data, benign dataset, training run")
    ap.add_argument("--out", default=str(REPO / "assets" / "detector-init"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    args = ap.parse_args()
    work = Path(args.work)
    cfg = load_config([CONFIG], args.set)
    seed = cfg["phantom"]["seed"]
    if seed in TAKEN_SEEDS:
        ap.error(f"phantom.seed {seed} is {TAKEN_SEEDS[seed]}'s: the initialisation must not see its scans")
    conf = ["--config", str(CONFIG), *[a for kv in args.set for a in ("--set", kv)]]
    t0 = started(work)["time"]
    if not (work / "raw").is_dir():
        xsyn("phantom", "--out", str(work / "raw"), *conf)
    if not (work / "data").is_dir():
        xsyn("prepare", "--source", str(work / "raw"), "--out", str(work / "data"), *conf)
    if not (work / "benign").is_dir():
        write_benign_dataset(work / "data", work / "benign")
    counts = {split: {"images": len(c["images"]), "boxes": len(c["annotations"])}
              for split in ("train", "val", "test")
              for c in [read_json(work / "benign" / "annotations" / f"{split}.json")]}
    if not (work / "run" / "weights.pt").is_file():
        xsyn("train-detector", "--dataset", str(work / "benign"), "--model", cfg["detection"]["models"][0],
             "--share", "100", "--source", "none", "--seed", str(cfg["seed"]), "--out", str(work / "run"), *conf)
    if not (work / "metrics.json").is_file():
        xsyn("evaluate", "--weights", str(work / "run" / "weights.pt"), "--dataset", str(work / "benign"),
             "--splits", "val", "--out", str(work / "metrics.json"), *conf)
    minutes = ((work / "metrics.json").stat().st_mtime - t0) / 60  # data, training and val scoring
    export(work, Path(args.out), minutes, args.set, seed, counts)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
