"""Synthesis throughput: XsynPipeline (CAR+BOM on / off) vs diffusers' GLIGEN pipeline.

Prints, from one run, images/s of

- ``XsynPipeline`` with CAR + BOM on (the Xsyn-A recipe),
- the same with CAR + BOM off,
- diffusers' ``StableDiffusionGLIGENPipeline`` at equivalent settings (same components,
  steps, guidance, one grounded box per scan, inpainting from the same scans; it takes one
  source scan per call, so it runs once per scan),

and the ratios, for the tiny smoke components and for SD-1.4-shaped components (random
weights: speed does not depend on the values). On GPU it also prints the achieved share of
the device's bf16 peak, counting the UNet FLOPs per image with ``torch.utils.flop_counter``.

Checks (exit status 1 when one fails): on/off ≤ 1.10 and XsynPipeline off ≥ 1.0× diffusers.

    python benchmarks/synthesis_speed.py                      # tiny + SD-shaped, device auto
    python benchmarks/synthesis_speed.py --models tiny --steps 20 --batch 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch

import xsyn  # noqa: F401  (offline environment before diffusers is imported)
from xsyn.config import load_config, resolve_device
from xsyn.generator.factory import (
    CLIP_VOCAB_SIZE,
    GeneratorComponents,
    build_tiny_components,
    load_clip_tokenizer,
    sd_scheduler,
)
from xsyn.synthesis.layouts import Layout
from xsyn.synthesis.pipeline import XsynPipeline

# Dense bf16 tensor-core peaks (TFLOP/s) by device name fragment.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0,
                    "4090": 165.0, "3090": 71.0}
CLASSES = ["Gun", "Knife", "Powerbank", "HandCuffs", "Lighter", "Scissors"]


def sd14_components(resolution: int = 512, seed: int = 0) -> GeneratorComponents:
    """Random-weight components with Stable Diffusion 1.4's shapes (GLIGEN inpainting UNet)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=resolution // 8, in_channels=9, out_channels=4,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8, attention_type="gated",
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4, sample_size=resolution, scaling_factor=0.18215,
    )
    tok = load_clip_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    ))
    return GeneratorComponents(unet, vae, text, tok, sd_scheduler())


