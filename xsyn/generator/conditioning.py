"""Does the generator use its phrases? The loss inside the boxes with the true phrases and
caption versus the same batch with every class swapped for another one.

A model that paints "an item" whatever it is asked for has a ratio of 1.0 and cannot make
labelled data; one that paints the asked class loses more when the class is wrong. The
smoke model once trained to a ratio of exactly 1.0000 (its text encoder had collapsed) with
a falling loss curve, so ``finetune.json`` reports this number for every run.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from xsyn.data.contract import caption_for, phrase_for
from xsyn.generator.data import Example, make_batch
from xsyn.generator.factory import GeneratorComponents
from xsyn.generator.objective import Stage, TrainingObjective

BOX_ONLY_WEIGHT = 1e6  # mask_loss_weight that leaves (almost) only the repainted boxes in the loss


def swap_classes(batch: dict[str, Any], classes: list[str], rng: random.Random) -> dict[str, Any]:
    """The batch with each grounded phrase and each caption word replaced by another class."""
    prefix = phrase_for("")

    def other(name: str) -> str:
        return rng.choice([c for c in classes if c != name])

    out = dict(batch)
    out["phrases"] = [phrase_for(other(p[len(prefix):])) if p else p for p in batch["phrases"]]
    out["captions"] = [caption_for(other(c) for c in cap.split(", ")) if cap else cap for cap in batch["captions"]]
    return out


@torch.no_grad()
def conditioning_ratio(
    comps: GeneratorComponents,
    examples: list[Example],
    classes: list[str],
    repeats: int = 4,
    seed: int = 0,
    max_boxes: int = 8,
) -> dict[str, float]:
    """Box loss with swapped classes / box loss with the true ones, over ``repeats`` draws of
    masks, noise and timesteps (the same draws for both). Needs an inpainting UNet whose
    ``sample_size`` is the examples' latent side (``build_components`` records it)."""
    if not comps.is_inpainting:
        raise ValueError("conditioning_ratio needs an inpainting generator (9-channel conv_in)")
    if len(classes) < 2:
        raise ValueError("conditioning_ratio needs at least two classes")
    latent = comps.unet.config.sample_size
    loss = TrainingObjective(comps, Stage("probe", 1, True, "unet"), False, BOX_ONLY_WEIGHT).eval()
    rng = random.Random(seed)
    true_sum = swapped_sum = 0.0
    idx = list(range(len(examples)))
    for r in range(repeats):
        g = torch.Generator().manual_seed(seed * 1000 + r)
        batch = make_batch(examples, idx, g, max_boxes, 0.0, 0.0, flip=False, inpaint=True, latent_size=latent)
        noise_seed = seed * 1000 + r + 500
        true_sum += float(loss(batch, torch.Generator().manual_seed(noise_seed)))
        swapped_sum += float(loss(swap_classes(batch, classes, rng), torch.Generator().manual_seed(noise_seed)))
    return {"box_loss_true": true_sum / repeats, "box_loss_swapped": swapped_sum / repeats,
            "ratio": swapped_sum / max(true_sum, 1e-12)}
