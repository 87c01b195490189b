"""The training mix of one detector run: a real subset plus extra labelled sets, in YOLO layout.

A run trains on ``data/<dataset>/annotations/train_pNN.json`` (share 100 = ``train.json``)
plus zero or more extra sets: synthetic sets ``<synthetic_root>/<source>/annotations.json``
and, for the information-budget control (source ``budget``), a split of another prepared
dataset (the generator's own pre-training scans). Validation is always the real
``val.json``: the test split never reaches training.

How many images of each set one epoch shows is the run's :class:`EpochPlan`
(``detection.mix``): with ``equal_steps`` every arm but real-only sees
``images_per_epoch`` × the real subset per epoch, ``real_fraction`` of them real, so arms
differ in their data and not in their optimizer steps (DESIGN §8); the ``real-repeat``
control fills the whole epoch with the real subset. Without it (the smoke default) an
epoch is the real subset plus each extra set × ``synthetic_repeat``. A repeat factor's
fractional part draws a seeded random share of a set's images.

Classes follow the real set: category ids sorted → YOLO indices 0..K-1; the extra sets'
categories are matched to them by name. :func:`write_classes` stores that order beside
the weights, so predictions map back to the dataset's category ids.
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xsyn.data.boxes import clip_xywh
from xsyn.data.contract import DatasetError, annotation_path, load_coco, load_split, train_split
from xsyn.data.yolo import default_class_index, write_data_yaml, write_yolo_split, yolo_names
from xsyn.io import read_json, write_json
from xsyn.methods import BUDGET, REAL_REPEAT


def load_real_train(dataset: str | os.PathLike, share: float) -> dict[str, Any]:
    split = train_split(share)
    path = annotation_path(dataset, split)
    if not path.is_file():
        raise DatasetError(f"{path}: no training subset for share {share:g}% (run `xsyn prepare` with this share)")
    return load_split(dataset, split)


def clip_annotations(coco: dict[str, Any]) -> dict[str, Any]:
    """Clip boxes to their image and drop empty ones (the contract tolerates 1 px overhang)."""
    coco = copy.copy(coco)
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    anns = []
    for ann in coco["annotations"]:
        box = clip_xywh(ann["bbox"], *sizes[ann["image_id"]])
        if box[2] > 0 and box[3] > 0:
            anns.append({**ann, "bbox": box})
    coco["annotations"] = anns
    return coco


def align_categories(syn: dict[str, Any], real: dict[str, Any], source: str) -> dict[str, Any]:
    """Renumber a synthetic set's category ids to the real set's, matching by class name."""
    real_ids = {c["name"]: c["id"] for c in real["categories"]}
    remap = {}
    for c in syn["categories"]:
        if c["name"] not in real_ids:
            raise DatasetError(
                f"{source}: category {c['name']!r} is not a class of the real dataset "
                f"({sorted(real_ids)})"
            )
        remap[c["id"]] = real_ids[c["name"]]
    syn = copy.copy(syn)
    syn["annotations"] = [{**a, "category_id": remap[a["category_id"]]} for a in syn["annotations"]]
    syn["categories"] = copy.deepcopy(real["categories"])
    return syn


def repeat_images(coco: dict[str, Any], repeat: float, seed: int) -> list[dict[str, Any]]:
    """Copies of ``coco`` making ``repeat`` passes: ⌊repeat⌋ whole ones + a seeded random share."""
    if repeat <= 0:
        raise ValueError(f"synthetic_repeat must be > 0, got {repeat}")
    copies = [coco] * int(math.floor(repeat))
    frac = repeat - math.floor(repeat)
    n = round(frac * len(coco["images"]))
    if n > 0:
        keep = {img["id"] for img in random.Random(seed).sample(coco["images"], n)}
        copies.append({
            **coco,
            "images": [img for img in coco["images"] if img["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        })
    return copies


@dataclass(frozen=True)
class LabelledSet:
    """One set of labelled images a run may train on: annotations, image folder, and what
    it is (reported in ``run.json``)."""

    name: str
    kind: str  # "synthetic" | "budget"
    annotations: Path
    images: Path

    def load(self, real: dict[str, Any]) -> dict[str, Any]:
        if not self.annotations.is_file():
            raise DatasetError(f"{self.annotations}: {self.kind} set {self.name!r} not found")
        return clip_annotations(align_categories(load_coco(self.annotations), real, str(self.annotations)))


def extra_sets(sources: Sequence[str], synthetic_root: str | os.PathLike,
               budget: tuple[str | os.PathLike, str] | None = None) -> list[LabelledSet]:
    """The labelled sets behind a run's sources: a synthetic set per method, the budget
    dataset's split for ``budget`` (``(dataset folder, split)``); ``real-repeat`` adds none."""
    sets = []
    for source in sources:
        if source == REAL_REPEAT:
            continue
        if source == BUDGET:
            if budget is None:
                raise ValueError("source 'budget' needs the budget dataset (detection.budget, --budget)")
            root, split = Path(budget[0]), budget[1]
            sets.append(LabelledSet(BUDGET, "budget", annotation_path(root, split), root / "images"))
        else:
            root = Path(synthetic_root) / source
            sets.append(LabelledSet(source, "synthetic", root / "annotations.json", root / "images"))
    return sets


