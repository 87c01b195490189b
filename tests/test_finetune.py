"""Fine-tuning: data, loss goes down, checkpoints resume bit-exactly, output reloads, CLI."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from xsyn.config import load_config
from xsyn.data.contract import save_coco
from xsyn.generator.data import (
    batch_indices,
    crop_boxes,
    crop_resize,
    inpaint_mask,
    item_window,
    load_examples,
    make_batch,
    random_crop,
)
from xsyn.generator.factory import build_tiny_components, load_generator
from xsyn.generator.finetune import FineTuner, StepInfo, finetune
from xsyn.generator.objective import (
    Stage,
    TrainingObjective,
    is_grounding_param,
    plan_stages,
    select_trainable,
)

RES = 64
CLASSES = ["Gun", "Scissors", "Powerbank"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


class SimulatedCrash(RuntimeError):
    """Raised from a step callback to kill a run between two steps."""


def crash_after(n: int):
    """A step callback that kills the run once ``n`` optimizer steps are done (after their checkpoint)."""

    def callback(info: StepInfo) -> None:
        if info.global_step >= n:
            raise SimulatedCrash(f"simulated crash after {info.global_step} steps")

    return callback


def make_dataset(root, n: int = 8, size: int = 64, seed: int = 0):
    """Shapes on a grey bag: Gun = dark blue bar, Scissors = green cross, Powerbank = orange block."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        img = np.full((size, size, 3), 200, np.uint8)
        for k in range(int(rng.integers(1, 3))):
            c = int(rng.integers(3))
            w, h = (int(v) for v in rng.integers(size // 6, size // 2.5, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            img[y : y + h, x : x + w] = [(30, 30, 160), (40, 160, 40), (230, 140, 30)][c]
            anns.append({
                "id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1,
                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, **({"phrase": f"one {CLASSES[c]}"} if k else {}),
            })
        # a tiny box that must be dropped (< 1 % of the area)
        anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [0, 0, 3, 3], "area": 9, "iscrowd": 0})
        Image.fromarray(img).save(root / "images" / f"{i:03d}.png")
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "width": size, "height": size})
    coco = {"images": images, "annotations": anns, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]}
    save_coco(root / "annotations" / "train.json", coco)
    save_coco(root / "annotations" / "val.json", coco)
    return root


def tiny_cfg(**ft):
    cfg = load_config()
    cfg["device"] = "cpu"
    cfg["generator"]["kind"] = "tiny"  # from scratch: the smoke default starts from the shipped model
    cfg["generator"]["resolution"] = RES
    cfg["generator"]["tiny"].update(cross_attention_dim=32, text_hidden_size=32, text_layers=1, text_heads=2)
    cfg["finetune"].update(
        stages=[{"name": "generation", "steps": 3, "inpaint": False}, {"name": "inpainting", "steps": 3, "inpaint": True}],
        vae_steps=2, batch_size=2, checkpoint_every=2, warmup_steps=1, learning_rate=1e-3,
    )
    # these tests are about the loop, not the alignment term (tests/test_alignment.py), which the
    # smoke profile turns on for CAR's layers at its own resolution
    cfg["finetune"]["attention_alignment"].update(token_weight=0.0, pixel_weight=0.0, mse_weight=0.0)
    cfg["finetune"].update(ft)
    cfg["synthesis"]["steps"] = 2
    return cfg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds") / "phantom")


# ------------------------------------------------------------------ data


def test_examples_drop_small_boxes_and_cap(dataset):
    examples, names = load_examples(dataset, "train", RES, min_box_area=0.01, max_boxes=8)
    assert names == CLASSES and len(examples) == 8
    for ex in examples:
        area = (ex.boxes[:, 2] - ex.boxes[:, 0]) * (ex.boxes[:, 3] - ex.boxes[:, 1])
        assert (area >= 0.01).all() and len(ex.phrases) == len(ex.boxes) >= 1
        assert all(p.startswith("one ") for p in ex.phrases)
        assert ex.caption == ", ".join(dict.fromkeys(p[4:] for p in ex.phrases))
    capped, _ = load_examples(dataset, "train", RES, min_box_area=0.0, max_boxes=1)
    assert all(len(ex.boxes) == 1 for ex in capped)


