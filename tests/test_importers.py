"""Each importer on a fixture tree in its real layout: counts, classes, splits, exact boxes."""

from __future__ import annotations

from pathlib import Path

import pytest
from raw_fixtures import write_fixture

from xsyn.data.contract import DatasetError
from xsyn.data.importers import IMPORTERS, ORIGIN, RawDataset, import_dataset
from xsyn.data.importers.coco import split_of
from xsyn.data.importers.txt_boxes import HIXRAY_CLASSES, OPIXRAY_CLASSES

FORMATS = ["pidray", "coco", "clcxray", "phantom", "opixray", "hixray", "sixray"]


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


@pytest.mark.parametrize("fmt", FORMATS)
def test_importer_reads_fixture_exactly(fmt, tmp_path):
    fx = write_fixture(fmt, tmp_path / "raw")
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
