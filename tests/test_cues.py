"""CAR's cues: what the model changed (log-attenuation difference), attention, both, the request prior."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.synthesis.car import refine_boxes
from xsyn.synthesis.cues import cue_maps, difference_map, log_intensity, request_prior, unit_scale
from xsyn.synthesis.segmenters import make_segmenter


def scan_with_item(item: tuple[int, int, int, int] | None, value: int = 60) -> np.ndarray:
    """A bright (empty) 64-px scan with a grey benign slab, and an optional dark item."""
    img = np.full((64, 64, 3), 235, np.uint8)
    img[10:50, 8:56] = 170
    if item is not None:
        x, y, w, h = item
        img[y:y + h, x:x + w] = value
    return img


def test_difference_marks_added_attenuation_and_ignores_removed():
    source = scan_with_item(None)
    generated = scan_with_item((20, 20, 12, 8))
    d = difference_map(source, generated, blur=0)
    assert d[24, 25] > 0.5 and d[5, 5] == 0.0 and d[40, 40] == 0.0
    # an item that was there and is gone (Xsyn-M's old item) leaves no positive difference
    assert difference_map(generated, source, blur=0).max() == 0.0


def test_log_intensity_adds_up_like_attenuation():
    a, b = np.full((2, 2, 3), 128, np.uint8), np.full((2, 2, 3), 64, np.uint8)
    # halving the transmitted intensity adds the same log attenuation wherever it happens
    assert np.allclose(log_intensity(a) - log_intensity(b), np.log(129 / 65))


@given(x=st.floats(0, 50), y=st.floats(0, 50), w=st.floats(1, 30), h=st.floats(1, 30), s=st.floats(0.05, 1.0))
@settings(max_examples=50, deadline=None)
def test_request_prior_is_one_inside_and_falls_off_outside(x, y, w, h, s):
    p = request_prior([x, y, w, h], (64, 64), softness=s)
    assert p.shape == (64, 64) and p.min() >= 0.0 and p.max() <= 1.0
    cx, cy = int(x + w / 2), int(y + h / 2)
    if cx < 64 and cy < 64:
        assert p[cy, cx] == pytest.approx(1.0)
    far = p[63, 63] if x + w < 40 and y + h < 40 else None
    if far is not None:
        assert far < 0.5


def test_cue_maps_combine_and_check_inputs():
    source, generated = scan_with_item(None), scan_with_item((20, 20, 12, 8))
    att = np.zeros((64, 64), np.float32)
    att[18:32, 18:36] = 1.0  # the attention agrees with the item, a little wider
    box = [16.0, 16.0, 24.0, 16.0]
    (both,) = cue_maps("both", [att], [box], source, generated, blur=0)
    assert both[24, 25] > 0.9 and both[5, 5] == 0.0 and both[19, 34] == 0.0  # needs both witnesses
    (only_att,) = cue_maps("attention", [att], [box])
    assert np.array_equal(only_att, att)
    with pytest.raises(ValueError, match="source scan"):
        cue_maps("difference", [att], [box])
    with pytest.raises(ValueError, match="one attention map per box"):
        cue_maps("both", [], [box], source, generated)
    with pytest.raises(ValueError, match="unknown cue"):
        cue_maps("colour", [att], [box])
    assert unit_scale(np.ones((3, 3))).max() == 0.0


def test_difference_cue_refines_a_loose_request_to_the_painted_item():
    """Xsyn-A's case: the item painted is smaller than the box asked for; the difference to
    the source finds it whatever the attention says."""
    source, generated = scan_with_item(None), scan_with_item((22, 22, 12, 10))
    request = [14.0, 16.0, 30.0, 24.0]
    cfg = {"enabled": True, "segmenter": "grabcut", "split_depth": 4, "min_scale": 0.1, "max_scale": 2.0,
           "min_score": 0.0, "min_overlap": 0.0, "margin": 0.25, "threshold": "otsu", "grabcut_iterations": 5, "merge_ratio": 0.2, "restrict": 0.25}
    flat = np.ones((64, 64), np.float32)
    maps = cue_maps("difference", [flat], [request], source, generated, blur=0.5)
    (res,) = refine_boxes(generated, maps, [request], cfg, segmenter=make_segmenter(cfg))
    assert not res.fallback
    x, y, w, h = res.box
    assert abs(x - 22) <= 2 and abs(y - 22) <= 2 and abs(w - 12) <= 3 and abs(h - 10) <= 3
