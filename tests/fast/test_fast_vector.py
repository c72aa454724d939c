"""Tests of the register-blocked shared-mask kernel, ``gated_conv2d(..., method="vector")``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref.fast.blocks import BLOCKS, channel_block, weight_blocks
from lccl_ref.fast.gated import gated_conv2d
from lccl_ref.functional import conv2d_forward

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}

# (N, C, T, H, W, kh, kw, stride, padding, density): odd T and C, both channel
# blocks (16 and 24, one and several of them), stride 2, padding 0/1/2,
# 1x1 / 3x3 / 5x3 kernels, empty and full masks, batch 1.
CASES = [
    (2, 3, 5, 7, 9, 3, 3, 1, 1, 0.5),
    (1, 1, 1, 5, 5, 1, 1, 1, 0, 0.7),
    (3, 7, 17, 8, 6, 3, 3, 2, 1, 0.6),
    (2, 5, 24, 9, 9, 5, 3, (2, 1), (2, 1), 0.4),
    (1, 16, 16, 12, 12, 3, 3, 1, 1, 1.0),
    (2, 4, 33, 6, 7, 3, 3, 1, 2, 0.5),
    (2, 6, 70, 5, 5, 1, 1, 2, 0, 0.8),
    (1, 9, 40, 10, 8, 5, 3, 1, 0, 0.3),
    (2, 3, 13, 6, 6, 3, 3, 1, 1, 0.0),
    (1, 2, 3, 4, 4, 3, 3, 1, 1, 1.0),
    (4, 2, 16, 3, 3, 3, 3, 1, 1, 0.25),  # many images with few positions each
]


def _case_arrays(case, dtype, seed):
    n, c, t, h, wd, kh, kw, stride, padding, density = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((t, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    mask = rng.random((n, ho, wo)) < density
    scale = rng.uniform(-2.0, 2.0, mask.shape).astype(dtype)
    return x, w, b, mask, scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("k", range(len(CASES)))
def test_vector_equals_direct(k, scaled, dtype):
    case = CASES[k]
    x, w, b, mask, scale = _case_arrays(case, dtype, seed=k)
    stride, padding = case[7], case[8]
    s = scale if scaled else None
    y_ref, macs_ref = gated_conv2d(x, w, mask, b, stride, padding, "direct", scale=s)
    y, macs = gated_conv2d(x, w, mask, b, stride, padding, "vector", scale=s)
    assert y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    assert np.all(y[~np.broadcast_to(mask[:, None], y.shape)] == 0)  # bias not added off-mask
    t, c, kh, kw = w.shape
    assert isinstance(macs, int) and macs == macs_ref == int(mask.sum()) * t * c * kh * kw


def test_all_true_is_dense_and_all_false_is_zero():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    dense, _ = conv2d_forward(x, w, b, 1, 1)
    y, macs = gated_conv2d(x, w, np.ones((2, 10, 10), bool), b, 1, 1, "vector")
    np.testing.assert_allclose(y, dense, rtol=1e-4, atol=1e-4)
    assert macs == dense.size * 16 * 9
    y, macs = gated_conv2d(x, w, np.zeros((2, 10, 10), bool), b, 1, 1, "vector")
    assert macs == 0 and not y.any()


def test_non_contiguous_input_and_scale():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, 9, 16)).transpose(0, 3, 1, 2)[:, ::2]  # (2, 8, 5, 9), strided
    w = rng.standard_normal((6, 8, 3, 3))
    mask = rng.random((2, 5, 9)) < 0.5
    s = np.stack([rng.standard_normal((2, 5, 9))] * 2, axis=1)[:, 0]  # a strided view
    assert not x.flags.c_contiguous and not s.flags.c_contiguous
    y, _ = gated_conv2d(x, w, mask, None, 1, 1, "vector", scale=s)
    y_ref, _ = gated_conv2d(np.ascontiguousarray(x), w, mask, None, 1, 1, "direct", scale=s)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)


@st.composite
def _cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, c, t = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 40))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 11))
    wd = draw(st.integers(max(1, kw - 2 * padding[1]), 11))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    scaled, use_bias = draw(st.booleans()), draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return dtype, n, c, t, kh, kw, stride, padding, h, wd, density, scaled, use_bias, seed


@settings(max_examples=40, deadline=None)
@given(_cases())
def test_vector_is_dense_conv_where_mask_is_true(case):
    dtype, n, c, t, kh, kw, stride, padding, h, wd, density, scaled, use_bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((t, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype) if use_bias else None
    dense, _ = conv2d_forward(x, w, b, stride, padding)
    mask = rng.random((n,) + dense.shape[2:]) < density
    s = rng.uniform(-2.0, 2.0, mask.shape).astype(dtype) if scaled else None
    y, macs = gated_conv2d(x, w, mask, b, stride, padding, "vector", scale=s)
    factor = mask * s if scaled else mask
    np.testing.assert_allclose(y, dense * factor[:, None], **TOL[dtype])
    assert np.all(y[~np.broadcast_to(mask[:, None], y.shape)] == 0)
    assert macs == int(mask.sum()) * t * c * kh * kw


def test_channel_block_and_weight_blocks():
    assert channel_block(16) == 16 and channel_block(24) == 24 and channel_block(32) == 16
    assert channel_block(3) == 16 and channel_block(64) == 16 and channel_block(70) == 24
    for t in range(1, 100):
        tb = channel_block(t)
        assert tb in BLOCKS and -(-t // tb) * tb == min(-(-t // k) * k for k in BLOCKS)
    w = np.arange(5 * 2 * 3 * 1, dtype=np.float64).reshape(5, 2, 3, 1)
    wb = weight_blocks(w, 16)  # (1, C*kh*kw, 16): patch order (c, a, b), T padded with zeros
    assert wb.shape == (1, 6, 16) and wb.flags.c_contiguous
    np.testing.assert_array_equal(wb[0, :, :5], w.reshape(5, 6).T)
    assert not wb[0, :, 5:].any()


def test_vector_refuses_per_channel_mask_and_bad_scale():
    x = np.zeros((1, 3, 6, 6), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="method='vector' needs a shared mask"):
        gated_conv2d(x, w, np.ones((1, 4, 4, 4), bool), method="vector")
    with pytest.raises(TypeError, match="mask must have dtype bool"):
        gated_conv2d(x, w, np.ones((1, 4, 4), np.uint8), method="vector")
    with pytest.raises(ValueError, match="scale must have the shape"):
        gated_conv2d(x, w, np.ones((1, 4, 4), bool), method="vector",
                     scale=np.ones((1, 4, 5), np.float32))
    with pytest.raises(TypeError, match="scale must have the dtype of x"):
        gated_conv2d(x, w, np.ones((1, 4, 4), bool), method="vector", scale=np.ones((1, 4, 4)))


@pytest.mark.parametrize("cells", [1, 7, 13, 40])
def test_bands_of_any_size_give_the_same_result(monkeypatch, cells):
    # real layers use bands of >= 256 cells (one band for every small test image), so
    # force small bands here: band boundaries mid-row, a short last band, one row per band
    from lccl_ref.fast import vector as vector_mod

    monkeypatch.setattr(vector_mod, "band_cells", lambda t_pad, itemsize: cells)
    rng = np.random.default_rng(cells)
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((5, 3, 3, 3))
    mask = rng.random((2, 9, 8)) < 0.6
    scale = rng.standard_normal((2, 9, 8))
    y, macs = gated_conv2d(x, w, mask, None, 1, 1, method="vector", scale=scale)
    ref, ref_macs = gated_conv2d(x, w, mask, None, 1, 1, method="direct", scale=scale)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert macs == ref_macs
    # the dense path (no mask: the precomputed position lists, band by band)
    yd, macs_d = vector_mod.vector_conv(x, w, None, (1, 1), (1, 1))
    full, full_macs = gated_conv2d(x, w, np.ones_like(mask), None, 1, 1, method="direct")
    np.testing.assert_allclose(yd, full, rtol=1e-12, atol=1e-12)
    assert macs_d == full_macs == 2 * 9 * 8 * 5 * 27


@settings(deadline=None, max_examples=60)
@given(c=st.integers(1, 4), h=st.integers(1, 9), vecs=st.integers(0, 5), extra=st.integers(0, 7),
       ph=st.integers(0, 2), pw=st.integers(0, 2), row_gap=st.integers(0, 3),
       has_pre=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_copy_image_fills_the_interior_with_the_bn_relu_of_x(c, h, vecs, extra, ph, pw, row_gap,
                                                             has_pre, dtype, seed):
    """The padded copy, by whole-vector rows in LLVM IR (widths a multiple of the lanes,
    unit column stride) or the row loop (any other), gives the NumPy ``max(x*s + h, 0)``
    bit for bit in the interior, also for rows further apart than their width, and
    leaves the border as it was."""
    from lccl_ref.fast.padcopy import copy_image

    lanes = 32 // np.dtype(dtype).itemsize
    w = vecs * lanes + extra
    if w == 0:
        w = 1
    rng = np.random.default_rng(seed)
    xn = rng.standard_normal((c, h, w + row_gap)).astype(dtype)[:, :, :w]  # row stride > w
    s, sh = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    buf = np.full((c, h + 2 * ph, w + 2 * pw), 7.0, dtype)
    copy_image(xn, buf, ph, pw, s, sh, has_pre)
    ref = np.maximum(xn * s[:, None, None] + sh[:, None, None], 0) if has_pre else xn
    assert np.array_equal(buf[:, ph:ph + h, pw:pw + w], ref)
    border = np.ones(buf.shape, bool)
    border[:, ph:ph + h, pw:pw + w] = False
    assert (buf[border] == 7.0).all()


def test_auto_times_vector_and_gather_once_per_shape_and_takes_tiled_per_channel(monkeypatch):
    import time

    from lccl_ref.fast import gated as fast_gated
    from lccl_ref.fast import tune
    from lccl_ref.kernels import gated as teaching

    calls = []

    def fake(name, delay):
        def kernel(*args, **kwargs):
            calls.append(name)
            time.sleep(delay)
            return (None, 0) if name == "vector" else 0  # vector_conv returns (y, macs)
        return kernel

    table = {"dense": {}, "shared": {}, "fused": {}}
    monkeypatch.setattr(tune, "CHOICES", table)
    monkeypatch.setattr(teaching, "gather_shared", fake("gather", 0.0))
    monkeypatch.setattr(fast_gated, "vector_conv", fake("vector", 0.003))
    monkeypatch.setattr(teaching, "tiled", fake("tiled", 0.0))
    x = np.zeros((1, 4, 6, 6), np.float32)
    w = np.zeros((2, 4, 3, 3), np.float32)
    gated_conv2d(x, w, np.ones((1, 4, 4), bool))  # times both (1 warm-up + 3 each), runs one
    assert calls == ["vector"] * 4 + ["gather"] * 4 + ["gather"]
    (choice,) = table["shared"].values()
    assert choice["method"] == "gather" and choice["ms"]["vector"] > choice["ms"]["gather"]
    calls.clear()
    gated_conv2d(x, w, np.zeros((1, 4, 4), bool))  # same shape: no timing again
    sparse = np.zeros((1, 2, 4, 4), bool)
    sparse[0, 0, 0, 0] = True  # density 1/32, below kernels.TILED_BELOW
    gated_conv2d(x, w, sparse)  # per-channel: tiled, untimed
    gated_conv2d(x, w, np.ones((1, 2, 4, 4), bool))  # dense then masked: no gated kernel
    assert calls == ["gather", "tiled"]
    monkeypatch.setattr(teaching, "gather_shared", fake("gather", 0.003))
    monkeypatch.setattr(fast_gated, "vector_conv", fake("vector", 0.0))
    calls.clear()
    gated_conv2d(x[:, :, :5], w, np.ones((1, 3, 4), bool))  # a new shape, now vector wins
    assert calls[-1] == "vector" and len(table["shared"]) == 2
