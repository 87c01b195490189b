"""Remake assets/tiny-gligen-xray: the tiny X-ray GLIGEN that the smoke profile fine-tunes.

GLIGEN's own pre-training is out of reach on a CPU, and a tiny model trained from scratch
inside the 10-minute smoke budget ignores its class phrases (conditioning ratio 1.000; see
the README). So the smoke profile starts, like the paper, from a pretrained model: this
one, trained in two stages on a phantom dataset of its own (seed 1), disjoint from the
smoke dataset (seed 0), and stored in float16 (15 MB):

1. from scratch (config/pretrain-tiny.yaml): 20,000 inpainting steps, 58 min on 2 CPU cores;
2. continued with the attention-alignment term (config/pretrain-tiny-align.yaml merged over
   it), so that its class-word cross-attention follows the items CAR reads.

usage: python scripts/pretrain_tiny_generator.py [--work DIR] [--base MODEL] [--out assets/tiny-gligen-xray]
--base skips stage 1 and continues from a stage-1 model folder (the shipped asset was
continued from the stage-1 model of commit 29085fc: `git archive 29085fc assets/tiny-gligen-xray`).
On a GPU add --set device=cuda (not measured).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from asset_run import REPO, git_commit, xsyn

from xsyn.config import load_config
from xsyn.generator.factory import load_generator, write_generator
from xsyn.io import atomic_dir

CONFIG = REPO / "config" / "pretrain-tiny.yaml"
ALIGN_CONFIG = REPO / "config" / "pretrain-tiny-align.yaml"


def export(base: Path, trained: Path, out: Path, minutes: float, extra: list[str], seed: int) -> None:
    """float16 copy of the trained folder, with its loss curve, metrics and a model card
    that names both stages (stage 1's own record travels as ``base.json``)."""
    comps = load_generator(trained, dtype=torch.float16)
    report = json.loads((trained / "finetune.json").read_text())
    base_report = stage_one_record(base)
    commit = git_commit()
    with atomic_dir(out) as tmp:
        write_generator(comps, tmp)
        shutil.copy2(trained / "loss.png", tmp / "loss.png")
        (tmp / "base.json").write_text(json.dumps(base_report, indent=1) + "\n")
        (tmp / "pretrain.json").write_text(json.dumps({
            **report, "config": [str(c.relative_to(REPO)) for c in (CONFIG, ALIGN_CONFIG)], "overrides": extra,
            "commit": commit, "minutes": round(minutes, 1), "torch_threads": torch.get_num_threads(),
        }, indent=1) + "\n")
        cond, share = report.get("conditioning") or {}, report.get("attention_on_items") or {}
        weights = load_config([CONFIG, ALIGN_CONFIG])["finetune"]["attention_alignment"]
        (tmp / "README.md").write_text(MODEL_CARD.format(
            base_commit=str(base_report.get("commit", "unknown"))[:10], base_minutes=base_report.get("minutes", float("nan")),
            base_steps=steps_line(base_report), images=report["num_train_images"], seed=seed,
            minutes=minutes, steps=steps_line(report), commit=commit[:10],
            token=weights["token_weight"], pixel=weights["pixel_weight"], mse=weights["mse_weight"], masks=weights["masks"],
            share=share.get("share", float("nan")), area=share.get("area", float("nan")),
            ratio=cond.get("ratio", float("nan")),
        ))


def steps_line(report: dict) -> str:
    return ", ".join(f"{s['name']} {s['steps']}" for s in report.get("stages", []) if s["steps"])


def stage_one_record(base: Path) -> dict:
    """What stage 1 recorded: its exported ``pretrain.json`` (an asset) or ``finetune.json``."""
    for name in ("pretrain.json", "finetune.json"):
        if (base / name).is_file():
            return json.loads((base / name).read_text())
    raise SystemExit(f"{base}: no pretrain.json or finetune.json, so the model card could not say how stage 1 ran")


MODEL_CARD = """# tiny-gligen-xray

The pretrained starting point of the smoke profile (`generator.kind: pretrained`): a tiny
GLIGEN-shaped inpainting model (9-channel `conv_in`, gated self-attention, position net,
VAE ×4, frozen random CLIP text encoder over the real CLIP BPE vocabulary), v-prediction.

Made by `python scripts/pretrain_tiny_generator.py` in two stages, both on {images} training
scans of a phantom dataset with `phantom.seed: {seed}`. The smoke dataset (`phantom.seed: 0`)
was never seen, so its val and test splits stay held out.

1. From scratch (`config/pretrain-tiny.yaml`, commit {base_commit}): {base_steps}, {base_minutes:.0f} min
   (its record: `base.json`).
2. Continued with the attention-alignment term, our addition to the method (TokenCompose token
   loss {token:g}, pixel BCE {pixel:g}, Break-A-Scene MSE {mse:g}; {masks} as targets;
   `config/pretrain-tiny-align.yaml`, commit {commit}): {steps}, {minutes:.0f} min. On its own val split
   {share:.3f} of a class word's attention falls on items of that class, which cover {area:.3f} of
   the pixels.

- Conditioning ratio on its own val split: {ratio:.3f} (box loss with swapped / true classes;
  1.000 means the model ignores its phrases).
- Stored in float16; `xsyn` loads it in float32. `pretrain.json` holds the run's figures,
  `loss.png` its loss curve.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="results/pretrain-tiny", help="phantom data, checkpoints, full-precision model")
    ap.add_argument("--out", default=str(REPO / "assets" / "tiny-gligen-xray"))
    ap.add_argument("--base", type=Path, default=None,
                    help="a stage-1 model folder to continue from (skips the 58-min from-scratch stage)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    args = ap.parse_args()
    work = Path(args.work)
    seed, smoke_seed = load_config([CONFIG], args.set)["phantom"]["seed"], load_config()["phantom"]["seed"]
    if seed == smoke_seed:
        ap.error(f"phantom.seed {seed} is the smoke dataset's: its val and test scans would be pre-trained on")
    conf = ["--config", str(CONFIG), *[a for kv in args.set for a in ("--set", kv)]]
    if not (work / "raw").is_dir():
        xsyn("phantom", "--out", str(work / "raw"), *conf)
    if not (work / "data").is_dir():
        xsyn("prepare", "--source", str(work / "raw"), "--out", str(work / "data"), *conf)
    base = args.base or work / "generator"
    if not base.is_dir():  # resumes from its checkpoints when killed
        xsyn("finetune", "--dataset", str(work / "data"), "--out", str(base), *conf)
    t1 = time.time()
    if not (work / "aligned").is_dir():
        xsyn("finetune", "--dataset", str(work / "data"), "--out", str(work / "aligned"), *conf,
             "--config", str(ALIGN_CONFIG), "--set", f"generator.pretrained.pipeline={base}")
    export(base, work / "aligned", Path(args.out), (time.time() - t1) / 60, args.set, seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
