"""CAR quality on phantom ground truth: do refined boxes land closer to the true items?

The phantom's held-out scans carry exact boxes and masks. Each true box is perturbed
(shift / scale jitter, the way a generated item misses its requested box), then refined
by CAR from an attention map; the table compares the perturbed ("requested") boxes with
each refiner by pycocotools box AP50 (boxes as detections, score = CAR confidence;
requested boxes score 1), mean IoU to the true box, and the fallback rate.

Two sources of attention maps:

- ``--oracle-maps``: each class's true mask pooled to the attention resolution (16×16),
  plus Gaussian noise, upsampled bilinearly: what a perfect generator's map would look
  like. Always runnable; measures the refiner alone.
- ``--generator DIR``: the real thing. Each real scan is encoded with the generator's VAE,
  noised at every DDIM sampling timestep, and run through the UNet with its caption and
  the *perturbed* boxes as grounding (inpainting UNets also get the masked-image latent);
  the class words' cross-attention is captured and accumulated (xsyn.synthesis.attention).

Usage::

    python benchmarks/car_quality.py --dataset data/phantom --oracle-maps
    python benchmarks/car_quality.py --dataset data/phantom --generator results/models/generator

``--gate-scores`` / ``--gate-overlaps`` add a row per trust-gate setting (CAR's
``min_score`` / ``min_overlap``, xsyn.synthesis.car.gate) over the *same* refinements: the
rows differ only in which refined boxes the gate sends back to the request. Choose the
gate on ``--split val``, then report it on test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # referee.py

from xsyn.cli import add_config_arguments
from xsyn.config import load_config
from xsyn.data.boxes import clip_xywh, iou_xywh
from xsyn.data.contract import DatasetError, annotations_by_image, category_names, load_split
from xsyn.detection.evaluate import coco_evaluate
from xsyn.synthesis.car import gate, refine_boxes
from xsyn.synthesis.cues import cue_maps, request_prior
from xsyn.synthesis.segmenters import make_segmenter

REPO = Path(__file__).resolve().parent.parent


def jitter_box(box, rng: np.random.Generator, shift: float, scale: tuple[float, float],
               width: int, height: int) -> list[float]:
    """Move the centre by ±shift × size and scale each side by U(scale); clip to the image."""
    x, y, w, h = (float(v) for v in box)
    sw, sh = rng.uniform(scale[0], scale[1], 2)
    dx, dy = rng.uniform(-shift, shift, 2)
    nw, nh = w * sw, h * sh
    cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * h
    out = clip_xywh([cx - nw / 2, cy - nh / 2, nw, nh], width, height)
    if out[2] < 1 or out[3] < 1:  # pushed off the image: keep the true size at the edge
        out = clip_xywh([min(max(cx - w / 2, 0), width - w), min(max(cy - h / 2, 0), height - h), w, h],
                        width, height)
    return out


def true_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """The exact item mask from the annotation's COCO segmentation (polygons or RLE)."""
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    if not seg:
        raise DatasetError(f"annotation {ann['id']}: no segmentation; oracle maps need the phantom's masks")
    if isinstance(seg, list):
        rles = mask_utils.frPyObjects(seg, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = seg
    return mask_utils.decode(rle).astype(bool)


def oracle_map(mask: np.ndarray, rng: np.random.Generator, resolution: int, noise: float) -> np.ndarray:
    """What a perfect generator's attention would look like after capture at ``resolution``."""
    h, w = mask.shape
    low = cv2.resize(mask.astype(np.float32), (resolution, resolution), interpolation=cv2.INTER_AREA)
    low = low / max(float(low.max()), 1e-6) + rng.normal(0.0, noise, low.shape)
    low = np.clip(low, 0.0, None).astype(np.float32)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)


def oracle_maps(anns, img_info, rng, resolution, noise) -> list[np.ndarray]:
    """One map per class word (all items of a class share it, as in real capture)."""
    h, w = img_info["height"], img_info["width"]
    union: dict[int, np.ndarray] = defaultdict(lambda: np.zeros((h, w), bool))
    for ann in anns:
        union[ann["category_id"]] |= true_mask(ann, h, w)
    per_class = {c: oracle_map(m, rng, resolution, noise) for c, m in union.items()}
    return [per_class[ann["category_id"]] for ann in anns]


