"""Fine-tuning of the GLIGEN generator: (tiny: VAE pre-training), generation, then inpainting.

What each stage trains and on which loss lives in :mod:`xsyn.generator.objective`; this
module runs the stages the way diffusers' training examples do (``train_text_to_image.py``):
one linear loop per stage (batch → loss → ``accelerator.backward`` → clip → optimizer and
LR-schedule step → EMA → log → checkpoint), ``accelerator.save_state`` every
``finetune.checkpoint_every`` steps into ``work_dir/checkpoints/checkpoint-<global step>``
(the newest :data:`CHECKPOINTS_TOTAL_LIMIT` kept) and ``accelerator.load_state`` to resume.
Between the stages ``conv_in`` grows 4 → 9 channels with zero weights on the new ones, so
the inpainting stage starts from the generation model.

Resumability: every random draw of a step (batch order, flips, caption drop, masks,
noise, timesteps) comes from a generator seeded by (seed, stage, step, micro-batch,
process), and a checkpoint holds the changed weights, optimizer, LR-schedule, EMA and RNG
states and the loss log, so a run killed and resumed ends with the same weights as one
that never stopped. A ``step_callback`` sees every finished step (tests interrupt runs
with it).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from xsyn.generator.alignment import build_alignment
from xsyn.generator.data import (
    Example,
    attach_class_masks,
    batch_indices,
    load_examples,
    make_batch,
    random_crop,
)
from xsyn.generator.factory import (
    GeneratorComponents,
    build_components,
    pretrained_identity,
    save_generator,
    widen_conv_in,
    write_generator,
)
from xsyn.generator.objective import (
    Stage,
    TrainingObjective,
    is_grounding_param,
    plan_stages,
    select_trainable,
)
from xsyn.io import atomic_dir, atomic_path, read_json, write_json

CHECKPOINTS_TOTAL_LIMIT = 2  # diffusers' checkpoints_total_limit: older checkpoints are deleted
CHECKPOINT_PREFIX = "checkpoint-"
MODEL_STATE = "model.safetensors"  # what this run changes (tiny: everything; pretrained: grounding)
EMA_STATE = "ema.pt"
TRAINER_STATE = "trainer_state.json"  # stage, step, global step, loss log


class BudgetExceeded(RuntimeError):
    """The wall-clock budget (``--max-minutes``) ran out; the last checkpoint allows resuming."""


@dataclass(frozen=True)
class StepInfo:
    """A finished optimizer step, as a ``step_callback`` sees it."""

    stage: str
    step: int  # steps done in this stage
    global_step: int
    loss: float


StepCallback = Callable[[StepInfo], None]


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


def make_accelerator(ft: dict[str, Any], device: str) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(
        mixed_precision=ft["mixed_precision"],
        gradient_accumulation_steps=ft["gradient_accumulation"],
        cpu=device == "cpu",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
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
        examples: list[Example] | None = None,
        extra_outputs: Callable[[GeneratorComponents, Path], None] | None = None,
        step_callback: StepCallback | None = None,
    ):
        self.cfg, self.ft, self.gen = cfg, cfg["finetune"], cfg["generator"]
        self.dataset, self.out, self.work_dir = Path(dataset), Path(out), Path(work_dir)
        self.deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
        self.step_callback = step_callback
        self.from_scratch = self.gen["kind"] == "tiny"
        self.stages = plan_stages(cfg)
        self.accelerator = acc = make_accelerator(self.ft, cfg["device"])
        acc.register_save_state_pre_hook(self._save_state_hook)
        acc.register_load_state_pre_hook(self._load_state_hook)
        self.accumulation = self.ft["gradient_accumulation"]
        per_step, denom = self.ft["batch_size"], acc.num_processes * self.accumulation
        if per_step % denom:
            raise ValueError(
                f"finetune.batch_size {per_step} must be divisible by processes × gradient_accumulation = {denom}"
            )
        self.micro_batch = per_step // denom
        self.seed = self.ft["seed"]
        self.examples = examples
        alignment = self.ft["attention_alignment"]
        self.aligns = any(alignment[k] for k in ("token_weight", "pixel_weight", "mse_weight"))
        self.train_attention = alignment["train_attention"]
        self.attention_params: tuple[str, ...] = ()  # set per stage: attn2 projections the alignment trains
        if self.examples is None:
            self.examples, _ = load_examples(
                self.dataset, self.ft["train_split"], self.gen["resolution"],
                self.ft["min_box_area"], self.ft["max_boxes"],
            )
        self.records: list[dict[str, Any]] = []
        self.global_step = 0
        self.extra_outputs = extra_outputs
        self.latent_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.model = self.optimizer = self.lr_scheduler = self.ema = None
        self._position: dict[str, Any] = {}
        self._smooth: float | None = None

    # ------------------------------------------------------------------ checkpoints

    @property
    def ckpt_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (a temporary folder never matches)."""
        found = [p for p in self.ckpt_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def model_state(self) -> dict[str, torch.Tensor]:
        """Everything this run may have changed (tiny: all; pretrained: grounding params and
        the attention projections an alignment term trains)."""
        state = {}
        for mod_name in ("unet", "text_encoder", "vae"):
            for n, t in getattr(self.comps, mod_name).state_dict().items():
                if self.from_scratch or (mod_name == "unet" and (is_grounding_param(n, True)
                                                                 or n.startswith(self.attention_params))):
                    state[f"{mod_name}.{n}"] = t.detach().cpu().clone()
        return state

    def save_checkpoint(self, stage_index: int, step: int) -> None:
        """``accelerator.save_state`` into ``checkpoint-<global step>``: written under a
        temporary name and renamed when whole; then only the newest few are kept."""
        acc = self.accelerator
        self._position = {"stage": stage_index, "stage_name": self.stages[stage_index].name, "step": step,
                          "global_step": self.global_step}
        final = self.ckpt_dir / f"{CHECKPOINT_PREFIX}{self.global_step}"
        tmp = self.ckpt_dir / f".{final.name}.tmp"
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in self.checkpoints()[:-CHECKPOINTS_TOTAL_LIMIT]:
                shutil.rmtree(old)
        acc.wait_for_everyone()

    def _save_state_hook(self, models: list, weights: list, output_dir: str) -> None:
        """``save_state`` pre-hook: we write the weights this run changes (not every frozen
        one), the EMA and the trainer state; diffusers' examples save their models likewise."""
        weights.clear()
        if not self.accelerator.is_main_process:
            return
        out = Path(output_dir)
        save_file(self.model_state(), out / MODEL_STATE)
        if self.ema is not None:
            torch.save(self.ema.state_dict(), out / EMA_STATE)
        write_json(out / TRAINER_STATE, {
            **self._position,
            "in_channels": self.comps.unet.config.in_channels,
            "vae_scaling_factor": self.comps.vae.config.scaling_factor,
            "records": self.records,
        })

    def _load_state_hook(self, models: list, input_dir: str) -> None:
        """``load_state`` pre-hook: the weights were restored before the stage was set up
        (:meth:`restore_weights`); here only the EMA."""
        models.clear()
        ema_file = Path(input_dir) / EMA_STATE
        if self.ema is not None and ema_file.is_file():
            self.ema.load_state_dict(torch.load(ema_file, map_location="cpu", weights_only=True))

    def restore_weights(self, path: Path) -> dict[str, Any]:
        """Weights, latent scale and loss log of checkpoint ``path``; returns its trainer state."""
        state = read_json(path / TRAINER_STATE)
        if state["in_channels"] != self.comps.unet.config.in_channels:
            widen_conv_in(self.comps.unet, state["in_channels"])
        by_module: dict[str, dict[str, torch.Tensor]] = {}
        for k, t in load_file(path / MODEL_STATE).items():
            mod, n = k.split(".", 1)
            by_module.setdefault(mod, {})[n] = t
        for mod, tensors in by_module.items():
            _, unexpected = getattr(self.comps, mod).load_state_dict(tensors, strict=self.from_scratch)
            if unexpected:
                raise ValueError(f"{path}: checkpoint does not fit the {mod}: unexpected {unexpected[:5]}")
        self.comps.vae.register_to_config(scaling_factor=state["vae_scaling_factor"])
        self.records = list(state["records"])
        self.global_step = state["global_step"]
        return state

    def resume(self) -> tuple[int, int, Path | None]:
        """(stage index, step, checkpoint whose optimizer state to load) to start from."""
        path = self.latest_checkpoint()
        if path is None:
            return 0, 0, None
        state = self.restore_weights(path)
        stage_index, step = state["stage"], state["step"]
        if self.stages[stage_index].name != state["stage_name"]:
            raise ValueError(f"{path}: checkpoint stage {state['stage_name']!r} does not match the config's stages")
        if self.accelerator.is_main_process:
            print(f"resuming from {path} (stage {stage_index}, step {step})")
        if step >= self.stages[stage_index].steps:  # that stage finished: only the RNG states remain
            self.accelerator.load_state(str(path))
            return stage_index + 1, 0, None
        return stage_index, step, path

    # ------------------------------------------------------------------ stages

    def setup_stage(self, stage: Stage) -> list[torch.nn.Parameter]:
        """Trainable set, dtypes, AdamW, constant-with-warmup LR and EMA of one stage."""
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        acc = self.accelerator
        if stage.inpaint and self.comps.unet.config.in_channels != 9:
            widen_conv_in(self.comps.unet, 9)
        text_scale = self.ft["text_encoder_lr_scale"]
        term = build_alignment(self.cfg, self.comps) if stage.kind == "unet" and self.aligns else None
        extra = term.attention_layers if term is not None and self.train_attention else ()
        self.attention_params = tuple(f"{layer}.{proj}." for layer in extra for proj in ("to_q", "to_k"))
        groups = select_trainable(self.comps, stage, self.from_scratch, train_text=text_scale > 0, extra=extra)
        params = [p for ps in groups.values() for p in ps]
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        for name in ("unet", "vae", "text_encoder"):
            # frozen parts in the mixed-precision dtype (diffusers' training scripts do the same)
            frozen = name not in groups and name != "unet"
            to_dtype(getattr(self.comps, name), weight_dtype if frozen else torch.float32, acc.device)
        lr = self.ft["learning_rate"]
        optimizer = torch.optim.AdamW(
            [{"params": ps, "lr": lr * (text_scale if name == "text_encoder" else 1.0)} for name, ps in groups.items()],
            lr=lr, weight_decay=1e-2,
        )
        # A prepared schedule steps once per process per optimizer step (as in diffusers' examples)
        lr_scheduler = get_scheduler(
            "constant_with_warmup", optimizer, num_warmup_steps=self.ft["warmup_steps"] * acc.num_processes
        )
        objective = TrainingObjective(
            self.comps, stage, "text_encoder" in groups, self.ft["mask_loss_weight"], self.ft["snr_gamma"],
            terms=[term] if term is not None else (),
        )
        self.model, self.optimizer, self.lr_scheduler = acc.prepare(objective, optimizer, lr_scheduler)
        self.ema = None
        if self.ft["ema"] and stage.kind == "unet":
            self.ema = EMAModel(params, decay=self.ft["ema_decay"])
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
            pix = make_batch(self.examples, idx[i : i + 16], g, self.ft["max_boxes"], 0.0, flip=False)
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
        px = self.ft["inpaint_crop"] if stage.inpaint else 0
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
            pix = make_batch(self.examples, idx[i : i + 16], g, self.ft["max_boxes"], 0.0, flip=False)
            pix = pix["pixel_values"]
            post = vae.encode(pix.to(self.accelerator.device)).latent_dist
            zs.append((post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(post.mean)).float().cpu())
        return float(1.0 / torch.cat(zs).std().clamp_min(1e-6))

    # ------------------------------------------------------------------ the loop

    def micro_batch_at(self, stage_index: int, step: int, micro: int) -> tuple[dict[str, Any], torch.Generator]:
        """The batch of one micro-step and the generator of its remaining draws: a pure
        function of (seed, stage, step, micro, process), so a resumed run sees the same."""
        stage, acc = self.stages[stage_index], self.accelerator
        g = step_generator(self.seed, stage_index, step, micro, acc.process_index)
        pos = (step * self.accumulation + micro) * acc.num_processes + acc.process_index
        idx = batch_indices(len(self.examples), self.micro_batch, pos, self.seed + stage_index)
        unet = stage.kind == "unet"
        batch = make_batch(
            self.examples, idx, g, self.ft["max_boxes"],
            self.ft["caption_drop_prob"] if unet else 0.0,
            self.ft["grounding_drop_prob"] if unet else 0.0,
            flip=True, inpaint=stage.inpaint, latent_size=self.gen["resolution"] // self.comps.vae_scale_factor,
            crop=self.crop_cells(stage),
        )
        if not unet:
            batch["pixel_values"] = random_crop(batch["pixel_values"], self.ft["vae_crop"], g)
        elif self.latent_cache is not None:
            self.attach_latents(batch)
        return batch, g

    def train_step(self, stage_index: int, step: int, params: list[torch.nn.Parameter]) -> float:
        """One optimizer step over the accumulated micro-batches; the loss averaged over processes."""
        acc = self.accelerator
        losses = []
        for micro in range(self.accumulation):
            batch, g = self.micro_batch_at(stage_index, step, micro)
            with acc.accumulate(self.model):
                loss = self.model(batch, g)
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(params, 1.0)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        if self.ema is not None:
            self.ema.step(params)
        self.global_step += 1
        return float(acc.gather(torch.stack(losses).mean()[None]).mean())

    def log_step(self, stage: Stage, step: int, loss: float, bar: tqdm) -> None:
        self.records.append({
            "stage": stage.name, "step": step, "global_step": self.global_step,
            "loss": loss, "lr": self.lr_scheduler.get_last_lr()[0],
        })
        self._smooth = loss if self._smooth is None else 0.9 * self._smooth + 0.1 * loss
        bar.update(1)
        bar.set_postfix(loss=f"{self._smooth:.4f}")

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def run_stage(self, stage_index: int, start_step: int, checkpoint: Path | None) -> None:
        """One stage, a linear loop from ``start_step`` (resuming ``checkpoint``'s optimizer state)."""
        stage, acc = self.stages[stage_index], self.accelerator
        params = self.setup_stage(stage)
        if checkpoint is not None:
            acc.load_state(str(checkpoint))  # optimizer, LR schedule, EMA, RNG states
        self.model.train()
        if stage.kind == "unet" and self.ft["cache_latents"] and self.latent_cache is None:
            self.cache_latents()
        every = self.ft["checkpoint_every"]
        self._smooth = None
        with tqdm(total=stage.steps, initial=start_step, desc=f"finetune {stage.name}",
                  disable=not acc.is_local_main_process, dynamic_ncols=True) as bar:
            for step in range(start_step, stage.steps):
                loss = self.train_step(stage_index, step, params)
                self.log_step(stage, step + 1, loss, bar)
                last = step + 1 == stage.steps
                if last:
                    self.finish_stage(stage, params)
                saved = last or (step + 1) % every == 0
                if saved:
                    self.save_checkpoint(stage_index, step + 1)
                if self.step_callback is not None:
                    self.step_callback(StepInfo(stage.name, step + 1, self.global_step, loss))
                if not last and self.out_of_time():
                    if not saved:
                        self.save_checkpoint(stage_index, step + 1)
                    raise BudgetExceeded(
                        f"time budget reached in stage {stage.name!r} at step {step + 1}/{stage.steps}; "
                        f"checkpoint in {self.ckpt_dir}, rerun the same command to resume"
                    )
        if stage.steps == start_step and checkpoint is None:
            self.finish_stage(stage, params)  # a zero-step stage still widens conv_in and ends cleanly

    # ------------------------------------------------------------------ main

    def train(self) -> GeneratorComponents:
        """Run (or resume) every stage; returns the final components (also written to ``out``)."""
        self.comps = build_components(self.cfg, inpaint=False, seed=self.seed)
        if self.comps.unet.config.in_channels == 9 and any(s.kind == "unet" and not s.inpaint for s in self.stages):
            raise ValueError(
                "finetune.stages: the configured UNet is already an inpainting model (9-channel conv_in), "
                "so it cannot train a generation stage; point generator.pretrained at a generation "
                "checkpoint (e.g. gligen-1-4-generation-text-box) or keep only inpainting stages"
            )
        if self.aligns and any(ex.class_masks is None for ex in self.examples):
            attach_class_masks(self.examples, self.dataset, self.ft["train_split"], self.gen["resolution"],
                               self.gen["resolution"] // self.comps.vae_scale_factor,
                               self.ft["attention_alignment"]["masks"])
        self.claim_work_dir()
        start_stage, start_step, checkpoint = self.resume()
        for i in range(start_stage, len(self.stages)):
            stage = self.stages[i]
            self.run_stage(i, start_step, checkpoint)
            if stage.kind == "unet" and i + 1 < len(self.stages) and self.accelerator.is_main_process:
                save_generator(self.comps, self.work_dir / "stages" / stage.name)
            start_step, checkpoint = 0, None
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
            ident["pretrained_files"] = pretrained_identity(self.gen["pretrained"] or {})
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
        split = "val" if (self.dataset / "annotations" / "val.json").is_file() else self.ft["train_split"]
        examples, classes = load_examples(
            self.dataset, split, self.gen["resolution"], self.ft["min_box_area"], self.ft["max_boxes"],
        )
        examples = [ex for ex in examples if len(ex.boxes)][:64]
        if not examples or len(classes) < 2:
            return None
        # whole scans, as the pipelines sample
        result = conditioning_ratio(self.comps, examples, classes, seed=self.seed, max_boxes=self.ft["max_boxes"])
        return {"split": split, "images": len(examples), **result}

    def attention_check(self) -> dict[str, Any] | None:
        """Share of each class word's attention on its items, on held-out scans, in the layers
        the alignment term (configured or not) and CAR read (see ``alignment.attention_on_items``)."""
        from xsyn.generator.alignment import alignment_layers, attention_on_items

        if not self.comps.is_inpainting:
            return None
        al = self.ft["attention_alignment"]
        split = "val" if (self.dataset / "annotations" / "val.json").is_file() else self.ft["train_split"]
        examples, _ = load_examples(
            self.dataset, split, self.gen["resolution"], self.ft["min_box_area"], self.ft["max_boxes"],
        )
        examples = [ex for ex in examples if len(ex.boxes)][:64]
        if not examples:
            return None
        latent = self.gen["resolution"] // self.comps.vae_scale_factor
        attach_class_masks(examples, self.dataset, split, self.gen["resolution"], latent, al["masks"])
        try:
            layers = alignment_layers(self.comps.unet, latent, al["blocks"], al["resolutions"])
        except ValueError as e:  # a diagnostic: a UNet without those layers is reported, not fatal
            return {"skipped": str(e)}
        result = attention_on_items(self.comps, examples, layers, seed=self.seed, max_boxes=self.ft["max_boxes"])
        return {"split": split, "images": len(examples), "layers": layers, **result}

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
                "attention_on_items": self.attention_check(),
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
    examples: list[Example] | None = None,
    extra_outputs: Callable[[GeneratorComponents, Path], None] | None = None,
    step_callback: StepCallback | None = None,
) -> GeneratorComponents:
    """Fine-tune (or train from scratch) the generator and write the diffusers folder ``out``.

    ``extra_outputs(components, folder)`` may add files (a sample grid) to the output
    folder before it is swapped in atomically; ``step_callback(StepInfo)`` runs after every
    optimizer step (and its checkpoint), e.g. to stop a run from a test.
    """
    work_dir = Path(work_dir) if work_dir is not None else Path(str(out) + ".work")
    tuner = FineTuner(cfg, dataset, out, work_dir, max_minutes, examples, extra_outputs, step_callback)
    return tuner.train()
