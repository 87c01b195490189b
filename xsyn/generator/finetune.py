"""Fine-tuning of the GLIGEN generator: (tiny: VAE pre-training), generation, then inpainting.

What is trained follows the authors (DESIGN §2): for pretrained weights only the gated
fuser layers, the position net and (inpainting) ``conv_in``; a tiny model has no
pretrained weights, so its whole UNet and text encoder learn from scratch, after a short
VAE reconstruction stage. Between the stages ``conv_in`` grows 4 → 9 channels with zero
weights on the new ones, so the inpainting stage starts from the generation model.

Resumability: every random draw of a step (batch order, flips, caption drop, masks,
noise, timesteps) comes from a generator seeded by (seed, stage, step, micro-batch,
process), and checkpoints hold model, optimizer, LR-schedule and EMA state, so a run
killed and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from xsyn.generator.data import Example, batch_indices, load_examples, make_batch, random_crop
from xsyn.generator.factory import (
    GeneratorComponents,
    build_components,
    pretrained_identity,
    save_generator,
    widen_conv_in,
    write_generator,
)
from xsyn.io import atomic_dir, atomic_path, write_json

CRASH_ENV = "XSYN_FINETUNE_CRASH_AFTER"  # test hook: raise after this many optimizer steps
KEEP_CHECKPOINTS = 2
VAE_KL_WEIGHT = 1e-6  # SD's KL weight: a nearly deterministic autoencoder


class SimulatedCrash(RuntimeError):
    """Raised by the test hook to kill a run between two steps."""


class BudgetExceeded(RuntimeError):
    """The wall-clock budget (``--max-minutes``) ran out; the last checkpoint allows resuming."""


@dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    inpaint: bool
    kind: str  # "vae" | "unet"


def plan_stages(cfg: dict[str, Any]) -> list[Stage]:
    """The stages of a run: tiny models first learn their VAE, then the config's stages."""
    ft = cfg["finetune"]
    stages = []
    if cfg["generator"]["kind"] == "tiny" and ft.get("vae_steps", 0) > 0:
        stages.append(Stage("vae", ft["vae_steps"], False, "vae"))
    for s in ft["stages"]:
        stages.append(Stage(s["name"], s["steps"], s["inpaint"], "unet"))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"finetune.stages: duplicate stage names {names}")
    for prev, nxt in zip(stages, stages[1:], strict=False):
        if prev.inpaint and not nxt.inpaint:
            raise ValueError(f"finetune.stages: {nxt.name!r} cannot follow inpainting stage {prev.name!r}")
    return stages


def is_grounding_param(name: str, inpaint: bool) -> bool:
    """The authors' trainable set: gated fusers, position net, (inpainting) conv_in."""
    return ".fuser." in name or name.startswith("position_net.") or (inpaint and name.startswith("conv_in."))


def select_trainable(
    comps: GeneratorComponents, stage: Stage, from_scratch: bool, train_text: bool = True
) -> dict[str, list[torch.nn.Parameter]]:
    """Set ``requires_grad`` for a stage; returns the trained parameters by module.

    ``train_text`` (from-scratch models only): also train the text encoder. Frozen, a
    randomly initialised CLIP text encoder is a fixed, distinct code per word; trained
    jointly from scratch it can collapse to one output for every prompt (measured on the
    smoke run: phrase embeddings 5.0 apart at init, 0.1 after training), and then the
    UNet cannot tell a gun from scissors.
    """
    for m in (comps.unet, comps.vae, comps.text_encoder):
        m.requires_grad_(False)
    if stage.kind == "vae":
        comps.vae.requires_grad_(True)
        return {"vae": list(comps.vae.parameters())}
    if from_scratch:
        comps.unet.requires_grad_(True)
        groups = {"unet": list(comps.unet.parameters())}
        if train_text:
            comps.text_encoder.requires_grad_(True)
            groups["text_encoder"] = list(comps.text_encoder.parameters())
        return groups
    params = []
    for name, p in comps.unet.named_parameters():
        if is_grounding_param(name, stage.inpaint):
            p.requires_grad_(True)
            params.append(p)
    return {"unet": params}


