"""``xsyn prepare``: a raw tree of any supported format → the dataset contract (DESIGN §4).

The importer reads the source into memory (:mod:`xsyn.data.importers`); this module
does what every format shares, so the output is the same whatever the input:

1. check every box against its image and clip it into it: within the contract's 1-px
   tolerance that is rounding; up to ``clamp_px`` outside it is a dirty entry, clamped
   and reported (OPIXray's official loader clamps such boxes too); farther out it is an
   error naming the source file and line;
2. add captions (``caption_for``) and grounding phrases (``phrase_for``);
3. keep the format's own splits, carving ``test`` (``test_fraction`` of all images) and
   ``val`` (``val_fraction`` of train) where it has none, stratified by each image's
   rarest class, and draw nested low-data subsets 1 % ⊂ 5 % ⊂ … of train the same way;
4. inside :func:`~xsyn.io.atomic_dir`: open every image fully (truncated files fail
   here, not mid-training), check its size, hard-link it (or copy it; TIFF → PNG) and
   write the annotation files and ``prepare_report.json``. Any error leaves an existing
   output folder untouched.

Known-benign defects of real copies (:mod:`xsyn.data.dirty`) are fixed or skipped and
reported in ``prepare_report.json`` and the printed summary; ``strict`` stops at the first.
"""

from __future__ import annotations

import copy
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tqdm import tqdm

from xsyn.data.boxes import clip_xywh, outside_px
from xsyn.data.contract import (
    BOX_TOLERANCE_PX,
    SUBSET_SHARES,
    DatasetError,
    caption_for,
    check_box,
    phrase_for,
    save_coco,
    subset_name,
)
from xsyn.data.dirty import ACTIONS
from xsyn.data.importers import ORIGIN, RawDataset, import_dataset, open_image
from xsyn.io import atomic_dir, link_or_copy, write_json

TIFF_SUFFIXES = {".tif", ".tiff"}
REPORT_NAME = "prepare_report.json"


