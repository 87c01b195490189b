"""Composing one scan: a bag, benign clutter and prohibited items, then the detector.

Why the split: families only draw; this module decides where things go and sums the
line integrals, so the physics (:mod:`.physics`) and the labels (:mod:`.labels`) see one
list of placed objects with their own attenuation windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xsyn.data.phantom import clutter as clutter_mod
from xsyn.data.phantom.canvas import Placed, place
from xsyn.data.phantom.items import CLASSES, FAMILIES
from xsyn.data.phantom.physics import MATERIALS, detect, pseudo_colour

# Approximate relative class frequencies of PIDray's training set (long-tailed; used
# only when class_balance = "pidray"; not measured here, a prior to mimic imbalance).
PIDRAY_WEIGHTS: dict[str, float] = {
    "Baton": 0.6, "Pliers": 1.3, "Hammer": 0.7, "Powerbank": 1.2, "Scissors": 1.1, "Wrench": 1.0,
    "Gun": 1.3, "Bullet": 0.8, "Sprayer": 0.9, "HandCuffs": 0.5, "Knife": 1.6, "Lighter": 1.4,
}


@dataclass(frozen=True)
class SceneParams:
    """Everything that shapes one scan (the ``phantom:`` config section)."""

    image_size: int = 128
    items_per_bag: tuple[int, int] = (1, 3)
    clutter: tuple[int, int] = (3, 8)
    class_balance: str = "uniform"
    photons: float = 20000.0
    min_visibility: float = 0.25
    visible_share: float = 0.3
    fov_mm: tuple[float, float] = (620.0, 780.0)
    item_scale: tuple[float, float] = (1.0, 1.45)
    max_tilt: float = 55.0
    blur_px: float = 0.6

    def class_weights(self) -> np.ndarray:
        if self.class_balance == "uniform":
            w = np.ones(len(CLASSES))
        elif self.class_balance == "pidray":
            w = np.array([PIDRAY_WEIGHTS[c] for c in CLASSES])
        else:
            raise ValueError(f"phantom.class_balance: unknown value {self.class_balance!r} (uniform | pidray)")
        return w / w.sum()


@dataclass
class SceneObject:
    """One placed object: prohibited item (``category`` 1..12) or benign region (``kind``)."""

    placed: Placed
    category: int | None = None
    kind: str | None = None
    a_own: np.ndarray = field(default=None, repr=False)  # low+high attenuation in its window


@dataclass
class Scene:
    t_low: np.ndarray  # measured (noisy) transmissions
    t_high: np.ndarray
    rgb: np.ndarray
    a_low: np.ndarray  # exact line integrals (noise-free), for labels
    a_high: np.ndarray
    objects: list[SceneObject]


def _accumulate(obj: SceneObject, a_low: np.ndarray, a_high: np.ndarray) -> None:
    p = obj.placed
    h, w = p.shape
    sl = (slice(p.y0, p.y0 + h), slice(p.x0, p.x0 + w))
    own = np.zeros((h, w), np.float32)
    for mat, t in p.layers.items():
        m = MATERIALS[mat]
        lo, hi = m.mu_low * t, m.mu_high * t
        a_low[sl] += lo
        a_high[sl] += hi
        own += lo + hi
    obj.a_own = own


def _place_inside(rng: np.random.Generator, cv, box: tuple[float, float, float, float], s: int,
                  max_tilt: float, tilt_prob: float = 1.0) -> Placed | None:
    """Random pose with the centre drawn so the object stays inside ``box`` where it fits."""
    ang = rng.uniform(0, 360)
    a = np.radians(ang)
    ex = (abs(np.cos(a)) * cv.w + abs(np.sin(a)) * cv.h) / 2 * 0.8
    ey = (abs(np.sin(a)) * cv.w + abs(np.cos(a)) * cv.h) / 2 * 0.8
    x0, y0, x1, y1 = box
    cx = rng.uniform(x0 + ex, x1 - ex) if x1 - x0 > 2 * ex else rng.uniform((x0 + x1) / 2 - 0.1 * (x1 - x0), (x0 + x1) / 2 + 0.1 * (x1 - x0))
    cy = rng.uniform(y0 + ey, y1 - ey) if y1 - y0 > 2 * ey else rng.uniform((y0 + y1) / 2 - 0.1 * (y1 - y0), (y0 + y1) / 2 + 0.1 * (y1 - y0))
    tilt = rng.uniform(0, max_tilt) if rng.random() < tilt_prob else 0.0
    return place(cv, cx, cy, ang, tilt_deg=tilt, tilt_axis_deg=rng.uniform(0, 180),
                 flip=bool(rng.random() < 0.5), scene_hw=(s, s))


def render_scene(rng: np.random.Generator, params: SceneParams) -> Scene:
    """Draw one bag scan; the same generator state gives the same scan, bit for bit."""
    s = params.image_size
    fov = rng.uniform(*params.fov_mm)
    ppm = s / fov
    a_low = np.zeros((s, s), np.float32)
    a_high = np.zeros((s, s), np.float32)
    objects: list[SceneObject] = []

    # Bag: fills most of the view, roughly aligned with the belt.
    bw = fov * rng.uniform(0.82, 0.97)
    bh = fov * rng.uniform(0.6, 0.9)
    if rng.random() < 0.5:
        bw, bh = bh, bw
    bag_cv = clutter_mod.bag(rng, ppm, bw, bh)
    cx, cy = s / 2 + rng.uniform(-0.03, 0.03) * s, s / 2 + rng.uniform(-0.03, 0.03) * s
    bag_placed = place(bag_cv, cx, cy, rng.uniform(-6, 6) + 180 * rng.integers(2), scene_hw=(s, s))
    bag_obj = SceneObject(bag_placed, kind="bag")
    _accumulate(bag_obj, a_low, a_high)
    objects.append(bag_obj)
    # Interior (pixels) where contents go.
    interior = (max(cx - bw * ppm * 0.45, 0), max(cy - bh * ppm * 0.45, 0),
                min(cx + bw * ppm * 0.45, s), min(cy + bh * ppm * 0.45, s))

    kinds = list(clutter_mod.FAMILIES)
    kw = np.array([clutter_mod.WEIGHTS[k] for k in kinds])
    kw = kw / kw.sum()
    for _ in range(int(rng.integers(params.clutter[0], params.clutter[1] + 1))):
        kind = kinds[int(rng.choice(len(kinds), p=kw))]
        cv = clutter_mod.FAMILIES[kind](rng, ppm * rng.uniform(0.9, 1.1))
        p = _place_inside(rng, cv, interior, s, 40.0)
        if p is not None:
            obj = SceneObject(p, kind=kind)
            _accumulate(obj, a_low, a_high)
            objects.append(obj)

    cw = params.class_weights()
    for _ in range(int(rng.integers(params.items_per_bag[0], params.items_per_bag[1] + 1))):
        c = int(rng.choice(len(CLASSES), p=cw))
        cv = FAMILIES[CLASSES[c]](rng, ppm * rng.uniform(*params.item_scale))
        p = _place_inside(rng, cv, interior, s, params.max_tilt, tilt_prob=0.6)
        if p is not None:
            obj = SceneObject(p, category=c + 1)
            _accumulate(obj, a_low, a_high)
            objects.append(obj)

    t_low, t_high = detect(a_low, a_high, params.photons, rng, blur_sigma=params.blur_px)
    return Scene(t_low, t_high, pseudo_colour(t_low, t_high), a_low, a_high, objects)
