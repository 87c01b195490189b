"""CAR: refinement on synthetic blobs with known truth, fallbacks, point and box invariants."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.config import load_config
from xsyn.data.boxes import iou_xywh
from xsyn.synthesis.car import (
    CarResult,
    attention_points,
    box_from_mask,
    gate,
    high_attention,
    refine_boxes,
)
from xsyn.synthesis.segmenters import GrabCutSegmenter, Segmenter, make_segmenter

# the smoke profile's CAR section (every key: CAR restates no default), with these values
CFG = {**load_config()["synthesis"]["car"], "enabled": True, "segmenter": "grabcut", "sam_path": None,
       "split_depth": 4, "min_scale": 0.25, "max_scale": 2.0}


def scene(rng: np.random.Generator, size: int = 96):
    """A bag-coloured background with translucent clutter and one blue (metal) ellipse.

    Returns the image, a blurred + noisy attention map of the item, and its true box.
    """
    img = np.full((size, size, 3), (230, 200, 150), np.float32)
    for _ in range(3):
        x, y = rng.integers(0, size - 25, 2)
        w, h = rng.integers(8, 30, 2)
        img[y : y + h, x : x + w] = 0.6 * img[y : y + h, x : x + w] + 0.4 * rng.integers(100, 220, 3)
    mask = np.zeros((size, size), np.uint8)
    cx, cy = rng.integers(size // 3, 2 * size // 3, 2)
    axes = rng.integers(7, 16, 2)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(axes[0]), int(axes[1])), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    img[mask > 0] = 0.3 * img[mask > 0] + 0.7 * np.array([60, 90, 200])
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    attn = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 3) + rng.normal(0, 0.03, mask.shape)
    return img, attn.astype(np.float32), [float(v) for v in cv2.boundingRect(mask)]


def perturb(box, rng):
    x, y, w, h = box
    s = rng.uniform(0.7, 1.4, 2)
    d = rng.uniform(-0.2, 0.2, 2)
    nw, nh = w * s[0], h * s[1]
    return [x + w / 2 + d[0] * w - nw / 2, y + h / 2 + d[1] * h - nh / 2, nw, nh]


@pytest.mark.parametrize("segmenter", ["grabcut", "attention"])
def test_refined_boxes_beat_requested(segmenter):
    rng = np.random.default_rng(0)
    before, after = [], []
    for _ in range(12):
        img, attn, truth = scene(rng)
        requested = perturb(truth, rng)
        (res,) = refine_boxes(img, [attn], [requested], {**CFG, "segmenter": segmenter})
        assert isinstance(res, CarResult) and 0.0 <= res.score <= 1.0
        before.append(iou_xywh(requested, truth))
        after.append(iou_xywh(res.box, truth))
    assert np.mean(after) > np.mean(before) + 0.15, (np.mean(before), np.mean(after))
    assert np.mean(after) > 0.8


def test_shifted_item_found_outside_requested_box():
    """The item sits partly outside the request: the margin lets CAR follow it."""
    rng = np.random.default_rng(3)
    img, attn, truth = scene(rng)
    x, y, w, h = truth
    requested = [x + 0.3 * w, y + 0.3 * h, w, h]
    (res,) = refine_boxes(img, [attn], [requested], CFG)
    assert not res.fallback
    assert iou_xywh(res.box, truth) > 0.85 > iou_xywh(requested, truth) + 0.3


def test_several_boxes_one_image():
    rng = np.random.default_rng(5)
    img, attn, truth = scene(rng)
    far = [2.0, 2.0, 10.0, 10.0]
    res = refine_boxes(img, [attn, np.zeros_like(attn)], [perturb(truth, rng), far], CFG)
    assert len(res) == 2
    assert iou_xywh(res[0].box, truth) > 0.8
    assert res[1].fallback and res[1].box == far  # a flat map: nothing found


class FixedMask:
    """A segmenter answering a preset mask, to drive the sanity limits."""

    def __init__(self, mask):
        self.mask = mask

    def segment(self, image, box_xyxy, pos_points, neg_points, prior=None):
        return self.mask.copy()


def test_collapse_and_explosion_fall_back_flagged():
    img, attn, truth = scene(np.random.default_rng(1))
    speck = np.zeros(attn.shape, bool)
    x, y = int(truth[0] + truth[2] / 2), int(truth[1] + truth[3] / 2)
    speck[y, x] = True
    (res,) = refine_boxes(img, [attn], [truth], CFG, segmenter=FixedMask(speck))
    assert res.fallback and res.box == truth and res.score <= 0.5
    everything = np.ones(attn.shape, bool)
    cfg = {**CFG, "margin": 1.0, "max_scale": 1.5, "restrict": None}
    (res,) = refine_boxes(img, [attn], [truth], cfg, segmenter=FixedMask(everything))
    assert res.fallback and res.box == truth
    (res,) = refine_boxes(img, [attn], [truth], {**cfg, "max_scale": 100.0},
                          segmenter=FixedMask(everything))
    assert not res.fallback and res.box[2] > truth[2]  # the same mask passes wider limits


def test_disabled_and_bad_input():
    img, attn, truth = scene(np.random.default_rng(2))
    (res,) = refine_boxes(img, [attn], [truth], {**CFG, "enabled": False})
    assert res.fallback and res.box == truth
    assert refine_boxes(img, [], [], CFG) == []
    with pytest.raises(ValueError, match="attention map 0"):
        refine_boxes(img, [attn[:10]], [truth], CFG)
    with pytest.raises(ValueError, match="2 attention maps for 1 boxes"):
        refine_boxes(img, [attn, attn], [truth], CFG)
    with pytest.raises(ValueError, match="sam_path"):
        make_segmenter({"segmenter": "sam", "sam_path": None})


def test_grabcut_recovers_object_on_clean_image():
    img = np.full((80, 80, 3), 220, np.uint8)
    mask = np.zeros((80, 80), np.uint8)
    cv2.circle(mask, (40, 35), 14, 1, -1)
    img[mask > 0] = (30, 60, 200)
    seg = GrabCutSegmenter()
    assert isinstance(seg, Segmenter)
    out = seg.segment(img, [15, 10, 65, 60], np.array([[40, 35]]), np.array([[17, 12]]))
    inter, union = (out & (mask > 0)).sum(), (out | (mask > 0)).sum()
    assert inter / union > 0.9
    assert box_from_mask(out) == [float(v) for v in cv2.boundingRect(mask)]


def test_sam_segmenter_flow_with_tiny_random_model(tmp_path):
    """No SAM weights here: a tiny random SamModel checks shapes and the batched flow."""
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    config = SamConfig(
        vision_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                           patch_size=8, output_channels=16, window_size=4, global_attn_indexes=[1],
                           mlp_dim=32, num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16),
    )
    SamModel(config).save_pretrained(tmp_path)
    SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16},
    )).save_pretrained(tmp_path)
    cfg = {**CFG, "segmenter": "sam", "sam_path": str(tmp_path), "device": "cpu"}
    seg = make_segmenter(cfg)
    assert make_segmenter(cfg) is seg  # loaded once, cached
    img, attn, truth = scene(np.random.default_rng(4), size=80)
    far = [5.0, 50.0, 20.0, 20.0]
    res = refine_boxes(img, [attn, attn], [truth, far], cfg)
    assert len(res) == 2 and all(0 <= r.score <= 1 for r in res)
    masks = seg.segment_batch(img, [[0, 0, 40, 40], [30, 30, 79, 79]],
                              [np.array([[10, 10], [20, 20]]), np.array([[50, 50]])],
                              [np.zeros((0, 2)), np.array([[31, 31]])], [None, None])
    assert [m.shape for m in masks] == [(80, 80), (80, 80)] and all(m.dtype == bool for m in masks)


# -- invariants -------------------------------------------------------------------------

@st.composite
def map_and_box(draw):
    h = draw(st.integers(4, 40))
    w = draw(st.integers(4, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    attn = np.random.default_rng(seed).random((h, w)) ** draw(st.sampled_from([1, 3, 8]))
    x1 = draw(st.floats(0, w - 1))
    y1 = draw(st.floats(0, h - 1))
    bw = draw(st.floats(1, w))
    bh = draw(st.floats(1, h))
    return attn, [x1, y1, min(bw, w - x1), min(bh, h - y1)]


@settings(max_examples=60, deadline=None)
@given(map_and_box(), st.integers(0, 5))
def test_attention_points_invariants(mb, depth):
    attn, box = mb
    pos, neg = attention_points(attn, box, depth)
    x1, y1, w, h = box
    c1, r1 = int(np.floor(x1)), int(np.floor(y1))
    c2, r2 = int(np.ceil(x1 + w)), int(np.ceil(y1 + h))
    crop = attn[r1:r2, c1:c2]
    high = high_attention(crop)
    assert len(pos) <= 2**depth
    assert len(pos) == len({tuple(p) for p in pos})  # leaves are disjoint
    for px, py in pos:
        assert c1 <= px < c2 and r1 <= py < r2
        assert high[py - r1, px - c1]
    if neg is not None:
        nx, ny = neg
        assert c1 <= nx < c2 and r1 <= ny < r2 and not high[ny - r1, nx - c1]
        assert attn[ny, nx] == crop[~high].min()
    if high.any():
        assert len(pos) >= 1 and tuple(np.unravel_index(crop.argmax(), crop.shape)[::-1]) in {
            (p[0] - c1, p[1] - r1) for p in pos
        }  # the peak is always among the positives


@settings(max_examples=80, deadline=None)
@given(st.integers(5, 50), st.integers(5, 50), st.data())
def test_box_from_mask_rectangle_and_bounds(h, w, data):
    x = data.draw(st.integers(0, w - 1))
    y = data.draw(st.integers(0, h - 1))
    bw = data.draw(st.integers(1, w - x))
    bh = data.draw(st.integers(1, h - y))
    mask = np.zeros((h, w), bool)
    mask[y : y + bh, x : x + bw] = True
    assert box_from_mask(mask) == [x, y, bw, bh]
    # add a speck far away: the rectangle (larger or equal) still wins unless it is a speck too
    noise = np.random.default_rng(data.draw(st.integers(0, 999))).random((h, w)) < 0.05
    box = box_from_mask(mask | noise)
    bx, by, bw2, bh2 = box
    assert 0 <= bx and 0 <= by and bx + bw2 <= w and by + bh2 <= h and bw2 >= 1 and bh2 >= 1
    assert box_from_mask(np.zeros((h, w), bool)) is None


def test_box_from_mask_picks_largest_component():
    mask = np.zeros((50, 50), bool)
    mask[5:8, 5:8] = True
    mask[20:40, 10:35] = True
    assert box_from_mask(mask) == [10.0, 20.0, 25.0, 20.0]


def test_benchmark_oracle_mode_runs_and_car_wins(tmp_path, capsys):
    """benchmarks/car_quality.py on a tiny COCO set with RLE masks: the table prints, and
    GrabCut CAR beats the perturbed boxes on mean IoU and AP."""
    import importlib.util
    import json
    from pathlib import Path

    from pycocotools import mask as mask_utils

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(8):
        img, _, _ = scene(rng, 96)
        mask = ((img[..., 2] > 150) & (img[..., 0] < 140)).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode()
        images.append({"id": i, "file_name": f"{i}.png", "width": 96, "height": 96})
        anns.append({"id": i, "image_id": i, "category_id": 1, "segmentation": rle,
                     "bbox": [float(v) for v in cv2.boundingRect(mask)]})
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "Gun"}]}
    (tmp_path / "annotations" / "test.json").write_text(json.dumps(coco))

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "car_quality.py"
    spec = importlib.util.spec_from_file_location("car_quality", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "car.json"
    assert bench.main(["--dataset", str(tmp_path), "--oracle-maps", "--out", str(out),
                       "--gate-scores", "0,1", "--gate-overlaps", "0"]) == 0
    assert "grabcut" in capsys.readouterr().out
    table = {row["method"]: row for row in json.loads(out.read_text())["table"]}
    assert table["grabcut"]["mean_IoU"] > table["requested"]["mean_IoU"] + 0.1
    assert table["grabcut"]["AP"] > table["requested"]["AP"]
    assert table["requested"]["fallback_rate"] == 0.0
    # a gate no refined box passes (confidence ≥ 1) gives the requests back, flagged
    shut = table["grabcut | gate 1/0"]
    assert shut["mean_IoU"] == pytest.approx(table["requested"]["mean_IoU"]) and shut["fallback_rate"] == 1.0


def test_box_from_mask_merges_pieces_of_an_occluded_item():
    mask = np.zeros((50, 50), bool)
    mask[10:20, 5:20] = True  # 150 px
    mask[10:20, 25:35] = True  # 100 px: the same item beyond an occluder
    mask[45:47, 45:47] = True  # 4 px speck
    assert box_from_mask(mask) == [5.0, 10.0, 15.0, 10.0]
    assert box_from_mask(mask, merge_ratio=0.2) == [5.0, 10.0, 30.0, 10.0]


def test_gate_keeps_the_request_where_the_refinement_is_not_trusted():
    requested = [10.0, 10.0, 20.0, 20.0]
    near = CarResult([12.0, 11.0, 18.0, 20.0], 0.6, False, 0.2)  # IoU with the request 0.82
    far = CarResult([40.0, 40.0, 20.0, 20.0], 0.6, False, 0.2)  # left the request behind
    assert gate(near, requested, 0.0, 0.0) is near and gate(far, requested, 0.0, 0.0) is far  # off
    assert gate(near, requested, 0.5, 0.5) is near
    for kept in (gate(near, requested, 0.7, 0.0), gate(far, requested, 0.0, 0.3)):
        assert kept.fallback and kept.box == requested and kept.score == 0.2
    fallen = CarResult(requested, 0.1, True, 0.1)
    assert gate(fallen, requested, 1.0, 1.0) is fallen


def test_refine_boxes_applies_the_configured_gate():
    img, attn, truth = scene(np.random.default_rng(0))
    request = perturb(truth, np.random.default_rng(1))
    (free,) = refine_boxes(img, [attn], [request], CFG)
    assert not free.fallback
    (gated,) = refine_boxes(img, [attn], [request], {**CFG, "min_overlap": 1.0})
    assert gated.fallback and gated.box == request and gated.score == free.request_score
