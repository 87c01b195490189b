"""Model factory: the GLIGEN components, tiny (from a small config) or pretrained (local folders).

Both paths return the same classes (DESIGN §2, §5), so fine-tuning, synthesis, CAR and BOM
run one code path whether the UNet has 2 M or 900 M parameters. The tokenizer is always the
real CLIP BPE, so class names split into the same word pieces as with Stable Diffusion
("Powerbank" → power + bank), which matters to CAR's token-to-word mapping.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention import GatedSelfAttentionDense
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from xsyn.env import cache_root
from xsyn.io import atomic_dir, write_json

PIPELINE_CLASS = "StableDiffusionGLIGENPipeline"
COMPONENT_NAMES = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
CLIP_VOCAB_SIZE = 49408
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"

# Stable Diffusion's noise schedule (the one GLIGEN 1.4 was trained with).
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


@dataclass
class GeneratorComponents:
    """What a GLIGEN pipeline is made of; the training loop and the synthesis pipeline share it."""

    unet: UNet2DConditionModel  # attention_type="gated", in_channels 4 (generation) or 9 (inpainting)
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def is_inpainting(self) -> bool:
        return self.unet.config.in_channels == 9


# ---------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte → printable unicode table (the first 256 vocabulary entries)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _open_clip_bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the CLIP BPE vocabulary ships with the PyPI package open-clip-torch, which is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CLIP BPE vocabulary not found in the open_clip package")
    return path


def write_clip_vocab(folder: str | os.PathLike) -> None:
    """Convert open_clip's BPE file into the HF ``vocab.json`` + ``merges.txt`` pair.

    Same construction as open_clip's ``SimpleTokenizer``: 256 byte symbols, the same with
    ``</w>``, one token per merge (48 894 merges), then the two special tokens → 49 408 ids.
    """
    folder = Path(folder)
    lines = gzip.open(_open_clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += [CLIP_BOS, CLIP_EOS]
    assert len(vocab) == CLIP_VOCAB_SIZE, len(vocab)
    write_json(folder / "vocab.json", {tok: i for i, tok in enumerate(vocab)}, indent=None)
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )


def load_clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """The real CLIP BPE tokenizer, built offline from open_clip's vocabulary (cached)."""
    folder = cache_root() / "clip_tokenizer"
    if not (folder / "vocab.json").is_file() or not (folder / "merges.txt").is_file():
        with atomic_dir(folder) as tmp:
            write_clip_vocab(tmp)
    # transformers 5: CLIPTokenizer(vocab_file=..., merges_file=...) silently ignores the
    # files; from_pretrained reads them.
    tok = CLIPTokenizer.from_pretrained(folder, model_max_length=model_max_length)
    if len(tok) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"{folder}: CLIP tokenizer has {len(tok)} tokens, expected {CLIP_VOCAB_SIZE}")
    return tok


# ---------------------------------------------------------------------------- tiny models


def _group_count(channels: list[int], cap: int = 32) -> int:
    """GroupNorm group count dividing every channel width (32 for SD-like widths)."""
    return math.gcd(reduce(math.gcd, channels), cap)


def sd_scheduler(prediction_type: str = "epsilon") -> DDIMScheduler:
    return DDIMScheduler(**{**SD_SCHEDULER_CONFIG, "prediction_type": prediction_type})


