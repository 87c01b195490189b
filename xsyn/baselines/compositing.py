"""X-ray physics of the two-stage TIP baseline: scans as transmissions, pasting as a product.

A transmission X-ray scan records the share of the beam that gets through,
``T = exp(-Σ μ·t)`` (Beer–Lambert). Objects stacked along a ray add their attenuations,
so their transmissions *multiply*: putting an item into a bag is ``T_bag · T_item``, never
an alpha blend. That is the whole physics of threat image projection (TIP).

Two representations of a scan reach this module:

- raw dual-energy transmissions (``(H, W, 2)`` floats in ``[0, 1]``), when the dataset
  ships them (the phantom does); compositing there is exact;
- pseudo-colour RGB scans (every real dataset), read per channel as a transmission,
  ``T ≈ pixel / white``, with ``white`` the level of an unobstructed ray. This is an
  approximation (the vendor's colour map is not a product), and the one the TIP
  literature uses on RGB data.

Every function works on any number of channels and keeps ``T`` in ``[0, 1]``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

# The smallest transmission kept, so that attenuations -log T stay finite.
MIN_TRANSMISSION = 1e-4


def white_level(image: np.ndarray, percentile: float = 99.5, floor: float = 1.0) -> np.ndarray:
    """Per-channel level of an unobstructed ray: a high percentile of the scan's pixels.

    A percentile, not the maximum, so a few hot pixels of noise do not set the scale;
    pixels above it read as ``T = 1`` (air).
    """
    image = np.asarray(image, dtype=np.float32)
    flat = image.reshape(-1, image.shape[-1]) if image.ndim == 3 else image.reshape(-1, 1)
    return np.maximum(np.percentile(flat, percentile, axis=0), floor).astype(np.float32)


def to_transmission(image: np.ndarray, white: float | np.ndarray) -> np.ndarray:
    """Pixels → transmissions ``clip(pixel / white, MIN_TRANSMISSION, 1)`` (float32)."""
    image = np.asarray(image, dtype=np.float32)
    white = np.asarray(white, dtype=np.float32)
    if np.any(white <= 0):
        raise ValueError(f"white level must be positive, got {white.tolist()}")
    return np.clip(image / white, MIN_TRANSMISSION, 1.0).astype(np.float32)


def from_transmission(transmission: np.ndarray, white: float | np.ndarray) -> np.ndarray:
    """Transmissions → 8-bit pixels ``round(T · white)``, clipped to ``[0, 255]``."""
    t = np.clip(np.asarray(transmission, dtype=np.float32), 0.0, 1.0)
    pixels = np.rint(t * np.asarray(white, dtype=np.float32))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def attenuation(transmission: np.ndarray) -> np.ndarray:
    """``-log T`` (line integral of μ), the quantity that adds up along a ray."""
    return -np.log(np.clip(transmission, MIN_TRANSMISSION, 1.0)).astype(np.float32)


def from_attenuation(att: np.ndarray) -> np.ndarray:
    return np.clip(np.exp(-np.maximum(att, 0.0)), MIN_TRANSMISSION, 1.0).astype(np.float32)


def composite(bag: np.ndarray, *items: np.ndarray) -> np.ndarray:
    """Beer–Lambert stacking: the product of all transmissions, clipped to ``[0, 1]``."""
    out = np.asarray(bag, dtype=np.float32).copy()
    for item in items:
        out *= np.asarray(item, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def paste(bag: np.ndarray, item: np.ndarray, x: int, y: int) -> np.ndarray:
    """Stack ``item`` (``(h, w, C)``) onto ``bag`` with its top-left corner at ``(x, y)``.

    The parts of the item that fall outside the bag are cut off; the bag is not modified.
    """
    out = np.asarray(bag, dtype=np.float32).copy()
    H, W = out.shape[:2]
    h, w = item.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 < x1 and y0 < y1:
        region = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = composite(region, item[y0 - y : y1 - y, x0 - x : x1 - x])
    return out


def remove_background(observed: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Isolate an item seen in a scan: ``T_item = T_observed / T_background``, in ``[0, 1]``.

    The inverse of :func:`composite`: dividing out an estimate of what lay behind the item
    leaves the item alone, as if scanned in an empty tray.
    """
    bg = np.clip(np.asarray(background, dtype=np.float32), MIN_TRANSMISSION, 1.0)
    return np.clip(np.asarray(observed, dtype=np.float32) / bg, MIN_TRANSMISSION, 1.0)


