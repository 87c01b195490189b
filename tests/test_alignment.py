"""The attention-alignment term: its targets, its value, its gradient, and a run that uses it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from test_finetune import RES, make_dataset, tiny_cfg

from xsyn.generator.alignment import AttentionAlignment, alignment_layers
from xsyn.generator.data import (
    attach_class_masks,
    class_masks_from_annotations,
    latent_coverage,
    load_examples,
    make_batch,
)
from xsyn.generator.factory import build_tiny_components, load_clip_tokenizer
from xsyn.generator.finetune import FineTuner
from xsyn.generator.objective import DenoisingPass


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {**r, "counts": r["counts"].decode()}


def test_class_masks_use_segmentations_and_fall_back_to_boxes():
    seg = np.zeros((20, 30), bool)
    seg[5:9, 10:14] = True
    anns = [{"category_id": 1, "bbox": [10, 5, 4, 4], "segmentation": rle(seg)},
            {"category_id": 1, "bbox": [0, 0, 3, 2]},                         # no mask: its rectangle
            {"category_id": 2, "bbox": [20, 10, 5, 5], "segmentation": rle(seg)}]
    got = class_masks_from_annotations(anns, {1: "Gun", 2: "Knife"}, 20, 30, "masks")
    assert set(got) == {"Gun", "Knife"}
    assert got["Gun"].sum() == 16 + 6  # the segmentation plus the second item's rectangle
    boxes = class_masks_from_annotations(anns, {1: "Gun", 2: "Knife"}, 20, 30, "boxes")
    assert boxes["Knife"].sum() == 25 and got["Knife"].sum() == 16


def test_latent_coverage_is_the_share_of_each_cell():
    m = np.zeros((16, 16), bool)
    m[:8, :4] = True
    cov = latent_coverage(m, resolution=16, latent_size=4).astype(np.float32)
    assert cov.shape == (4, 4)
    np.testing.assert_allclose(cov[:2, 0], 1.0)
    np.testing.assert_allclose(cov[2:, :], 0.0)
    assert cov.sum() == pytest.approx(m.sum() / 16)


def fake_pass(attn: torch.Tensor, masks: dict, caption: str) -> DenoisingPass:
    z = torch.zeros(1, 4, 4, 4)
    batch = {"captions": [caption], "class_masks": [masks]}
    return DenoisingPass(batch, z, z, torch.zeros(1), z, z, {"layer": attn})


def test_term_is_lower_when_the_word_attends_to_its_item():
    tok = load_clip_tokenizer()
    caption = "Gun"  # tokens: start, gun, end
    target = torch.zeros(4, 4)
    target[:2, :2] = 1.0
    term = AttentionAlignment(tok, ["layer"], token_weight=1.0, pixel_weight=1.0, mse_weight=1.0)

    def attention(on_item: bool) -> torch.Tensor:
        a = torch.full((1, 2, 16, 77), 0.001)
        cells = target.reshape(-1) > 0 if on_item else target.reshape(-1) == 0
        a[..., cells, 1] = 0.9
        return a

    good = term(fake_pass(attention(True), {"Gun": target}, caption))
    bad = term(fake_pass(attention(False), {"Gun": target}, caption))
    assert good < 0.5 * bad
    # no caption (dropped) or no class of the caption in the masks: nothing to align
    assert term(fake_pass(attention(False), {"Gun": target}, "")) == 0
    assert term(fake_pass(attention(False), {"Knife": target}, caption)) == 0


def test_term_gradient_moves_attention_onto_the_item():
    tok = load_clip_tokenizer()
    target = torch.zeros(4, 4)
    target[2:, 2:] = 1.0
    logits = torch.zeros(1, 1, 16, 77, requires_grad=True)
    term = AttentionAlignment(tok, ["layer"], token_weight=1.0, pixel_weight=0.0, mse_weight=0.0)
    opt = torch.optim.SGD([logits], lr=50.0)
    inside = target.reshape(-1) > 0
    before = torch.softmax(logits, -1)[0, 0, :, 1].detach()
    share_before = float(before[inside].sum() / before.sum())
    for _ in range(20):
        loss = term(fake_pass(torch.softmax(logits, -1), {"Gun": target}, "Gun"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = torch.softmax(logits, -1)[0, 0, :, 1].detach()
    assert float(after[inside].sum() / after.sum()) > share_before + 0.3


def test_make_batch_flips_and_crops_class_masks_with_the_pixels(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=4, size=RES)
    examples, _ = load_examples(ds, "train", RES)
    attach_class_masks(examples, ds, "train", RES, RES // 4, "boxes")
    for ex in examples:
        assert set(ex.class_masks) == set(ex.classes) | {"Gun"}  # Gun also owns the dropped 3-px box
    g = torch.Generator().manual_seed(0)
    batch = make_batch(examples, [0, 1, 2, 3], g, 8, 0.0, flip=True, inpaint=True, latent_size=RES // 4, crop=8)
    assert len(batch["class_masks"]) == 4
    for b in range(4):
        for m in batch["class_masks"][b].values():
            assert m.shape == (8, 8)
        # the anchor item (masked for repainting) is covered by its class mask in the window
        box = batch["boxes"][b][0]
        name = batch["phrases"][b * 8].removeprefix("one ") if batch["phrases"][b * 8] else None
        if name:
            x0, y0, x1, y1 = (int(round(float(v) * 8)) for v in box)
            cell = batch["class_masks"][b][name][y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
            assert float(cell.mean()) > 0.5


def test_alignment_layers_pick_the_cross_attention_car_reads():
    cfg = tiny_cfg()
    comps = build_tiny_components(cfg["generator"]["tiny"], RES)
    side = RES // comps.vae_scale_factor
    names = alignment_layers(comps.unet, side, ["down", "up"], [side // 2])
    assert names and all(n.endswith(".attn2") and not n.startswith("mid") for n in names)
    with pytest.raises(ValueError, match="no attn2 layer"):
        alignment_layers(comps.unet, side, ["down"], [3])


def test_finetune_with_alignment_trains_the_aligned_projections(tmp_path):
    """A pretrained (here: a saved tiny) model fine-tuned with the term: the aligned layers'
    to_q change, while without the term they stay frozen (the authors' set)."""
    from xsyn.generator.factory import save_generator

    ds = make_dataset(tmp_path / "ds", n=6, size=RES)
    base = tiny_cfg()
    comps = build_tiny_components(base["generator"]["tiny"], RES, inpaint=True)
    save_generator(comps, tmp_path / "pre")
    side = RES // comps.vae_scale_factor

    def run(weight: float, out: str):
        cfg = copy.deepcopy(base)
        cfg["generator"].update(kind="pretrained", pretrained={"pipeline": str(tmp_path / "pre"), "unet": None,
                                                                "vae": None, "text_encoder": None, "tokenizer": None})
        cfg["finetune"].update(stages=[{"name": "inpainting", "steps": 3, "inpaint": True}], vae_steps=0,
                               inpaint_crop=0, cache_latents=False, caption_drop_prob=0.0)
        cfg["finetune"]["attention_alignment"].update(token_weight=weight, pixel_weight=0.0, mse_weight=0.0,
                                                      resolutions=[side // 2])
        tuner = FineTuner(cfg, ds, tmp_path / out, tmp_path / f"{out}.work")
        return tuner.train()

    plain = run(0.0, "plain")
    aligned = run(1.0, "aligned")
    layer = alignment_layers(aligned.unet, side, ["down", "up"], [side // 2])[0]
    w0 = dict(comps.unet.named_parameters())[f"{layer}.to_q.weight"]
    assert torch.equal(dict(plain.unet.named_parameters())[f"{layer}.to_q.weight"], w0)
    assert not torch.equal(dict(aligned.unet.named_parameters())[f"{layer}.to_q.weight"], w0)


def test_attention_on_items_is_a_share_and_reaches_finetune_json(tmp_path):
    import json

    from xsyn.generator.alignment import attention_on_items
    from xsyn.generator.finetune import finetune

    ds = make_dataset(tmp_path / "ds", n=4, size=RES)
    cfg = tiny_cfg(stages=[{"name": "inpainting", "steps": 1, "inpaint": True}], vae_steps=0, caption_drop_prob=0.0)
    side = RES // 4
    cfg["finetune"]["attention_alignment"]["resolutions"] = [side // 2]
    comps = build_tiny_components(cfg["generator"]["tiny"], RES, inpaint=True)
    comps.unet.register_to_config(sample_size=side)
    examples, _ = load_examples(ds, "train", RES)
    attach_class_masks(examples, ds, "train", RES, side, "boxes")
    layers = alignment_layers(comps.unet, side, ["down", "up"], [side // 2])
    got = attention_on_items(comps, examples, layers, repeats=1)
    assert 0.0 <= got["share"] <= 1.0 and 0.0 < got["area"] < 1.0 and got["words"] > 0
    finetune(cfg, ds, tmp_path / "gen")
    report = json.loads((tmp_path / "gen" / "finetune.json").read_text())["attention_on_items"]
    assert report["layers"] == layers and 0.0 <= report["share"] <= 1.0
