"""Training throughput of the generator: the tiny smoke model, and (GPU) an SD-1.4-shaped one.

    python benchmarks/finetune_speed.py                       # tiny, config sizes, CPU or GPU
    python benchmarks/finetune_speed.py --model sd14 --resolution 512 --batch 8 --precision bf16

The SD-1.4 shape is randomly initialised (no weights needed) with the authors' trainable set
(gated fusers + position net; the VAE and text encoder frozen), so its it/s is what the paper
profile's fine-tuning would run at. Synthetic scans and boxes: speed only, no learning.
Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from xsyn.config import load_config
from xsyn.generator.factory import (
    GeneratorComponents,
    build_tiny_components,
    load_clip_tokenizer,
    sd_scheduler,
)
from xsyn.generator.objective import Stage, TrainingObjective, select_trainable


def sd14_components(resolution: int) -> GeneratorComponents:
    """Stable Diffusion 1.4 shapes (UNet 860 M, CLIP ViT-L/14 text, KL-f8 VAE), random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(
        sample_size=resolution // 8, cross_attention_dim=768, attention_head_dim=8, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), attention_type="gated",
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=resolution,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
    ))
    return GeneratorComponents(unet, vae, text, load_clip_tokenizer(), sd_scheduler())


def fake_batch(batch: int, resolution: int, latent: int, inpaint: bool, g: torch.Generator) -> dict:
    names = ["Gun", "Knife", "Scissors", "Hammer"]
    boxes = torch.zeros(batch, 8, 4)
    boxes[:, :3, :2] = torch.rand(batch, 3, 2, generator=g) * 0.5
    boxes[:, :3, 2:] = boxes[:, :3, :2] + 0.3
    out = {
        "pixel_values": torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1,
        "boxes": boxes,
        "box_mask": (torch.arange(8) < 3).float().expand(batch, -1).clone(),
        "phrases": [f"one {names[(i + j) % 4]}" if j < 3 else "" for i in range(batch) for j in range(8)],
        "captions": ["Gun, Knife" if i % 2 else "" for i in range(batch)],
    }
    if inpaint:
        m = torch.ones(batch, 1, latent, latent)
        m[:, :, latent // 4 : latent // 2, latent // 4 : latent // 2] = 0
        out["inpaint_mask"] = m
    return out


def bench(model: str, resolution: int, batch: int, precision: str, steps: int, inpaint: bool,
          count_flops: bool | None = None) -> dict:
    """it/s of the fine-tuning step; on GPU (or with ``count_flops``) also the FLOPs of one step
    (forward + backward, counted on the first warm-up step) and the achieved TFLOP/s."""
    from torch.utils.flop_counter import FlopCounterMode

    device = "cuda" if torch.cuda.is_available() else "cpu"
    count_flops = device == "cuda" if count_flops is None else count_flops
    cfg = load_config()
    if model == "tiny":
        comps = build_tiny_components(cfg["generator"]["tiny"], resolution, inpaint=inpaint)
        from_scratch = True
    else:
        comps = sd14_components(resolution)
        if inpaint:
            from xsyn.generator.factory import widen_conv_in

            widen_conv_in(comps.unet)
        from_scratch = False
    stage = Stage("bench", steps, inpaint, "unet")
    params = [p for ps in select_trainable(comps, stage, from_scratch).values() for p in ps]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    comps.unet.to(device)
    for m in (comps.vae, comps.text_encoder):
        m.to(device, dtype=torch.float32 if from_scratch else dtype)
    loss_module = TrainingObjective(comps, stage, train_text=from_scratch)
    opt = torch.optim.AdamW(params, lr=1e-5)
    g = torch.Generator().manual_seed(0)
    latent = resolution // comps.vae_scale_factor
    times = []
    flops = None
    for i in range(steps + 2):
        b = fake_batch(batch, resolution, latent, inpaint, g)
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        counter = FlopCounterMode(display=False) if count_flops and i == 0 else contextlib.nullcontext()
        with counter:
            with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
                loss = loss_module(b, g)
            loss.backward()
        if count_flops and i == 0:
            flops = counter.get_total_flops()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t)
    mean = sum(times) / len(times)
    peak = None
    if device == "cuda":
        from synthesis_speed import bf16_peak_tflops  # this folder is on sys.path when run from it

        peak = bf16_peak_tflops(device)
    extra = {}
    if flops is not None:
        extra = {"tflops_per_step": round(flops / 1e12, 4), "tflops_per_s": round(flops / mean / 1e12, 4),
                 "bf16_peak_fraction": round(flops / mean / (peak * 1e12), 4) if peak else None}
    return {
        "model": model, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "resolution": resolution, "batch": batch, "precision": precision,
        "inpaint": inpaint, "trainable_params_M": round(sum(p.numel() for p in params) / 1e6, 2),
        "s_per_step": round(mean, 4), "it_per_s": round(1 / mean, 3), "images_per_s": round(batch / mean, 2),
        "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        **extra,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "sd14"], default="tiny")
    p.add_argument("--resolution", type=int, default=None, help="default: config (tiny) or 512 (sd14)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--precision", choices=["no", "bf16", "fp16"], default="no")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--inpaint", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = args.resolution or (load_config()["generator"]["resolution"] if args.model == "tiny" else 512)
    print(json.dumps(bench(args.model, res, args.batch, args.precision, args.steps, args.inpaint)))


if __name__ == "__main__":
    main()
