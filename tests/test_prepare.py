"""``xsyn prepare`` on a fixture tree of every format: contract, splits, subsets, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from raw_fixtures import write_fixture, write_layout

from xsyn.cli import main
from xsyn.data.contract import SPLITS, caption_for, load_split, phrase_for, subset_name
from xsyn.data.prepare import PrepareOptions, carve, prepare_dataset, stratified_order
from xsyn.data.yolo import read_yolo, write_yolo_split

FORMATS = ["pidray", "pidray-extended-levels", "coco", "mscoco", "clcxray", "phantom", "opixray", "hixray",
           "sixray"]  # layouts (raw_fixtures.LAYOUTS), each as its release ships it
SHARES = (1, 5, 10, 25, 50)
QUIET = PrepareOptions(progress=False, workers=2)


def boxes_by_image(coco: dict, key=lambda img: img["file_name"]) -> dict[str, list]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    k = {img["id"]: key(img) for img in coco["images"]}
    out: dict[str, list] = {k[i]: [] for i in k}
    for a in coco["annotations"]:
        out[k[a["image_id"]]].append((names[a["category_id"]], [float(v) for v in a["bbox"]]))
    return {name: sorted(v) for name, v in out.items()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """Every format prepared once (module scope: the tests below only read)."""
    root = tmp_path_factory.mktemp("prep")
    out = {}
    for layout in FORMATS:
        fmt, fx = write_layout(layout, root / "raw" / layout)
        prepare_dataset(fmt, fx.source, root / "data" / layout, QUIET)
        out[layout] = (root / "data" / layout, fx)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_contract_splits_and_subsets(prepared, fmt):
    root, fx = prepared[fmt]
    cocos = {s: load_split(root, s, check_images=True) for s in SPLITS}
    ids = {s: {img["id"] for img in c["images"]} for s, c in cocos.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert sum(len(v) for v in ids.values()) == sum(fx.images.values())
    assert all(ids[s] for s in SPLITS)
    cats = cocos["train"]["categories"]
    assert all(c["categories"] == cats for c in cocos.values())
    previous: set[int] = set()
    for share in SHARES:
        sub = load_split(root, subset_name(share), check_images=True)
        sub_ids = {img["id"] for img in sub["images"]}
        assert previous <= sub_ids <= ids["train"]
        assert len(sub_ids) == max(1, round(share / 100 * len(ids["train"])))
        previous = sub_ids
    for coco in cocos.values():
        names = {c["id"]: c["name"] for c in coco["categories"]}
        per_image: dict[int, list[str]] = {img["id"]: [] for img in coco["images"]}
        for a in coco["annotations"]:
            assert a["phrase"] == phrase_for(names[a["category_id"]])
            assert "_origin" not in a
            per_image[a["image_id"]].append(names[a["category_id"]])
        for img in coco["images"]:
            assert img["caption"] == caption_for(per_image[img["id"]])
            assert "_origin" not in img
    report = json.loads((root / "prepare_report.json").read_text())
    assert len(report["skipped"]) == fx.skipped
    assert report["splits"]["train"]["images"] == len(ids["train"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_yolo_round_trip_is_lossless(prepared, fmt, tmp_path):
    root, _ = prepared[fmt]
    for split in SPLITS:
        coco = load_split(root, split)
        write_yolo_split(coco, root / "images", tmp_path / split)
        back = read_yolo(tmp_path / split, coco["categories"])
        assert back["categories"] == [{"id": c["id"], "name": c["name"]} for c in coco["categories"]]
        flat = boxes_by_image(coco, key=lambda img: img["file_name"].replace("/", "__"))
        assert boxes_by_image(back) == flat


def test_boxes_equal_source(prepared):
    """The prepared boxes are the source's boxes (fixture boxes lie inside, nothing clipped)."""
    for fmt in FORMATS:
        root, fx = prepared[fmt]
        got = {}
        for split in SPLITS:
            got.update(boxes_by_image(load_split(root, split), key=lambda img: Path(img["file_name"]).stem))
        want = {stem: v for (_, stem), v in fx.truth.items()}
        assert got == want, fmt


def test_tiff_converted_to_png_and_others_linked(prepared):
    root, fx = prepared["opixray"]
    coco = load_split(root, "train")
    suffixes = {Path(img["file_name"]).suffix for img in coco["images"]}
    assert suffixes == {".jpg", ".png"}
    for img in coco["images"]:
        stem = Path(img["file_name"]).stem
        dst = root / "images" / img["file_name"]
        src = next((fx.source / "train" / "train_image").glob(f"{stem}.*"))
        if dst.suffix == ".png":
            assert np.array_equal(np.asarray(Image.open(dst)), np.asarray(Image.open(src)))
        else:
            assert dst.stat().st_ino == src.stat().st_ino  # hard link, no copy


@pytest.mark.parametrize("layout, parts, train_folder", [
    ("pidray", ("easy", "hard", "hidden"), "train/"),
    ("pidray-extended-levels", ("easy", "hard", "hidden"), "train/"),
    ("opixray", ("ol1", "ol2", "ol3"), "train/"),
])
def test_test_is_union_of_its_parts(prepared, layout, parts, train_folder):
    root, fx = prepared[layout]
    test = {img["id"] for img in load_split(root, "test")["images"]}
    coco_parts = [load_split(root, f"test_{p}", check_images=True) for p in parts]
    ids = [{img["id"] for img in p["images"]} for p in coco_parts]
    assert test == set().union(*ids) and sum(map(len, ids)) == len(test)
    assert len(test) == sum(v for k, v in fx.images.items() if k.startswith("test_"))
    val = load_split(root, "val")
    assert all(img["file_name"].startswith(train_folder) for img in val["images"])
    report = json.loads((root / "prepare_report.json").read_text())
    assert all(report["splits"][f"test_{p}"]["images"] == len(i) for p, i in zip(parts, ids, strict=True))