class RealScanCapture:
    """Attention maps of a trained generator on a *real* scan, one per requested box.

    Why noise a real scan instead of sampling: on a real scan we know where the items
    are, so the captured maps can be scored. The scan's latent is noised at each DDIM
    sampling timestep (independently, fixed seed) and the UNet is run once per timestep
    on the conditional branch only (CAR never reads the unconditional half), grounded by
    the perturbed boxes with their phrases "one {class}", exactly as synthesis would
    ground a request. Inpainting UNets get the masked-scan latent and the box mask as in
    ``StableDiffusionGLIGENPipeline`` (mask 0 inside the boxes).
    """

    def __init__(self, path: Path, cfg: dict, device: str, seed: int):
        import torch

        from xsyn.config import resolve_device
        from xsyn.generator.factory import load_generator
        from xsyn.synthesis.attention import AttentionStore, install_capture

        self.torch = torch
        self.device = torch.device(resolve_device(device))
        self.gen = load_generator(path, device=self.device)
        self.resolution = int(cfg["generator"]["resolution"])
        self.latent_side = self.resolution // self.gen.vae_scale_factor
        car = cfg["synthesis"]["car"]
        self.resolutions = list(car["resolutions"])
        self.store = AttentionStore()
        install_capture(self.gen.unet, self.store, self.latent_side, self.resolutions, car["blocks"])
        self.gen.scheduler.set_timesteps(int(cfg["synthesis"]["steps"]))
        self.timesteps = self.gen.scheduler.timesteps
        self.seed = seed

    def encode_text(self, texts: list[str]):
        tok = self.gen.tokenizer(texts, padding="max_length", max_length=self.gen.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt")
        out = self.gen.text_encoder(tok.input_ids.to(self.device))
        return out.last_hidden_state, out.pooler_output

    def __call__(self, image: np.ndarray, img_info: dict, anns: list[dict], requested: list[list[float]],
                 names: dict[int, str]) -> list[np.ndarray]:
        from xsyn.data.contract import caption_for, phrase_for
        from xsyn.generator.data import inpaint_mask
        from xsyn.generator.tokens import word_token_spans

        torch = self.torch
        h, w = image.shape[:2]
        words = [names[a["category_id"]] for a in anns]
        caption = img_info.get("caption") or caption_for(words)
        spans = word_token_spans(self.gen.tokenizer, caption, words)
        size = self.resolution
        pix = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        with torch.no_grad():
            x = torch.from_numpy(pix).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device)
            z0 = self.gen.vae.encode(x).latent_dist.mean * self.gen.vae.config.scaling_factor
            prompt, _ = self.encode_text([caption])
            _, pooled = self.encode_text([phrase_for(c) for c in words])
            max_objs = 30
            n = min(len(requested), max_objs)
            boxes = torch.zeros(1, max_objs, 4, device=self.device)
            boxes[0, :n] = torch.tensor([[b[0] / w, b[1] / h, (b[0] + b[2]) / w, (b[1] + b[3]) / h]
                                         for b in requested[:n]], device=self.device).clamp(0, 1)
            embeds = torch.zeros(1, max_objs, pooled.shape[-1], device=self.device)
            embeds[0, :n] = pooled[:n]
            masks = torch.zeros(1, max_objs, device=self.device)
            masks[0, :n] = 1
            gligen = {"gligen": {"boxes": boxes, "positive_embeddings": embeds, "masks": masks}}
            extra = None
            if self.gen.is_inpainting:
                m = inpaint_mask(boxes[0].cpu(), masks[0].cpu().bool(), self.latent_side)[None].to(self.device)
                extra = torch.cat([z0 * m, m], dim=1)
            gen = torch.Generator(self.device).manual_seed(self.seed * 1_000_003 + int(img_info["id"]))
            self.store.reset(1, self.resolutions, prompt.shape[1], self.device)
            for t in self.timesteps:
                noise = torch.randn(z0.shape, generator=gen, device=self.device)
                zt = self.gen.scheduler.add_noise(z0, noise, t[None])
                inp = zt if extra is None else torch.cat([zt, extra], dim=1)
                self.gen.unet(inp, t, encoder_hidden_states=prompt, cross_attention_kwargs=gligen)
            self.store.active = False
            maps = self.store.word_maps([spans], (size, size))[0].numpy()
        return [cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) for m in maps]


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: image not readable")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--oracle-maps", action="store_true",
                     help="maps from the exact masks, pooled + noised (tests the refiner alone)")
    src.add_argument("--generator", type=Path, metavar="DIR",
                     help="a trained generator folder: real attention capture on real scans")
    p.add_argument("--mode", choices=("real", "generated"), default="real",
                   help="real: jittered true boxes of real scans, scored against the truth; "
                        "generated: Xsyn-A synthesis on held-out scans, scored against the referee")
    p.add_argument("--dataset", type=Path, default=None,
                   help="prepared dataset root (default data/<dataset.name> from the config)")
    p.add_argument("--split", default="test", help="held-out split to measure on (default test; "
                   "choose settings on val)")
    p.add_argument("--max-images", type=int, default=60)
    p.add_argument("--shift", type=float, default=None, help="±centre shift × box size (config car.benchmark_jitter)")
    p.add_argument("--scale", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="side scale range (config car.benchmark_jitter)")
    p.add_argument("--noise", type=float, default=0.15, help="oracle maps: noise std (map max = 1)")
    p.add_argument("--methods", default=None,
                   help="refiners to compare (comma list of grabcut, attention, sam; default: the "
                        "configured segmenter, plus attention); sam needs synthesis.car.sam_path")
    p.add_argument("--cues", default=None,
                   help="cues to compare (comma list of attention, difference, both; default: the "
                        "configured one; real mode has only attention)")
    p.add_argument("--priors", default=None,
                   help="request-prior exponents to compare (comma list; default: the configured one)")
    p.add_argument("--gate-scores", default=None, metavar="LIST",
                   help="comma-separated CAR min_score values to add as gate rows (grid with --gate-overlaps)")
    p.add_argument("--gate-overlaps", default=None, metavar="LIST",
                   help="comma-separated CAR min_overlap values to add as gate rows")
    p.add_argument("--no-control", action="store_true",
                   help=f"skip the control rows (cue {CONTROL!r}: the request prior alone seeds the segmenter)")
    p.add_argument("--repeats", type=int, default=1,
                   help="draws per scan (real: jitters, generated: layouts and seeds): more boxes from a "
                        "small split; each draw is scored as an image of its own")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device for --generator (default: config)")
    p.add_argument("--referee-steps", type=int, default=3000, help="generated mode: referee training steps")
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    add_config_arguments(p)
    return p.parse_args(argv)


