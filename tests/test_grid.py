"""Contact sheets: geometry, box styles, heat maps and the ``xsyn show`` command."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from xsyn.cli import main
from xsyn.data.contract import save_coco
from xsyn.report.grid import GridItem, colour_for, draw_grid, draw_item


def _grey(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), 200, np.uint8)


def test_grid_size_and_columns():
    items = [GridItem(_grey()) for _ in range(5)]
    sheet = draw_grid(items, cols=2, cell=50, gap=4)
    assert sheet.size == (2 * 50 + 3 * 4, 3 * 50 + 4 * 4)
    assert draw_grid(items[:1], cols=4, cell=50, gap=0).size == (50, 50)
    with pytest.raises(ValueError):
        draw_grid([], cols=2)


def test_solid_box_in_class_colour_and_dashed_box_has_gaps():
    labels = ["Gun", "Knife"]
    item = GridItem(_grey(100), boxes=[([10, 60, 30, 30], "Knife")], dashed=[([50, 10, 40, 40], "Gun")])
    tile = np.asarray(draw_item(item, cell=100, labels=labels))
    knife, gun = colour_for("Knife", labels), colour_for("Gun", labels)
    assert knife != gun
    # the left edge of the solid box is continuous
    assert all(tuple(tile[y, 10]) == knife for y in range(62, 89))
    # the left edge of the dashed box alternates colour and background
    edge = [tuple(tile[y, 50]) == gun for y in range(12, 48)]
    assert 0.2 < np.mean(edge) < 0.8
    # boxes scale with the tile
    big = np.asarray(draw_item(item, cell=200, labels=labels))
    assert tuple(big[150, 20]) == knife


def test_heatmaps_are_drawn_beside_the_scan():
    heat = np.zeros((16, 16), np.float32)
    heat[4:8, 4:8] = 1.0
    tile = draw_item(GridItem(_grey(), heatmaps=[("Gun", heat), ("Knife", heat * 0)]), cell=64)
    assert tile.size == (3 * 64, 64)
    arr = np.asarray(tile, np.float32)
    hot, cold = arr[24, 64 + 24], arr[56, 64 + 56]
    assert hot.sum() > cold.sum() + 100


def test_show_command(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images = []
    for i in range(3):
        Image.fromarray(_grey(80)).save(img_dir / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 80, "height": 80})
    coco = {
        "images": images,
        "categories": [{"id": 1, "name": "Gun"}, {"id": 2, "name": "Knife"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 30, 30], "area": 900, "iscrowd": 0,
             "requested_bbox": [8, 8, 40, 40]},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [40, 40, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }
    save_coco(tmp_path / "a.json", coco)
    np.savez(tmp_path / "maps.npz", **{"2:Knife": np.eye(8, dtype=np.float32)})
    out = tmp_path / "sheet.png"
    rc = main(["show", "--annotations", str(tmp_path / "a.json"), "--images", str(img_dir),
               "--out", str(out), "--n", "2", "--cols", "1", "--cell", "64",
               "--heatmaps", str(tmp_path / "maps.npz")])
    assert rc == 0
    sheet = Image.open(out)
    # image 2 (with a map) comes first and is two tiles wide
    assert sheet.width >= 2 * 64 and sheet.height > 2 * 64
    # a missing image is a clear error, not a traceback
    (img_dir / "0.png").unlink()
    assert main(["show", "--annotations", str(tmp_path / "a.json"), "--images", str(img_dir),
                 "--out", str(out), "--n", "3"]) == 1