@dataclass
class PrepareOptions:
    """The ``dataset:`` config section, minus what names the input and output."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    subset_shares: Sequence[float] = SUBSET_SHARES
    split_seed: int = 0
    link_images: bool = True
    workers: int = 4
    progress: bool = True
    strict: bool = False  # the first dirty entry is an error instead of a reported fix/skip
    clamp_px: float = 5.0  # a box reaching at most this far outside its image is clamped


# ---------------------------------------------------------------- boxes, captions


def check_boxes(raw: RawDataset, clamp_px: float) -> None:
    """Every annotation and region box inside its image, then clipped into it.

    Within the contract's 1 px a box past the edge is rounding, clipped silently; up to
    ``clamp_px`` it is an annotation slip (OPIXray has them, negative corners included),
    clamped and reported as a dirty entry; farther out it is an error.
    """
    images = {img["id"]: img for img in raw.images}
    names = {c["id"]: c["name"] for c in raw.categories}
    for kind, records in (("annotation", raw.annotations), ("region", raw.regions)):
        for rec in records:
            img = images[rec["image_id"]]
            width, height = img["width"], img["height"]
            where = rec.get(ORIGIN, f"{kind} id {rec['id']}")
            entry = f"{kind} id {rec['id']}"
            check_box(rec.get("bbox"), width, height, where, entry, tol=float("inf"))
            out = outside_px(rec["bbox"], width, height)
            if out > max(clamp_px, BOX_TOLERANCE_PX):
                raise DatasetError(
                    f"{where}: {entry}: bbox {rec['bbox']} lies {out:g} px outside the {width}x{height} image "
                    f"(more than clamp_px = {clamp_px:g} px: not an annotation slip)"
                )
            clipped = clip_xywh(rec["bbox"], width, height)
            if clipped[2] <= 0 or clipped[3] <= 0:
                raise DatasetError(f"{where}: {entry}: bbox {rec['bbox']} is empty inside the image")
            if out > 0:  # a box inside is kept as it is (clipping would round x + w - x)
                if out > BOX_TOLERANCE_PX:
                    raw.dirty.add(
                        "box_outside", where,
                        f"{kind} bbox {rec['bbox']} reaches {out:g} px outside the {width}x{height} image; "
                        f"clamped to {clipped}",
                        cls=names.get(rec.get("category_id")), image_id=rec["image_id"],
                    )
                rec["bbox"] = clipped
                rec["area"] = clipped[2] * clipped[3]
            rec.setdefault("area", float(rec["bbox"][2]) * float(rec["bbox"][3]))
            rec.setdefault("iscrowd", 0)


def add_text(raw: RawDataset) -> None:
    """Caption per image (its class names) and phrase per box ("one {class}")."""
    names = {c["id"]: c["name"] for c in raw.categories}
    per_image: dict[int, list[str]] = defaultdict(list)
    for ann in raw.annotations:
        ann["phrase"] = phrase_for(names[ann["category_id"]])
        per_image[ann["image_id"]].append(names[ann["category_id"]])
    for img in raw.images:
        img["caption"] = caption_for(per_image[img["id"]])


# ---------------------------------------------------------------- splits


def stratified_order(image_ids: Iterable[int], classes_of: dict[int, list[int]], seed: int) -> list[int]:
    """A random order of images in which every class appears evenly spread.

    Images are grouped by their rarest class (background images form their own group);
    the i-th of a group's n shuffled images gets rank (i + u) / n, u ~ U[0, 1), and the
    order sorts by rank. Any prefix of it therefore holds about the same share of every
    group, and prefixes are nested, which is exactly what low-data subsets need.
    """
    ids = sorted(image_ids)
    freq = Counter(c for i in ids for c in set(classes_of.get(i, [])))
    groups: dict[int, list[int]] = defaultdict(list)
    for i in ids:
        cls = classes_of.get(i) or []
        groups[min(cls, key=lambda c: (freq[c], c)) if cls else -1].append(i)
    rng = np.random.default_rng(seed)
    ranked: list[tuple[float, int]] = []
    for key in sorted(groups):
        members = groups[key]
        perm = rng.permutation(len(members))
        jitter = rng.random(len(members))
        ranked += [((r + jitter[r]) / len(members), members[p]) for r, p in enumerate(perm)]
    ranked.sort()
    return [i for _, i in ranked]


def carve(pool: list[int], fraction: float, classes_of: dict[int, list[int]], seed: int) -> tuple[list[int], list[int]]:
    """Split ``pool`` into (rest, carved) with ``round(fraction · n)`` carved (≥ 1, ≤ n − 1)."""
    n = len(pool)
    k = max(round(fraction * n), 1 if fraction > 0 else 0)
    k = min(k, max(n - 1, 0))  # never carve the whole pool
    order = stratified_order(pool, classes_of, seed)
    carved = set(order[:k])
    return [i for i in pool if i not in carved], [i for i in pool if i in carved]


def assign_splits(raw: RawDataset, opts: PrepareOptions) -> dict[str, list[int]]:
    """Split name → image ids: the format's splits, plus carved test and val where missing."""
    classes_of: dict[int, list[int]] = defaultdict(list)
    for ann in raw.annotations:
        classes_of[ann["image_id"]].append(ann["category_id"])
    splits: dict[str, list[int]] = defaultdict(list)
    for img in raw.images:
        splits[raw.splits.get(img["id"], "train")].append(img["id"])
    for name in splits:
        if name not in ("train", "val", "test") and not name.startswith("test_"):
            raise DatasetError(f"unknown split name {name!r} (train, val, test or test_<subset>)")
    seed = opts.split_seed
    if not any(s == "test" or s.startswith("test_") for s in splits):
        splits["train"], splits["test"] = carve(splits["train"], opts.test_fraction, classes_of, seed)
    if "val" not in splits:
        splits["train"], splits["val"] = carve(splits["train"], opts.val_fraction, classes_of, seed + 1)
    parts = sorted(s for s in splits if s.startswith("test_"))
    if parts:  # test = every test image: those of no part and those of each part
        splits["test"] = splits.get("test", []) + [i for s in parts for i in splits[s]]
    if not splits["train"]:
        raise DatasetError("the source has no training images")
    order = stratified_order(splits["train"], classes_of, seed + 2)
    for share in opts.subset_shares:
        k = max(1, round(share / 100 * len(order)))
        splits[subset_name(share)] = sorted(order[:k])
    return {name: sorted(splits[name]) for name in sorted(splits, key=split_order)}


