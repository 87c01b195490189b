"""Generator fidelity: can a classifier trained on real items tell the class of a painted one?

An objective stand-in for "a person tells a gun from scissors in what the generator paints".
A small CNN is trained only on *real* item crops (train + val split) and then asked to
classify items the generator painted:

- item crop: a square around the box centre, side 1.25 × max(w, h) (at least 12 px),
  clipped at the image border and padded with white (empty X-ray), resized to 48×48 RGB;
- generated: up to ``--max-items`` test-split annotations, round robin over the classes;
  each box is re-painted on its own scan by the generator's inpainting model (the Xsyn-M
  case: mask = the box, phrase "one {class}", caption the class name) with diffusers'
  ``StableDiffusionGLIGENPipeline`` (``xsyn.generator.samples``), then cropped at the box;
- controls from the same run: "real" (the real crop of the same annotation: upper bound),
  "real → VAE" (that scan through the generator's VAE only: what the decoder alone loses)
  and "no item" (the same box position cut from a different test scan whose items overlap
  it least: box geometry and bag context without the item, should be near chance).

Exit status 1 when the classifier fails its sanity bar (real test-crop accuracy below
twice chance): then the generated accuracy means nothing.

Usage::

    python benchmarks/generator_fidelity.py --generator results/models/generator
    python benchmarks/generator_fidelity.py --generator /tmp/exp/t --out fid.json --grid fid.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from xsyn.data.boxes import xywh_to_unit_xyxy
from xsyn.data.contract import DatasetError, annotations_by_image, category_names, load_split

CROP = 48
CROP_SCALE = 1.25
MIN_SIDE = 12
PAD_VALUE = 255  # an empty X-ray is white


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: image not readable")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def crop_square(image: np.ndarray, box: list[float], out: int = CROP) -> np.ndarray:
    """The item crop of a normalised xyxy ``box`` in ``image`` (H×W×3 uint8) → out×out×3."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    side = max(MIN_SIDE, int(round(CROP_SCALE * max(x1 - x0, y1 - y0))))
    left = int(round((x0 + x1) / 2 - side / 2))
    top = int(round((y0 + y1) / 2 - side / 2))
    canvas = np.full((side, side, 3), PAD_VALUE, np.uint8)
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + side, w), min(top + side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if side >= out else cv2.INTER_LINEAR
    return cv2.resize(canvas, (out, out), interpolation=interp)


def real_crops(root: Path, splits: list[str], label_of: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All annotated item crops of ``splits`` (N×48×48×3 uint8) and their class indices."""
    xs, ys = [], []
    for split in splits:
        coco = load_split(root, split)
        by_image = annotations_by_image(coco)
        for img_info in coco["images"]:
            anns = by_image[img_info["id"]]
            if not anns:
                continue
            image = read_rgb(root / "images" / img_info["file_name"])
            for ann in anns:
                xs.append(crop_square(image, xywh_to_unit_xyxy(ann["bbox"], img_info["width"], img_info["height"])))
                ys.append(label_of[ann["category_id"]])
    if not xs:
        raise DatasetError(f"{root}: no annotations in {splits}")
    return np.stack(xs), np.asarray(ys, np.int64)


# ---------------------------------------------------------------------------- classifier


class SmallCNN(nn.Module):
    """Four 3×3 conv blocks (BN, ReLU, 2×2 max-pool on the first three), global pooling, linear."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                  nn.Linear(chans[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×3 → float N×3×H×W in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal / vertical flips and transposes (items lie at any orientation in a bag)."""
    n = x.shape[0]
    flips = torch.rand(n, 3, generator=g) < 0.5
    x = torch.where(flips[:, 0, None, None, None], x.flip(3), x)
    x = torch.where(flips[:, 1, None, None, None], x.flip(2), x)
    return torch.where(flips[:, 2, None, None, None], x.transpose(2, 3), x)


def train_classifier(x: np.ndarray, y: np.ndarray, num_classes: int, epochs: int, seed: int,
                     device: torch.device, max_seconds: float) -> tuple[SmallCNN, dict]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = SmallCNN(num_classes).to(device)
    xt, yt = to_tensor(x), torch.from_numpy(y)
    batch = 64
    steps_per_epoch = (len(xt) + batch - 1) // batch
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    t0 = time.perf_counter()
    done = 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            xb = augment(xt[idx], g).to(device)
            loss = loss_fn(model(xb), yt[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        done += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    model.eval()
    return model, {"epochs": done, "epochs_requested": epochs, "seconds": time.perf_counter() - t0,
                   "final_loss": float(loss.item()), "train_crops": len(xt)}


@torch.no_grad()
def predict(model: nn.Module, crops: np.ndarray, device: torch.device) -> np.ndarray:
    if len(crops) == 0:
        return np.zeros(0, np.int64)
    out = [model(to_tensor(crops[i:i + 256]).to(device)).argmax(1).cpu() for i in range(0, len(crops), 256)]
    return torch.cat(out).numpy()


# ---------------------------------------------------------------------------- items


def select_items(coco: dict, max_items: int, seed: int) -> list[dict]:
    """Up to ``max_items`` annotations of the split, round robin over classes (seeded order within)."""
    rng = np.random.default_rng(seed)
    per_class: dict[int, list[dict]] = {c: [] for c in category_names(coco)}
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        per_class[ann["category_id"]].append(ann)
    queues = [[anns[int(i)] for i in rng.permutation(len(anns))] for anns in per_class.values() if anns]
    out: list[dict] = []
    while len(out) < max_items and any(queues):
        for q in queues:
            if q and len(out) < max_items:
                out.append(q.pop(0))
    return out


def box_overlap(box: list[float], others: list[list[float]]) -> float:
    """Share of the item's crop square (normalised) covered by any of ``others`` (upper bound: sum)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = CROP_SCALE * max(box[2] - box[0], box[3] - box[1]) / 2
    sq = (cx - half, cy - half, cx + half, cy + half)
    area = max((sq[2] - sq[0]) * (sq[3] - sq[1]), 1e-9)
    cover = 0.0
    for o in others:
        iw = min(sq[2], o[2]) - max(sq[0], o[0])
        ih = min(sq[3], o[3]) - max(sq[1], o[1])
        if iw > 0 and ih > 0:
            cover += iw * ih
    return min(cover / area, 1.0)


def empty_scan_for(box: list[float], own_image: int, candidates: list[tuple[dict, list[list[float]]]],
                   rng: np.random.Generator) -> tuple[dict, float]:
    """A different scan where the box's crop square holds as little of any item as possible."""
    best, best_cover = None, 2.0
    for k in rng.permutation(len(candidates)):
        img_info, boxes = candidates[int(k)]
        if img_info["id"] == own_image:
            continue
        cover = box_overlap(box, boxes)
        if cover < best_cover:
            best, best_cover = img_info, cover
        if cover == 0.0:
            break
    if best is None:
        raise DatasetError("the no-item control needs at least two scans in the split")
    return best, best_cover


# ---------------------------------------------------------------------------- generation


@torch.no_grad()
def vae_roundtrip(comps, image: np.ndarray, device: torch.device) -> np.ndarray:
    """The scan through the generator's VAE (encode → mean latent → decode), as uint8 RGB."""
    vae = comps.vae
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
    x = x.to(device=device, dtype=vae.dtype)
    z = vae.encode(x).latent_dist.mean
    out = vae.decode(z).sample[0].float().clamp(-1, 1).add(1).mul(127.5).round()
    return out.permute(1, 2, 0).byte().cpu().numpy()


def write_grid(path: Path, records: list[dict], real: np.ndarray, gen: np.ndarray, names: list[str],
               n: int = 24) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(records))
    per_row = 6
    rows = max(1, (n + per_row - 1) // per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(1.05 * 2 * per_row, 1.35 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r = records[i]
        pairs = ((real[i], r["pred_real"], "real"), (gen[i], r["pred_generated"], "gen"))
        for j, (crop, pred, tag) in enumerate(pairs):
            ax = axes[i // per_row][2 * (i % per_row) + j]
            ax.imshow(crop)
            ok = pred == r["label"]
            title = f"{names[r['label']]}\n{tag}→{names[pred]}" if j == 0 else f"\n{tag}→{names[pred]}"
            ax.set_title(title, fontsize=6, color="green" if ok else "red")
    fig.suptitle("real crop | generated crop (green: classified as the requested class)", fontsize=7)
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", type=Path, required=True, nargs="+", metavar="DIR",
                   help="trained generator folder(s) (diffusers GLIGEN; inpainting UNet for the Xsyn-M case); "
                        "several are judged by the same classifier, on the same items and seeds")
    p.add_argument("--dataset", type=Path, default=Path("data/phantom"),
                   help="prepared dataset root (default data/phantom)")
    p.add_argument("--steps", type=int, default=20, help="DDIM sampling steps (default 20)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)")
    p.add_argument("--max-items", type=int, default=96, help="test annotations to re-paint (default 96)")
    p.add_argument("--seed", type=int, default=0, help="classifier, item order and per-item sampling seeds")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--epochs", type=int, default=30, help="classifier epochs (default 30)")
    p.add_argument("--train-seconds", type=float, default=90.0,
                   help="stop classifier training after the epoch that passes this wall time (default 90; "
                        "0 = train all --epochs, the comparable choice on a shared machine)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch CPU threads (default 2; use 1 when other jobs share the cores)")
    p.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    p.add_argument("--grid", type=Path, default=None, help="PNG: real vs generated crops of ~24 items "
                   "(of the first generator)")
    return p.parse_args(argv)


def paint_items(generator: Path, items: list[dict], images: dict, scan, args, cats: dict,
                device: torch.device) -> tuple[list, list, float]:
    """Each item re-painted on its own scan by ``generator``; also the scan's VAE round trip."""
    from PIL import Image

    from xsyn.generator.factory import load_generator
    from xsyn.generator.samples import gligen_pipeline, sample_one

    comps = load_generator(generator, device=device, dtype=torch.float32)
    if not comps.is_inpainting:
        print(f"warning: {generator} has a generation (4-channel) UNet, not an inpainting one: "
              "the box is painted on a blank canvas, not on its scan", file=sys.stderr)
    pipe = gligen_pipeline(comps)
    size = int(comps.unet.config.sample_size) * comps.vae_scale_factor
    gen_c, vae_c = [], []
    t0 = time.perf_counter()
    for k, ann in enumerate(tqdm(items, desc=f"painting items ({generator.name})", unit="item")):
        img_info = images[ann["image_id"]]
        box = xywh_to_unit_xyxy(ann["bbox"], img_info["width"], img_info["height"])
        scan_px = cv2.resize(scan(img_info["id"]), (size, size), interpolation=cv2.INTER_AREA)
        vae_c.append(crop_square(vae_roundtrip(comps, scan_px, device), box))
        seed = args.seed * 100_003 + k
        torch.manual_seed(seed)  # the pipeline noises the inpainting latent with the global RNG
        painted = sample_one(pipe, cats[ann["category_id"]], box, size, args.steps, args.guidance, seed,
                             background=Image.fromarray(scan_px) if comps.is_inpainting else None)
        gen_c.append(crop_square(np.asarray(painted.convert("RGB")), box))
    return gen_c, vae_c, time.perf_counter() - t0


def main(argv=None) -> int:  # noqa: C901 - a linear report
    args = parse_args(argv)
    from xsyn.config import resolve_device

    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device))
    root = args.dataset
    t_start = time.perf_counter()

    test = load_split(root, "test")
    cats = category_names(test)
    class_ids = list(cats)
    names = [cats[c] for c in class_ids]
    label_of = {c: i for i, c in enumerate(class_ids)}
    nc = len(names)
    chance = 1.0 / nc

    # 1-2. classifier on real crops
    train_splits = ["train"] + (["val"] if (root / "annotations" / "val.json").is_file() else [])
    x_train, y_train = real_crops(root, train_splits, label_of)
    x_test, y_test = real_crops(root, ["test"], label_of)
    budget = args.train_seconds if args.train_seconds > 0 else float("inf")
    model, train_info = train_classifier(x_train, y_train, nc, args.epochs, args.seed, device, budget)
    test_acc = float((predict(model, x_test, device) == y_test).mean())

    # 3. items, the controls, then each generator's painted crops
    items = select_items(test, args.max_items, args.seed)
    if not items:
        raise DatasetError(f"{root}: the test split has no annotations")
    images = {im["id"]: im for im in test["images"]}
    by_image = annotations_by_image(test)
    candidates = [(im, [xywh_to_unit_xyxy(a["bbox"], im["width"], im["height"]) for a in by_image[im["id"]]]) for im in test["images"]]
    rng = np.random.default_rng(args.seed + 1)
    cache: dict[int, np.ndarray] = {}

    def scan(img_id: int) -> np.ndarray:
        if img_id not in cache:
            cache[img_id] = read_rgb(root / "images" / images[img_id]["file_name"])
        return cache[img_id]

    real_c, empty_c, covers, records = [], [], [], []
    for k, ann in enumerate(items):
        img_info = images[ann["image_id"]]
        box = xywh_to_unit_xyxy(ann["bbox"], img_info["width"], img_info["height"])
        real_c.append(crop_square(scan(img_info["id"]), box))
        other, cover = empty_scan_for(box, img_info["id"], candidates, rng)
        empty_c.append(crop_square(scan(other["id"]), box))
        covers.append(cover)
        records.append({"annotation_id": ann["id"], "image_id": img_info["id"], "label": label_of[ann["category_id"]],
                        "class": cats[ann["category_id"]], "box": box, "no_item_image_id": other["id"],
                        "no_item_cover": cover, "seed": args.seed * 100_003 + k})
    labels = np.asarray([r["label"] for r in records])
    crops = {"real": real_c, "no_item": empty_c}
    gen_seconds = {}
    for gen in args.generator:
        crops[f"generated:{gen}"], crops[f"real_vae:{gen}"], gen_seconds[str(gen)] = paint_items(
            gen, items, images, scan, args, cats, device)
    preds = {kind: predict(model, np.stack(c), device) for kind, c in crops.items()}
    acc = {kind: float((p == labels).mean()) for kind, p in preds.items()}
    per_class = {}
    for i, name in enumerate(names):
        sel = labels == i
        per_class[name] = {"n": int(sel.sum()),
                           **{kind: (float((p[sel] == i).mean()) if sel.any() else None) for kind, p in preds.items()}}
    first = args.generator[0]
    for r, pr, pg, pv, pe in zip(records, preds["real"], preds[f"generated:{first}"], preds[f"real_vae:{first}"],
                                 preds["no_item"], strict=True):
        r.update(pred_real=int(pr), pred_generated=int(pg), pred_real_vae=int(pv), pred_no_item=int(pe))
    total = time.perf_counter() - t_start

    # 4. report
    print(f"\nGenerator fidelity on {root} [test]; {args.steps} steps, guidance {args.guidance}, seed {args.seed}, "
          f"device {device}")
    print(f"classifier: {train_info['train_crops']} real crops ({'+'.join(train_splits)}), "
          f"{train_info['epochs']} epochs in {train_info['seconds']:.1f} s; "
          f"real test crops: {test_acc:.3f} ({len(y_test)} crops)")
    print(f"items: {len(records)} ({nc} classes), chance {chance:.3f}; no-item crops: mean item cover "
          f"{np.mean(covers):.3f}")
    rows = [("real", "real"), ("no_item", "no item")]
    for gen in args.generator:
        rows += [(f"real_vae:{gen}", f"real → VAE ({gen.name})"), (f"generated:{gen}", f"generated ({gen.name})")]
    label_w = max(len(lab) for _, lab in rows) + 1
    print(f"{'crops':<{label_w}} {'accuracy':>8}  most predicted class")
    for kind, label in rows:
        top = np.bincount(preds[kind], minlength=nc)
        print(f"{label:<{label_w}} {acc[kind]:8.3f}  {names[int(top.argmax())]} ({top.max() / len(labels):.0%})")
    w = max(9, max(len(n) for n in names) + 1)
    print(f"\n{'per class':<{label_w}}" + "".join(f"{n[:w - 1]:>{w}}" for n in names))
    print(f"{'n':<{label_w}}" + "".join(f"{per_class[n]['n']:>{w}d}" for n in names))
    for kind, label in rows:
        cells = [per_class[n][kind] for n in names]
        print(f"{label:<{label_w}}" + "".join(f"{'–':>{w}}" if v is None else f"{v:>{w}.3f}" for v in cells))
    print(f"\ntotal {total:.1f} s")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "generators": [str(g) for g in args.generator], "dataset": str(root), "split": "test",
            "steps": args.steps, "guidance": args.guidance, "seed": args.seed, "device": str(device),
            "classes": names, "chance": chance, "n_items": len(records), "classifier": train_info,
            "classifier_real_test_accuracy": test_acc, "real_test_crops": len(y_test), "accuracy": acc,
            "per_class": per_class, "no_item_mean_cover": float(np.mean(covers)), "generation_seconds": gen_seconds,
            "total_seconds": total, "items": records}, indent=1) + "\n")
    if args.grid:
        write_grid(args.grid, records, np.stack(real_c), np.stack(crops[f"generated:{first}"]), names)

    if test_acc < 2 * chance:
        print(f"FAIL: classifier real test accuracy {test_acc:.3f} < 2 × chance; the generated row is not meaningful")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
