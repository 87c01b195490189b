"""One generator shard: source scans → layouts → XsynPipeline → an atomic shard folder.

Source images are the ``synthesis.source_split`` of a prepared dataset, sorted by id and
cut with :func:`~xsyn.data.shards.shard_slice`. Each image's seed is derived from
``synthesis.seed`` and its source id alone, so a shard's content does not depend on how
many shards there are or which ran first. Which method runs (and whether the shard is
already complete) is decided above, in :mod:`xsyn.synthesize`.

Candidate regions come from ``xsyn candidates`` (one file per shard, shared by every
method) or, when none is given, are found here. Each image records what actually made it
(:meth:`ShardRecipe.provenance`): the sampler as it ran (scheduler, steps taken, guidance,
image side, dtype, device), CAR's segmenter, cue and prior, BOM's α and timing, and where
its candidate regions came from; ``timing.json`` beside it holds its share of the batch's
wall time and the shard's.
"""

from __future__ import annotations

import hashlib
import logging
import time
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
from xsyn.data.shards import ShardWriter, shard_slice
from xsyn.methods import SynthesisMethod
from xsyn.synthesis.candidates import CandidateSource, StoredCandidates
from xsyn.synthesis.layouts import Layout, make_layout

log = logging.getLogger(__name__)


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


def load_pipeline(generator: str | Path, cfg: Mapping[str, Any]):
    """The generator folder as an :class:`XsynPipeline` on the configured device/precision."""
    import torch

    from xsyn.config import resolve_device
    from xsyn.generator.factory import load_generator
    from xsyn.synthesis.pipeline import XsynPipeline

    device = resolve_device(cfg["device"])
    precision = cfg["synthesis"]["mixed_precision"]
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision) if device != "cpu" else None
    pipe = XsynPipeline.from_components(load_generator(generator, device=device, dtype=dtype))
    pipe.set_progress_bar_config(disable=True)
    if cfg["synthesis"]["compile"]:
        pipe.unet.compile(dynamic=False)  # in place: module names (and CAR's hooks) stay
    return pipe


@dataclass(frozen=True)
class SourceScan:
    """One source scan, read, resized and laid out by a loader thread."""

    image: dict[str, Any]   # its COCO image record
    layout: Layout | None   # None: no place for a new item (the scan is skipped)
    pixels: np.ndarray      # uint8 H×W×3 at the synthesis resolution
    seed: int               # image_seed(synthesis.seed, source id)
    candidates: dict[str, Any] | None  # where its candidate regions came from (None: free layout)


@dataclass(frozen=True)
class ShardRecipe:
    """How every batch of a shard is sampled and labelled."""

    method: SynthesisMethod
    size: int                          # synthesis resolution (generator.resolution)
    syn: Mapping[str, Any]             # the synthesis config section
    car: dict[str, Any] | None         # CAR config when this method runs CAR, else None
    bom: Mapping[str, Any] | None      # BOM config when this method runs BOM, else None
    generator_id: str

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], method: SynthesisMethod, generator_id: str) -> ShardRecipe:
        syn = cfg["synthesis"]
        car = {**syn["car"], "device": cfg["device"]} if method.car and syn["car"]["enabled"] else None
        bom = syn["bom"] if method.bom and syn["bom"]["enabled"] else None
        return cls(method, int(cfg["generator"]["resolution"]), syn, car, bom, generator_id)

    @property
    def write_non_bom(self) -> bool:
        return bool(self.bom and self.bom["write_non_bom"])

    def pipe_kwargs(self) -> dict[str, Any]:
        syn = self.syn
        return {"num_inference_steps": syn["steps"], "guidance_scale": syn["guidance_scale"], "eta": syn["eta"],
                "negative_prompt": syn["negative_prompt"], "car": self.car, "bom": self.bom,
                "grounding_beta": syn["grounding_beta"], "return_non_bom": self.write_non_bom,
                "resolution": self.size}

    def provenance(self, scan: SourceScan, ran: Mapping[str, Any], pixels: np.ndarray) -> dict[str, Any]:
        """What made this image: ``ran`` is what the pipeline reports it did (the sampler,
        the CAR segmenter), ``pixels`` the image written. (Its time goes to ``timing.json``.)"""
        img, layout = scan.image, scan.layout
        return {
            "source_image_id": img["id"], "source_file_name": img["file_name"],
            "seed": scan.seed, "generator": self.generator_id, "layout": self.method.layout,
            "caption": layout.prompt,
            "sampling": {**ran["sampling"], "resolution": [int(pixels.shape[1]), int(pixels.shape[0])]},
            "car": None if self.car is None else {
                **ran["car"], "prior": self.car["prior"],
                "difference_blur": self.car["difference_blur"], "resolutions": list(self.car["resolutions"]),
                "blocks": list(self.car["blocks"]),
            },
            "bom": None if self.bom is None else {
                "alpha": self.bom["alpha"], "when": self.bom["when"], "region": layout.bom_region,
            },
            "candidates": scan.candidates,
        }


