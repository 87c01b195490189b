"""One synthesis shard: source scans → layouts → XsynPipeline → an atomic shard folder.

Source images are the ``synthesis.source_split`` of a prepared dataset, sorted by id and
cut with :func:`~xsyn.synthesis.shards.shard_slice`. Each image's seed is derived from
``synthesis.seed`` and its source id alone, so a shard's content does not depend on how
many shards there are or which ran first. A complete shard folder is never rewritten
(resume after a kill redoes only the missing ones).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from xsyn.data.boxes import clip_xywh
from xsyn.data.contract import annotations_by_image, category_names, load_split, phrase_for
from xsyn.synthesis.candidates import CandidateSource
from xsyn.synthesis.layouts import Layout, make_layout
from xsyn.synthesis.shards import SHARD_ANNOTATIONS, ShardWriter, shard_slice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Method:
    """A synthetic-set recipe: layout kind and which of CAR / BOM run."""

    layout: str
    car: bool
    bom: bool


METHODS: dict[str, Method] = {
    "xsyn-a": Method("xsyn-a", car=True, bom=True),
    "xsyn-m": Method("xsyn-m", car=True, bom=True),
    "gligen-plain": Method("xsyn-a", car=False, bom=False),  # requested boxes as labels
    "xsyn-a-nocar": Method("xsyn-a", car=False, bom=True),
    "xsyn-a-nobom": Method("xsyn-a", car=True, bom=False),
    "free": Method("free", car=True, bom=False),
}
ALL_METHODS = (*METHODS, "tip")


def image_seed(base_seed: int, source_id: int) -> int:
    """Per-image seed from the run seed and the source id (independent of sharding)."""
    return int(np.random.SeedSequence([int(base_seed), int(source_id)]).generate_state(1)[0])


def generator_hash(path: str | Path, length: int = 12) -> str:
    """Short sha256 of the generator's UNet weights (the checkpoint identity)."""
    weights = Path(path) / "unet" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: generator UNet weights not found")
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def shard_complete(out_dir: str | Path) -> bool:
    return (Path(out_dir) / SHARD_ANNOTATIONS).is_file()


def _scaled(box: Any, s: float) -> list[float]:
    return [float(v) * s for v in box]


def load_pipeline(generator: str | Path, cfg: Mapping[str, Any]):
    """The generator folder as an :class:`XsynPipeline` on the configured device/precision."""
    import torch

    from xsyn.config import resolve_device
    from xsyn.generator.factory import load_generator
    from xsyn.synthesis.pipeline import XsynPipeline

    device = resolve_device(cfg.get("device", "auto"))
    precision = cfg["synthesis"].get("mixed_precision", "no")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision) if device != "cpu" else None
    pipe = XsynPipeline.from_components(load_generator(generator, device=device, dtype=dtype))
    pipe.set_progress_bar_config(disable=True)
    if cfg["synthesis"].get("compile", False):
        pipe.unet.compile(dynamic=False)  # in place: module names (and CAR's hooks) stay
    return pipe


def synthesize_shard(cfg: Mapping[str, Any], method: str, dataset_root: str | Path,
                     generator: str | Path | None, shard_index: int, shard_count: int,
                     out_dir: str | Path, pipe: Any = None) -> dict[str, Any]:
    """Write shard ``shard_index`` of ``shard_count`` of ``method`` to ``out_dir``.

    Returns a summary (images written, sources skipped for lack of a layout, or
    ``skipped: true`` when the shard already existed complete).
    """
    syn = cfg["synthesis"]
    out_dir = Path(out_dir)
    if shard_complete(out_dir):
        log.info("%s: shard already complete, skipped", out_dir)
        return {"skipped": True, "out": str(out_dir)}
    if method == "tip":
        from xsyn.baselines.tip import run_tip_shard

        return run_tip_shard(dict(cfg), Path(dataset_root), syn["source_split"], shard_index,
                             shard_count, out_dir, syn["seed"])
    if method not in METHODS:
        raise ValueError(f"unknown synthesis method {method!r}; expected one of {ALL_METHODS}")
    if generator is None and pipe is None:
        raise ValueError(f"method {method!r} needs --generator (a generator folder)")
    recipe = METHODS[method]
    root = Path(dataset_root)
    coco = load_split(root, syn["source_split"])
    names = category_names(coco)
    anns = annotations_by_image(coco)
    sources = shard_slice(sorted(coco["images"], key=lambda im: im["id"]), shard_index, shard_count)
    candidates = CandidateSource(coco, syn["car"])
    pipe = pipe or load_pipeline(generator, cfg)
    gen_id = generator_hash(generator) if generator is not None else "in-memory"
    size = int(cfg["generator"]["resolution"])
    car_cfg = {**syn["car"], "device": cfg.get("device", "auto")} if recipe.car and syn["car"]["enabled"] else None
    bom_cfg = syn["bom"] if recipe.bom and syn["bom"]["enabled"] else None
    write_non_bom = bool(bom_cfg and bom_cfg.get("write_non_bom"))
    categories = coco["categories"]

    def prepare(img: dict) -> tuple[dict, Layout | None, np.ndarray, int]:
        """Read, resize and lay out one source scan (runs in a loader thread)."""
        pil = Image.open(root / "images" / img["file_name"]).convert("RGB")
        sx, sy = size / img["width"], size / img["height"]
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.BICUBIC)
        arr = np.asarray(pil)
        image_anns = [{**a, "bbox": [a["bbox"][0] * sx, a["bbox"][1] * sy, a["bbox"][2] * sx,
                                     a["bbox"][3] * sy]} for a in anns[img["id"]]]
        regions = [[r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy] for r in candidates(img["id"], arr)]
        seed = image_seed(syn["seed"], img["id"])
        layout = make_layout(recipe.layout, image_anns, names, regions, (size, size), syn["xsyn_a"], seed)
        return img, layout, arr, seed

    batch = resolve_batch_size(syn["batch_size"], pipe, size)
    written = skipped = 0
    with ShardWriter(out_dir, categories, method) as shard, ThreadPoolExecutor(2) as loader:
        # The loader threads read and lay out scans ahead while the device samples.
        bar = tqdm(total=len(sources), desc=f"{method} {out_dir.name}", unit="img")
        pending = loader.map(prepare, sources)
        chunk: list[tuple[dict, Layout, np.ndarray, int]] = []
        for n_done, (img, layout, arr, seed) in enumerate(pending, 1):
            if layout is None:
                skipped += 1
            else:
                chunk.append((img, layout, arr, seed))
            if len(chunk) == batch or (n_done == len(sources) and chunk):
                _write_batch(shard, pipe, chunk, syn, size, car_cfg, bom_cfg, write_non_bom,
                             gen_id, recipe)
                written += len(chunk)
                bar.update(len(chunk))
                chunk = []
        bar.update(skipped)
        bar.close()
    return {"skipped": False, "out": str(out_dir), "images": written, "no_layout": skipped}


