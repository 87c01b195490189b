"""COCO bbox evaluation with pycocotools: the single source of every mAP in xsyn.

ultralytics prints its own mAP while training; those numbers are progress output only.
Every number in a table or plot comes from :func:`coco_evaluate`, which wraps
``pycocotools.cocoeval.COCOeval`` and returns plain JSON-ready data: the 12 standard
stats with names, per-class AP / AP50, and PR-curve samples for the plots.

Values are fractions in [0, 1] as pycocotools reports them; ``None`` stands for
pycocotools' ``-1`` ("no ground truth in this area range / class").
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xsyn.data.contract import DatasetError
from xsyn.io import write_json

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) or value < 0 else float(value)


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean over entries pycocotools filled (it marks "no ground truth" with -1)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def prepare_gt(coco: dict[str, Any]) -> dict[str, Any]:
    """A copy of a contract COCO dict with the keys pycocotools needs (area, iscrowd).

    The contract does not require ``area``/``iscrowd``; pycocotools reads both (area
    ranges for APs/m/l, crowd handling), so default them to the box area and 0.
    """
    gt = {
        "info": copy.deepcopy(coco.get("info", {})),
        "images": [{k: img[k] for k in ("id", "width", "height", "file_name")} for img in coco["images"]],
        "categories": [{"id": c["id"], "name": c["name"]} for c in coco["categories"]],
        "annotations": [],
    }
    for ann in coco["annotations"]:
        x, y, w, h = (float(v) for v in ann["bbox"])
        gt["annotations"].append({
            "id": ann["id"],
            "image_id": ann["image_id"],
            "category_id": ann["category_id"],
            "bbox": [x, y, w, h],
            "area": float(ann.get("area") or w * h),
            "iscrowd": int(ann.get("iscrowd", 0)),
        })
    return gt


def check_detections(detections: list[dict[str, Any]], gt: dict[str, Any], source: str) -> None:
    """Fail with a message naming the entry when a detection can't be scored."""
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    for i, det in enumerate(detections):
        if det.get("image_id") not in image_ids:
            raise DatasetError(f"{source}: detections[{i}]: unknown image_id {det.get('image_id')!r}")
        if det.get("category_id") not in cat_ids:
            raise DatasetError(f"{source}: detections[{i}]: unknown category_id {det.get('category_id')!r}")
        bbox = det.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise DatasetError(f"{source}: detections[{i}]: bbox must be [x, y, w, h], got {bbox!r}")
        if not isinstance(det.get("score"), (int, float)):
            raise DatasetError(f"{source}: detections[{i}]: score must be a number")


def load_results(coco_gt: Any, detections: list[dict[str, Any]]) -> Any:
    """``COCO.loadRes`` (which fails on an empty list), or an empty result set."""
    from pycocotools.coco import COCO

    if detections:
        return coco_gt.loadRes(copy.deepcopy(list(detections)))
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    empty.createIndex()
    return empty


def coco_evaluate(
    coco: dict[str, Any], detections: list[dict[str, Any]], source: str = "detections"
) -> dict[str, Any]:
    """Score COCO-format ``detections`` against the ground truth ``coco`` (bbox task).

    Returns ``{"stats": {AP, AP50, ...}, "per_class": [...], "pr_curve": {...},
    "summary": text}``. ``per_class`` rows hold ``id, name, AP, AP50, n_gt``;
    ``pr_curve`` holds the 101 recall thresholds and precision at IoU 0.5, all areas,
    100 detections, per class and averaged over classes with ground truth.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = prepare_gt(coco)
    check_detections(detections, gt, source)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # pycocotools prints progress; keep the summary only
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = load_results(coco_gt, detections)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()

    p = ev.params
    area_all = p.areaRngLbl.index("all")
    max_det = len(p.maxDets) - 1  # 100
    iou50 = int(np.argmin(np.abs(p.iouThrs - 0.5)))
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    n_gt = {c["id"]: 0 for c in gt["categories"]}
    for ann in gt["annotations"]:
        if not ann["iscrowd"]:
            n_gt[ann["category_id"]] += 1
    names = {c["id"]: c["name"] for c in gt["categories"]}

    per_class, curves = [], {}
    for k, cat_id in enumerate(p.catIds):
        pr = precision[:, :, k, area_all, max_det]
        per_class.append({
            "id": int(cat_id),
            "name": names[cat_id],
            "AP": _mean_valid(pr),
            "AP50": _mean_valid(pr[iou50]),
            "n_gt": n_gt[cat_id],
        })
        curve = pr[iou50]
        curves[names[cat_id]] = [float(v) for v in curve] if (curve > -1).any() else None
    valid_curves = [c for c in curves.values() if c is not None]
    mean_curve = np.mean(valid_curves, axis=0).tolist() if valid_curves else None
    return {
        "stats": {name: _nan_to_none(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)},
        "per_class": per_class,
        "pr_curve": {
            "iou": 0.5,
            "area": "all",
            "max_dets": int(p.maxDets[max_det]),
            "recall": [float(r) for r in p.recThrs],
            "precision": curves,
            "mean": mean_curve,
        },
        "n_images": len(gt["images"]),
        "n_detections": len(detections),
        "summary": summary.getvalue(),
    }


def predictions_path(out: str | os.PathLike, split: str) -> Path:
    """``results/metrics/…/s0.json`` → ``results/metrics/…/s0.predictions.test.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.predictions.{split}.json")


def evaluate_weights(
    weights: str | os.PathLike,
    dataset: str | os.PathLike,
    splits: Sequence[str],
    out: str | os.PathLike,
    det_cfg: Mapping[str, Any],
    device: str = "cpu",
) -> dict[str, Any]:
    """Predict on each real split, write the COCO results, score them, write ``out``.

    The metrics JSON carries the run identity (from ``run.json`` beside the weights) so
    aggregation never has to parse paths.
    """
    from xsyn.data.contract import load_split
    from xsyn.detection.predict import load_detector, predict_coco
    from xsyn.detection.train import read_run

    if not splits:
        raise ValueError("no split to evaluate")
    dataset = Path(dataset)
    model, class_to_cat = load_detector(weights)
    run = read_run(weights)
    identity = {key: run.get(key) for key in ("dataset", "model", "source", "share", "seed")}
    identity["dataset"] = identity["dataset"] or dataset.name
    metrics: dict[str, Any] = {"run": {**identity, "weights": str(weights)}, "splits": {}}
    for split in splits:
        coco = load_split(dataset, split)
        dets = predict_coco(
            model, class_to_cat, coco, dataset / "images",
            conf=det_cfg["conf"], iou=det_cfg["iou"], max_det=int(det_cfg["max_det"]),
            imgsz=det_cfg["imgsz"], batch=det_cfg["batch"], device=device, desc=f"predict {split}",
        )
        pred_path = predictions_path(out, split)
        write_json(pred_path, dets, indent=None)
        result = coco_evaluate(coco, dets, source=str(pred_path))
        result["predictions"] = pred_path.name
        metrics["splits"][split] = result
    write_json(out, metrics)
    return metrics