CONTROL = "request"  # the control cue: the request prior alone, no attention, no difference


def request_only(requested, shape: tuple[int, int], prior: float) -> list[np.ndarray]:
    """The control every cue must beat: the same soft request prior (exponent ``prior``, at least 1)
    as the only map, so a gain over it is what the attention or the difference added."""
    return [request_prior(box, shape) ** max(prior, 1.0) for box in requested]


def variant_name(segmenter: str, cue: str, prior: float, default: tuple[str, float]) -> str:
    """The configured cue and prior keep the plain segmenter name (the table's main rows)."""
    if (cue, prior) == default:
        return segmenter
    return f"{segmenter} | cue {cue} | prior {prior:g}"


def gate_grid(args, car_cfg: dict) -> list[tuple[float, float]]:
    """(min_score, min_overlap) pairs to tally, the configured pair first (it keeps the row's name)."""
    configured = (float(car_cfg["min_score"]), float(car_cfg["min_overlap"]))
    scores = [float(v) for v in args.gate_scores.split(",")] if args.gate_scores else [configured[0]]
    overlaps = [float(v) for v in args.gate_overlaps.split(",")] if args.gate_overlaps else [configured[1]]
    return list(dict.fromkeys([configured, *((s, o) for s in scores for o in overlaps)]))


class Tally:
    """Detections and IoUs of one row of the table."""

    def __init__(self) -> None:
        self.dets: list[dict] = []
        self.ious: list[float] = []
        self.fallbacks = 0
        self.seconds = 0.0

    def add(self, image_id: int, category_id: int, box, score: float, fallback: bool, truth) -> None:
        self.dets.append({"image_id": image_id, "category_id": category_id,
                          "bbox": [float(v) for v in box], "score": float(score)})
        self.ious.append(iou_xywh(box, truth))
        self.fallbacks += int(fallback)

    def row(self, name: str, gt: dict) -> dict:
        ev = coco_evaluate(gt, self.dets, source=f"CAR {name}")
        n = max(len(self.ious), 1)
        return {"method": name, "AP50": ev["stats"]["AP50"], "AP": ev["stats"]["AP"],
                "mean_IoU": float(np.mean(self.ious)) if self.ious else 0.0,
                "IoU>=0.5": float(np.mean(np.asarray(self.ious) >= 0.5)) if self.ious else 0.0,
                "fallback_rate": self.fallbacks / n, "ms_per_box": 1000 * self.seconds / n}


