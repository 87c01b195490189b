"""Run a trained detector over a real split and return COCO-format detections.

Class indices map back to the dataset's category ids through ``classes.json`` beside
the weights (written by training), so evaluation never guesses the class order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from xsyn.data.boxes import xyxy_to_xywh
from xsyn.data.contract import DatasetError
from xsyn.detection.mix import read_classes
from xsyn.detection.train import build_model


def load_detector(weights: str | os.PathLike) -> tuple[Any, dict[int, int]]:
    """The ultralytics model and its class index → category id map."""
    weights = Path(weights)
    classes = weights.parent / "classes.json"
    if not classes.is_file():
        raise FileNotFoundError(f"{classes}: missing (the class order of {weights}; written by train-detector)")
    return build_model(weights), read_classes(classes)


def predict_coco(
    model: Any,
    class_to_cat: Mapping[int, int],
    coco: Mapping[str, Any],
    image_root: str | os.PathLike,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 100,
    imgsz: int = 640,
    batch: int = 1,
    device: str = "cpu",
    desc: str = "predict",
) -> list[dict[str, Any]]:
    """Detections on every image of ``coco`` as COCO results (``image_id, category_id,
    bbox [x, y, w, h], score``), boxes in the original image's pixels."""
    image_root = Path(image_root)
    by_path: dict[str, int] = {}
    for img in coco["images"]:
        path = image_root / img["file_name"]
        if not path.is_file():
            raise DatasetError(f"image id {img['id']}: file {path} not found")
        by_path[str(path.absolute())] = img["id"]
    if not by_path:
        return []
    results = model.predict(
        source=list(by_path), conf=conf, iou=iou, max_det=max_det, imgsz=imgsz, batch=batch,
        device=device, stream=True, verbose=False, save=False,
    )
    detections: list[dict[str, Any]] = []
    seen: set[int] = set()
    for r in tqdm(results, total=len(by_path), desc=desc, unit="img"):
        image_id = by_path.get(str(Path(r.path).absolute()))
        if image_id is None:
            raise RuntimeError(f"ultralytics returned a result for an unknown image {r.path}")
        seen.add(image_id)
        boxes = r.boxes
        for xyxy, score, cls in zip(
            boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
        ):
            cls = int(cls)
            if cls not in class_to_cat:
                raise DatasetError(f"class index {cls} has no category in classes.json")
            detections.append({
                "image_id": image_id,
                "category_id": class_to_cat[cls],
                "bbox": [round(v, 2) for v in xyxy_to_xywh(xyxy)],
                "score": round(float(score), 5),
            })
    missing = set(by_path.values()) - seen
    if missing:
        raise RuntimeError(f"ultralytics skipped {len(missing)} images (unsupported format?), e.g. id {min(missing)}")
    return detections