@dataclass(frozen=True)
class EpochPlan:
    """Repeat factor per set for one epoch (the real subset, then each extra set)."""

    real: float
    extra: dict[str, float]

    @classmethod
    def make(cls, n_real: int, extra_sizes: Mapping[str, int], mix_cfg: Mapping[str, Any] | None,
             synthetic_repeat: float = 1.0, real_repeat: bool = False) -> EpochPlan:
        """The plan for ``n_real`` real images and extra sets of ``extra_sizes`` images.

        ``mix_cfg`` is ``detection.mix``; without ``equal_steps`` (or ``mix_cfg`` None, the
        smoke default) the real subset counts once and each extra set ``synthetic_repeat``
        times. With it: real-only stays one pass over the real subset; every other arm shows
        ``N = round(images_per_epoch × n_real)`` images, ``round(real_fraction × N)`` of them
        real (``real-repeat``: all N) and the rest split evenly over the extra sets.
        """
        if real_repeat and extra_sizes:
            raise ValueError(f"{REAL_REPEAT!r} trains on the real subset alone")
        if not (mix_cfg and mix_cfg["equal_steps"]):
            if real_repeat:
                raise ValueError(f"source {REAL_REPEAT!r} needs detection.mix.equal_steps: true")
            return cls(1.0, {name: float(synthetic_repeat) for name in extra_sizes})
        if not extra_sizes and not real_repeat:
            return cls(1.0, {})
        total = round(float(mix_cfg["images_per_epoch"]) * n_real)
        n_real_epoch = total if real_repeat else round(float(mix_cfg["real_fraction"]) * total)
        slots = split_evenly(total - n_real_epoch, list(extra_sizes))
        for name, size in extra_sizes.items():
            if size == 0 and slots[name]:
                raise DatasetError(f"extra set {name!r} has no image to fill {slots[name]} places per epoch")
        return cls(n_real_epoch / n_real, {name: slots[name] / max(size, 1) for name, size in extra_sizes.items()})


def split_evenly(total: int, names: list[str]) -> dict[str, int]:
    """``total`` places shared by ``names`` as evenly as integers allow (the first get the rest)."""
    if not names:
        return {}
    base, rest = divmod(total, len(names))
    return {name: base + (i < rest) for i, name in enumerate(names)}


def provenance_outside(syn: dict[str, Any], real_ids: set[int]) -> dict[str, int] | None:
    """How many synthetic images were made from (or took a pasted item from) a real scan
    outside ``real_ids``: the equal-information check of DESIGN §8 (``None`` without provenance)."""
    records = [img.get("xsyn") for img in syn["images"] if isinstance(img.get("xsyn"), dict)]
    if not records:
        return None
    sources = [r["source_image_id"] for r in records if "source_image_id" in r]
    donors = [p["donor_image_id"] for r in records for p in r.get("pasted", []) if "donor_image_id" in p]
    return {"source_scans": sum(i not in real_ids for i in sources),
            "donor_scans": sum(i not in real_ids for i in donors)}


@dataclass
class Mix:
    """What :func:`build_mix` wrote: YOLO folders, ``data.yaml`` files, images per epoch of
    each set (``counts``) and the labelled data the run touches (``labelled_data``)."""

    names: list[str]
    classes: list[dict[str, Any]]
    real_dirs: list[Path] = field(default_factory=list)
    synthetic_dirs: list[Path] = field(default_factory=list)  # every extra set (budget included)
    val_dirs: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    labelled_data: dict[str, dict[str, Any]] = field(default_factory=dict)

    def data_yaml(self, path: Path, train: Sequence[Path]) -> Path:
        return write_data_yaml(path, list(train), self.val_dirs, self.names)


