"""Aggregation: fake metrics files with known APs → mean ± std over seeds and Δ vs real only."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from xsyn.report.aggregate import MetricsError, aggregate, fmt_mean_std, load_metrics

RECALL = [i / 100 for i in range(101)]


def write_metrics(root: Path, source: str, share: float, seed: int, ap: float, *,
                  split: str = "test", model: str = "yolov8n", classes=(("Gun", 1.0), ("Knife", 0.0))) -> Path:
    path = root / "phantom" / model / source / f"p{share:g}" / f"s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = {k: ap for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")}
    stats["AP50"] = min(1.0, ap + 0.2)
    stats["APl"] = None  # pycocotools' -1: no large objects
    result = {
        "stats": stats,
        "per_class": [{"id": i + 1, "name": n, "AP": a * ap * 2, "AP50": a, "n_gt": 3}
                      for i, (n, a) in enumerate(classes)],
        "pr_curve": {"iou": 0.5, "recall": RECALL, "precision": {}, "mean": [1 - r * (1 - ap) for r in RECALL]},
    }
    data = {"run": {"dataset": "phantom", "model": model, "source": source, "share": share, "seed": seed},
            "splits": {split: result}}
    path.write_text(json.dumps(data))
    # a predictions file beside it must be ignored
    path.with_name(f"s{seed}.predictions.{split}.json").write_text("[]")
    return path


@pytest.fixture
def metrics_dir(tmp_path) -> Path:
    root = tmp_path / "metrics"
    for seed, ap in ((0, 0.20), (1, 0.30)):
        write_metrics(root, "none", 10, seed, ap)
    for seed, ap in ((0, 0.30), (1, 0.40)):
        write_metrics(root, "xsyn-a", 10, seed, ap)
    write_metrics(root, "xsyn-m", 10, 0, 0.26)  # one seed only: no ± part
    write_metrics(root, "xsyn-a", 25, 0, 0.5)  # no real-only run at 25 %: Δ unknown
    return root


def test_summary_mean_std_delta(metrics_dir, tmp_path):
    out = tmp_path / "results"
    summary = aggregate(metrics_dir, out).set_index(["source", "share"])
    std = math.sqrt(2 * 5.0**2)  # sample std of {20, 30} (ddof 1)
    assert summary.loc[("none", 10), "AP_mean"] == pytest.approx(25.0)
    assert summary.loc[("none", 10), "AP_std"] == pytest.approx(std)
    assert summary.loc[("xsyn-a", 10), "AP_mean"] == pytest.approx(35.0)
    assert summary.loc[("xsyn-a", 10), "dAP"] == pytest.approx(10.0)
    assert summary.loc[("xsyn-m", 10), "dAP"] == pytest.approx(1.0)
    assert summary.loc[("none", 10), "dAP"] == pytest.approx(0.0)
    assert math.isnan(summary.loc[("xsyn-a", 25), "dAP"])
    assert summary.loc[("xsyn-a", 10), "n_seeds"] == 2
    assert summary.loc[("xsyn-a", 10), "seeds"] == "0,1"
    assert math.isnan(summary.loc[("xsyn-a", 10), "APl_mean"])

    md = (out / "tables" / "main.md").read_text()
    assert "| real only" in md and "| real + xsyn-a" in md
    assert "25.0 ± 7.1" in md and "35.0 ± 7.1" in md
    assert "+10.0" in md and "+1.0" in md
    assert "| 26.0 " in md  # single seed: mean only
    csv = pd.read_csv(out / "tables" / "main.csv")
    assert list(csv["source"][:3]) == ["none", "xsyn-a", "xsyn-m"]  # real only first within a share

    metrics = json.loads((out / "metrics.json").read_text())
    cell = metrics["cells"]["phantom/yolov8n/test/xsyn-a/p10"]
    assert cell["AP"] == pytest.approx(35.0) and cell["dAP"] == pytest.approx(10.0)
    assert cell["n_seeds"] == 2
    assert metrics["cells"]["phantom/yolov8n/test/xsyn-a/p25"]["dAP"] is None
    assert metrics["n_runs"] == 6

    head = out / "headline" / "yolov8n" / "test"
    assert sorted(p.name for p in head.iterdir()) == ["none.json", "xsyn-a.json", "xsyn-m.json"]
    arm = json.loads((head / "xsyn-a.json").read_text())
    assert arm["p10"] == {"AP": pytest.approx(35.0), "dAP": pytest.approx(10.0)}
    assert arm["p25"]["dAP"] is None  # no real-only run at 25 %
    assert json.loads((head / "none.json").read_text())["p10"] == {"AP": pytest.approx(25.0)}


def test_per_class_and_plots(metrics_dir, tmp_path):
    out = tmp_path / "results"
    aggregate(metrics_dir, out)
    pc = pd.read_csv(out / "tables" / "per_class.csv").set_index(["source", "share", "class"])
    assert pc.loc[("xsyn-a", 10, "Gun"), "AP_mean"] == pytest.approx(70.0)  # 2 × mean(30, 40)
    assert pc.loc[("xsyn-a", 10, "Knife"), "AP_mean"] == pytest.approx(0.0)
    assert "## phantom · yolov8n · split `test` · 10 % real" in (out / "tables" / "per_class.md").read_text()
    share_csv = pd.read_csv(out / "plots" / "map_vs_share.csv")
    assert {"share", "AP", "source"} <= set(share_csv.columns)
    pr = pd.read_csv(out / "plots" / "pr_curves.csv")
    assert len(pr) == 4 * 101  # 4 cells × 101 recall thresholds
    for name in ("map_vs_share.png", "per_class_ap.png", "pr_curves.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_splits_and_models_get_own_sections(tmp_path):
    root = tmp_path / "metrics"
    for split in ("test_easy", "test_hard"):
        write_metrics(root / split, "none", 5, 0, 0.1, split=split)
        write_metrics(root / split, "none", 5, 0, 0.2, split=split, model="rtdetr-l")
    aggregate(root, tmp_path / "results")
    md = (tmp_path / "results" / "tables" / "main.md").read_text()
    assert md.count("## phantom · ") == 4
    heads = sorted(str(p.relative_to(tmp_path / "results" / "headline"))
                   for p in (tmp_path / "results" / "headline").rglob("*.json"))
    assert heads == ["rtdetr-l/test_easy/none.json", "rtdetr-l/test_hard/none.json",
                     "yolov8n/test_easy/none.json", "yolov8n/test_hard/none.json"]
    # a second aggregate over fewer runs leaves no stale arm behind
    shutil.rmtree(root / "test_hard")
    aggregate(root, tmp_path / "results")
    assert not list((tmp_path / "results" / "headline").rglob("test_hard"))


def test_duplicate_run_is_an_error(metrics_dir, tmp_path):
    copy = metrics_dir / "copy" / "s0.json"
    copy.parent.mkdir()
    copy.write_text((metrics_dir / "phantom" / "yolov8n" / "none" / "p10" / "s0.json").read_text())
    with pytest.raises(MetricsError, match="several files"):
        aggregate(metrics_dir, tmp_path / "results")


def test_bad_file_names_file_and_key(tmp_path):
    bad = tmp_path / "m" / "x.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"run": {"dataset": "d", "model": "m", "source": "none", "share": 5}, "splits": {}}))
    with pytest.raises(MetricsError, match=r"x\.json: run\.seed"):
        load_metrics([bad])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MetricsError, match="no metrics files"):
        aggregate(empty, tmp_path / "r")


def test_fmt_mean_std():
    assert fmt_mean_std(25.0, 7.0711) == "25.0 ± 7.1"
    assert fmt_mean_std(25.0, float("nan")) == "25.0"
    assert fmt_mean_std(float("nan"), 1.0) == "–"


def test_cli_prints_main_table(metrics_dir, tmp_path, capsys):
    from xsyn.cli import main

    assert main(["aggregate", "--metrics", str(metrics_dir), "--out", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr().out
    assert "real + xsyn-a" in printed and "+10.0" in printed
