"""Model factory: real CLIP BPE, tiny GLIGEN shapes, save/load, pretrained path, conv_in widening."""

from __future__ import annotations

import json

import pytest
import torch
from dummies import RESOLUTION, TINY_GENERATOR, get_dummy_components

from xsyn.generator import (
    build_components,
    build_tiny_components,
    load_clip_tokenizer,
    load_generator,
    load_pretrained_components,
    pretrained_identity,
    save_generator,
    widen_conv_in,
)

RES = RESOLUTION


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return get_dummy_components(inpaint=False, seed=0)


def gligen_inputs(comps, batch: int = 2, n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lat = RES // comps.vae_scale_factor
    x = torch.randn(batch, comps.unet.config.in_channels, lat, lat, generator=g)
    ids = comps.tokenizer(["Gun, Knife"] * batch, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        ctx = comps.text_encoder(ids).last_hidden_state
        phrases = comps.tokenizer(["one Gun", "one Knife", "one Powerbank"], padding=True, return_tensors="pt")
        pooled = comps.text_encoder(**phrases).pooler_output
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.8], [0.2, 0.6, 0.4, 0.9]])
    gligen = {
        "boxes": boxes[None].expand(batch, -1, -1).clone(),
        "positive_embeddings": pooled[:n][None].expand(batch, -1, -1).clone(),
        "masks": torch.ones(batch, n),
    }
    return x, torch.tensor([10, 500]), ctx, gligen