def write_repeats(coco: dict[str, Any], images: Path, out_dir: Path, stem: str, class_index: dict[int, int],
                  repeat: float, seed: int, first_plain: bool = False) -> tuple[list[Path], int, set[int]]:
    """``coco`` × ``repeat`` as YOLO folders ``<stem>-r<k>`` (``first_plain``: the first pass
    is ``<stem>`` without a file prefix); returns the folders, images per epoch, distinct ids."""
    dirs, n, ids = [], 0, set()
    for k, part in enumerate(repeat_images(coco, repeat, seed)):
        plain = first_plain and k == 0
        d = out_dir / (stem if plain else f"{stem}-r{k}")
        write_yolo_split(part, images, d, class_index, prefix="" if plain else f"r{k}_")
        dirs.append(d)
        n += len(part["images"])
        ids.update(img["id"] for img in part["images"])
    return dirs, n, ids


def build_mix(
    dataset: str | os.PathLike,
    share: float,
    sources: Sequence[str],
    synthetic_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    repeat: float = 1.0,
    seed: int = 0,
    mix_cfg: Mapping[str, Any] | None = None,
    budget: tuple[str | os.PathLike, str] | None = None,
) -> Mix:
    """Export the real subset, every extra set and ``val`` to ``out_dir`` as the run's
    :class:`EpochPlan` says (``repeat``: ``synthetic_repeat``; ``mix_cfg``: ``detection.mix``)."""
    dataset, out_dir = Path(dataset), Path(out_dir)
    real = load_real_train(dataset, share)
    val = load_split(dataset, "val")
    class_index = default_class_index(real)
    names = yolo_names(real, class_index)
    classes = [{"index": class_index[c["id"]], "id": c["id"], "name": c["name"]}
               for c in sorted(real["categories"], key=lambda c: class_index[c["id"]])]
    if [c["name"] for c in val["categories"]] != [c["name"] for c in real["categories"]]:
        raise DatasetError(f"{annotation_path(dataset, 'val')}: categories differ from the training split")
    mix = Mix(names=names, classes=classes)
    sets = extra_sets(sources, synthetic_root, budget)
    extras = {s.name: s.load(real) for s in sets}
    plan = EpochPlan.make(len(real["images"]), {k: len(v["images"]) for k, v in extras.items()},
                          mix_cfg, repeat, real_repeat=REAL_REPEAT in sources)
    real_ids = {img["id"] for img in real["images"]}

    mix.real_dirs, n, _ = write_repeats(clip_annotations(real), dataset / "images", out_dir, "real",
                                        class_index, plan.real, seed, first_plain=True)
    mix.counts["real"] = n
    mix.labelled_data["real"] = {"set": str(annotation_path(dataset, train_split(share))), "kind": "real",
                                 "images": len(real_ids), "available": len(real_ids),
                                 "boxes": len(real["annotations"]), "per_epoch": n}
    val_dir = out_dir / "val"
    write_yolo_split(clip_annotations(val), dataset / "images", val_dir, class_index)
    mix.val_dirs.append(val_dir)
    mix.counts["val"] = len(val["images"])

    for s in sets:
        coco = extras[s.name]
        dirs, n, ids = write_repeats(coco, s.images, out_dir, f"syn-{s.name}", class_index, plan.extra[s.name], seed)
        mix.synthetic_dirs.extend(dirs)
        mix.counts[s.name] = n
        mix.labelled_data[s.name] = {
            "set": str(s.annotations), "kind": s.kind, "images": len(ids), "available": len(coco["images"]),
            "boxes": sum(a["image_id"] in ids for a in coco["annotations"]), "per_epoch": n,
            "real_scans_outside_subset": provenance_outside(coco, real_ids),
        }
    return mix


def write_classes(path: str | os.PathLike, classes: list[dict[str, Any]]) -> None:
    write_json(path, {"classes": classes})


def read_classes(path: str | os.PathLike) -> dict[int, int]:
    """``classes.json`` → YOLO class index → dataset category id."""
    data = read_json(path)
    try:
        return {int(c["index"]): int(c["id"]) for c in data["classes"]}
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{path}: expected {{'classes': [{{index, id, name}}, ...]}}") from None
