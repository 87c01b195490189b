"""TIP baseline: compositing physics, item extraction, and the shard it writes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_utils

from xsyn.baselines import tip
from xsyn.baselines.compositing import (
    DualEnergyCodec,
    RgbCodec,
    composite,
    from_transmission,
    paste,
    remove_background,
    to_transmission,
)
from xsyn.baselines.foreground import ExtractionError, Foreground, extract_item
from xsyn.config import load_config
from xsyn.data.boxes import iou_xywh
from xsyn.data.contract import load_coco, save_coco
from xsyn.data.shards import SHARD_ANNOTATIONS

SIZE = 64
SMOKE_TIP = tip.TipParams.from_config(load_config())  # the tip section as the smoke profile sets it
BAG_T = np.array([0.85, 0.9, 0.8])
CLASS_T = {1: np.array([0.35, 0.55, 0.85]), 2: np.array([0.8, 0.45, 0.25])}  # blue metal, orange organic


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def make_dataset(root: Path, n_images: int = 6, with_masks: bool = True, seed: int = 0,
                 raw: bool = False) -> Path:
    """A phantom-like dataset: a grey bag on air, 1–2 coloured items each, RLE masks.

    With ``raw``, channels 0 and 1 are also written as the phantom's raw dual-energy file
    (one 16-bit PNG, low energy stacked over high, ``round(T * 65535)``).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, annotations, regions = [], [], []
    for i in range(1, n_images + 1):
        T = np.ones((SIZE, SIZE, 3))
        bag = (yy >= 8) & (yy < 56) & (xx >= 6) & (xx < 58)
        T[bag] *= BAG_T
        regions.append({"id": i, "image_id": i, "bbox": [6, 8, 52, 48], "area": 52 * 48, "kind": "bag"})
        placed: list[list[float]] = []
        for _ in range(int(rng.integers(1, 3))):
            cat = int(rng.integers(1, 3))
            for _ in range(50):
                w, h = (int(v) for v in rng.integers(8, 16, size=2))
                x, y = int(rng.integers(8, 56 - w)), int(rng.integers(10, 54 - h))
                if all(iou_xywh([x, y, w, h], b) == 0 for b in placed):
                    break
            if cat == 1:
                mask = (xx >= x) & (xx < x + w) & (yy >= y) & (yy < y + h)
            else:
                cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
                mask = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1
            T[mask] *= CLASS_T[cat]
            ys, xs = np.nonzero(mask)
            box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            placed.append(box)
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": cat, "bbox": box,
                   "area": int(mask.sum()), "iscrowd": 0}
            if with_masks:
                ann["segmentation"] = _rle(mask)
            annotations.append(ann)
        name = f"{i:04d}.png"
        Image.fromarray(np.rint(T * 255).astype(np.uint8)).save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": SIZE, "height": SIZE})
        if raw:
            (root / "transmissions").mkdir(exist_ok=True)
            stacked = np.concatenate([T[..., 0], T[..., 1]], axis=0)
            cv2.imwrite(str(root / "transmissions" / name), np.rint(stacked * 65535).astype(np.uint16))
            images[-1]["transmission_file"] = f"transmissions/{name}"
    coco = {"images": images, "annotations": annotations, "regions": regions,
            "categories": [{"id": 1, "name": "Knife"}, {"id": 2, "name": "Gun"}]}
    save_coco(root / "annotations" / "train.json", coco)
    return root


def tip_config(**tip_overrides) -> dict:
    return load_config(json_overrides=[json.dumps({"tip": tip_overrides})])


unit = st.floats(0.0, 1.0, allow_nan=False, width=32)


# --- physics ---------------------------------------------------------------------------


@given(arrays(np.uint8, (5, 7, 3)), st.integers(0, 4), st.integers(0, 4))
def test_compositing_onto_pure_white_returns_the_item(item_pixels, x, y):
    item = to_transmission(item_pixels, 255.0)
    bag = np.ones((12, 12, 3), np.float32)
    out = from_transmission(paste(bag, item, x, y), 255.0)
    # every item pixel comes back exactly (pixel 0 reads as the floor transmission, 0 again)
    np.testing.assert_array_equal(out[y : y + 5, x : x + 7], item_pixels)
    rest = np.ones((12, 12), bool)
    rest[y : y + 5, x : x + 7] = False
    assert (out[rest] == 255).all()


