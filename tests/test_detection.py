"""End to end on CPU: coloured-rectangle scans → mix → ultralytics training → pycocotools."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xsyn.data.contract import DatasetError, save_coco
from xsyn.detection.mix import build_mix, read_classes, repeat_images
from xsyn.methods import parse_sources

SIZE = 64
CATEGORIES = [{"id": 3, "name": "Gun"}, {"id": 7, "name": "Knife"}]
COLOURS = {3: (30, 60, 220), 7: (230, 140, 20)}


def make_images(folder: Path, n: int, seed: int, prefix: str = "") -> dict:
    """``n`` grey scans with one or two coloured rectangles each; returns the COCO dict."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        arr = np.full((SIZE, SIZE, 3), 200, np.uint8)
        image_id = i + 1
        for _ in range(rng.randint(1, 2)):
            cat = rng.choice(CATEGORIES)["id"]
            w, h = rng.randint(14, 30), rng.randint(14, 30)
            x, y = rng.randint(0, SIZE - w), rng.randint(0, SIZE - h)
            arr[y:y + h, x:x + w] = COLOURS[cat]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        name = f"{prefix}{i:03d}.png"
        Image.fromarray(arr).save(folder / name)
        images.append({"id": image_id, "file_name": name, "width": SIZE, "height": SIZE})
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


def subset(coco: dict, ids: list[int]) -> dict:
    keep = set(ids)
    return {**coco, "images": [i for i in coco["images"] if i["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    dataset = root / "rects"
    coco = make_images(dataset / "images", 14, seed=0)
    save_coco(dataset / "annotations" / "train.json", subset(coco, list(range(1, 9))))
    save_coco(dataset / "annotations" / "train_p50.json", subset(coco, [1, 2, 3, 4]))
    save_coco(dataset / "annotations" / "val.json", subset(coco, [9, 10, 11]))
    save_coco(dataset / "annotations" / "test.json", subset(coco, [12, 13, 14]))
    syn_root = root / "synthetic" / "rects"
    syn = make_images(syn_root / "syn" / "images", 4, seed=1, prefix="syn_")
    # same classes, other ids and order: the mix must match them by name
    syn["categories"] = [{"id": 1, "name": "Knife"}, {"id": 2, "name": "Gun"}]
    syn["annotations"] = [{**a, "category_id": 1 if a["category_id"] == 7 else 2,
                           "requested_bbox": a["bbox"]} for a in syn["annotations"]]
    save_coco(syn_root / "syn" / "annotations.json", syn)
    return dataset, syn_root


def test_parse_sources():
    assert parse_sources("none") == []
    assert parse_sources("xsyn-a+tip") == ["xsyn-a", "tip"]
    with pytest.raises(ValueError):
        parse_sources("none+tip")


def test_repeat_images_fraction():
    coco = {"images": [{"id": i} for i in range(10)], "annotations": [], "categories": []}
    parts = repeat_images(coco, 2.3, seed=0)
    assert [len(p["images"]) for p in parts] == [10, 10, 3]


def test_mix_counts_and_class_order(tiny_data, tmp_path):
    dataset, syn_root = tiny_data
    mix = build_mix(dataset, 50, ["syn"], syn_root, tmp_path / "mix", repeat=2)
    assert mix.counts == {"real": 4, "val": 3, "syn": 8}
    assert mix.names == ["Gun", "Knife"]
    labels = sorted((tmp_path / "mix").glob("syn-syn-r*/labels/*.txt"))
    assert len(labels) == 8
    # synthetic "Knife" (id 1 there) must land on YOLO class 1 = real Knife (id 7)
    syn = json.loads((syn_root / "syn" / "annotations.json").read_text())
    first = syn["annotations"][0]
    line = (tmp_path / "mix" / "syn-syn-r0" / "labels" / "r0_syn_000.txt").read_text().split("\n")[0]
    assert int(line.split()[0]) == (1 if first["category_id"] == 1 else 0)
    with pytest.raises(DatasetError, match="no training subset"):
        build_mix(dataset, 10, [], syn_root, tmp_path / "mix2")
    with pytest.raises(DatasetError, match="synthetic set 'nope'"):
        build_mix(dataset, 50, ["nope"], syn_root, tmp_path / "mix3")


def test_train_and_evaluate_end_to_end(tiny_data, tmp_path, monkeypatch):
    from xsyn.cli import main

    dataset, syn_root = tiny_data
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "results" / "runs" / "rects" / "yolov8n" / "syn" / "p50" / "s0"
    overrides = ["--set", "device=cpu", "--set", "detection.epochs=1", "--set", f"detection.imgsz={SIZE}",
                 "--set", "detection.batch=4"]
    rc = main(["train-detector", "--dataset", str(dataset), "--model", "yolov8n.yaml", "--share", "50",
               "--source", "syn", "--seed", "0", "--out", str(run), "--synthetic-root", str(syn_root),
               *overrides])
    assert rc == 0
    assert (run / "weights.pt").is_file()
    assert read_classes(run / "classes.json") == {0: 3, 1: 7}
    record = json.loads((run / "run.json").read_text())
    assert record["images"] == {"real": 4, "val": 3, "syn": 4}
    assert (run / "train" / "results.csv").is_file()

    out = tmp_path / "results" / "metrics" / "rects" / "yolov8n" / "syn" / "p50" / "s0.json"
    rc = main(["evaluate", "--weights", str(run / "weights.pt"), "--dataset", str(dataset),
               "--splits", "test", "--out", str(out), *overrides])
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert metrics["run"] == {"dataset": "rects", "model": "yolov8n", "source": "syn", "share": 50.0,
                              "seed": 0, "weights": str(run / "weights.pt")}
    test = metrics["splits"]["test"]
    assert 0.0 <= test["stats"]["AP"] <= 1.0
    assert {c["name"] for c in test["per_class"]} == {"Gun", "Knife"}
    assert len(test["pr_curve"]["recall"]) == 101
    preds = json.loads((out.parent / "s0.predictions.test.json").read_text())
    assert {p["category_id"] for p in preds} <= {3, 7}
    assert {p["image_id"] for p in preds} <= {12, 13, 14}


def test_pretrain_on_synthetic_then_finetune(tiny_data, tmp_path):
    from xsyn.cli import main

    dataset, syn_root = tiny_data
    run = tmp_path / "run"
    rc = main(["train-detector", "--dataset", str(dataset), "--model", "yolov8n.yaml", "--share", "100",
               "--source", "syn", "--seed", "1", "--out", str(run), "--synthetic-root", str(syn_root),
               "--set", "device=cpu", "--set", "detection.epochs=1", "--set", f"detection.imgsz={SIZE}",
               "--set", "detection.pretrain_synthetic=true"])
    assert rc == 0
    record = json.loads((run / "run.json").read_text())
    assert record["stages"] == ["pretrain", "finetune"]
    assert record["images"]["real"] == 8
    assert (run / "pretrain" / "weights" / "best.pt").is_file()
    assert (run / "finetune" / "weights" / "best.pt").is_file()
    assert (run / "weights.pt").is_file()


def test_missing_pt_is_never_downloaded(tiny_data, tmp_path):
    from xsyn.cli import main

    dataset, syn_root = tiny_data
    rc = main(["train-detector", "--dataset", str(dataset), "--model", "yolov8n.pt", "--share", "100",
               "--seed", "0", "--out", str(tmp_path / "run"), "--set", "device=cpu"])
    assert rc == 1
    assert not (tmp_path / "run").exists()
