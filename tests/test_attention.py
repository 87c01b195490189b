"""Attention capture: right layers, unchanged outputs, conditional half only, in place."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from xsyn.generator.unet_layers import attn2_resolutions
from xsyn.synthesis.attention import (
    AttentionStore,
    CaptureAttnProcessor,
    install_capture,
    remove_capture,
)

TOKENS, CROSS = 7, 16


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D",) * 2, up_block_types=("CrossAttnUpBlock2D",) * 2,
        layers_per_block=1, cross_attention_dim=CROSS, attention_head_dim=8, norm_num_groups=8,
        attention_type="gated",
    ).eval()


def _gligen(batch, n=2):
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.9]]).expand(batch, n, 4)
    return {"gligen": {"boxes": boxes.clone(), "positive_embeddings": torch.randn(batch, n, CROSS),
                       "masks": torch.ones(batch, n)}}


def test_layer_selection(unet):
    res = attn2_resolutions(unet, 16)
    assert res["down_blocks.0.attentions.0.transformer_blocks.0.attn2"] == ("down", 16)
    assert res["down_blocks.1.attentions.0.transformer_blocks.0.attn2"] == ("down", 8)
    assert res["up_blocks.0.attentions.0.transformer_blocks.0.attn2"] == ("up", 8)
    assert res["mid_block.attentions.0.transformer_blocks.0.attn2"] == ("mid", 8)
    store = AttentionStore()
    names = install_capture(unet, store, 16, [8], ["down", "up"])
    try:
        assert all(".attn2" in n and not n.startswith("mid") for n in names)
        assert len(names) == 1 + 2  # down block 1 (1 layer) + up block 0 (layers_per_block + 1)
        procs = unet.attn_processors
        captured = [k for k, p in procs.items() if isinstance(p, CaptureAttnProcessor)]
        assert len(captured) == 3
        assert all(isinstance(p, AttnProcessor2_0) for k, p in procs.items() if k not in captured)
    finally:
        remove_capture(unet)
    assert not any(isinstance(p, CaptureAttnProcessor) for p in unet.attn_processors.values())
    with pytest.raises(ValueError, match="resolutions"):
        install_capture(unet, store, 16, [5], ["down"])


@torch.no_grad()
def test_outputs_unchanged_and_cond_half_only(unet):
    torch.manual_seed(1)
    x = torch.randn(2, 4, 16, 16)
    cond = torch.randn(2, TOKENS, CROSS)
    uncond = torch.randn(2, TOKENS, CROSS)
    kw = _gligen(4)
    ref = unet(torch.cat([x, x]), 10, encoder_hidden_states=torch.cat([uncond, cond]),
               cross_attention_kwargs={"gligen": dict(kw["gligen"])}).sample

    store = AttentionStore()
    install_capture(unet, store, 16, [8], ["down", "up"])
    try:
        store.reset(2, [8], TOKENS, "cpu")
        buf_ptr = store.buffers[8].data_ptr()
        out = unet(torch.cat([x, x]), 10, encoder_hidden_states=torch.cat([uncond, cond]),
                   cross_attention_kwargs={"gligen": dict(kw["gligen"])}).sample
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        assert store.counts[8] == 3
        cfg_buf = store.buffers[8].clone()
        # Each softmax row sums to one: the buffer sums to #calls per query position.
        torch.testing.assert_close(cfg_buf.sum(-1), torch.full((2, 64), 3.0))
        # A second call accumulates in place (same storage, doubled sum).
        unet(torch.cat([x, x]), 10, encoder_hidden_states=torch.cat([uncond, cond]),
             cross_attention_kwargs={"gligen": dict(kw["gligen"])})
        assert store.buffers[8].data_ptr() == buf_ptr
        torch.testing.assert_close(store.buffers[8], 2 * cfg_buf)

        # Only the conditional half counts: the same maps without the unconditional rows,
        # and different maps when the unconditional rows were the ones captured.
        store.reset(2, [8], TOKENS, "cpu")
        kw2 = {"gligen": {k: v[2:] for k, v in kw["gligen"].items()}}
        unet(x, 10, encoder_hidden_states=cond, cross_attention_kwargs=kw2)
        torch.testing.assert_close(store.buffers[8], cfg_buf, rtol=1e-4, atol=1e-6)
        store.reset(2, [8], TOKENS, "cpu")
        kw3 = {"gligen": {k: v[:2] for k, v in kw["gligen"].items()}}
        kw3["gligen"]["masks"] = kw3["gligen"]["masks"].clone()
        unet(x, 10, encoder_hidden_states=uncond, cross_attention_kwargs=kw3)
        assert not torch.allclose(store.buffers[8], cfg_buf, atol=1e-4)
    finally:
        remove_capture(unet)


def test_word_maps_average_token_spans():
    store = AttentionStore()
    store.reset(1, [2], 5, "cpu")
    buf = store.buffers[2]
    buf[0, :, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    buf[0, :, 2] = torch.tensor([0.0, 0.0, 0.0, 3.0])
    buf[0, :, 3] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    store.counts[2] = 1
    maps = store.word_maps([[[1, 2], [3], [1, 2]]], size=(2, 2))[0]
    assert maps.shape == (3, 2, 2)
    torch.testing.assert_close(maps[0], torch.tensor([[0.5, 0.0], [0.0, 1.5]]))
    torch.testing.assert_close(maps[1], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(maps[0], maps[2])
    up = store.word_maps([[[3]]], size=(8, 8))[0][0]
    assert up.shape == (8, 8) and up[0, 7] > up[7, 0]
