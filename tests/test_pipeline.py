"""XsynPipeline and `xsyn synthesize` with tiny models: determinism, provenance, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dummies import RESOLUTION, TINY_GENERATOR, get_dummy_components
from PIL import Image

from xsyn.cli import main
from xsyn.config import load_config
from xsyn.data.contract import load_coco, save_coco
from xsyn.generator.factory import save_generator
from xsyn.jobs import job_config
from xsyn.synthesis import run as run_mod
from xsyn.synthesis.layouts import Layout
from xsyn.synthesis.pipeline import XsynPipeline
from xsyn.synthesize import synthesize_shard

SIZE = RESOLUTION
OVERRIDES = {
    "device": "cpu",
    "generator": {"resolution": SIZE, "tiny": TINY_GENERATOR},
    "synthesis": {"source_split": "train", "steps": 3, "batch_size": 2, "shards": 2,
                  "car": {"resolutions": [8]}, "bom": {"write_non_bom": True}},
}


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    torch.manual_seed(0)
    comp = get_dummy_components(inpaint=True, seed=0)
    path = tmp_path_factory.mktemp("gen") / "generator"
    save_generator(comp, path)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Five 64 px scans: a bag, one or two dark items, benign regions recorded."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, anns, regions = [], [], []
    for i in range(1, 6):
        img = np.full((SIZE, SIZE, 3), 250, np.uint8)
        img[4:60, 4:60] = (200, 170, 120)
        x, y = int(rng.integers(6, 30)), int(rng.integers(6, 30))
        img[y:y + 14, x:x + 10] = (40, 60, 160)
        Image.fromarray(img).save(root / "images" / f"{i:03d}.png")
        images.append({"id": i, "file_name": f"{i:03d}.png", "width": SIZE, "height": SIZE})
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1 + i % 3,
                     "bbox": [x, y, 10, 14], "area": 140, "iscrowd": 0})
        for rx, ry in ((44, 44), (44, 8)):
            regions.append({"id": len(regions) + 1, "image_id": i, "bbox": [rx, ry, 12, 10],
                            "area": 120, "kind": "bottle"})
    cats = [{"id": 1, "name": "Gun"}, {"id": 2, "name": "Powerbank"}, {"id": 3, "name": "HandCuffs"}]
    save_coco(root / "annotations" / "train.json",
              {"images": images, "annotations": anns, "categories": cats, "regions": regions})
    return root


def _cfg():
    return load_config(json_overrides=[json.dumps(OVERRIDES)])


def _layouts():
    return [Layout([[8, 8, 20, 16], [36, 30, 16, 20]], ["Powerbank", "Gun"], [2, 1],
                   bom_region=[40, 4, 16, 12]),
            Layout([[20, 20, 24, 24]], ["HandCuffs"], [3], bom_region=[4, 40, 20, 12])]


def _images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(2)]


def test_from_pretrained_seeded_and_batch_independent(generator):
    torch.set_num_threads(1)
    pipe = XsynPipeline.from_pretrained(generator, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    cfg = _cfg()["synthesis"]
    kw = {"num_inference_steps": 3, "car": cfg["car"], "bom": cfg["bom"], "return_non_bom": True,
          "return_maps": True}
    a = pipe(_layouts(), _images(), seeds=[5, 6], **kw)
    b = pipe(_layouts(), _images(), seeds=[5, 6], **kw)
    for x, y in zip(a.images + a.non_bom_images, b.images + b.non_bom_images, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.boxes == b.boxes and a.requested_boxes == [lay.boxes for lay in _layouts()]
    assert [m.shape for m in a.maps] == [(2, SIZE, SIZE), (1, SIZE, SIZE)]
    assert len(a.car[0]) == 2 and all(0 <= r.score <= 1 for r in a.car[0])
    # BOM changes pixels; CAR ran on the non-BOM image.
    assert not np.array_equal(a.images[0], a.non_bom_images[0])
    # Another seed gives another image; one image alone equals itself in a batch.
    c = pipe(_layouts(), _images(), seeds=[7, 6], **kw)
    assert not np.array_equal(a.images[0], c.images[0])
    alone = pipe(_layouts()[1:], _images()[1:], seeds=[6], **kw)
    assert np.abs(alone.images[0].astype(int) - a.images[1].astype(int)).max() <= 2
    # Outside the generated boxes and BOM patches, the background is the real scan's
    # VAE reconstruction: a no-CAR, no-BOM run keeps the requested boxes.
    plain = pipe(_layouts(), _images(), seeds=[5, 6], num_inference_steps=3)
    assert plain.car is None and plain.boxes == plain.requested_boxes
    np.testing.assert_array_equal(plain.images[0], a.non_bom_images[0])  # CAR/BOM don't steer sampling
    # BOM during sampling: occlusion enters the trajectory; there is no separate non-BOM image.
    during = pipe(_layouts(), _images(), seeds=[5, 6], num_inference_steps=3,
                  bom={"alpha": 0.3, "when": "during"}, return_non_bom=True)
    assert during.non_bom_images is None
    assert not np.array_equal(during.images[0], plain.images[0])


def test_free_layout_reads_boxes_from_attention(generator):
    pipe = XsynPipeline.from_pretrained(generator, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    free = [Layout([], ["Gun", "Powerbank"], [1, 2], inpaint=False)]
    out = pipe(free, None, seeds=[0], num_inference_steps=2, car=_cfg()["synthesis"]["car"],
               resolution=SIZE)
    assert len(out.requested_boxes[0]) == 2 and len(out.boxes[0]) == 2
    for box in out.requested_boxes[0]:
        assert box[2] > 0 and box[3] > 0 and box[0] + box[2] <= SIZE


def test_car_step_sees_sources_and_non_bom_images_side_by_side(generator):
    """CAR is a step of its own after decoding: it receives the source scans, the decoded
    non-BOM images and one map per box, explicitly (the attenuation cue needs all three)."""
    from diffusers.utils import BaseOutput

    pipe = XsynPipeline.from_pretrained(generator, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    seen = {}
    refine = pipe.refine_boxes

    def spy(generated, sources, maps, requested, seeds, car):
        seen.update(generated=generated, sources=sources, maps=maps, requested=requested, seeds=seeds)
        return refine(generated, sources, maps, requested, seeds, car)

    pipe.refine_boxes = spy
    cfg = _cfg()["synthesis"]
    out = pipe(_layouts(), _images(), seeds=[5, 6], num_inference_steps=2, car=cfg["car"], bom=cfg["bom"],
               return_non_bom=True, return_maps=True)
    assert isinstance(out, BaseOutput)
    for got, want in zip(seen["sources"], _images(), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(seen["generated"], out.non_bom_images, strict=True):
        np.testing.assert_array_equal(got, want)
    assert [m.shape for m in seen["maps"]] == [(2, SIZE, SIZE), (1, SIZE, SIZE)]
    assert seen["requested"] == [lay.boxes for lay in _layouts()] and seen["seeds"] == [5, 6]


@pytest.mark.parametrize("cue", ["difference", "both"])
def test_car_cues_that_read_the_source_run_in_the_pipeline(generator, cue):
    """The difference cues refine from the source scans the CAR step receives; a free layout
    (no source) refines from its attention."""
    pipe = XsynPipeline.from_pretrained(generator, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    car = {**_cfg()["synthesis"]["car"], "cue": cue}
    out = pipe(_layouts(), _images(), seeds=[5, 6], num_inference_steps=2, car=car)
    attention = pipe(_layouts(), _images(), seeds=[5, 6], num_inference_steps=2, car={**car, "cue": "attention"})
    for image, want in zip(out.images, attention.images, strict=True):
        np.testing.assert_array_equal(image, want)  # the cue reads the sample, never steers it
    assert [len(r) for r in out.car] == [2, 1] and all(0 <= r.score <= 1 for r in out.car[0])
    free = pipe([Layout([], ["Gun"], [1], inpaint=False)], None, seeds=[0], num_inference_steps=2, car=car,
                resolution=SIZE)
    assert len(free.boxes[0]) == 1


def test_check_inputs_names_the_problem(generator):
    pipe = XsynPipeline.from_pretrained(generator, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="1 seeds for 2 layouts"):
        pipe(_layouts(), _images(), seeds=[5], num_inference_steps=1)
    with pytest.raises(ValueError, match="need the real source images"):
        pipe(_layouts(), None, num_inference_steps=1)
    with pytest.raises(ValueError, match="source image 1: expected uint8 64×64×3"):
        pipe(_layouts(), [_images()[0], _images()[1][:32]], num_inference_steps=1, resolution=SIZE)
    assert pipe([], None).images == []


def _run_cli(method, dataset, generator, out, shard=0, shards=2):
    """`xsyn synthesize` as the workflow calls it: with the keys the method reads (xsyn.jobs)."""
    job = job_config(load_config(json_overrides=[json.dumps(OVERRIDES)]), "synthesize", method)
    return main(["synthesize", "--method", method, "--dataset", str(dataset), "--generator",
                 str(generator), "--shard", str(shard), "--shards", str(shards), "--out", str(out),
                 "--config-json", json.dumps(job)])


def test_cli_provenance_determinism_resume_gather(tmp_path, dataset, generator, monkeypatch):
    torch.set_num_threads(1)
    a, b = tmp_path / "a" / "shard-000-of-002", tmp_path / "b" / "shard-000-of-002"
    assert _run_cli("xsyn-a", dataset, generator, a) == 0
    assert _run_cli("xsyn-a", dataset, generator, b) == 0
    coco_a = load_coco(a / "annotations.json", a / "images")
    coco_b = json.loads((b / "annotations.json").read_text())
    assert coco_a == coco_b  # same seed → identical annotations
    for img in coco_a["images"]:
        assert (a / "images" / img["file_name"]).read_bytes() == (b / "images" / img["file_name"]).read_bytes()
        prov = img["xsyn"]
        assert prov["method"] == "xsyn-a" and prov["source_image_id"] in (1, 2)
        assert prov["seed"] == run_mod.image_seed(0, prov["source_image_id"])
        assert prov["generator"] == run_mod.generator_hash(generator)
        assert (a / "images" / prov["non_bom_file_name"]).is_file()
    gen = [x for x in coco_a["annotations"] if x["generated"]]
    real = [x for x in coco_a["annotations"] if not x["generated"]]
    assert len(coco_a["images"]) == 2 and len(gen) == 2 and len(real) == 2
    for x in gen:
        assert {"requested_bbox", "bbox", "car_score", "car_fallback"} <= set(x)
        assert isinstance(x["car_score"], float)

    # Resume: a complete shard is not touched again.
    stamp = (a / "annotations.json").stat().st_mtime_ns
    assert _run_cli("xsyn-a", dataset, generator, a) == 0
    assert (a / "annotations.json").stat().st_mtime_ns == stamp

    # A run killed mid-shard leaves no shard folder; the rerun writes it whole.
    second = tmp_path / "a" / "shard-001-of-002"
    real_add = run_mod.ShardWriter.add_image
    calls = {"n": 0}

    def dying_add(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(run_mod.ShardWriter, "add_image", dying_add)
    with pytest.raises(KeyboardInterrupt):
        _run_cli("xsyn-a", dataset, generator, second, shard=1)
    assert not second.exists()
    assert not [p for p in second.parent.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(run_mod.ShardWriter, "add_image", real_add)
    assert _run_cli("xsyn-a", dataset, generator, second, shard=1) == 0
    assert len(load_coco(second / "annotations.json")["images"]) == 3

    out = tmp_path / "gathered"
    assert main(["gather", "--shards", str(a), str(second), "--out", str(out)]) == 0
    merged = load_coco(out / "annotations.json", out / "images")
    assert len(merged["images"]) == 5
    assert sorted(i["xsyn"]["source_image_id"] for i in merged["images"]) == [1, 2, 3, 4, 5]


def test_methods_without_car(tmp_path, dataset, generator):
    torch.set_num_threads(1)
    out = tmp_path / "plain"
    assert _run_cli("gligen-plain", dataset, generator, out, shard=0, shards=5) == 0
    coco = load_coco(out / "annotations.json")
    gen = [x for x in coco["annotations"] if x["generated"]]
    assert gen and all(x["bbox"] == x["requested_bbox"] and x["car_score"] is None for x in gen)
    assert not (out / "images" / "non_bom").exists()
    m = tmp_path / "m"
    assert _run_cli("xsyn-m", dataset, generator, m, shard=1, shards=5) == 0
    coco = load_coco(m / "annotations.json")
    assert all(x["generated"] for x in coco["annotations"]) and len(coco["annotations"]) == 1


def test_unknown_method_and_missing_generator(tmp_path, dataset):
    cfg = _cfg()
    with pytest.raises(ValueError, match="unknown synthesis method"):
        synthesize_shard(cfg, "nope", dataset, None, 0, 1, tmp_path / "x")
    with pytest.raises(ValueError, match="--generator"):
        synthesize_shard(cfg, "xsyn-a", dataset, None, 0, 1, tmp_path / "x")
    assert not Path(tmp_path / "x").exists()


def test_a_float16_folder_loads_in_float32_on_the_cpu(tmp_path):
    """The shipped asset is stored in float16; synthesis straight from it on a CPU (no
    fine-tune first) must not mix half and float matmuls."""
    comps = get_dummy_components(inpaint=True)
    for m in (comps.unet, comps.vae, comps.text_encoder):
        m.to(torch.float16)
    save_generator(comps, tmp_path / "fp16")
    cfg = load_config((), ["device=cpu"])
    pipe = run_mod.load_pipeline(tmp_path / "fp16", cfg)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert {p.dtype for p in m.parameters()} == {torch.float32}
