"""YOLO export/import: ultralytics layout, lossless COCO → YOLO → COCO round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from xsyn.data.contract import DatasetError, validate_coco
from xsyn.data.yolo import read_yolo, write_data_yaml, write_yolo_split


def _coco(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 100, 50)).save(root / "a.png")
    Image.new("RGB", (33, 77)).save(root / "sub" / "b.jpg")
    Image.new("RGB", (20, 20)).save(root / "empty.png")
    coco = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 9, "file_name": "sub/b.jpg", "width": 33, "height": 77},
            {"id": 11, "file_name": "empty.png", "width": 20, "height": 20},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [0, 0, 64, 48], "area": 3072, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [10.25, 3.5, 7.75, 20.125], "area": 1, "iscrowd": 0},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [1.333333, 2.1, 30.7, 74.9], "area": 1, "iscrowd": 0},
        ],
        "categories": [{"id": 5, "name": "Knife"}, {"id": 3, "name": "Gun"}],
    }
    validate_coco(coco, "fixture", root)
    return coco, root


def _boxes_by_file(coco, rename=lambda n: n):
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {img["id"]: rename(img["file_name"]) for img in coco["images"]}
    out: dict[str, list] = {rename(img["file_name"]): [] for img in coco["images"]}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], [float(v) for v in a["bbox"]]))
    return {k: sorted(v) for k, v in out.items()}


def test_write_layout_and_roundtrip(tmp_path):
    coco, root = _coco(tmp_path)
    out = tmp_path / "yolo"
    written = write_yolo_split(coco, root, out)
    assert [p.name for p in written] == ["a.png", "sub__b.jpg", "empty.png"]
    assert (out / "labels" / "empty.txt").read_text() == ""
    first = (out / "labels" / "a.txt").read_text().splitlines()
    # categories sorted by id: Gun (3) → 0, Knife (5) → 1
    assert first[0].startswith("1 0.5") and first[1].startswith("0 ")
    back = read_yolo(out, sorted(coco["categories"], key=lambda c: c["id"]))
    validate_coco(back, "back", out / "images")
    assert {c["id"] for c in back["categories"]} == {3, 5}
    assert _boxes_by_file(back) == _boxes_by_file(coco, lambda n: n.replace("/", "__"))


def test_prefix_links_and_data_yaml(tmp_path):
    coco, root = _coco(tmp_path)
    out = tmp_path / "mix"
    write_yolo_split(coco, root, out, prefix="real_")
    written = write_yolo_split(coco, root, out, class_index={5: 0, 3: 1}, prefix="syn_", link=False)
    assert (out / "images" / "real_a.png").stat().st_ino == (root / "a.png").stat().st_ino
    assert written[0].stat().st_ino != (root / "a.png").stat().st_ino
    assert (out / "labels" / "syn_a.txt").read_text().splitlines()[0].startswith("0 ")
    assert len(list((out / "labels").iterdir())) == 6
    y = write_data_yaml(tmp_path / "data.yaml", [out], [out / "images"], ["Gun", "Knife"])
    data = yaml.safe_load(y.read_text())
    assert data["train"] == data["val"] == [str((out / "images").resolve())]
    assert data["names"] == {0: "Gun", 1: "Knife"}


def test_names_list_gives_ids_1_to_k(tmp_path):
    coco, root = _coco(tmp_path)
    write_yolo_split(coco, root, tmp_path / "y")
    back = read_yolo(tmp_path / "y", ["Gun", "Knife"])
    assert back["categories"] == [{"id": 1, "name": "Gun"}, {"id": 2, "name": "Knife"}]


def test_box_outside_image_refused(tmp_path):
    coco, root = _coco(tmp_path)
    coco["annotations"][0]["bbox"] = [10, 10, 60, 10]
    with pytest.raises(DatasetError, match=r"a\.png.*annotation id 1.*outside"):
        write_yolo_split(coco, root, tmp_path / "y")


def test_stem_collision_refused(tmp_path):
    coco, root = _coco(tmp_path)
    Image.new("RGB", (64, 48)).save(root / "a.jpg")
    coco["images"].append({"id": 12, "file_name": "a.jpg", "width": 64, "height": 48})
    with pytest.raises(DatasetError, match="collides"):
        write_yolo_split(coco, root, tmp_path / "y")


def test_bad_label_file_named(tmp_path):
    coco, root = _coco(tmp_path)
    write_yolo_split(coco, root, tmp_path / "y")
    (tmp_path / "y" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(DatasetError, match=r"a\.txt: line 1"):
        read_yolo(tmp_path / "y", ["Gun", "Knife"])
    (tmp_path / "y" / "labels" / "a.txt").write_text("4 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match="class index 4"):
        read_yolo(tmp_path / "y", ["Gun", "Knife"])


def test_ultralytics_reads_the_export(tmp_path):
    """ultralytics' own dataset loader finds every image, class and box we wrote."""
    import numpy as np

    from xsyn.env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    coco, root = _coco(tmp_path)
    out = tmp_path / "yolo"
    write_yolo_split(coco, root, out)
    data = check_det_dataset(str(write_data_yaml(tmp_path / "data.yaml", [out], [out], ["Gun", "Knife"])))
    ds = YOLODataset(img_path=data["train"], data=data, task="detect", augment=False, imgsz=64, cache=False)
    got = {Path(lb["im_file"]).name: (lb["cls"].ravel().tolist(), lb["bboxes"]) for lb in ds.labels}
    assert set(got) == {"a.png", "sub__b.jpg", "empty.png"}
    cls, boxes = got["a.png"]
    assert cls == [1.0, 0.0]
    assert np.allclose(boxes[1], [(10.25 + 7.75 / 2) / 64, (3.5 + 20.125 / 2) / 48, 7.75 / 64, 20.125 / 48], atol=1e-6)
    assert got["empty.png"][0] == []
