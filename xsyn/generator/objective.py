"""The generator's training objective and its stages (what each stage trains, and on what loss).

Stages follow the authors (DESIGN §2): a tiny model first learns its VAE (reconstruction),
then the config's UNet stages: box+text generation, then inpainting. For pretrained
weights only the gated fuser layers, the position net and (inpainting) ``conv_in`` train;
a from-scratch model trains its whole UNet (and, optionally, its text encoder).

The UNet loss is built in two parts so that other terms can join it without restructuring:

1. :meth:`TrainingObjective.denoise` runs one training forward and returns a
   :class:`DenoisingPass`: the batch (grounding boxes, box mask, phrases, inpainting
   mask), latents, noise, timesteps, the prediction and its target, and the ``attn2``
   attention probabilities of the UNet layers any term asked for, recorded *with*
   gradients (:func:`record_attention`);
2. the loss is the noise-prediction MSE of that pass plus ``weight × term(pass)`` for each
   extra :class:`LossTerm` (e.g. an attention-alignment term that pulls class-token maps
   towards the batch's boxes, TokenCompose / Break-A-Scene style).

With no extra term the loss is exactly the authors' noise-prediction MSE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor

from xsyn.generator.factory import GeneratorComponents

VAE_KL_WEIGHT = 1e-6  # SD's KL weight: a nearly deterministic autoencoder


@dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    inpaint: bool
    kind: str  # "vae" | "unet"


def plan_stages(cfg: dict[str, Any]) -> list[Stage]:
    """The stages of a run: tiny models first learn their VAE, then the config's stages."""
    ft = cfg["finetune"]
    stages = []
    if cfg["generator"]["kind"] == "tiny" and ft["vae_steps"] > 0:
        stages.append(Stage("vae", ft["vae_steps"], False, "vae"))
    for s in ft["stages"]:
        stages.append(Stage(s["name"], s["steps"], s["inpaint"], "unet"))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"finetune.stages: duplicate stage names {names}")
    for prev, nxt in zip(stages, stages[1:], strict=False):
        if prev.inpaint and not nxt.inpaint:
            raise ValueError(f"finetune.stages: {nxt.name!r} cannot follow inpainting stage {prev.name!r}")
    return stages


def is_grounding_param(name: str, inpaint: bool) -> bool:
    """The authors' trainable set: gated fusers, position net, (inpainting) conv_in."""
    return ".fuser." in name or name.startswith("position_net.") or (inpaint and name.startswith("conv_in."))


def select_trainable(
    comps: GeneratorComponents, stage: Stage, from_scratch: bool, train_text: bool = True,
    extra: Sequence[str] = (),
) -> dict[str, list[torch.nn.Parameter]]:
    """Set ``requires_grad`` for a stage; returns the trained parameters by module.

    ``train_text`` (from-scratch models only): also train the text encoder. Frozen, a
    randomly initialised CLIP text encoder is a fixed, distinct code per word; trained
    jointly from scratch it can collapse to one output for every prompt (measured on the
    smoke run: phrase embeddings 5.0 apart at init, 0.1 after training), and then the
    UNet cannot tell a gun from scissors.

    ``extra`` (pretrained models): ``attn2`` layer names whose query and key projections
    also train; an attention-alignment term acts through them (the authors' set alone can
    move a layer's attention only through the features upstream of it).
    """
    for m in (comps.unet, comps.vae, comps.text_encoder):
        m.requires_grad_(False)
    if stage.kind == "vae":
        comps.vae.requires_grad_(True)
        return {"vae": list(comps.vae.parameters())}
    if from_scratch:
        comps.unet.requires_grad_(True)
        groups = {"unet": list(comps.unet.parameters())}
        if train_text:
            comps.text_encoder.requires_grad_(True)
            groups["text_encoder"] = list(comps.text_encoder.parameters())
        return groups
    params = []
    attention = tuple(f"{layer}.{proj}." for layer in extra for proj in ("to_q", "to_k"))
    for name, p in comps.unet.named_parameters():
        if is_grounding_param(name, stage.inpaint) or name.startswith(attention):
            p.requires_grad_(True)
            params.append(p)
    return {"unet": params}


def encode_captions(comps: GeneratorComponents, captions: list[str], device) -> torch.Tensor:
    """Per-token caption states (B, 77, D), SD-style max-length padding; unique texts once."""
    uniq = list(dict.fromkeys(captions))
    ids = comps.tokenizer(
        uniq, padding="max_length", max_length=comps.tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    ).input_ids.to(device)
    states = comps.text_encoder(ids).last_hidden_state
    return states[torch.tensor([uniq.index(c) for c in captions], device=device)]


