"""Remake assets/tiny-gligen-xray: the tiny X-ray GLIGEN that the smoke profile fine-tunes.

GLIGEN's own pre-training is out of reach on a CPU, and a tiny model trained from scratch
inside the 10-minute smoke budget ignores its class phrases (conditioning ratio 1.000; see
the README). So the smoke profile starts, like the paper, from a pretrained model: this
one, trained from scratch (config/pretrain-tiny.yaml) on a phantom dataset of its own
(seed 1), disjoint from the smoke dataset (seed 0), and stored in float16 (15 MB).

usage: python scripts/pretrain_tiny_generator.py [--work DIR] [--out assets/tiny-gligen-xray]
The shipped model took 58 min on 2 CPU cores; on a GPU add --set device=cuda (not measured).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from xsyn.config import load_config
from xsyn.generator.factory import load_generator, write_generator
from xsyn.io import atomic_dir

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "pretrain-tiny.yaml"


def xsyn(*args: str) -> None:
    cmd = [sys.executable, "-m", "xsyn", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def export(trained: Path, out: Path, minutes: float, extra: list[str], seed: int) -> None:
    """float16 copy of the trained folder, with its loss curve, metrics and a model card."""
    comps = load_generator(trained, dtype=torch.float16)
    report = json.loads((trained / "finetune.json").read_text())
    commit = git_commit()
    with atomic_dir(out) as tmp:
        write_generator(comps, tmp)
        shutil.copy2(trained / "loss.png", tmp / "loss.png")
        (tmp / "pretrain.json").write_text(json.dumps({
            **report, "config": str(CONFIG.relative_to(REPO)), "overrides": extra,
            "commit": commit, "minutes": round(minutes, 1),
            "torch_threads": torch.get_num_threads(),
        }, indent=1) + "\n")
        cond = report.get("conditioning") or {}
        (tmp / "README.md").write_text(MODEL_CARD.format(
            minutes=minutes, ratio=cond.get("ratio", float("nan")), images=report["num_train_images"], seed=seed,
            steps=", ".join(f"{s['name']} {s['steps']}" for s in report["stages"] if s["steps"]), commit=commit[:10],
        ))


MODEL_CARD = """# tiny-gligen-xray

The pretrained starting point of the smoke profile (`generator.kind: pretrained`): a tiny
GLIGEN-shaped inpainting model (9-channel `conv_in`, gated self-attention, position net,
VAE ×4, frozen random CLIP text encoder over the real CLIP BPE vocabulary), v-prediction.

- Trained from scratch by `python scripts/pretrain_tiny_generator.py` (config
  `config/pretrain-tiny.yaml`, commit {commit}) in {minutes:.0f} min.
- Data: {images} training scans of a phantom dataset with `phantom.seed: {seed}`. The smoke
  dataset (`phantom.seed: 0`) was never seen, so its val and test splits stay held out.
- Steps: {steps}.
- Conditioning ratio on its own val split: {ratio:.3f} (box loss with swapped / true classes;
  1.000 means the model ignores its phrases).
- Stored in float16; `xsyn` loads it in float32. `pretrain.json` holds the run's figures,
  `loss.png` its loss curve.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="results/pretrain-tiny", help="phantom data, checkpoints, full-precision model")
    ap.add_argument("--out", default=str(REPO / "assets" / "tiny-gligen-xray"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    args = ap.parse_args()
    work = Path(args.work)
    seed, smoke_seed = load_config([CONFIG], args.set)["phantom"]["seed"], load_config()["phantom"]["seed"]
    if seed == smoke_seed:
        ap.error(f"phantom.seed {seed} is the smoke dataset's: its val and test scans would be pre-trained on")
    conf = ["--config", str(CONFIG), *[a for kv in args.set for a in ("--set", kv)]]
    t0 = time.time()
    if not (work / "raw").is_dir():
        xsyn("phantom", "--out", str(work / "raw"), *conf)
    if not (work / "data").is_dir():
        xsyn("prepare", "--source", str(work / "raw"), "--out", str(work / "data"), *conf)
    if not (work / "generator").is_dir():  # resumes from its checkpoints when killed
        xsyn("finetune", "--dataset", str(work / "data"), "--out", str(work / "generator"), *conf)
    export(work / "generator", Path(args.out), (time.time() - t0) / 60, args.set, seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
