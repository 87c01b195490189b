"""Attention that follows items: an alignment term for fine-tuning (our addition, DESIGN §5).

CAR reads each class word's cross-attention to find the item the model painted. A large
pretrained model's attention tends to follow objects; a small one, told *where* to paint by
its inpainting mask, need not (``benchmarks/car_diagnosis.py``). This term pulls the
class-token maps of the chosen ``attn2`` layers towards the items of that class, as
published for Stable Diffusion:

- TokenCompose (Wang et al. 2024), per class token and layer: ``(1 − Σ(A·M) / ΣA)²``, the
  share of the token's attention that falls outside the item mask, squared; and a pixel
  term, the BCE between the token's map (summed over its word pieces) and the binary mask;
- Break-A-Scene (Avrahami et al. 2023): the MSE between the max-normalised word map and
  the mask.

Masks are the dataset's item segmentations where it has them (the phantom's exact masks,
PIDray/COCO polygons), rectangles of the boxes otherwise; each class word's target is the
union of all items of its class, at the latent resolution (coverage in [0, 1]).
The authors did not use it: off in the paper profile unless set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xsyn.generator.data import make_batch
from xsyn.generator.objective import DenoisingPass, Stage, TrainingObjective
from xsyn.generator.tokens import word_token_spans
from xsyn.generator.unet_layers import attn2_resolutions


def alignment_layers(unet: torch.nn.Module, latent_side: int, blocks: Sequence[str],
                     resolutions: Sequence[int]) -> list[str]:
    """Names of the ``attn2`` layers in ``blocks`` that run at ``resolutions`` at the
    generator's own resolution (the layers CAR reads when they match ``synthesis.car``)."""
    chosen = [name for name, (kind, side) in attn2_resolutions(unet, latent_side).items()
              if kind in blocks and side in resolutions]
    if not chosen:
        available = sorted(set(attn2_resolutions(unet, latent_side).values()))
        raise ValueError(f"finetune.attention_alignment: no attn2 layer in blocks {list(blocks)} at "
                         f"resolutions {list(resolutions)}; this UNet has (block, side) {available}")
    return chosen


class AttentionAlignment:
    """The alignment :class:`~xsyn.generator.objective.LossTerm` (weights inside, ``weight`` 1)."""

    name = "attention_alignment"
    weight = 1.0

    def __init__(self, tokenizer: Any, layers: Sequence[str], token_weight: float, pixel_weight: float,
                 mse_weight: float):
        self.tokenizer = tokenizer
        self.attention_layers = list(layers)
        self.token_weight, self.pixel_weight, self.mse_weight = token_weight, pixel_weight, mse_weight
        self._spans: dict[tuple[str, tuple[str, ...]], list[list[int]]] = {}

    def spans(self, caption: str, words: tuple[str, ...]) -> list[list[int]]:
        key = (caption, words)
        if key not in self._spans:
            self._spans[key] = word_token_spans(self.tokenizer, caption, list(words))
        return self._spans[key]

    def __call__(self, p: DenoisingPass) -> torch.Tensor:
        batch = p.batch
        masks: list[dict[str, torch.Tensor]] = batch["class_masks"]
        token = pixel = mse = p.prediction.new_zeros(())
        n_words = 0
        for b, caption in enumerate(batch["captions"]):
            words = tuple(w for w in masks[b] if caption and w.lower() in caption.lower())
            if not words:
                continue
            for word, span in zip(words, self.spans(caption, words), strict=True):
                if not span:
                    continue
                n_words += 1
                for name in self.attention_layers:
                    probs = p.attention[name][b].float().mean(0)  # (h·w, tokens), heads averaged
                    side = int(round(probs.shape[0] ** 0.5))
                    target = F.adaptive_avg_pool2d(masks[b][word][None, None].to(probs), side).reshape(-1)
                    a = probs[:, span]  # (h·w, pieces)
                    inside = (a * target[:, None]).sum(0) / a.sum(0).clamp_min(1e-8)
                    token = token + ((1.0 - inside) ** 2).mean()
                    word_map = a.sum(-1)
                    binary = (target > 0.5).float()
                    pixel = pixel + F.binary_cross_entropy(word_map.clamp(1e-6, 1 - 1e-6), binary)
                    mse = mse + F.mse_loss(word_map / word_map.max().clamp_min(1e-8), target)
        if n_words == 0:
            return token
        per = n_words * len(self.attention_layers)
        return (self.token_weight * token + self.pixel_weight * pixel + self.mse_weight * mse) / per


