"""Does a generator's class-word attention follow the items? Several generators, one split.

For each generator folder: ``attention_on_items`` (the share of each class word's
cross-attention, in CAR's layers, that falls on items of that class, on whole held-out scans
at random timesteps; ``area`` is the share of pixels those items cover, i.e. chance) and the
conditioning ratio (box loss with swapped / true classes), both exactly as ``xsyn finetune``
reports them in ``finetune.json`` — here for models that were not trained on this dataset
(the shipped assets) and side by side on the same scans and seeds.

Usage::

    python benchmarks/attention_on_items.py --generator OLD NEW results/models/generator --dataset data/phantom
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from xsyn.cli import add_config_arguments
from xsyn.config import load_config
from xsyn.generator.alignment import alignment_layers, attention_on_items
from xsyn.generator.conditioning import conditioning_ratio
from xsyn.generator.data import attach_class_masks, load_examples
from xsyn.generator.factory import load_generator


def measure(path: Path, dataset: Path, split: str, cfg: dict, max_images: int) -> dict:
    """The two figures ``finetune.json`` holds, for one generator folder."""
    gen, ft = cfg["generator"], cfg["finetune"]
    al = ft["attention_alignment"]
    comps = load_generator(path, dtype=torch.float32)
    examples, classes = load_examples(dataset, split, gen["resolution"], ft["min_box_area"], ft["max_boxes"])
    examples = [ex for ex in examples if len(ex.boxes)][:max_images]
    latent = gen["resolution"] // comps.vae_scale_factor
    attach_class_masks(examples, dataset, split, gen["resolution"], latent, al["masks"])
    layers = alignment_layers(comps.unet, latent, al["blocks"], al["resolutions"])
    share = attention_on_items(comps, examples, layers, seed=ft["seed"], max_boxes=ft["max_boxes"])
    ratio = conditioning_ratio(comps, examples, classes, seed=ft["seed"], max_boxes=ft["max_boxes"])
    return {"generator": str(path), "split": split, "images": len(examples), **share, "ratio": ratio["ratio"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", type=Path, nargs="+", required=True, help="diffusers GLIGEN inpainting folders")
    p.add_argument("--dataset", type=Path, required=True, help="prepared dataset root")
    p.add_argument("--split", default="val", help="held-out split (default val)")
    p.add_argument("--max-images", type=int, default=64, help="scans with boxes (finetune.json uses 64)")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    add_config_arguments(p)
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set, args.config_json)
    torch.manual_seed(0)
    rows = [measure(g, args.dataset, args.split, cfg, args.max_images) for g in args.generator]
    print(f"\nattention on items — {args.dataset} [{args.split}], {rows[0]['images']} scans")
    print(f"{'generator':<60} {'share':>7} {'area':>7} {'share/area':>10} {'ratio':>7}")
    for r in rows:
        print(f"{r['generator']:<60} {r['share']:7.3f} {r['area']:7.3f} {r['share'] / r['area']:10.1f} "
              f"{r['ratio']:7.3f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
