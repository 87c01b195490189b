"""Phantom simulator: physics, families, labels, determinism and the CLI contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from xsyn.cli import main
from xsyn.config import load_config
from xsyn.data.contract import load_coco
from xsyn.data.phantom import (
    CLASSES,
    SceneParams,
    clutter,
    generate,
    items,
    params_from_config,
    physics,
    render_scene,
)
from xsyn.data.phantom.canvas import Canvas, place
from xsyn.data.phantom.labels import object_label, scene_labels
from xsyn.data.phantom.scene import Scene, SceneObject, _accumulate
from xsyn.data.phantom.writer import scene_rng

M = physics.MATERIALS


def _hue(rgb: np.ndarray) -> float:
    hsv = cv2.cvtColor(rgb.reshape(1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    return float(hsv[0, 0, 0])


# -- physics --------------------------------------------------------------------------
@given(t=st.floats(0.0, 40.0), mat=st.sampled_from(sorted(M)))
def test_single_object_transmission_is_beer_lambert(t, mat):
    m = M[mat]
    tl, th = physics.transmission(m.mu_low, m.mu_high, np.full((2, 2), t, np.float32))
    np.testing.assert_allclose(tl, np.exp(-m.mu_low * t), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(th, np.exp(-m.mu_high * t), rtol=1e-5, atol=1e-12)


def test_placed_plate_transmission_matches_exp_mu_t():
    """Through the whole drawing path: canvas → place → accumulate → noise-free detector."""
    cv = Canvas(50, 50, ppm=1.0)
    cv.poly("steel", [(-20, -20), (20, -20), (20, 20), (-20, 20)], 3.0)
    p = place(cv, 32, 32, 0.0, scene_hw=(64, 64))
    a_lo, a_hi = np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32)
    _accumulate(SceneObject(p, category=1), a_lo, a_hi)
    tl, th = physics.detect(a_lo, a_hi, photons=1e4, rng=None)
    assert th[32, 32] == pytest.approx(np.exp(-M["steel"].mu_high * 3.0), rel=1e-4)
    assert tl[32, 32] == pytest.approx(np.exp(-M["steel"].mu_low * 3.0), rel=1e-4)
    assert th[2, 2] == 1.0 and tl[2, 2] == 1.0


def test_overlapping_objects_multiply():
    t = np.stack([np.full((3, 3), 4.0, np.float32), np.full((3, 3), 30.0, np.float32)])
    mats = [M["steel"], M["water"]]
    tl, th = physics.transmission([m.mu_low for m in mats], [m.mu_high for m in mats], t)
    tl0, th0 = physics.transmission(mats[0].mu_low, mats[0].mu_high, t[0])
    tl1, th1 = physics.transmission(mats[1].mu_low, mats[1].mu_high, t[1])
    np.testing.assert_allclose(tl, tl0 * tl1, rtol=1e-5)
    np.testing.assert_allclose(th, th0 * th1, rtol=1e-5)


@pytest.mark.parametrize(("mat", "band"), [
    ("plastic", (15, 50)), ("water", (15, 50)), ("paper", (15, 50)), ("fabric", (15, 50)),
    ("aluminium", (70, 160)), ("glass", (70, 160)),
    ("steel", (195, 240)), ("copper", (195, 240)), ("lead", (195, 240)),
])
@pytest.mark.parametrize("att_high", [0.3, 1.0, 2.0])
def test_material_lands_in_its_hue_band(mat, band, att_high):
    m = M[mat]
    t = att_high / m.mu_high
    tl, th = physics.transmission(m.mu_low, m.mu_high, np.full((1, 1), t, np.float32))
    hue = _hue(physics.pseudo_colour(tl, th)[0, 0])
    assert band[0] <= hue <= band[1], (mat, hue)


def test_empty_is_white_and_dense_is_dark():
    ones = np.ones((1, 1), np.float32)
    assert physics.pseudo_colour(ones, ones)[0, 0].tolist() == [255, 255, 255]
    m = M["steel"]
    tl, th = physics.transmission(m.mu_low, m.mu_high, np.full((1, 1), 25.0, np.float32))
    assert physics.pseudo_colour(tl, th)[0, 0].max() < 60


def test_transmission_from_rgb_inverts_pseudo_colour():
    rng = np.random.default_rng(0)
    names = ["plastic", "aluminium", "steel", "water"]
    mu_l = np.array([M[n].mu_low for n in names])
    mu_h = np.array([M[n].mu_high for n in names])
    thick = rng.uniform(0, 1, (4, 32, 32)).astype(np.float32) * np.array([30, 10, 3, 40])[:, None, None]
    tl, th = physics.transmission(mu_l, mu_h, thick)
    tl2, th2 = physics.transmission_from_rgb(physics.pseudo_colour(tl, th))
    ok = th > 0.05  # not near-black
    np.testing.assert_allclose(np.log(th2[ok]), np.log(th[ok]), atol=0.08)
    a_lo, a_lo2 = -np.log(tl[ok]), -np.log(tl2[ok])
    err = np.abs(a_lo2 - a_lo) / (0.05 + a_lo)
    assert np.median(err) < 0.05 and err.max() < 0.25, (np.median(err), err.max())


def test_transmission_encoding_roundtrip():
    rng = np.random.default_rng(1)
    tl, th = rng.uniform(0, 1, (2, 8, 5)).astype(np.float32)
    enc = physics.encode_transmissions(tl, th)
    assert enc.dtype == np.uint16 and enc.shape == (16, 5)
    dl, dh = physics.decode_transmissions(enc)
    np.testing.assert_allclose(dl, tl, atol=1 / 65535)
    np.testing.assert_allclose(dh, th, atol=1 / 65535)


def test_poisson_noise_scales_with_photons():
    a = np.full((64, 64), 1.0, np.float32)
    rng = np.random.default_rng(0)
    _, t_lo_dose = physics.detect(a, a, photons=100, rng=rng)
    _, t_hi_dose = physics.detect(a, a, photons=100000, rng=rng)
    assert t_lo_dose.std() > 5 * t_hi_dose.std()
    assert t_hi_dose.mean() == pytest.approx(np.exp(-1.0), rel=0.01)


# -- families -------------------------------------------------------------------------
FAMILIES = list(items.FAMILIES.items()) + list(clutter.FAMILIES.items())


def test_twelve_pidray_classes_in_order():
    assert CLASSES == ("Baton", "Pliers", "Hammer", "Powerbank", "Scissors", "Wrench",
                       "Gun", "Bullet", "Sprayer", "HandCuffs", "Knife", "Lighter")
    assert list(items.FAMILIES) == list(CLASSES)


@settings(max_examples=60, deadline=None)
@given(fam=st.sampled_from(FAMILIES), seed=st.integers(0, 2**32 - 1), ppm=st.floats(0.08, 1.6))
def test_every_family_draws_a_physical_object(fam, seed, ppm):
    name, f = fam
    cv = f(np.random.default_rng(seed), ppm)
    assert cv.layers, name
    for mat, lay in cv.layers.items():
        assert mat in M
        assert np.isfinite(lay).all() and (lay >= 0).all(), (name, mat)
    assert cv.footprint().any(), name


def test_items_are_not_boxes():
    """Silhouettes fill their bounding box far from fully (shapes, not rectangles), and
    the multi-material families really carry several materials."""
    fill = {}
    for name, f in items.FAMILIES.items():
        fills = []
        for s in range(6):
            cv = f(np.random.default_rng(s), 1.0)
            fp = cv.footprint()
            rows, cols = np.flatnonzero(fp.any(1)), np.flatnonzero(fp.any(0))
            fills.append(fp.sum() / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)))
        fill[name] = float(np.mean(fills))
    assert np.mean(list(fill.values())) < 0.75, fill
    for name in ("Knife", "Hammer", "Lighter", "Sprayer", "Gun"):
        mats = set().union(*(items.FAMILIES[name](np.random.default_rng(s), 1.0).layers for s in range(8)))
        assert len(mats) >= 2, (name, mats)


def test_tilt_foreshortens_and_thickens():
    cv = Canvas(100, 20, ppm=1.0)
    cv.poly("steel", [(-45, -5), (45, -5), (45, 5), (-45, 5)], 2.0)
    flat = place(cv, 100, 100, 0.0, scene_hw=(200, 200))
    tilted = place(cv, 100, 100, 0.0, tilt_deg=60.0, tilt_axis_deg=0.0, scene_hw=(200, 200))
    w_flat = (flat.layers["steel"] > 0).any(0).sum()
    w_tilt = (tilted.layers["steel"] > 0).any(0).sum()
    assert w_tilt == pytest.approx(w_flat * 0.5, abs=3)
    assert tilted.layers["steel"].max() == pytest.approx(4.0, rel=1e-3)


# -- labels ---------------------------------------------------------------------------
def _scene_of(objs: list[SceneObject], size: int = 64) -> Scene:
    a_lo, a_hi = np.zeros((size, size), np.float32), np.zeros((size, size), np.float32)
    for o in objs:
        _accumulate(o, a_lo, a_hi)
    tl, th = physics.detect(a_lo, a_hi, 1e4, None)
    return Scene(tl, th, physics.pseudo_colour(tl, th), a_lo, a_hi, objs)


def test_box_is_tight_around_the_visible_part():
    item = Canvas(40, 10, 1.0, margin_px=0)
    item.poly("plastic", [(-20, -5), (20, -5), (20, 5), (-20, 5)], 10.0)
    occluder = Canvas(20, 30, 1.0, margin_px=0)
    occluder.poly("steel", [(-10, -15), (10, -15), (10, 15), (-10, 15)], 5.0)
    it = SceneObject(place(item, 32, 32, 0, scene_hw=(64, 64)), category=1)
    oc = SceneObject(place(occluder, 42, 32, 0, scene_hw=(64, 64)), kind="laptop")
    scene = _scene_of([it, oc])
    lab = object_label(it, scene, 1e4, visible_share=0.3)
    x, y, w, h = lab["bbox"]
    assert (x, y, h) == (12.0, 27.0, 10.0) and w == pytest.approx(20, abs=1)
    assert lab["visibility"] == pytest.approx(0.5, abs=0.05)
    assert 0.3 < lab["occlusion"] < 0.6
    alone = object_label(it, _scene_of([it]), 1e4, visible_share=0.3)
    assert alone["visibility"] == 1.0 and alone["occlusion"] == 0.0 and alone["bbox"][2] == 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ph") / "phantom"
    params = SceneParams(image_size=96, items_per_bag=(1, 4), clutter=(3, 8), min_visibility=0.3)
    coco = generate(out, params, num_images=12, seed=3, workers=1, progress=False)
    return out, coco


def test_dataset_follows_the_contract(dataset):
    out, coco = dataset
    loaded = load_coco(out / "annotations.json", out / "images")
    assert [c["name"] for c in loaded["categories"]] == list(CLASSES)
    assert [c["id"] for c in loaded["categories"]] == list(range(1, 13))
    assert loaded["annotations"] and loaded["regions"]
    for im in loaded["images"]:
        rgb = cv2.imread(str(out / "images" / im["file_name"]), cv2.IMREAD_UNCHANGED)
        tr = cv2.imread(str(out / im["transmission_file"]), cv2.IMREAD_UNCHANGED)
        assert rgb.shape == (96, 96, 3) and rgb.dtype == np.uint8
        assert tr.shape == (192, 96) and tr.dtype == np.uint16
        # the stored transmissions re-colour to the stored image (up to 16-bit rounding)
        tl, th = physics.decode_transmissions(tr)
        diff = np.abs(physics.pseudo_colour(tl, th).astype(int) - rgb[..., ::-1])
        assert (diff <= 1).mean() > 0.99 and diff.max() <= 8
    for a in loaded["annotations"]:
        m = mask_utils.decode(a["segmentation"])
        assert m.sum() == a["area"] > 0
        assert list(mask_utils.toBbox(a["segmentation"])) == a["bbox"]
        assert 0 <= a["occlusion"] <= 1 and a["visibility"] >= 0.3
        assert a["iscrowd"] == 0 and a["phrase"] == f"one {CLASSES[a['category_id'] - 1]}"
    kinds = {r["kind"] for r in loaded["regions"]}
    assert "bag" in kinds and kinds - {"bag"} <= set(clutter.FAMILIES)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path):
    params = SceneParams(image_size=64)
    generate(tmp_path / "a", params, 10, seed=7, workers=1, progress=False)
    generate(tmp_path / "b", params, 10, seed=7, workers=2, progress=False)
    generate(tmp_path / "c", params, 10, seed=8, workers=1, progress=False)
    ha, hb, hc = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(ha) == 21 and ha == hb
    assert ha["annotations.json"] != hc["annotations.json"]


@pytest.mark.parametrize("size", [64, 1024])
def test_extreme_sizes(size):
    scene = render_scene(scene_rng(0, 1), SceneParams(image_size=size, items_per_bag=(2, 2)))
    assert scene.rgb.shape == (size, size, 3)
    assert sum(o.category is not None for o in scene.objects) == 2
    # a scan is mostly bag: white only at the margins
    assert (scene.rgb.min(-1) < 240).mean() > 0.4


def test_cli_writes_and_overrides(tmp_path):
    out = tmp_path / "cli"
    rc = main(["phantom", "--out", str(out), "--num-images", "3", "--image-size", "64",
               "--seed", "5", "--workers", "1", "--no-progress", "--set", "phantom.items_per_bag=[2,2]"])
    assert rc == 0
    coco = json.loads((out / "annotations.json").read_text())
    assert len(coco["images"]) == 3 and coco["images"][0]["width"] == 64
    assert all(im["hidden_items"] + sum(a["image_id"] == im["id"] for a in coco["annotations"]) == 2
               for im in coco["images"])
    assert main(["phantom", "--out", str(out), "--num-images", "0", "--no-progress"]) == 1


def test_config_section_maps_to_scene_params():
    cfg = load_config(overrides=["phantom.class_balance=pidray", "phantom.item_scale=[0.9,1.1]"])
    p = params_from_config(cfg["phantom"], image_size=80)
    assert p.image_size == 80 and p.item_scale == (0.9, 1.1) and p.class_balance == "pidray"
    w = p.class_weights()
    assert w.shape == (12,) and w.sum() == pytest.approx(1.0) and w.std() > 0
    with pytest.raises(ValueError, match="class_balance"):
        SceneParams(class_balance="zipf").class_weights()


def test_clutter_density_controls_overlap():
    """More clutter → more benign regions and more occluded items (what BOM imitates)."""
    def stats(clutter_range):
        params = SceneParams(image_size=96, clutter=clutter_range, items_per_bag=(2, 2), min_visibility=0.0)
        occ, regions = [], 0
        for i in range(30):
            scene = render_scene(scene_rng(11, i), params)
            anns, regs, _ = scene_labels(scene, params.photons, params.visible_share, 0.0)
            occ += [a["occlusion"] for a in anns]
            regions += len(regs)
        return float(np.mean(occ)), regions

    occ_lo, reg_lo = stats((0, 0))
    occ_hi, reg_hi = stats((10, 12))
    assert reg_hi > reg_lo + 200 and occ_hi > occ_lo + 0.1