def primary_splits(splits: dict[str, list[int]]) -> dict[int, str]:
    """Image id → the one split it is reported under: its test part, else train, val or test."""
    out: dict[int, str] = {}
    for name in sorted(splits, key=split_order):  # test before its parts: a part overrides it
        if split_order(name)[0] < 4:
            out.update(dict.fromkeys(splits[name], name))
    return out


def split_order(name: str) -> tuple[int, str]:
    """train, val, test, test_*, then the subsets: the order of files in summaries."""
    rank = {"train": 0, "val": 1, "test": 2}
    return (rank.get(name, 3 if name.startswith("test_") else 4), name)


def split_coco(raw: RawDataset, ids: Iterable[int], info: dict[str, Any]) -> dict[str, Any]:
    """The COCO dict of a subset of images (their annotations and regions follow them)."""
    keep = set(ids)

    def clean(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != ORIGIN} for r in records]

    coco: dict[str, Any] = {
        "info": info,
        "images": clean([img for img in raw.images if img["id"] in keep]),
        "annotations": clean([a for a in raw.annotations if a["image_id"] in keep]),
        "categories": copy.deepcopy(raw.categories),
    }
    if raw.regions:
        coco["regions"] = clean([r for r in raw.regions if r["image_id"] in keep])
    return coco


# ---------------------------------------------------------------- images


def output_names(raw: RawDataset) -> None:
    """TIFF images become PNG (PIL/ultralytics friendly): rename them, refusing clashes."""
    seen: dict[str, str] = {}
    for img in raw.images:
        name = img["file_name"]
        if PurePosixPath(name).suffix.lower() in TIFF_SUFFIXES:
            img["file_name"] = name = PurePosixPath(name).with_suffix(".png").as_posix()
        if name in seen:
            raise DatasetError(f"{img.get(ORIGIN, img['id'])}: output image name {name!r} clashes with {seen[name]}")
        seen[name] = img.get(ORIGIN, str(img["id"]))


def check_and_place(img: dict[str, Any], src: Path, dst: Path, link: bool) -> str:
    """Open ``src`` fully, check its size, write it to ``dst``; returns how (link/copy/convert)."""
    where = img.get(ORIGIN, f"image id {img['id']}")
    try:
        with open_image(src) as im:
            im.verify()
        with open_image(src) as im:
            im.load()  # verify() does not decode: a truncated file only fails here
            size = im.size
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix.lower() in TIFF_SUFFIXES:
                if im.mode not in ("1", "L", "RGB", "I;16"):
                    im = im.convert("RGB")
                im.save(dst, format="PNG")
                how = "converted"
            else:
                how = ""
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{where}: unreadable or truncated image {src}: {e}") from None
    if size != (img["width"], img["height"]):
        raise DatasetError(
            f"{where}: image {src} is {size[0]}x{size[1]} but the record says {img['width']}x{img['height']}"
        )
    if how:
        return how
    link_or_copy(src, dst, link)
    return "linked" if link and dst.stat().st_ino == src.stat().st_ino else "copied"


def place_images(raw: RawDataset, root: Path, opts: PrepareOptions) -> Counter:
    """Check and write every image (threads: decoding releases the GIL), in a stable order."""
    jobs = [(img, raw.sources[img["id"]], root / "images" / img["file_name"]) for img in raw.images]
    counts: Counter = Counter()
    pool = ThreadPoolExecutor(max_workers=max(1, opts.workers))
    try:
        results = pool.map(lambda job: check_and_place(*job, opts.link_images), jobs)
        for how in tqdm(results, total=len(jobs), desc="images", unit="img", disable=not opts.progress):
            counts[how] += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for rel, src in raw.aux_files.items():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(src, dst, opts.link_images)
        counts["aux files"] += 1
    return counts


# ---------------------------------------------------------------- summary


