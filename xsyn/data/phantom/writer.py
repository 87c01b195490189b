"""Writing a phantom dataset: scans in parallel, one COCO file, published atomically.

Each scan ``i`` draws from its own generator ``SeedSequence([seed, i])``, so the output
does not depend on the number of worker processes or their scheduling: the same config
and seed give byte-identical files. Workers write their PNGs into the temporary folder
and return label records; the parent numbers ids in scan order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from xsyn.data.contract import caption_for, phrase_for, save_coco
from xsyn.data.phantom.items import CLASSES
from xsyn.data.phantom.labels import scene_labels
from xsyn.data.phantom.physics import encode_transmissions
from xsyn.data.phantom.scene import SceneParams, render_scene
from xsyn.io import atomic_dir

# zlib level 1 with run-length matching: noisy scans barely compress, so speed wins.
PNG_FLAGS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def categories() -> list[dict[str, Any]]:
    return [{"id": i + 1, "name": name, "supercategory": "prohibited"} for i, name in enumerate(CLASSES)]


def stem(index: int) -> str:
    return f"{index:06d}"


def scene_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))


def make_scan(index: int, seed: int, params: SceneParams, root: str | None) -> dict[str, Any]:
    """Render scan ``index``; write its PNGs under ``root`` (if given); return its labels."""
    scene = render_scene(scene_rng(seed, index), params)
    anns, regions, hidden = scene_labels(scene, params.photons, params.visible_share, params.min_visibility)
    name = f"{stem(index)}.png"
    if root is not None:
        ok = cv2.imwrite(os.path.join(root, "images", name), scene.rgb[..., ::-1], PNG_FLAGS)
        ok &= cv2.imwrite(os.path.join(root, "transmissions", name),
                          encode_transmissions(scene.t_low, scene.t_high), PNG_FLAGS)
        if not ok:
            raise OSError(f"{root}: could not write scan {name}")
    s = params.image_size
    image = {
        "file_name": name, "width": s, "height": s, "transmission_file": f"transmissions/{name}",
        "caption": caption_for(CLASSES[a["category_id"] - 1] for a in anns),
        "hidden_items": hidden,
    }
    return {"image": image, "annotations": anns, "regions": regions}


def _work(job: tuple[int, int, SceneParams, str]) -> dict[str, Any]:
    cv2.setNumThreads(1)
    return make_scan(*job)


def assemble(records: list[dict[str, Any]], params: SceneParams, seed: int) -> dict[str, Any]:
    """Per-scan records (in scan order) → one COCO dict with ids numbered from 1."""
    images, anns, regions = [], [], []
    for i, rec in enumerate(records, start=1):
        images.append({"id": i, **rec["image"]})
        for a in rec["annotations"]:
            anns.append({"id": len(anns) + 1, "image_id": i, **a,
                         "phrase": phrase_for(CLASSES[a["category_id"] - 1])})
        for r in rec["regions"]:
            regions.append({"id": len(regions) + 1, "image_id": i, **r})
    info = {"description": "xsyn phantom dual-energy X-ray baggage scans", "seed": seed,
            "params": asdict(params),
            "transmissions": "16-bit PNG (2H x W): T_low stacked over T_high, value = round(T * 65535)"}
    return {"info": info, "categories": categories(), "images": images,
            "annotations": anns, "regions": regions}


def generate(out: str | os.PathLike, params: SceneParams, num_images: int, seed: int,
             workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Write ``num_images`` scans and ``annotations.json`` to ``out`` atomically."""
    if num_images < 1:
        raise ValueError(f"phantom: num_images must be ≥ 1, got {num_images}")
    if not 32 <= params.image_size <= 4096:
        raise ValueError(f"phantom: image_size must be in 32..4096, got {params.image_size}")
    out = Path(out)
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "transmissions").mkdir()
        jobs = [(i, seed, params, str(tmp)) for i in range(num_images)]
        bar = dict(total=num_images, desc=f"phantom {out.name}", unit="scan", disable=not progress)
        if workers > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                records = list(tqdm(pool.imap(_work, jobs, chunksize=8), **bar))
        else:
            records = [make_scan(*job) for job in tqdm(jobs, **bar)]
        coco = assemble(records, params, seed)
        save_coco(tmp / "annotations.json", coco)
    return coco
