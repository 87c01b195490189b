"""Equal training across arms: images per epoch of every set, the controls, what run.json lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_detection import make_images, subset

from xsyn.data.contract import DatasetError, save_coco
from xsyn.detection.mix import EpochPlan, build_mix, provenance_outside, split_evenly
from xsyn.methods import BUDGET, REAL_REPEAT, parse_sources, synthetic_sources

EQUAL = {"equal_steps": True, "images_per_epoch": 2.0, "real_fraction": 0.5}


def test_without_equal_steps_the_epoch_is_real_plus_repeats():
    plan = EpochPlan.make(10, {"xsyn-a": 10, "tip": 7}, {**EQUAL, "equal_steps": False}, synthetic_repeat=1.5)
    assert plan.real == 1.0 and plan.extra == {"xsyn-a": 1.5, "tip": 1.5}
    assert EpochPlan.make(10, {"xsyn-a": 10}, None).extra == {"xsyn-a": 1.0}


def test_equal_steps_fixes_images_per_epoch_and_real_share():
    plan = EpochPlan.make(10, {"xsyn-a": 9}, EQUAL)
    assert plan.real * 10 == 10 and plan.extra["xsyn-a"] * 9 == pytest.approx(10)
    assert EpochPlan.make(10, {}, EQUAL) == EpochPlan(1.0, {})  # real-only: one pass
    repeat = EpochPlan.make(10, {}, EQUAL, real_repeat=True)
    assert repeat.real == 2.0  # real-repeat: the mixed arms' 20 images, all real
    budget = EpochPlan.make(10, {BUDGET: 432}, {**EQUAL, "real_fraction": 0.25})
    assert round(budget.real * 10) == 5 and round(budget.extra[BUDGET] * 432) == 15


@given(n_real=st.integers(1, 300), sizes=st.lists(st.integers(1, 500), min_size=1, max_size=3),
       per_epoch=st.floats(1.0, 4.0), fraction=st.floats(0.05, 0.95))
def test_every_mixed_arm_gets_the_same_images_per_epoch(n_real, sizes, per_epoch, fraction):
    cfg = {"equal_steps": True, "images_per_epoch": per_epoch, "real_fraction": fraction}
    extra = {f"s{i}": n for i, n in enumerate(sizes)}
    plan = EpochPlan.make(n_real, extra, cfg)
    shown = round(plan.real * n_real) + sum(round(plan.extra[k] * n) for k, n in extra.items())
    assert shown == round(per_epoch * n_real)
    assert shown == round(EpochPlan.make(n_real, {}, cfg, real_repeat=True).real * n_real)


def test_split_evenly():
    assert split_evenly(7, ["a", "b", "c"]) == {"a": 3, "b": 2, "c": 2}
    assert split_evenly(0, []) == {}


def test_real_repeat_is_an_arm_of_its_own():
    assert parse_sources("real-repeat") == [REAL_REPEAT]
    assert parse_sources("xsyn-a+budget") == ["xsyn-a", BUDGET]
    assert synthetic_sources("xsyn-a+budget") == ["xsyn-a"]
    with pytest.raises(ValueError, match="real-repeat"):
        parse_sources("real-repeat+tip")
    with pytest.raises(ValueError, match="equal_steps"):
        EpochPlan.make(10, {}, {**EQUAL, "equal_steps": False}, real_repeat=True)


@pytest.fixture(scope="module")
def study_data(tmp_path_factory) -> dict[str, Path]:
    """A real dataset (8 train scans, a 4-scan subset), a synthetic set made from the subset
    with provenance (one scan from outside it), and a budget dataset of 12 scans."""
    root = tmp_path_factory.mktemp("mix")
    dataset = root / "rects"
    coco = make_images(dataset / "images", 11, seed=0)
    save_coco(dataset / "annotations" / "train.json", subset(coco, list(range(1, 9))))
    save_coco(dataset / "annotations" / "train_p50.json", subset(coco, [1, 2, 3, 4]))
    save_coco(dataset / "annotations" / "val.json", subset(coco, [9, 10, 11]))
    syn_root = root / "synthetic"
    syn = make_images(syn_root / "xsyn-a" / "images", 4, seed=1, prefix="syn_")
    for img, source in zip(syn["images"], [1, 2, 3, 7], strict=True):
        img["xsyn"] = {"method": "xsyn-a", "source_image_id": source}
    save_coco(syn_root / "xsyn-a" / "annotations.json", syn)
    budget = root / "budget"
    save_coco(budget / "annotations" / "train.json", make_images(budget / "images", 12, seed=2))
    return {"dataset": dataset, "synthetic": syn_root, "budget": budget}


def test_equal_steps_mix_counts_and_labelled_data(study_data, tmp_path):
    d = study_data
    mix = build_mix(d["dataset"], 50, ["xsyn-a"], d["synthetic"], tmp_path / "a", mix_cfg=EQUAL)
    assert mix.counts == {"real": 4, "val": 3, "xsyn-a": 4}
    syn = mix.labelled_data["xsyn-a"]
    assert (syn["images"], syn["available"], syn["per_epoch"]) == (4, 4, 4)
    assert syn["real_scans_outside_subset"] == {"source_scans": 1, "donor_scans": 0}  # scan 7 is not in p50
    assert mix.labelled_data["real"]["set"].endswith("train_p50.json")

    repeat = build_mix(d["dataset"], 50, [REAL_REPEAT], d["synthetic"], tmp_path / "r", mix_cfg=EQUAL)
    assert repeat.counts == {"real": 8, "val": 3} and not repeat.synthetic_dirs
    assert [p.name for p in repeat.real_dirs] == ["real", "real-r1"]
    assert len(list((tmp_path / "r").glob("real*/labels/*.txt"))) == 8

    budget = build_mix(d["dataset"], 50, [BUDGET], d["synthetic"], tmp_path / "b", mix_cfg=EQUAL,
                       budget=(d["budget"], "train"), seed=3)
    spent = budget.labelled_data[BUDGET]
    assert budget.counts[BUDGET] == 4 and (spent["images"], spent["available"]) == (4, 12)
    assert spent["real_scans_outside_subset"] is None  # labelled scans, no synthetic provenance
    with pytest.raises(ValueError, match="budget"):
        build_mix(d["dataset"], 50, [BUDGET], d["synthetic"], tmp_path / "c", mix_cfg=EQUAL)
    with pytest.raises(DatasetError, match="budget set"):
        build_mix(d["dataset"], 50, [BUDGET], d["synthetic"], tmp_path / "d", mix_cfg=EQUAL,
                  budget=(d["budget"], "val"))


def test_smoke_mix_is_unchanged_by_the_plan(study_data, tmp_path):
    """Without equal_steps the folders and counts are those the smoke run always had."""
    d = study_data
    mix = build_mix(d["dataset"], 50, ["xsyn-a"], d["synthetic"], tmp_path / "m", repeat=2)
    assert mix.counts == {"real": 4, "val": 3, "xsyn-a": 8}
    assert [p.name for p in mix.real_dirs] == ["real"]
    assert [p.name for p in mix.synthetic_dirs] == ["syn-xsyn-a-r0", "syn-xsyn-a-r1"]
    assert sorted(p.name for p in (tmp_path / "m" / "real" / "labels").iterdir())[0] == "000.txt"


def test_provenance_counts_tip_donors():
    syn = {"images": [{"id": 1, "xsyn": {"source_image_id": 1, "pasted": [{"donor_image_id": 5}]}},
                      {"id": 2, "xsyn": {"source_image_id": 2, "pasted": [{"donor_image_id": 1}]}}]}
    assert provenance_outside(syn, {1, 2}) == {"source_scans": 0, "donor_scans": 1}
    assert provenance_outside({"images": [{"id": 1}]}, {1}) is None


def test_run_json_lists_labelled_data(study_data, tmp_path):
    from xsyn.cli import main

    d = study_data
    run = tmp_path / "run"
    rc = main(["train-detector", "--dataset", str(d["dataset"]), "--model", "yolov8n.yaml", "--share", "50",
               "--source", "xsyn-a+budget", "--seed", "0", "--out", str(run), "--synthetic-root", str(d["synthetic"]),
               "--budget", str(d["budget"]), "--set", "device=cpu", "--set", "detection.epochs=1",
               "--set", "detection.imgsz=64", "--set", "detection.mix.equal_steps=true",
               "--set", "detection.mix.images_per_epoch=3"])
    assert rc == 0
    record = json.loads((run / "run.json").read_text())
    assert record["images"] == {"real": 6, "val": 3, "xsyn-a": 3, "budget": 3}
    assert set(record["labelled_data"]) == {"real", "xsyn-a", "budget"}
    assert record["labelled_data"]["budget"]["available"] == 12
    assert record["init"]["kind"] == "scratch" and "new" not in record["init"]  # a yaml: nothing inherited
