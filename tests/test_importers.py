"""Each importer on fixture trees in every real layout: counts, classes, splits, exact boxes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_fixtures import LAYOUTS, write_fixture, write_layout

from xsyn.data.contract import DatasetError
from xsyn.data.importers import IMPORTERS, ORIGIN, LayoutNotFound, RawDataset, import_dataset
from xsyn.data.importers.coco import is_empty_file_name, split_of
from xsyn.data.importers.sixray import canonical_spellings
from xsyn.data.importers.txt_boxes import (
    HIXRAY_CLASSES,
    OPIXRAY_CLASSES,
    parse_txt_line,
    part_split_name,
)


def truth_of(raw: RawDataset) -> dict[tuple[str, str], list]:
    """(split, image stem) → sorted [(class, bbox)] as the importer read it."""
    names = {c["id"]: c["name"] for c in raw.categories}
    out = {(raw.splits.get(img["id"], ""), Path(img["file_name"]).stem): [] for img in raw.images}
    key = {img["id"]: (raw.splits.get(img["id"], ""), Path(img["file_name"]).stem) for img in raw.images}
    for a in raw.annotations:
        out[key[a["image_id"]]].append((names[a["category_id"]], [float(v) for v in a["bbox"]]))
    return {k: sorted(v) for k, v in out.items()}


def test_registry_covers_schema_formats():
    import yaml

    from xsyn.config import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert set(schema["properties"]["dataset"]["properties"]["format"]["enum"]) <= set(IMPORTERS)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_importer_reads_every_layout_exactly(layout, tmp_path):
    fmt, fx = write_layout(layout, tmp_path / "raw")
    raw = import_dataset(fmt, fx.source)
    assert truth_of(raw) == fx.truth
    assert len(raw.images) == sum(fx.images.values())
    assert len(raw.annotations) == sum(fx.boxes.values())
    assert len(raw.skipped) == fx.skipped
    for img in raw.images:
        src = raw.sources[img["id"]]
        assert src.is_absolute() and src.is_file()
        assert img[ORIGIN]
    assert len({img["id"] for img in raw.images}) == len(raw.images)
    assert len({img["file_name"] for img in raw.images}) == len(raw.images)
    splits = {raw.splits.get(img["id"], "") for img in raw.images}
    assert splits == set(fx.images)
    assert set(fx.classes) <= {c["name"] for c in raw.categories}


def test_txt_formats_use_known_class_lists(tmp_path):
    for fmt, classes in (("opixray", OPIXRAY_CLASSES), ("hixray", HIXRAY_CLASSES)):
        raw = import_dataset(fmt, write_fixture(fmt, tmp_path / fmt).source)
        assert [c["name"] for c in raw.categories] == classes
        assert [c["id"] for c in raw.categories] == list(range(1, len(classes) + 1))


def test_txt_images_found_whatever_their_extension(tmp_path):
    raw = import_dataset("opixray", write_fixture("opixray", tmp_path).source)
    suffixes = {raw.sources[i["id"]].suffix for i in raw.images}
    assert suffixes == {".jpg", ".tiff", ".TIFF"}
    assert all(i["file_name"].startswith(("train/", "test/")) for i in raw.images)


def test_coco_keeps_source_category_ids(tmp_path):
    raw = import_dataset("coco", write_fixture("coco", tmp_path).source)
    assert [c["id"] for c in raw.categories] == [3, 7, 11]
    assert raw.notes == []  # ids unique across files: kept as they are


def test_pidray_renumbers_colliding_ids_and_prefixes_folders(tmp_path):
    raw = import_dataset("pidray", write_fixture("pidray", tmp_path).source)
    assert sorted(i["id"] for i in raw.images) == list(range(1, len(raw.images) + 1))
    assert raw.notes and "renumbered" in raw.notes[0]
    folders = {i["file_name"].split("/")[0] for i in raw.images}
    assert folders == {"train", "easy", "hard", "hidden"}
    assert set(raw.splits.values()) == {"train", "test_easy", "test_hard", "test_hidden"}


def test_phantom_carries_regions_extra_keys_and_transmissions(tmp_path):
    fx = write_fixture("phantom", tmp_path)
    raw = import_dataset("phantom", fx.source)
    assert raw.splits == {}
    assert len(raw.regions) == len(raw.images)
    assert all(img["transmission_file"] in raw.aux_files for img in raw.images)
    assert all(a["visibility"] == 0.75 and "segmentation" in a for a in raw.annotations)
    assert all(img["bag"]["seed"] == img["id"] for img in raw.images)


def test_sixray_reports_nameless_objects(tmp_path):
    fx = write_fixture("sixray", tmp_path, nameless=3)
    raw = import_dataset("sixray", fx.source)
    assert len(raw.skipped) == 3
    assert all("no <name>" in s and ".xml" in s for s in raw.skipped)
    assert [c["name"] for c in raw.categories] == sorted(fx.classes)


@pytest.mark.parametrize(
    "stem, split",
    [("xray_train", "train"), ("xray_test_easy", "test_easy"), ("instances_val2017", "val"),
     ("instances_test2017", "test"), ("annotations", None), ("test", "test")],
)
def test_split_of_file_names(stem, split):
    assert split_of(stem) == split


def test_unknown_format_and_missing_source(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset format 'voc'"):
        import_dataset("voc", tmp_path)
    with pytest.raises(DatasetError, match="nowhere.*not found"):
        import_dataset("coco", tmp_path / "nowhere")


# ---------------------------------------------------------------- layouts as the releases ship them


def test_clcxray_singular_folders(tmp_path):
    fmt, fx = write_layout("clcxray", tmp_path)
    raw = import_dataset(fmt, fx.source)
    assert set(raw.splits.values()) == {"train", "test"}
    assert {i["file_name"].split("/")[0] for i in raw.images} == {"train", "test"}  # image/ stripped


def test_mscoco_ignores_captions_and_keypoints(tmp_path):
    fmt, fx = write_layout("mscoco", tmp_path)
    raw = import_dataset(fmt, fx.source)
    assert [c["name"] for c in raw.categories] == fx.classes  # not keypoints' "person" list
    assert any("captions_train2017.json" in n and "person_keypoints_val2017.json" in n for n in raw.notes)
    assert {raw.sources[i["id"]].parent.name for i in raw.images} == {"train2017", "val2017"}
    assert all(i["file_name"].startswith(("train2017/", "val2017/")) for i in raw.images)


def test_pidray_extended_release(tmp_path):
    raw = import_dataset("pidray", write_layout("pidray-extended", tmp_path)[1].source)
    assert set(raw.splits.values()) == {"train", "test"}
    assert {i["file_name"].split("/")[0] for i in raw.images} == {"train", "test"}


def test_pidray_level_files_take_test_images_once(tmp_path):
    fmt, fx = write_layout("pidray-extended-levels", tmp_path)
    raw = import_dataset(fmt, fx.source)
    assert set(raw.splits.values()) == {"train", "test_easy", "test_hard", "test_hidden"}
    assert len(raw.images) == 12 + 9  # test.json's images are those of the level files: not twice
    assert any("taken once, from the part" in n for n in raw.notes)


def test_opixray_occlusion_lists_become_test_parts(tmp_path):
    fmt, fx = write_layout("opixray", tmp_path, n={"train": 4, "test": 7})
    raw = import_dataset(fmt, fx.source)
    parts = sorted(s for s in raw.splits.values() if s.startswith("test"))
    assert parts == ["test_ol1"] * 3 + ["test_ol2"] * 2 + ["test_ol3"] * 2
    assert any("test_knife-1.txt: 3 test image(s)" in n for n in raw.notes)


def test_opixray_test_images_outside_every_list_stay_in_test(tmp_path):
    fmt, fx = write_layout("opixray", tmp_path)
    (fx.source / "test" / "test_knife-3.txt").unlink()
    raw = import_dataset(fmt, fx.source)
    assert sorted(raw.splits[i["id"]] for i in raw.images if i["file_name"].startswith("test/")) == [
        "test", "test_ol1", "test_ol2"]


def test_hixray_whole_split_lists_are_not_parts(tmp_path):
    raw = import_dataset("hixray", write_layout("hixray", tmp_path)[1].source)
    assert set(raw.splits.values()) == {"train", "test"}


def test_sixray_voc_folder_names(tmp_path):
    raw = import_dataset("sixray", write_layout("sixray-voc", tmp_path)[1].source)
    assert len(raw.images) == 12


@pytest.mark.parametrize("layout", ["opixray", "pidray", "sixray", "clcxray"])
def test_wrapper_folder_of_an_archive_is_entered(layout, tmp_path):
    fmt, fx = write_layout(layout, tmp_path / "download" / "Dataset")
    raw = import_dataset(fmt, tmp_path / "download")
    assert len(raw.images) == sum(fx.images.values())
    assert any("wrapper folder" in n for n in raw.notes)


@pytest.mark.parametrize("fmt, looked_for", [
    ("clcxray", ["annotations/", "annotation/", "CLCXray", "phantom"]),
    ("coco", ["annotations/", "instances_"]),
    ("pidray", ["xray_train.json", "annotations/train.json", "extended release"]),
    ("opixray", ["train/train_image/", "test/test_annotation/"]),
    ("hixray", ["train/train_image/"]),
    ("sixray", ["Annotation", "JPEGImage", "Annotations", "JPEGImages"]),
])
def test_no_layout_names_the_layouts_looked_for(fmt, looked_for, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # two folders: no wrapper to enter
    with pytest.raises(LayoutNotFound) as e:
        import_dataset(fmt, tmp_path)
    assert str(tmp_path) in str(e.value)
    for word in looked_for:
        assert word in str(e.value)


def test_macos_archive_leftovers_are_ignored(tmp_path):
    fx = write_fixture("pidray", tmp_path)
    (fx.source / "annotations" / "._xray_train.json").write_bytes(b"\x00\x05\x16\x07 not json")
    (fx.source / "train" / "._train_000.png").write_bytes(b"\x00\x05\x16\x07")
    raw = import_dataset("pidray", fx.source)
    assert len(raw.images) == sum(fx.images.values())


# ---------------------------------------------------------------- parsers (properties)

NAME = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-."), min_size=1, max_size=12)


@given(st.lists(NAME, min_size=1, max_size=3), NAME, st.lists(st.integers(-10_000, 10_000), min_size=4, max_size=4),
       st.sampled_from([" ", "  ", "\t"]))
@settings(max_examples=200, deadline=None)
def test_txt_line_round_trip(image_words, cls, corners, sep):
    """Whatever the spacing and spaces in the image name: the line parses back to its parts."""
    line = sep.join([*image_words, cls, *map(str, corners)])
    assert parse_txt_line(line, "x") == (" ".join(image_words), cls, [float(v) for v in corners])


@given(st.sampled_from(["", " ", ".png", ".jpg", "images/.png", " .JPEG "]))
def test_empty_file_names(name):
    assert is_empty_file_name(name)


@given(NAME.filter(lambda n: not n.startswith(".")), st.sampled_from(["", ".png", ".jpg"]))
def test_real_file_names_are_not_empty(stem, ext):
    assert not is_empty_file_name(f"{stem}{ext}") and not is_empty_file_name(f"dir/{stem}{ext}")
    assert not is_empty_file_name(None)  # not a string: malformed, not "empty" (validation names it)


@given(st.text(max_size=20))
@settings(max_examples=200)
def test_part_split_names_are_clean(stem):
    name = part_split_name(stem)
    assert name is None or (name.startswith("test_") and name[5:].isalnum() and name[5:].isascii())


def test_part_split_names_of_the_releases():
    assert [part_split_name(f"test_knife-{k}") for k in (1, 2, 3)] == ["test_ol1", "test_ol2", "test_ol3"]
    assert part_split_name("test_knife") is None and part_split_name("test_name") is None


@given(st.lists(st.sampled_from(["Gun", "gun", "GUN", "Knife", "knife", "Pliers"]), min_size=1, max_size=30))
def test_case_folding_keeps_one_existing_spelling_per_class(names):
    spelling = canonical_spellings(names)
    assert set(spelling) == {n.casefold() for n in names}
    for key, chosen in spelling.items():
        assert chosen in names and chosen.casefold() == key
        counts = {n: names.count(n) for n in names if n.casefold() == key}
        assert counts[chosen] == max(counts.values())
