"""Dirty entries of real copies: each kind is fixed or skipped and reported, or, with strict, fatal.

One case per kind, each made on a fixture in the real layout the defect was found in
(OPIXray boxes past the edge, CLCXray's ``".png"`` record, SIXray's missing images,
negatives, case, nameless objects; OPIXray's occlusion lists). Non-strict: the import
succeeds and ``prepare_report.json`` holds the entry (file, entry, reason, split, class)
and its counts. Strict: the import stops at it, naming the file, the entry and the
reason, with the output folder as it was.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from raw_fixtures import Fixture, write_layout

from xsyn.cli import main
from xsyn.data.contract import DatasetError
from xsyn.data.dirty import REASONS, DirtyLog
from xsyn.data.importers import RawDataset
from xsyn.data.prepare import PrepareOptions, check_boxes, format_summary, prepare_dataset

QUIET = PrepareOptions(progress=False, workers=1)
STRICT = PrepareOptions(progress=False, workers=1, strict=True)


def without_unlabelled(fx: Fixture) -> None:
    """The OPIXray fixture's images without annotation file are dirty entries too: remove them."""
    for p in fx.source.glob("*/*_image/unlabelled.jpg"):
        p.unlink()


def box_outside(fx: Fixture) -> None:
    without_unlabelled(fx)
    w, h = Image.open(fx.source / "test" / "test_image" / "000000.jpg").size
    (fx.source / "test" / "test_annotation" / "000000.txt").write_text(f"000000.jpg Scissor -3 2 {w + 2} {h}\n")


def image_missing(fx: Fixture) -> None:
    (fx.source / "JPEGImage" / "P00004.jpg").unlink()


def class_case(fx: Fixture) -> None:
    xml = fx.source / "Annotation" / "P00003.xml"
    xml.write_text(xml.read_text().replace("<name>Scissors</name>", "<name>scissors</name>"))


def file_name_case(fx: Fixture) -> None:
    (fx.source / "JPEGImage" / "P00005.jpg").rename(fx.source / "JPEGImage" / "p00005.jpg")


def list_entry_missing(fx: Fixture) -> None:
    without_unlabelled(fx)
    with open(fx.source / "test" / "test_knife-2.txt", "a") as f:
        f.write("999999\n")


def listed_twice(fx: Fixture) -> None:
    without_unlabelled(fx)
    with open(fx.source / "test" / "test_knife-2.txt", "a") as f:
        f.write("000000\n")  # already in test_knife-1.txt


# reason → (layout, writer kwargs, edit, entries expected, where (regex), split, class)
CASES = {
    "box_outside": ("opixray", {}, box_outside, 1, r"test_annotation/000000\.txt: line 1", "test_ol1", "Scissor"),
    "empty_file_name": ("clcxray", {"empty_name": True}, None, 1, r"CLCXray_train\.json: images\[3\] \(id 7547\)",
                        "train", None),
    "image_missing": ("sixray", {"nameless": 0}, image_missing, 1, r"Annotation/P00004\.xml", "unassigned", None),
    "no_annotation": ("sixray-release", {"nameless": 0}, None, 3, r"JPEGImage/N0000[0-2]\.jpg", "unassigned", None),
    "nameless_object": ("sixray", {"nameless": 2}, None, 2, r"Annotation/P0000[01]\.xml", None, None),
    "class_case": ("sixray", {"nameless": 0}, class_case, 1, r"Annotation/P00003\.xml: object 0", None, "Scissors"),
    "file_name_case": ("sixray", {"nameless": 0}, file_name_case, 1, r"Annotation/P00005\.xml", None, None),
    "list_entry_missing": ("opixray", {}, list_entry_missing, 1, r"test_knife-2\.txt: line 2", "test_ol2", None),
    "listed_twice": ("opixray", {}, listed_twice, 1, r"test_knife-2\.txt: line 2", "test_ol1", None),
}


def test_every_reason_has_a_case():
    assert set(CASES) == set(REASONS)


def make_case(reason: str, root: Path) -> tuple[str, Fixture]:
    layout, kw, edit, *_ = CASES[reason]
    fmt, fx = write_layout(layout, root, **kw)
    if edit:
        edit(fx)
    return fmt, fx


@pytest.mark.parametrize("reason", sorted(CASES))
def test_dirty_entry_is_reported(reason, tmp_path):
    _, _, _, n, where, split, cls = CASES[reason]
    fmt, fx = make_case(reason, tmp_path / "raw")
    out = tmp_path / "data" / "ds"
    summary = prepare_dataset(fmt, fx.source, out, QUIET)
    report = json.loads((out / "prepare_report.json").read_text())
    dirty = report["dirty"]
    action = REASONS[reason][0]
    assert dirty["counts"][action][reason] == n
    entries = [e for e in dirty["entries"] if e["reason"] == reason]
    assert len(entries) == n
    for e in entries:
        assert e["action"] == action and re.search(where, e["where"]), e
        assert e["detail"]
        if split is not None:
            assert e["split"] == split
        elif REASONS[reason][0] != "skipped" or reason == "nameless_object":  # the entry's image was kept
            assert e["split"] in ("train", "val", "test"), e
        if cls is not None:
            assert e["class"] == cls and dirty["per_class"][cls][reason] == n
    assert sum(c.get(reason, 0) for c in dirty["per_split"].values()) == n
    assert not dirty["strict"]
    assert report["splits"]["train"]["images"] > 0
    text = format_summary(summary)
    assert reason in text and f"{action}" in text and len(text.splitlines()) < 60


