"""The evaluator against hand-made detections whose IoUs and ranks fix the expected AP."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.data.contract import DatasetError
from xsyn.detection.evaluate import STAT_NAMES, coco_evaluate

# pycocotools samples precision at 101 recall thresholds 0, 0.01, ..., 1.
N_REC = 101


def make_gt(boxes: list[tuple[int, list[float]]], n_images: int = 1, size: int = 640) -> dict:
    """``boxes``: (image_id, [x, y, w, h]) with category 1 unless given as (img, box, cat)."""
    anns = []
    for i, item in enumerate(boxes):
        image_id, bbox, *cat = item
        anns.append({"id": i + 1, "image_id": image_id, "category_id": cat[0] if cat else 1,
                     "bbox": list(bbox), "area": bbox[2] * bbox[3], "iscrowd": 0})
    return {
        "images": [{"id": i + 1, "file_name": f"{i + 1}.png", "width": size, "height": size}
                   for i in range(n_images)],
        "categories": [{"id": 1, "name": "Gun"}, {"id": 2, "name": "Knife"}],
        "annotations": anns,
    }


def det(image_id: int, bbox: list[float], score: float, cat: int = 1) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": list(bbox), "score": score}


def test_perfect_predictions_score_one():
    gt = make_gt([(1, [10, 10, 100, 100], 1), (1, [200, 200, 50, 80], 2), (2, [5, 5, 300, 200], 1)],
                 n_images=2)
    dets = [det(a["image_id"], a["bbox"], 0.9, a["category_id"]) for a in gt["annotations"]]
    result = coco_evaluate(gt, dets)
    s = result["stats"]
    assert s["AP"] == pytest.approx(1.0)
    assert s["AP50"] == pytest.approx(1.0)
    assert s["AP75"] == pytest.approx(1.0)
    assert s["AR100"] == pytest.approx(1.0)
    assert [c["AP"] for c in result["per_class"]] == pytest.approx([1.0, 1.0])
    assert result["pr_curve"]["mean"] == pytest.approx([1.0] * N_REC)
    assert set(s) == set(STAT_NAMES)


def test_known_iou_counts_thresholds():
    # IoU 0.62: a match at IoU thresholds 0.50, 0.55, 0.60 and a miss at the 7 above.
    gt = make_gt([(1, [0, 0, 100, 100])])
    s = coco_evaluate(gt, [det(1, [0, 0, 100, 62], 0.8)])["stats"]
    assert s["AP50"] == pytest.approx(1.0)
    assert s["AP75"] == pytest.approx(0.0)
    assert s["AP"] == pytest.approx(0.3)


def test_iou_below_half_is_a_miss():
    gt = make_gt([(1, [0, 0, 100, 100])])
    s = coco_evaluate(gt, [det(1, [0, 0, 100, 45], 0.99)])["stats"]
    assert s["AP50"] == pytest.approx(0.0)
    assert s["AP"] == pytest.approx(0.0)


def test_missed_object_lowers_recall_and_ap():
    gt = make_gt([(1, [0, 0, 100, 100]), (1, [300, 300, 100, 100])])
    s = coco_evaluate(gt, [det(1, [0, 0, 100, 100], 0.9)])["stats"]
    assert s["AR100"] == pytest.approx(0.5)
    # precision 1 up to recall 0.5, nothing beyond: 51 of the 101 recall samples.
    assert s["AP"] == pytest.approx(51 / N_REC)


def test_higher_scored_false_positive_halves_precision():
    gt = make_gt([(1, [0, 0, 100, 100])])
    dets = [det(1, [400, 400, 50, 50], 0.9), det(1, [0, 0, 100, 100], 0.8)]
    assert coco_evaluate(gt, dets)["stats"]["AP"] == pytest.approx(0.5)
    # ranked below the true positive, the same false positive costs nothing
    dets = [det(1, [400, 400, 50, 50], 0.7), det(1, [0, 0, 100, 100], 0.8)]
    assert coco_evaluate(gt, dets)["stats"]["AP"] == pytest.approx(1.0)


def test_per_class_ap_and_wrong_class():
    gt = make_gt([(1, [0, 0, 100, 100], 1), (1, [300, 300, 100, 100], 2)])
    dets = [det(1, [0, 0, 100, 100], 0.9, 1), det(1, [300, 300, 100, 100], 0.9, 1)]  # Knife called Gun
    result = coco_evaluate(gt, dets)
    per = {c["name"]: c for c in result["per_class"]}
    assert per["Gun"]["AP"] == pytest.approx(1.0)
    assert per["Knife"]["AP"] == pytest.approx(0.0)
    assert per["Knife"]["n_gt"] == 1
    assert result["stats"]["AP"] == pytest.approx(0.5)


def test_class_without_ground_truth_is_none_and_not_averaged():
    gt = make_gt([(1, [0, 0, 100, 100], 1)])
    result = coco_evaluate(gt, [det(1, [0, 0, 100, 100], 0.9, 1)])
    per = {c["name"]: c for c in result["per_class"]}
    assert per["Knife"]["AP"] is None
    assert result["pr_curve"]["precision"]["Knife"] is None
    assert result["stats"]["AP"] == pytest.approx(1.0)


def test_area_ranges():
    gt = make_gt([(1, [0, 0, 20, 20])])  # 400 px² < 32²: small
    s = coco_evaluate(gt, [det(1, [0, 0, 20, 20], 0.9)])["stats"]
    assert s["APs"] == pytest.approx(1.0)
    assert s["APm"] is None and s["APl"] is None


def test_no_detections_scores_zero():
    gt = make_gt([(1, [0, 0, 100, 100])])
    result = coco_evaluate(gt, [])
    assert result["stats"]["AP"] == pytest.approx(0.0)
    assert result["stats"]["AR100"] == pytest.approx(0.0)


def test_bad_detection_names_the_entry():
    gt = make_gt([(1, [0, 0, 100, 100])])
    with pytest.raises(DatasetError, match=r"detections\[1\].*image_id 7"):
        coco_evaluate(gt, [det(1, [0, 0, 1, 1], 0.5), det(7, [0, 0, 1, 1], 0.5)])
    with pytest.raises(DatasetError, match="category_id"):
        coco_evaluate(gt, [det(1, [0, 0, 1, 1], 0.5, cat=9)])


boxes = st.tuples(
    st.integers(0, 500), st.integers(0, 500), st.integers(8, 130), st.integers(8, 130)
).map(lambda t: [float(v) for v in t])


@settings(max_examples=25, deadline=None)
@given(st.lists(boxes, min_size=1, max_size=6), st.data())
def test_property_perfect_is_one_and_dropping_lowers_recall(gt_boxes, data):
    gt = make_gt([(1, b) for b in gt_boxes])
    scores = data.draw(st.lists(st.floats(0.05, 1.0), min_size=len(gt_boxes), max_size=len(gt_boxes)))
    dets = [det(1, b, s) for b, s in zip(gt_boxes, scores, strict=True)]
    # duplicate ground-truth boxes can only match once each; perfect copies still give 1.0
    assert coco_evaluate(gt, dets)["stats"]["AP50"] == pytest.approx(1.0)
    keep = data.draw(st.integers(0, len(gt_boxes) - 1))
    s = coco_evaluate(gt, dets[:keep])["stats"]
    assert s["AR100"] == pytest.approx(keep / len(gt_boxes))
