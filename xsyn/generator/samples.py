"""Sample grids of a trained generator: one row per class, the requested box drawn.

A quick look at whether fine-tuning worked: items should appear inside their boxes and a
person should tell a gun from scissors. Columns: the generation-stage model on a blank
canvas, then the inpainting model on real scans (only the box is repainted).
Sampling is diffusers' own ``StableDiffusionGLIGENPipeline``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from xsyn.data.boxes import xywh_to_unit_xyxy
from xsyn.data.contract import (
    annotations_by_image,
    caption_for,
    category_names,
    load_split,
    phrase_for,
)
from xsyn.generator.factory import GeneratorComponents, load_generator


def gligen_pipeline(comps: GeneratorComponents):
    from diffusers import StableDiffusionGLIGENPipeline

    pipe = StableDiffusionGLIGENPipeline(
        vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer, unet=comps.unet,
        scheduler=comps.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def class_layouts(
    dataset: str | os.PathLike, split: str, per_class: int, seed: int = 0
) -> list[tuple[str, list[tuple[list[float], str]]]]:
    """For each class: ``per_class`` (normalised xyxy box, background file) pairs.

    Boxes are real boxes of that class (realistic size and aspect); backgrounds are other
    real scans of the split.
    """
    coco = load_split(dataset, split)
    names = category_names(coco)
    images = {im["id"]: im for im in coco["images"]}
    rng = np.random.default_rng(seed)
    files = [im["file_name"] for im in coco["images"]]
    by_class: dict[int, list[dict[str, Any]]] = {c: [] for c in names}
    for anns in annotations_by_image(coco).values():
        for a in anns:
            by_class[a["category_id"]].append(a)
    out = []
    for cid, name in names.items():
        anns = by_class[cid]
        if not anns:
            continue
        picks = rng.choice(len(anns), size=per_class, replace=len(anns) < per_class)
        layouts = []
        for k in picks:
            a = anns[int(k)]
            im = images[a["image_id"]]
            box = xywh_to_unit_xyxy(a["bbox"], im["width"], im["height"])
            others = [f for f in files if f != im["file_name"]] or files
            layouts.append((box, others[int(rng.integers(len(others)))]))
        out.append((name, layouts))
    return out


@torch.no_grad()
def sample_one(
    pipe, name: str, box: list[float], size: int, steps: int, guidance: float, seed: int,
    background: Image.Image | None = None,
) -> Image.Image:
    kwargs = {"gligen_inpaint_image": background} if background is not None else {}
    return pipe(
        prompt=caption_for([name]), gligen_phrases=[phrase_for(name)], gligen_boxes=[box],
        gligen_scheduled_sampling_beta=1.0, height=size, width=size, num_inference_steps=steps,
        guidance_scale=guidance, generator=torch.Generator().manual_seed(seed), output_type="pil", **kwargs,
    ).images[0]


def draw_box(img: Image.Image, box: list[float], label: str | None = None) -> Image.Image:
    img = img.convert("RGB").copy()
    w, h = img.size
    d = ImageDraw.Draw(img)
    d.rectangle([box[0] * w, box[1] * h, box[2] * w - 1, box[3] * h - 1], outline=(255, 0, 0), width=1)
    if label:
        d.text((2, 1), label, fill=(255, 255, 0))
    return img


def write_sample_grid(
    generator_dir: str | os.PathLike,
    dataset: str | os.PathLike,
    cfg: dict[str, Any],
    path: str | os.PathLike,
    per_class: int = 2,
    split: str | None = None,
    comps: GeneratorComponents | None = None,
) -> Path:
    """Grid PNG: a row per class; ``per_class`` blank-canvas samples (generation stage, if
    kept under ``stages/``) then ``per_class`` inpainted real scans (final model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generator_dir = Path(generator_dir)
    split = split or ("val" if (Path(dataset) / "annotations" / "val.json").is_file() else cfg["finetune"]["train_split"])
    syn = cfg["synthesis"]
    size = cfg["generator"]["resolution"]
    final = comps if comps is not None else load_generator(generator_dir)
    gen_dirs = sorted((generator_dir / "stages").glob("*/model_index.json"))
    models: list[tuple[str, GeneratorComponents, bool]] = []
    if not final.is_inpainting:
        models.append(("generation", final, False))
    elif gen_dirs:
        models.append((gen_dirs[0].parent.name, load_generator(gen_dirs[0].parent, device=final.unet.device), False))
    if final.is_inpainting:
        models.append(("inpainting", final, True))
    layouts = class_layouts(dataset, split, per_class, seed=cfg["finetune"]["seed"])
    cols = per_class * len(models)
    fig, axes = plt.subplots(len(layouts), cols, figsize=(1.6 * cols, 1.6 * len(layouts)), squeeze=False)
    for col_model, (label, comps_m, inpaint) in enumerate(models):
        pipe = gligen_pipeline(comps_m)
        for r, (name, lays) in enumerate(layouts):
            for k, (box, bg_file) in enumerate(lays):
                bg = Image.open(Path(dataset) / "images" / bg_file).convert("RGB") if inpaint else None
                img = sample_one(pipe, name, box, size, syn["steps"], syn["guidance_scale"], seed=1000 * r + k, background=bg)
                ax = axes[r][col_model * per_class + k]
                ax.imshow(draw_box(img, box))
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(label, fontsize=7)
                if col_model == 0 and k == 0:
                    ax.set_ylabel(name, fontsize=7)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path
