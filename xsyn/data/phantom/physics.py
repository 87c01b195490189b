"""Dual-energy X-ray physics of the phantom scanner, as pure NumPy functions.

Why a separate module: the TIP baseline and the tests reuse exactly these functions, so
what "an X-ray scan" means is defined once.

Model
-----
- Every object is a thickness map ``t(x, y)`` in mm of one :data:`MATERIALS` entry, which
  has an effective linear attenuation coefficient (1/mm) at a low and a high energy.
- Line integrals add, transmissions multiply (Beer–Lambert):
  ``T_E = exp(-sum_objects mu_E * t)``. Order does not matter, as in a real scanner.
- The detector counts photons: ``N ~ Poisson(I0 * T_E)`` (normal limit above 64
  photons), reported as ``T_hat = N / I0`` (:func:`detect`); a little detector blur is
  applied to the line integrals before.
- Pseudo-colour (:func:`pseudo_colour`) follows the scanner convention. The ratio of the
  log attenuations ``R = ln T_low / ln T_high`` grows with the effective atomic number
  and does not depend on thickness: organic (R ≲ 1.5) is orange, inorganic / mixed
  (R ≈ 1.6–2.4) green, metal (R ≳ 2.6) blue. Brightness falls with the high-energy
  attenuation, saturation rises with it, so empty space is white and dense metal dark.
- :func:`transmission_from_rgb` inverts the colouring approximately (hue → R, value →
  high-energy attenuation). It is exact up to 8-bit quantisation except where the colour
  saturates (near-black pixels, R outside the hue table), which clamp.

Raw transmissions are stored as one 16-bit grayscale PNG of shape ``(2H, W)``: the low
energy image stacked over the high energy one, value ``round(T * 65535)``
(:func:`encode_transmissions` / :func:`decode_transmissions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Material:
    """Effective attenuation (1/mm) of one material at the low and high energy."""

    mu_low: float
    mu_high: float
    group: str  # organic | inorganic | metal (what the colour should say)

    @property
    def ratio(self) -> float:
        return self.mu_low / self.mu_high


# Effective coefficients of a polychromatic ~80/140 kV dual-energy scanner (beam-hardened,
# so the ratios are smaller than monochromatic tables). Ratio ↔ effective atomic number.
MATERIALS: dict[str, Material] = {
    "fabric": Material(0.0115, 0.0090, "organic"),
    "paper": Material(0.0300, 0.0225, "organic"),
    "plastic": Material(0.0250, 0.0190, "organic"),
    "rubber": Material(0.0320, 0.0230, "organic"),
    "wood": Material(0.0140, 0.0105, "organic"),
    "water": Material(0.0330, 0.0235, "organic"),
    "glass": Material(0.1150, 0.0560, "inorganic"),
    "aluminium": Material(0.1250, 0.0580, "inorganic"),
    "silicon": Material(0.1000, 0.0480, "inorganic"),
    "battery": Material(0.3200, 0.1150, "metal"),
    "steel": Material(0.8500, 0.2600, "metal"),
    "copper": Material(1.0500, 0.3000, "metal"),
    "brass": Material(0.9500, 0.2800, "metal"),
    "lead": Material(2.4000, 0.6000, "metal"),
}

# Hue table: log-attenuation ratio R → hue in degrees (monotonic, so invertible).
HUE_R = np.array([1.00, 1.30, 1.55, 1.80, 2.10, 2.45, 2.80, 3.20, 4.20], np.float32)
HUE_DEG = np.array([26.0, 32.0, 42.0, 75.0, 105.0, 150.0, 200.0, 218.0, 232.0], np.float32)
VALUE_GAMMA = 0.42  # brightness = T_high ** gamma
SATURATION_GAIN = 5.0  # saturation = 1 - exp(-gain * a_high)
_EPS = 0.01  # attenuation below which the ratio is pulled to the organic value
_ORGANIC_R = 1.3


def attenuation(mu: float | np.ndarray, thickness: np.ndarray) -> np.ndarray:
    """Line integral ``mu * t`` of one object (what adds up along the ray)."""
    return np.asarray(mu, np.float32) * np.asarray(thickness, np.float32)


def transmission(
    mu_low: float | np.ndarray | list,
    mu_high: float | np.ndarray | list,
    thicknesses: np.ndarray | list,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free transmissions of objects stacked along the beam.

    ``thicknesses`` is one ``(H, W)`` map or a stack ``(K, H, W)`` with per-object
    coefficients ``mu_low[k]``, ``mu_high[k]``. Returns ``(T_low, T_high)`` in (0, 1].
    """
    t = np.asarray(thicknesses, np.float32)
    if t.ndim == 2:
        t = t[None]
    ml = np.asarray(mu_low, np.float32).reshape(-1, 1, 1)
    mh = np.asarray(mu_high, np.float32).reshape(-1, 1, 1)
    return np.exp(-(ml * t).sum(0)), np.exp(-(mh * t).sum(0))