def paired_gain(ious: list[float], requested: list[float], seed: int, draws: int = 2000) -> tuple[float, list[float]]:
    """Mean IoU gain over the requested boxes (same boxes, paired) and its 95 % bootstrap CI
    over boxes: how sure the table is that a refiner moves boxes towards the items."""
    d = np.asarray(ious, float) - np.asarray(requested, float)
    if d.size == 0:
        return 0.0, [0.0, 0.0]
    idx = np.random.default_rng(seed).integers(0, d.size, (draws, d.size))
    means = d[idx].mean(1)
    return float(d.mean()), [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def refine_all(rows: dict[str, Tally], image: np.ndarray, maps, requested, car_cfg: dict,
               segmenters: dict, cues: list[str], priors: list[float], default: tuple[str, float],
               image_id: int, category_ids, truths, gates: list[tuple[float, float]],
               source: np.ndarray | None = None) -> None:
    """Refine the same requests with every (segmenter, cue, prior) and tally them, once per
    trust gate (``gates``, from :func:`gate_grid`: the first is the configured one and keeps the
    plain name)."""
    open_cfg = {**car_cfg, "min_score": 0.0, "min_overlap": 0.0}  # gated below, per row
    for cue in cues:
        for prior in priors:
            cue_cfg = (request_only(requested, image.shape[:2], prior) if cue == CONTROL else
                       cue_maps(cue, maps, requested, source, image, prior=prior, blur=car_cfg["difference_blur"]))
            for seg_name, seg in segmenters.items():
                name = variant_name(seg_name, cue, prior, default)
                t0 = time.perf_counter()
                res = refine_boxes(image, cue_cfg, requested, open_cfg, segmenter=seg)
                rows.setdefault(name, Tally()).seconds += time.perf_counter() - t0
                for k, (min_score, min_overlap) in enumerate(gates):
                    row = name if k == 0 else f"{name} | gate {min_score:g}/{min_overlap:g}"
                    tally = rows.setdefault(row, Tally())
                    for r, req, cid, truth in zip(res, requested, category_ids, truths, strict=True):
                        r = gate(r, req, min_score, min_overlap)
                        tally.add(image_id, cid, r.box, r.score, r.fallback, truth)


def real_scan_rows(args, cfg, root, coco, images, names, segmenters, cues, priors, default) -> tuple[dict, dict]:
    """Jittered true boxes of real scans, refined from oracle or captured maps."""
    car_cfg = dict(cfg["synthesis"]["car"])
    jit = car_cfg["benchmark_jitter"]
    shift = args.shift if args.shift is not None else jit["shift"]
    scale = tuple(args.scale) if args.scale is not None else tuple(jit["scale"])
    by_image = annotations_by_image(coco)
    capture = RealScanCapture(args.generator, cfg, args.device or cfg["device"], args.seed) if args.generator else None
    rng = np.random.default_rng(args.seed)
    gates = gate_grid(args, car_cfg)
    rows: dict[str, Tally] = {"requested": Tally()}
    gt_images, gt_anns = [], []
    for sample in tqdm(repeated(images, args.repeats), desc="CAR benchmark (real scans)", unit="img"):
        img_info, sid = sample
        anns = [{**a, "id": len(gt_anns) + k + 1, "image_id": sid} for k, a in enumerate(by_image[img_info["id"]])]
        gt_images.append({**img_info, "id": sid})
        gt_anns.extend(anns)
        image = read_rgb(root / "images" / img_info["file_name"])
        h, w = image.shape[:2]
        truth = [ann["bbox"] for ann in anns]
        requested = [jitter_box(b, rng, shift, scale, w, h) for b in truth]
        if capture is None:
            maps = oracle_maps(anns, img_info, rng, car_cfg["resolutions"][0], args.noise)
        else:
            maps = capture(image, {**img_info, "id": sid}, anns, requested, names)
        cids = [ann["category_id"] for ann in anns]
        for box, cid, t in zip(requested, cids, truth, strict=True):
            rows["requested"].add(sid, cid, box, 1.0, False, t)
        refine_all(rows, image, maps, requested, car_cfg, segmenters, cues, priors, default, sid, cids, truth,
                   gates)
    gt = {"images": gt_images, "categories": coco["categories"], "annotations": gt_anns}
    return rows, {"gt": gt, "jitter": {"shift": shift, "scale": list(scale)}, "repeats": args.repeats}


def repeated(images: list[dict], repeats: int) -> list[tuple[dict, int]]:
    """Each scan ``repeats`` times with an id of its own per draw (requests, seeds differ):
    more boxes from a small held-out split, scored as distinct images."""
    if repeats == 1:
        return [(img, int(img["id"])) for img in images]
    return [(img, int(img["id"]) * repeats + r) for r in range(repeats) for img in images]


def generated_scan_rows(args, cfg, root, coco, images, segmenters, cues, priors, default) -> tuple[dict, dict]:
    """Xsyn-A on held-out scans (CAR's cues all read from the same sample), judged by the referee."""
    from referee import score_on_real, train_referee

    from xsyn.config import resolve_device
    from xsyn.data.contract import category_names
    from xsyn.env import cache_root
    from xsyn.synthesis.candidates import CandidateSource
    from xsyn.synthesis.layouts import make_layout
    from xsyn.synthesis.run import image_seed, load_pipeline

    car_cfg = dict(cfg["synthesis"]["car"])
    syn = cfg["synthesis"]
    referee = train_referee(cfg, cache_root(), steps=args.referee_steps)
    referee_real = score_on_real(referee, {**coco, "images": images}, root / "images",
                                 car_cfg["benchmark_jitter"], args.seed + 7)
    names = category_names(coco)
    by_image = annotations_by_image(coco)
    candidates = CandidateSource(coco, car_cfg, resolve_device(args.device or cfg["device"]))
    pipe = load_pipeline(args.generator, {**cfg, "device": args.device or cfg["device"]})
    size = int(cfg["generator"]["resolution"])
    rows: dict[str, Tally] = {"requested": Tally()}
    gt_anns, gt_images, unjudged = [], [], 0
    jobs = []
    for img, sid in repeated(images, args.repeats):
        src = read_rgb(root / "images" / img["file_name"])
        found = candidates(img["id"], src)  # in the scan's own pixels
        if src.shape[:2] != (size, size):
            src = cv2.resize(src, (size, size), interpolation=cv2.INTER_AREA)
        sx, sy = size / img["width"], size / img["height"]
        anns = [{**a, "bbox": [a["bbox"][0] * sx, a["bbox"][1] * sy, a["bbox"][2] * sx, a["bbox"][3] * sy]}
                for a in by_image[img["id"]]]
        regions = [[r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy] for r in found]
        seed = image_seed(syn["seed"], sid)
        layout = make_layout("xsyn-a", anns, names, regions, (size, size), syn["xsyn_a"], seed)
        if layout is not None:
            jobs.append(({**img, "id": sid}, layout, src, seed))
    batch = int(syn["batch_size"]) if syn["batch_size"] != "auto" else 4
    capture_cfg = {**car_cfg, "cue": "attention", "device": args.device or cfg["device"]}
    gates = gate_grid(args, car_cfg)
    for i in tqdm(range(0, len(jobs), batch), desc="CAR benchmark (generated scans)", unit="batch"):
        chunk = jobs[i:i + batch]
        out = pipe([j[1] for j in chunk], [j[2] for j in chunk], seeds=[j[3] for j in chunk],
                   num_inference_steps=syn["steps"], guidance_scale=syn["guidance_scale"], eta=syn["eta"],
                   negative_prompt=syn["negative_prompt"], car=capture_cfg, bom=None, return_maps=True,
                   resolution=size)
        for k, (img, layout, src, _) in enumerate(chunk):
            generated = out.images[k]
            requested = out.requested_boxes[k]
            judged = referee.boxes(generated, requested)
            keep = [n for n, b in enumerate(judged) if b is not None and b[2] > 0 and b[3] > 0]
            unjudged += len(requested) - len(keep)
            if not keep:
                continue
            gt_images.append({"id": img["id"], "file_name": img["file_name"], "width": size, "height": size})
            truths = [judged[n] for n in keep]
            reqs = [requested[n] for n in keep]
            cids = [layout.category_ids[n] for n in keep]
            maps = [out.maps[k][n] for n in keep]
            for n, (t, cid) in enumerate(zip(truths, cids, strict=True)):
                gt_anns.append({"id": len(gt_anns) + 1, "image_id": img["id"], "category_id": cid,
                                "bbox": t, "area": t[2] * t[3], "iscrowd": 0})
                rows["requested"].add(img["id"], cid, reqs[n], 1.0, False, t)
            refine_all(rows, generated, maps, reqs, car_cfg, segmenters, cues, priors, default,
                       img["id"], cids, truths, gates, source=src)
    gt = {"images": gt_images, "categories": coco["categories"], "annotations": gt_anns}
    return rows, {"gt": gt, "referee": {"own_held_out": referee.info.get("own_held_out"),
                                         "real_windows_of_this_split": referee_real},
                  "unjudged_boxes": unjudged}


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.set, args.config_json)  # a benchmark reads the whole config
    car_cfg = dict(cfg["synthesis"]["car"])
    root = args.dataset or REPO / "data" / cfg["dataset"]["name"]
    coco = load_split(root, args.split)
    by_image = annotations_by_image(coco)
    images = [img for img in coco["images"] if by_image[img["id"]]][: args.max_images]
    if not images:
        raise DatasetError(f"{root}: split {args.split!r} has no annotated images")
    names = category_names(coco)
    if args.mode == "generated" and args.generator is None:
        raise SystemExit("--mode generated needs --generator")

    methods = ([m.strip() for m in args.methods.split(",") if m.strip()] if args.methods
               else list(dict.fromkeys([car_cfg["segmenter"], "attention"])))
    if car_cfg.get("sam_path") and "sam" not in methods:
        methods.append("sam")
    device = args.device or cfg["device"]
    segmenters = {m: make_segmenter({**car_cfg, "segmenter": m, "device": device}) for m in methods}
    configured_cue = car_cfg["cue"] if args.mode == "generated" else "attention"
    default = (configured_cue, float(car_cfg["prior"]))
    cues = [c.strip() for c in args.cues.split(",")] if args.cues else [configured_cue]
    if args.generator and not args.no_control:
        cues = list(dict.fromkeys([*cues, CONTROL]))
    if args.mode == "real" and set(cues) - {"attention", CONTROL}:
        raise SystemExit("--mode real: only the attention cue exists on a real scan (nothing was generated)")
    priors = [float(p) for p in args.priors.split(",")] if args.priors else [float(car_cfg["prior"])]

    if args.mode == "real":
        rows, extra = real_scan_rows(args, cfg, root, coco, images, names, segmenters, cues, priors, default)
    else:
        rows, extra = generated_scan_rows(args, cfg, root, coco, images, segmenters, cues, priors, default)
    gt = extra.pop("gt")
    table = [tally.row(name, gt) for name, tally in rows.items()]
    for t, tally in zip(table, rows.values(), strict=True):
        t["dIoU"], t["dIoU_ci95"] = paired_gain(tally.ious, rows["requested"].ious, args.seed)
    mode = f"generator {args.generator}" if args.generator else f"oracle maps (noise {args.noise})"
    truth = "the referee's boxes" if args.mode == "generated" else "the true boxes"
    print(f"\nCAR quality ({args.mode} scans) — {root} [{args.split}], {len(gt['images'])} images, "
          f"{len(gt['annotations'])} boxes scored against {truth}; maps: {mode}; seed {args.seed}")
    if "referee" in extra:
        ref = extra["referee"]["real_windows_of_this_split"]
        print(f"referee accuracy on real windows of this split: mean box IoU {ref['referee_mean_iou']:.3f} "
              f"(IoU ≥ 0.5: {ref['referee_iou>=0.5']:.3f}; requests themselves: {ref['requested_mean_iou']:.3f}); "
              f"boxes it could not judge: {extra['unjudged_boxes']}")
    width = max(10, *(len(t["method"]) for t in table))
    print(f"{'method':<{width}} {'AP50':>6} {'AP':>6} {'mIoU':>6} {'ΔmIoU [95% CI]':>22} {'IoU≥.5':>7} "
          f"{'fallback':>8} {'ms/box':>7}")
    for t in table:
        lo, hi = t["dIoU_ci95"]
        print(f"{t['method']:<{width}} {t['AP50']:6.3f} {t['AP']:6.3f} {t['mean_IoU']:6.3f} "
              f"{t['dIoU']:+7.3f} [{lo:+.3f}, {hi:+.3f}] {t['IoU>=0.5']:7.3f} {t['fallback_rate']:8.3f} "
              f"{t['ms_per_box']:7.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"mode": mode, "scans": args.mode, "dataset": str(root), "split": args.split,
                                        "seed": args.seed, "car": car_cfg, **extra, "table": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