def encode_phrases(comps: GeneratorComponents, phrases: list[str], shape: tuple[int, int], device) -> torch.Tensor:
    """Pooled phrase embeddings (B, N, D) as the GLIGEN pipeline makes them; "" → zeros
    (padding tokens are replaced by the position net's learned null feature anyway)."""
    dim = comps.unet.config.cross_attention_dim
    uniq = [p for p in dict.fromkeys(phrases) if p]
    table = torch.zeros(len(uniq) + 1, dim, device=device)
    if uniq:
        tok = comps.tokenizer(uniq, padding=True, truncation=True, return_tensors="pt").to(device)
        pooled = comps.text_encoder(**tok).pooler_output
        table = torch.cat([pooled.to(table.dtype), table[:1]], 0)
    idx = torch.tensor([uniq.index(p) if p else len(uniq) for p in phrases], device=device)
    return table[idx].view(*shape, dim)


# ---------------------------------------------------------------------- one training forward


@dataclass
class DenoisingPass:
    """What one UNet training forward saw and produced: everything a loss term may read.

    ``batch`` is :func:`xsyn.generator.data.make_batch`'s dict: ``boxes`` (B, N, 4) unit
    xyxy of the grounded items (in the crop when item windows are on), ``box_mask``
    (B, N), ``phrases`` (B·N), ``captions`` (B), ``inpaint_mask`` (B, 1, h, w; 0 = repainted).
    ``attention``: per requested ``attn2`` layer name, the softmaxed probabilities
    (B, heads, h·w, 77) of this forward, with gradients.
    """

    batch: dict[str, Any]
    latents: torch.Tensor      # (B, C, h, w), scaled, no gradient
    noise: torch.Tensor
    timesteps: torch.Tensor    # (B,)
    prediction: torch.Tensor   # the UNet output (noise or velocity)
    target: torch.Tensor
    attention: dict[str, torch.Tensor] = field(default_factory=dict)


class LossTerm(Protocol):
    """An extra term of the UNet loss: ``loss += weight * term(pass)``.

    ``attention_layers``: names of UNet ``attn2`` modules (``unet.named_modules()``) whose
    probabilities the term reads from :attr:`DenoisingPass.attention`; empty for none.
    """

    name: str
    weight: float
    attention_layers: Sequence[str]

    def __call__(self, p: DenoisingPass) -> torch.Tensor: ...