@pytest.mark.parametrize("reason", sorted(CASES))
def test_strict_stops_at_the_dirty_entry(reason, tmp_path):
    _, _, _, _, where, _, _ = CASES[reason]
    fmt, fx = make_case(reason, tmp_path / "raw")
    out = tmp_path / "data" / "ds"
    (out / "annotations").mkdir(parents=True)
    (out / "annotations" / "train.json").write_text("sentinel")
    with pytest.raises(DatasetError) as e:
        prepare_dataset(fmt, fx.source, out, STRICT)
    msg = str(e.value)
    assert re.search(where, msg) and reason in msg and "strict" in msg, msg
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["annotations", "annotations/train.json"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.mark.parametrize("layout", ["pidray", "pidray-extended-levels", "mscoco", "clcxray", "hixray", "sixray-voc"])
def test_clean_copies_pass_strict(layout, tmp_path):
    kw = {"nameless": 0} if layout.startswith("sixray") else {}
    fmt, fx = write_layout(layout, tmp_path / "raw", **kw)
    if layout == "hixray":
        without_unlabelled(fx)
    summary = prepare_dataset(fmt, fx.source, tmp_path / "ds", STRICT)
    assert summary["dirty"]["total"] == 0 and summary["dirty"]["strict"]


def test_cli_strict_flag_and_summary(tmp_path, capsys):
    fmt, fx = make_case("box_outside", tmp_path / "raw")
    out = tmp_path / "data" / "opi"
    assert main(["prepare", "--format", fmt, "--source", str(fx.source), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "clamped: 1" in text and "box_outside" in text and "test_ol1" in text
    assert main(["prepare", "--format", fmt, "--source", str(fx.source), "--out", str(tmp_path / "o2"),
                 "--no-progress", "--strict"]) == 1
    err = capsys.readouterr().err
    assert "000000.txt: line 1" in err and "box_outside" in err and "Traceback" not in err
    assert not (tmp_path / "o2").exists()
    # the config key does the same as the flag
    assert main(["prepare", "--format", fmt, "--source", str(fx.source), "--out", str(tmp_path / "o3"),
                 "--no-progress", "--set", "dataset.strict=true"]) == 1


def test_box_far_outside_stays_an_error(tmp_path):
    fmt, fx = write_layout("opixray", tmp_path / "raw")
    w, h = Image.open(fx.source / "test" / "test_image" / "000000.jpg").size
    (fx.source / "test" / "test_annotation" / "000000.txt").write_text(f"000000.jpg Scissor -9 2 {w} {h}\n")
    with pytest.raises(DatasetError, match=r"000000\.txt: line 1.*9 px outside.*clamp_px = 5"):
        prepare_dataset(fmt, fx.source, tmp_path / "ds", QUIET)
    prepare_dataset(fmt, fx.source, tmp_path / "ds", PrepareOptions(progress=False, workers=1, clamp_px=10))


def test_report_lists_at_most_a_bounded_number_per_reason(monkeypatch):
    import xsyn.data.dirty as dirty_module

    monkeypatch.setattr(dirty_module, "LISTED_PER_REASON", 2)
    log = DirtyLog()
    for i in range(5):
        log.add("no_annotation", f"N{i}.jpg", "no XML")
    log.add("nameless_object", "a.xml", "object 0 has no <name>")
    report = log.report({})
    assert report["counts"]["skipped"] == {"nameless_object": 1, "no_annotation": 5}
    assert len(report["entries"]) == 3 and report["left_out"] == {"no_annotation": 3}
    assert report["total"] == 6 and report["per_split"]["unassigned"] == {"nameless_object": 1, "no_annotation": 5}


# ---------------------------------------------------------------- clamping (property)


@given(
    st.integers(8, 80), st.integers(8, 80),
    st.floats(-20, 100, allow_nan=False), st.floats(-20, 100, allow_nan=False),
    st.floats(0.01, 100, allow_nan=False), st.floats(0.01, 100, allow_nan=False),
    st.sampled_from([0.0, 1.0, 2.5, 5.0]),
)
@settings(max_examples=400, deadline=None)
def test_clamping_property(width, height, x, y, w, h, clamp_px):
    """A box either ends inside its image (clamped and reported past 1 px) or is an error.

    Error iff it reaches farther than max(clamp_px, 1) px out or nothing of it is inside.
    A box already inside is left exactly as it was.
    """
    raw = RawDataset(categories=[{"id": 1, "name": "Gun"}])
    raw.images.append({"id": 1, "file_name": "a.png", "width": width, "height": height})
    raw.annotations.append({"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h]})
    out = max(0.0, -x, -y, x + w - width, y + h - height)
    inside_w = min(x + w, width) - max(x, 0.0)
    inside_h = min(y + h, height) - max(y, 0.0)
    try:
        check_boxes(raw, clamp_px)
    except DatasetError:
        assert out > max(clamp_px, 1.0) or inside_w <= 0 or inside_h <= 0
        return
    assert out <= max(clamp_px, 1.0)
    bx, by, bw, bh = raw.annotations[0]["bbox"]
    assert bx >= 0 and by >= 0 and bw > 0 and bh > 0
    assert bx + bw <= width + 1e-9 and by + bh <= height + 1e-9
    if out == 0:
        assert [bx, by, bw, bh] == [x, y, w, h]
    assert math.isclose(raw.annotations[0]["area"], bw * bh)
    reported = [e for e in raw.dirty.entries if e.reason == "box_outside"]
    assert len(reported) == (1 if out > 1.0 else 0)
