"""The shared detector initialisation: benign labels only, and what a study detector inherits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_detection import SIZE, make_images, subset

from xsyn.data.benign import benign_coco, benign_kinds, write_benign_dataset
from xsyn.data.contract import DatasetError, load_split, save_coco
from xsyn.detection.train import transfer_report

REGIONS = [
    {"id": 1, "image_id": 1, "bbox": [0, 0, 10, 10], "kind": "bottle"},
    {"id": 2, "image_id": 1, "bbox": [5, 5, 50, 50], "kind": "bag"},
    {"id": 3, "image_id": 2, "bbox": [1, 2, 3, 4], "kind": "laptop"},
]


def test_benign_labels_replace_the_prohibited_ones():
    coco = {"images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in (1, 2)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
            "categories": [{"id": 1, "name": "Gun"}], "regions": REGIONS}
    kinds = benign_kinds([coco])
    assert kinds == ["bottle", "laptop"]  # sorted, the bag left out
    out = benign_coco(coco, kinds)
    assert [c["name"] for c in out["categories"]] == ["bottle", "laptop"]
    assert [(a["image_id"], a["category_id"], a["bbox"]) for a in out["annotations"]] == [
        (1, 1, [0.0, 0.0, 10.0, 10.0]), (2, 2, [1.0, 2.0, 3.0, 4.0])]
    assert "Gun" not in json.dumps(out)
    with pytest.raises(DatasetError, match="kind"):
        benign_coco({**coco, "regions": [{"id": 9, "image_id": 1, "bbox": [0, 0, 1, 1]}]}, kinds)


def benign_rects(root: Path) -> Path:
    """The rectangles dataset, its boxes recorded as benign regions of two other kinds."""
    coco = make_images(root / "images", 10, seed=4)
    coco["regions"] = [{"id": a["id"], "image_id": a["image_id"], "bbox": a["bbox"],
                        "kind": "bottle" if a["category_id"] == 3 else "laptop"} for a in coco["annotations"]]
    coco["annotations"] = []
    for split, ids in (("train", range(1, 7)), ("val", range(7, 9)), ("test", range(9, 11))):
        save_coco(root / "annotations" / f"{split}.json", subset(coco, list(ids)) | {"regions": [
            r for r in coco["regions"] if r["image_id"] in ids]})
    out = root.parent / "benign"
    counts = write_benign_dataset(root, out)
    assert counts["train"]["boxes"] == sum(r["image_id"] <= 6 for r in coco["regions"])
    return out


def test_study_detector_inherits_all_but_its_class_layers(tmp_path):
    """Init on two benign classes, then train on the 2 prohibited ones: ultralytics copies every
    tensor but the head's last class convolutions (one per stride), which it builds new."""
    from xsyn.cli import main

    benign = benign_rects(tmp_path / "raw")
    assert [c["name"] for c in load_split(benign, "train")["categories"]] == ["bottle", "laptop"]
    small = ["--set", "device=cpu", "--set", "detection.epochs=1", "--set", f"detection.imgsz={SIZE}",
             "--set", "detection.batch=4"]
    assert main(["train-detector", "--dataset", str(benign), "--model", "yolov8n.yaml", "--share", "100",
                 "--seed", "0", "--out", str(tmp_path / "init"), *small]) == 0
    init = tmp_path / "init" / "weights.pt"

    study = tmp_path / "study"
    coco = make_images(study / "images", 8, seed=5)
    coco["categories"] = coco["categories"] + [{"id": 9, "name": "Lighter"}]  # 3 classes: another nc
    save_coco(study / "annotations" / "train.json", subset(coco, list(range(1, 6))))
    save_coco(study / "annotations" / "val.json", subset(coco, [6, 7, 8]))
    assert main(["train-detector", "--dataset", str(study), "--model", str(init), "--share", "100",
                 "--seed", "0", "--out", str(tmp_path / "run"), *small]) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())["init"]
    assert sorted(record["new"]) == sorted(f"model.22.cv3.{i}.2.{p}" for i in range(3) for p in ("weight", "bias"))
    assert record["from_init"] == record["tensors"] - 6 > 300


def test_transfer_report_sees_a_changed_tensor(tmp_path):
    from xsyn.detection.train import build_model

    model = build_model("yolov8n.yaml").model
    path = tmp_path / "init.pt"
    torch.save({"model": model, "ema": None}, path)
    assert transfer_report(path, model)["new"] == []
    with torch.no_grad():
        model.model[0].conv.weight.add_(1.0)
    assert transfer_report(path, model)["new"] == ["model.0.conv.weight"]


def test_shipped_init_is_small_float16_and_benign_only(repo_root):
    from xsyn.data.phantom import CLASSES

    folder = repo_root / "assets" / "detector-init"
    weights = folder / "yolov8n-benign.pt"
    assert weights.stat().st_size < 7 * 2**20
    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    assert ckpt.get("optimizer") is None
    model = ckpt.get("ema") or ckpt["model"]
    assert next(model.parameters()).dtype == torch.float16
    names = set(model.names.values())
    assert names == set(json.loads((folder / "init.json").read_text())["classes"])
    assert not names & set(CLASSES) and "bag" not in names
    card = (folder / "README.md").read_text()
    assert "phantom.seed: 3" in card and "pretrain_detector_init.py" in card