@dataclass
class ScanLoader:
    """Reads, resizes and lays out the source scans of one shard (called in loader threads)."""

    root: Path
    recipe: ShardRecipe
    names: dict[int, str]
    annotations: dict[int, list[dict[str, Any]]]
    candidates: CandidateSource | StoredCandidates

    def __call__(self, img: dict[str, Any]) -> SourceScan:
        size, syn, layout_kind = self.recipe.size, self.recipe.syn, self.recipe.method.layout
        pil = Image.open(self.root / "images" / img["file_name"]).convert("RGB")
        # candidate boxes are in the scan's own pixels (dataset records, SAM on the original)
        regions = [] if layout_kind == "free" else self.candidates(img["id"], np.asarray(pil))
        sx, sy = size / img["width"], size / img["height"]
        if pil.size != (size, size):
            pil = pil.resize((size, size), Image.BICUBIC)
        arr = np.asarray(pil)
        image_anns = [{**a, "bbox": [a["bbox"][0] * sx, a["bbox"][1] * sy, a["bbox"][2] * sx,
                                     a["bbox"][3] * sy]} for a in self.annotations[img["id"]]]
        regions = [[r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy] for r in regions]
        seed = image_seed(syn["seed"], img["id"])
        placement = syn["xsyn_a"] if layout_kind != "free" else {}
        layout = make_layout(layout_kind, image_anns, self.names, regions, (size, size), placement, seed)
        found = None if layout_kind == "free" else self.candidates.identity(img["id"])
        return SourceScan(img, layout, arr, seed, found)


def candidate_source(cfg: Mapping[str, Any], coco: dict[str, Any], candidates: str | Path | None,
                     shard_index: int, shard_count: int) -> CandidateSource | StoredCandidates:
    """The shard's stored candidates (``xsyn candidates``), else found here on the run's device."""
    from xsyn.config import resolve_device

    syn = cfg["synthesis"]
    if candidates is not None:
        return StoredCandidates(candidates, syn["source_split"], shard_index, shard_count)
    return CandidateSource(coco, syn["car"], resolve_device(cfg["device"]))


def generate_shard(cfg: Mapping[str, Any], method: SynthesisMethod, dataset_root: str | Path,
                   generator: str | Path | None, shard_index: int, shard_count: int,
                   out_dir: str | Path, pipe: Any = None,
                   candidates: str | Path | None = None) -> dict[str, Any]:
    """Write shard ``shard_index`` of ``shard_count`` of a generator ``method`` to ``out_dir``.

    ``candidates``: the shard's file written by ``xsyn candidates`` (else they are found
    here). Returns a summary (images written, sources skipped for lack of a layout).
    """
    syn = cfg["synthesis"]
    out_dir, root = Path(out_dir), Path(dataset_root)
    start = time.perf_counter()
    coco = load_split(root, syn["source_split"])
    sources = shard_slice(sorted(coco["images"], key=lambda im: im["id"]), shard_index, shard_count)
    pipe = pipe or load_pipeline(generator, cfg)
    found = candidate_source(cfg, coco, candidates, shard_index, shard_count)
    recipe = ShardRecipe.from_config(cfg, method, generator_hash(generator) if generator is not None else "in-memory")
    loader = ScanLoader(root, recipe, category_names(coco), annotations_by_image(coco), found)
    batch = resolve_batch_size(syn["batch_size"], pipe, recipe.size)
    written = skipped = 0
    with ShardWriter(out_dir, coco["categories"], method.name) as shard, ThreadPoolExecutor(2) as threads:
        # The loader threads read and lay out scans ahead while the device samples.
        bar = tqdm(total=len(sources), desc=f"{method.name} {out_dir.name}", unit="img")
        chunk: list[SourceScan] = []
        for n_done, scan in enumerate(threads.map(loader, sources), 1):
            if scan.layout is None:
                skipped += 1
            else:
                chunk.append(scan)
            if len(chunk) == batch or (n_done == len(sources) and chunk):
                write_batch(shard, pipe, chunk, recipe)
                written += len(chunk)
                bar.update(len(chunk))
                chunk = []
        bar.update(skipped)
        bar.close()
        shard.info = {"method": method.name, "shard": [shard_index, shard_count], "source_images": len(sources),
                      "images": written, "no_layout": skipped, "batch_size": batch,
                      "device": str(pipe._execution_device), "seconds": round(time.perf_counter() - start, 3)}
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


def write_batch(shard: ShardWriter, pipe: Any, scans: list[SourceScan], recipe: ShardRecipe) -> None:
    """Sample one batch of layouts and add its images and labels to the shard."""
    start = time.perf_counter()
    out = pipe([s.layout for s in scans], [s.pixels for s in scans], seeds=[s.seed for s in scans],
               **recipe.pipe_kwargs())
    seconds = (time.perf_counter() - start) / len(scans)
    for k, scan in enumerate(scans):
        layout = scan.layout
        records = [_kept_record(a) for a in layout.kept]
        for n, cid in enumerate(layout.category_ids):
            res = out.car[k][n] if out.car is not None else None
            box = clip_xywh(out.boxes[k][n], recipe.size, recipe.size)
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
        shard.add_image(Image.fromarray(out.images[k]), f"{scan.image['id']:06d}.png", records,
                        provenance=recipe.provenance(scan, out.ran, out.images[k]), extra_images=extra,
                        seconds=seconds)


def _kept_record(ann: Mapping[str, Any]) -> dict[str, Any]:
    keep = {k: ann[k] for k in ("category_id", "bbox", "phrase") if k in ann}
    return {**keep, "bbox": [float(v) for v in ann["bbox"]], "generated": False,
            "source_annotation_id": ann.get("id")}
