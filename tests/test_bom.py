"""BOM blends exactly the intended latent region with weight α, overlapping each box."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xsyn.synthesis.bom import BomPatch, apply_bom, box_to_latent, place_patch, plan_bom


def test_apply_bom_exact_region_and_weight():
    z = torch.randn(2, 4, 8, 8)
    z_real = torch.randn(2, 4, 8, 8)
    plans = [[BomPatch(src=(0, 0, 3, 2), dst=(4, 5, 7, 7))], []]
    out = apply_bom(z, z_real, plans, alpha=0.3)
    expected = z.clone()
    expected[0, :, 4:7, 5:7] = 0.3 * z_real[0, :, 0:3, 0:2] + 0.7 * z[0, :, 4:7, 5:7]
    torch.testing.assert_close(out, expected)
    assert not torch.equal(out, z)          # something was blended...
    mask = torch.ones_like(z, dtype=torch.bool)
    mask[0, :, 4:7, 5:7] = False
    assert torch.equal(out[mask], z[mask])  # ...and nothing outside the region
    assert torch.equal(out[1], z[1])        # an image without a plan is untouched


def test_alpha_zero_and_one():
    z, z_real = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    plan = [[BomPatch(src=(2, 2, 6, 6), dst=(1, 1, 5, 5))]]
    assert torch.equal(apply_bom(z, z_real, plan, 0.0), z)
    torch.testing.assert_close(apply_bom(z, z_real, plan, 1.0)[0, :, 1:5, 1:5], z_real[0, :, 2:6, 2:6])


boxes = st.tuples(st.floats(0, 120), st.floats(0, 120), st.floats(1, 60), st.floats(1, 60)).map(
    lambda b: [b[0], b[1], min(b[2], 128 - b[0]), min(b[3], 128 - b[1])]
).filter(lambda b: b[2] > 0.5 and b[3] > 0.5)


@settings(max_examples=200, deadline=None)
@given(region=boxes, box=boxes, seed=st.integers(0, 2**31))
def test_placed_patch_overlaps_box_and_keeps_shape(region, box, seed):
    size = (16, 16)
    patch = box_to_latent(region, 8.0, size)
    cell_box = box_to_latent(box, 8.0, size)
    p = place_patch(patch, cell_box, size, np.random.default_rng(seed))
    (sy0, sx0, sy1, sx1), (dy0, dx0, dy1, dx1) = p.src, p.dst
    assert sy1 - sy0 == dy1 - dy0 > 0 and sx1 - sx0 == dx1 - dx0 > 0
    assert 0 <= dy0 and dy1 <= 16 and 0 <= dx0 and dx1 <= 16
    assert patch[0] <= sy0 and sy1 <= patch[2] and patch[1] <= sx0 and sx1 <= patch[3]
    by0, bx0, by1, bx1 = cell_box
    assert min(dy1, by1) > max(dy0, by0) and min(dx1, bx1) > max(dx0, bx0)


def test_plan_is_seeded_and_needs_a_region():
    a = plan_bom([10, 10, 30, 20], [[60, 60, 20, 20], [5, 90, 10, 10]], 128, (16, 16), seed=3)
    assert a == plan_bom([10, 10, 30, 20], [[60, 60, 20, 20], [5, 90, 10, 10]], 128, (16, 16), seed=3)
    assert len(a) == 2
    assert plan_bom(None, [[60, 60, 20, 20]], 128, (16, 16), seed=3) == []
