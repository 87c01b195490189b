"""The study's statistics: resampled AP equals pycocotools on the resampled dataset; paired CIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.data.contract import save_coco
from xsyn.detection.evaluate import coco_evaluate, predictions_path
from xsyn.report.aggregate import MetricsError
from xsyn.report.bootstrap import evaluate_images
from xsyn.report.study import write_study

CATS = [{"id": 1, "name": "Gun"}, {"id": 2, "name": "Knife"}, {"id": 5, "name": "Lighter"}]
BOOT = {"references": ["none", "tip"], "resamples": 200, "confidence": 0.95, "seed": 0}


def random_case(rng: np.random.Generator, n_images: int) -> tuple[dict, list[dict]]:
    """Ground truth and noisy detections: misses, false positives, tied scores, empty images."""
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 100, "height": 100})
        for _ in range(rng.integers(0, 4)):
            x, y, w, h = (float(v) for v in rng.integers(0, 50, 2).tolist() + rng.integers(5, 40, 2).tolist())
            cat = int(rng.choice([1, 2, 5]))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "bbox": [x, y, w, h]})
            if rng.random() < 0.8:  # found, more or less well
                jitter = rng.normal(0, 4, 4)
                dets.append({"image_id": i, "category_id": cat if rng.random() < 0.9 else 2,
                             "bbox": [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])],
                             "score": float(np.round(rng.random(), 1))})  # coarse scores: many ties
        for _ in range(rng.integers(0, 3)):  # false positives
            dets.append({"image_id": i, "category_id": int(rng.choice([1, 2, 5])),
                         "bbox": [float(v) for v in rng.integers(0, 60, 2).tolist() + [20.0, 20.0]],
                         "score": float(np.round(rng.random(), 1))})
    return {"images": images, "annotations": anns, "categories": CATS}, dets


def duplicated(coco: dict, dets: list[dict], picks: np.ndarray) -> tuple[dict, list[dict]]:
    """The resampled dataset itself: drawn images as distinct ids, in draw order."""
    ids = [img["id"] for img in coco["images"]]
    images, anns, out = [], [], []
    for new, i in enumerate(picks, start=1):
        old = ids[i]
        images.append({**coco["images"][i], "id": new, "file_name": f"{new}.png"})
        for a in coco["annotations"]:
            if a["image_id"] == old:
                anns.append({**a, "id": len(anns) + 1, "image_id": new})
        out += [{**d, "image_id": new} for d in dets if d["image_id"] == old]
    return {**coco, "images": images, "annotations": anns}, out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_images=st.integers(1, 12))
def test_resampled_ap_is_pycocotools_on_the_resampled_dataset(seed, n_images):
    rng = np.random.default_rng(seed)
    coco, dets = random_case(rng, n_images)
    matches = evaluate_images(coco, dets)
    full = coco_evaluate(coco, dets)["stats"]["AP"]
    assert matches.ap() == pytest.approx(np.nan if full is None else full, abs=1e-12, nan_ok=True)
    picks = rng.integers(0, n_images, n_images)
    expected = coco_evaluate(*duplicated(coco, dets, picks))["stats"]["AP"]
    assert matches.ap(picks) == pytest.approx(np.nan if expected is None else expected, abs=1e-12, nan_ok=True)


def write_run(root: Path, coco: dict, source: str, seed: int, dets: list[dict], share: float = 10) -> None:
    out = root / "phantom" / "yolov8n" / source / f"p{share:g}" / f"s{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions_path(out, "test").write_text(json.dumps(dets))
    result = coco_evaluate(coco, dets)
    out.write_text(json.dumps({"run": {"dataset": "phantom", "model": "yolov8n", "source": source,
                                       "share": share, "seed": seed}, "splits": {"test": result}}))


@pytest.fixture
def study(tmp_path) -> tuple[Path, Path, dict]:
    rng = np.random.default_rng(0)
    coco, _ = random_case(rng, 30)
    dataset = tmp_path / "phantom"
    save_coco(dataset / "annotations" / "test.json", coco)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in coco["annotations"]]
    metrics = tmp_path / "metrics"
    for seed in (0, 1, 2):
        write_run(metrics, coco, "none", seed, [])  # finds nothing: AP 0
        write_run(metrics, coco, "xsyn-a", seed, perfect)  # finds everything: AP 100
        _, noisy = random_case(np.random.default_rng(0), 30)  # the same noisy boxes every seed
        write_run(metrics, coco, "tip", seed, noisy)
    return dataset, metrics, coco


def test_study_table_pairs_arms(study, tmp_path):
    dataset, metrics, _ = study
    df = write_study(metrics, dataset, tmp_path / "out", BOOT).set_index(["source", "share"])
    perfect = df.loc[("xsyn-a", 10.0)]
    assert perfect["AP_mean"] == pytest.approx(100) and perfect["d_none"] == pytest.approx(100)
    assert (perfect["d_none_lo"], perfect["d_none_hi"], perfect["d_none_hw"]) == pytest.approx((100, 100, 0))
    tip = df.loc[("tip", 10.0)]
    assert tip["AP_lo"] < tip["AP_mean"] < tip["AP_hi"]  # seeds agree: the spread is the images'
    assert tip["AP_std"] == pytest.approx(0)
    assert np.isnan(df.loc[("none", 10.0), "d_none"]) and np.isnan(tip["d_tip"])
    text = (tmp_path / "out" / "tables" / "study.md").read_text()
    assert "(30 images)" in text and "± 0.0" in text and "half-width" in text
    cells = json.loads((tmp_path / "out" / "study.json").read_text())["cells"]
    assert cells["phantom/yolov8n/test/xsyn-a/p10"]["d_none"] == pytest.approx(100)
    assert (tmp_path / "out" / "plots" / "study_ap_vs_share.png").stat().st_size > 0


def test_compare_reads_the_files_it_is_given(study, tmp_path):
    dataset, metrics, _ = study
    files = sorted(p for p in metrics.rglob("s*.json") if ".predictions." not in p.name and "/tip/" not in str(p))
    df = write_study(files, dataset, tmp_path / "out", BOOT)
    assert set(df["source"]) == {"none", "xsyn-a"}
    with pytest.raises(MetricsError, match="not found"):
        write_study([metrics / "nope.json"], dataset, tmp_path / "out2", BOOT)


def test_unpaired_seeds_and_stale_predictions_are_errors(study, tmp_path):
    dataset, metrics, coco = study
    write_run(metrics, coco, "xsyn-m", 0, [])  # one seed where the others have three
    with pytest.raises(MetricsError, match="same seeds"):
        write_study(metrics, dataset, tmp_path / "a", BOOT)
    for f in (metrics / "phantom" / "yolov8n" / "xsyn-m").rglob("*.json"):
        f.unlink()
    predictions_path(metrics / "phantom/yolov8n/none/p10/s0.json", "test").write_text(
        json.dumps([{**a, "score": 0.5} for a in coco["annotations"]][:5]))
    with pytest.raises(MetricsError, match="disagree"):
        write_study(metrics, dataset, tmp_path / "b", BOOT)


def test_bias_corrected_interval():
    from xsyn.report.study import bc_interval

    rng = np.random.default_rng(0)
    centred = rng.normal(10, 1, 20_000)
    lo, hi = bc_interval(centred, 10.0, 0.95)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(centred, [2.5, 97.5])), abs=0.05)
    shifted = centred + 1.5  # resampled values biased upward, as resampled AP is
    lo, hi = bc_interval(shifted, 10.0, 0.95)
    assert lo < 10.0 < hi and hi - 10.0 < np.percentile(shifted, 97.5) - 10.0
    assert bc_interval(np.full(100, 3.0), 3.0, 0.95) == (3.0, 3.0)
