"""Cross-attention capture for CAR: softmaxed text attention summed over steps, in place.

CAR needs, per class word, the conditional branch's text cross-attention (``attn2``) at
16×16 latent resolution in the down and up blocks, averaged over heads and layers and
summed over the denoising steps (DESIGN §2). A naive hook that keeps every step's map
costs memory linear in steps × layers; here a processor installed on just those few
``attn2`` modules adds each call's head-mean into one preallocated buffer per resolution
on the device. Every other attention layer keeps diffusers' fused SDPA processor; the
captured layers compute the (small: side² × 77) probabilities explicitly, once, and use
them both for the output and, for the conditional half only, for the map.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from xsyn.generator.unet_layers import attn2_resolutions


class AttentionStore:
    """Per-resolution accumulators ``(batch, side², tokens)`` in float32 on the device.

    The conditional rows are the *last* ``batch`` rows of every UNet call (diffusers puts
    the unconditional half first), so the store works with and without CFG.
    """

    def __init__(self) -> None:
        self.buffers: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = {}
        self.batch = 0
        self.active = False

    def reset(self, batch: int, resolutions: Iterable[int], tokens: int,
              device: torch.device | str) -> None:
        """Zero (re-using memory when shapes match) and start capturing."""
        self.batch = batch
        for side in resolutions:
            buf = self.buffers.get(side)
            if buf is None or buf.shape != (batch, side * side, tokens) or buf.device != torch.device(device):
                self.buffers[side] = torch.zeros(batch, side * side, tokens, device=device)
            else:
                buf.zero_()
            self.counts[side] = 0
        for side in list(self.buffers):
            if side not in set(resolutions):
                del self.buffers[side], self.counts[side]
        self.active = True

    def add(self, side: int, probs: torch.Tensor) -> None:
        """``probs``: (batch, heads, side², tokens) softmaxed attention of one layer call."""
        self.buffers[side].add_(probs.mean(dim=1, dtype=torch.float32))
        self.counts[side] += 1

    def word_maps(self, spans: Sequence[Sequence[Sequence[int]]], size: tuple[int, int]) -> list[torch.Tensor]:
        """One map per word per image: ``spans[b][w]`` token indices → (n_words, H, W).

        Multi-token words average their tokens; each resolution is averaged over its layer
        calls, upsampled bilinearly to ``size`` and the resolutions are averaged.
        """
        out: list[torch.Tensor] = []
        for b, word_spans in enumerate(spans):
            if not word_spans:
                out.append(torch.zeros(0, *size))
                continue
            acc = None
            for side, buf in self.buffers.items():
                if self.counts[side] == 0:
                    continue
                cols = [buf[b][:, list(s)].mean(dim=-1) if len(s) else buf.new_zeros(side * side)
                        for s in word_spans]
                maps = torch.stack(cols).view(len(word_spans), 1, side, side) / self.counts[side]
                maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[:, 0]
                acc = maps if acc is None else acc + maps
            if acc is None:
                raise RuntimeError("no cross-attention was captured: check car.resolutions "
                                   "against the UNet's latent sizes")
            out.append((acc / sum(1 for s in self.counts if self.counts[s])).cpu())
        return out


class CaptureAttnProcessor(AttnProcessor2_0):
    """Cross-attention that also adds the conditional half's head-mean to a store."""

    def __init__(self, store: AttentionStore, side: int) -> None:
        super().__init__()
        self.store = store
        self.side = side

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        plain = (not self.store.active or encoder_hidden_states is None or hidden_states.ndim != 3
                 or hidden_states.shape[1] != self.side * self.side or attention_mask is not None
                 or attn.spatial_norm is not None or attn.group_norm is not None
                 or attn.norm_q is not None or attn.norm_k is not None)
        if plain:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        residual = hidden_states
        batch = hidden_states.shape[0]
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        heads = attn.heads
        q = attn.to_q(hidden_states)
        k = attn.to_k(encoder_hidden_states)
        v = attn.to_v(encoder_hidden_states)
        head_dim = k.shape[-1] // heads
        q, k, v = (t.view(batch, -1, heads, head_dim).transpose(1, 2) for t in (q, k, v))
        # side² × 77 scores are small: one explicit attention over the whole batch costs
        # less than SDPA on one half plus explicit on the other plus a concatenation.
        probs = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1)
        self.store.add(self.side, probs[batch - min(self.store.batch, batch):])
        out = (probs @ v).transpose(1, 2).reshape(batch, -1, heads * head_dim).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_capture(unet: torch.nn.Module, store: AttentionStore, latent_side: int,
                    resolutions: Sequence[int], blocks: Sequence[str]) -> list[str]:
    """Put capture processors on the chosen ``attn2`` layers; returns their names.

    Raises when no layer matches, so a config whose resolutions do not exist in this UNet
    fails loudly instead of silently producing empty maps.
    """
    chosen = []
    modules = dict(unet.named_modules())
    for name, (kind, side) in attn2_resolutions(unet, latent_side).items():
        if kind in blocks and side in resolutions:
            modules[name].set_processor(CaptureAttnProcessor(store, side))
            chosen.append(name)
    if not chosen:
        available = sorted({v for v in attn2_resolutions(unet, latent_side).values()})
        raise ValueError(f"synthesis.car: no attn2 layer at resolutions {list(resolutions)} in "
                         f"blocks {list(blocks)}; this UNet has (block, side) {available}")
    return chosen


def remove_capture(unet: torch.nn.Module) -> None:
    """Give every captured layer back the plain SDPA processor."""
    for module in unet.modules():
        if isinstance(module, Attention) and isinstance(module.processor, CaptureAttnProcessor):
            module.set_processor(AttnProcessor2_0())