def build_tiny_components(
    tiny: dict[str, Any], resolution: int, inpaint: bool = False, seed: int = 0
) -> GeneratorComponents:
    """Randomly initialised, GLIGEN-shaped components small enough to train on a CPU.

    With the smoke sizes (128 px, VAE ×4, UNet [32, 64]) cross-attention runs at 32×32
    and 16×16 latent resolution, so CAR finds its 16×16 maps in the down and up blocks.
    """
    vae_ch = list(tiny["vae_channels"])
    unet_ch = list(tiny["unet_channels"])
    vae_factor = 2 ** (len(vae_ch) - 1)
    if resolution % (vae_factor * 2 ** (len(unet_ch) - 1)):
        raise ValueError(
            f"generator.resolution {resolution} must be divisible by the VAE factor {vae_factor} "
            f"times the UNet's downsampling {2 ** (len(unet_ch) - 1)}"
        )
    if tiny["text_hidden_size"] != tiny["cross_attention_dim"]:
        # GLIGEN feeds the text encoder's pooled phrase embedding to the position net,
        # whose input width is the UNet's cross_attention_dim.
        raise ValueError(
            f"generator.tiny.text_hidden_size ({tiny['text_hidden_size']}) must equal "
            f"cross_attention_dim ({tiny['cross_attention_dim']})"
        )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_ch),
        up_block_types=("UpDecoderBlock2D",) * len(vae_ch),
        block_out_channels=tuple(vae_ch),
        layers_per_block=1,
        latent_channels=tiny["latent_channels"],
        norm_num_groups=_group_count(vae_ch),
        sample_size=resolution,
        scaling_factor=1.0,  # set from data after VAE pre-training
        # attention at the VAE's latent resolution is a large share of a CPU step
        mid_block_add_attention=tiny["vae_mid_attention"],
    )
    # Cross-attention (and GLIGEN's gated self-attention) only on the levels asked for:
    # CAR needs 16×16 maps; full attention at 32×32 triples a CPU training step.
    attn = list(tiny["unet_attention"])
    if len(attn) != len(unet_ch) or not any(attn):
        raise ValueError(
            f"generator.tiny.unet_attention {attn} must give one flag per unet_channels level, at least one true"
        )
    unet = UNet2DConditionModel(
        sample_size=resolution // vae_factor,
        in_channels=9 if inpaint else tiny["latent_channels"],
        out_channels=tiny["latent_channels"],
        block_out_channels=tuple(unet_ch),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in attn[::-1]),
        layers_per_block=tiny["layers_per_block"],
        cross_attention_dim=tiny["cross_attention_dim"],
        attention_head_dim=tiny["attention_head_dim"],
        norm_num_groups=_group_count(unet_ch),
        attention_type="gated",
    )
    open_gates(unet, tiny["gate_init"])
    tokenizer = load_clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE,
            hidden_size=tiny["text_hidden_size"],
            intermediate_size=4 * tiny["text_hidden_size"],
            num_hidden_layers=tiny["text_layers"],
            num_attention_heads=tiny["text_heads"],
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=tiny["text_hidden_size"],
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # v-prediction (Salimans & Ho 2022) is an option for models trained from scratch: its loss
    # weighs an item's shape at high noise ~1/SNR times more than noise prediction does. Not
    # measured to help on the smoke data yet. The scheduler carries it to every pipeline.
    scheduler = sd_scheduler(tiny["prediction_type"])
    return GeneratorComponents(unet, vae, text_encoder, tokenizer, scheduler)


def open_gates(unet: UNet2DConditionModel, value: float) -> None:
    """Start GLIGEN's gated self-attention at ``alpha = value`` instead of 0.

    GLIGEN zero-inits the gates to leave a pretrained UNet unchanged. A model trained from
    scratch has nothing to protect, and shut gates scale the fusers' gradients to zero (the
    smoke model's gates were still ~0.005 after 1,800 steps). Measured on the smoke data,
    open gates alone did not make the phrases matter within 1,000 steps (README, "The
    generator"), and a 6,000-step run closed most of them again itself.
    """
    if value:
        for m in unet.modules():
            if isinstance(m, GatedSelfAttentionDense):
                m.alpha_attn.data.fill_(value)
                m.alpha_dense.data.fill_(value)


# ---------------------------------------------------------------------------- pretrained