def make_inputs(n: int, size: int, seed: int = 0) -> tuple[list[Layout], list[np.ndarray]]:
    """``n`` scan-like images with one requested box (Xsyn-A-like) and a benign region each."""
    rng = np.random.default_rng(seed)
    layouts, images = [], []
    for i in range(n):
        img = np.full((size, size, 3), 245, np.uint8)
        img[size // 16: -size // 16, size // 16: -size // 16] = (200, 170, 120)
        bw, bh = (int(v) for v in rng.integers(size // 6, size // 3, 2))
        x, y = (int(v) for v in rng.integers(size // 8, size - size // 8 - max(bw, bh), 2))
        img[y + bh // 4: y + 3 * bh // 4, x + bw // 4: x + 3 * bw // 4] = (40, 70, 160)
        images.append(img)
        layouts.append(Layout([[x, y, bw, bh]], [CLASSES[i % len(CLASSES)]], [1],
                              bom_region=[size / 10, size * 0.6, size / 4, size / 5]))
    return layouts, images


def prepared_pipeline(comp: GeneratorComponents, device: str, dtype: torch.dtype, batch: int,
                      size: int) -> tuple[XsynPipeline, list[Layout], list[np.ndarray], list[int]]:
    """The pipeline on its device, plus one batch of benchmark inputs and their seeds."""
    for m in (comp.unet, comp.vae, comp.text_encoder):
        m.to(device, dtype).eval()
    pipe = XsynPipeline.from_components(comp)
    pipe.set_progress_bar_config(disable=True)
    layouts, images = make_inputs(batch, size)
    return pipe, layouts, images, list(range(batch))


def bf16_peak_tflops(device: str) -> float | None:
    """Dense bf16 peak of the CUDA device in use, when its name is in the table."""
    if not device.startswith("cuda"):
        return None
    gpu = torch.cuda.get_device_name(torch.device(device))
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in gpu), None)


def make_clock(device: str):
    """Wall time on GPU; on CPU the process's CPU time, so that other jobs sharing the
    cores (this project's CI machine) do not leak into the ratios."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def unet_flops_per_image(pipe: XsynPipeline, size: int, steps: int, cfg: bool) -> float:
    """UNet FLOPs of one image's whole sampling (forward only, CFG counted twice)."""
    from torch.utils.flop_counter import FlopCounterMode

    unet, dev, dtype = pipe.unet, pipe.unet.device, pipe.unet.dtype
    side = size // pipe.vae_scale_factor
    x = torch.randn(1, unet.config.in_channels, side, side, device=dev, dtype=dtype)
    states = torch.randn(1, 77, unet.config.cross_attention_dim, device=dev, dtype=dtype)
    g = {"boxes": torch.rand(1, 1, 4, device=dev, dtype=dtype),
         "positive_embeddings": torch.randn(1, 1, unet.config.cross_attention_dim, device=dev, dtype=dtype),
         "masks": torch.ones(1, 1, device=dev, dtype=dtype)}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, 500, encoder_hidden_states=states, cross_attention_kwargs={"gligen": g})
    return counter.get_total_flops() * steps * (2 if cfg else 1)


def diffusers_reference(comp: GeneratorComponents) -> Any:
    from diffusers import StableDiffusionGLIGENPipeline

    pipe = StableDiffusionGLIGENPipeline(
        vae=comp.vae, text_encoder=comp.text_encoder, tokenizer=comp.tokenizer, unet=comp.unet,
        scheduler=comp.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


VARIANTS = ("on", "off", "diffusers")


def bench(name: str, comp: GeneratorComponents, size: int, args: argparse.Namespace,
          car_cfg: dict, device: str, dtype: torch.dtype, variants: tuple[str, ...] = VARIANTS,
          count_flops: bool | None = None) -> dict[str, Any]:
    """One row: images/s of ``variants`` at ``args.batch``; on GPU (or with ``count_flops``)
    also the UNet FLOPs per image and, on a GPU of known peak, the share of its bf16 peak."""
    from PIL import Image

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    pipe, layouts, images, seeds = prepared_pipeline(comp, device, dtype, args.batch, size)
    common = {"num_inference_steps": args.steps, "guidance_scale": args.guidance, "resolution": size}
    side = size // pipe.vae_scale_factor
    car = {**car_cfg, "resolutions": [args.car_resolution or min(16, side)]}
    bom = {"enabled": True, "alpha": 0.3, "when": "last"}

    def on():
        pipe(layouts, images, seeds, car=car, bom=bom, **common)

    def off():
        pipe(layouts, images, seeds, **common)

    ref = diffusers_reference(comp)
    pil = [Image.fromarray(im) for im in images]

    def reference():
        for lay, im, s in zip(layouts, pil, seeds, strict=True):
            x, y, w, h = lay.boxes[0]
            ref(prompt=lay.prompt, gligen_phrases=lay.phrases,
                gligen_boxes=[[x / size, y / size, (x + w) / size, (y + h) / size]],
                gligen_inpaint_image=im, gligen_scheduled_sampling_beta=1.0,
                num_inference_steps=args.steps, guidance_scale=args.guidance, height=size,
                width=size, generator=torch.Generator("cpu").manual_seed(s), output_type="np")

    clock = make_clock(device)
    # Interleave the variants so that load changes on a shared machine hit them alike.
    runs = {k: fn for k, fn in (("on", on), ("off", off), ("diffusers", reference)) if k in variants}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up (kernels, allocator, SAM/GrabCut init)
        fn()
    for _ in range(args.repeats):
        for key, fn in runs.items():
            _sync(device)
            t = clock()
            fn()
            _sync(device)
            times[key].append(clock() - t)
    best = {k: min(v) for k, v in times.items()}
    ips = {k: args.batch / v for k, v in best.items()}
    row = {"model": name, "device": device, "dtype": str(dtype).replace("torch.", ""),
           "resolution": size, "steps": args.steps, "batch": args.batch, "images_per_s": ips}
    if "on" in ips and "off" in ips:
        row["ratio_on_off_time"] = best["on"] / best["off"]
    if "diffusers" in ips:
        row.update({k: ips[v] / ips["diffusers"] for k, v in
                    (("xsyn_off_vs_diffusers", "off"), ("xsyn_on_vs_diffusers", "on")) if v in ips})
    if device.startswith("cuda"):
        row["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    if count_flops if count_flops is not None else device.startswith("cuda"):
        flops = unet_flops_per_image(pipe, size, args.steps, args.guidance > 1)
        row["unet_tflops_per_image"] = flops / 1e12
        peak = bf16_peak_tflops(device)
        for key in ("on", "off"):
            if key in ips:
                row[f"unet_tflops_per_s_{key}"] = flops * ips[key] / 1e12
                if peak:
                    row[f"bf16_peak_fraction_{key}"] = flops * ips[key] / (peak * 1e12)
    for m in (comp.unet, comp.vae, comp.text_encoder):
        m.to("cpu")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny", "sd14"], choices=["tiny", "sd14"])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=None, help="default: synthesis.steps (smoke 20)")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--batch", type=int, default=None, help="scans per call (default 4 CPU, 16 GPU)")
    p.add_argument("--sd-resolution", type=int, default=None, help="default 512 GPU, 128 CPU")
    p.add_argument("--car-resolution", type=int, default=None,
                   help="captured map side (default: 16, or the latent side when smaller)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-ratio", type=float, default=1.10)
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    cfg = load_config()
    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    args.steps = args.steps or cfg["synthesis"]["steps"]
    args.batch = args.batch or (16 if gpu else 4)
    dtype = torch.bfloat16 if gpu else torch.float32
    rows = []
    for name in args.models:
        if name == "tiny":
            size = cfg["generator"]["resolution"]
            comp = build_tiny_components(cfg["generator"]["tiny"], size, inpaint=True)
        else:
            size = args.sd_resolution or (512 if gpu else 128)
            comp = sd14_components(size)
        rows.append(bench(name, comp, size, args, cfg["synthesis"]["car"], device, dtype))
        del comp
    ok = True
    print(f"{'model':6} {'dev':5} {'res':>4} {'steps':>5} {'batch':>5}  {'on img/s':>9} {'off img/s':>9} "
          f"{'diffusers':>9}  {'on/off':>6} {'off/diff':>8} {'on/diff':>7}")
    for r in rows:
        ips = r["images_per_s"]
        print(f"{r['model']:6} {r['device']:5} {r['resolution']:4d} {r['steps']:5d} {r['batch']:5d}  "
              f"{ips['on']:9.3f} {ips['off']:9.3f} {ips['diffusers']:9.3f}  "
              f"{r['ratio_on_off_time']:6.3f} {r['xsyn_off_vs_diffusers']:8.3f} {r['xsyn_on_vs_diffusers']:7.3f}")
        if "bf16_peak_fraction_on" in r:
            print(f"       UNet {r['unet_tflops_per_image']:.2f} TFLOP/image; bf16 peak fraction "
                  f"on {r['bf16_peak_fraction_on']:.3f}, off {r['bf16_peak_fraction_off']:.3f}")
        ok &= r["ratio_on_off_time"] <= args.max_ratio and r["xsyn_off_vs_diffusers"] >= 1.0
    print("checks:", "PASS" if ok else "FAIL",
          f"(CAR+BOM on/off time ≤ {args.max_ratio}, XsynPipeline ≥ 1.0× diffusers)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
