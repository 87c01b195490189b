"""The tiny X-ray GLIGEN shipped in assets/ (the smoke profile's pretrained starting point).

It exists because a tiny model trained from scratch in the smoke budget ignores its class
phrases; these tests pin what it must be: the smoke default, a GLIGEN inpainting folder
that loads in float32, and a model whose painted boxes depend on the class asked for on
phantom scans it never saw.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from xsyn.cli import main
from xsyn.config import load_config
from xsyn.generator.conditioning import conditioning_ratio
from xsyn.generator.data import load_examples
from xsyn.generator.factory import build_components

ASSET = "assets/tiny-gligen-xray"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shipped(repo_root):
    cfg = load_config()
    assert cfg["generator"]["kind"] == "pretrained" and cfg["generator"]["pretrained"]["pipeline"] == ASSET
    cfg["generator"]["pretrained"]["pipeline"] = str(repo_root / ASSET)
    return cfg, build_components(cfg, inpaint=True)


def test_shipped_generator_is_a_float32_gligen_inpainting_model(shipped, repo_root):
    _, comps = shipped
    assert comps.unet.config.in_channels == 9 and comps.unet.config.attention_type == "gated"
    assert comps.scheduler.config.prediction_type == "v_prediction"
    for m in (comps.unet, comps.vae, comps.text_encoder):
        assert {p.dtype for p in m.parameters()} == {torch.float32}
    # stored in float16 to keep the repository small
    with safe_open(repo_root / ASSET / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    card = json.loads((repo_root / ASSET / "pretrain.json").read_text())
    assert card["config"] == ["config/pretrain-tiny.yaml", "config/pretrain-tiny-align.yaml"]
    assert card["conditioning"]["ratio"] > 1.0
    # stage 2 pulled each class word's attention onto its items, well above their pixel share
    assert card["attention_on_items"]["share"] > 3 * card["attention_on_items"]["area"]
    assert json.loads((repo_root / ASSET / "base.json").read_text())["stages"]  # stage 1's own record


def test_fine_tuning_at_another_size_records_it(shipped):
    """diffusers' GLIGEN pipeline sizes its inpainting input by vae.config.sample_size."""
    cfg, comps = shipped
    assert comps.vae.config.sample_size == 128 and comps.unet.config.sample_size == 32
    small = {**cfg, "generator": {**cfg["generator"], "resolution": 64}}
    comps64 = build_components(small, inpaint=True)
    assert comps64.vae.config.sample_size == 64 and comps64.unet.config.sample_size == 16


def test_shipped_generator_paints_the_class_asked_for_on_unseen_scans(shipped, tmp_path):
    """Swapping every box's class raises the loss inside the boxes: the phrases matter.

    A model that ignores its phrases scores 1.000 ± 0.001 here (the from-scratch smoke run).
    The scans are simulated with a seed the model never trained on.
    """
    cfg, comps = shipped
    raw, ds = tmp_path / "raw", tmp_path / "ds"
    assert main(["phantom", "--out", str(raw), "--num-images", "40", "--seed", "7", "--workers", "1",
                 "--no-progress"]) == 0
    assert main(["prepare", "--source", str(raw), "--out", str(ds)]) == 0
    examples, classes = load_examples(ds, "train", cfg["generator"]["resolution"])
    result = conditioning_ratio(comps, [ex for ex in examples if len(ex.boxes)][:24], classes, repeats=4)
    assert result["ratio"] > 1.01, result
