"""What CAR reads to find the painted item: the model's attention, what it changed, or both.

CAR refines a requested box from a per-box map (DESIGN §2): the segmenter's seeds and the
high-value region come from it. Two witnesses can draw that map:

- ``attention``: the class word's cross-attention, summed over the denoising steps (the
  authors' cue). It says where the model *looked* for the word, which a small model need
  not tie to the item it paints (``benchmarks/car_diagnosis.py`` measures how much).
- ``difference``: what the model changed. X-ray attenuation adds up in log space
  (T = exp(−Σ μ·t)), so inside the search window ``Δ = log I_source − log I_generated``
  is the attenuation the generated item added: positive on the item, zero where the scan
  was kept. On Xsyn-A the item is painted onto a benign region, so Δ outlines what was
  painted; for Xsyn-M the removed real item shows as negative Δ and is ignored. It needs
  no look inside the model and works for any generator.
- ``both``: the geometric mean of the two, each scaled to [0, 1] per image: a pixel needs
  both witnesses.

Every cue can be multiplied by a soft *request prior* (``car.prior``, a blurred rectangle
of the requested box raised to that power): the request itself is evidence of where the
item is, and the refinement should move it only as far as the map insists.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CUES = ("attention", "difference", "both")


def log_intensity(rgb: np.ndarray) -> np.ndarray:
    """Mean over channels of log(I) for uint8 RGB, with I in (0, 1]: −Σμt up to a constant."""
    x = np.asarray(rgb, np.float32)[..., :3]
    return np.log((x + 1.0) / 256.0).mean(-1)


def difference_map(source: np.ndarray, generated: np.ndarray, blur: float = 1.0) -> np.ndarray:
    """Attenuation the generation added, ``max(0, log I_source − log I_generated)``, lightly
    smoothed (``blur`` px Gaussian σ; 0 = none) so VAE speckle does not seed the segmenter."""
    if np.shape(source)[:2] != np.shape(generated)[:2]:
        raise ValueError(f"difference cue: source {np.shape(source)} and generated {np.shape(generated)} differ in size")
    delta = np.clip(log_intensity(source) - log_intensity(generated), 0.0, None)
    if blur > 0:
        delta = cv2.GaussianBlur(delta, (0, 0), blur)
    return delta.astype(np.float32)


def unit_scale(m: np.ndarray) -> np.ndarray:
    """Map to [0, 1] by its own range (a flat map becomes zeros)."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def request_prior(box: Sequence[float], shape: tuple[int, int], softness: float = 0.25) -> np.ndarray:
    """A soft rectangle of the xywh request: 1 inside, falling off over ``softness`` × its size."""
    h, w = shape
    x, y, bw, bh = (float(v) for v in box)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    sx, sy = max(softness * bw, 1.0), max(softness * bh, 1.0)
    dx = np.maximum(np.maximum(x - xs, xs - (x + bw)), 0.0) / sx
    dy = np.maximum(np.maximum(y - ys, ys - (y + bh)), 0.0) / sy
    return np.exp(-0.5 * (dx**2 + dy**2)).astype(np.float32)


def cue_maps(cue: str, attention: Sequence[np.ndarray] | None, boxes: Sequence[Sequence[float]],
             source: np.ndarray | None = None, generated: np.ndarray | None = None,
             prior: float = 0.0, blur: float = 1.0) -> list[np.ndarray]:
    """One H×W map per requested box for CAR to refine it with.

    ``attention``: per-box maps at image size (needed for ``attention`` and ``both``);
    ``source`` / ``generated``: the real scan and the non-BOM sample, uint8 at the same size
    (needed for ``difference`` and ``both``); ``prior``: exponent of the request prior
    (0 = off).
    """
    if cue not in CUES:
        raise ValueError(f"synthesis.car.cue: unknown cue {cue!r} ({' | '.join(CUES)})")
    if cue != "attention" and (source is None or generated is None):
        raise ValueError(f"synthesis.car.cue={cue}: needs the source scan and the generated image")
    if cue != "difference" and (attention is None or len(attention) != len(boxes)):
        raise ValueError(f"synthesis.car.cue={cue}: needs one attention map per box")
    diff = unit_scale(difference_map(source, generated, blur)) if cue != "attention" else None
    out = []
    for i, box in enumerate(boxes):
        if cue == "attention":
            m = np.asarray(attention[i], np.float32)
        elif cue == "difference":
            m = diff
        else:
            m = np.sqrt(unit_scale(attention[i]) * diff)
        if prior:
            m = m * request_prior(box, m.shape) ** prior
        out.append(m)
    return out