@given(arrays(np.float32, (4, 6, 2), elements=unit), arrays(np.float32, (4, 6, 2), elements=unit),
       arrays(np.float32, (4, 6, 2), elements=unit))
def test_compositing_two_items_equals_compositing_their_product(bag, a, b):
    np.testing.assert_allclose(composite(composite(bag, a), b), composite(bag, a * b), rtol=1e-5, atol=1e-7)
    big = np.pad(bag, ((3, 3), (3, 3), (0, 0)), constant_values=1.0)
    np.testing.assert_allclose(paste(paste(big, a, 2, 1), b, 2, 1), paste(big, a * b, 2, 1), atol=1e-6)


@given(arrays(np.float32, (4, 6, 3), elements=st.floats(-2, 3, width=32)),
       arrays(np.float32, (4, 6, 3), elements=unit),
       st.floats(1.0, 255.0))
def test_compositing_output_stays_in_range_and_never_brightens(bag, item, white):
    out = composite(bag, item)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert (out <= np.clip(bag, 0, 1) + 1e-6).all()
    pixels = from_transmission(out, white)
    assert pixels.dtype == np.uint8 and int(pixels.max()) <= int(np.ceil(white))
    t = to_transmission(pixels, white)
    assert t.min() > 0.0 and t.max() <= 1.0


@given(arrays(np.float32, (3, 3, 2), elements=st.floats(0.0625, 1.0, width=32)),
       arrays(np.float32, (3, 3, 2), elements=st.floats(0.0625, 1.0, width=32)))
def test_removing_the_background_inverts_compositing(background, item):
    np.testing.assert_allclose(remove_background(composite(background, item), background), item, rtol=1e-5)


def test_to_transmission_rejects_a_non_positive_white():
    with pytest.raises(ValueError, match="white level"):
        to_transmission(np.zeros((2, 2, 3)), np.array([255.0, 0.0, 255.0]))


# --- geometry --------------------------------------------------------------------------


def _square_item(size: int = 10) -> Foreground:
    t = np.full((size, size + 4, 3), 0.5, np.float32)
    return Foreground(t, np.ones((size, size + 4), bool), 1, 1, 1, "segmentation")


def test_identity_transform_keeps_the_item():
    fg = _square_item()
    t, m = tip.transform_item(fg, 1.0, 0.0, False)
    assert m.shape == fg.mask.shape and m.all()
    np.testing.assert_allclose(t, fg.transmission, atol=1e-5)


@settings(deadline=None)
@given(st.floats(0.5, 2.0), st.floats(-180, 180), st.booleans())
def test_transform_scales_area_and_keeps_attenuation(scale, angle, flip):
    fg = _square_item(12)
    t, m = tip.transform_item(fg, scale, angle, flip)
    area = fg.mask.sum() * scale**2
    assert abs(m.sum() - area) <= 0.15 * area + 4 * (12 + 16) * scale
    inner = np.asarray(m)
    # inside the item the thickness (and so the transmission) is unchanged by the motion
    assert np.median(t[inner][:, 0]) == pytest.approx(0.5, abs=0.02)
    assert t.min() >= 0 and t.max() <= 1


def test_rotation_by_90_degrees_swaps_the_sides():
    fg = _square_item(10)
    _, m = tip.transform_item(fg, 1.0, 90.0, False)
    ys, xs = np.nonzero(m)
    assert (np.ptp(xs) + 1, np.ptp(ys) + 1) == (10, 14)


