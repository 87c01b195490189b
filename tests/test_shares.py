"""A share of the real training data has one spelling everywhere; a 2.5 % share works end to end."""

from __future__ import annotations

import json

from raw_fixtures import write_fixture
from test_aggregate import write_metrics

from xsyn.data.contract import annotation_path, is_subset_name, share_tag, subset_name, train_split
from xsyn.data.prepare import PrepareOptions, prepare_dataset
from xsyn.detection.mix import build_mix, load_real_train
from xsyn.report.aggregate import aggregate


def test_share_spellings():
    assert share_tag(10) == share_tag(10.0) == "10" and share_tag(2.5) == "2.5"
    assert subset_name(5) == "train_p05" and subset_name(5.0) == "train_p05" and subset_name(2.5) == "train_p2.5"
    assert train_split(100) == "train" and train_split(10) == "train_p10" and train_split(2.5) == "train_p2.5"
    assert is_subset_name("train_p2.5") and is_subset_name("pidray_train_p05")
    assert not is_subset_name("train") and not is_subset_name("train_p")


def test_fractional_share_from_prepare_to_table(tmp_path):
    """prepare writes the 2.5 % subset, the detector's mix reads it for ``--share 2.5``, and
    metrics under the workflow's path for that share (``p2.5``) aggregate into a 2.5 row."""
    fx = write_fixture("phantom", tmp_path / "raw")
    root = tmp_path / "data" / "phantom"
    prepare_dataset("phantom", fx.source, root, PrepareOptions(subset_shares=(2.5, 50), progress=False, workers=1))
    assert annotation_path(root, "train_p2.5").is_file()
    subset = load_real_train(root, 2.5)
    assert 1 <= len(subset["images"]) < len(load_real_train(root, 50)["images"])
    mix = build_mix(root, 2.5, [], tmp_path / "synthetic", tmp_path / "mix")
    assert mix.counts["real"] == len(subset["images"])

    metrics = tmp_path / "metrics"
    for source, ap in (("none", 0.2), ("xsyn-a", 0.3)):
        path = write_metrics(metrics, source, 2.5, 0, ap)
        assert path.parent.name == f"p{share_tag(2.5)}"  # the path the workflow's rules use
    aggregate(metrics, tmp_path / "results")
    table = (tmp_path / "results" / "tables" / "main.md").read_text()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines() if "real + xsyn-a" in line]
    assert len(rows) == 1 and rows[0][1] == "2.5" and rows[0][5] == "+10.0"
    cells = json.loads((tmp_path / "results" / "metrics.json").read_text())["cells"]
    assert "phantom/yolov8n/test/xsyn-a/p2.5" in cells
