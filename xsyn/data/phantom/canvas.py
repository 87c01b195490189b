"""Drawing one object: per-material thickness maps in the object's own upright frame.

Why: every procedural family (prohibited item, clutter, bag) draws itself with a few
OpenCV primitives into a small :class:`Canvas` at the scene's pixel scale, in mm; one
affine warp (:func:`place`) then rotates, flips and foreshortens it into its window of
the scene. Only the object's window is ever touched, never the full frame.

Coordinates given to the primitives are in mm relative to the canvas centre, x right,
y down. Thickness values are in mm. Painting overwrites (a part replaces what lies below
it in the same material); different materials live on different layers and add.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


class Canvas:
    """Thickness layers (mm) of one object, keyed by material name."""

    def __init__(self, width_mm: float, height_mm: float, ppm: float, margin_px: int = 2):
        self.ppm = float(ppm)
        self.w = max(3, int(math.ceil(width_mm * ppm)) + 2 * margin_px)
        self.h = max(3, int(math.ceil(height_mm * ppm)) + 2 * margin_px)
        self.cx, self.cy = self.w / 2.0, self.h / 2.0
        self.layers: dict[str, np.ndarray] = {}

    # -- coordinates ---------------------------------------------------------------------
    def layer(self, material: str) -> np.ndarray:
        if material not in self.layers:
            self.layers[material] = np.zeros((self.h, self.w), np.float32)
        return self.layers[material]

    def px(self, pts_mm: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """mm (centre origin) → fixed-point pixel coordinates for cv2 drawing."""
        p = np.asarray(pts_mm, np.float64).reshape(-1, 2)
        q = np.empty_like(p)
        q[:, 0] = (p[:, 0] * self.ppm + self.cx) * _ONE
        q[:, 1] = (p[:, 1] * self.ppm + self.cy) * _ONE
        return np.rint(q).astype(np.int32)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates in mm, ``(X, Y)`` each ``(h, w)``."""
        xs = (np.arange(self.w, dtype=np.float32) + 0.5 - self.cx) / self.ppm
        ys = (np.arange(self.h, dtype=np.float32) + 0.5 - self.cy) / self.ppm
        return np.meshgrid(xs, ys)

    # -- primitives ------------------------------------------------------------------
    def poly(self, material: str, pts: Sequence, t: float) -> None:
        """Flat plate of thickness ``t`` mm."""
        cv2.fillPoly(self.layer(material), [self.px(pts)], float(t), cv2.LINE_8, _SHIFT)

    def add_poly(self, material: str, pts: Sequence, t: float) -> None:
        """Plate that adds to what is already there (stacked layers: folded clothes, pages)."""
        tmp = np.zeros((self.h, self.w), np.float32)
        cv2.fillPoly(tmp, [self.px(pts)], float(t), cv2.LINE_8, _SHIFT)
        self.layer(material).__iadd__(tmp)

    def polys(self, material: str, many: Sequence, t: float) -> None:
        cv2.fillPoly(self.layer(material), [self.px(p) for p in many], float(t), cv2.LINE_8, _SHIFT)

    def ellipse(self, material: str, c: Sequence[float], axes: Sequence[float], t: float,
                angle: float = 0.0, start: float = 0.0, end: float = 360.0, width: float = -1) -> None:
        """Filled ellipse (``width < 0``) or an elliptic arc ``width`` mm wide."""
        (cx, cy), = self.px([c])
        ax = (int(round(axes[0] * self.ppm * _ONE)), int(round(axes[1] * self.ppm * _ONE)))
        wpx = -1 if width < 0 else max(1, int(round(width * self.ppm)))
        cv2.ellipse(self.layer(material), (int(cx), int(cy)), ax, angle, start, end, float(t),
                    wpx, cv2.LINE_8, _SHIFT)

    def line(self, material: str, pts: Sequence, width: float, t: float, closed: bool = False) -> None:
        """Polyline ``width`` mm wide (cables, rods seen flat)."""
        wpx = max(1, int(round(width * self.ppm)))
        cv2.polylines(self.layer(material), [self.px(pts)], closed, float(t), wpx, cv2.LINE_8, _SHIFT)

    def _window(self, x0: float, y0: float, x1: float, y1: float):
        """Slices and mm grids of the canvas pixels inside an mm rectangle (or None)."""
        i0 = max(int(math.floor(y0 * self.ppm + self.cy)) - 1, 0)
        i1 = min(int(math.ceil(y1 * self.ppm + self.cy)) + 1, self.h)
        j0 = max(int(math.floor(x0 * self.ppm + self.cx)) - 1, 0)
        j1 = min(int(math.ceil(x1 * self.ppm + self.cx)) + 1, self.w)
        if i1 <= i0 or j1 <= j0:
            return None
        xs = (np.arange(j0, j1, dtype=np.float32) + 0.5 - self.cx) / self.ppm
        ys = (np.arange(i0, i1, dtype=np.float32) + 0.5 - self.cy) / self.ppm
        x, y = np.meshgrid(xs, ys)
        return (slice(i0, i1), slice(j0, j1)), x, y

    def _max_into(self, material: str, sl, prof: np.ndarray) -> None:
        lay = self.layer(material)
        np.maximum(lay[sl], prof.astype(np.float32), out=lay[sl])

    def rod(self, material: str, p0: Sequence[float], p1: Sequence[float], radius: float,
            inner: float = 0.0) -> None:
        """Cylinder (or tube with ``inner`` radius) lying between two points: chord profile."""
        ax, ay = p0
        win = self._window(min(ax, p1[0]) - radius, min(ay, p1[1]) - radius,
                           max(ax, p1[0]) + radius, max(ay, p1[1]) + radius)
        if win is None:
            return
        sl, x, y = win
        dx, dy = p1[0] - ax, p1[1] - ay
        ln2 = dx * dx + dy * dy + 1e-9
        u = np.clip(((x - ax) * dx + (y - ay) * dy) / ln2, 0, 1)
        d2 = (x - ax - u * dx) ** 2 + (y - ay - u * dy) ** 2
        prof = 2 * np.sqrt(np.maximum(radius * radius - d2, 0))
        if inner > 0:
            prof -= 2 * np.sqrt(np.maximum(inner * inner - d2, 0))
        self._max_into(material, sl, prof)

    def disc(self, material: str, c: Sequence[float], r: float, t: float | None = None,
             inner: float = 0.0) -> None:
        """Ball-like disc (``t=None``: chord profile) or a flat disc / ring of thickness ``t``."""
        if t is not None and inner <= 0:
            self.ellipse(material, c, (r, r), t)
            return
        win = self._window(c[0] - r, c[1] - r, c[0] + r, c[1] + r)
        if win is None:
            return
        sl, x, y = win
        d2 = (x - c[0]) ** 2 + (y - c[1]) ** 2
        if t is None:
            prof = 2 * np.sqrt(np.maximum(r * r - d2, 0))
            if inner > 0:
                prof -= 2 * np.sqrt(np.maximum(inner * inner - d2, 0))
        else:
            prof = np.where((d2 <= r * r) & (d2 >= inner * inner), t, 0)
        self._max_into(material, sl, prof)

    def round_edges(self, material: str, edge_mm: float) -> None:
        """Thin a layer towards its silhouette edge (rounded objects, not flat cut-outs)."""
        lay = self.layers.get(material)
        if lay is None:
            return
        mask = (lay > 0).astype(np.uint8)
        d = cv2.distanceTransform(mask, cv2.DIST_L2, 3) / max(edge_mm * self.ppm, 1e-3)
        lay *= np.sqrt(np.clip(d, 0, 1))

    def texture(self, material: str, rng: np.random.Generator, amount: float, cell_mm: float,
                stripes_mm: float = 0.0) -> None:
        """Multiply a layer by smooth random variation (and optional weave stripes)."""
        lay = self.layers.get(material)
        if lay is None:
            return
        gh = max(2, int(self.h / max(cell_mm * self.ppm, 1)) + 1)
        gw = max(2, int(self.w / max(cell_mm * self.ppm, 1)) + 1)
        noise = cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (self.w, self.h),
                           interpolation=cv2.INTER_CUBIC)
        f = 1.0 + amount * noise
        if stripes_mm > 0:
            x, y = self.grid()
            ang = rng.uniform(0, math.pi)
            f += 0.5 * amount * np.sin((x * math.cos(ang) + y * math.sin(ang)) * (2 * math.pi / stripes_mm))
        lay *= np.clip(f, 0.2, 2.0)

    def footprint(self) -> np.ndarray:
        return sum((v > 0 for v in self.layers.values()), np.zeros((self.h, self.w), bool)) > 0


