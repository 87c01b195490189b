"""Property tests: box geometry, the YOLO label round trip, and the txt/XML annotation parsers."""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.data.boxes import (
    area_xywh,
    clip_xywh,
    iou_matrix_xywh,
    iou_xywh,
    xywh_to_unit_xyxy,
    xywh_to_xyxy,
    xywh_to_yolo,
    xyxy_to_xywh,
    yolo_to_xywh,
)
from xsyn.data.contract import DatasetError
from xsyn.data.importers.sixray import parse_voc_xml
from xsyn.data.importers.txt_boxes import parse_txt_line
from xsyn.data.yolo import ROUND_PX, label_lines

settings.register_profile("xsyn", max_examples=200, deadline=None)
settings.load_profile("xsyn")

coord = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
size = st.floats(0.01, 1e4, allow_nan=False, allow_infinity=False)
xywh = st.tuples(coord, coord, size, size).map(list)
image_side = st.integers(1, 8000)


@st.composite
def box_in_image(draw, decimals: int = 2):
    """(box, width, height): a positive box inside the image, coordinates with ``decimals`` decimals."""
    w, h = draw(image_side), draw(image_side)
    q = 10**decimals
    x1 = draw(st.integers(0, w * q - 1))
    y1 = draw(st.integers(0, h * q - 1))
    x2 = draw(st.integers(x1 + 1, w * q))
    y2 = draw(st.integers(y1 + 1, h * q))
    return [x1 / q, y1 / q, (x2 - x1) / q, (y2 - y1) / q], w, h


@given(xywh, image_side, image_side)
def test_unit_xyxy_is_the_clipped_box_scaled(b, w, h):
    u = xywh_to_unit_xyxy(b, w, h)
    assert all(0.0 <= v <= 1.0 for v in u) and u[0] <= u[2] and u[1] <= u[3]
    x1, y1, x2, y2 = xywh_to_xyxy(clip_xywh(b, w, h))
    assert u == pytest.approx([x1 / w, y1 / h, x2 / w, y2 / h], abs=1e-9)


@given(xywh)
def test_xyxy_xywh_round_trip(b):
    assert xyxy_to_xywh(xywh_to_xyxy(b)) == pytest.approx(b, abs=1e-9, rel=1e-9)


@given(xywh, image_side, image_side)
def test_clip_inside_image_smaller_and_idempotent(b, w, h):
    c = clip_xywh(b, w, h)
    x1, y1, x2, y2 = xywh_to_xyxy(c)
    assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
    assert area_xywh(c) <= area_xywh(b) * (1 + 1e-9) + 1e-9
    assert clip_xywh(c, w, h) == pytest.approx(c, abs=1e-9)


@given(xywh, xywh)
def test_iou_symmetric_bounded_and_matches_matrix(a, b):
    v = iou_xywh(a, b)
    assert 0.0 <= v <= 1.0 + 1e-12
    assert v == pytest.approx(iou_xywh(b, a), abs=1e-12)
    m = iou_matrix_xywh(np.array([a]), np.array([b]))
    assert m.shape == (1, 1) and m[0, 0] == pytest.approx(v, abs=1e-9)


@given(xywh)
def test_iou_with_itself_is_one(a):
    assert iou_xywh(a, a) == pytest.approx(1.0)


@given(xywh, st.floats(1, 1e3), st.floats(1, 1e3))
def test_iou_disjoint_is_zero(a, dx, dy):
    b = [a[0] + a[2] + dx, a[1] + a[3] + dy, a[2], a[3]]
    assert iou_xywh(a, b) == 0.0


@given(xywh, image_side, image_side)
def test_yolo_conversion_round_trip(b, w, h):
    assert yolo_to_xywh(xywh_to_yolo(b, w, h), w, h) == pytest.approx(b, rel=1e-9, abs=1e-6)


@given(box_in_image(decimals=2))
def test_yolo_label_text_round_trip_is_exact(case):
    """What write_yolo_split writes and read_yolo reads gives back the very same box."""
    box, w, h = case
    (line,) = label_lines([{"id": 1, "category_id": 4, "bbox": box}], w, h, {4: 0}, "img")
    cls, *vals = line.split()
    back = [round(v, ROUND_PX) + 0.0 for v in yolo_to_xywh([float(v) for v in vals], w, h)]
    assert cls == "0" and back == box
    assert all(0.0 <= float(v) <= 1.0 for v in vals)


# ---------------------------------------------------------------- parsers

token = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-."), min_size=1, max_size=12)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(token, min_size=1, max_size=3), token, st.lists(finite, min_size=4, max_size=4))
def test_txt_line_parser_round_trip(image_parts, cls, corners):
    image = " ".join(image_parts)
    line = f"{image} {cls} " + " ".join(repr(v) for v in corners)
    assert parse_txt_line(line, "f.txt: line 1") == (image, cls, corners)


@given(st.text(max_size=60))
def test_txt_line_parser_only_raises_dataset_error(line):
    try:
        image, cls, corners = parse_txt_line(line, "f.txt: line 7")
    except DatasetError as e:
        assert "f.txt: line 7" in str(e)
    else:
        assert len(corners) == 4 and all(math.isfinite(v) for v in corners) and cls


xml_name = st.one_of(st.none(), st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=10))
corner_ints = st.lists(st.integers(-100, 5000), min_size=4, max_size=4)


@given(st.lists(st.tuples(xml_name, corner_ints), max_size=6), st.one_of(st.none(), token))
def test_voc_xml_parser_round_trip(objects, filename):
    parts = []
    for name, (x1, y1, x2, y2) in objects:
        name_xml = f"<name>{escape(name)}</name>" if name is not None else ""
        parts.append(f"<object>{name_xml}<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                     f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    fn = f"<filename>{escape(filename)}</filename>" if filename else ""
    got_file, got = parse_voc_xml(f"<annotation>{fn}{''.join(parts)}</annotation>", "a.xml")
    assert got_file == filename
    assert [(n, c, k) for n, c, k in got] == [(n, [float(v) for v in c], k) for k, (n, c) in enumerate(objects)]


@given(st.text(max_size=80))
def test_voc_xml_parser_only_raises_dataset_error(text):
    try:
        parse_voc_xml(text, "b.xml")
    except DatasetError as e:
        assert str(e).startswith("b.xml")