@settings(deadline=None, max_examples=40)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_placement_obeys_visibility_and_overlap_rules(seed, min_visibility, max_iou):
    rng = np.random.default_rng(seed)
    canvas = np.ones((40, 40, 3), np.float32)
    taken = [[5.0, 5.0, 12.0, 12.0], [25.0, 20.0, 10.0, 14.0]]
    params = replace(SMOKE_TIP, min_visibility=min_visibility, max_iou=max_iou)
    item = np.full((9, 13, 3), 0.4, np.float32)
    mask = np.ones((9, 13), bool)
    result = tip.place_item(canvas, item, mask, np.ones((40, 40), bool), taken, params, rng)
    if result is None:
        return
    out, box, visibility, full = result
    assert visibility >= min_visibility
    assert all(iou_xywh(box, t) <= max_iou for t in taken)
    x, y, w, h = box
    assert 0 <= x and 0 <= y and x + w <= 40 and y + h <= 40
    assert full.sum() == pytest.approx(visibility * mask.sum())
    # the label is exactly the darkened area's box
    ys, xs = np.nonzero(out[..., 0] < 1)
    assert [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == box


def test_bag_is_the_filled_frame_and_items_land_inside_it():
    ring = np.zeros((40, 40), bool)
    ring[5:35, 8:30] = True
    ring[7:33, 10:28] = False  # the phantom's bag footprint can be just its frame
    region = {"kind": "bag", "bbox": [8, 5, 22, 30], "segmentation": _rle(ring)}
    bag = tip.bag_mask(np.ones((40, 40, 3), np.float32), [region])
    assert bag[5:35, 8:30].all() and bag.sum() == 30 * 22
    # without regions the bag is found from the attenuation
    scan = np.ones((40, 40, 3), np.float32)
    scan[5:35, 8:30] = 0.7
    assert (tip.bag_mask(scan, []) == bag).all()
    params = replace(SMOKE_TIP, max_iou=1.0)
    for seed in range(20):
        out = tip.place_item(np.ones((40, 40, 3), np.float32), np.full((6, 9, 3), 0.5, np.float32),
                             np.ones((6, 9), bool), bag, [], params, np.random.default_rng(seed))
        x, y, w, h = out[1]
        assert bag[int(y) : int(y + h), int(x) : int(x + w)].all()


# --- extraction ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tipdata"))


def _scan(root: Path, image_id: int):
    coco = load_coco(root / "annotations" / "train.json")
    image = next(im for im in coco["images"] if im["id"] == image_id)
    return coco, image, RgbCodec(root, 255.0).load(image)[0]


def test_extraction_with_mask_removes_the_bag_behind_the_item(dataset):
    coco, image, scan = _scan(dataset, 1)
    ann = next(a for a in coco["annotations"] if a["image_id"] == 1)
    fg = extract_item(scan, ann, image)
    assert fg.mask_source == "segmentation"
    assert fg.mask.sum() == ann["area"]
    item = fg.transmission[fg.mask]
    np.testing.assert_allclose(np.median(item, axis=0), CLASS_T[ann["category_id"]], atol=0.02)
    assert (fg.transmission[~fg.mask] == 1).all()


def test_automatic_extraction_finds_the_item_in_its_box(dataset):
    coco, image, scan = _scan(dataset, 2)
    ann = next(a for a in coco["annotations"] if a["image_id"] == 2)
    truth = mask_utils.decode({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()})
    fg = extract_item(scan, {k: v for k, v in ann.items() if k != "segmentation"}, image)
    assert fg.mask_source == "auto"
    x, y, w, h = ann["bbox"]
    crop = truth[y : y + h, x : x + w].astype(bool)
    assert fg.mask.shape == crop.shape
    assert (fg.mask & crop).sum() / (fg.mask | crop).sum() > 0.85
    np.testing.assert_allclose(np.median(fg.transmission[fg.mask], axis=0),
                               CLASS_T[ann["category_id"]], atol=0.03)


def test_mask_holes_keep_dense_cores_and_drop_openings():
    yy, xx = np.mgrid[:40, :40]
    scan = np.full((40, 40, 3), 0.9, np.float32)
    outer = (np.abs(xx - 12) <= 6) & (np.abs(yy - 20) <= 6)
    core = (np.abs(xx - 12) <= 2) & (np.abs(yy - 20) <= 2)
    scan[outer] *= 0.5
    scan[core] *= 0.1  # the label left out a photon-starved core: it is still the item
    ring = ((xx - 29) ** 2 + (yy - 20) ** 2 <= 36) & ((xx - 29) ** 2 + (yy - 20) ** 2 > 9)
    scan[ring] *= 0.5  # a ring's opening shows the bag: not the item
    image = {"id": 1, "width": 40, "height": 40}
    for label, box, truth in ((outer & ~core, [6, 14, 13, 13], outer), (ring, [23, 14, 13, 13], ring)):
        fg = extract_item(scan, {"id": 1, "category_id": 1, "bbox": box, "segmentation": _rle(label)}, image)
        x, y, w, h = box
        assert (fg.mask == truth[y : y + h, x : x + w]).all()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bbox": [10, 10, 3, 20]}, "box_too_small"),
        ({"bbox": [0, 0, 6, 6], "segmentation": None}, "no_contrast"),
        ({"bbox": [0, 0, 6, 6]}, "empty_mask"),
        ({"segmentation": {"size": [3, 3], "counts": "x"}}, "bad_segmentation"),
    ],
)
def test_extraction_failures_have_reasons(dataset, change, reason):
    coco, image, scan = _scan(dataset, 1)
    ann = {**next(a for a in coco["annotations"] if a["image_id"] == 1), **change}
    with pytest.raises(ExtractionError) as info:
        extract_item(scan, ann, image)
    assert info.value.reason == reason


