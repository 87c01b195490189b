"""Bad input: each kind fails with a message naming the culprit and leaves the output untouched.

Every test pre-creates the output folder with a sentinel file; after the failure it must
hold exactly that sentinel, and no temporary folder may be left beside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from raw_fixtures import write_fixture, write_layout

from xsyn.data.contract import DatasetError
from xsyn.data.prepare import PrepareOptions, prepare_dataset

QUIET = PrepareOptions(progress=False, workers=1)


@pytest.fixture
def out(tmp_path) -> Path:
    d = tmp_path / "data" / "ds"
    (d / "annotations").mkdir(parents=True)
    (d / "annotations" / "train.json").write_text("sentinel")
    return d


def assert_fails(fmt: str, source: Path, out: Path, *culprits: str) -> str:
    """prepare must raise DatasetError naming every culprit, with ``out`` as it was."""
    with pytest.raises(DatasetError) as e:
        prepare_dataset(fmt, source, out, QUIET)
    msg = str(e.value)
    for c in culprits:
        assert re.search(c, msg), f"{c!r} not in {msg!r}"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["annotations", "annotations/train.json"]
    assert (out / "annotations" / "train.json").read_text() == "sentinel"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp folder left
    return msg


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- missing files


def test_missing_annotation_file(tmp_path, out):
    fx = write_fixture("pidray", tmp_path / "raw")
    (fx.source / "annotations" / "xray_test_hard.json").unlink()
    assert_fails("pidray", fx.source, out, r"xray_test_hard\.json", "not found")


def test_missing_image_file(tmp_path, out):
    fx = write_fixture("coco", tmp_path / "raw")
    (fx.source / "images" / "val" / "val_001.jpg").unlink()
    assert_fails("coco", fx.source, out, r"instances_val\.json", r"images\[1\]", r"val_001\.jpg", "not found")


def test_missing_image_named_by_txt_line(tmp_path, out):
    fx = write_fixture("opixray", tmp_path / "raw")
    txt = fx.source / "train" / "train_annotation" / "000004.txt"
    txt.write_text(txt.read_text().replace("000004.jpg", "gone.jpg"))
    assert_fails("opixray", fx.source, out, r"000004\.txt", r"gone\.jpg", "not found")


def test_missing_transmission_file(tmp_path, out):
    fx = write_fixture("phantom", tmp_path / "raw")
    (fx.source / "transmissions" / "_002.raw").unlink()
    assert_fails("phantom", fx.source, out, r"annotations\.json", r"id 3", r"_002\.raw")


# ---------------------------------------------------------------- unreadable / truncated images


def test_unreadable_image(tmp_path, out):
    fx = write_fixture("sixray", tmp_path / "raw")
    (fx.source / "JPEGImage" / "P00003.jpg").write_bytes(b"this is not a jpeg")
    assert_fails("sixray", fx.source, out, r"P00003\.jpg", "unreadable")


def test_truncated_image(tmp_path, out):
    fx = write_fixture("coco", tmp_path / "raw")
    img = fx.source / "images" / "train" / "train_004.jpg"
    img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])
    assert_fails("coco", fx.source, out, r"train_004\.jpg", "truncated")


def test_image_size_differs_from_record(tmp_path, out):
    fx = write_fixture("coco", tmp_path / "raw")

    def grow(coco):
        coco["images"][2]["width"] += 50
    _edit_json(fx.source / "annotations" / "instances_test.json", grow)
    assert_fails("coco", fx.source, out, r"instances_test\.json", r"images\[2\]", r"test_002\.jpg", "record says")


# ---------------------------------------------------------------- malformed annotation files


def test_malformed_json(tmp_path, out):
    fx = write_fixture("phantom", tmp_path / "raw")
    path = fx.source / "annotations.json"
    path.write_text(path.read_text()[:-20])
    assert_fails("phantom", fx.source, out, r"annotations\.json", "malformed JSON", "line 1")


def test_json_missing_key(tmp_path, out):
    fx = write_fixture("pidray", tmp_path / "raw")
    _edit_json(fx.source / "annotations" / "xray_train.json", lambda c: c.pop("annotations"))
    assert_fails("pidray", fx.source, out, r"xray_train\.json", "'annotations'")


def test_malformed_xml(tmp_path, out):
    fx = write_fixture("sixray", tmp_path / "raw")
    xml = fx.source / "Annotation" / "P00005.xml"
    xml.write_text(xml.read_text().replace("</annotation>", ""))
    assert_fails("sixray", fx.source, out, r"P00005\.xml", "malformed XML")


def test_xml_non_numeric_coordinate(tmp_path, out):
    fx = write_fixture("sixray", tmp_path / "raw")
    xml = fx.source / "Annotation" / "P00006.xml"
    xml.write_text(re.sub(r"<ymax>\d+</ymax>", "<ymax>abc</ymax>", xml.read_text(), count=1))
    assert_fails("sixray", fx.source, out, r"P00006\.xml", "object 0", "ymax", "'abc'")


def test_malformed_txt_line(tmp_path, out):
    fx = write_fixture("hixray", tmp_path / "raw")
    txt = fx.source / "test" / "test_annotation" / "000001.txt"
    txt.write_text(txt.read_text() + "000001.jpg Laptop 1 2 3\n")
    assert_fails("hixray", fx.source, out, r"000001\.txt", "line 3", "expected")


def test_txt_non_numeric_coordinate(tmp_path, out):
    fx = write_fixture("hixray", tmp_path / "raw")
    txt = fx.source / "train" / "train_annotation" / "000002.txt"
    txt.write_text("000002.jpg Laptop 1 2 x3 9\n")
    assert_fails("hixray", fx.source, out, r"000002\.txt", "line 1", "non-numeric")


# ---------------------------------------------------------------- boxes


def test_box_outside_image(tmp_path, out):
    fx = write_fixture("opixray", tmp_path / "raw")
    txt = fx.source / "test" / "test_annotation" / "000000.txt"
    txt.write_text("000000.jpg Scissor 10 10 500 20\n")
    assert_fails("opixray", fx.source, out, r"000000\.txt", "line 1", "outside")


def test_box_zero_area(tmp_path, out):
    fx = write_fixture("sixray", tmp_path / "raw")
    xml = fx.source / "Annotation" / "P00004.xml"
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>0</xmax>", re.sub(r"<xmin>\d+</xmin>", "<xmin>0</xmin>", xml.read_text(), count=1), count=1))
    assert_fails("sixray", fx.source, out, r"P00004\.xml", "object 0", "zero or negative area")


def test_coco_box_outside_image(tmp_path, out):
    fx = write_fixture("coco", tmp_path / "raw")

    def shift(coco):
        coco["annotations"][1]["bbox"][0] = -30
    _edit_json(fx.source / "annotations" / "instances_train.json", shift)
    assert_fails("coco", fx.source, out, r"instances_train\.json", r"annotations\[1\]", "outside")


def test_box_within_tolerance_is_clipped(tmp_path):
    """Half a pixel over the edge is rounding, not an error: the box is clipped into the image."""
    fx = write_fixture("opixray", tmp_path / "raw")
    w, h = Image.open(fx.source / "test" / "test_image" / "000000.jpg").size
    (fx.source / "test" / "test_annotation" / "000000.txt").write_text(f"000000.jpg Scissor -0.5 2 {w + 0.5} {h}\n")
    prepare_dataset("opixray", fx.source, tmp_path / "ok", QUIET)
    test = json.loads((tmp_path / "ok" / "annotations" / "test.json").read_text())
    ann = next(a for a in test["annotations"] if test["images"][0]["id"] == a["image_id"])
    assert ann["bbox"] == [0.0, 2.0, float(w), float(h - 2)]


# ---------------------------------------------------------------- classes, ids, names


def test_unknown_class_name(tmp_path, out):
    fx = write_fixture("opixray", tmp_path / "raw")
    txt = fx.source / "train" / "train_annotation" / "000003.txt"
    txt.write_text(txt.read_text().replace("Folding_Knife", "Banana").replace("Straight_Knife", "Banana")
                   .replace("Scissor", "Banana"))
    assert_fails("opixray", fx.source, out, r"000003\.txt", "line 1", "unknown class name 'Banana'")


def test_unknown_category_id(tmp_path, out):
    fx = write_fixture("coco", tmp_path / "raw")

    def bad(coco):
        coco["annotations"][2]["category_id"] = 99
    _edit_json(fx.source / "annotations" / "instances_val.json", bad)
    assert_fails("coco", fx.source, out, r"instances_val\.json", r"annotations\[2\]", "unknown category_id 99")


def test_duplicate_image_id(tmp_path, out):
    fx = write_fixture("phantom", tmp_path / "raw")

    def dup(coco):
        coco["images"][5]["id"] = coco["images"][4]["id"]
    _edit_json(fx.source / "annotations.json", dup)
    assert_fails("phantom", fx.source, out, r"annotations\.json", r"images\[5\]", "duplicate id 5")


def test_duplicate_annotation_id(tmp_path, out):
    fx = write_fixture("pidray", tmp_path / "raw")

    def dup(coco):
        coco["annotations"][3]["id"] = coco["annotations"][0]["id"]
    _edit_json(fx.source / "annotations" / "xray_test_easy.json", dup)
    assert_fails("pidray", fx.source, out, r"xray_test_easy\.json", r"annotations\[3\]", "duplicate id")


def test_file_name_escaping_root_coco(tmp_path, out):
    fx = write_fixture("coco", tmp_path / "raw")

    def escape(coco):
        coco["images"][0]["file_name"] = "../../secret.jpg"
    _edit_json(fx.source / "annotations" / "instances_train.json", escape)
    assert_fails("coco", fx.source, out, r"instances_train\.json", r"images\[0\]", r"\.\./\.\./secret\.jpg", "escapes")


def test_file_name_escaping_root_txt(tmp_path, out):
    fx = write_fixture("opixray", tmp_path / "raw")
    txt = fx.source / "train" / "train_annotation" / "000001.txt"
    txt.write_text(txt.read_text().replace("000001.jpg", "../../test/test_image/000001.jpg"))
    assert_fails("opixray", fx.source, out, r"000001\.txt", "line 1", "escapes")


def test_ambiguous_image_extension(tmp_path, out):
    fx = write_fixture("opixray", tmp_path / "raw")
    src = fx.source / "train" / "train_image" / "000001.tiff"
    Image.open(src).save(src.with_suffix(".png"))
    assert_fails("opixray", fx.source, out, r"000001\.txt", r"000001\.jpg", "ambiguous", r"000001\.png", r"000001\.tiff")


def test_tiff_and_png_of_same_stem_clash(tmp_path, out):
    fx = write_fixture("coco", tmp_path / "raw")
    folder = fx.source / "images" / "train"
    Image.open(folder / "train_000.jpg").save(folder / "extra.tiff")
    Image.open(folder / "train_000.jpg").save(folder / "extra.png")
    w, h = Image.open(folder / "extra.png").size

    def add(coco):
        coco["images"] += [{"id": 900 + k, "file_name": f"extra.{ext}", "width": w, "height": h}
                           for k, ext in enumerate(("png", "tiff"))]
    _edit_json(fx.source / "annotations" / "instances_train.json", add)
    assert_fails("coco", fx.source, out, r"instances_train\.json", r"id 901", r"extra\.png", "clashes")


# ---------------------------------------------------------------- the releases' own layouts


def test_clcxray_malformed_json(tmp_path, out):
    fmt, fx = write_layout("clcxray", tmp_path / "raw", empty_name=True)
    path = fx.source / "annotation" / "CLCXray_test.json"
    path.write_text(path.read_text()[:-30])
    assert_fails(fmt, fx.source, out, r"annotation/CLCXray_test\.json", "malformed JSON")


def test_clcxray_empty_name_does_not_hide_other_errors(tmp_path, out):
    """The ".png" record is skipped, yet a bad box elsewhere in the same file still stops the import."""
    fmt, fx = write_layout("clcxray", tmp_path / "raw", empty_name=True)

    def bad(coco):
        coco["annotations"][0]["category_id"] = 99
    _edit_json(fx.source / "annotation" / "CLCXray_train.json", bad)
    assert_fails(fmt, fx.source, out, r"CLCXray_train\.json", r"annotations\[0\]", "unknown category_id 99")


def test_mscoco_missing_image(tmp_path, out):
    fmt, fx = write_layout("mscoco", tmp_path / "raw")
    (fx.source / "val2017" / "000000000152.jpg").unlink()  # images[2] of val (ids start at 11)
    assert_fails(fmt, fx.source, out, r"instances_val2017\.json", r"images\[2\]", r"000000000152\.jpg", "not found")


def test_coco_images_in_no_folder_names_the_folders_tried(tmp_path, out):
    fmt, fx = write_layout("clcxray", tmp_path / "raw")
    (fx.source / "image").rename(fx.source / "pictures")
    assert_fails(fmt, fx.source, out, r"CLCXray_test\.json", "none of its images", r"image/test", r"images/test")


def test_pidray_extended_duplicate_annotation_id(tmp_path, out):
    fmt, fx = write_layout("pidray-extended", tmp_path / "raw")

    def dup(coco):
        coco["annotations"][2]["id"] = coco["annotations"][1]["id"]
    _edit_json(fx.source / "annotations" / "test.json", dup)
    assert_fails(fmt, fx.source, out, r"annotations/test\.json", r"annotations\[2\]", "duplicate id")


def test_opixray_binary_part_list(tmp_path, out):
    fmt, fx = write_layout("opixray", tmp_path / "raw")
    (fx.source / "test" / "test_knife-2.txt").write_bytes(b"\xff\xfe\x00binary")
    assert_fails(fmt, fx.source, out, r"test_knife-2\.txt", "not a text file")


def test_no_layout_leaves_output_untouched(tmp_path, out):
    (tmp_path / "raw" / "a").mkdir(parents=True)
    (tmp_path / "raw" / "b").mkdir()
    assert_fails("clcxray", tmp_path / "raw", out, "no COCO annotation file", "annotation/")


# ---------------------------------------------------------------- known-dirty: counted skips


def test_sixray_nameless_objects_are_counted_skips(tmp_path, out):
    fx = write_fixture("sixray", tmp_path / "raw", nameless=4)
    summary = prepare_dataset("sixray", fx.source, out, QUIET)
    assert len(summary["skipped"]) == 4
    assert all(re.search(r"P0000[0-3]\.xml: object \d+ has no <name>", s) for s in summary["skipped"])
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["skipped"] == summary["skipped"]
    assert (out / "annotations" / "train.json").read_text() != "sentinel"  # replaced on success