def test_phantom_regions_and_transmissions(prepared):
    root, _ = prepared["phantom"]
    for split in SPLITS:
        coco = load_split(root, split)
        ids = {img["id"] for img in coco["images"]}
        assert {r["image_id"] for r in coco["regions"]} == ids
        for img in coco["images"]:
            t = root / img["transmission_file"]
            assert t.is_file()
            assert np.frombuffer(t.read_bytes(), dtype=np.uint16)[0] == img["id"]


def test_same_seed_same_splits_other_seed_other_splits(tmp_path):
    fx = write_fixture("phantom", tmp_path / "raw", n=40)
    prepare_dataset("phantom", fx.source, tmp_path / "a", QUIET)
    prepare_dataset("phantom", fx.source, tmp_path / "b", QUIET)
    prepare_dataset("phantom", fx.source, tmp_path / "c", PrepareOptions(split_seed=7, progress=False))
    def read(d: Path, split: str) -> list:
        coco = json.loads((d / "annotations" / f"{split}.json").read_text())
        return [coco["images"], coco["annotations"], coco["regions"]]

    assert all(read(tmp_path / "a", s) == read(tmp_path / "b", s) for s in ("train", "val", "test", "train_p25"))
    assert read(tmp_path / "a", "test") != read(tmp_path / "c", "test")


def test_stratified_order_spreads_classes_and_carve_is_partition():
    classes = {i: [1] if i < 80 else [2] for i in range(100)}  # class 2 is rare (20 %)
    order = stratified_order(classes, classes, seed=0)
    assert sorted(order) == list(range(100))
    assert sum(classes[i] == [2] for i in order[:10]) == 2  # 10 % prefix holds 10 % of each class
    rest, carved = carve(list(range(100)), 0.25, classes, seed=3)
    assert len(carved) == 25 and not set(rest) & set(carved) and len(rest) + len(carved) == 100
    assert carve([5], 0.5, classes, 0) == ([5], [])
    assert len(carve([1, 2], 0.01, classes, 0)[1]) == 1


def test_cli_prepare_export_import(tmp_path, capsys):
    fx = write_fixture("sixray", tmp_path / "raw")
    out = tmp_path / "data" / "six"
    rc = main(["prepare", "--format", "sixray", "--source", str(fx.source), "--out", str(out),
               "--no-progress", "--set", "dataset.subset_shares=[10, 50]"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "skipped entries: 2" in text and "train_p10" in text
    assert not (out / "annotations" / "train_p05.json").exists()
    rc = main(["export-yolo", "--dataset", str(out), "--split", "val", "--out", str(tmp_path / "y")])
    assert rc == 0
    assert (tmp_path / "y" / "data.yaml").is_file()
    rc = main(["import-yolo", "--yolo", str(tmp_path / "y"), "--names-from", str(out),
               "--out", str(tmp_path / "back.json")])
    assert rc == 0
    back = json.loads((tmp_path / "back.json").read_text())
    assert boxes_by_image(back) == boxes_by_image(load_split(out, "val"))
    rc = main(["import-yolo", "--yolo", str(tmp_path / "y"), "--names-from", str(tmp_path / "y" / "data.yaml"),
               "--out", str(tmp_path / "back2.json")])
    assert rc == 0
    back2 = json.loads((tmp_path / "back2.json").read_text())
    assert boxes_by_image(back2) == boxes_by_image(back)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    rc = main(["prepare", "--format", "pidray", "--source", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "xray_train.json" in err and "Traceback" not in err


@given(
    st.lists(st.lists(st.integers(1, 4), max_size=3), min_size=1, max_size=60),
    st.sampled_from([None, "train", "test"]),
    st.floats(0, 0.9), st.floats(0, 0.9), st.integers(0, 3),
)
@settings(max_examples=150, deadline=None)
def test_splits_partition_and_subsets_nest(labels, given_split, val_f, test_f, seed):
    """Whatever the classes and fractions: splits partition the images, subsets nest in train."""
    from xsyn.data.importers import RawDataset
    from xsyn.data.prepare import assign_splits

    raw = RawDataset(categories=[{"id": k, "name": f"c{k}"} for k in range(1, 5)])
    for i, cls in enumerate(labels, 1):
        raw.images.append({"id": i, "file_name": f"{i}.png", "width": 8, "height": 8})
        raw.annotations += [{"id": len(raw.annotations) + 1, "image_id": i, "category_id": c} for c in cls]
        if given_split:
            raw.splits[i] = given_split if i > 1 else "train"  # train is never empty
    opts = PrepareOptions(val_fraction=val_f, test_fraction=test_f, split_seed=seed, progress=False)
    splits = assign_splits(raw, opts)
    main_parts = [set(splits[s]) for s in SPLITS if s in splits]
    assert sum(map(len, main_parts)) == len(set().union(*main_parts)) == len(labels)
    assert splits["train"]
    previous: set[int] = set()
    for share in SHARES:
        sub = set(splits[subset_name(share)])
        assert previous <= sub <= set(splits["train"]) and sub
        previous = sub