# --- the shard -------------------------------------------------------------------------


def test_tip_shard_writes_the_synthetic_set_contract(dataset, tmp_path):
    cfg = tip_config(items_per_image=2, white_level=255)
    out = tmp_path / "shard"
    summary = tip.run_tip_shard(cfg, dataset, "train", 0, 1, out, seed=3)
    coco = load_coco(out / SHARD_ANNOTATIONS, out / "images")
    real = load_coco(dataset / "annotations" / "train.json")
    assert summary["source_images"] == 6
    assert summary["written_images"] == len(coco["images"]) == 6 - summary["skipped_images"]
    assert summary["pasted_items"] + summary["unplaced_items"] == 2 * 6
    assert summary["pasted_items"] >= 8
    assert json.loads((out / tip.SUMMARY_FILE).read_text()) == summary
    real_by_id = {im["id"]: im for im in real["images"]}
    for image in coco["images"]:
        prov = image["xsyn"]
        assert prov["method"] == "tip" and prov["seed"] == 3 and prov["transmission"] == "rgb"
        src = real_by_id[prov["source_image_id"]]
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        pasted = [a for a in anns if "requested_bbox" in a]
        copied = [a for a in anns if "source_annotation_id" in a]
        assert len(pasted) == len(prov["pasted"]) >= 1
        assert prov["donor_annotation_id"] == pasted[0]["donor_annotation_id"]
        assert prov["pasted_box"] == pasted[0]["bbox"]
        assert sorted(a["bbox"] for a in copied) == sorted(
            [float(v) for v in a["bbox"]] for a in real["annotations"] if a["image_id"] == src["id"])
        out_px = np.asarray(Image.open(out / "images" / image["file_name"]), dtype=int)
        src_px = np.asarray(Image.open(dataset / "images" / src["file_name"]), dtype=int)
        for a in pasted:
            assert a["requested_bbox"] == a["bbox"]
            donor = next(d for d in real["annotations"] if d["id"] == a["donor_annotation_id"])
            assert donor["image_id"] == a["donor_image_id"] != src["id"]
            assert donor["category_id"] == a["category_id"]
            m = mask_utils.decode({**a["segmentation"], "counts": a["segmentation"]["counts"].encode()})
            assert m.sum() == a["area"] > 0
            # an X-ray item only ever absorbs: pasted pixels are darker, the rest unchanged
            assert (out_px[m.astype(bool)] <= src_px[m.astype(bool)] + 1).all()
            assert (out_px[m.astype(bool)].sum(-1) < src_px[m.astype(bool)].sum(-1) - 20).mean() > 0.8
        union = np.zeros((SIZE, SIZE), bool)
        for a in pasted:
            union |= mask_utils.decode({**a["segmentation"], "counts": a["segmentation"]["counts"].encode()}).astype(bool)
        assert np.abs(out_px[~union] - src_px[~union]).max() <= 1


def test_tip_shards_are_independent_of_the_sharding_and_seeded(dataset, tmp_path):
    cfg = tip_config(white_level=255)
    whole = tmp_path / "whole"
    tip.run_tip_shard(cfg, dataset, "train", 0, 1, whole, seed=5)
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, p in enumerate(parts):
        tip.run_tip_shard(cfg, dataset, "train", i, 2, p, seed=5)

    def records(d: Path) -> dict:
        coco = load_coco(d / SHARD_ANNOTATIONS)
        return {im["file_name"]: (im["xsyn"], np.asarray(Image.open(d / "images" / im["file_name"])))
                for im in coco["images"]}

    merged = {**records(parts[0]), **records(parts[1])}
    reference = records(whole)
    assert merged.keys() == reference.keys()
    for name, (prov, px) in reference.items():
        assert merged[name][0] == prov
        np.testing.assert_array_equal(merged[name][1], px)
    other = tmp_path / "other"
    tip.run_tip_shard(cfg, dataset, "train", 0, 1, other, seed=6)
    assert [p for p, _ in records(other).values()] != [p for p, _ in reference.values()]
    reseeded = tmp_path / "reseeded"  # tip.seed varies the draws too
    tip.run_tip_shard(tip_config(white_level=255, seed=1), dataset, "train", 0, 1, reseeded, seed=5)
    assert [p["pasted"] for p, _ in records(reseeded).values()] != [
        p["pasted"] for p, _ in reference.values()]


