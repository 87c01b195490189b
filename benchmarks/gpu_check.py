"""GPU check (issue 20): the body of ``benchmarks/gpu_check.sh``; run that script.

One table, from one run on one GPU, for Stable-Diffusion-1.4-shaped components with random
weights (speed does not depend on the values; ``synthesis_speed.sd14_components``):

- synthesis images/s at 512 px, 50 DDIM steps, guidance 7.5, bf16: ``XsynPipeline`` with
  CAR + BOM on and off at batch 1 and at the best batch found (batches tried in order until
  images/s stops growing by ``--min-gain``, memory runs out or the time budget is spent), and
  diffusers' ``StableDiffusionGLIGENPipeline`` (one source scan per call, so batch 1 only);
- fine-tuning it/s at the paper's batch and resolution (``config/paper.yaml``: batch 8, 512 px,
  the authors' fp32; and bf16 autocast), inpainting, the authors' trainable set;
- achieved TFLOP/s (UNet FLOPs per image for synthesis, forward + backward per step for
  fine-tuning, counted by ``torch.utils.flop_counter``) and its share of the device's dense
  bf16 peak; peak memory allocated.

``--dry``: the same code on the CPU with the tiny smoke shapes (64 px, 2 steps), in seconds,
so that CI knows the script works before a GPU is lent. Exit status 1 when a bar of the
synthesis benchmark is missed (CAR+BOM on/off time ≤ 1.10, XsynPipeline ≥ 1.0× diffusers at
batch 1); not checked in ``--dry`` mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

# The two benchmarks this table reuses live beside it; they are imported after the device
# check (diffusers and transformers take a while to load).
sys.path.insert(0, str(Path(__file__).resolve().parent))


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def synthesis_rows(args: argparse.Namespace, device: str, started: float) -> list[dict[str, Any]]:
    import synthesis_speed

    from xsyn.config import load_config
    from xsyn.generator.factory import build_tiny_components

    cfg = load_config()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if args.dry:
        comp = build_tiny_components(cfg["generator"]["tiny"], args.resolution, inpaint=True)
    else:
        comp = synthesis_speed.sd14_components(args.resolution)
    car = cfg["synthesis"]["car"]

    def run(batch: int, variants: tuple[str, ...]) -> dict[str, Any]:
        # the tiny UNet attends at its second level only (latent side / 2)
        ns = argparse.Namespace(batch=batch, steps=args.steps, guidance=args.guidance,
                                repeats=args.repeats, car_resolution=args.resolution // 8 if args.dry else None)
        row = synthesis_speed.bench("tiny" if args.dry else "sd14", comp, args.resolution, ns, car,
                                    device, dtype, variants=variants, count_flops=True)
        print(f"  synthesis batch {batch}: " + ", ".join(
            f"{k} {v:.3f} img/s" for k, v in row["images_per_s"].items())
            + f"  ({time.monotonic() - started:.0f} s)", flush=True)
        return row

    rows = [run(1, synthesis_speed.VARIANTS)]
    best = rows[0]
    for batch in args.batches:
        if batch <= 1:
            continue
        if time.monotonic() - started > args.budget_s * 0.6:
            print(f"  synthesis: time budget; batch {batch} and larger not tried", flush=True)
            break
        try:
            row = run(batch, ("on", "off"))
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
            if not is_oom(e):
                raise
            print(f"  synthesis batch {batch}: out of memory", flush=True)
            for module in (comp.unet, comp.vae, comp.text_encoder):
                module.to("cpu")
            torch.cuda.empty_cache()
            break
        grew = row["images_per_s"]["on"] / best["images_per_s"]["on"] - 1
        if grew > 0:
            best = row
        if grew < args.min_gain:
            break
    if best is not rows[0]:
        rows.append(best)
    return rows


def finetune_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    import finetune_speed

    from xsyn.config import load_config

    paper = load_config(["paper"])
    batch = args.finetune_batch or paper["finetune"]["batch_size"]
    precisions = ["no"] if args.dry else list(dict.fromkeys([paper["finetune"]["mixed_precision"], "bf16"]))
    rows = []
    for precision in precisions:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        row = finetune_speed.bench("tiny" if args.dry else "sd14", args.resolution, batch, precision,
                                   args.finetune_steps, inpaint=True, count_flops=True)
        print(f"  fine-tune batch {batch} {precision}: {row['it_per_s']:.3f} it/s", flush=True)
        rows.append(row)
    return rows


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def print_table(syn: list[dict], ft: list[dict], device_name: str, args: argparse.Namespace) -> None:
    shape = "tiny smoke shapes (dry run)" if args.dry else "SD-1.4 shapes, random weights"
    print(f"\n{device_name}; {shape}; {args.resolution} px; synthesis {args.steps} steps, guidance "
          f"{args.guidance}, {syn[0]['dtype']}\n")
    print("| what | batch | throughput | TFLOP/s | share of bf16 peak | peak memory (GiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"on": "XsynPipeline, CAR + BOM on", "off": "XsynPipeline, CAR + BOM off",
             "diffusers": "diffusers StableDiffusionGLIGENPipeline"}
    for row in syn:
        for key, ips in row["images_per_s"].items():
            tflops = row.get(f"unet_tflops_per_s_{key}")
            share = row.get(f"bf16_peak_fraction_{key}")
            print(f"| synthesis: {names[key]} | {row['batch']} | {ips:.3f} img/s | {fmt(tflops, '.3g')} | "
                  f"{fmt(share, '.1%')} | {fmt(row.get('peak_mem_GiB'), '.1f')} |")
    for row in ft:
        precision = {"no": "fp32"}.get(row["precision"], row["precision"])
        print(f"| fine-tune ({precision}, inpainting) | {row['batch']} | {row['it_per_s']:.3f} it/s "
              f"({row['images_per_s']:.1f} img/s) | {fmt(row.get('tflops_per_s'), '.3g')} | "
              f"{fmt(row.get('bf16_peak_fraction'), '.1%')} | {fmt(row.get('peak_mem_GiB'), '.1f')} |")
    first = syn[0]
    print(f"\nbatch 1: CAR+BOM on/off time {first['ratio_on_off_time']:.3f} (bar ≤ 1.10), "
          f"XsynPipeline off / diffusers {first['xsyn_off_vs_diffusers']:.2f}× (bar ≥ 1.0); "
          f"UNet {first.get('unet_tflops_per_image', 0):.2f} TFLOP per image (CFG counted twice); "
          "synthesis TFLOP/s count the UNet only")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--dry", action="store_true", help="CPU, tiny shapes, seconds (CI)")
    p.add_argument("--resolution", type=int, default=None, help="default 512 (dry: 64)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default 50, dry: 2)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--batches", type=int, nargs="+", default=None,
                   help="synthesis batches tried after batch 1 (default 8 16 32 64; dry: 2)")
    p.add_argument("--min-gain", type=float, default=0.05, help="stop when img/s grows less")
    p.add_argument("--repeats", type=int, default=1, help="timed calls per variant (best of)")
    p.add_argument("--finetune-batch", type=int, default=None, help="default: config/paper.yaml (8)")
    p.add_argument("--finetune-steps", type=int, default=None, help="timed steps (default 10, dry: 1)")
    p.add_argument("--budget-s", type=float, default=420, help="stop trying larger batches past 60%% of this")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    if args.dry:
        device = "cpu"
        defaults = {"resolution": 64, "steps": 2, "batches": [2], "finetune_steps": 1, "finetune_batch": 2}
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device; run with --dry for the CPU check", file=sys.stderr)
            return 2
        device = "cuda"
        defaults = {"resolution": 512, "steps": 50, "batches": [8, 16, 32, 64], "finetune_steps": 10}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    started = time.monotonic()
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"gpu_check on {device_name}", flush=True)
    syn = synthesis_rows(args, device, started)
    ft = finetune_rows(args)
    print_table(syn, ft, device_name, args)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"synthesis": syn, "finetune": ft}, indent=1))
    ok = syn[0]["ratio_on_off_time"] <= 1.10 and syn[0]["xsyn_off_vs_diffusers"] >= 1.0
    if args.dry:
        return 0
    print("checks:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