def build_alignment(cfg: Mapping[str, Any], comps: Any) -> AttentionAlignment | None:
    """The configured term, or ``None`` when every weight is 0 (the authors' plain loss)."""
    al = cfg["finetune"]["attention_alignment"]
    if not (al["token_weight"] or al["pixel_weight"] or al["mse_weight"]):
        return None
    side = cfg["generator"]["resolution"] // comps.vae_scale_factor
    layers = alignment_layers(comps.unet, side, al["blocks"], al["resolutions"])
    return AttentionAlignment(comps.tokenizer, layers, al["token_weight"], al["pixel_weight"], al["mse_weight"])


class _InsideShare:
    """A probe term: records, per class word, the share of its attention on its items."""

    name = "attention_on_items"
    weight = 0.0

    def __init__(self, tokenizer: Any, layers: Sequence[str]):
        self.aligner = AttentionAlignment(tokenizer, layers, 1.0, 0.0, 0.0)
        self.attention_layers = list(layers)
        self.shares: list[float] = []
        self.areas: list[float] = []

    def __call__(self, p: DenoisingPass) -> torch.Tensor:
        for b, caption in enumerate(p.batch["captions"]):
            masks = p.batch["class_masks"][b]
            words = tuple(w for w in masks if caption and w.lower() in caption.lower())
            for word, span in zip(words, self.aligner.spans(caption, words), strict=True) if words else ():
                if not span:
                    continue
                for name in self.attention_layers:
                    probs = p.attention[name][b].float().mean(0)
                    side = int(round(probs.shape[0] ** 0.5))
                    target = F.adaptive_avg_pool2d(masks[word][None, None].to(probs), side).reshape(-1)
                    a = probs[:, span].sum(-1)
                    self.shares.append(float((a * target).sum() / a.sum().clamp_min(1e-8)))
                    self.areas.append(float(target.mean()))
        return p.prediction.new_zeros(())


@torch.no_grad()
def attention_on_items(comps: Any, examples: list, layers: Sequence[str], repeats: int = 2, seed: int = 0,
                       max_boxes: int = 8, batch_size: int = 8) -> dict[str, float]:
    """How much of a class word's cross-attention falls on the items of its class, on whole
    held-out scans at random timesteps (the boxes masked for repainting, as Xsyn-M samples),
    next to the share of the pixels those items cover (what attention spread evenly would
    score). A generator whose maps CAR can read scores well above its ``area``."""
    probe = _InsideShare(comps.tokenizer, layers)
    objective = TrainingObjective(comps, Stage("probe", 1, True, "unet"), False, terms=[probe]).eval()
    latent = comps.unet.config.sample_size
    for r in range(repeats):
        for start in range(0, len(examples), batch_size):
            idx = list(range(start, min(start + batch_size, len(examples))))
            g = torch.Generator().manual_seed(seed * 1000 + r * 7919 + start)
            batch = make_batch(examples, idx, g, max_boxes, 0.0, 0.0, flip=False, inpaint=True, latent_size=latent)
            objective(batch, g)
    if not probe.shares:
        return {"share": float("nan"), "area": float("nan"), "words": 0}
    return {"share": float(np.mean(probe.shares)), "area": float(np.mean(probe.areas)),
            "words": len(probe.shares) // max(len(layers), 1)}