def test_tip_without_masks_counts_automatic_extractions(tmp_path):
    root = make_dataset(tmp_path / "nomask", n_images=4, with_masks=False, seed=1)
    summary = tip.extraction_report(tip_config(), root, "train")
    assert summary["items"] == summary["attempted"]
    assert summary["mask_sources"].get("auto", 0) + summary["failed"] == summary["items"]
    assert summary["failed"] <= 1
    shard = tip.run_tip_shard(tip_config(), root, "train", 0, 1, tmp_path / "s", seed=0)
    assert shard["written_images"] >= 3


def test_tip_reports_bad_input_clearly(tmp_path):
    root = make_dataset(tmp_path / "d", n_images=2)
    (root / "images" / "0002.png").unlink()
    with pytest.raises(FileNotFoundError, match="0002.png"):
        tip.run_tip_shard(tip_config(), root, "train", 0, 1, tmp_path / "s", seed=0)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="tip.scale"):
        tip.TipParams.from_config({"tip": {"scale": [1.5, 1.0]}})


def test_tip_composites_raw_dual_energy_transmissions_when_present(tmp_path):
    from xsyn.data.phantom.physics import pseudo_colour

    root = make_dataset(tmp_path / "raw", n_images=4, raw=True)
    out = tmp_path / "s"
    cfg = tip_config(scale=[1.0, 1.0], rotation=0, flip=False)  # identity warp: exact values
    summary = tip.run_tip_shard(cfg, root, "train", 0, 1, out, seed=1)
    assert summary["transmission"] == "raw" and summary["written_images"] == 4
    coco = load_coco(out / SHARD_ANNOTATIONS, out / "images")
    real_coco = load_coco(root / "annotations" / "train.json")
    real = {im["id"]: im for im in real_coco["images"]}
    bank = tip.DonorBank(real_coco, DualEnergyCodec(root))
    for image in coco["images"]:
        src = real[image["xsyn"]["source_image_id"]]
        raw = cv2.imread(str(root / src["transmission_file"]), cv2.IMREAD_UNCHANGED) / 65535.0
        t = np.stack([raw[:SIZE], raw[SIZE:]], -1).astype(np.float32)
        t_low, t_high = t[..., 0], t[..., 1]
        px = np.asarray(Image.open(out / "images" / image["file_name"]), dtype=int)
        union = np.zeros((SIZE, SIZE), bool)
        for a in coco["annotations"]:
            if a["image_id"] == image["id"] and "requested_bbox" in a:
                seg = a["segmentation"]
                union |= mask_utils.decode({**seg, "counts": seg["counts"].encode()}).astype(bool)
                fg = bank.get(next(i for i, d in enumerate(bank.annotations)
                                   if d["id"] == a["donor_annotation_id"]))
                x, y, w, h = (int(v) for v in a["bbox"])
                assert (h, w) == fg.mask.shape
                # the scanner would see bag × item, coloured by the phantom's own map
                both = t.copy()
                both[y : y + h, x : x + w] *= fg.transmission
                expect = pseudo_colour(both[..., 0], both[..., 1]).astype(int)
                assert np.abs(px - expect)[y : y + h, x : x + w].max() <= 1
                # the isolated item is close to the true one (the inpainted background
                # blurs bag edge and neighbours into it, hence the tolerance)
                np.testing.assert_allclose(np.median(fg.transmission[fg.mask], axis=0),
                                           CLASS_T[a["category_id"]][:2], atol=0.05)
        untouched = pseudo_colour(t_low.astype(np.float32), t_high.astype(np.float32)).astype(int)
        assert np.abs(px[~union] - untouched[~union]).max() <= 1
    with pytest.raises(ValueError, match="no transmission_file"):
        tip.run_tip_shard(tip_config(transmission="raw"), make_dataset(tmp_path / "rgb", 2),
                          "train", 0, 1, tmp_path / "s2", seed=0)
