"""Benign clutter families and the bag itself.

Clutter is what makes baggage scans hard: stacks of clothes, bottles of liquid,
electronics with batteries and boards, cables. Each family is ``f(rng, ppm) -> Canvas``
like the prohibited items; the scene records every clutter object as a benign region
(its ``kind``), which Xsyn-A and BOM use as candidate places without a segmenter.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from xsyn.data.phantom.canvas import Canvas


def clothes(rng: np.random.Generator, ppm: float) -> Canvas:
    """Folded garments: stacked fabric layers with weave texture, buttons or a zip."""
    u = rng.uniform
    w, h = u(180, 380), u(130, 300)
    cv = Canvas(w * 1.15, h * 1.15, ppm)
    for _ in range(int(rng.integers(2, 6))):
        lw, lh = w * u(0.75, 1.0), h * u(0.75, 1.0)
        cx, cy = u(-w * 0.05, w * 0.05), u(-h * 0.05, h * 0.05)
        jag = rng.uniform(-6, 6, (4, 2))
        pts = np.array([(cx - lw / 2, cy - lh / 2), (cx + lw / 2, cy - lh / 2),
                        (cx + lw / 2, cy + lh / 2), (cx - lw / 2, cy + lh / 2)]) + jag
        cv.add_poly("fabric", pts, u(4, 14))
    cv.texture("fabric", rng, 0.28, cell_mm=u(15, 40), stripes_mm=u(3, 8))
    cv.round_edges("fabric", 8)
    r = rng.random()
    if r < 0.35:
        x = u(-w * 0.3, w * 0.3)
        for i in range(int(rng.integers(3, 7))):
            cv.disc("plastic", (x, -h * 0.4 + i * h * 0.15), u(4, 7), t=3)
    elif r < 0.6:
        y = u(-h * 0.3, h * 0.3)
        cv.line("steel", [(-w * 0.45, y), (w * 0.45, y + u(-10, 10))], 2.0, 1.0)
        cv.poly("steel", [(-w * 0.45, y - 4), (-w * 0.45 + 12, y - 4), (-w * 0.45 + 12, y + 4), (-w * 0.45, y + 4)], 2)
    return cv


def bottle(rng: np.random.Generator, ppm: float) -> Canvas:
    """Plastic or glass bottle, partly filled with liquid, with a neck and a cap."""
    u = rng.uniform
    length, r = u(140, 280), u(25, 45)
    cv = Canvas(length + 6, 2 * r + 6, ppm)
    x0 = -length / 2
    glass = rng.random() < 0.3
    shell, wall = ("glass", 3.5) if glass else ("plastic", 0.6)
    neck_len = length * u(0.15, 0.28)
    body_end = -x0 - neck_len
    cv.rod(shell, (x0 + r * 0.3, 0), (body_end - r * 0.4, 0), r, inner=r - wall)
    nr = r * u(0.3, 0.45)
    cv.rod(shell, (body_end - r * 0.5, 0), (-x0 - 4, 0), nr, inner=nr - wall)
    fill = u(0.2, 1.0)
    cv.rod("water", (x0 + r * 0.3, 0), (x0 + r * 0.3 + fill * (body_end - x0 - r * 0.5), 0), r - wall)
    cv.rod("plastic", (-x0 - 14, 0), (-x0 - 2, 0), nr + 2, inner=nr)
    return cv


def _board(cv: Canvas, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float) -> None:
    """A circuit board: silicon/glass-fibre plate, copper traces, chips, screws."""
    u = rng.uniform
    cv.poly("silicon", [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], 1.6)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = u(x0, x1), u(y0, y1)
        sw, sh = u(4, 16), u(4, 16)
        cv.poly("silicon", [(cx, cy), (min(cx + sw, x1), cy), (min(cx + sw, x1), min(cy + sh, y1)), (cx, min(cy + sh, y1))], 3)
    for _ in range(int(rng.integers(4, 12))):
        pts = [(u(x0, x1), u(y0, y1)) for _ in range(3)]
        cv.line("copper", pts, 0.6, 0.3)


def laptop(rng: np.random.Generator, ppm: float) -> Canvas:
    """Laptop: aluminium or plastic shell, battery cells, board, keyboard grid, hinge."""
    u = rng.uniform
    w, h = u(280, 360), u(190, 250)
    cv = Canvas(w + 6, h + 6, ppm)
    x0, y0 = -w / 2, -h / 2
    shell = "aluminium" if rng.random() < 0.6 else "plastic"
    cv.poly(shell, [(x0, y0), (-x0, y0), (-x0, -y0), (x0, -y0)], 2.5 if shell == "aluminium" else 6)
    cv.line(shell, [(x0, y0), (-x0, y0), (-x0, -y0), (x0, -y0)], 2.0, 14, closed=True)
    cv.poly("glass", [(x0 + 8, y0 + 8), (-x0 - 8, y0 + 8), (-x0 - 8, -y0 - 8), (x0 + 8, -y0 - 8)], 1.0)
    by = -y0 - u(55, 75)
    if rng.random() < 0.5:
        n = int(rng.integers(3, 7))
        for i in range(n):
            cx = x0 + 20 + (i + 0.5) * (w - 40) / n
            cv.rod("battery", (cx - (w - 40) / n * 0.45, by + 25), (cx + (w - 40) / n * 0.45, by + 25), 9, inner=8.6)
    else:
        cv.poly("battery", [(x0 + 25, by), (-x0 - 25, by), (-x0 - 25, -y0 - 8), (x0 + 25, -y0 - 8)], u(4, 7))
    _board(cv, rng, x0 + 10, y0 + 10, -x0 - 10, y0 + h * u(0.3, 0.45))
    cv.disc("plastic", (u(x0 + 40, -x0 - 40), y0 + h * 0.3), u(18, 28), t=6, inner=6)
    keys = []
    for i in range(12):
        for j in range(5):
            kx, ky = x0 + 30 + i * (w - 60) / 12, y0 + h * 0.48 + j * 16
            keys.append([(kx, ky), (kx + 12, ky), (kx + 12, ky + 12), (kx, ky + 12)])
    cv.polys("plastic", keys, 3)
    for sx, sy in ((x0 + 6, y0 + 6), (-x0 - 6, y0 + 6), (x0 + 6, -y0 - 6), (-x0 - 6, -y0 - 6)):
        cv.disc("steel", (sx, sy), 2.0, t=4)
    cv.rod("steel", (x0 + 20, y0 + 3), (-x0 - 20, y0 + 3), 3, inner=2.3)
    return cv


def phone(rng: np.random.Generator, ppm: float) -> Canvas:
    """Smartphone: glass faces, aluminium frame, pouch battery, board, camera ring."""
    u = rng.uniform
    w, h = u(130, 165), u(65, 78)
    cv = Canvas(w + 4, h + 4, ppm)
    x0, y0 = -w / 2, -h / 2
    rect = [(x0, y0), (-x0, y0), (-x0, -y0), (x0, -y0)]
    cv.poly("glass", rect, 1.6)
    cv.line("aluminium", rect, 2.0, 8, closed=True)
    cv.poly("battery", [(x0 + 12, y0 + 6), (x0 + w * 0.62, y0 + 6), (x0 + w * 0.62, -y0 - 6), (x0 + 12, -y0 - 6)], 4.5)
    _board(cv, rng, x0 + w * 0.65, y0 + 5, -x0 - 5, -y0 - 5)
    cv.disc("steel", (-x0 - 12, y0 + 14), 5, t=3, inner=3)
    return cv


def charger(rng: np.random.Generator, ppm: float) -> Canvas:
    """Mains charger: plastic box, transformer (steel core, copper coil), prongs, cable."""
    u = rng.uniform
    bw, bh = u(40, 70), u(35, 55)
    tail = u(80, 200)
    cv = Canvas(bw + tail + 20, bh + 40, ppm)
    x0 = -(bw + tail) / 2
    box = [(x0, -bh / 2), (x0 + bw, -bh / 2), (x0 + bw, bh / 2), (x0, bh / 2)]
    cv.poly("plastic", box, 26)
    cv.round_edges("plastic", 4)
    cv.poly("steel", [(x0 + bw * 0.2, -bh * 0.25), (x0 + bw * 0.55, -bh * 0.25), (x0 + bw * 0.55, bh * 0.25), (x0 + bw * 0.2, bh * 0.25)], 9)
    cv.ellipse("copper", (x0 + bw * 0.37, 0), (bw * 0.22, bh * 0.32), 3, width=3)
    for s in (-1, 1):
        cv.poly("brass", [(x0 - 18, s * bh * 0.22 - 2), (x0, s * bh * 0.22 - 2), (x0, s * bh * 0.22 + 2), (x0 - 18, s * bh * 0.22 + 2)], 2)
    pts = [(x0 + bw, 0)]
    y = 0.0
    for i in range(1, 7):
        y = np.clip(y + u(-12, 12), -18, 18)
        pts.append((x0 + bw + tail * i / 6, y))
    cv.line("plastic", pts, 4, 4)
    cv.line("copper", pts, 1.2, 1.2)
    return cv


def cable(rng: np.random.Generator, ppm: float) -> Canvas:
    """Loose cable: copper core in plastic insulation, a random meander, plugs at the ends."""
    u = rng.uniform
    span = u(120, 350)
    cv = Canvas(span + 20, span * 0.6 + 20, ppm)
    n = int(rng.integers(6, 14))
    pts = np.cumsum(rng.normal(0, span / n, (n, 2)) * [1.0, 0.6], 0)
    pts -= pts.mean(0)
    scale = np.maximum(np.abs(pts).max(0) / [span / 2, span * 0.3], 1)
    pts /= scale
    cv.line("plastic", pts, 4, 4)
    cv.line("copper", pts, 1.0, 1.2)
    for p in (pts[0], pts[-1]):
        cv.poly("steel", [(p[0] - 5, p[1] - 3), (p[0] + 5, p[1] - 3), (p[0] + 5, p[1] + 3), (p[0] - 5, p[1] + 3)], 3)
    return cv


def shoe(rng: np.random.Generator, ppm: float) -> Canvas:
    """Shoe: rubber sole with rounded toe and heel, fabric upper, eyelets, sometimes a shank."""
    u = rng.uniform
    length, width = u(230, 300), u(80, 110)
    cv = Canvas(length + 6, width + 6, ppm)
    t = np.radians(np.linspace(0, 360, 32, endpoint=False))
    waist = 1 - 0.18 * np.exp(-((np.cos(t) + 0.1) ** 2) / 0.1)
    sole = np.stack([length / 2 * np.cos(t), width / 2 * np.sin(t) * waist], 1)
    cv.poly("rubber", sole, u(18, 30))
    cv.round_edges("rubber", 10)
    cv.poly("fabric", sole * 0.8, u(8, 20))
    cv.texture("fabric", rng, 0.25, 20)
    for i in range(int(rng.integers(4, 7))):
        for s in (-1, 1):
            cv.disc("steel", (length * (0.05 + i * 0.05), s * width * 0.18), 1.6, t=1.5)
    if rng.random() < 0.4:
        cv.poly("steel", [(-length * 0.1, -4), (length * 0.15, -4), (length * 0.15, 4), (-length * 0.1, 4)], 1.5)
    return cv


def umbrella(rng: np.random.Generator, ppm: float) -> Canvas:
    """Folded umbrella: steel shaft and ribs, wrapped fabric, plastic handle."""
    u = rng.uniform
    length = u(220, 330)
    r = u(14, 22)
    cv = Canvas(length + 10, 2 * r + 10, ppm)
    x0 = -length / 2
    hl = length * 0.22
    cv.poly("fabric", [(x0 + hl, -r), (-x0 - 10, -r * 0.5), (-x0 - 10, r * 0.5), (x0 + hl, r)], u(18, 28))
    cv.round_edges("fabric", 6)
    cv.rod("steel", (x0 + 10, 0), (-x0, 0), 3.5, inner=2.6)
    for k in range(int(rng.integers(5, 9))):
        yy = (k / 4 - 1) * r * 0.7
        cv.line("steel", [(x0 + hl + 5, yy), (-x0 - 12, yy * 0.5)], 1.0, 1.5)
    cv.rod("plastic", (x0, 0), (x0 + hl, 0), r * 0.85)
    return cv


def book(rng: np.random.Generator, ppm: float) -> Canvas:
    """Book or magazine: a paper block with a thicker spine, sometimes a staple."""
    u = rng.uniform
    w, h = u(140, 240), u(190, 300)
    cv = Canvas(w + 4, h + 4, ppm)
    x0, y0 = -w / 2, -h / 2
    cv.poly("paper", [(x0, y0), (-x0, y0), (-x0, -y0), (x0, -y0)], u(6, 35))
    cv.texture("paper", rng, 0.05, 30)
    cv.line("paper", [(x0 + 3, y0), (x0 + 3, -y0)], 5, u(30, 45))
    return cv


FAMILIES: dict[str, Callable[[np.random.Generator, float], Canvas]] = {
    "clothes": clothes, "bottle": bottle, "laptop": laptop, "phone": phone, "charger": charger,
    "cable": cable, "shoe": shoe, "umbrella": umbrella, "book": book,
}
# How often each kind appears (clothes dominate real bags).
WEIGHTS: dict[str, float] = {
    "clothes": 4.0, "bottle": 1.5, "laptop": 0.8, "phone": 1.0, "charger": 1.0,
    "cable": 1.5, "shoe": 1.0, "umbrella": 0.6, "book": 1.0,
}


def bag(rng: np.random.Generator, ppm: float, width_mm: float, height_mm: float) -> Canvas:
    """Suitcase or soft bag: walls (dark rim seen edge-on), trolley frame, zip, handle, wheels."""
    u = rng.uniform
    cv = Canvas(width_mm, height_mm, ppm, margin_px=1)
    x0, y0 = -width_mm / 2 + 4, -height_mm / 2 + 4
    corner = min(width_mm, height_mm) * u(0.06, 0.14)
    t = np.linspace(0, math.pi / 2, 6)
    outline = []
    for cx, cy, a in ((-x0 - corner, -y0 - corner, 0), (x0 + corner, -y0 - corner, math.pi / 2),
                      (x0 + corner, y0 + corner, math.pi), (-x0 - corner, y0 + corner, 1.5 * math.pi)):
        outline += [(cx + corner * math.cos(a + s), cy + corner * math.sin(a + s)) for s in t]
    hard = rng.random() < 0.5
    wall_mat = "plastic" if hard else "fabric"
    cv.poly(wall_mat, outline, 5.0 if hard else 6.0)
    cv.line(wall_mat, outline, u(4, 8), u(40, 70) if hard else u(60, 110), closed=True)
    if not hard:
        cv.texture("fabric", rng, 0.15, 60)
    inset = np.array(outline) * [1 - 30 / width_mm, 1 - 30 / height_mm]
    cv.line("steel", inset, 1.6, 1.3, closed=True)  # zip teeth
    zx, zy = inset[int(rng.integers(len(inset)))]
    cv.poly("steel", [(zx - 8, zy - 5), (zx + 8, zy - 5), (zx + 8, zy + 5), (zx - 8, zy + 5)], 3)
    side = rng.integers(2)
    xs = (x0 + 25, -x0 - 25) if side == 0 else (-x0 - 25, x0 + 25)
    if rng.random() < 0.8:  # trolley frame: two aluminium tubes along a long side
        for dy in (-1, 1):
            yy = dy * (-y0) * u(0.35, 0.55)
            cv.rod("aluminium", (xs[0], yy), (xs[1] * 0.2, yy), u(9, 12), inner=8)
            cv.rod("steel", (xs[0], yy), (xs[0] + (xs[1] - xs[0]) * 0.15, yy), 4, inner=3)
        for dy in (-1, 1):
            cv.disc("rubber", (xs[1], dy * (-y0 - 30)), u(20, 28))
            cv.disc("steel", (xs[1], dy * (-y0 - 30)), 4, t=20)
    hx = u(x0 * 0.3, -x0 * 0.3)
    cv.ellipse("plastic", (hx, y0 + 10), (u(50, 70), 20), 20, start=180, end=360, width=12)
    return cv