def summarize(raw: RawDataset, splits: dict[str, list[int]]) -> dict[str, Any]:
    """The content of ``prepare_report.json`` (less ``format``, ``source`` and ``files``)."""
    names = {c["id"]: c["name"] for c in raw.categories}
    image_of = {a["id"]: a["image_id"] for a in raw.annotations}
    per_split = {}
    for split, ids in splits.items():
        keep = set(ids)
        anns = [a for a in raw.annotations if image_of[a["id"]] in keep]
        per_split[split] = {
            "images": len(ids),
            "annotations": len(anns),
            "per_class": {names[c]: n for c, n in sorted(Counter(a["category_id"] for a in anns).items())},
        }
    return {
        "classes": [c["name"] for c in raw.categories],
        "splits": per_split,
        "dirty": raw.dirty.report(primary_splits(splits)),
        "skipped": raw.skipped,
        "notes": raw.notes,
    }


def format_summary(summary: dict[str, Any], max_entries: int = 8) -> str:
    """One screen: images, boxes and classes per split, the subsets, notes, dirty entries."""
    classes = summary["classes"]
    width = max([len(c) for c in classes] + [11])
    splits = [s for s in summary["splits"] if split_order(s)[0] < 4]
    subsets = [s for s in summary["splits"] if split_order(s)[0] == 4]
    cols = [max(len(s), 6) for s in splits]

    def row(label: str, values: list) -> str:
        return f"{label:{width}} " + " ".join(f"{v:>{c}}" for v, c in zip(values, cols, strict=True))

    lines = [row("", splits)]
    for key in ("images", "annotations"):
        lines.append(row(key, [summary["splits"][s][key] for s in splits]))
    for c in classes:
        lines.append(row(c, [summary["splits"][s]["per_class"].get(c, 0) for s in splits]))
    if subsets:
        lines.append("low-data subsets of train (images): "
                     + ", ".join(f"{s} {summary['splits'][s]['images']}" for s in subsets))
    lines += [f"note: {n}" for n in summary.get("notes", [])]
    dirty = summary.get("dirty") or {}
    if dirty.get("total"):
        counts = dirty["counts"]
        total = {a: sum(counts.get(a, {}).values()) for a in ACTIONS}
        lines.append(f"skipped entries: {total['skipped']}, clamped: {total['clamped']}, folded: {total['folded']} "
                     f"(every one with its reason in {REPORT_NAME})")
        for action in ACTIONS:
            for reason, n in counts.get(action, {}).items():
                where = ", ".join(f"{s} {c[reason]}" for s, c in dirty["per_split"].items() if reason in c)
                lines.append(f"  {reason:<18} {action:<8} {n:>7}  ({where})")
        shown = dirty["entries"][:max_entries]
        lines += [f"  {e['where']}: {e['detail']}" for e in shown]
        if dirty["total"] > len(shown):
            lines.append(f"  ... and {dirty['total'] - len(shown)} more (see {REPORT_NAME})")
    return "\n".join(lines)


# ---------------------------------------------------------------- entry point


def prepare_dataset(
    fmt: str, source: str | os.PathLike, out: str | os.PathLike, opts: PrepareOptions | None = None
) -> dict[str, Any]:
    """Import ``source`` (format ``fmt``) and write the contract dataset ``out`` atomically.

    Returns the summary (also written to ``out/prepare_report.json``): counts per split
    and class, every dirty entry (clamped, skipped, folded) with its reason, notes and
    how images were placed. With ``opts.strict`` the first dirty entry is an error.
    """
    opts = opts or PrepareOptions()
    out = Path(out)
    raw = import_dataset(fmt, source, strict=opts.strict)
    if not raw.images:
        raise DatasetError(f"{source}: no images found for format {fmt!r}")
    check_boxes(raw, opts.clamp_px)
    add_text(raw)
    output_names(raw)
    splits = assign_splits(raw, opts)
    cocos = {s: split_coco(raw, ids, {"dataset": out.name, "format": fmt, "split": s}) for s, ids in splits.items()}
    summary = {"format": fmt, "source": str(Path(source).resolve()), "clamp_px": opts.clamp_px,
               **summarize(raw, splits)}
    with atomic_dir(out) as tmp:
        for split, coco in cocos.items():
            save_coco(tmp / "annotations" / f"{split}.json", coco)
        summary["files"] = dict(place_images(raw, tmp, opts))
        write_json(tmp / REPORT_NAME, summary)
    return summary

