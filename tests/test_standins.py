"""The stand-ins of the paper's downloads load through the same code as the real ones.

Each folder is written by ``scripts/make_standins.py`` (the layout and config keys of the
hub repos, tiny random weights) and read by xsyn as a user's download would be: GLIGEN
generation / inpainting through the model factory (pickled ``.bin`` weights, PNDM
scheduler config, the real CLIP BPE), SAM through ``xsyn candidates`` on the run's device,
whose stored regions every synthesis method then reads instead of asking SAM again.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from xsyn.cli import main
from xsyn.config import load_config
from xsyn.generator.factory import load_pretrained_components
from xsyn.jobs import job_config
from xsyn.synthesis.candidates import StoredCandidates
from xsyn.synthesis.layouts import Layout
from xsyn.synthesis.pipeline import XsynPipeline

REPO = Path(__file__).resolve().parent.parent


def standins_module():
    spec = importlib.util.spec_from_file_location("make_standins", REPO / "scripts" / "make_standins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Path:
    make = standins_module()
    root = tmp_path_factory.mktemp("standins")
    make.make_gligen(root / "gligen-1-4-inpainting-text-box", inpaint=True)
    make.make_sam(root / "sam-vit-huge")
    make.make_pidray(root / "PIDray", n_train=12, n_test=2, image_size=64)
    return root


def folders(**given):
    return {"pipeline": None, "unet": None, "vae": None, "text_encoder": None, "tokenizer": None, **given}


def test_gligen_inpainting_folder_loads_and_samples(standins):
    comps = load_pretrained_components(folders(pipeline=str(standins / "gligen-1-4-inpainting-text-box")),
                                       inpaint=True)
    assert comps.unet.config.in_channels == 9 and comps.unet.config.attention_type == "gated"
    assert type(comps.scheduler).__name__ == "DDIMScheduler"  # from the PNDM config the hub ships
    assert comps.tokenizer.tokenize("Powerbank") == ["power", "bank</w>"]  # the real CLIP BPE
    assert comps.vae_scale_factor == 8  # SD 1.4's VAE structure
    pipe = XsynPipeline.from_components(comps)
    pipe.set_progress_bar_config(disable=True)
    layout = Layout([[16.0, 16.0, 24.0, 24.0]], ["Gun"], [7], bom_region=None)
    out = pipe([layout], [np.full((64, 64, 3), 200, np.uint8)], seeds=[0], num_inference_steps=2, resolution=64)
    assert out.images[0].shape == (64, 64, 3)
    assert out.ran["sampling"]["steps"] == 2 and out.ran["car"] is None


def test_sam_candidates_once_per_shard_then_read_by_every_method(standins, tmp_path):
    root = tmp_path / "pidray"
    assert main(["prepare", "--format", "pidray", "--source", str(standins / "PIDray"), "--out", str(root),
                 "--no-progress"]) == 0
    cfg = load_config(overrides=["device=cpu", "synthesis.car.segmenter=sam",
                                 f"synthesis.car.sam_path={standins / 'sam-vit-huge'}"])
    out = tmp_path / "shard-000-of-002.json"
    rc = main(["candidates", "--dataset", str(root), "--split", "train", "--shard", "0", "--shards", "2",
               "--out", str(out), "--config-json", json.dumps(job_config(cfg, "candidates"))])
    assert rc == 0
    found = json.loads(out.read_text())
    assert (found["source"], found["device"], found["shard"]) == ("sam", "cpu", [0, 2])
    assert len(found["weights"]) == 12 and found["images"]
    # a random SAM sees nothing but bag and background: those scans fall back, and say so
    assert set(found["fallback"]["image"]) <= {int(i) for i in found["images"]}
    stored = StoredCandidates(out, "train", 0, 2)
    some = int(next(iter(found["images"])))
    assert stored(some, None) == found["images"][str(some)]
    assert stored.identity(some)["source"] == "sam"
    with pytest.raises(ValueError, match="not of train shard"):
        StoredCandidates(out, "train", 1, 2)


def test_detector_family_and_init_come_from_the_checkpoint(tmp_path):
    """A .pt is RT-DETR or YOLO by what it holds, whatever its name; run.json's init says so."""
    from xsyn.detection.train import is_rtdetr, model_init

    yolo, rtdetr = standins_module().make_detectors(tmp_path)
    renamed = tmp_path / "weights.pt"
    renamed.write_bytes(rtdetr.read_bytes())
    assert is_rtdetr(renamed) and not is_rtdetr(yolo)
    init = model_init(str(renamed))
    assert (init["kind"], init["family"], len(init["sha256"])) == ("pretrained", "rtdetr", 12)
    assert model_init("rtdetr-l.yaml") == {"kind": "scratch", "file": "rtdetr-l.yaml", "sha256": None,
                                           "family": "rtdetr"}
