"""XsynPipeline: batched GLIGEN inpainting that returns images *and* refined boxes.

Builds on the logic of diffusers' ``StableDiffusionGLIGENPipeline`` (inpainting branch:
``conv_in`` sees ``cat(noisy latent, masked image latent, mask)``, the real scan's noised
latent replaces the sample outside the boxes at every step), made batched: many source
scans per UNet call, each with its own boxes (padded to the batch's largest count and
masked), unconditional and conditional halves in one call. On top of it:

- CAR: an :class:`~xsyn.synthesis.attention.AttentionStore` accumulates the class-word
  cross-attention in place during sampling; after decoding, each box is refined by
  :func:`xsyn.synthesis.car.refine_boxes` on the non-BOM image;
- BOM: :mod:`xsyn.synthesis.bom` blends a real benign patch over each generated item,
  after the last step (``when="last"``, the non-BOM and BOM latents decoded in one VAE
  call) or at every step (``when="during"``).

Every random draw of image ``b`` comes from its own ``torch.Generator`` seeded with
``seeds[b]``, so an image depends on its seed and inputs, never on its batch neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention import GatedSelfAttentionDense
from PIL import Image

from xsyn.synthesis.attention import AttentionStore, install_capture, remove_capture
from xsyn.synthesis.bom import BomPatch, apply_bom, plan_bom
from xsyn.synthesis.layouts import Layout
from xsyn.synthesis.tokens import word_token_spans


@dataclass
class XsynOutput:
    """Per image: the final picture (BOM applied when on), its boxes and CAR's verdicts."""

    images: list[np.ndarray]                    # H×W×3 uint8
    requested_boxes: list[list[list[float]]]    # xywh px, as asked (free: read from attention)
    boxes: list[list[list[float]]]              # refined xywh px (= requested when CAR is off)
    car: list[list[Any]] | None                 # CarResult per box, None when CAR is off
    non_bom_images: list[np.ndarray] | None = None  # the sample before BOM (when asked)
    maps: list[np.ndarray] | None = None        # (n_boxes, H, W) attention per box (when asked)