def test_crop_resize_boxes():
    img = Image.new("RGB", (200, 100))
    pix, boxes = crop_resize(img, np.array([[50, 0, 100, 50], [0, 0, 40, 40]]), 50)
    assert pix.shape == (50, 50, 3)
    np.testing.assert_allclose(boxes[0], [0.0, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(boxes[1], [0.0, 0.0, 0.0, 0.4])  # outside the crop: zero width


def test_inpaint_mask_matches_pipeline():
    from diffusers import StableDiffusionGLIGENPipeline

    boxes = torch.tensor([[0.1, 0.2, 0.55, 0.9], [0.0, 0.0, 0.3, 0.3]])
    ours = inpaint_mask(boxes, torch.tensor([True, False]), 16)[0]
    ref = StableDiffusionGLIGENPipeline.draw_inpaint_mask_from_boxes(None, boxes[:1].tolist(), (16, 16))
    torch.testing.assert_close(ours, ref)


def test_batch_is_a_function_of_the_generator(dataset):
    examples, _ = load_examples(dataset, "train", RES)
    def batch(seed):
        return make_batch(examples, [0, 1, 2], torch.Generator().manual_seed(seed), 8, 0.5, 0.1, inpaint=True, latent_size=16)
    a, b = batch(3), batch(3)
    torch.testing.assert_close(a["pixel_values"], b["pixel_values"])
    torch.testing.assert_close(a["inpaint_mask"], b["inpaint_mask"])
    assert a["phrases"] == b["phrases"] and a["captions"] == b["captions"]
    assert a["boxes"].shape == (3, 8, 4) and a["inpaint_mask"].shape == (3, 1, 16, 16)
    # the masked area holds every grounded box and nothing else is masked outside all boxes
    for i in range(3):
        assert (a["inpaint_mask"][i] == 0).any()
    drops = [make_batch(examples, [0] * 4, torch.Generator().manual_seed(s), 8, 0.5)["captions"] for s in range(10)]
    flat = [c for d in drops for c in d]
    assert "" in flat and any(flat)  # caption dropped sometimes, kept sometimes
    assert batch_indices(8, 3, 5, 0) == batch_indices(8, 3, 5, 0)
    epoch = [i for s in range(4) for i in batch_indices(8, 2, s, 0)]
    assert sorted(epoch) == list(range(8))


def test_random_crop_and_latent_cache(dataset, tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    c = random_crop(x, 4, g)
    assert c.shape == (2, 3, 4, 4)
    for i in range(2):  # each crop is a contiguous window of its own image
        y0, x0 = divmod(int((c[i, 0, 0, 0] - x[i, 0, 0, 0]).item()), 8)
        torch.testing.assert_close(c[i], x[i, :, y0 : y0 + 4, x0 : x0 + 4])
    assert random_crop(x, 0, g) is x
    tuner = FineTuner(tiny_cfg(), dataset, tmp_path / "g", tmp_path / "w")
    tuner.latent_cache = (torch.randn(8, 4, 4, 4), torch.rand(8, 4, 4, 4))
    batch = {"indices": [3, 5], "flipped": torch.tensor([True, False])}
    tuner.attach_latents(batch)
    torch.testing.assert_close(batch["latent_mean"][0], tuner.latent_cache[0][3].flip(-1))
    torch.testing.assert_close(batch["latent_std"][1], tuner.latent_cache[1][5])


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0, 1), st.floats(0, 1), st.floats(0.01, 1), st.floats(0.01, 1),
    st.sampled_from([8, 16, 32]), st.integers(0, 2**31 - 1),
)
def test_item_window_holds_the_anchor(x, y, w, h, size, seed):
    window = size // 2
    box = torch.tensor([[x, y, min(1.0, x + w), min(1.0, y + h)]])
    ox, oy = item_window(box, 0, size, window, torch.Generator().manual_seed(seed))
    assert 0 <= ox <= size - window and 0 <= oy <= size - window
    inside, kept = crop_boxes(box, (ox, oy), size, window)
    assert ((inside >= 0) & (inside <= 1)).all()
    x0, y0, x1, y1 = (float(v) * size for v in box[0])
    if x1 - x0 <= window - 1 and y1 - y0 <= window - 1:  # fits: the whole box is in the window
        assert ox <= x0 and oy <= y0 and x1 <= ox + window and y1 <= oy + window
        assert bool(kept[0]) or (x1 - x0) * (y1 - y0) == 0


def test_crop_boxes_keeps_items_with_half_their_area():
    boxes = torch.tensor([[0.0, 0.0, 0.25, 0.25], [0.45, 0.0, 0.75, 0.25], [0.9, 0.9, 1.0, 1.0]])
    inside, kept = crop_boxes(boxes, (0, 0), 16, 8)  # window = the top-left quarter
    torch.testing.assert_close(inside[0], torch.tensor([0.0, 0.0, 0.5, 0.5]))
    assert kept.tolist() == [True, False, False]  # 1/6 of box 1 is inside; box 2 is outside


def test_item_crops_make_consistent_batches(dataset):
    examples, _ = load_examples(dataset, "train", RES)
    batch = make_batch(examples, [0, 1, 2, 3], torch.Generator().manual_seed(0), 8, 0.0, inpaint=True,
                       latent_size=16, crop=8)
    assert batch["pixel_values"].shape == (4, 3, 32, 32)  # 8 latent cells × factor 4
    assert batch["inpaint_mask"].shape == (4, 1, 8, 8) and batch["crop_offsets"].shape == (4, 2)
    for i in range(4):
        grounded = batch["box_mask"][i].bool()
        assert grounded.any()  # the anchor item is always repainted and grounded
        assert (batch["inpaint_mask"][i] == 0).any()
        names = [p[4:] for p in batch["phrases"][8 * i : 8 * i + 8] if p]
        assert set(names) <= set(batch["captions"][i].split(", "))  # caption describes the window
    again = make_batch(examples, [0, 1, 2, 3], torch.Generator().manual_seed(0), 8, 0.0, inpaint=True,
                       latent_size=16, crop=8)
    torch.testing.assert_close(batch["crop_offsets"], again["crop_offsets"])


def test_cached_latents_are_cut_like_the_pixels(dataset, tmp_path):
    tuner = FineTuner(tiny_cfg(), dataset, tmp_path / "g", tmp_path / "w")
    tuner.latent_cache = (torch.randn(8, 4, 16, 16), torch.rand(8, 4, 16, 16))
    batch = {"indices": [2, 6], "flipped": torch.tensor([True, False]), "crop": 8,
             "crop_offsets": torch.tensor([[3, 5], [8, 0]])}
    tuner.attach_latents(batch)
    torch.testing.assert_close(batch["latent_mean"][0], tuner.latent_cache[0][2].flip(-1)[:, 5:13, 3:11])
    torch.testing.assert_close(batch["latent_std"][1], tuner.latent_cache[1][6][:, 0:8, 8:16])


def test_inpaint_crop_must_fit_the_vae_grid(dataset, tmp_path):
    cfg = tiny_cfg()
    cfg["finetune"]["inpaint_crop"] = 30
    tuner = FineTuner(cfg, dataset, tmp_path / "g", tmp_path / "w")
    tuner.comps = build_tiny_components(cfg["generator"]["tiny"], RES, inpaint=False)
    with pytest.raises(ValueError, match="inpaint_crop 30"):
        tuner.crop_cells(Stage("i", 1, True, "unet"))
    assert tuner.crop_cells(Stage("g", 1, False, "unet")) == 0
    tuner.ft["inpaint_crop"] = RES  # as large as the scans: whole scans
    assert tuner.crop_cells(Stage("i", 1, True, "unet")) == 0
    tuner.ft["inpaint_crop"] = 32
    assert tuner.crop_cells(Stage("i", 1, True, "unet")) == 8


def test_mask_loss_weight_focuses_on_boxes(dataset):
    cfg = tiny_cfg()
    comps = build_tiny_components(cfg["generator"]["tiny"], RES, inpaint=True)
    examples, _ = load_examples(dataset, "train", RES)
    batch = make_batch(examples, [0, 1], torch.Generator().manual_seed(0), 8, 0.0, inpaint=True, latent_size=16)
    stage = Stage("i", 1, True, "unet")
    with torch.no_grad():
        plain = float(TrainingObjective(comps, stage, True, 1.0)(batch, torch.Generator().manual_seed(1)))
        again = float(TrainingObjective(comps, stage, True, 1.0)(batch, torch.Generator().manual_seed(1)))
        heavy = float(TrainingObjective(comps, stage, True, 50.0)(batch, torch.Generator().manual_seed(1)))
    assert plain == again and heavy != plain


def test_extra_loss_term_reads_attention_with_gradients(dataset):
    """The objective's seam for an attention-alignment term: a term names attn2 layers,
    reads their probabilities of the training forward (with gradients) and the batch's
    boxes, and adds ``weight × value`` to the loss; the UNet's processors are restored."""
    cfg = tiny_cfg()
    comps = build_tiny_components(cfg["generator"]["tiny"], RES, inpaint=True)
    select_trainable(comps, Stage("i", 1, True, "unet"), from_scratch=True, train_text=False)
    examples, _ = load_examples(dataset, "train", RES)
    batch = make_batch(examples, [0, 1], torch.Generator().manual_seed(0), 8, 0.0, inpaint=True, latent_size=16)
    stage = Stage("i", 1, True, "unet")
    modules = dict(comps.unet.named_modules())
    layer = next(n for n in modules if n.endswith("attn2"))
    before = type(modules[layer].processor)
    seen = {}

    class TokenMass:
        name, weight, attention_layers = "token-mass", 0.5, (layer,)

        def __call__(self, p):
            probs = p.attention[layer]
            seen.update(shape=tuple(probs.shape), boxes=tuple(p.batch["boxes"].shape))
            return probs[..., 1].mean()

    plain = TrainingObjective(comps, stage, False)(batch, torch.Generator().manual_seed(1))
    term = TokenMass()
    objective = TrainingObjective(comps, stage, False, terms=[term])
    total = objective(batch, torch.Generator().manual_seed(1))
    assert seen["shape"][0] == 2 and seen["shape"][-1] == 77 and seen["boxes"] == (2, 8, 4)
    p = objective.denoise(batch, torch.Generator().manual_seed(1))
    torch.testing.assert_close(total, plain + 0.5 * term(p))
    comps.unet.zero_grad(set_to_none=True)
    term(p).backward()
    assert modules[layer].to_k.weight.grad is not None and modules[layer].to_k.weight.grad.abs().sum() > 0
    assert type(modules[layer].processor) is before


def test_only_the_newest_checkpoints_are_kept(dataset, tmp_path):
    from xsyn.generator.finetune import CHECKPOINTS_TOTAL_LIMIT

    tuner = FineTuner(tiny_cfg(), dataset, tmp_path / "g", tmp_path / "w", step_callback=crash_after(5))
    with pytest.raises(SimulatedCrash):
        tuner.train()  # checkpoints after global steps 2 (vae done), 4 and 5 (generation done)
    kept = [p.name for p in tuner.checkpoints()]
    assert len(kept) == CHECKPOINTS_TOTAL_LIMIT == 2 and kept == ["checkpoint-4", "checkpoint-5"]


# ------------------------------------------------------------------ trainable sets


def test_trainable_sets():
    comps = build_tiny_components(tiny_cfg()["generator"]["tiny"], RES)
    groups = select_trainable(comps, Stage("g", 1, False, "unet"), from_scratch=False)
    names = {n for n, p in comps.unet.named_parameters() if p.requires_grad}
    assert names and all(".fuser." in n or n.startswith("position_net.") for n in names)
    assert not any(p.requires_grad for p in comps.text_encoder.parameters())
    assert len(groups["unet"]) == len(names)
    from xsyn.generator.factory import widen_conv_in

    widen_conv_in(comps.unet)
    select_trainable(comps, Stage("i", 1, True, "unet"), from_scratch=False)
    assert comps.unet.conv_in.weight.requires_grad and not comps.unet.conv_out.weight.requires_grad
    groups = select_trainable(comps, Stage("g", 1, False, "unet"), from_scratch=True)
    assert set(groups) == {"unet", "text_encoder"} and all(p.requires_grad for p in comps.unet.parameters())
    groups = select_trainable(comps, Stage("g", 1, False, "unet"), from_scratch=True, train_text=False)
    assert set(groups) == {"unet"} and not any(p.requires_grad for p in comps.text_encoder.parameters())
    assert is_grounding_param("down_blocks.0.attentions.0.transformer_blocks.0.fuser.linear.weight", False)
    assert not is_grounding_param("conv_in.weight", False) and is_grounding_param("conv_in.weight", True)


def test_plan_stages():
    cfg = tiny_cfg()
    assert [s.name for s in plan_stages(cfg)] == ["vae", "generation", "inpainting"]
    cfg["generator"]["kind"] = "pretrained"
    assert [s.name for s in plan_stages(cfg)] == ["generation", "inpainting"]
    cfg["finetune"]["stages"] = cfg["finetune"]["stages"][::-1]
    with pytest.raises(ValueError, match="cannot follow"):
        plan_stages(cfg)


# ------------------------------------------------------------------ training


@pytest.mark.parametrize("inpaint", [False, True])
def test_training_step_lowers_loss_on_fixed_batch(dataset, inpaint):
    cfg = tiny_cfg()
    comps = build_tiny_components(cfg["generator"]["tiny"], RES, inpaint=inpaint)
    comps.vae.register_to_config(scaling_factor=1.0)
    stage = Stage("s", 1, inpaint, "unet")
    params = [p for ps in select_trainable(comps, stage, True).values() for p in ps]
    model = TrainingObjective(comps, stage, train_text=True)
    examples, _ = load_examples(dataset, "train", RES)
    batch = make_batch(examples, [0, 1, 2, 3], torch.Generator().manual_seed(0), 8, 0.0, inpaint=inpaint, latent_size=16)
    opt = torch.optim.AdamW(params, lr=1e-3)

    def loss_now():
        with torch.no_grad():
            return float(model(batch, torch.Generator().manual_seed(1)))

    before = loss_now()
    for _ in range(5):
        opt.zero_grad()
        model(batch, torch.Generator().manual_seed(1)).backward()
        opt.step()
    after = loss_now()
    assert after < before * 0.9, (before, after)


def test_min_snr_weighting(dataset):
    """γ above every timestep's SNR changes nothing; a small γ down-weights clean timesteps."""
    cfg = tiny_cfg()
    comps = build_tiny_components(cfg["generator"]["tiny"], RES, inpaint=False)
    examples, _ = load_examples(dataset, "train", RES)
    batch = make_batch(examples, [0, 1, 2, 3], torch.Generator().manual_seed(0), 8, 0.0)
    stage = Stage("g", 1, False, "unet")

    def loss(gamma):
        with torch.no_grad():
            return float(TrainingObjective(comps, stage, False, snr_gamma=gamma)(batch, torch.Generator().manual_seed(1)))

    assert loss(1e9) == pytest.approx(loss(None), rel=1e-6)
    assert loss(0.5) < loss(None)


def test_gate_init_opens_gligen_fusers():
    from diffusers.models.attention import GatedSelfAttentionDense

    tiny = dict(tiny_cfg()["generator"]["tiny"])
    shut = build_tiny_components(tiny, RES).unet
    opened = build_tiny_components({**tiny, "gate_init": 1.0}, RES).unet
    fusers = [m for m in opened.modules() if isinstance(m, GatedSelfAttentionDense)]
    assert fusers and all(float(m.alpha_attn) == 1.0 and float(m.alpha_dense) == 1.0 for m in fusers)
    assert all(float(m.alpha_attn) == 0.0 for m in shut.modules() if isinstance(m, GatedSelfAttentionDense))


def test_frozen_text_encoder_keeps_its_initial_code(dataset, tmp_path):
    """``text_encoder_lr_scale: 0`` trains the UNet only; the random text encoder stays
    exactly as built (a fixed code per word), with a positive scale it moves."""
    from xsyn.generator.factory import build_components

    cfg = tiny_cfg(vae_steps=0, stages=[{"name": "generation", "steps": 2, "inpaint": False}])
    init = build_components(cfg, inpaint=False, seed=cfg["finetune"]["seed"]).text_encoder.state_dict()
    frozen = finetune(tiny_cfg(**{**cfg["finetune"], "text_encoder_lr_scale": 0.0}), dataset,
                      tmp_path / "f", tmp_path / "f.work").text_encoder.state_dict()
    trained = finetune(tiny_cfg(**{**cfg["finetune"], "text_encoder_lr_scale": 1.0}), dataset,
                       tmp_path / "t", tmp_path / "t.work").text_encoder.state_dict()
    assert all(torch.equal(frozen[k], init[k]) for k in init)
    assert not all(torch.equal(trained[k], init[k]) for k in init)


def flat_weights(comps):
    return torch.cat([p.detach().flatten() for m in (comps.unet, comps.text_encoder, comps.vae) for p in m.state_dict().values() if p.is_floating_point()])


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(dataset, tmp_path):
    cfg = tiny_cfg(ema=True, inpaint_crop=32)  # item windows in the inpainting stage
    ref = finetune(copy.deepcopy(cfg), dataset, tmp_path / "ref", tmp_path / "ref.work")
    # kill after step 4 (vae 2 + generation 2: the checkpoint at generation step 2) and after 6
    # (mid-inpainting is step 7; crash at 6 leaves generation done, no inpainting checkpoint)
    for crash in (4, 7):
        with pytest.raises(SimulatedCrash):
            finetune(copy.deepcopy(cfg), dataset, tmp_path / "run", tmp_path / "run.work", step_callback=crash_after(crash))
    assert not (tmp_path / "run").exists()
    resumed = finetune(copy.deepcopy(cfg), dataset, tmp_path / "run", tmp_path / "run.work")
    torch.testing.assert_close(flat_weights(resumed), flat_weights(ref), rtol=0, atol=0)
    a = list(csv.DictReader(open(tmp_path / "ref" / "loss.csv")))
    b = list(csv.DictReader(open(tmp_path / "run" / "loss.csv")))
    assert a == b and len(a) == 2 + 3 + 3
    # a different seed gives different weights (the comparison above can fail)
    other = finetune(tiny_cfg(ema=True, inpaint_crop=32, seed=1), dataset, tmp_path / "o", tmp_path / "o.work")
    assert not torch.equal(flat_weights(other), flat_weights(ref))


def test_output_folder_reloads_and_matches(dataset, tmp_path):
    cfg = tiny_cfg()
    comps = finetune(cfg, dataset, tmp_path / "gen", tmp_path / "gen.work")
    out = tmp_path / "gen"
    for name in ("model_index.json", "loss.csv", "loss.png", "finetune.json", "stages/generation/model_index.json"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.bin"))
    again = load_generator(out)
    assert again.unet.config.in_channels == 9
    assert again.vae.config.scaling_factor == comps.vae.config.scaling_factor != 1.0
    torch.testing.assert_close(flat_weights(again), flat_weights(comps), rtol=0, atol=0)
    gen = load_generator(out / "stages" / "generation")
    assert gen.unet.config.in_channels == 4
    # the generation weights live on in the inpainting model (widened conv_in, old channels kept)
    info = json.loads((out / "finetune.json").read_text())
    assert [s["name"] for s in info["stages"]] == ["vae", "generation", "inpainting"]


def test_pretrained_kind_trains_only_grounding(dataset, tmp_path):
    from xsyn.generator.factory import save_generator

    cfg = tiny_cfg()
    base = build_tiny_components(cfg["generator"]["tiny"], RES, seed=5)
    save_generator(base, tmp_path / "base")
    cfg["generator"]["kind"] = "pretrained"
    cfg["generator"]["pretrained"]["pipeline"] = str(tmp_path / "base")
    cfg["finetune"]["learning_rate"] = 1e-2
    comps = finetune(cfg, dataset, tmp_path / "gen", tmp_path / "gen.work")
    ref = load_generator(tmp_path / "base")
    changed = {n for n, p in comps.unet.state_dict().items() if n in ref.unet.state_dict()
               and p.shape == ref.unet.state_dict()[n].shape and not torch.equal(p, ref.unet.state_dict()[n])}
    assert changed and all(is_grounding_param(n, True) for n in changed)
    for m in ("vae", "text_encoder"):
        for (n, p), q in zip(getattr(comps, m).state_dict().items(), getattr(ref, m).state_dict().values(), strict=True):
            assert torch.equal(p, q), n


def test_cli_writes_samples(dataset, tmp_path):
    from xsyn.cli import main
    from xsyn.jobs import job_config

    cfg = tiny_cfg(vae_steps=1, stages=[{"name": "generation", "steps": 1, "inpaint": False}, {"name": "inpainting", "steps": 1, "inpaint": True}])
    frag = json.dumps(job_config(cfg, "finetune"))
    rc = main(["finetune", "--dataset", str(dataset), "--out", str(tmp_path / "g"), "--config-json", frag])
    assert rc == 0
    # the sample grid is a job of its own (its settings never re-run the fine-tuning)
    rc = main(["samples", "--generator", str(tmp_path / "g"), "--dataset", str(dataset),
               "--out", str(tmp_path / "samples.png"), "--config-json", json.dumps(job_config(cfg, "samples"))])
    assert rc == 0
    assert (tmp_path / "samples.png").is_file()
    assert main(["finetune", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "h")]) == 1


def test_budget_stops_with_checkpoint(dataset, tmp_path):
    tuner = FineTuner(tiny_cfg(), dataset, tmp_path / "g", tmp_path / "w", max_minutes=0.0)
    from xsyn.generator.finetune import BudgetExceeded

    with pytest.raises(BudgetExceeded, match="rerun"):
        tuner.train()
    assert tuner.latest_checkpoint() is not None and not (tmp_path / "g").exists()


def test_inpainting_checkpoint_cannot_train_generation_stage(dataset, tmp_path):
    from xsyn.generator.factory import save_generator

    cfg = tiny_cfg()
    save_generator(build_tiny_components(cfg["generator"]["tiny"], RES, inpaint=True), tmp_path / "base")
    cfg["generator"]["kind"] = "pretrained"
    cfg["generator"]["pretrained"]["pipeline"] = str(tmp_path / "base")
    with pytest.raises(ValueError, match="already an inpainting model"):
        finetune(cfg, dataset, tmp_path / "gen", tmp_path / "gen.work")


def test_changed_config_discards_checkpoints_and_success_clears_work_dir(dataset, tmp_path):
    work = tmp_path / "w"
    with pytest.raises(SimulatedCrash):
        finetune(tiny_cfg(), dataset, tmp_path / "g", work, step_callback=crash_after(4))
    assert list((work / "checkpoints").glob("checkpoint-*"))
    # Another learning rate: the old checkpoints must not be resumed as if they were this job's.
    changed = tiny_cfg(learning_rate=5e-4)
    fresh = finetune(copy.deepcopy(changed), dataset, tmp_path / "g", work)
    ref = finetune(copy.deepcopy(changed), dataset, tmp_path / "ref", tmp_path / "ref.work")
    torch.testing.assert_close(flat_weights(fresh), flat_weights(ref), rtol=0, atol=0)
    assert not work.exists() and not (tmp_path / "ref.work").exists()


# ------------------------------------------------------------------ conditioning check


def test_swap_classes_changes_every_grounded_class():
    import random

    from xsyn.generator.conditioning import swap_classes

    batch = {"phrases": ["one Gun", "", "one Scissors", ""], "captions": ["Gun, Scissors", ""]}
    out = swap_classes(batch, CLASSES, random.Random(0))
    assert out["phrases"][1] == "" and out["phrases"][3] == "" and out["captions"][1] == ""
    assert out["phrases"][0] != "one Gun" and out["phrases"][0][4:] in CLASSES
    assert out["phrases"][2] != "one Scissors"
    new = out["captions"][0].split(", ")
    assert new[0] != "Gun" and all(c in CLASSES for c in new)
    assert batch["phrases"][0] == "one Gun"  # the input batch is left alone


def test_conditioning_ratio_is_deterministic(dataset):
    from xsyn.generator.conditioning import conditioning_ratio

    comps = build_tiny_components(tiny_cfg()["generator"]["tiny"], RES, inpaint=True)
    examples, classes = load_examples(dataset, "train", RES)
    a = conditioning_ratio(comps, examples, classes, repeats=2)
    b = conditioning_ratio(comps, examples, classes, repeats=2)
    assert a == b and a["box_loss_true"] > 0 and a["ratio"] > 0
    with pytest.raises(ValueError, match="inpainting"):
        conditioning_ratio(build_tiny_components(tiny_cfg()["generator"]["tiny"], RES), examples, classes)


def test_conditioning_ratio_at_another_resolution_than_pretrained(dataset):
    """A pretrained model fine-tuned at a smaller size (the e2e test: 128-px model, 64-px scans)."""
    from xsyn.generator.conditioning import conditioning_ratio
    from xsyn.generator.factory import set_resolution

    comps = build_tiny_components(tiny_cfg()["generator"]["tiny"], RES, inpaint=True)
    examples, classes = load_examples(dataset, "train", RES // 2)
    with pytest.raises(RuntimeError):
        conditioning_ratio(comps, examples, classes, repeats=1)
    set_resolution(comps, RES // 2)  # what build_components does for a pretrained model
    assert conditioning_ratio(comps, examples, classes, repeats=1)["ratio"] > 0
