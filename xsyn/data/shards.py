"""Shards of a synthetic set: each written atomically, then gathered into one dataset.

Below every producer of synthetic sets (the generator's methods in :mod:`xsyn.synthesis`,
TIP in :mod:`xsyn.baselines`): they all write through :class:`ShardWriter`.
Synthesis is split into shards of source images (one Snakemake job each). A shard folder
appears only when complete (written under a temporary name and renamed), so a killed run
resumes by redoing just the missing shards. ``gather`` merges the shard folders into the
synthetic-set contract of DESIGN §4: ``annotations.json`` + ``images/``, ids renumbered.

Wall-clock times are kept beside the annotations, in ``timing.json`` (per shard: counts,
device, seconds; per image: its share of its batch's seconds), so the annotations of a
re-run are byte-identical and a dataset's hash does not change with the machine's load.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from xsyn.data.contract import check_relative_name, load_coco, save_coco
from xsyn.io import atomic_dir, link_or_copy, read_json, write_json

T = TypeVar("T")

SHARD_ANNOTATIONS = "annotations.json"
TIMING = "timing.json"


def shard_slice(items: Sequence[T], index: int, count: int) -> list[T]:
    """Contiguous, deterministic part ``index`` of ``count`` (sizes differ by at most one)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    n = len(items)
    start, stop = index * n // count, (index + 1) * n // count
    return list(items[start:stop])


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:03d}-of-{count:03d}"


class ShardWriter:
    """Collect images and labels of one shard in a temporary folder; publish on success.

    >>> with ShardWriter(out, categories, method="xsyn-a") as shard:
    ...     shard.add_image(img, "000012_0.png", annotations=[{"bbox": ..., "category_id": 3}],
    ...                     provenance={"source_image_id": 12, "seed": 7})
    """

    def __init__(self, final_dir: str | os.PathLike, categories: list[dict[str, Any]], method: str):
        self.final_dir = Path(final_dir)
        self.categories = categories
        self.method = method
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.info: dict[str, Any] | None = None  # the shard's record (counts, device, seconds), set by the producer
        self.seconds: dict[str, float] = {}  # image file name → seconds (add_image's ``seconds``)
        self._ctx = atomic_dir(self.final_dir)
        self.tmp: Path | None = None

    def __enter__(self) -> ShardWriter:
        self.tmp = self._ctx.__enter__()
        (self.tmp / "images").mkdir()
        return self

    def add_image(
        self,
        image: Image.Image,
        file_name: str,
        annotations: list[dict[str, Any]],
        provenance: dict[str, Any],
        extra_images: dict[str, Image.Image] | None = None,
        seconds: float | None = None,
    ) -> int:
        """Save ``image`` as ``images/<file_name>`` with its boxes; returns the local image id.

        ``extra_images`` (e.g. the non-BOM variant) are saved beside it under
        ``images/<key>/<file_name>`` and referenced from the provenance; ``seconds`` (the
        time it took) goes to ``timing.json``.
        """
        assert self.tmp is not None, "use ShardWriter as a context manager"
        name = check_relative_name(file_name, str(self.final_dir), "add_image")
        path = self.tmp / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        if seconds is not None:
            self.seconds[name] = round(float(seconds), 4)
        prov = {"method": self.method, **provenance}
        for key, extra in (extra_images or {}).items():
            extra_name = f"{key}/{name}"
            (self.tmp / "images" / extra_name).parent.mkdir(parents=True, exist_ok=True)
            extra.save(self.tmp / "images" / extra_name)
            prov[f"{key}_file_name"] = extra_name
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": name, "width": image.width, "height": image.height,
             "xsyn": prov}
        )
        for ann in annotations:
            x, y, w, h = (float(v) for v in ann["bbox"])
            record = {"iscrowd": 0, "area": w * h, **ann, "bbox": [x, y, w, h]}
            record["id"] = len(self.annotations) + 1
            record["image_id"] = image_id
            self.annotations.append(record)
        return image_id

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            assert self.tmp is not None
            coco = {"images": self.images, "annotations": self.annotations,
                    "categories": self.categories}
            save_coco(self.tmp / SHARD_ANNOTATIONS, coco)
            write_json(self.tmp / TIMING, {"shard": self.info, "images": self.seconds})
        return bool(self._ctx.__exit__(exc_type, exc, tb))


def gather(shard_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Merge complete shard folders into one synthetic set (atomic; ids renumbered); their
    ``timing.json`` files merge into one (``shards``: each shard's record; ``images``)."""
    out_dir = Path(out_dir)
    merged: dict[str, Any] = {"images": [], "annotations": [], "categories": None}
    timing: dict[str, Any] = {"shards": [], "images": {}}
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for shard in map(Path, shard_dirs):
            coco = load_coco(shard / SHARD_ANNOTATIONS, shard / "images")
            if (shard / TIMING).is_file():
                record = read_json(shard / TIMING)
                timing["shards"].append(record["shard"])
                timing["images"].update(record["images"])
            if merged["categories"] is None:
                merged["categories"] = coco["categories"]
            elif coco["categories"] != merged["categories"]:
                raise ValueError(f"{shard}: categories differ from the first shard's")
            id_map: dict[int, int] = {}
            for img in coco["images"]:
                new_id = len(merged["images"]) + 1
                id_map[img["id"]] = new_id
                merged["images"].append({**img, "id": new_id})
            for ann in coco["annotations"]:
                merged["annotations"].append(
                    {**ann, "id": len(merged["annotations"]) + 1, "image_id": id_map[ann["image_id"]]}
                )
            for src in (shard / "images").rglob("*"):
                if src.is_file():
                    dest = tmp / "images" / src.relative_to(shard / "images")
                    if dest.exists():
                        raise ValueError(f"{shard}: image {dest.name} also exists in another shard")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    link_or_copy(src, dest)
        merged["categories"] = merged["categories"] or []
        write_json(tmp / TIMING, timing)
        save_coco(tmp / SHARD_ANNOTATIONS, merged)
    return merged