def attention_box(attn: np.ndarray, share: float = 0.5) -> list[float]:
    """xywh of the pixels above ``share`` × max of a map (free layout: no requested box)."""
    attn = np.asarray(attn, dtype=np.float64)
    lo, hi = float(attn.min()), float(attn.max())
    if hi <= lo:
        return [0.0, 0.0, float(attn.shape[1]), float(attn.shape[0])]
    ys, xs = np.nonzero(attn >= lo + share * (hi - lo))
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def _randn(gens: Sequence[torch.Generator], shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """One draw per image from its own generator (on CPU: identical on every device)."""
    return torch.cat([torch.randn((1, *shape), generator=g) for g in gens]).to(device, dtype)


class XsynPipeline(DiffusionPipeline):
    """Box-grounded X-ray synthesis with CAR box refinement and BOM occlusion.

    Load from a generator folder (a ``StableDiffusionGLIGENPipeline`` folder):
    ``XsynPipeline.from_pretrained(path, local_files_only=True)``.
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
        self._segmenters: dict[str, Any] = {}

    @classmethod
    def from_components(cls, components: Any) -> XsynPipeline:
        """From :class:`xsyn.generator.factory.GeneratorComponents`."""
        return cls(vae=components.vae, text_encoder=components.text_encoder,
                   tokenizer=components.tokenizer, unet=components.unet,
                   scheduler=components.scheduler)

    # ------------------------------------------------------------------ conditioning

    def _encode_text(self, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        """One text-encoder call: (token states, pooled) for every text."""
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        out = self.text_encoder(ids)
        return out.last_hidden_state, out.pooler_output

    def _conditioning(self, layouts: Sequence[Layout], negative_prompt: str, cfg: bool, device,
                      dtype) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Prompt states (uncond first) and padded GLIGEN grounding for the whole batch."""
        b = len(layouts)
        prompts = [lay.prompt for lay in layouts]
        phrases = [p for lay in layouts for p in lay.phrases]
        texts = ([negative_prompt] if cfg else []) + prompts + phrases
        states, pooled = self._encode_text(texts, device)
        states, pooled = states.to(dtype), pooled.to(dtype)
        k = 1 if cfg else 0
        cond = states[k:k + b]
        phrase_emb = pooled[k + b:]
        n_max = max(1, max(len(lay.boxes) for lay in layouts))
        boxes = torch.zeros(b, n_max, 4, device=device, dtype=dtype)
        emb = torch.zeros(b, n_max, self.unet.config.cross_attention_dim, device=device, dtype=dtype)
        masks = torch.zeros(b, n_max, device=device, dtype=dtype)
        j = 0
        for i, lay in enumerate(layouts):
            for n, box in enumerate(lay.boxes):
                boxes[i, n] = torch.tensor(self._norm_xyxy(box), dtype=dtype)
                emb[i, n] = phrase_emb[j]
                masks[i, n] = 1
                j += 1
        if cfg:
            cond = torch.cat([states[:1].expand(b, -1, -1), cond])
            boxes, emb = torch.cat([boxes, boxes]), torch.cat([emb, emb])
            masks = torch.cat([torch.zeros_like(masks), masks])  # no grounding when unconditional
        return cond, {"boxes": boxes, "positive_embeddings": emb, "masks": masks}

    def _norm_xyxy(self, box: Sequence[float]) -> list[float]:
        size = self._size
        x, y, w, h = (float(v) for v in box)
        return [min(max(v / size, 0.0), 1.0) for v in (x, y, x + w, y + h)]

    def _inpaint_mask(self, layouts: Sequence[Layout], side: int, device, dtype) -> torch.Tensor:
        """Latent mask, 0 inside the generated boxes, 1 elsewhere (all 0 for free layouts).

        Box edges follow ``StableDiffusionGLIGENPipeline`` (``int(coord · side)``), the
        convention the generator was fine-tuned with."""
        mask = torch.ones(len(layouts), 1, side, side)
        for i, lay in enumerate(layouts):
            if not lay.inpaint:
                mask[i] = 0
            for box in lay.boxes:
                x0, y0, x1, y1 = (int(v * side) for v in self._norm_xyxy(box))
                mask[i, :, y0:y1, x0:x1] = 0
        return mask.to(device, dtype)

    def _encode_images(self, images: Sequence[np.ndarray | Image.Image], device, dtype) -> torch.Tensor:
        """Batched VAE encode of uint8 RGB scans (distribution mean: deterministic)."""
        arr = np.stack([np.asarray(im.convert("RGB") if isinstance(im, Image.Image) else im)[..., :3]
                        for im in images])
        x = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1.0
        return self.vae.encode(x).latent_dist.mode() * self.vae.config.scaling_factor

    def _decode(self, z: torch.Tensor) -> list[np.ndarray]:
        x = self.vae.decode(z / self.vae.config.scaling_factor).sample
        x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return list(x.permute(0, 2, 3, 1).cpu().numpy())

    def _enable_fuser(self, enabled: bool) -> None:
        for module in self.unet.modules():
            if type(module) is GatedSelfAttentionDense:
                module.enabled = enabled

    def _segmenter(self, car: Mapping[str, Any]) -> Any:
        from xsyn.synthesis.segmenters import make_segmenter

        key = f"{car.get('segmenter')}:{car.get('sam_path')}"
        if key not in self._segmenters:
            self._segmenters[key] = make_segmenter(dict(car))
        return self._segmenters[key]

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def __call__(
        self,
        layouts: Sequence[Layout],
        images: Sequence[np.ndarray | Image.Image] | None = None,
        seeds: Sequence[int] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        eta: float = 0.0,
        negative_prompt: str = "",
        car: Mapping[str, Any] | None = None,
        bom: Mapping[str, Any] | None = None,
        grounding_beta: float = 1.0,
        return_non_bom: bool = False,
        return_maps: bool = False,
        resolution: int | None = None,
    ) -> XsynOutput:
        """Generate one image per layout.

        ``images``: the real scans (uint8 H×W×3 at the generator's resolution), required
        unless every layout is ``free``. ``car``: ``synthesis.car`` config (``None`` or
        ``enabled: false`` → off). ``bom``: ``{"alpha", "when"}`` (``None`` or
        ``enabled: false`` → off). ``grounding_beta``: share of the steps with the GLIGEN
        fuser on (diffusers' scheduled sampling; 1.0 = always, as the tiny model trains).
        """
        b = len(layouts)
        if b == 0:
            return XsynOutput([], [], [], None)
        seeds = list(range(b)) if seeds is None else list(seeds)
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} seeds for {b} layouts")
        car_on = bool(car) and car.get("enabled", True)
        bom_on = bool(bom) and bom.get("enabled", True)
        device, dtype = self._execution_device, self.unet.dtype
        size = resolution or (images[0].shape[0] if images is not None and not isinstance(images[0], Image.Image)
                              else self.unet.config.sample_size * self.vae_scale_factor)
        self._size = size
        side = size // self.vae_scale_factor
        latent_ch = self.vae.config.latent_channels
        do_cfg = guidance_scale > 1.0
        needs_real = any(lay.inpaint for lay in layouts)
        if needs_real and images is None:
            raise ValueError("inpainting layouts need the real source images")
        gens = _generators(seeds)

        prompt_states, gligen = self._conditioning(layouts, negative_prompt, do_cfg, device, dtype)
        mask = self._inpaint_mask(layouts, side, device, dtype)
        z_real = (self._encode_images(images, device, dtype) if images is not None
                  else torch.zeros(b, latent_ch, side, side, device=device, dtype=dtype))
        z_real = z_real * (mask.amax(dim=(1, 2, 3), keepdim=True) > 0)  # free: no background
        inpaint_unet = self.unet.config.in_channels == latent_ch * 2 + 1
        extra = torch.cat([z_real * mask, mask], dim=1) if inpaint_unet else None
        if extra is not None and do_cfg:
            extra = torch.cat([extra, extra])

        plans: list[list[BomPatch]] = []
        if bom_on:
            plans = [plan_bom(lay.bom_region, lay.boxes, size, (side, side), s + 1)
                     for lay, s in zip(layouts, seeds, strict=True)]

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = _randn(gens, (latent_ch, side, side), device, dtype) * self.scheduler.init_noise_sigma
        step_kwargs = {"eta": eta, "generator": gens} if eta > 0 else {"eta": eta}

        if car_on:
            key = (side, tuple(car.get("resolutions", [16])), tuple(car.get("blocks", ["down", "up"])))
            if key != self._capture_key:
                # Installed once and kept: with the store inactive the captured layers run
                # plain SDPA, and a compiled UNet is not recompiled on every call.
                remove_capture(self.unet)
                install_capture(self.unet, self.store, side, key[1], key[2])
                self._capture_key = key
            self.store.reset(b, key[1], self.tokenizer.model_max_length, device)
        n_grounded = int(grounding_beta * len(timesteps))
        self._enable_fuser(True)
        try:
            for i, t in enumerate(self.progress_bar(timesteps)):
                if i == n_grounded:
                    self._enable_fuser(False)
                if needs_real:
                    noised = self.scheduler.add_noise(z_real, _randn(gens, z_real.shape[1:], device, dtype), t)
                    latents = noised * mask + latents * (1 - mask)
                    if bom_on and bom.get("when", "last") == "during":
                        latents = apply_bom(latents, noised, plans, float(bom["alpha"]))
                model_in = torch.cat([latents, latents]) if do_cfg else latents
                model_in = self.scheduler.scale_model_input(model_in, t)
                if extra is not None:
                    model_in = torch.cat([model_in, extra], dim=1)
                noise = self.unet(model_in, t, encoder_hidden_states=prompt_states,
                                  cross_attention_kwargs={"gligen": dict(gligen)}).sample
                if do_cfg:
                    uncond, cond = noise.chunk(2)
                    noise = uncond + guidance_scale * (cond - uncond)
                latents = self.scheduler.step(noise, t, latents, **step_kwargs).prev_sample
        finally:
            self.store.active = False
            self._enable_fuser(True)

        if needs_real:  # the real scan, exactly, outside the generated boxes
            latents = z_real * mask + latents * (1 - mask)
        final = latents
        bom_last = bom_on and bom.get("when", "last") == "last" and any(plans)
        keep_plain = car_on or return_non_bom
        if bom_last:
            z_bom = apply_bom(latents, z_real, plans, float(bom["alpha"]))
            decoded = self._decode(torch.cat([latents, z_bom]) if keep_plain else z_bom)
            plain, final_images = (decoded[:b], decoded[b:]) if keep_plain else (None, decoded)
        else:
            final_images = self._decode(final)
            plain = final_images

        requested = [[list(map(float, bx)) for bx in lay.boxes] for lay in layouts]
        maps_out: list[np.ndarray] | None = None
        refined = [list(map(list, r)) for r in requested]
        car_results = None
        if car_on:
            spans = [word_token_spans(self.tokenizer, lay.prompt, lay.classes) for lay in layouts]
            maps = [m.numpy() for m in self.store.word_maps(spans, (size, size))]
            for i, lay in enumerate(layouts):
                if not lay.boxes:  # free: the request is where the attention is
                    requested[i] = [attention_box(m) for m in maps[i]]
            import cv2

            from xsyn.synthesis.car import refine_boxes

            seg = self._segmenter(car)
            car_results = []
            for i in range(b):
                # GrabCut's GMM init draws from OpenCV's global RNG: seed it per image so
                # the refined boxes depend on the image's seed, not on what ran before.
                cv2.setRNGSeed(int(seeds[i]) % 2**31)
                car_results.append(refine_boxes(plain[i], list(maps[i]), requested[i], dict(car),
                                                segmenter=seg))
            refined = [[r.box for r in res] for res in car_results]
            maps_out = maps if return_maps else None
        return XsynOutput(
            images=final_images, requested_boxes=requested, boxes=refined, car=car_results,
            non_bom_images=plain if (bom_last and return_non_bom) else None, maps=maps_out,
        )