class RgbCodec:
    """Scans as their pseudo-colour pixels, read per channel as ``T = pixel / white``.

    Works for every dataset. ``white_level`` None estimates the white of each scan (per
    channel, :func:`white_level`); a number fixes it for all. A pasted scan is rendered
    with the *bag's* white, so pasting onto air gives the item back.
    """

    name = "rgb"

    def __init__(self, root: str | os.PathLike, white: float | None = None, cache_size: int = 32):
        self.images_dir = Path(root) / "images"
        self.white = white
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.cache_size = cache_size

    def load(self, image: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(T (H, W, 3) float32, white (3,))`` of an image record of the contract."""
        name = image["file_name"]
        if name not in self._cache:
            path = self.images_dir / name
            try:
                with Image.open(path) as im:
                    pixels = np.asarray(im.convert("RGB"))
            except (FileNotFoundError, OSError) as e:
                raise FileNotFoundError(f"{path}: cannot read image {image['id']}: {e}") from None
            if (pixels.shape[1], pixels.shape[0]) != (image["width"], image["height"]):
                raise ValueError(f"{path}: size {pixels.shape[1]}x{pixels.shape[0]} is not the "
                                 f"annotated {image['width']}x{image['height']} (image {image['id']})")
            white = (np.full(3, self.white, np.float32) if self.white is not None
                     else white_level(pixels))
            self._cache[name] = (to_transmission(pixels, white), white)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(name)
        transmission, white = self._cache[name]
        return transmission.copy(), white

    def render(self, transmission: np.ndarray, white: np.ndarray) -> Image.Image:
        return Image.fromarray(from_transmission(transmission, white), mode="RGB")


class DualEnergyCodec:
    """Scans as their raw dual-energy transmissions ``(H, W, 2)`` = (low, high) energy.

    Exact physics: the product of transmissions is what the scanner would measure, and
    the result is coloured by the dataset's own pseudo-colour map. The encoding (one
    16-bit PNG, low stacked over high) and the colour map are the phantom simulator's
    (:mod:`xsyn.data.phantom.physics`); ``transmission_file`` is relative to the root.
    """

    name = "raw"

    def __init__(self, root: str | os.PathLike, cache_size: int = 32):
        from xsyn.data.phantom import physics

        self.physics = physics
        self.root = Path(root)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size

    def load(self, image: dict[str, Any]) -> tuple[np.ndarray, None]:
        name = image.get("transmission_file")
        if not name:
            raise ValueError(f"image {image['id']} ({image['file_name']}) has no transmission_file")
        if name not in self._cache:
            path = self.root / name
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise FileNotFoundError(f"{path}: cannot read the transmissions of image {image['id']}")
            if raw.dtype != np.uint16 or raw.ndim != 2 or raw.shape != (2 * image["height"], image["width"]):
                raise ValueError(f"{path}: expected a 16-bit {image['width']}x{2 * image['height']} "
                                 f"image (low over high energy), got {raw.dtype} {raw.shape[::-1]}")
            t_low, t_high = self.physics.decode_transmissions(raw)
            self._cache[name] = np.clip(np.stack([t_low, t_high], -1), MIN_TRANSMISSION, 1.0)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(name)
        return self._cache[name].copy(), None

    def render(self, transmission: np.ndarray, context: None = None) -> Image.Image:
        rgb = self.physics.pseudo_colour(transmission[..., 0], transmission[..., 1])
        return Image.fromarray(rgb, mode="RGB")


ScanCodec = RgbCodec | DualEnergyCodec


def select_codec(
    root: str | os.PathLike, coco: dict[str, Any], mode: str = "auto", white: float | None = None
) -> ScanCodec:
    """The scan representation TIP composites in.

    ``raw`` needs every image to have a ``transmission_file``; ``auto`` takes ``raw``
    when that holds (phantom data), else ``rgb`` (every real dataset).
    """
    if mode not in ("auto", "rgb", "raw"):
        raise ValueError(f"tip.transmission must be auto, rgb or raw, got {mode!r}")
    has_raw = bool(coco["images"]) and all(im.get("transmission_file") for im in coco["images"])
    if mode == "raw" and not has_raw:
        missing = next(im for im in coco["images"] if not im.get("transmission_file"))
        raise ValueError(f"{root}: tip.transmission=raw but image {missing['id']} "
                         f"({missing['file_name']}) has no transmission_file")
    if mode == "raw" or (mode == "auto" and has_raw):
        return DualEnergyCodec(root)
    return RgbCodec(root, white)
