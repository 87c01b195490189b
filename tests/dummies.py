"""diffusers-style dummy components: the one tiny GLIGEN the tests build (UNet with gated
self-attention, VAE ×4, a small CLIP text encoder over the real BPE, DDIM), seconds on a CPU."""

from __future__ import annotations

from xsyn.generator.factory import GeneratorComponents, build_tiny_components

TINY_GENERATOR = {
    "unet_channels": [16, 32],
    "layers_per_block": 1,
    "attention_head_dim": 8,
    "cross_attention_dim": 32,
    "text_hidden_size": 32,
    "text_layers": 1,
    "text_heads": 2,
    "vae_channels": [16, 32, 32],
    "latent_channels": 4,
    # every generator.tiny key is given (the factory restates no default): these are what
    # the dummies have always been built with
    "unet_attention": [True, True],  # cross/gated attention at both levels
    "vae_mid_attention": True,
    "gate_init": 0.0,
    "prediction_type": "epsilon",
}
RESOLUTION = 64  # image side; latents are 16×16 with the ×4 VAE


def get_dummy_components(inpaint: bool = False, seed: int = 0, resolution: int = RESOLUTION,
                         **overrides) -> GeneratorComponents:
    """Fresh dummy components (``overrides`` change ``generator.tiny`` keys)."""
    return build_tiny_components({**TINY_GENERATOR, **overrides}, resolution, inpaint=inpaint, seed=seed)
