"""XsynPipeline: batched GLIGEN inpainting that returns images *and* refined boxes.

Written the way diffusers writes pipelines (``StableDiffusionGLIGENPipeline``):
``check_inputs``, ``prepare_*`` helpers and a ``__call__`` that reads as numbered
steps, returning a :class:`~diffusers.utils.BaseOutput`. Its inpainting branch is
GLIGEN's (``conv_in`` sees ``cat(noisy latent, masked image latent, mask)``, the real
scan's noised latent replaces the sample outside the boxes at every step), made batched:
many source scans per UNet call, each with its own boxes (padded to the batch's largest
count and masked), unconditional and conditional halves in one call. On top of it:

- BOM: :mod:`xsyn.synthesis.bom` blends a real benign patch over each generated item,
  after the last step (``when="last"``, the non-BOM and BOM latents decoded in one VAE
  call) or at every step (``when="during"``);
- CAR, a step of its own after decoding: an
  :class:`~xsyn.synthesis.attention.AttentionStore` accumulates the class-word
  cross-attention in place during sampling, and :meth:`XsynPipeline.refine_boxes` refines
  each box on the decoded non-BOM image, with the source scan beside it.

Every size (image side, latent side) is computed once per call and passed explicitly.
Every random draw of image ``b`` comes from its own ``torch.Generator`` seeded with
``seeds[b]``, so an image depends on its seed and inputs, never on its batch neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention import GatedSelfAttentionDense
from diffusers.utils import BaseOutput
from PIL import Image

from xsyn.generator.tokens import word_token_spans
from xsyn.synthesis.attention import AttentionStore, install_capture, remove_capture
from xsyn.synthesis.bom import BomPatch, apply_bom, plan_bom
from xsyn.synthesis.car import CarResult
from xsyn.synthesis.car import refine_boxes as car_refine_boxes
from xsyn.synthesis.cues import cue_maps
from xsyn.synthesis.layouts import Layout
from xsyn.synthesis.segmenters import Segmenter, make_segmenter

ImageInput = np.ndarray | Image.Image


@dataclass
class XsynPipelineOutput(BaseOutput):
    """Per image: the final picture (BOM applied when on), its boxes and CAR's verdicts."""

    images: list[np.ndarray]                    # H×W×3 uint8
    requested_boxes: list[list[list[float]]]    # xywh px, as asked (free: read from attention)
    boxes: list[list[list[float]]]              # refined xywh px (= requested when CAR is off)
    car: list[list[CarResult]] | None           # CarResult per box, None when CAR is off
    non_bom_images: list[np.ndarray] | None = None  # the sample before BOM (when asked)
    maps: list[np.ndarray] | None = None        # (n_boxes, H, W) attention per box (when asked)
    ran: dict[str, Any] | None = None           # what ran: sampler as used, CAR's segmenter (provenance)


def attention_box(attn: np.ndarray, share: float = 0.5) -> list[float]:
    """xywh of the pixels above ``share`` × max of a map (free layout: no requested box)."""
    attn = np.asarray(attn, dtype=np.float64)
    lo, hi = float(attn.min()), float(attn.max())
    if hi <= lo:
        return [0.0, 0.0, float(attn.shape[1]), float(attn.shape[0])]
    ys, xs = np.nonzero(attn >= lo + share * (hi - lo))
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def norm_xyxy(box: Sequence[float], size: int) -> list[float]:
    """Pixel xywh → GLIGEN's unit xyxy on a ``size``-pixel square, clipped to [0, 1]."""
    x, y, w, h = (float(v) for v in box)
    return [min(max(v / size, 0.0), 1.0) for v in (x, y, x + w, y + h)]