@dataclass
class Placed:
    """An object warped into the scene: its window and per-material thickness maps there."""

    x0: int
    y0: int
    layers: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.layers.values())).shape


def place(canvas: Canvas, cx: float, cy: float, angle_deg: float, tilt_deg: float = 0.0,
          tilt_axis_deg: float = 0.0, flip: bool = False, scene_hw: tuple[int, int] | None = None,
          ) -> Placed | None:
    """Rotate, flip and tilt a canvas and centre it at pixel ``(cx, cy)`` of the scene.

    Out-of-plane tilt by θ foreshortens the object along ``tilt_axis`` by cos θ and
    lengthens the beam's path through it by 1/cos θ (thickness scales up). The window is
    clipped to ``scene_hw``; returns None if nothing is left inside.
    """
    c = math.cos(math.radians(tilt_deg))
    ta = math.radians(tilt_axis_deg)
    # Foreshortening along the direction ta: S = R(ta) diag(c, 1) R(-ta).
    ct, st = math.cos(ta), math.sin(ta)
    rt = np.array([[ct, -st], [st, ct]])
    m = rt @ np.diag([c, 1.0]) @ rt.T
    if flip:
        m = m @ np.diag([-1.0, 1.0])
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = rot @ m
    corners = np.array([[0, 0], [canvas.w, 0], [0, canvas.h], [canvas.w, canvas.h]], np.float64)
    centred = corners - [canvas.cx, canvas.cy]
    moved = centred @ m.T + [cx, cy]
    x0, y0 = np.floor(moved.min(0)).astype(int)
    x1, y1 = np.ceil(moved.max(0)).astype(int)
    if scene_hw is not None:
        h, w = scene_hw
        x0c, y0c, x1c, y1c = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    else:
        x0c, y0c, x1c, y1c = x0, y0, x1, y1
    if x1c - x0c < 1 or y1c - y0c < 1:
        return None
    aff = np.zeros((2, 3))
    aff[:, :2] = m
    aff[:, 2] = np.array([cx - x0c, cy - y0c]) - m @ [canvas.cx, canvas.cy]
    size = (x1c - x0c, y1c - y0c)
    layers = {}
    for mat, lay in canvas.layers.items():
        out = cv2.warpAffine(lay, aff, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        if c < 0.999:
            out *= 1.0 / c
        layers[mat] = out
    return Placed(x0c, y0c, layers)
