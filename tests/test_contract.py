"""validate_coco and friends: every defect is a DatasetError naming the file and the entry."""

from __future__ import annotations

import copy
import json
import re

import pytest

from xsyn.data.contract import (
    DatasetError,
    caption_for,
    check_relative_name,
    load_coco,
    load_split,
    phrase_for,
    save_coco,
    subset_name,
    validate_coco,
)

GOOD = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 10, "height": 8},
        {"id": 2, "file_name": "sub/b.png", "width": 20, "height": 20},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 8]},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1.5, 2, 3, 4]},
    ],
    "categories": [{"id": 1, "name": "Gun"}, {"id": 2, "name": "Knife"}],
    "regions": [{"id": 1, "image_id": 2, "bbox": [0, 0, 5, 5], "kind": "bottle"}],
}


def broken(edit):
    coco = copy.deepcopy(GOOD)
    edit(coco)
    return coco


def test_good_passes():
    validate_coco(GOOD, "good.json")


def test_box_within_one_pixel_tolerance_passes():
    validate_coco(broken(lambda c: c["annotations"][0].update(bbox=[-0.5, 0, 10.9, 8.5])), "x.json")


CASES = [
    ("top level", lambda c: c.clear() or c.update(x=1), r"missing or non-list key 'images'"),
    ("images not list", lambda c: c.update(images={}), r"non-list key 'images'"),
    ("id not int", lambda c: c["images"][1].update(id="2"), r"images\[1\]: id must be an integer"),
    ("bool id", lambda c: c["annotations"][0].update(id=True), r"annotations\[0\]: id must be an integer"),
    ("dup image id", lambda c: c["images"][1].update(id=1), r"images\[1\]: duplicate id 1"),
    ("dup ann id", lambda c: c["annotations"][1].update(id=1), r"annotations\[1\]: duplicate id 1"),
    ("dup class", lambda c: c["categories"][1].update(name="Gun"), r"duplicate class name 'Gun'"),
    ("empty class", lambda c: c["categories"][0].update(name=""), r"categories\[0\]: name"),
    ("abs name", lambda c: c["images"][0].update(file_name="/etc/passwd"), r"images\[0\] \(id 1\).*escapes"),
    ("dotdot", lambda c: c["images"][1].update(file_name="sub/../../b.png"), r"images\[1\] \(id 2\).*escapes"),
    ("backslash dotdot", lambda c: c["images"][1].update(file_name="..\\b.png"), r"escapes"),
    ("no name", lambda c: c["images"][0].pop("file_name"), r"images\[0\].*non-empty string"),
    ("dup file", lambda c: c["images"][1].update(file_name="a.png"), r"images\[1\].*duplicate file_name 'a.png'"),
    ("width 0", lambda c: c["images"][0].update(width=0), r"images\[0\].*width must be a positive integer"),
    ("height float", lambda c: c["images"][1].update(height=20.0), r"images\[1\].*height"),
    ("unknown image", lambda c: c["annotations"][1].update(image_id=9), r"annotations\[1\] \(id 2\): unknown image_id 9"),
    ("unknown cat", lambda c: c["annotations"][0].update(category_id=3), r"annotations\[0\].*unknown category_id 3"),
    ("bbox len", lambda c: c["annotations"][0].update(bbox=[0, 0, 1]), r"annotations\[0\].*4 finite numbers"),
    ("bbox nan", lambda c: c["annotations"][0].update(bbox=[0, float("nan"), 1, 1]), r"4 finite numbers"),
    ("bbox str", lambda c: c["annotations"][0].update(bbox=["0", 0, 1, 1]), r"4 finite numbers"),
    ("zero area", lambda c: c["annotations"][1].update(bbox=[1, 1, 0, 4]), r"annotations\[1\].*zero or negative area"),
    ("outside", lambda c: c["annotations"][0].update(bbox=[5, 0, 7, 8]), r"annotations\[0\].*outside the 10x8 image"),
    ("regions type", lambda c: c.update(regions={}), r"'regions' must be a list"),
    ("region image", lambda c: c["regions"][0].update(image_id=5), r"regions\[0\] \(id 1\): unknown image_id 5"),
    ("region box", lambda c: c["regions"][0].update(bbox=[18, 0, 5, 5]), r"regions\[0\].*outside"),
]


@pytest.mark.parametrize("what, edit, pattern", CASES, ids=[c[0] for c in CASES])
def test_defects_named(what, edit, pattern):
    with pytest.raises(DatasetError, match=r"^bad\.json: ") as e:
        validate_coco(broken(edit), "bad.json")
    assert re.search(pattern, str(e.value)), str(e.value)


def test_image_root_checks_files(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"images\[1\] \(id 2\): image file .*sub/b\.png not found"):
        validate_coco(GOOD, "g.json", tmp_path)


def test_load_coco_names_file_on_bad_json(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"ann\.json: malformed JSON at line 1"):
        load_coco(p)
    with pytest.raises(DatasetError, match=r"missing\.json"):
        load_coco(tmp_path / "missing.json")


def test_save_coco_refuses_invalid_and_writes_valid(tmp_path):
    p = tmp_path / "annotations" / "train.json"
    with pytest.raises(DatasetError):
        save_coco(p, broken(lambda c: c["annotations"][0].update(category_id=7)))
    assert not p.parent.exists()  # validated before anything touches the disk
    save_coco(p, GOOD)
    assert json.loads(p.read_text()) == GOOD
    assert load_split(tmp_path, "train") == GOOD


def test_names_and_text():
    assert subset_name(5) == "train_p05" and subset_name(50) == "train_p50"
    assert caption_for(["Gun", "Knife", "Gun"]) == "Gun, Knife"
    assert caption_for([]) == ""
    assert phrase_for("Knife") == "one Knife"
    assert check_relative_name("a\\b.png", "s", "e") == "a/b.png"
