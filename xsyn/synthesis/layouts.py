"""Layouts: which boxes of a real scan are (re-)generated, with which class.

- **Xsyn-M** re-generates every ground-truth item in place with its own class.
- **Xsyn-A** keeps the real items and adds one at a benign-object candidate whose area
  lies in ``area_window`` and whose IoU with every ground-truth box is below ``max_iou``;
  its class is drawn from the size group that fits the candidate's area.
- **free** is plain text-to-image: no boxes are requested, the classes come from the
  source scan, and boxes are read from the attention maps afterwards.

A layout is pure data drawn from a seeded generator, so one seed gives one layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xsyn.data.boxes import area_xywh, iou_matrix_xywh
from xsyn.data.contract import caption_for, phrase_for

LAYOUTS = ("xsyn-m", "xsyn-a", "free")


@dataclass
class Layout:
    """What one source scan becomes. Boxes are xywh pixels of the source image."""

    boxes: list[list[float]]               # generated (requested) boxes; [] for free
    classes: list[str]                     # class name of each generated item
    category_ids: list[int]
    kept: list[dict[str, Any]] = field(default_factory=list)  # real annotations kept as is
    bom_region: list[float] | None = None  # benign region blended over the items (BOM)
    inpaint: bool = True                   # False: plain text-to-image (free)

    @property
    def prompt(self) -> str:
        return caption_for(self.classes)

    @property
    def phrases(self) -> list[str]:
        return [phrase_for(c) for c in self.classes]


def size_group(area_share: float, thresholds: Sequence[float]) -> str:
    """Area share of the image → ``small`` (< first), ``large`` (> second) or ``medium``."""
    lo, hi = thresholds
    return "small" if area_share < lo else "large" if area_share > hi else "medium"


def group_classes(group: str, class_names: Sequence[str],
                  size_groups: Mapping[str, Sequence[str]]) -> list[str]:
    """Dataset classes of a group; classes listed in no group are ``medium``.

    A group with no class of this dataset falls back to all classes, so a dataset with
    other names than PIDray still gets items.
    """
    listed = {c for names in size_groups.values() for c in names}
    if group == "medium":
        members = [c for c in class_names if c not in listed]
    else:
        members = [c for c in class_names if c in set(size_groups.get(group, ()))]
    return members or list(class_names)


def filter_candidates(regions: Sequence[Sequence[float]], gt_boxes: Sequence[Sequence[float]],
                      image_area: float, area_window: Sequence[float],
                      max_iou: float) -> list[list[float]]:
    """Candidates whose area share is inside the window and IoU < ``max_iou`` with all GT."""
    out = []
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    for r in regions:
        share = area_xywh(r) / image_area
        if not area_window[0] <= share <= area_window[1]:
            continue
        if len(gt) and iou_matrix_xywh(np.asarray([r]), gt).max() >= max_iou:
            continue
        out.append([float(v) for v in r])
    return out


def xsyn_m_layout(anns: Sequence[Mapping[str, Any]], names: Mapping[int, str],
                  bom_candidates: Sequence[Sequence[float]], rng: np.random.Generator) -> Layout | None:
    """Every ground-truth box re-generated with its class; ``None`` for a scan without items."""
    if not anns:
        return None
    return Layout(
        boxes=[[float(v) for v in a["bbox"]] for a in anns],
        classes=[names[a["category_id"]] for a in anns],
        category_ids=[int(a["category_id"]) for a in anns],
        bom_region=_pick(bom_candidates, rng),
    )


def xsyn_a_layout(anns: Sequence[Mapping[str, Any]], names: Mapping[int, str],
                  candidates: Sequence[Sequence[float]], image_area: float,
                  cfg: Mapping[str, Any], rng: np.random.Generator) -> Layout | None:
    """Keep the real items, add one at a filtered candidate; ``None`` when none fits.

    ``candidates`` are raw benign-object boxes; the area window and IoU limit of ``cfg``
    (``synthesis.xsyn_a``) are applied here. BOM uses another candidate when there is one.
    """
    gt = [a["bbox"] for a in anns]
    ok = filter_candidates(candidates, gt, image_area, cfg["area_window"], cfg["max_iou"])
    if not ok:
        return None
    i = int(rng.integers(len(ok)))
    box = ok[i]
    group = size_group(area_xywh(box) / image_area, cfg["size_thresholds"])
    by_name = {n: cid for cid, n in names.items()}
    choices = group_classes(group, [names[c] for c in sorted(names)], cfg["size_groups"])
    cls = choices[int(rng.integers(len(choices)))]
    rest = ok[:i] + ok[i + 1:]
    return Layout(boxes=[box], classes=[cls], category_ids=[by_name[cls]],
                  kept=[dict(a) for a in anns], bom_region=_pick(rest or ok, rng))


def free_layout(anns: Sequence[Mapping[str, Any]], names: Mapping[int, str]) -> Layout | None:
    """Text-to-image with the source scan's distinct classes; no boxes, no background."""
    cids = list(dict.fromkeys(int(a["category_id"]) for a in anns))
    if not cids:
        return None
    return Layout(boxes=[], classes=[names[c] for c in cids], category_ids=cids, inpaint=False)


def make_layout(kind: str, anns: Sequence[Mapping[str, Any]], names: Mapping[int, str],
                candidates: Sequence[Sequence[float]], image_size: tuple[int, int],
                cfg: Mapping[str, Any], seed: int) -> Layout | None:
    """Dispatch on ``kind`` (``LAYOUTS``); ``cfg`` is ``synthesis.xsyn_a``."""
    rng = np.random.default_rng(seed)
    w, h = image_size
    if kind == "xsyn-m":
        gt = [a["bbox"] for a in anns]
        bom = filter_candidates(candidates, gt, w * h, cfg["area_window"], cfg["max_iou"])
        return xsyn_m_layout(anns, names, bom, rng)
    if kind == "xsyn-a":
        return xsyn_a_layout(anns, names, candidates, w * h, cfg, rng)
    if kind == "free":
        return free_layout(anns, names)
    raise ValueError(f"unknown layout {kind!r}; expected one of {LAYOUTS}")


def _pick(items: Sequence[Sequence[float]], rng: np.random.Generator) -> list[float] | None:
    return [float(v) for v in items[int(rng.integers(len(items)))]] if len(items) else None