def encode_captions(comps: GeneratorComponents, captions: list[str], device) -> torch.Tensor:
    """Per-token caption states (B, 77, D), SD-style max-length padding; unique texts once."""
    uniq = list(dict.fromkeys(captions))
    ids = comps.tokenizer(
        uniq, padding="max_length", max_length=comps.tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids.to(device)
    states = comps.text_encoder(ids).last_hidden_state
    return states[torch.tensor([uniq.index(c) for c in captions], device=device)]


def encode_phrases(comps: GeneratorComponents, phrases: list[str], shape: tuple[int, int], device) -> torch.Tensor:
    """Pooled phrase embeddings (B, N, D) as the GLIGEN pipeline makes them; "" → zeros
    (padding tokens are replaced by the position net's learned null feature anyway)."""
    dim = comps.unet.config.cross_attention_dim
    uniq = [p for p in dict.fromkeys(phrases) if p]
    table = torch.zeros(len(uniq) + 1, dim, device=device)
    if uniq:
        tok = comps.tokenizer(uniq, padding=True, truncation=True, return_tensors="pt").to(device)
        pooled = comps.text_encoder(**tok).pooler_output
        table = torch.cat([pooled.to(table.dtype), table[:1]], 0)
    idx = torch.tensor([uniq.index(p) if p else len(uniq) for p in phrases], device=device)
    return table[idx].view(*shape, dim)


class LossModule(torch.nn.Module):
    """One training objective as a module, so accelerate/DDP wrap a single forward.

    ``vae`` stage: L1 + L2 reconstruction + a small KL. ``unet`` stages: noise-prediction
    MSE with GLIGEN grounding; inpainting feeds cat(noisy latent, latent·mask, mask) as
    ``StableDiffusionGLIGENPipeline`` does at sampling time.
    """

    def __init__(
        self, comps: GeneratorComponents, stage: Stage, train_text: bool, mask_loss_weight: float = 1.0,
        snr_gamma: float | None = None,
    ):
        super().__init__()
        self.unet, self.vae, self.text_encoder = comps.unet, comps.vae, comps.text_encoder
        self.comps, self.stage, self.train_text = comps, stage, train_text
        self.mask_loss_weight, self.snr_gamma = mask_loss_weight, snr_gamma

    def sample_latents(self, pix: torch.Tensor, g: torch.Generator) -> tuple[Any, torch.Tensor]:
        """The VAE posterior and a sample drawn with the step's generator."""
        post = self.vae.encode(pix.to(self.vae.dtype)).latent_dist
        eps = torch.randn(post.mean.shape, generator=g).to(pix.device, post.mean.dtype)
        return post, post.mean + post.std * eps

    def forward(self, batch: dict[str, Any], g: torch.Generator) -> torch.Tensor:
        dev = self.unet.device
        if self.stage.kind == "vae":
            pix = batch["pixel_values"].to(dev)
            post, z = self.sample_latents(pix, g)
            rec = self.vae.decode(z).sample.float()
            return F.l1_loss(rec, pix) + F.mse_loss(rec, pix) + VAE_KL_WEIGHT * post.kl().mean()
        with torch.no_grad():
            if "latent_mean" in batch:  # cached posterior (see FineTuner.cache_latents)
                mean, std = batch["latent_mean"].to(dev), batch["latent_std"].to(dev)
                latents = mean + std * torch.randn(mean.shape, generator=g).to(dev)
            else:
                latents = self.sample_latents(batch["pixel_values"].to(dev), g)[1].float()
            latents = latents.float() * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=g).to(dev)
        sched = self.comps.scheduler
        t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=g).to(dev)
        model_in = sched.add_noise(latents, noise, t)
        if self.stage.inpaint:
            m = batch["inpaint_mask"].to(dev)
            model_in = torch.cat([model_in, latents * m, m], 1)
        with torch.set_grad_enabled(self.train_text and torch.is_grad_enabled()):
            ctx = encode_captions(self.comps, batch["captions"], dev)
            pos = encode_phrases(self.comps, batch["phrases"], tuple(batch["boxes"].shape[:2]), dev)
        gligen = {
            "boxes": batch["boxes"].to(dev),
            "positive_embeddings": pos.to(self.unet.dtype),
            "masks": batch["box_mask"].to(dev),
        }
        pred = self.unet(
            model_in, t, encoder_hidden_states=ctx.to(self.unet.dtype), cross_attention_kwargs={"gligen": gligen}
        ).sample
        v_pred = sched.config.prediction_type == "v_prediction"
        target = sched.get_velocity(latents, noise, t) if v_pred else noise
        err = (pred.float() - target) ** 2
        if self.snr_gamma:
            # Min-SNR-γ (Hang et al. 2023): cap the weight of the nearly clean timesteps, so
            # the steps go to the noisy ones where an item's shape and class are decided
            from diffusers.training_utils import compute_snr

            snr = compute_snr(sched, t)
            err = err * (torch.clamp(snr, max=self.snr_gamma) / (snr + 1 if v_pred else snr))[:, None, None, None]
        if self.stage.inpaint and self.mask_loss_weight != 1.0:
            # weight the repainted boxes more than the (given) context: a tiny model's
            # capacity goes to the items, not to re-predicting the known background
            w = 1.0 + (self.mask_loss_weight - 1.0) * (1.0 - batch["inpaint_mask"].to(dev))
            return (err * w).mean() / w.mean()
        return err.mean()