def resolve_batch_size(value: int | str, pipe: Any, size: int) -> int:
    """``auto`` on CUDA: the batch that fills ~80 % of free memory, from a 1-scan probe."""
    if value != "auto":
        return int(value)
    import torch

    device = pipe._execution_device
    if device.type != "cuda":
        return 4
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    probe = Layout([[size / 4, size / 4, size / 2, size / 2]], ["item"], [0], bom_region=None)
    pipe([probe, probe], [np.zeros((size, size, 3), np.uint8)] * 2, seeds=[0, 1],
         num_inference_steps=1, resolution=size)
    per_image = max((torch.cuda.max_memory_allocated(device) - base) / 2, 1)
    batch = max(1, int(0.8 * free / per_image))
    log.info("synthesis.batch_size auto: %d (%.0f MiB per scan, %.0f MiB free)", batch,
             per_image / 2**20, free / 2**20)
    return min(batch, 256)


def _write_batch(shard: ShardWriter, pipe: Any, chunk: list, syn: Mapping[str, Any], size: int,
                 car_cfg: dict | None, bom_cfg: Mapping[str, Any] | None, write_non_bom: bool,
                 gen_id: str, recipe: Method) -> None:
    """Sample one batch of layouts and add its images and labels to the shard."""
    out = pipe(
        [j[1] for j in chunk], [j[2] for j in chunk], seeds=[j[3] for j in chunk],
        num_inference_steps=syn["steps"], guidance_scale=syn["guidance_scale"],
        eta=syn["eta"], negative_prompt=syn["negative_prompt"], car=car_cfg, bom=bom_cfg,
        grounding_beta=syn.get("grounding_beta", 1.0), return_non_bom=write_non_bom,
        resolution=size,
    )
    for k, (img, layout, _, seed) in enumerate(chunk):
        records = [_kept_record(a) for a in layout.kept]
        for n, cid in enumerate(layout.category_ids):
            res = out.car[k][n] if out.car is not None else None
            box = clip_xywh(out.boxes[k][n], size, size)
            if box[2] <= 0 or box[3] <= 0:
                continue
            records.append({
                "category_id": cid, "bbox": box, "phrase": phrase_for(layout.classes[n]),
                "requested_bbox": [float(v) for v in out.requested_boxes[k][n]],
                "car_score": None if res is None else float(res.score),
                "car_fallback": None if res is None else bool(res.fallback),
                "generated": True,
            })
        extra = ({"non_bom": Image.fromarray(out.non_bom_images[k])}
                 if out.non_bom_images is not None else None)
        shard.add_image(
            Image.fromarray(out.images[k]), f"{img['id']:06d}.png", records,
            provenance={
                "source_image_id": img["id"], "source_file_name": img["file_name"],
                "seed": seed, "generator": gen_id, "layout": recipe.layout,
                "car": car_cfg is not None, "bom": bom_cfg is not None,
                "bom_region": layout.bom_region if bom_cfg else None,
                "steps": syn["steps"], "guidance_scale": syn["guidance_scale"],
                "caption": layout.prompt,
            },
            extra_images=extra,
        )


def _kept_record(ann: Mapping[str, Any]) -> dict[str, Any]:
    keep = {k: ann[k] for k in ("category_id", "bbox", "phrase") if k in ann}
    return {**keep, "bbox": [float(v) for v in ann["bbox"]], "generated": False,
            "source_annotation_id": ann.get("id")}
