"""The cheap branch's kernels (kernels/cheap.py) and CheapConv2d against the im2col conv.

Forward and backward of ``cheap_conv2d`` against ``functional.conv2d_forward`` /
``conv2d_backward`` (the twin) over random shapes, strides and paddings, float64 to
1e-10 and float32 to a per-cell rounding bound; ``CheapConv2d`` against ``Conv2d``
with the same weights through a training step, and its MACs.
"""

from __future__ import annotations

import numpy as np
from gradcheck import check_grad
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref import functional as F
from lccl_ref.kernels import cheap_conv2d, cheap_conv2d_backward
from lccl_ref.nn import CheapConv2d, Conv2d


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 6), t=st.integers(1, 3), h=st.integers(3, 9),
       w=st.integers(3, 9), geometry=st.sampled_from([(3, 1), (1, 0), (3, 0), (5, 2)]),
       stride=st.integers(1, 3), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**16))
def test_cheap_pair_equals_the_im2col_conv(n, c, t, h, w, geometry, stride, dtype, seed):
    k, p = geometry
    if h + 2 * p < k or w + 2 * p < k:
        return
    g = np.random.default_rng(seed)
    u = g.standard_normal((n, c, h, w)).astype(dtype)
    wt = g.standard_normal((t, c, k, k)).astype(dtype)
    b = g.standard_normal(t).astype(dtype)
    z = cheap_conv2d(u, wt, b, stride, p)
    z_ref, cache = F.conv2d_forward(u, wt, b, stride, p)
    dz = g.standard_normal(z.shape).astype(dtype)
    du, dw, db = cheap_conv2d_backward(dz, u, wt, stride, p)
    du_ref, dw_ref, db_ref = F.conv2d_backward(dz, cache)
    u64, w64, dz64 = (a.astype(np.float64) for a in (u, wt, dz))
    # float32: each value is a sum of at most K products; K u times the sum of |products|
    bounds = {
        "z": F.conv2d_forward(np.abs(u64), np.abs(w64), np.abs(b.astype(np.float64)), stride,
                              p)[0],
        "du": F.conv2d_backward(np.abs(dz64), F.conv2d_forward(np.abs(u64), np.abs(w64), None,
                                                              stride, p)[1])[0],
        "dw": F.conv2d_backward(np.abs(dz64), F.conv2d_forward(np.abs(u64), np.abs(w64), None,
                                                              stride, p)[1])[1],
    }
    k_max = max(c * k * k, n * z.shape[2] * z.shape[3], t * k * k) + 2
    unit = 1e-13 if dtype == np.float64 else 2 * k_max * 2.0**-24
    for name, got, want in (("z", z, z_ref), ("du", du, du_ref), ("dw", dw, dw_ref)):
        assert got.dtype == np.dtype(dtype) and got.shape == want.shape, name
        assert np.all(np.abs(got.astype(np.float64) - want) <= unit * bounds[name] + 1e-30), name
    np.testing.assert_allclose(db, db_ref, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_cheap_backward_finite_differences():
    g = np.random.default_rng(3)
    u = g.standard_normal((2, 3, 6, 5))
    wt = g.standard_normal((1, 3, 3, 3))
    b = g.standard_normal(1)

    def forward(u, wt, b):
        return cheap_conv2d(u, wt, b, 2, 1), (u, wt)

    def backward(dz, cache):
        return cheap_conv2d_backward(dz, cache[0], cache[1], 2, 1)

    check_grad(forward, backward, u, wt, b, rng=4)


def test_cheap_conv2d_module_trains_as_conv2d():
    """Same weights: the same output, input and weight gradients as a Conv2d, in training;
    the same MACs counted; eval mode is the plain Conv2d's."""
    g = np.random.default_rng(5)
    cheap = CheapConv2d(4, 1, 3, 2, 1, bias=True, rng=0, dtype=np.float64)
    plain = Conv2d(4, 1, 3, 2, 1, bias=True, rng=0, dtype=np.float64)
    x = g.standard_normal((3, 4, 9, 8))
    y_c, y_p = cheap.forward(x), plain.forward(x)
    np.testing.assert_allclose(y_c, y_p, rtol=1e-12, atol=1e-12)
    dy = g.standard_normal(y_c.shape)
    np.testing.assert_allclose(cheap.backward(dy), plain.backward(dy), rtol=1e-12, atol=1e-12)
    for a, b in zip(cheap.parameters(), plain.parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-12)
    assert cheap.train_macs == plain.train_macs
    cheap.eval()
    np.testing.assert_allclose(cheap.forward(x), plain.eval().forward(x), rtol=1e-12)