def photon_counts(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts with mean ``lam``: exact below 64 photons, the normal limit
    ``rint(λ + √λ·z)`` above (indistinguishable there, and 5× faster)."""
    lam = np.asarray(lam, np.float32)
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    n = np.rint(lam + np.sqrt(lam) * z)
    small = lam < 64
    if small.any():
        n[small] = rng.poisson(lam[small])
    return np.maximum(n, 0).astype(np.float32)


def detect(
    a_low: np.ndarray,
    a_high: np.ndarray,
    photons: float,
    rng: np.random.Generator | None,
    blur_sigma: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Line integrals → measured transmissions (detector blur, Poisson counts, /I0).

    With ``rng=None`` no noise is added (the exact transmissions). The result is clipped
    to ``[1/I0, 1]`` as a real detector's log-normalisation would.
    """
    out = []
    for a in (a_low, a_high):
        a = np.asarray(a, np.float32)
        if blur_sigma > 0:
            a = cv2.GaussianBlur(a, (0, 0), blur_sigma)
        t = np.exp(-a)
        if rng is not None:
            t = photon_counts(t * np.float32(photons), rng) / np.float32(photons)
        out.append(np.clip(t, 1.0 / photons, 1.0).astype(np.float32))
    return out[0], out[1]


def log_ratio(t_low: np.ndarray, t_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(a_high, R)``: high-energy attenuation and the ratio ``ln T_low / ln T_high``."""
    a_low = -np.log(np.clip(t_low, 1e-6, 1.0))
    a_high = -np.log(np.clip(t_high, 1e-6, 1.0))
    a_low = np.maximum(a_low, 0)
    a_high = np.maximum(a_high, 0)
    # Where almost nothing attenuates the ratio is noise; pull it to organic.
    r = (a_low + _EPS * _ORGANIC_R) / (a_high + _EPS)
    return a_high, r


def pseudo_colour(t_low: np.ndarray, t_high: np.ndarray) -> np.ndarray:
    """Dual-energy transmissions ``(H, W)`` → pseudo-colour ``(H, W, 3)`` uint8 RGB."""
    a_high, r = log_ratio(t_low, t_high)
    hue = np.interp(r, HUE_R, HUE_DEG).astype(np.float32)
    sat = 1.0 - np.exp(-SATURATION_GAIN * a_high)
    val = np.exp(-VALUE_GAMMA * a_high)
    hsv = np.stack([hue, sat.astype(np.float32), val.astype(np.float32)], -1)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def transmission_from_rgb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate inverse of :func:`pseudo_colour`: RGB uint8 → ``(T_low, T_high)``.

    Value gives the high-energy attenuation, hue the ratio R. Near-black pixels and
    ratios beyond the hue table clamp; white pixels come back as T = 1.
    """
    hsv = cv2.cvtColor(np.asarray(rgb, np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    val = np.clip(hsv[..., 2], 1.0 / 255.0, 1.0)
    a_high = -np.log(val) / VALUE_GAMMA
    hue = np.clip(hsv[..., 0], HUE_DEG[0], HUE_DEG[-1])
    r = np.interp(hue, HUE_DEG, HUE_R)
    a_low = np.maximum(r * (a_high + _EPS) - _EPS * _ORGANIC_R, 0)
    return np.exp(-a_low).astype(np.float32), np.exp(-a_high).astype(np.float32)


def encode_transmissions(t_low: np.ndarray, t_high: np.ndarray) -> np.ndarray:
    """``(T_low, T_high)`` → one ``(2H, W)`` uint16 image (low stacked over high)."""
    both = np.concatenate([t_low, t_high], 0)
    return np.clip(np.rint(both * 65535.0), 0, 65535).astype(np.uint16)


def decode_transmissions(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_transmissions` (float32 in [0, 1])."""
    h = img.shape[0] // 2
    t = img.astype(np.float32) / 65535.0
    return t[:h], t[h:]