def unet_out(comps, x, t, ctx, gligen):
    with torch.no_grad():
        return comps.unet(x, t, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample


@pytest.mark.parametrize(
    "text", ["one Powerbank", "Gun, Knife, Scissors", "one  Baton!", "Lighter,Bullet hammer's 42", "", "café"]
)
def test_tokenizer_matches_open_clip(text):
    from open_clip.tokenizer import SimpleTokenizer

    tok = load_clip_tokenizer()
    ours = tok(text).input_ids
    ref = SimpleTokenizer().encode(text)
    assert ours == [tok.bos_token_id, *ref, tok.eos_token_id]
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok.convert_ids_to_tokens(tok("one Powerbank").input_ids[2:4]) == ["power", "bank</w>"]


def test_tiny_shapes_and_attention_resolutions(tiny):
    unet = tiny.unet
    assert unet.config.attention_type == "gated" and unet.config.in_channels == 4
    assert unet.position_net.positive_len == TINY_GENERATOR["cross_attention_dim"]
    # cross-attention must run at latent 16 and 8 (for RES 64 / VAE x4): record attn2 query sizes
    seen = set()
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.add(inp[0].shape[1]))
        for name, m in unet.named_modules()
        if name.endswith("attn2")
    ]
    x, t, ctx, gligen = gligen_inputs(tiny)
    out = unet_out(tiny, x, t, ctx, gligen)
    for h in hooks:
        h.remove()
    assert out.shape == (2, 4, RES // 4, RES // 4)
    assert seen == {(RES // 4) ** 2, (RES // 8) ** 2}
    assert tiny.vae.config.sample_size == RES
    img = torch.rand(1, 3, RES, RES) * 2 - 1
    with torch.no_grad():
        assert tiny.vae.encode(img).latent_dist.mode().shape == (1, 4, RES // 4, RES // 4)


def test_tiny_rejects_mismatched_text_width():
    with pytest.raises(ValueError, match="text_hidden_size"):
        build_tiny_components({**TINY_GENERATOR, "text_hidden_size": 48}, RES)
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_components(TINY_GENERATOR, 60)


def test_widen_conv_in_preserves_output(tiny):
    comps = get_dummy_components(seed=1)
    # make the gates active so the check covers the grounded path too
    with torch.no_grad():
        for m in comps.unet.modules():
            if hasattr(m, "alpha_attn"):
                m.alpha_attn.fill_(0.5)
                m.alpha_dense.fill_(0.5)
    x, t, ctx, gligen = gligen_inputs(comps)
    before = unet_out(comps, x, t, ctx, gligen)
    widen_conv_in(comps.unet, 9)
    assert comps.unet.config.in_channels == 9 and comps.unet.conv_in.in_channels == 9
    extra = torch.randn(x.shape[0], 5, *x.shape[2:])
    after = unet_out(comps, torch.cat([x, extra], 1), t, ctx, gligen)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        widen_conv_in(comps.unet, 4)


def test_save_load_identical(tiny, tmp_path):
    comps = get_dummy_components(inpaint=True, seed=2)
    save_generator(comps, tmp_path / "gen")
    index = json.loads((tmp_path / "gen" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionGLIGENPipeline"
    assert index["safety_checker"] == [None, None]
    files = [p.name for p in (tmp_path / "gen").rglob("*") if p.is_file()]
    assert not any(f.endswith((".bin", ".pt", ".ckpt")) for f in files)
    assert sum(f.endswith(".safetensors") for f in files) == 3
    again = load_generator(tmp_path / "gen")
    assert again.unet.config.in_channels == 9
    x, t, ctx, gligen = gligen_inputs(comps)
    torch.testing.assert_close(unet_out(again, x, t, ctx, gligen), unet_out(comps, x, t, ctx, gligen), rtol=0, atol=0)
    ids = comps.tokenizer(["one Gun"], return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(again.text_encoder(ids).pooler_output, comps.text_encoder(ids).pooler_output)
        img = torch.rand(1, 3, RES, RES)
        torch.testing.assert_close(again.vae(img).sample, comps.vae(img).sample)
    assert again.scheduler.config.beta_schedule == "scaled_linear"


def test_diffusers_pipeline_loads_saved_folder(tiny, tmp_path):
    from diffusers import StableDiffusionGLIGENPipeline

    save_generator(tiny, tmp_path / "gen")
    pipe = StableDiffusionGLIGENPipeline.from_pretrained(tmp_path / "gen", local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="Gun", gligen_phrases=["one Gun"], gligen_boxes=[[0.1, 0.1, 0.6, 0.6]],
        height=RES, width=RES, num_inference_steps=2, output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert out.shape == (1, RES, RES, 3)


def test_v_prediction_travels_with_the_saved_scheduler(tmp_path):
    from diffusers import StableDiffusionGLIGENPipeline

    comps = get_dummy_components(seed=0, prediction_type="v_prediction")
    assert comps.scheduler.config.prediction_type == "v_prediction"
    save_generator(comps, tmp_path / "gen")
    assert load_generator(tmp_path / "gen").scheduler.config.prediction_type == "v_prediction"
    pipe = StableDiffusionGLIGENPipeline.from_pretrained(tmp_path / "gen", local_files_only=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert get_dummy_components().scheduler.config.prediction_type == "epsilon"


def folders(**given: str) -> dict[str, str | None]:
    """A ``generator.pretrained`` section: every key, null unless given (as the profiles have it)."""
    return {"pipeline": None, "unet": None, "vae": None, "text_encoder": None, "tokenizer": None, **given}


def test_pretrained_path_pipeline_folder(tiny, tmp_path):
    save_generator(tiny, tmp_path / "gen")
    comps = load_pretrained_components(folders(pipeline=str(tmp_path / "gen")), inpaint=True)
    assert comps.unet.config.in_channels == 9
    x, t, ctx, gligen = gligen_inputs(tiny)
    extra = torch.randn(x.shape[0], 5, *x.shape[2:])
    torch.testing.assert_close(
        unet_out(comps, torch.cat([x, extra], 1), t, ctx, gligen), unet_out(tiny, x, t, ctx, gligen),
        rtol=0, atol=1e-6,
    )
    cfg = {"seed": 0, "generator": {"kind": "pretrained", "resolution": RES, "pretrained": folders(pipeline=str(tmp_path / "gen"))}}
    assert build_components(cfg).unet.config.in_channels == 4


def test_pretrained_plain_sd_unet_gets_fresh_gates(tiny, tmp_path):
    from diffusers import UNet2DConditionModel

    cfg = dict(tiny.unet.config)
    cfg["attention_type"] = "default"
    plain = UNet2DConditionModel.from_config(cfg)
    plain.save_pretrained(tmp_path / "unet")
    tiny.vae.save_pretrained(tmp_path / "vae")
    tiny.text_encoder.save_pretrained(tmp_path / "te")
    comps = load_pretrained_components(
        folders(unet=str(tmp_path / "unet"), vae=str(tmp_path / "vae"), text_encoder=str(tmp_path / "te"))
    )
    assert comps.unet.config.attention_type == "gated" and hasattr(comps.unet, "position_net")
    x, t, ctx, gligen = gligen_inputs(tiny)
    with torch.no_grad():
        ref = plain(x, t, encoder_hidden_states=ctx).sample
    # fresh gates are closed: the grounded model starts as the plain one
    torch.testing.assert_close(unet_out(comps, x, t, ctx, gligen), ref, rtol=0, atol=1e-6)


def test_pretrained_missing_folder_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained.pipeline"):
        load_pretrained_components(folders(pipeline=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="set 'pipeline'"):
        load_pretrained_components(folders())


def test_pretrained_identity_notices_changed_weights(tmp_path):
    (tmp_path / "m" / "unet").mkdir(parents=True)
    w = tmp_path / "m" / "unet" / "w.safetensors"
    w.write_bytes(b"\x00" * 64)
    before = pretrained_identity({"pipeline": str(tmp_path / "m"), "vae": None})
    w.write_bytes(b"\x01" * 64)  # same size, other weights
    after = pretrained_identity({"pipeline": str(tmp_path / "m"), "vae": None})
    assert set(before) == {"pipeline"} and before != after
    # files above the limit (SD's 3 GB UNet) count by name and size only
    big = pretrained_identity({"pipeline": str(tmp_path / "m")}, max_hash_bytes=8)
    w.write_bytes(b"\x02" * 64)
    assert pretrained_identity({"pipeline": str(tmp_path / "m")}, max_hash_bytes=8) == big
    w.write_bytes(b"\x02" * 65)
    assert pretrained_identity({"pipeline": str(tmp_path / "m")}, max_hash_bytes=8) != big
