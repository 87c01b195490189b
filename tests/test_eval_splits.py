"""Test parts (OPIXray's occlusion levels, PIDray's difficulty levels) are scored and tabled per split.

The chain a user runs: ``xsyn prepare`` writes ``test_ol1..3`` beside ``test``;
``xsyn evaluate`` scores every split of ``detection.eval_splits``; aggregation gives each
split its own table section, metrics cell and plot panel. The detector is replaced by
one that answers with known boxes (the ground truth, one level only half of it), so the
test runs in seconds and the expected AP per split is known.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from raw_fixtures import write_layout

from xsyn.cli import main
from xsyn.data.prepare import PrepareOptions, prepare_dataset
from xsyn.report.aggregate import aggregate

SPLITS = ["test", "test_ol1", "test_ol2", "test_ol3"]


@pytest.fixture
def opixray(tmp_path):
    fmt, fx = write_layout("opixray", tmp_path / "raw", n={"train": 6, "test": 9})
    dataset = tmp_path / "data" / "opixray"
    prepare_dataset(fmt, fx.source, dataset, PrepareOptions(progress=False, workers=1))
    return dataset


def fake_detector(monkeypatch):
    """Predictions = the ground truth, except that only every other box of test_ol3 images is found."""
    import xsyn.detection.predict as predict

    def predict_coco(model, class_to_cat, coco, image_root, **kw):
        dets = []
        for k, a in enumerate(coco["annotations"]):
            if coco["info"]["split"] == "test_ol3" and k % 2:
                continue
            dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9})
        return dets

    monkeypatch.setattr(predict, "load_detector", lambda weights: (None, {}))
    monkeypatch.setattr(predict, "predict_coco", predict_coco)


def test_evaluate_scores_each_eval_split_and_tables_report_them(opixray, tmp_path, monkeypatch):
    fake_detector(monkeypatch)
    run = tmp_path / "runs" / "s0"
    run.mkdir(parents=True)
    (run / "weights.pt").write_bytes(b"")
    (run / "run.json").write_text(json.dumps({"dataset": "opixray", "model": "yolov8n", "source": "none",
                                              "share": 100, "seed": 0}))
    out = tmp_path / "metrics" / "opixray" / "s0.json"
    rc = main(["evaluate", "--weights", str(run / "weights.pt"), "--dataset", str(opixray), "--out", str(out),
               "--set", "device=cpu", "--set", f"detection.eval_splits={SPLITS}"])
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert list(metrics["splits"]) == SPLITS  # from detection.eval_splits: no --splits given
    for split in SPLITS:
        assert (out.parent / f"s0.predictions.{split}.json").is_file()
    ap = {s: metrics["splits"][s]["stats"]["AP"] for s in SPLITS}
    assert ap["test_ol1"] == pytest.approx(1.0) and ap["test_ol2"] == pytest.approx(1.0)
    assert ap["test_ol3"] < 1.0 and ap["test"] == pytest.approx(1.0)
    assert metrics["splits"]["test"]["n_images"] == sum(metrics["splits"][s]["n_images"] for s in SPLITS[1:])

    summary = aggregate(tmp_path / "metrics", tmp_path / "results")
    assert sorted(summary["split"]) == SPLITS
    md = (tmp_path / "results" / "tables" / "main.md").read_text()
    for split in SPLITS:
        assert f"opixray · yolov8n · split `{split}`" in md
    cells = json.loads((tmp_path / "results" / "metrics.json").read_text())["cells"]
    assert set(cells) == {f"opixray/yolov8n/{s}/none/p100" for s in SPLITS}
    assert cells["opixray/yolov8n/test_ol3/none/p100"]["AP"] < cells["opixray/yolov8n/test_ol1/none/p100"]["AP"]
    per_class = (tmp_path / "results" / "tables" / "per_class.md").read_text()
    assert all(f"split `{s}`" in per_class for s in SPLITS)
    plot = pd.read_csv(tmp_path / "results" / "plots" / "map_vs_share.csv")
    assert sorted(plot["split"]) == SPLITS
