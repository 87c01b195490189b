"""Where does the generator's attention go? A diagnosis of CAR's maps on held-out phantom scans.

CAR reads, per class word, the text cross-attention of the denoising UNet and expects it to
mark the item. This script asks, on real held-out scans whose item masks are known exactly
(the phantom's truth), what the attention of the pixels inside an item actually does:

- **token mass**: the share of an item pixel's cross-attention that goes to the start token,
  the item's own class word, the caption's other words, the end token and the padding, next
  to the same shares for the window pixels outside the item;
- **localisation**: per box, the ROC AUC with which a map separates the item's pixels from
  the other pixels of CAR's search window (``window``) and of the requested box alone
  (``box``: no help from the box prior), per layer, per timestep third, for three maps:
  the caption's class-word cross-attention (what CAR reads), the same after the
  Attend-and-Excite normalisation (drop the start token, re-softmax ×100 over the text
  tokens), and GLIGEN's grounding-token attention (in the gated self-attention, the weight
  from each pixel to the box's own grounding token). The requested-box prior (a blurred
  rectangle) is the control every map must beat on ``window``; 0.5 is chance on ``box``.

Each scan is encoded, noised at every DDIM timestep of ``synthesis.steps`` and run through
the UNet's conditional branch with the caption and the *jittered* boxes as grounding
(inpainting UNets also get the masked-scan latent), as ``car_quality.py`` does.

Usage::

    python benchmarks/car_diagnosis.py --generator results/models/generator --dataset data/phantom
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from car_quality import jitter_box, read_rgb, true_mask  # noqa: E402

from xsyn.cli import add_config_arguments  # noqa: E402
from xsyn.config import load_config  # noqa: E402
from xsyn.data.contract import (  # noqa: E402
    annotations_by_image,
    caption_for,
    category_names,
    load_split,
    phrase_for,
)
from xsyn.generator.tokens import word_token_spans  # noqa: E402
from xsyn.synthesis.car import _pixel_slice, search_window  # noqa: E402


class ProbeProcessor:
    """Attention that also records its (conditional-only) probabilities per call."""

    def __init__(self, name: str, sink: list):
        self.name, self.sink = name, sink

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.norm_cross and encoder_hidden_states is not None:
            context = attn.norm_encoder_hidden_states(context)
        b = hidden_states.shape[0]
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        h = attn.heads
        d = k.shape[-1] // h
        q, k, v = (t.view(b, -1, h, d).transpose(1, 2) for t in (q, k, v))
        probs = torch.softmax(q @ k.transpose(-1, -2) * attn.scale, dim=-1)
        self.sink.append((self.name, probs.mean(1).float().cpu()))
        out = (probs @ v).transpose(1, 2).reshape(b, -1, h * d)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def install_probes(unet) -> list:
    """Probe every text cross-attention (``attn2``) and every GLIGEN fuser self-attention."""
    from diffusers.models.attention import GatedSelfAttentionDense

    sink: list = []
    for name, module in unet.named_modules():
        if name.endswith(".attn2"):
            module.set_processor(ProbeProcessor(name, sink))
        elif isinstance(module, GatedSelfAttentionDense):
            module.attn.set_processor(ProbeProcessor(name + ".fuser", sink))
    return sink


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC by ranks (ties averaged); None when one class is empty."""
    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def upsample(m: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def box_prior(box, size: int) -> np.ndarray:
    """The control: a blurred rectangle of the requested box (no attention at all)."""
    m = np.zeros((size, size), np.float32)
    rows, cols = _pixel_slice(box, size, size)
    m[rows, cols] = 1.0
    k = max(3, int(0.25 * max(box[2], box[3])) | 1)
    return cv2.GaussianBlur(m, (k, k), 0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", type=Path, required=True)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--split", default="val", help="held-out split (default val: diagnosis informs choices)")
    p.add_argument("--max-images", type=int, default=40)
    p.add_argument("--true-boxes", action="store_true", help="ground with the true boxes, not jittered ones")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the tables as JSON")
    add_config_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> int:  # noqa: C901 - a linear measurement script
    args = parse_args(argv)
    cfg = load_config(args.config, args.set, args.config_json)  # a benchmark reads the whole config
    from xsyn.generator.data import inpaint_mask
    from xsyn.generator.factory import load_generator

    torch.manual_seed(args.seed)
    gen = load_generator(args.generator, device="cpu", dtype=torch.float32)
    size = int(cfg["generator"]["resolution"])
    side = size // gen.vae_scale_factor
    sink = install_probes(gen.unet)
    gen.scheduler.set_timesteps(int(cfg["synthesis"]["steps"]))
    timesteps = gen.scheduler.timesteps
    n_t = len(timesteps)
    thirds = {"high t": range(0, n_t // 3), "mid t": range(n_t // 3, 2 * n_t // 3),
              "low t": range(2 * n_t // 3, n_t), "all t": range(n_t)}
    jit = cfg["synthesis"]["car"]["benchmark_jitter"]
    margin = cfg["synthesis"]["car"]["margin"]

    coco = load_split(args.dataset, args.split)
    names = category_names(coco)
    by_image = annotations_by_image(coco)
    images = [im for im in coco["images"] if by_image[im["id"]]][: args.max_images]
    rng = np.random.default_rng(args.seed)
    tok = gen.tokenizer

    aucs: dict[tuple, list] = defaultdict(list)       # (map, layer, thirds, region) → per-box AUC
    mass: dict[tuple, list] = defaultdict(list)       # (layer, where, group) → per-box share
    for img in tqdm(images, desc="diagnosis", unit="img"):
        anns = by_image[img["id"]]
        rgb = read_rgb(args.dataset / "images" / img["file_name"])
        h, w = rgb.shape[:2]
        sx, sy = size / w, size / h
        truth = [[a["bbox"][0] * sx, a["bbox"][1] * sy, a["bbox"][2] * sx, a["bbox"][3] * sy] for a in anns]
        req = truth if args.true_boxes else [jitter_box(b, rng, jit["shift"], tuple(jit["scale"]), size, size)
                                             for b in truth]
        masks = [cv2.resize(true_mask(a, h, w).astype(np.uint8), (size, size),
                            interpolation=cv2.INTER_NEAREST).astype(bool) for a in anns]
        words = [names[a["category_id"]] for a in anns]
        caption = caption_for(words)
        spans = word_token_spans(tok, caption, words)
        ids = tok(caption, truncation=True, max_length=tok.model_max_length).input_ids
        eos = len(ids) - 1
        pix = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        with torch.no_grad():
            x = torch.from_numpy(pix).permute(2, 0, 1)[None].float().div(127.5).sub(1)
            z0 = gen.vae.encode(x).latent_dist.mean * gen.vae.config.scaling_factor
            cids = tok([caption], padding="max_length", max_length=tok.model_max_length,
                       truncation=True, return_tensors="pt").input_ids
            prompt = gen.text_encoder(cids).last_hidden_state
            ptok = tok([phrase_for(c) for c in words], padding=True, return_tensors="pt")
            pooled = gen.text_encoder(**ptok).pooler_output
            n_obj = 30
            n = min(len(req), n_obj)
            boxes = torch.zeros(1, n_obj, 4)
            boxes[0, :n] = torch.tensor([[b[0] / size, b[1] / size, (b[0] + b[2]) / size,
                                          (b[1] + b[3]) / size] for b in req[:n]]).clamp(0, 1)
            emb = torch.zeros(1, n_obj, pooled.shape[-1])
            emb[0, :n] = pooled[:n]
            valid = torch.zeros(1, n_obj)
            valid[0, :n] = 1
            gligen = {"gligen": {"boxes": boxes, "positive_embeddings": emb, "masks": valid}}
            extra = None
            if gen.unet.config.in_channels == 9:
                m = inpaint_mask(boxes[0], valid[0].bool(), side)[None]
                extra = torch.cat([z0 * m, m], 1)
            g = torch.Generator().manual_seed(args.seed * 1_000_003 + int(img["id"]))
            sink.clear()
            per_t: list[list] = []
            for t in timesteps:
                zt = gen.scheduler.add_noise(z0, torch.randn(z0.shape, generator=g), t[None])
                inp = zt if extra is None else torch.cat([zt, extra], 1)
                start = len(sink)
                gen.unet(inp, t, encoder_hidden_states=prompt, cross_attention_kwargs=gligen)
                per_t.append(sink[start:])
        layers = [name for name, _ in per_t[0]]
        for k, (box, mask) in enumerate(zip(req, masks, strict=True)):
            win = search_window(box, margin, size, size)
            wr, wc = _pixel_slice(win, size, size)
            br, bc = _pixel_slice(box, size, size)
            win_sel = np.zeros((size, size), bool)
            win_sel[wr, wc] = True
            box_sel = np.zeros((size, size), bool)
            box_sel[br, bc] = True
            span = spans[k]
            if not span or not mask.any():
                continue
            maps: dict[tuple, np.ndarray] = {}
            for li, layer in enumerate(layers):
                stack = torch.stack([per_t[ti][li][1][0] for ti in range(n_t)])  # (T, HW, tokens)
                is_fuser = layer.endswith(".fuser")
                hw = stack.shape[1] - (n_obj if is_fuser else 0)  # fuser: visual + grounding tokens
                s = int(round(hw ** 0.5))
                for tname, trange in thirds.items():
                    a = stack[list(trange)].sum(0)  # (HW, tokens)
                    if is_fuser:
                        if k >= n_obj:
                            continue
                        maps[("grounding", layer, tname)] = a[:hw, hw + k].reshape(s, s).numpy()
                    else:
                        maps[("class word", layer, tname)] = a[:, span].mean(-1).reshape(s, s).numpy()
                        text = torch.softmax(100 * stack[list(trange)][:, :, 1:eos], dim=-1).sum(0)
                        cols = [c - 1 for c in span if 1 <= c < eos]
                        if cols:
                            maps[("A&E", layer, tname)] = text[:, cols].mean(-1).reshape(s, s).numpy()
                if not is_fuser and s * s == hw:
                    # token mass of item pixels vs window pixels outside the item (all t)
                    a = stack.mean(0).numpy()  # (HW, tokens): per-step probabilities average
                    cell = cv2.resize(mask.astype(np.float32), (s, s), interpolation=cv2.INTER_AREA) > 0.5
                    wcell = cv2.resize(win_sel.astype(np.float32), (s, s), interpolation=cv2.INTER_AREA) > 0.5
                    groups = {"start": [0], "own word": span,
                              "other words": [c for c in range(1, eos) if c not in span],
                              "end": [eos], "padding": list(range(eos + 1, a.shape[1]))}
                    for where, sel in (("item", cell), ("window, not item", wcell & ~cell)):
                        if sel.any():
                            for gname, cols in groups.items():
                                val = float(a[sel.reshape(-1)][:, cols].sum(-1).mean()) if cols else 0.0
                                mass[(layer, where, gname)].append(val)
            # CAR's aggregate: mean of the down + up attn2 layers (the captured ones), per third
            car_layers = [ly for ly in layers if ly.endswith("attn2") and not ly.startswith("mid")]
            for kind in ("class word", "A&E"):
                for tname in thirds:
                    parts = [maps[(kind, ly, tname)] for ly in car_layers if (kind, ly, tname) in maps]
                    if parts:
                        maps[(kind, "CAR layers (down+up)", tname)] = np.mean(parts, 0)
            fusers = [ly for ly in layers if ly.endswith(".fuser")]
            for tname in thirds:
                parts = [maps[("grounding", ly, tname)] for ly in fusers if ("grounding", ly, tname) in maps]
                if parts:
                    maps[("grounding", "all fusers", tname)] = np.mean(parts, 0)
            maps[("box prior (control)", "-", "all t")] = box_prior(box, size)
            for key, m in maps.items():
                up = m if m.shape[0] == size else upsample(m, size)
                for region, sel in (("window", win_sel), ("box", box_sel)):
                    v = auc(up[sel], mask[sel])
                    if v is not None:
                        aucs[(*key, region)].append(v)

    rows = []
    for key, vals in sorted(aucs.items()):
        rows.append({"map": key[0], "layer": key[1], "timesteps": key[2], "region": key[3],
                     "auc_mean": float(np.mean(vals)), "auc_sem": float(np.std(vals) / np.sqrt(len(vals))),
                     "boxes": len(vals)})
    mass_rows = [{"layer": k[0], "pixels": k[1], "token group": k[2], "share": float(np.mean(v))}
                 for k, v in sorted(mass.items())]
    print(f"\nCAR diagnosis — {args.generator} on {args.dataset} [{args.split}], {len(images)} images; "
          f"{'true' if args.true_boxes else 'jittered'} boxes; {n_t} DDIM steps")
    print("\nLocalisation AUC (item pixels vs other pixels; window = CAR's search window, box = requested box)")
    print(f"{'map':<22} {'layer':<52} {'t':<7} {'window':>14} {'box':>14}")
    merged: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        merged[(r["map"], r["layer"], r["timesteps"])][r["region"]] = f"{r['auc_mean']:.3f}±{r['auc_sem']:.3f}"
    for (mp, layer, t), reg in merged.items():
        print(f"{mp:<22} {layer:<52} {t:<7} {reg.get('window', '-'):>14} {reg.get('box', '-'):>14}")
    print("\nCross-attention mass of a pixel, by token group (mean over boxes and steps)")
    by_layer: dict[tuple, dict] = defaultdict(dict)
    for r in mass_rows:
        by_layer[(r["layer"], r["pixels"])][r["token group"]] = r["share"]
    groups = ["start", "own word", "other words", "end", "padding"]
    print(f"{'layer':<52} {'pixels':<18} " + " ".join(f"{g:>11}" for g in groups))
    for (layer, where), d in by_layer.items():
        print(f"{layer:<52} {where:<18} " + " ".join(f"{d.get(g, 0):11.4f}" for g in groups))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"generator": str(args.generator), "split": args.split,
                                        "images": len(images), "auc": rows, "mass": mass_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