class _RecordingProcessor(AttnProcessor):
    """diffusers' explicit attention, also keeping its probabilities (with gradients)."""

    def __init__(self, sink: dict[str, torch.Tensor], name: str) -> None:
        super().__init__()
        self.sink, self.name = sink, name

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        scores = attn.get_attention_scores

        def keep(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            probs = scores(query, key, mask)
            self.sink[self.name] = probs.view(-1, attn.heads, *probs.shape[1:])
            return probs

        attn.get_attention_scores = keep
        try:
            return super().__call__(attn, hidden_states, *args, **kwargs)
        finally:
            del attn.get_attention_scores  # the bound method of the class again


@contextlib.contextmanager
def record_attention(unet: torch.nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """While open, the named ``attn2`` layers record their probabilities into the yielded
    dict (one entry per layer, the last call's); their processors are restored on exit."""
    sink: dict[str, torch.Tensor] = {}
    if not layers:
        yield sink
        return
    modules = dict(unet.named_modules())
    unknown = [n for n in layers if not isinstance(modules.get(n), Attention)]
    if unknown:
        raise ValueError(f"record_attention: no attention layer named {unknown[:3]} in the UNet")
    saved = {n: modules[n].processor for n in layers}
    try:
        for n in layers:
            modules[n].set_processor(_RecordingProcessor(sink, n))
        yield sink
    finally:
        for n, proc in saved.items():
            modules[n].set_processor(proc)


class TrainingObjective(torch.nn.Module):
    """One stage's training loss as a module, so accelerate/DDP wrap a single forward.

    ``vae`` stage: L1 + L2 reconstruction + a small KL. ``unet`` stages: noise-prediction
    MSE with GLIGEN grounding (inpainting feeds cat(noisy latent, latent·mask, mask) as
    ``StableDiffusionGLIGENPipeline`` does at sampling time), plus any extra ``terms``.
    """

    def __init__(
        self, comps: GeneratorComponents, stage: Stage, train_text: bool, mask_loss_weight: float = 1.0,
        snr_gamma: float | None = None, terms: Sequence[LossTerm] = (),
    ):
        super().__init__()
        self.unet, self.vae, self.text_encoder = comps.unet, comps.vae, comps.text_encoder
        self.comps, self.stage, self.train_text = comps, stage, train_text
        self.mask_loss_weight, self.snr_gamma = mask_loss_weight, snr_gamma
        self.terms = list(terms)

    def sample_latents(self, pix: torch.Tensor, g: torch.Generator) -> tuple[Any, torch.Tensor]:
        """The VAE posterior and a sample drawn with the step's generator."""
        post = self.vae.encode(pix.to(self.vae.dtype)).latent_dist
        eps = torch.randn(post.mean.shape, generator=g).to(pix.device, post.mean.dtype)
        return post, post.mean + post.std * eps

    def forward(self, batch: dict[str, Any], g: torch.Generator) -> torch.Tensor:
        if self.stage.kind == "vae":
            return self.reconstruction_loss(batch, g)
        p = self.denoise(batch, g)
        loss = self.noise_prediction_loss(p)
        for term in self.terms:
            loss = loss + term.weight * term(p)
        return loss

    def reconstruction_loss(self, batch: dict[str, Any], g: torch.Generator) -> torch.Tensor:
        pix = batch["pixel_values"].to(self.unet.device)
        post, z = self.sample_latents(pix, g)
        rec = self.vae.decode(z).sample.float()
        return F.l1_loss(rec, pix) + F.mse_loss(rec, pix) + VAE_KL_WEIGHT * post.kl().mean()

    def batch_latents(self, batch: dict[str, Any], g: torch.Generator) -> torch.Tensor:
        """Scaled latents of the batch: from the cached posterior when there is one."""
        dev = self.unet.device
        with torch.no_grad():
            if "latent_mean" in batch:  # cached posterior (see FineTuner.cache_latents)
                mean, std = batch["latent_mean"].to(dev), batch["latent_std"].to(dev)
                latents = mean + std * torch.randn(mean.shape, generator=g).to(dev)
            else:
                latents = self.sample_latents(batch["pixel_values"].to(dev), g)[1].float()
            return latents.float() * self.vae.config.scaling_factor

    def denoise(self, batch: dict[str, Any], g: torch.Generator) -> DenoisingPass:
        """Noise the batch's latents at random timesteps and predict with its grounding."""
        dev = self.unet.device
        latents = self.batch_latents(batch, g)
        noise = torch.randn(latents.shape, generator=g).to(dev)
        sched = self.comps.scheduler
        t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=g).to(dev)
        model_in = sched.add_noise(latents, noise, t)
        if self.stage.inpaint:
            m = batch["inpaint_mask"].to(dev)
            model_in = torch.cat([model_in, latents * m, m], 1)
        with torch.set_grad_enabled(self.train_text and torch.is_grad_enabled()):
            ctx = encode_captions(self.comps, batch["captions"], dev)
            pos = encode_phrases(self.comps, batch["phrases"], tuple(batch["boxes"].shape[:2]), dev)
        gligen = {
            "boxes": batch["boxes"].to(dev),
            "positive_embeddings": pos.to(self.unet.dtype),
            "masks": batch["box_mask"].to(dev),
        }
        layers = list(dict.fromkeys(n for term in self.terms for n in term.attention_layers))
        with record_attention(self.unet, layers) as attention:
            pred = self.unet(
                model_in, t, encoder_hidden_states=ctx.to(self.unet.dtype), cross_attention_kwargs={"gligen": gligen}
            ).sample
        v_pred = sched.config.prediction_type == "v_prediction"
        target = sched.get_velocity(latents, noise, t) if v_pred else noise
        return DenoisingPass(batch, latents, noise, t, pred, target, dict(attention))

    def noise_prediction_loss(self, p: DenoisingPass) -> torch.Tensor:
        """MSE of the prediction, Min-SNR-weighted and box-weighted when configured."""
        sched = self.comps.scheduler
        v_pred = sched.config.prediction_type == "v_prediction"
        err = (p.prediction.float() - p.target) ** 2
        if self.snr_gamma:
            # Min-SNR-γ (Hang et al. 2023): cap the weight of the nearly clean timesteps, so
            # the steps go to the noisy ones where an item's shape and class are decided
            from diffusers.training_utils import compute_snr

            snr = compute_snr(sched, p.timesteps)
            err = err * (torch.clamp(snr, max=self.snr_gamma) / (snr + 1 if v_pred else snr))[:, None, None, None]
        if self.stage.inpaint and self.mask_loss_weight != 1.0:
            # weight the repainted boxes more than the (given) context: a tiny model's
            # capacity goes to the items, not to re-predicting the known background
            w = 1.0 + (self.mask_loss_weight - 1.0) * (1.0 - p.batch["inpaint_mask"].to(err.device))
            return (err * w).mean() / w.mean()
        return err.mean()
