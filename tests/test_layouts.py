"""Layouts: Xsyn-M keeps every GT box, Xsyn-A candidates respect the window and IoU limit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.data.boxes import area_xywh, iou_xywh
from xsyn.synthesis.candidates import CandidateSource, drop_largest, image_regions
from xsyn.synthesis.layouts import (
    filter_candidates,
    group_classes,
    make_layout,
    size_group,
)

NAMES = {1: "Gun", 2: "Knife", 3: "Lighter", 4: "Bullet", 5: "Hammer", 6: "Powerbank"}
CFG = {"area_window": [0.004, 0.12], "max_iou": 0.2,
       "size_groups": {"small": ["Lighter", "Bullet"], "large": ["Hammer"]},
       "size_thresholds": [0.012, 0.05]}
SIZE = 128

box = st.tuples(st.floats(0, 110), st.floats(0, 110), st.floats(2, 60), st.floats(2, 60)).map(
    lambda b: [b[0], b[1], min(b[2], SIZE - b[0]), min(b[3], SIZE - b[1])])


def test_size_groups():
    assert size_group(0.005, [0.012, 0.05]) == "small"
    assert size_group(0.03, [0.012, 0.05]) == "medium"
    assert size_group(0.2, [0.012, 0.05]) == "large"
    names = list(NAMES.values())
    assert group_classes("small", names, CFG["size_groups"]) == ["Lighter", "Bullet"]
    assert group_classes("medium", names, CFG["size_groups"]) == ["Gun", "Knife", "Powerbank"]
    assert group_classes("large", ["Gun"], CFG["size_groups"]) == ["Gun"]  # empty → all


@settings(max_examples=150, deadline=None)
@given(gt=st.lists(box, max_size=4), regions=st.lists(box, max_size=10), seed=st.integers(0, 10**6))
def test_xsyn_a_candidates_never_overlap_gt(gt, regions, seed):
    anns = [{"bbox": b, "category_id": 1 + i % 6} for i, b in enumerate(gt)]
    lay = make_layout("xsyn-a", anns, NAMES, regions, (SIZE, SIZE), CFG, seed)
    ok = filter_candidates(regions, gt, SIZE * SIZE, CFG["area_window"], CFG["max_iou"])
    if lay is None:
        assert ok == []
        return
    assert len(lay.boxes) == 1 and lay.kept == anns
    new = lay.boxes[0]
    assert all(iou_xywh(new, g) < CFG["max_iou"] for g in gt)
    share = area_xywh(new) / SIZE**2
    assert CFG["area_window"][0] <= share <= CFG["area_window"][1]
    group = size_group(share, CFG["size_thresholds"])
    assert lay.classes[0] in group_classes(group, list(NAMES.values()), CFG["size_groups"])
    assert NAMES[lay.category_ids[0]] == lay.classes[0]
    assert lay.prompt == lay.classes[0] and lay.phrases == [f"one {lay.classes[0]}"]
    assert lay == make_layout("xsyn-a", anns, NAMES, regions, (SIZE, SIZE), CFG, seed)


def test_xsyn_m_and_free():
    anns = [{"bbox": [10, 10, 20, 20], "category_id": 6}, {"bbox": [60, 60, 30, 10], "category_id": 1},
            {"bbox": [5, 90, 10, 10], "category_id": 6}]
    lay = make_layout("xsyn-m", anns, NAMES, [[80, 5, 20, 20]], (SIZE, SIZE), CFG, 0)
    assert lay.boxes == [[10, 10, 20, 20], [60, 60, 30, 10], [5, 90, 10, 10]]
    assert lay.classes == ["Powerbank", "Gun", "Powerbank"] and lay.prompt == "Powerbank, Gun"
    assert lay.bom_region == [80, 5, 20, 20] and lay.kept == []
    free = make_layout("free", anns, NAMES, [], (SIZE, SIZE), CFG, 0)
    assert free.boxes == [] and not free.inpaint and free.classes == ["Powerbank", "Gun"]
    assert make_layout("xsyn-m", [], NAMES, [], (SIZE, SIZE), CFG, 0) is None


def test_candidate_sources():
    coco = {"regions": [{"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4]}]}
    src = CandidateSource(coco, {"segmenter": "grabcut", "sam_path": None}, "cpu")
    assert src.kind == "regions" and src(7, None) == [[1, 2, 3, 4]] and src(8, None) == []
    # Image-only fallback: a bright scan with a bag and two dark blobs inside.
    img = np.full((128, 128, 3), 255, np.uint8)
    img[8:120, 8:120] = 200      # bag
    img[20:40, 20:50] = 60       # blob 1
    img[70:100, 60:80] = 90      # blob 2
    fallback = CandidateSource({"images": []}, {"segmenter": "grabcut", "sam_path": None}, "cpu")
    assert fallback.kind == "image"
    boxes = fallback(1, img)
    assert boxes == image_regions(img)
    assert [20.0, 20.0, 30.0, 20.0] in boxes and [60.0, 70.0, 20.0, 30.0] in boxes
    assert all(b[2] * b[3] < 112 * 112 for b in boxes)
    assert drop_largest([[0, 0, 1, 1], [0, 0, 9, 9], [0, 0, 5, 5]], 1) == [[0, 0, 1, 1], [0, 0, 5, 5]]