def _gated_unet_from_plain(path: str | os.PathLike) -> UNet2DConditionModel:
    """A plain SD UNet with fresh GLIGEN layers (gates at 0, so it starts as plain SD)."""
    plain = UNet2DConditionModel.from_pretrained(path, local_files_only=True, torch_dtype=torch.float32)
    if plain.config.get("attention_type") in ("gated", "gated-text-image"):
        return plain
    cfg = dict(plain.config)
    cfg["attention_type"] = "gated"
    unet = UNet2DConditionModel.from_config(cfg)
    missing, unexpected = unet.load_state_dict(plain.state_dict(), strict=False)
    bad = [k for k in missing if ".fuser." not in k and not k.startswith("position_net.")]
    if bad or unexpected:
        raise ValueError(f"{path}: UNet weights do not fit a gated UNet: missing {bad[:5]}, unexpected {unexpected[:5]}")
    return unet


def load_pretrained_components(paths: dict[str, Any], inpaint: bool = False) -> GeneratorComponents:
    """Load from local folders: ``paths["pipeline"]`` (a diffusers GLIGEN folder) and/or
    separate ``unet`` / ``vae`` / ``text_encoder`` / ``tokenizer`` folders (which win).

    A UNet without gated layers (plain SD 1.4) gets fresh ones; ``inpaint`` widens a
    4-channel ``conv_in`` to 9 channels with zero weights on the new inputs. Weights load
    in float32 whatever the files hold (the shipped tiny generator is stored in float16):
    training keeps float32 master weights and accelerate casts for mixed precision.
    """
    pipe = paths["pipeline"]
    if pipe is not None and not Path(pipe).is_dir():
        raise FileNotFoundError(f"generator.pretrained.pipeline: folder {pipe} not found")

    def where(name: str) -> tuple[str, dict[str, Any]]:
        if paths[name]:
            if not Path(paths[name]).is_dir():
                raise FileNotFoundError(f"generator.pretrained.{name}: folder {paths[name]} not found")
            return str(paths[name]), {}
        if pipe is None:
            raise ValueError(f"generator.pretrained: set 'pipeline' or '{name}' to a local folder")
        return str(pipe), {"subfolder": name}

    upath, ukw = where("unet")
    unet = _gated_unet_from_plain(Path(upath, ukw.get("subfolder", "")))
    vpath, vkw = where("vae")
    vae = AutoencoderKL.from_pretrained(vpath, local_files_only=True, torch_dtype=torch.float32, **vkw)
    tpath, tkw = where("text_encoder")
    text_encoder = CLIPTextModel.from_pretrained(tpath, local_files_only=True, dtype=torch.float32, **tkw)
    if paths["tokenizer"] or (pipe is not None and Path(pipe, "tokenizer").is_dir()):
        kpath, kkw = where("tokenizer")
        tokenizer = CLIPTokenizer.from_pretrained(Path(kpath, kkw.get("subfolder", "")))
    else:
        tokenizer = load_clip_tokenizer()
    if pipe is not None and Path(pipe, "scheduler").is_dir():
        scheduler = DDIMScheduler.from_pretrained(pipe, subfolder="scheduler", local_files_only=True)
    else:
        scheduler = sd_scheduler()
    if inpaint and unet.config.in_channels != 9:
        unet = widen_conv_in(unet, 9)
    return GeneratorComponents(unet, vae, text_encoder, tokenizer, scheduler)


def pretrained_identity(paths: dict[str, Any], max_hash_bytes: int = 64 << 20) -> dict[str, str]:
    """A digest per configured pretrained folder: files up to ``max_hash_bytes`` by content,
    larger ones (SD 1.4's 3 GB UNet) by size, so a swapped checkpoint is noticed cheaply."""
    out = {}
    for key, folder in sorted(paths.items()):
        if not folder or not Path(folder).is_dir():
            continue
        h = hashlib.sha256()
        for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            size = f.stat().st_size
            h.update(f"{f.relative_to(folder)}:{size}".encode())
            if size <= max_hash_bytes:
                h.update(f.read_bytes())
        out[key] = h.hexdigest()
    return out


