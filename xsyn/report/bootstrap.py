"""COCO AP of a detector on a resample of its test images, as pycocotools computes it.

The study's confidence intervals resample test images with replacement (a drawn image
counts as often as it is drawn, each copy a distinct image). pycocotools matches
detections to ground truth one image and class at a time (``COCOeval.evaluateImg``), so a
copy's matches are its original's; only ``COCOeval.accumulate`` (sort every detection of
a class by score, precision-recall, the 101-point interpolation) sees the resample.

:func:`evaluate_images` runs pycocotools' ``evaluate`` once per run and keeps each image's
matches (all areas, 100 detections, AP@[.5:.95]); :func:`resampled_ap` then does
``accumulate`` for a resample with numpy on those arrays, step for step (the same stable
sort, cumulative sums, precision envelope and ``searchsorted`` at the recall thresholds).
tests/test_study.py checks it against pycocotools run on the resampled dataset itself,
which takes ~10× longer: 1,000 resamples × dozens of runs would not fit the CPU budget.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xsyn.detection.evaluate import check_detections, load_results, prepare_gt

MAX_DETS = 100


@dataclass
class ClassMatches:
    """One class's detections over all test images, image by image (image ``i`` owns
    ``start[i] : start[i] + count[i]``), as ``evaluateImg`` left them."""

    scores: np.ndarray  # [D] in each image's own score order
    tp: np.ndarray  # [T, D] int8: matched at IoU threshold t to a counted ground-truth box
    fp: np.ndarray  # [T, D] int8: unmatched at t, and not matched to an ignored (crowd) box
    start: np.ndarray  # [I]
    count: np.ndarray  # [I]
    n_gt: np.ndarray  # [I] ground-truth boxes that count (not ignored)


@dataclass
class ImageMatches:
    """One detector run on one test split: per-class matches and the recall thresholds."""

    image_ids: list[int]
    classes: list[ClassMatches]
    rec_thrs: np.ndarray

    def ap(self, images: np.ndarray | None = None) -> float:
        return resampled_ap(self, np.arange(len(self.image_ids)) if images is None else images)


def evaluate_images(coco: Mapping[str, Any], detections: Sequence[Mapping[str, Any]],
                    source: str = "detections") -> ImageMatches:
    """pycocotools ``evaluate`` (area all, 100 detections) of ``detections`` on ``coco``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = prepare_gt(dict(coco))
    check_detections(list(detections), gt, source)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, load_results(coco_gt, list(detections)), iouType="bbox")
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [ev.params.areaRng[0]], ["all"], [MAX_DETS]
        ev.evaluate()
    p = ev.params
    n_img, n_thr = len(p.imgIds), len(p.iouThrs)
    classes = []
    for k in range(len(p.catIds)):
        entries = ev.evalImgs[k * n_img:(k + 1) * n_img]
        count = np.array([0 if e is None else len(e["dtScores"]) for e in entries], int)
        empty = np.zeros((n_thr, 0), bool)
        matched = np.concatenate([empty] + [e["dtMatches"] != 0 for e in entries if e is not None], axis=1)
        ignored = np.concatenate([empty] + [e["dtIgnore"].astype(bool) for e in entries if e is not None], axis=1)
        classes.append(ClassMatches(
            scores=np.concatenate([[]] + [e["dtScores"] for e in entries if e is not None]).astype(float),
            tp=(matched & ~ignored).astype(np.int8),
            fp=(~matched & ~ignored).astype(np.int8),
            start=np.concatenate([[0], np.cumsum(count)[:-1]]).astype(int),
            count=count,
            n_gt=np.array([0 if e is None else int(np.count_nonzero(e["gtIgnore"] == 0)) for e in entries], int),
        ))
    return ImageMatches(list(p.imgIds), classes, np.asarray(p.recThrs))


def resampled_ap(run: ImageMatches, images: np.ndarray) -> float:
    """AP@[.5:.95] (fraction) over the test images ``images`` (indices, repeats allowed):
    pycocotools' ``accumulate`` + ``summarize`` for a dataset holding those images.

    A class without a counted ground-truth box in the resample is left out of the mean,
    as pycocotools leaves out its -1; ``nan`` when no class has one.
    """
    images = np.asarray(images, int)
    total, n = 0.0, 0
    for c in run.classes:
        n_gt = int(c.n_gt[images].sum())
        if n_gt == 0:
            continue
        counts = c.count[images]
        nd = int(counts.sum())
        n += c.tp.shape[0] * len(run.rec_thrs)
        if nd == 0:
            continue  # no detection: precision 0 at every recall threshold
        offsets = np.repeat(c.start[images] - np.cumsum(counts) + counts, counts)
        picked = offsets + np.arange(nd)
        order = np.argsort(-c.scores[picked], kind="mergesort")
        picked = picked[order]
        tp = np.cumsum(c.tp[:, picked], axis=1, dtype=np.int32).astype(float)
        fp = np.cumsum(c.fp[:, picked], axis=1, dtype=np.int32).astype(float)
        recall = tp / n_gt
        precision = tp / (fp + tp + np.spacing(1))
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        for t in range(recall.shape[0]):
            at = np.searchsorted(recall[t], run.rec_thrs, side="left")
            total += float(envelope[t, at[at < nd]].sum())
    return total / n if n else float("nan")