def switched_on(section: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A ``car`` / ``bom`` argument when it asks for the strategy (``None``, ``{}`` or
    ``enabled: false`` → ``None``; a section without ``enabled``, e.g. ``{"alpha": 0.3,
    "when": "last"}``, asks for it: the pipeline's API, not a config default)."""
    return section if section and section.get("enabled", True) else None


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def _randn(gens: Sequence[torch.Generator], shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """One draw per image from its own generator (on CPU: identical on every device)."""
    return torch.cat([torch.randn((1, *shape), generator=g) for g in gens]).to(device, dtype)


class XsynPipeline(DiffusionPipeline):
    """Box-grounded X-ray synthesis with CAR box refinement and BOM occlusion.

    Load from a generator folder (a ``StableDiffusionGLIGENPipeline`` folder):
    ``XsynPipeline.from_pretrained(path, local_files_only=True)``. A call,
    ``pipe(layouts, images, seeds, ...)``, makes one image per layout:

    - ``images``: the real source scans (uint8 H×W×3 at ``resolution``), required unless
      every layout is ``free``; ``seeds``: one per layout (default ``0..B-1``);
    - ``car``: the ``synthesis.car`` config (``None`` or ``enabled: false`` → off);
      ``bom``: ``{"alpha", "when"}`` (``None`` or ``enabled: false`` → off);
    - ``grounding_beta``: share of the steps with the GLIGEN fuser on (diffusers'
      scheduled sampling; 1.0 = always, as the tiny model trains);
    - ``return_non_bom`` / ``return_maps``: also return the images before BOM and the
      per-box attention maps; ``resolution``: image side (default: the sources').
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae: AutoencoderKL, text_encoder: Any, tokenizer: Any,
                 unet: UNet2DConditionModel, scheduler: DDIMScheduler):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.store = AttentionStore()
        self._capture_key: tuple | None = None
        self._segmenters: dict[str, Segmenter] = {}

    @classmethod
    def from_components(cls, components: Any) -> XsynPipeline:
        """From :class:`xsyn.generator.factory.GeneratorComponents`."""
        return cls(vae=components.vae, text_encoder=components.text_encoder,
                   tokenizer=components.tokenizer, unet=components.unet,
                   scheduler=components.scheduler)

    # ------------------------------------------------------------------ inputs and sizes

    @staticmethod
    def prepare_source_images(images: Sequence[ImageInput] | None) -> list[np.ndarray] | None:
        """The source scans as H×W×3 arrays (PIL images converted to RGB, alpha dropped)."""
        if images is None:
            return None
        return [np.asarray(im.convert("RGB") if isinstance(im, Image.Image) else im)[..., :3]
                for im in images]

    def resolve_size(self, sources: Sequence[np.ndarray] | None, resolution: int | None) -> int:
        """Image side in pixels: ``resolution``, else the sources', else the UNet's native one."""
        if resolution:
            return int(resolution)
        if sources:
            return int(sources[0].shape[0])
        return self.unet.config.sample_size * self.vae_scale_factor

    def check_inputs(self, layouts: Sequence[Layout], sources: Sequence[np.ndarray] | None,
                     seeds: Sequence[int], size: int) -> None:
        if len(seeds) != len(layouts):
            raise ValueError(f"{len(seeds)} seeds for {len(layouts)} layouts")
        if size % self.vae_scale_factor:
            raise ValueError(f"image side {size} is not a multiple of the VAE factor {self.vae_scale_factor}")
        if sources is None:
            if any(lay.inpaint for lay in layouts):
                raise ValueError("inpainting layouts need the real source images")
            return
        if len(sources) != len(layouts):
            raise ValueError(f"{len(sources)} source images for {len(layouts)} layouts")
        for i, src in enumerate(sources):
            if src.dtype != np.uint8 or src.shape != (size, size, 3):
                raise ValueError(f"source image {i}: expected uint8 {size}×{size}×3 (the synthesis "
                                 f"resolution), got {src.dtype} {src.shape}")

    # ------------------------------------------------------------------ conditioning

    def encode_text(self, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        """One text-encoder call: (token states, pooled) for every text."""
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        out = self.text_encoder(ids)
        return out.last_hidden_state, out.pooler_output

    def encode_prompt(self, layouts: Sequence[Layout], negative_prompt: str, do_cfg: bool, device,
                      dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Caption states (unconditional first under CFG) and the pooled phrase embeddings
        of every box, all from one text-encoder call."""
        b = len(layouts)
        texts = ([negative_prompt] if do_cfg else []) + [lay.prompt for lay in layouts]
        texts += [p for lay in layouts for p in lay.phrases]
        states, pooled = self.encode_text(texts, device)
        states, pooled = states.to(dtype), pooled.to(dtype)
        k = 1 if do_cfg else 0
        prompt_embeds = states[k:k + b]
        if do_cfg:
            prompt_embeds = torch.cat([states[:1].expand(b, -1, -1), prompt_embeds])
        return prompt_embeds, pooled[k + b:]

    def prepare_gligen_inputs(self, layouts: Sequence[Layout], phrase_embeds: torch.Tensor, size: int,
                              do_cfg: bool, device, dtype) -> dict[str, torch.Tensor]:
        """GLIGEN's grounding tokens: boxes, phrase embeddings and masks, padded to the
        batch's largest box count (no grounding in the unconditional half)."""
        b = len(layouts)
        n_max = max(1, max(len(lay.boxes) for lay in layouts))
        boxes = torch.zeros(b, n_max, 4, device=device, dtype=dtype)
        emb = torch.zeros(b, n_max, self.unet.config.cross_attention_dim, device=device, dtype=dtype)
        masks = torch.zeros(b, n_max, device=device, dtype=dtype)
        j = 0
        for i, lay in enumerate(layouts):
            for n, box in enumerate(lay.boxes):
                boxes[i, n] = torch.tensor(norm_xyxy(box, size), dtype=dtype)
                emb[i, n] = phrase_embeds[j]
                masks[i, n] = 1
                j += 1
        if do_cfg:
            boxes, emb = torch.cat([boxes, boxes]), torch.cat([emb, emb])
            masks = torch.cat([torch.zeros_like(masks), masks])
        return {"boxes": boxes, "positive_embeddings": emb, "masks": masks}

    def prepare_inpaint_mask(self, layouts: Sequence[Layout], size: int, latent_side: int, device,
                             dtype) -> torch.Tensor:
        """Latent mask, 0 inside the generated boxes, 1 elsewhere (all 0 for free layouts).

        Box edges follow ``StableDiffusionGLIGENPipeline`` (``int(coord · side)``), the
        convention the generator was fine-tuned with."""
        mask = torch.ones(len(layouts), 1, latent_side, latent_side)
        for i, lay in enumerate(layouts):
            if not lay.inpaint:
                mask[i] = 0
            for box in lay.boxes:
                x0, y0, x1, y1 = (int(v * latent_side) for v in norm_xyxy(box, size))
                mask[i, :, y0:y1, x0:x1] = 0
        return mask.to(device, dtype)

    def encode_images(self, sources: Sequence[np.ndarray], device, dtype) -> torch.Tensor:
        """Batched VAE encode of uint8 RGB scans (distribution mean: deterministic)."""
        x = torch.from_numpy(np.stack(sources)).to(device).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1.0
        return self.vae.encode(x).latent_dist.mode() * self.vae.config.scaling_factor

    def prepare_source_latents(self, sources: Sequence[np.ndarray] | None, mask: torch.Tensor,
                               device, dtype) -> torch.Tensor:
        """The source scans' latents; zeros for free layouts (no background to keep)."""
        if sources is None:
            side = mask.shape[-1]
            z = torch.zeros(len(mask), self.vae.config.latent_channels, side, side, device=device, dtype=dtype)
        else:
            z = self.encode_images(sources, device, dtype)
        return z * (mask.amax(dim=(1, 2, 3), keepdim=True) > 0)

    def prepare_inpaint_condition(self, source_latents: torch.Tensor, mask: torch.Tensor,
                                  do_cfg: bool) -> torch.Tensor | None:
        """``cat(latent · mask, mask)``, the extra ``conv_in`` channels of an inpainting
        UNet (``None`` for a 4-channel generation UNet)."""
        if self.unet.config.in_channels != self.vae.config.latent_channels * 2 + 1:
            return None
        condition = torch.cat([source_latents * mask, mask], dim=1)
        return torch.cat([condition, condition]) if do_cfg else condition

    def prepare_latents(self, generators: Sequence[torch.Generator], latent_side: int, device,
                        dtype) -> torch.Tensor:
        shape = (self.vae.config.latent_channels, latent_side, latent_side)
        return _randn(generators, shape, device, dtype) * self.scheduler.init_noise_sigma

    @staticmethod
    def prepare_extra_step_kwargs(generators: Sequence[torch.Generator], eta: float) -> dict[str, Any]:
        return {"eta": eta, "generator": generators} if eta > 0 else {"eta": eta}

    @staticmethod
    def prepare_bom_plans(layouts: Sequence[Layout], seeds: Sequence[int],
                          bom: Mapping[str, Any] | None, size: int,
                          latent_side: int) -> list[list[BomPatch]]:
        """Where each image's benign patch goes, drawn once from the image's seed."""
        if bom is None:
            return []
        return [plan_bom(lay.bom_region, lay.boxes, size, (latent_side, latent_side), s + 1)
                for lay, s in zip(layouts, seeds, strict=True)]

    def prepare_attention_capture(self, car: Mapping[str, Any] | None, batch_size: int,
                                  latent_side: int, device) -> None:
        """Start capturing the class words' cross-attention for CAR (nothing when it is off)."""
        if car is None:
            return
        key = (latent_side, tuple(car["resolutions"]), tuple(car["blocks"]))
        if key != self._capture_key:
            # Installed once and kept: with the store inactive the captured layers run
            # plain SDPA, and a compiled UNet is not recompiled on every call.
            remove_capture(self.unet)
            install_capture(self.unet, self.store, latent_side, key[1], key[2])
            self._capture_key = key
        self.store.reset(batch_size, key[1], self.tokenizer.model_max_length, device)

    def enable_fuser(self, enabled: bool = True) -> None:
        for module in self.unet.modules():
            if type(module) is GatedSelfAttentionDense:
                module.enabled = enabled

    def keep_source(self, latents: torch.Tensor, source_latents: torch.Tensor, mask: torch.Tensor,
                    generators: Sequence[torch.Generator], t: torch.Tensor,
                    bom_plans: Sequence[Sequence[BomPatch]], bom: Mapping[str, Any] | None) -> torch.Tensor:
        """Outside the boxes, the source scan noised to step ``t`` (GLIGEN inpainting);
        with ``bom.when: during`` the benign patches are blended in at every step too."""
        noise = _randn(generators, source_latents.shape[1:], source_latents.device, self.unet.dtype)
        noised = self.scheduler.add_noise(source_latents, noise, t)
        latents = noised * mask + latents * (1 - mask)
        if bom is not None and bom["when"] == "during":
            latents = apply_bom(latents, noised, bom_plans, float(bom["alpha"]))
        return latents

    # ------------------------------------------------------------------ after sampling

    @staticmethod
    def blend_bom_last(latents: torch.Tensor, source_latents: torch.Tensor,
                       plans: Sequence[Sequence[BomPatch]], bom: Mapping[str, Any] | None) -> torch.Tensor | None:
        """The BOM latents after the last step, or ``None`` when BOM is off, ran during
        sampling, or no image has a benign region."""
        if bom is None or bom["when"] != "last" or not any(plans):
            return None
        return apply_bom(latents, source_latents, plans, float(bom["alpha"]))

    def decode_latents(self, latents: torch.Tensor, bom_latents: torch.Tensor | None,
                       keep_non_bom: bool) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Final images, and the non-BOM ones when BOM blended after the last step and
        ``keep_non_bom`` (both in one VAE call)."""
        if bom_latents is None:
            return self.decode(latents), None
        if not keep_non_bom:
            return self.decode(bom_latents), None
        decoded = self.decode(torch.cat([latents, bom_latents]))
        return decoded[len(latents):], decoded[:len(latents)]

    def decode(self, z: torch.Tensor) -> list[np.ndarray]:
        x = self.vae.decode(z / self.vae.config.scaling_factor).sample
        x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return list(x.permute(0, 2, 3, 1).cpu().numpy())

    def read_attention_maps(self, layouts: Sequence[Layout], size: int) -> list[np.ndarray]:
        """Per image, one ``size``×``size`` map per box: its class word's captured attention."""
        spans = [word_token_spans(self.tokenizer, lay.prompt, lay.classes) for lay in layouts]
        return [m.numpy() for m in self.store.word_maps(spans, (size, size))]

    def what_ran(self, timesteps: torch.Tensor, guidance_scale: float, eta: float, grounding_beta: float,
                 car: Mapping[str, Any] | None, with_sources: bool) -> dict[str, Any]:
        """The sampler and refiner as they ran, read off the objects that did the work (the
        scheduler's own timesteps, the UNet's dtype, the segmenter and cue CAR used), for provenance."""
        seg = None if car is None else self.segmenter(car)
        return {
            "sampling": {
                "scheduler": type(self.scheduler).__name__, "steps": int(len(timesteps)),
                "guidance_scale": float(guidance_scale), "eta": float(eta), "grounding_beta": float(grounding_beta),
                "dtype": str(self.unet.dtype).removeprefix("torch."), "device": str(self._execution_device),
            },
            "car": None if seg is None else {
                "segmenter": seg.name, "segmenter_weights": getattr(seg, "weights", None),
                "cue": car["cue"] if with_sources else "attention",  # free layouts: no source to compare
            },
        }

    def segmenter(self, car: Mapping[str, Any]) -> Segmenter:
        """The configured CAR segmenter, built once per (kind, weights) and kept."""
        key = f"{car['segmenter']}:{car['sam_path']}"
        if key not in self._segmenters:
            self._segmenters[key] = make_segmenter(dict(car))
        return self._segmenters[key]

    def run_car(
        self, layouts: Sequence[Layout], generated: Sequence[np.ndarray], sources: Sequence[np.ndarray] | None,
        seeds: Sequence[int], size: int, car: Mapping[str, Any] | None,
    ) -> tuple[list[list[list[float]]], list[list[list[float]]], list[list[CarResult]] | None,
               list[np.ndarray] | None]:
        """The CAR step: (requested boxes, output boxes, CAR results, attention maps).

        Off (``car`` is ``None``): the requested boxes are the labels. On: each box's class
        word map is read from the capture, a free layout's requests are where the model
        attended, and :meth:`refine_boxes` refines them on ``generated`` (the non-BOM images).
        """
        requested = [[[float(v) for v in box] for box in lay.boxes] for lay in layouts]
        if car is None:
            return requested, [[list(b) for b in r] for r in requested], None, None
        maps = self.read_attention_maps(layouts, size)
        requested = [r if lay.boxes else [attention_box(m) for m in image_maps]
                     for r, lay, image_maps in zip(requested, layouts, maps, strict=True)]
        results = self.refine_boxes(generated, sources, maps, requested, seeds, car)
        return requested, [[r.box for r in res] for res in results], results, maps

    def refine_boxes(self, generated: Sequence[np.ndarray], sources: Sequence[np.ndarray] | None,
                     maps: Sequence[np.ndarray], requested: Sequence[Sequence[Sequence[float]]],
                     seeds: Sequence[int], car: Mapping[str, Any]) -> list[list[CarResult]]:
        """CAR on a decoded batch: each requested box refined to the item drawn.

        ``generated``: the decoded *non-BOM* images (H×W×3 uint8); ``sources``: the source
        scans at the same resolution, side by side with them (``None`` for free layouts),
        so a cue comparing the two inside each search window (the attenuation the model
        added, DESIGN §5) has what it needs here; ``maps[i]``: one H×W attention map per
        box of image ``i``; ``requested[i]``: its xywh boxes. The current refinement
        (:func:`xsyn.synthesis.car.refine_boxes`) reads the generated image and the map of
        ``car["cue"]`` (:func:`xsyn.synthesis.cues.cue_maps`: the attention, the attenuation
        the model added, or both).
        """
        if sources is not None and len(sources) != len(generated):
            raise ValueError(f"CAR: {len(sources)} source images for {len(generated)} generated ones")
        seg = self.segmenter(car)
        cue = car["cue"] if sources is not None else "attention"  # free layouts have no source
        results = []
        for i, (image, image_maps, boxes, seed) in enumerate(zip(generated, maps, requested, seeds, strict=True)):
            boxes = [list(b) for b in boxes]
            cues = cue_maps(cue, list(image_maps), boxes, None if sources is None else sources[i], image,
                            prior=car["prior"], blur=car["difference_blur"])
            # GrabCut's GMM init draws from OpenCV's global RNG: seed it per image so
            # the refined boxes depend on the image's seed, not on what ran before.
            cv2.setRNGSeed(int(seed) % 2**31)
            results.append(car_refine_boxes(image, cues, boxes, dict(car), segmenter=seg))
        return results

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(
        self, layouts: Sequence[Layout], images: Sequence[ImageInput] | None = None,
        seeds: Sequence[int] | None = None, num_inference_steps: int = 50, guidance_scale: float = 7.5,
        eta: float = 0.0, negative_prompt: str = "", car: Mapping[str, Any] | None = None,
        bom: Mapping[str, Any] | None = None, grounding_beta: float = 1.0, return_non_bom: bool = False,
        return_maps: bool = False, resolution: int | None = None,
    ) -> XsynPipelineOutput:
        """Generate one image per layout (the class docstring explains the arguments)."""
        # 1. Check inputs; the image and latent sides are fixed here and handed to every step
        car, bom = switched_on(car), switched_on(bom)
        sources = self.prepare_source_images(images)
        seeds = list(range(len(layouts))) if seeds is None else list(seeds)
        size = self.resolve_size(sources, resolution)
        self.check_inputs(layouts, sources, seeds, size)
        if not layouts:
            return XsynPipelineOutput([], [], [], None)

        # 2. Define call parameters
        latent_side = size // self.vae_scale_factor
        device, dtype = self._execution_device, self.unet.dtype
        do_cfg = guidance_scale > 1.0
        inpainting = any(lay.inpaint for lay in layouts)
        generators = _generators(seeds)

        # 3. Encode the captions and the grounding (one phrase and box per generated item)
        prompt_embeds, phrase_embeds = self.encode_prompt(layouts, negative_prompt, do_cfg, device, dtype)
        gligen = self.prepare_gligen_inputs(layouts, phrase_embeds, size, do_cfg, device, dtype)

        # 4. Prepare the inpainting inputs: mask, source latents, extra conv_in channels
        mask = self.prepare_inpaint_mask(layouts, size, latent_side, device, dtype)
        source_latents = self.prepare_source_latents(sources, mask, device, dtype)
        condition = self.prepare_inpaint_condition(source_latents, mask, do_cfg)

        # 5. Prepare timesteps and latents
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = self.prepare_latents(generators, latent_side, device, dtype)

        # 6. Prepare extra step kwargs, BOM plans and the attention capture for CAR
        extra_step_kwargs = self.prepare_extra_step_kwargs(generators, eta)
        bom_plans = self.prepare_bom_plans(layouts, seeds, bom, size, latent_side)
        self.prepare_attention_capture(car, len(layouts), latent_side, device)

        # 7. Denoising loop (GLIGEN's fuser on for the first grounding_beta of the steps)
        n_grounded = int(grounding_beta * len(timesteps))
        try:
            for i, t in enumerate(self.progress_bar(timesteps)):
                self.enable_fuser(i < n_grounded)
                if inpainting:
                    latents = self.keep_source(latents, source_latents, mask, generators, t, bom_plans, bom)
                latent_model_input = torch.cat([latents, latents]) if do_cfg else latents
                latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                if condition is not None:
                    latent_model_input = torch.cat([latent_model_input, condition], dim=1)
                noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds,
                                       cross_attention_kwargs={"gligen": dict(gligen)}).sample
                if do_cfg:
                    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                    noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
        finally:
            self.store.active = False
            self.enable_fuser(True)

        # 8. The source scan, exactly, outside the generated boxes; BOM after the last step; decode
        if inpainting:
            latents = source_latents * mask + latents * (1 - mask)
        bom_latents = self.blend_bom_last(latents, source_latents, bom_plans, bom)
        images_out, non_bom = self.decode_latents(latents, bom_latents, car is not None or return_non_bom)

        # 9. CAR, a step of its own: the boxes refined on the non-BOM images, beside the sources
        generated = images_out if non_bom is None else non_bom
        requested, boxes, car_results, maps = self.run_car(layouts, generated, sources, seeds, size, car)

        return XsynPipelineOutput(
            images=images_out, requested_boxes=requested, boxes=boxes, car=car_results,
            non_bom_images=non_bom if return_non_bom else None, maps=maps if return_maps else None,
            ran=self.what_ran(timesteps, guidance_scale, eta, grounding_beta, car, sources is not None),
        )