def build_components(cfg: dict[str, Any], inpaint: bool = False, seed: int = 0) -> GeneratorComponents:
    """Dispatch on ``cfg["generator"]["kind"]`` (tiny | pretrained); ``seed`` initialises a tiny model."""
    gen = cfg["generator"]
    if gen["kind"] == "tiny":
        return build_tiny_components(gen["tiny"], gen["resolution"], inpaint, seed=seed)
    if gen["kind"] == "pretrained":
        comps = load_pretrained_components(gen["pretrained"], inpaint)
        set_resolution(comps, gen["resolution"])
        return comps
    raise ValueError(f"generator.kind: unknown kind {gen['kind']!r} (tiny | pretrained)")


def set_resolution(comps: GeneratorComponents, resolution: int) -> None:
    """Record the size this run trains and samples at in the configs that get saved.

    diffusers' GLIGEN pipeline resizes the inpainting image to ``vae.config.sample_size``,
    so a model pretrained at 128 px and fine-tuned at 64 px must say 64 px.
    """
    if resolution % comps.vae_scale_factor:
        raise ValueError(f"generator.resolution {resolution} must be divisible by the VAE factor {comps.vae_scale_factor}")
    comps.vae.register_to_config(sample_size=resolution)
    comps.unet.register_to_config(sample_size=resolution // comps.vae_scale_factor)


# ---------------------------------------------------------------------------- conv_in widening


def widen_conv_in(unet: UNet2DConditionModel, in_channels: int = 9) -> UNet2DConditionModel:
    """Grow ``conv_in`` (4 → 9 for GLIGEN inpainting) with zero weights on the new channels.

    The widened model's output equals the old one's whatever the extra inputs hold, so the
    inpainting stage starts exactly where the generation stage ended. In place; returns unet.
    """
    old = unet.conv_in
    if in_channels < old.in_channels:
        raise ValueError(f"cannot narrow conv_in from {old.in_channels} to {in_channels} channels")
    if in_channels == old.in_channels:
        return unet
    new = torch.nn.Conv2d(
        in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
        device=old.weight.device, dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


# ---------------------------------------------------------------------------- save / load


def save_generator(components: GeneratorComponents, path: str | os.PathLike) -> None:
    """Write a diffusers ``StableDiffusionGLIGENPipeline`` folder (safetensors), atomically."""
    with atomic_dir(path) as tmp:
        write_generator(components, tmp)


def write_generator(components: GeneratorComponents, folder: str | os.PathLike) -> None:
    """The non-atomic body of :func:`save_generator`: fill an existing (empty) folder."""
    import diffusers

    folder = Path(folder)
    for name in ("unet", "vae", "text_encoder"):
        getattr(components, name).save_pretrained(folder / name, safe_serialization=True)
    components.tokenizer.save_pretrained(folder / "tokenizer")
    components.scheduler.save_pretrained(folder / "scheduler")
    index = {
        "_class_name": PIPELINE_CLASS,
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
    }
    for name in COMPONENT_NAMES:
        obj = getattr(components, name)
        library = "transformers" if name in ("text_encoder", "tokenizer") else "diffusers"
        index[name] = [library, type(obj).__name__]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def load_generator(
    path: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> GeneratorComponents:
    """Read a folder written by :func:`save_generator` (or any diffusers GLIGEN folder), in
    float32 unless ``dtype`` says otherwise: a folder stored in float16 (the shipped asset)
    would otherwise load its text encoder in half precision (transformers keeps the stored
    dtype), which no CPU matmul accepts beside float32 inputs."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
    dtype = torch.float32 if dtype is None else dtype
    kw: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype}
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw)
    text_encoder = CLIPTextModel.from_pretrained(
        path, subfolder="text_encoder", local_files_only=True, dtype=dtype
    )
    tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=True)
    if device is not None:
        for m in (unet, vae, text_encoder):
            m.to(device)
    for m in (unet, vae, text_encoder):
        m.eval()
    return GeneratorComponents(unet, vae, text_encoder, tokenizer, scheduler)