def to_dtype(module: torch.nn.Module, dtype: torch.dtype, device=None) -> torch.nn.Module:
    """Move/cast only when needed (diffusers warns on every dtype cast, even a no-op one)."""
    if device is not None:
        module.to(device)
    if next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)
    return module


def step_generator(seed: int, stage: int, step: int, micro: int, process: int) -> torch.Generator:
    return torch.Generator().manual_seed(
        (((seed * 1009 + stage) * 1_000_003 + step) * 64 + micro) * 1024 + process
    )


class FineTuner:
    """Runs the stages of one fine-tuning job with checkpoints in ``work_dir``."""

    def __init__(
        self,
        cfg: dict[str, Any],
        dataset: str | os.PathLike,
        out: str | os.PathLike,
        work_dir: str | os.PathLike,
        max_minutes: float | None = None,
        crash_after: int | None = None,
        examples: list[Example] | None = None,
        extra_outputs: Callable[[GeneratorComponents, Path], None] | None = None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.cfg, self.ft, self.gen = cfg, cfg["finetune"], cfg["generator"]
        self.dataset, self.out, self.work_dir = Path(dataset), Path(out), Path(work_dir)
        self.deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
        env_crash = os.environ.get(CRASH_ENV)
        self.crash_after = crash_after if crash_after is not None else (int(env_crash) if env_crash else None)
        self.from_scratch = self.gen["kind"] == "tiny"
        self.stages = plan_stages(cfg)
        device = cfg.get("device", "auto")
        self.accelerator = Accelerator(
            mixed_precision=self.ft.get("mixed_precision", "no"),
            gradient_accumulation_steps=self.ft.get("gradient_accumulation", 1),
            cpu=device == "cpu",
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        acc = self.accelerator
        per_step = self.ft["batch_size"]
        denom = acc.num_processes * self.ft.get("gradient_accumulation", 1)
        if per_step % denom:
            raise ValueError(
                f"finetune.batch_size {per_step} must be divisible by processes × gradient_accumulation = {denom}"
            )
        self.micro_batch = per_step // denom
        self.seed = self.ft.get("seed", 0)
        self.examples = examples
        if self.examples is None:
            self.examples, _ = load_examples(
                self.dataset, self.ft.get("train_split", "train"), self.gen["resolution"],
                self.ft.get("min_box_area", 0.01), self.ft.get("max_boxes", 8),
            )
        self.records: list[dict[str, Any]] = []
        self.extra_outputs = extra_outputs
        self.latent_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ checkpoints

    @property
    def ckpt_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.ckpt_dir.glob("ckpt-*.pt"))
        return found[-1] if found else None

    def model_state(self) -> dict[str, torch.Tensor]:
        """Everything this run may have changed (tiny: all; pretrained: grounding params)."""
        state = {}
        for mod_name in ("unet", "text_encoder", "vae"):
            for n, t in getattr(self.comps, mod_name).state_dict().items():
                if self.from_scratch or (mod_name == "unet" and is_grounding_param(n, True)):
                    state[f"{mod_name}.{n}"] = t.detach().cpu().clone()
        return state

    def save_checkpoint(self, stage_idx: int, step: int, global_step: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt = {
                "stage": stage_idx,
                "stage_name": self.stages[stage_idx].name,
                "step": step,
                "global_step": global_step,
                "in_channels": self.comps.unet.config.in_channels,
                "vae_scaling_factor": self.comps.vae.config.scaling_factor,
                "model": self.model_state(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
                "records": list(self.records),
            }
            path = self.ckpt_dir / f"ckpt-{global_step:08d}.pt"
            with atomic_path(path) as tmp:
                torch.save(ckpt, tmp)
            for old in sorted(self.ckpt_dir.glob("ckpt-*.pt"))[:-KEEP_CHECKPOINTS]:
                old.unlink()
        acc.wait_for_everyone()

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if ckpt["in_channels"] != self.comps.unet.config.in_channels:
            widen_conv_in(self.comps.unet, ckpt["in_channels"])
        by_module: dict[str, dict[str, torch.Tensor]] = {}
        for k, t in ckpt["model"].items():
            mod, n = k.split(".", 1)
            by_module.setdefault(mod, {})[n] = t
        for mod, state in by_module.items():
            missing, unexpected = getattr(self.comps, mod).load_state_dict(state, strict=self.from_scratch)
            if unexpected:
                raise ValueError(f"{path}: checkpoint does not fit the {mod}: unexpected {unexpected[:5]}")
        self.comps.vae.register_to_config(scaling_factor=ckpt["vae_scaling_factor"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        self.records = list(ckpt["records"])
        return ckpt

    # ------------------------------------------------------------------ stages

    def setup_stage(self, stage: Stage) -> list[torch.nn.Parameter]:
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        acc = self.accelerator
        if stage.inpaint and self.comps.unet.config.in_channels != 9:
            widen_conv_in(self.comps.unet, 9)
        text_scale = self.ft.get("text_encoder_lr_scale", 1.0)
        groups = select_trainable(self.comps, stage, self.from_scratch, train_text=text_scale > 0)
        params = [p for ps in groups.values() for p in ps]
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        for name in ("unet", "vae", "text_encoder"):
            # frozen parts in the mixed-precision dtype (diffusers' training scripts do the same)
            frozen = name not in groups and name != "unet"
            to_dtype(getattr(self.comps, name), weight_dtype if frozen else torch.float32, acc.device)
        lr = self.ft["learning_rate"]
        self.optimizer = torch.optim.AdamW(
            [{"params": ps, "lr": lr * (text_scale if name == "text_encoder" else 1.0)} for name, ps in groups.items()],
            lr=lr, weight_decay=1e-2,
        )
        self.lr_scheduler = get_scheduler(
            "constant_with_warmup", self.optimizer, num_warmup_steps=self.ft.get("warmup_steps", 0)
        )
        loss_module = LossModule(
            self.comps, stage, "text_encoder" in groups, self.ft.get("mask_loss_weight", 1.0), self.ft.get("snr_gamma"),
        )
        self.model, self.optimizer = acc.prepare(loss_module, self.optimizer)
        self.ema = None
        if self.ft.get("ema") and stage.kind == "unet":
            self.ema = EMAModel(params, decay=self.ft.get("ema_decay", 0.999))
            self.ema.to(acc.device)
        return params

    def finish_stage(self, stage: Stage, params: list[torch.nn.Parameter]) -> None:
        """Apply EMA weights, back to fp32, fix the latent scale after the VAE stage."""
        if self.ema is not None:
            self.ema.copy_to(params)
        for name in ("unet", "vae", "text_encoder"):
            to_dtype(getattr(self.comps, name), torch.float32).requires_grad_(False)
        if stage.kind == "vae":
            self.comps.vae.register_to_config(scaling_factor=self.latent_scale())
        self.accelerator.free_memory()
        self.model = self.optimizer = self.lr_scheduler = self.ema = None

    @torch.no_grad()
    def cache_latents(self) -> None:
        """Encode every training scan once (posterior mean and std, unflipped); a flipped
        example uses the flipped latent. Deterministic, so a resumed run rebuilds the same."""
        vae = self.comps.vae.eval()
        means, stds = [], []
        g = torch.Generator().manual_seed(self.seed)
        idx = list(range(len(self.examples)))
        for i in tqdm(range(0, len(idx), 16), desc="cache latents", disable=not self.accelerator.is_local_main_process):
            pix = make_batch(self.examples, idx[i : i + 16], g, self.ft.get("max_boxes", 8), 0.0, flip=False)
            post = vae.encode(pix["pixel_values"].to(self.accelerator.device, vae.dtype)).latent_dist
            means.append(post.mean.float().cpu())
            stds.append(post.std.float().cpu())
        self.latent_cache = (torch.cat(means), torch.cat(stds))

    def attach_latents(self, batch: dict[str, Any]) -> None:
        mean, std = (t[batch["indices"]] for t in self.latent_cache)
        f = batch["flipped"]
        mean = torch.where(f[:, None, None, None], mean.flip(-1), mean)
        std = torch.where(f[:, None, None, None], std.flip(-1), std)
        if "crop_offsets" in batch:
            c = batch["crop"]
            wins = [(int(x), int(y)) for x, y in batch["crop_offsets"].tolist()]
            mean = torch.stack([m[:, y : y + c, x : x + c] for m, (x, y) in zip(mean, wins, strict=True)])
            std = torch.stack([s[:, y : y + c, x : x + c] for s, (x, y) in zip(std, wins, strict=True)])
        batch["latent_mean"], batch["latent_std"] = mean, std

    def crop_cells(self, stage: Stage) -> int:
        """``finetune.inpaint_crop`` (px) in latent cells for this stage; 0 means whole scans,
        as does a window at least as large as the scans (e.g. smoke settings on small scans)."""
        px = self.ft.get("inpaint_crop", 0) if stage.inpaint else 0
        factor, res = self.comps.vae_scale_factor, self.gen["resolution"]
        if not px or px >= res:
            return 0
        if px % factor:
            raise ValueError(
                f"finetune.inpaint_crop {px}: must be a multiple of the VAE factor {factor} (0 turns it off)"
            )
        return px // factor

    @torch.no_grad()
    def latent_scale(self, max_images: int = 64) -> float:
        """1 / std of the VAE latents on training scans (SD's 0.18215 was found the same way)."""
        vae = self.comps.vae.eval()
        idx = list(range(min(max_images, len(self.examples))))
        g = torch.Generator().manual_seed(self.seed)
        zs = []
        for i in range(0, len(idx), 16):
            pix = make_batch(self.examples, idx[i : i + 16], g, self.ft.get("max_boxes", 8), 0.0, flip=False)
            pix = pix["pixel_values"]
            post = vae.encode(pix.to(self.accelerator.device)).latent_dist
            zs.append((post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(post.mean)).float().cpu())
        return float(1.0 / torch.cat(zs).std().clamp_min(1e-6))

    def run_stage(self, stage_idx: int, start_step: int, global_step: int, ckpt: dict | None) -> int:
        stage = self.stages[stage_idx]
        acc = self.accelerator
        params = self.setup_stage(stage)
        if ckpt is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
            if self.ema is not None and ckpt["ema"] is not None:
                self.ema.load_state_dict(ckpt["ema"])
        self.model.train()
        if stage.kind == "unet" and self.ft.get("cache_latents", False) and self.latent_cache is None:
            self.cache_latents()
        accum = self.ft.get("gradient_accumulation", 1)
        latent_size = self.gen["resolution"] // self.comps.vae_scale_factor
        crop = self.crop_cells(stage)
        bar = tqdm(
            total=stage.steps, initial=start_step, desc=f"finetune {stage.name}",
            disable=not acc.is_local_main_process, dynamic_ncols=True,
        )
        smooth = None
        for step in range(start_step, stage.steps):
            losses = []
            for micro in range(accum):
                g = step_generator(self.seed, stage_idx, step, micro, acc.process_index)
                pos = (step * accum + micro) * acc.num_processes + acc.process_index
                idx = batch_indices(len(self.examples), self.micro_batch, pos, self.seed + stage_idx)
                batch = make_batch(
                    self.examples, idx, g, self.ft.get("max_boxes", 8),
                    self.ft.get("caption_drop_prob", 0.5) if stage.kind == "unet" else 0.0,
                    self.ft.get("grounding_drop_prob", 0.0) if stage.kind == "unet" else 0.0,
                    flip=True, inpaint=stage.inpaint, latent_size=latent_size, crop=crop,
                )
                if stage.kind == "vae":
                    batch["pixel_values"] = random_crop(batch["pixel_values"], self.ft.get("vae_crop", 0), g)
                elif self.latent_cache is not None:
                    self.attach_latents(batch)
                with acc.accumulate(self.model):
                    loss = self.model(batch, g)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(params, 1.0)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.step(params)
            step_loss = float(acc.gather(torch.stack(losses).mean()[None]).mean())
            global_step += 1
            self.records.append({
                "stage": stage.name, "step": step + 1, "global_step": global_step,
                "loss": step_loss, "lr": self.lr_scheduler.get_last_lr()[0],
            })
            smooth = step_loss if smooth is None else 0.9 * smooth + 0.1 * step_loss
            bar.update(1)
            bar.set_postfix(loss=f"{smooth:.4f}")
            every = self.ft.get("checkpoint_every", 100)
            if (step + 1) % every == 0 or step + 1 == stage.steps:
                if step + 1 == stage.steps:
                    self.finish_stage(stage, params)
                self.save_checkpoint(stage_idx, step + 1, global_step)
            if self.crash_after is not None and global_step >= self.crash_after:
                bar.close()
                raise SimulatedCrash(f"simulated crash after {global_step} steps ({CRASH_ENV})")
            if self.deadline is not None and time.monotonic() > self.deadline and step + 1 < stage.steps:
                self.save_checkpoint(stage_idx, step + 1, global_step)
                bar.close()
                raise BudgetExceeded(
                    f"time budget reached in stage {stage.name!r} at step {step + 1}/{stage.steps}; "
                    f"checkpoint in {self.ckpt_dir}, rerun the same command to resume"
                )
        bar.close()
        if stage.steps == start_step and ckpt is None:
            self.finish_stage(stage, params)  # a zero-step stage still widens conv_in and ends cleanly
        return global_step

    # ------------------------------------------------------------------ main

    def train(self) -> GeneratorComponents:
        """Run (or resume) every stage; returns the final components (also written to ``out``)."""
        self.comps = build_components({**self.cfg, "seed": self.seed}, inpaint=False)
        if self.comps.unet.config.in_channels == 9 and any(s.kind == "unet" and not s.inpaint for s in self.stages):
            raise ValueError(
                "finetune.stages: the configured UNet is already an inpainting model (9-channel conv_in), "
                "so it cannot train a generation stage; point generator.pretrained at a generation "
                "checkpoint (e.g. gligen-1-4-generation-text-box) or keep only inpainting stages"
            )
        self.model = self.optimizer = self.lr_scheduler = self.ema = None
        start_stage, start_step, global_step, ckpt = 0, 0, 0, None
        self.claim_work_dir()
        path = self.latest_checkpoint()
        if path is not None:
            ckpt = self.load_checkpoint(path)
            start_stage, start_step, global_step = ckpt["stage"], ckpt["step"], ckpt["global_step"]
            if self.stages[start_stage].name != ckpt["stage_name"]:
                raise ValueError(f"{path}: checkpoint stage {ckpt['stage_name']!r} does not match the config's stages")
            if start_step >= self.stages[start_stage].steps:  # that stage finished
                start_stage, start_step, ckpt = start_stage + 1, 0, None
            if self.accelerator.is_main_process:
                print(f"resuming from {path} (stage {start_stage}, step {start_step})")
        for i in range(start_stage, len(self.stages)):
            stage = self.stages[i]
            global_step = self.run_stage(i, start_step, global_step, ckpt)
            if stage.kind == "unet" and i + 1 < len(self.stages) and self.accelerator.is_main_process:
                save_generator(self.comps, self.work_dir / "stages" / stage.name)
            start_step, ckpt = 0, None
        if self.accelerator.is_main_process:
            self.write_output()
            # The job is done: its checkpoints could only "resume" a finished run next time.
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return self.comps

    def fingerprint(self) -> str:
        """What the checkpoints in ``work_dir`` were trained for (config sections + data)."""
        ident = {"generator": self.gen, "finetune": self.ft, "dataset": str(self.dataset.resolve()),
                 "examples": len(self.examples)}
        if self.gen["kind"] == "pretrained":  # a retrained starting point is another job
            ident["pretrained_files"] = pretrained_identity(self.gen.get("pretrained") or {})
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

    def claim_work_dir(self) -> None:
        """Resume only checkpoints of this very job: a changed config or dataset starts afresh."""
        stamp = self.work_dir / "fingerprint.txt"
        current = self.fingerprint()
        if self.accelerator.is_main_process:
            if stamp.exists() and stamp.read_text().strip() != current:
                print(f"{self.work_dir}: checkpoints belong to another config or dataset; starting afresh")
                shutil.rmtree(self.work_dir)
            if not stamp.exists():
                self.work_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(stamp) as tmp:
                    tmp.write_text(current + "\n")
        self.accelerator.wait_for_everyone()

    def conditioning_check(self) -> dict[str, Any] | None:
        """Box loss with swapped / true classes on held-out scans (see ``conditioning.py``)."""
        from xsyn.generator.conditioning import conditioning_ratio

        if not self.comps.is_inpainting:
            return None
        split = "val" if (self.dataset / "annotations" / "val.json").is_file() else self.ft.get("train_split", "train")
        examples, classes = load_examples(
            self.dataset, split, self.gen["resolution"], self.ft.get("min_box_area", 0.01), self.ft.get("max_boxes", 8),
        )
        examples = [ex for ex in examples if len(ex.boxes)][:64]
        if not examples or len(classes) < 2:
            return None
        # whole scans, as the pipelines sample
        result = conditioning_ratio(self.comps, examples, classes, seed=self.seed, max_boxes=self.ft.get("max_boxes", 8))
        return {"split": split, "images": len(examples), **result}

    def write_output(self) -> None:
        with atomic_dir(self.out) as tmp:
            write_generator(self.comps, tmp)
            write_loss(self.records, tmp)
            for stage in self.stages[:-1]:
                src = self.work_dir / "stages" / stage.name
                if stage.kind == "unet" and src.is_dir():
                    shutil.copytree(src, tmp / "stages" / stage.name)
            write_json(tmp / "finetune.json", {
                "stages": [s.__dict__ for s in self.stages],
                "num_train_images": len(self.examples),
                "final_loss": {s.name: last_mean(self.records, s.name) for s in self.stages},
                "conditioning": self.conditioning_check(),
            })
            if self.extra_outputs is not None:
                self.extra_outputs(self.comps, tmp)


def last_mean(records: list[dict[str, Any]], stage: str, n: int = 20) -> float | None:
    vals = [r["loss"] for r in records if r["stage"] == stage][-n:]
    return float(np.mean(vals)) if vals else None


def write_loss(records: list[dict[str, Any]], folder: Path) -> None:
    """``loss.csv`` (one row per optimizer step) and ``loss.png`` (one panel per stage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = ["stage", "step", "global_step", "loss", "lr"]
    with open(folder / "loss.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: r[k] for k in fields} for r in records)
    stages = list(dict.fromkeys(r["stage"] for r in records))
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(4 * max(1, len(stages)), 3), squeeze=False)
    for ax, name in zip(axes[0], stages, strict=False):
        steps = np.array([r["step"] for r in records if r["stage"] == name])
        loss = np.array([r["loss"] for r in records if r["stage"] == name])
        ax.plot(steps, loss, alpha=0.3, lw=0.8, label="step")
        k = max(1, len(loss) // 20)
        if len(loss) >= k:
            ax.plot(steps[k - 1 :], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("loss")
    fig.tight_layout()
    fig.savefig(folder / "loss.png", dpi=120)
    plt.close(fig)


def finetune(
    cfg: dict[str, Any],
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    work_dir: str | os.PathLike | None = None,
    max_minutes: float | None = None,
    crash_after: int | None = None,
    examples: list[Example] | None = None,
    extra_outputs: Callable[[GeneratorComponents, Path], None] | None = None,
) -> GeneratorComponents:
    """Fine-tune (or train from scratch) the generator and write the diffusers folder ``out``.

    ``extra_outputs(components, folder)`` may add files (a sample grid) to the output
    folder before it is swapped in atomically.
    """
    work_dir = Path(work_dir) if work_dir is not None else Path(str(out) + ".work")
    tuner = FineTuner(cfg, dataset, out, work_dir, max_minutes, crash_after, examples, extra_outputs)
    return tuner.train()
