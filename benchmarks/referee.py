"""A referee for CAR on generated scans: a small class-agnostic item segmenter.

On a generated scan nobody knows where the item was painted, so "is the refined box closer
to the item than the requested one?" needs a judge. The judge must be independent of CAR
and of every cue CAR may read (the model's attention, the difference to the source scan):
this one sees only the generated pixels of a window. It is a small U-Net trained on *real*
phantom item windows with their exact masks, drawn from a phantom set of its own
(``phantom.seed`` 2), disjoint from the smoke data (seed 0) and from the pretraining data
of the shipped generator (seed 1).

Windows are what CAR searches: a requested box (the true box jittered by
``car.benchmark_jitter``) grown by ``car.margin``, so the referee cannot learn that the
item sits in the middle of its window. Its target is every labelled prohibited item in the
window (class-agnostic); its box for a request is the bounding rectangle of the predicted
component that overlaps the requested box most. Its own accuracy (box IoU against the
truth on held-out *real* windows) is reported beside every result it judges.

The trained weights are cached (``.cache/xsyn/referee-<key>.pt``), keyed by the settings
that made them, so benchmarks reuse one referee.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

WINDOW = 48  # px: every window is resized to this side


class TinyUNet(nn.Module):
    """Three-level U-Net, 48×48 RGB → item logit map (enough for phantom windows)."""

    def __init__(self, width: int = 16):
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(4, o), nn.SiLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.GroupNorm(4, o), nn.SiLU())

        w = width
        self.enc = nn.ModuleList([block(3, w), block(w, 2 * w), block(2 * w, 4 * w)])
        self.dec = nn.ModuleList([block(6 * w, 2 * w), block(3 * w, w)])
        self.head = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for dec, skip in zip(self.dec, skips[-2::-1], strict=True):
            x = dec(torch.cat([F.interpolate(x, scale_factor=2.0), skip], 1))
        return self.head(x)[:, 0]


def window_box(requested: Sequence[float], margin: float, width: int, height: int) -> list[int]:
    """Integer xywh of the search window around a request (CAR's window), clipped."""
    x, y, w, h = (float(v) for v in requested)
    x0, y0 = max(0, int(np.floor(x - margin * w))), max(0, int(np.floor(y - margin * h)))
    x1 = min(width, int(np.ceil(x + w + margin * w)))
    y1 = min(height, int(np.ceil(y + h + margin * h)))
    return [x0, y0, max(1, x1 - x0), max(1, y1 - y0)]


def crop_window(image: np.ndarray, win: Sequence[int]) -> np.ndarray:
    x, y, w, h = win
    return cv2.resize(np.ascontiguousarray(image[y:y + h, x:x + w]), (WINDOW, WINDOW),
                      interpolation=cv2.INTER_AREA)


def to_tensor(crops: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def mask_box(prob: np.ndarray, win: Sequence[int], requested: Sequence[float],
             threshold: float = 0.5) -> list[float] | None:
    """Window-space probability → image xywh of the component that overlaps the request most."""
    x, y, w, h = win
    full = cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > threshold
    n, labels, stats, _ = cv2.connectedComponentsWithStats(full.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    rx0, ry0 = int(np.floor(requested[0] - x)), int(np.floor(requested[1] - y))
    rx1, ry1 = int(np.ceil(requested[0] + requested[2] - x)), int(np.ceil(requested[1] + requested[3] - y))
    inside = labels[max(ry0, 0):max(ry1, 0), max(rx0, 0):max(rx1, 0)]
    counts = np.bincount(inside.reshape(-1), minlength=n)[1:] if inside.size else np.zeros(n - 1)
    k = int(np.argmax(counts)) + 1 if counts.max() > 0 else int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1
    bx, by, bw, bh = (int(v) for v in stats[k, :4])
    return [float(x + bx), float(y + by), float(bw), float(bh)]


class Referee:
    """The trained segmenter and the window logic it judges with."""

    def __init__(self, model: TinyUNet, margin: float, info: dict):
        self.model, self.margin, self.info = model.eval(), margin, info

    @torch.no_grad()
    def boxes(self, image: np.ndarray, requested: Sequence[Sequence[float]]) -> list[list[float] | None]:
        """The referee's box of the item near each requested box (None: it sees no item)."""
        h, w = image.shape[:2]
        wins = [window_box(r, self.margin, w, h) for r in requested]
        if not wins:
            return []
        probs = torch.sigmoid(self.model(to_tensor([crop_window(image, win) for win in wins]))).numpy()
        return [mask_box(p, win, r) for p, win, r in zip(probs, wins, requested, strict=True)]


def jittered(box, rng, jitter, width, height):
    from car_quality import jitter_box

    return jitter_box(box, rng, jitter["shift"], tuple(jitter["scale"]), width, height)


def item_windows(coco: dict, images_dir: Path, margin: float, jitter: dict, rng: np.random.Generator,
                 copies: int = 1) -> tuple[np.ndarray, np.ndarray, list]:
    """Windows around jittered requests of every labelled item, with the union mask of all
    labelled items inside each window; also (window, request, true box) for scoring."""
    from pycocotools import mask as mask_utils

    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    crops, targets, meta = [], [], []
    for img in coco["images"]:
        anns = by_image.get(img["id"], [])
        if not anns:
            continue
        rgb = cv2.cvtColor(cv2.imread(str(images_dir / img["file_name"])), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        union = np.zeros((h, w), np.uint8)
        for a in anns:
            seg = a["segmentation"]
            rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg
            union |= mask_utils.decode(rle).astype(np.uint8)
        for a in anns:
            for _ in range(copies):
                req = jittered(a["bbox"], rng, jitter, w, h)
                win = window_box(req, margin, w, h)
                crops.append(crop_window(rgb, win))
                targets.append(crop_window(np.repeat(union[..., None] * 255, 3, 2), win)[..., 0] > 127)
                meta.append((win, req, [float(v) for v in a["bbox"]]))
    return np.stack(crops), np.stack(targets), meta


def blur_some(x: torch.Tensor, g: torch.Generator, max_sigma: float = 1.5) -> torch.Tensor:
    """Half of the windows blurred by a random Gaussian (σ up to ``max_sigma`` px): generated
    scans come through a VAE decoder, which softens edges; the referee must not read sharpness
    as "real item" (measured: a referee trained on crisp windows only lost 0.05 box IoU on
    VAE round trips of real scans)."""
    import torchvision.transforms.functional as TF

    out = x.clone()
    for i in range(len(x)):
        if torch.rand(1, generator=g) < 0.5:
            sigma = float(0.3 + (max_sigma - 0.3) * torch.rand(1, generator=g))
            out[i] = TF.gaussian_blur(x[i], kernel_size=7, sigma=sigma)
    return out


def referee_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def build_referee_data(folder: Path, cfg: dict, seed: int, num_images: int) -> dict:
    """A phantom set of the referee's own (seed ``seed``), as `xsyn phantom` writes it."""
    from xsyn.data.phantom import generate, params_from_config

    if not (folder / "annotations.json").is_file():
        generate(folder, params_from_config(cfg["phantom"]), num_images, seed, workers=1, progress=True)
    return json.loads((folder / "annotations.json").read_text())


def train_referee(cfg: dict, cache: Path, seed: int = 2, num_images: int = 400, steps: int = 3000,
                  batch: int = 16) -> Referee:
    """Train (or load from ``cache``) the referee for this phantom config and CAR window."""
    car = cfg["synthesis"]["car"]
    settings = {"phantom": cfg["phantom"], "seed": seed, "images": num_images, "steps": steps,
                "margin": car["margin"], "jitter": car["benchmark_jitter"], "window": WINDOW, "v": 2}
    if seed == cfg["phantom"]["seed"]:
        raise ValueError(f"referee seed {seed} is the judged dataset's phantom.seed: it would train on its scans")
    key = referee_key(settings)
    weights = cache / f"referee-{key}.pt"
    model = TinyUNet()
    if weights.is_file():
        state = torch.load(weights, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        return Referee(model, car["margin"], state["info"])
    data_dir = cache / f"referee-data-{key}"
    coco = build_referee_data(data_dir, cfg, seed, num_images)
    rng = np.random.default_rng(seed)
    ids = sorted(img["id"] for img in coco["images"])
    held = set(ids[: len(ids) // 5])  # the referee's own held-out fifth
    part = {k: {**coco, "images": [im for im in coco["images"] if (im["id"] in held) == k]}
            for k in (False, True)}
    x, y, _ = item_windows(part[False], data_dir / "images", car["margin"], car["benchmark_jitter"], rng, copies=4)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    xt, yt = to_tensor(list(x)), torch.from_numpy(y).float()
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="train referee", unit="step"):
        idx = torch.randint(len(xt), (batch,), generator=g)
        xb, yb = xt[idx], yt[idx]
        if torch.rand(1, generator=g) < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        if torch.rand(1, generator=g) < 0.5:
            xb, yb = xb.flip(-2), yb.flip(-2)
        xb = blur_some(xb, g)
        logits = model(xb)
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * yb).sum((1, 2)) + 1) / (p.sum((1, 2)) + yb.sum((1, 2)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, yb) + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    referee = Referee(model, car["margin"], {"settings": settings})
    own = score_on_real(referee, part[True], data_dir / "images", car["benchmark_jitter"], seed + 1)
    referee.info["own_held_out"] = own
    cache.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "info": referee.info}, tmp)
    tmp.replace(weights)
    return referee


def score_on_real(referee: Referee, coco: dict, images_dir: Path, jitter: dict, seed: int) -> dict:
    """Box IoU of the referee's boxes to the true boxes on real windows around jittered
    requests (and of the requests themselves, for scale)."""
    from xsyn.data.boxes import iou_xywh

    rng = np.random.default_rng(seed)
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    ref_iou, req_iou, missed = [], [], 0
    for img in coco["images"]:
        anns = by_image.get(img["id"], [])
        if not anns:
            continue
        rgb = cv2.cvtColor(cv2.imread(str(images_dir / img["file_name"])), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        reqs = [jittered(a["bbox"], rng, jitter, w, h) for a in anns]
        for a, r, b in zip(anns, reqs, referee.boxes(rgb, reqs), strict=True):
            req_iou.append(iou_xywh(r, a["bbox"]))
            ref_iou.append(iou_xywh(b, a["bbox"]) if b is not None else 0.0)
            missed += b is None
    n = max(len(ref_iou), 1)
    return {"boxes": len(ref_iou), "referee_mean_iou": float(np.mean(ref_iou)) if ref_iou else 0.0,
            "referee_iou>=0.5": float(np.mean(np.asarray(ref_iou) >= 0.5)) if ref_iou else 0.0,
            "requested_mean_iou": float(np.mean(req_iou)) if req_iou else 0.0, "missed": missed / n}
