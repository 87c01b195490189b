"""The 12 PIDray prohibited-item families, each a procedural drawing with variation.

Each family is ``f(rng, ppm) -> Canvas``: it draws one instance upright (long axis along
x) in mm at ``ppm`` pixels per mm, choosing its own proportions, sub-type and materials
(a knife's steel blade and plastic handle, a lighter's metal head and plastic body...).
Rotation, flips, scale and out-of-plane tilt are applied later by the scene
(:func:`xsyn.data.phantom.canvas.place`), so families stay simple and recognisable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from xsyn.data.phantom.canvas import Canvas

# PIDray classes; category ids are 1..12 in this order (the output contract).
CLASSES: tuple[str, ...] = (
    "Baton", "Pliers", "Hammer", "Powerbank", "Scissors", "Wrench",
    "Gun", "Bullet", "Sprayer", "HandCuffs", "Knife", "Lighter",
)

Family = Callable[[np.random.Generator, float], Canvas]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def baton(rng: np.random.Generator, ppm: float) -> Canvas:
    """Telescopic steel baton (rubber grip, nested tubes, ball tip) or a rubber tonfa."""
    u = rng.uniform
    if rng.random() < 0.65:
        length = u(220, 480)
        rg = u(11, 15)
        cv = Canvas(length + 10, 2 * rg + 6, ppm)
        x0 = -length / 2
        grip = length * u(0.3, 0.42)
        cv.rod("rubber", (x0, 0), (x0 + grip, 0), rg)
        cv.rod("steel", (x0, 0), (x0 + grip, 0), rg - 2.5, inner=rg - 4.5)
        nseg = int(rng.integers(1, 3))
        seg = (length - grip - 8) / nseg
        r = rg - 5
        x = x0 + grip
        for _ in range(nseg):
            cv.rod("steel", (x - 10, 0), (x + seg, 0), r, inner=max(r - 2.2, 0))
            x += seg
            r = max(r - u(1.5, 2.5), 3.5)
        cv.disc("steel", (x0 + length - 6, 0), u(5.5, 7.5))
        cv.disc("steel", (x0 + 3, 0), rg - 3, t=4)
        return cv
    length = u(380, 520)
    r = u(15, 19)
    side = u(60, 80)
    cv = Canvas(length + 10, 2 * side + 10, ppm)
    x0 = -length / 2
    cv.rod("rubber", (x0, 0), (x0 + length, 0), r)
    hx = x0 + length * u(0.18, 0.26)
    cv.rod("rubber", (hx, 0), (hx, side), r * 0.8)
    cv.disc("rubber", (hx, side), r * 0.95)
    return cv


def pliers(rng: np.random.Generator, ppm: float) -> Canvas:
    """Two crossing steel halves: jaws (flat-nose or cutting) and plastic-coated handles."""
    u = rng.uniform
    length = u(150, 230)
    cv = Canvas(length + 10, length * 0.55 + 10, ppm)
    px = length / 2 - length * u(0.28, 0.36)  # pivot x
    jaw_len = length / 2 - px
    spread = u(18, 30) * length / 180
    gripped = rng.random() < 0.8
    for sgn in (-1, 1):
        # handle: from pivot to the left end, bowing outwards
        xs = np.linspace(px, -length / 2 + 4, 9)
        s = np.linspace(0, 1, 9)
        ys = sgn * (3 + spread * s ** 0.8)
        pts = np.stack([xs, ys], 1)
        cv.line("steel", pts, u(6, 8), 6.5)
        if gripped:
            cv.line("plastic", pts[3:], u(13, 16), 12)
        # jaw: tapered, meeting at the nose
        w0 = u(7, 9)
        tip = u(1.5, 3)
        opening = u(0, 4)
        jaw = [(px, sgn * 1), (px + jaw_len, sgn * (tip / 2 + opening)),
               (px + jaw_len, sgn * (tip + opening)), (px + jaw_len * 0.35, sgn * w0),
               (px, sgn * (w0 + 2))]
        cv.poly("steel", jaw, 8)
    cv.disc("steel", (px, 0), u(6, 8), t=13)
    cv.round_edges("steel", 1.5)
    return cv


def hammer(rng: np.random.Generator, ppm: float) -> Canvas:
    """Wooden, fibreglass or steel-shafted handle with a steel head (claw or ball peen)."""
    u = rng.uniform
    length = u(240, 340)
    head = u(95, 130)
    hw = u(22, 30)
    cv = Canvas(length + 10, head + 10, ppm)
    x0, x1 = -length / 2, length / 2
    kind = rng.integers(3)
    shaft_w = u(24, 32)
    shaft = [(x0, -shaft_w / 2), (x1 - hw, -shaft_w * 0.42), (x1 - hw, shaft_w * 0.42), (x0, shaft_w / 2)]
    if kind == 0:
        cv.poly("wood", shaft, 28)
        cv.round_edges("wood", 8)
    elif kind == 1:
        cv.poly("plastic", shaft, 26)
        cv.round_edges("plastic", 8)
    else:
        cv.rod("steel", (x0 + 20, 0), (x1 - hw, 0), 8, inner=6)
        cv.rod("rubber", (x0, 0), (x0 + length * 0.4, 0), shaft_w / 2)
    hx = x1 - hw
    cv.poly("steel", [(hx, -head * 0.2), (x1, -head * 0.2), (x1, head * 0.25), (hx, head * 0.25)], 26)
    # face side (+y): round face
    cv.poly("steel", [(hx - 3, head * 0.25), (x1 + 3, head * 0.25), (x1 + 2, head * 0.5), (hx - 2, head * 0.5)], 26)
    if rng.random() < 0.6:  # claw: two curved tines with a slot
        claw = np.concatenate([_arc(hx + hw * 1.4, -head * 0.2, hw * 1.4, head * 0.3, 180, 270),
                               _arc(hx + hw * 1.4, -head * 0.2, hw * 0.5, head * 0.28, 270, 180)])
        cv.poly("steel", claw, 20)
        cv.poly("steel", [(hx + hw * 0.42, -head * 0.5), (hx + hw * 0.58, -head * 0.5),
                          (hx + hw * 0.55, -head * 0.25), (hx + hw * 0.45, -head * 0.25)], 0)
    else:  # ball peen
        cv.disc("steel", (hx + hw / 2, -head * 0.3), hw * 0.55, t=26)
    cv.round_edges("steel", 4)
    return cv


def powerbank(rng: np.random.Generator, ppm: float) -> Canvas:
    """Plastic case holding cylindrical cells or a pouch cell, a PCB and a USB port."""
    u = rng.uniform
    length = u(95, 150)
    width = u(45, 80)
    cv = Canvas(length + 6, width + 6, ppm)
    x0, y0 = -length / 2, -width / 2
    case = [(x0, y0), (-x0, y0), (-x0, -y0), (x0, -y0)]
    cv.poly("plastic", case, u(14, 22))
    cv.line("plastic", case, 2.5, 30, closed=True)
    pcb = u(14, 22)
    if rng.random() < 0.6 and width > 42:
        n = max(1, min(int(width // 20), 4))
        r = min(9.2, (width - 6) / (2 * n))
        for i in range(n):
            cy = y0 + 3 + r + i * 2 * r
            cv.rod("battery", (x0 + 5 + r * 0.4, cy), (-x0 - pcb - r * 0.4, cy), r, inner=r - 0.4)
            cv.rod("plastic", (x0 + 5 + r * 0.4, cy), (-x0 - pcb - r * 0.4, cy), r - 0.4)
            cv.rod("steel", (x0 + 5 + r * 0.4, cy), (-x0 - pcb - r * 0.4, cy), r, inner=r - 0.3)
    else:
        cv.poly("battery", [(x0 + 4, y0 + 4), (-x0 - pcb, y0 + 4), (-x0 - pcb, -y0 - 4), (x0 + 4, -y0 - 4)], u(4, 8))
    bx = -x0 - pcb + 1
    cv.poly("silicon", [(bx, y0 + 3), (-x0 - 2, y0 + 3), (-x0 - 2, -y0 - 3), (bx, -y0 - 3)], 1.6)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = u(bx + 2, -x0 - 5), u(y0 + 5, -y0 - 5)
        cv.poly("copper", [(cx, cy), (cx + 3, cy), (cx + 3, cy + 3), (cx, cy + 3)], 1.2)
    cv.poly("steel", [(-x0 - 7, -4), (-x0, -4), (-x0, 4), (-x0 - 7, 4)], 3)
    return cv


def scissors(rng: np.random.Generator, ppm: float) -> Canvas:
    """Two steel blades crossing at a screw, plastic (or steel) finger loops."""
    u = rng.uniform
    length = u(140, 230)
    cv = Canvas(length + 10, length * 0.5 + 10, ppm)
    px = -length / 2 + length * u(0.4, 0.5)
    blade = length / 2 - px
    open_deg = u(2, 14)
    loops_plastic = rng.random() < 0.75
    loop_mat = "plastic" if loops_plastic else "steel"
    for sgn in (-1, 1):
        a = math.radians(sgn * open_deg / 2)
        ca, sa = math.cos(a), math.sin(a)

        def rot(p, ca=ca, sa=sa):
            return [(px + x * ca - y * sa, y * ca + x * sa) for x, y in p]

        w = u(7, 10)
        cv.poly("steel", rot([(-12, -sgn * 2), (blade, 0), (blade * 0.8, sgn * w * 0.5), (0, sgn * w)]), 2.8)
        # shank to the loop
        lx = -(px + length / 2) * 0.62
        ly = sgn * u(10, 16)
        cv.line("steel", rot([(0, sgn * 3), (lx * 0.5, ly * 0.6), (lx, ly)]), 5, 4)
        rx, ry = u(12, 17), u(9, 13)
        c = rot([(lx - rx * 0.6, ly + sgn * ry * 0.4)])[0]
        cv.ellipse(loop_mat, c, (rx, ry), 9 if loops_plastic else 4, angle=sgn * open_deg, width=u(4.5, 6.5))
    cv.disc("steel", (px, 0), u(3, 4.5), t=7)
    return cv


def wrench(rng: np.random.Generator, ppm: float) -> Canvas:
    """Combination spanner (open jaw + ring) or an adjustable wrench."""
    u = rng.uniform
    length = u(140, 260)
    w = length * u(0.08, 0.11)
    cv = Canvas(length + 10, w * 4.2 + 10, ppm)
    x0, x1 = -length / 2, length / 2
    if rng.random() < 0.65:
        r_open, r_ring = w * u(1.6, 2.0), w * u(1.2, 1.5)
        cv.poly("steel", [(x0 + r_ring, -w / 2), (x1 - r_open, -w * 0.6), (x1 - r_open, w * 0.6), (x0 + r_ring, w / 2)], 5)
        cv.disc("steel", (x1 - r_open * 0.9, 0), r_open, t=7)
        slot = r_open * u(0.5, 0.62)
        a = math.radians(u(10, 20))
        dx, dy = math.cos(a), math.sin(a)
        sx, sy = x1 - r_open * 0.9, 0
        far = r_open * 2.5
        cv.poly("steel", [(sx - dy * slot, sy + dx * slot), (sx + far * dx - dy * slot, sy + far * dy + dx * slot),
                          (sx + far * dx + dy * slot, sy + far * dy - dx * slot), (sx + dy * slot, sy - dx * slot)], 0)
        cv.disc("steel", (x0 + r_ring, 0), r_ring, t=7)
        hexr = r_ring * 0.62
        cv.poly("steel", _arc(x0 + r_ring, 0, hexr, hexr, 0, 360, 13)[:12], 0)
    else:  # adjustable: tapered handle, round head with a fixed jaw, sliding jaw, worm screw
        hr = w * u(1.5, 1.8)
        hx = x1 - hr
        cv.poly("steel", [(x0, -w * 0.4), (hx, -w * 0.6), (hx, w * 0.6), (x0, w * 0.4)], 6)
        cv.disc("steel", (x0 + w * 0.5, 0), w * 0.22, t=0)  # hanging hole
        cv.disc("steel", (hx, 0), hr, t=11)
        gap = w * u(0.3, 0.6)
        cv.poly("steel", [(hx - hr * 0.3, -gap), (x1 + 2, -gap), (x1 + 2, gap * 0.2), (hx - hr * 0.3, gap * 0.2)], 0)
        cv.poly("steel", [(hx - hr * 0.2, gap * 0.2), (x1 - w * 0.1, gap * 0.2), (x1 - w * 0.3, hr * 0.75),
                          (hx - hr * 0.2, hr * 0.75)], 10)
        cv.line("steel", [(hx - hr * 0.3, gap * 0.2), (x1, gap * 0.2)], 0.8, 0)
        cv.rod("steel", (hx - hr * 0.6, hr * 0.55), (hx + hr * 0.1, hr * 0.55), w * 0.3)
    cv.round_edges("steel", 1.5)
    return cv


def gun(rng: np.random.Generator, ppm: float) -> Canvas:
    """Pistol (steel slide and barrel, polymer or steel frame, magazine in the grip) or revolver."""
    u = rng.uniform
    length = u(165, 230)
    height = length * u(0.62, 0.75)
    cv = Canvas(length + 10, height + 10, ppm)
    x0, y0 = -length / 2, -height / 2
    slide_h = height * u(0.2, 0.26)
    grip_w = length * u(0.2, 0.26)
    frame_mat = "plastic" if rng.random() < 0.55 else "steel"
    frame_t = 22 if frame_mat == "plastic" else 5
    rake = u(0.18, 0.32)
    gx = x0 + length * u(0.02, 0.08)
    gy = y0 + slide_h
    grip = [(gx, gy), (gx + grip_w * 1.15, gy), (gx + grip_w + rake * (height - slide_h), -y0),
            (gx + rake * (height - slide_h) - 4, -y0)]
    if rng.random() < 0.8:  # semi-automatic
        cv.poly("steel", [(x0, y0), (-x0, y0), (-x0, y0 + slide_h), (x0, y0 + slide_h)], u(7, 10))
        cv.rod("steel", (x0 + length * 0.3, y0 + slide_h * 0.55), (-x0 - 1, y0 + slide_h * 0.55), slide_h * 0.28,
               inner=slide_h * 0.13)
        cv.poly(frame_mat, [(x0 + 4, gy - 2), (-x0 - 6, gy - 2), (-x0 - 6, gy + slide_h * 0.45),
                            (x0 + 4, gy + slide_h * 0.45)], frame_t)
        cv.poly(frame_mat, grip, frame_t + 6)
        # magazine with cartridges
        mw = grip_w * 0.55
        m0 = (gx + grip_w * 0.3, gy + 3)
        dx = rake * (height - slide_h)
        mag = [m0, (m0[0] + mw, m0[1]), (m0[0] + mw + dx, -y0 - 3), (m0[0] + dx, -y0 - 3)]
        cv.poly("steel", mag, 2.5)
        for i in range(int(rng.integers(3, 8))):
            f = i / 8
            cx = m0[0] + mw / 2 + dx * (f + 0.06)
            cy = m0[1] + 6 + f * (height - slide_h - 10)
            cv.disc("brass", (cx, cy), mw * 0.32, t=8)
    else:  # revolver
        cv.rod("steel", (x0 + length * 0.35, y0 + slide_h * 0.5), (-x0, y0 + slide_h * 0.5), slide_h * 0.32)
        cv.poly("steel", [(x0 + 5, y0 + slide_h * 0.1), (x0 + length * 0.55, y0 + slide_h * 0.1),
                          (x0 + length * 0.55, gy + slide_h * 0.5), (x0 + 5, gy + slide_h * 0.5)], 9)
        cx, cy = x0 + length * 0.45, y0 + slide_h
        cv.disc("steel", (cx, cy), slide_h * 0.95, t=18)
        for k in range(6):
            a = k * math.pi / 3
            cv.disc("brass", (cx + math.cos(a) * slide_h * 0.55, cy + math.sin(a) * slide_h * 0.55), slide_h * 0.22, t=22)
        cv.poly("wood", grip, 28)
        cv.round_edges("wood", 6)
    # trigger guard and trigger
    tgx = gx + grip_w * 1.6
    cv.ellipse(frame_mat, (tgx, gy + height * 0.12), (length * 0.12, height * 0.14), frame_t, start=0, end=180, width=4)
    cv.poly("steel", [(tgx - 3, gy + 1), (tgx + 1, gy + 1), (tgx - 1, gy + height * 0.15), (tgx - 4, gy + height * 0.14)], 5)
    return cv


def bullet(rng: np.random.Generator, ppm: float) -> Canvas:
    """A cartridge: brass case (hollow, powder inside) and a lead or copper projectile."""
    u = rng.uniform
    cal = u(4.5, 6.5)  # radius
    case = cal * u(3.2, 6.0)
    proj = cal * u(1.6, 2.6)
    cv = Canvas(case + proj + 6, 2 * cal + 6, ppm)
    x0 = -(case + proj) / 2
    cv.rod("brass", (x0 + cal * 0.3, 0), (x0 + case, 0), cal, inner=cal - 0.7)
    cv.rod("plastic", (x0 + cal * 0.3, 0), (x0 + case, 0), cal - 0.7)
    cv.disc("brass", (x0 + 1.2, 0), cal * 1.05, t=2.5 * cal)
    mat = "lead" if rng.random() < 0.5 else "copper"
    nose = [(x0 + case - 2, -cal * 0.95), (x0 + case + proj * 0.45, -cal * 0.9),
            (x0 + case + proj, -cal * 0.15), (x0 + case + proj, cal * 0.15),
            (x0 + case + proj * 0.45, cal * 0.9), (x0 + case - 2, cal * 0.95)]
    cv.poly(mat, nose, 2 * cal)
    cv.round_edges(mat, cal * 0.7)
    return cv


def sprayer(rng: np.random.Generator, ppm: float) -> Canvas:
    """Aerosol can: thin aluminium or steel shell (dark rims), liquid, dome, plastic cap."""
    u = rng.uniform
    length = u(110, 220)
    r = u(20, 33)
    cv = Canvas(length + 8, 2 * r + 8, ppm)
    x0 = -length / 2
    shell = "aluminium" if rng.random() < 0.6 else "steel"
    wall = 0.45 if shell == "aluminium" else 0.25
    body_end = -x0 - length * u(0.18, 0.3)
    cv.rod(shell, (x0 + r * 0.15, 0), (body_end, 0), r, inner=r - wall)
    fill = u(0.3, 0.95)
    cv.rod("water", (x0 + r * 0.15, 0), (x0 + r * 0.15 + fill * (body_end - x0 - r * 0.15), 0), r - wall - 0.5)
    cv.ellipse(shell, (body_end, 0), (r * 0.3, r * 0.85), 1.5, start=-90, end=90)
    cv.ellipse(shell, (x0 + r * 0.15, 0), (r * 0.25, r * 0.95), 2.0, start=90, end=270)
    cap = u(0.6, 0.95) * r
    cv.rod("plastic", (body_end + 2, 0), (-x0 - cap * 0.3, 0), cap, inner=cap - 1.5)
    cv.rod("steel", (body_end, 0), (body_end + 10, 0), 2.5)
    cv.poly("plastic", [(body_end + 8, -4), (body_end + 18, -4), (body_end + 18, 4), (body_end + 8, 4)], 10)
    return cv


def handcuffs(rng: np.random.Generator, ppm: float) -> Canvas:
    """Two steel cuffs (ratchet arm + frame with lock box) joined by a chain or hinge."""
    u = rng.uniform
    r = u(30, 40)
    gap = u(22, 55)
    width = 4 * r + gap
    cv = Canvas(width + 10, 2 * r + 24, ppm)
    bw, bh = r * 0.75, r * 0.55
    for sgn in (-1, 1):
        cx = sgn * (gap / 2 + r)
        cv.ellipse("steel", (cx, 0), (r, r * u(0.9, 1.05)), 5, width=u(5, 7))
        box_x = cx - sgn * r * 0.7
        cv.poly("steel", [(box_x - bw / 2, -bh / 2), (box_x + bw / 2, -bh / 2),
                          (box_x + bw / 2, bh / 2), (box_x - bw / 2, bh / 2)], 9)
        cv.disc("steel", (box_x, 0), bh * 0.25, t=0)
    if rng.random() < 0.75:
        n = int(rng.integers(2, 4))
        ends = (-gap / 2 - r * 0.3, gap / 2 + r * 0.3)
        xs = np.linspace(ends[0], ends[1], n + 2)
        for i in range(n + 1):
            cx = (xs[i] + xs[i + 1]) / 2
            lx = (xs[i + 1] - xs[i]) * 0.65
            cv.ellipse("steel", (cx, 0), (lx, lx * 0.5), 4, angle=90 * (i % 2), width=2.5)
    else:
        cv.poly("steel", [(-gap / 2 - r * 0.35, -6), (gap / 2 + r * 0.35, -6), (gap / 2 + r * 0.35, 6),
                          (-gap / 2 - r * 0.35, 6)], 6)
    return cv


def knife(rng: np.random.Generator, ppm: float) -> Canvas:
    """Kitchen knife, folding knife or dagger: steel blade, plastic/wood handle, rivets."""
    u = rng.uniform
    kind = rng.integers(3)
    blade = u(90, 200) if kind != 1 else u(65, 110)
    bw = u(18, 42) if kind == 0 else u(14, 26)
    handle = u(90, 130)
    hw = u(18, 26)
    length = blade + handle
    cv = Canvas(length + 10, max(bw, hw) * 2.2 + 10, ppm)
    hx = -length / 2 + handle
    if kind == 2:  # dagger: symmetric double edge and a guard
        pts = [(hx, -bw / 2), (hx + blade * 0.7, -bw * 0.4), (hx + blade, 0), (hx + blade * 0.7, bw * 0.4), (hx, bw / 2)]
        cv.poly("steel", pts, u(3, 5))
        cv.poly("steel", [(hx - 6, -bw * 1.1), (hx, -bw * 1.1), (hx, bw * 1.1), (hx - 6, bw * 1.1)], 8)
    else:
        belly = u(2.0, 5.0)  # higher: the edge stays straight longer, then sweeps up
        drop = u(0.0, 0.35) if kind == 0 else u(0.3, 0.6)  # spine drop to the point
        spine = -hw * 0.45
        xs = np.linspace(0, 1, 12)
        top = [(hx + blade * x, spine + bw * drop * x ** 3) for x in xs]
        bottom = [(hx + blade * x, spine + bw * drop + bw * (1 - drop) * (1 - x ** belly)) for x in xs[::-1]]
        cv.poly("steel", top + bottom, u(1.8, 3.2))
        if kind == 0:  # bolster
            cv.poly("steel", [(hx - 4, -hw * 0.5), (hx + 3, -hw * 0.5), (hx + 3, hw * 0.5), (hx - 4, hw * 0.5)], 6)
    hmat = "wood" if rng.random() < 0.35 else "plastic"
    hpts = [(-length / 2, -hw / 2), (hx, -hw * 0.42), (hx, hw * 0.42), (-length / 2, hw / 2)]
    cv.poly(hmat, hpts, u(13, 19))
    cv.round_edges(hmat, 5)
    if kind == 1:  # folding: steel liners under the scales, pivot
        cv.poly("steel", hpts, 2.4)
        cv.disc("steel", (hx - 5, 0), 4.5, t=6)
    else:  # tang and rivets
        cv.poly("steel", [(-length / 2 + 6, -hw * 0.2), (hx, -hw * 0.2), (hx, hw * 0.2), (-length / 2 + 6, hw * 0.2)], 2.5)
        for i in range(int(rng.integers(2, 4))):
            cv.disc("brass", (-length / 2 + 15 + i * (handle - 30) / 2, 0), 2.5, t=hw * 0.8)
    return cv


def lighter(rng: np.random.Generator, ppm: float) -> Canvas:
    """Disposable lighter (plastic body with butane, steel head) or a steel petrol lighter."""
    u = rng.uniform
    if rng.random() < 0.7:
        length = u(60, 82)
        w = u(20, 26)
        cv = Canvas(length + 6, w + 6, ppm)
        x0 = -length / 2
        head = u(14, 18)
        body = [(x0, -w / 2), (-x0 - head, -w / 2), (-x0 - head, w / 2), (x0, w / 2)]
        cv.poly("plastic", body, 12)
        cv.line("plastic", body, 1.5, 22, closed=True)
        fill = u(0.2, 0.9)
        cv.poly("water", [(x0 + 2, -w / 2 + 2), (x0 + 2 + fill * (length - head - 4), -w / 2 + 2),
                          (x0 + 2 + fill * (length - head - 4), w / 2 - 2), (x0 + 2, w / 2 - 2)], 7)
        hx = -x0 - head
        cv.poly("steel", [(hx, -w / 2 + 1), (-x0, -w / 2 + 1), (-x0, w / 2 - 1), (hx, w / 2 - 1)], 1.2)
        cv.line("steel", [(hx, -w / 2 + 1), (-x0, -w / 2 + 1), (-x0, w / 2 - 1), (hx, w / 2 - 1)], 0.8, 9)
        cv.disc("steel", (hx + head * 0.45, -w * 0.15), w * 0.2)
        cv.poly("steel", [(hx - 3, w * 0.05), (hx + 5, w * 0.05), (hx + 5, w * 0.4), (hx - 3, w * 0.4)], 6)
        return cv
    length, w = u(52, 60), u(35, 40)
    cv = Canvas(length + 6, w + 6, ppm)
    x0, y0 = -length / 2, -w / 2
    box = [(x0, y0), (-x0, y0), (-x0, -y0), (x0, -y0)]
    cv.poly("steel", box, 1.4)
    cv.line("steel", box, 1.0, 12, closed=True)
    cv.line("steel", [(x0 + length * 0.3, y0), (x0 + length * 0.3, -y0)], 1.2, 12)
    cv.poly("fabric", [(x0 + length * 0.35, y0 + 4), (-x0 - 3, y0 + 4), (-x0 - 3, -y0 - 4), (x0 + length * 0.35, -y0 - 4)], 10)
    cv.disc("steel", (x0 + length * 0.15, 0), 4.5)
    return cv


FAMILIES: dict[str, Family] = dict(zip(CLASSES, (
    baton, pliers, hammer, powerbank, scissors, wrench, gun, bullet, sprayer, handcuffs, knife, lighter,
), strict=True))
