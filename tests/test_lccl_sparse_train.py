"""LCCLConv2d's sparse training step against its dense one (issue 18).

With ``sparse_train`` the expensive conv's forward, dW and dX run over the open cells
only (``GatedConv2d``, ``kernels.gated_conv2d_forward``).  Because ``dV = dO ⊙ V'`` and
``dz = g'(z) dV'`` are 0 wherever the gate is shut, the step is the dense step exactly:
the output, the input gradient(s) and every parameter gradient agree -- float64 to
1e-10, float32 within a bound derived from the layer's magnitudes -- for random shapes,
strides 1 and 2, both gates, the three cheap kinds, separate cheap inputs, densities
from empty to full, with and without a density budget's gradient; the executed MACs are
those of the open cells, as counted by the kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref.nn import CHEAP_KINDS, LCCLConv2d


def step(layer, x, dy, u=None, sparse=True, density_grad=0.0):
    """One training forward and backward; the output, input and parameter gradients."""
    layer.sparse_train = sparse
    layer.zero_grad()
    out = layer.forward(x, cheap_input=u)
    layer.density_grad = density_grad
    grads = layer.backward(dy)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return out, grads, {n: p.grad.copy() for n, p in layer.named_parameters()}


def scale(a):
    return float(np.max(np.abs(a))) if a.size else 0.0


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(CHEAP_KINDS),
    gate=st.sampled_from(["relu", "clip"]),
    stride=st.integers(1, 2),
    n=st.integers(1, 3), c=st.integers(1, 5), t=st.integers(1, 6),
    h=st.integers(3, 9), w=st.integers(3, 9),
    shift=st.sampled_from([-1e3, -1.0, 0.0, 0.7, 1e3]),  # masks from empty to full
    separate=st.booleans(),
    density_grad=st.sampled_from([0.0, 0.8]),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**16),
)
def test_sparse_training_step_equals_the_dense_one(kind, gate, stride, n, c, t, h, w, shift,
                                                   separate, density_grad, dtype, seed):
    rng = np.random.default_rng(seed)
    layer = LCCLConv2d(c, t, 3, stride, 1, cheap=kind, gate=gate, rng=seed, dtype=dtype)
    layer.cheap_bn.bias.data[:] = shift
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    u = rng.standard_normal((n, c, h, w)).astype(dtype) if separate else None
    ho, wo = layer.conv.output_shape(h, w)
    dy = rng.standard_normal((n, t, ho, wo)).astype(dtype)
    dense = step(layer, x, dy, u, sparse=False, density_grad=density_grad)
    sparse = step(layer, x, dy, u, sparse=True, density_grad=density_grad)
    # float32: each value is a sum of at most K = C*9 (forward, dX) or N*Ho*Wo (dW) products
    # of O(1) numbers times a gate of O(1); the two orders of summation differ by a few
    # u * K * scale
    k = max(c * 9, n * ho * wo, t * 9)
    rel = 1e-10 if dtype == np.float64 else 8 * k * 2.0**-24
    for a, b, what in [(sparse[0], dense[0], "output")] + [
            (ga, gb, "input grad") for ga, gb in zip(sparse[1], dense[1])] + [
            (sparse[2][name], dense[2][name], name) for name in dense[2]]:
        assert a.dtype == b.dtype == np.dtype(dtype), what
        np.testing.assert_allclose(a, b, rtol=rel, atol=rel * max(scale(b), 1e-30),
                                   err_msg=what)


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_executed_macs_are_the_open_cells(kind):
    """The expensive conv's training MACs: the dense count, and what ran -- for shared
    masks the open positions times T*C*k*k per pass (forward, dX, dW)."""
    rng = np.random.default_rng(0)
    layer = LCCLConv2d(4, 6, 3, 1, 1, cheap=kind, gate="clip", rng=0, dtype=np.float64)
    x = rng.standard_normal((2, 4, 7, 7))
    out = layer.forward(x)
    layer.backward(rng.standard_normal(out.shape))
    per_pass = 2 * 7 * 7 * 6 * 4 * 9
    macs, cheap = dict(layer.conv.train_macs), dict(layer.cheap_conv.train_macs)
    assert macs["dense"] == 3 * per_pass
    z = layer.cheap_bn.forward(layer.cheap_conv.forward(x))  # the same batch statistics
    open_positions = np.count_nonzero((z > 0).any(axis=1))
    # shared masks: the open positions; per-channel masks: the positions with any open
    # channel, whose rows are computed whole (nearly all of them for a random mask)
    assert macs["executed"] == 3 * open_positions * 6 * 4 * 9
    assert 0 < macs["executed"] <= macs["dense"]
    if layer.shared_mask:
        assert macs["executed"] < macs["dense"]
    assert cheap["executed"] == cheap["dense"] == 3 * 2 * 7 * 7 * layer.cheap_conv.out_channels \
        * 4 * layer.cheap_conv.kernel_size[0] ** 2


def test_dense_reference_counts_the_dense_work():
    layer = LCCLConv2d(3, 4, 3, 1, 1, cheap="kxkxCx1", rng=0, dtype=np.float64)
    layer.sparse_train = False
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5))
    layer.backward(np.ones_like(layer.forward(x)))
    assert layer.conv.train_macs["executed"] == layer.conv.train_macs["dense"] == 3 * 25 * 4 * 27
