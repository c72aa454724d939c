"""kernels.cheap.cheap_single: the shared-mask cheap branch V', its mask and count in one call."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lccl_ref.fast.cheap import cheap_single
from lccl_ref.functional import conv2d_forward, conv2d_naive
from lccl_ref.nn import LCCLConv2d


def _reference(x, w, b, stride, padding):
    y, _ = conv2d_forward(x, w, b, stride, padding)
    return np.maximum(y[:, 0], 0)


@pytest.mark.parametrize("k, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0),
                                                (5, 1, 2), (3, 1, 0), ((3, 1), (2, 1), (0, 1))])
def test_equals_the_naive_conv_in_float64(k, stride, padding):
    rng = np.random.default_rng(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((2, 3, 9, 11))
    w = rng.standard_normal((1, 3, kh, kw))
    b = rng.standard_normal(1)
    v, mask, active = cheap_single(x, w, b, stride, padding)
    ref = np.maximum(conv2d_naive(x, w, b, stride, padding)[:, 0], 0)  # loops, no im2col
    np.testing.assert_allclose(v, ref, rtol=1e-12, atol=1e-12)
    assert mask.dtype == np.bool_ and np.array_equal(mask, v > 0)
    assert active == int(mask.sum()) and 0 < active < mask.size


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(1, 12), wd=st.integers(1, 12),
       kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), bias=st.floats(-1, 1),
       dtype=st.sampled_from([np.float32, np.float64]), strided=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_property_relu_of_the_dense_conv(n, c, h, wd, kh, kw, sh, sw, ph, pw, bias, dtype,
                                          strided, seed):
    # V' = max(conv + b, 0) everywhere, the mask is exactly V' > 0 and active its count,
    # for any shape, stride, padding, dtype and a non-contiguous input
    if kh > h + 2 * ph or kw > wd + 2 * pw:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, 2 * wd if strided else wd)).astype(dtype)
    x = x[..., ::2] if strided else x
    w = rng.standard_normal((1, c, kh, kw)).astype(dtype)
    b = np.array([bias], dtype=dtype)
    v, mask, active = cheap_single(x, w, b, (sh, sw), (ph, pw))
    ref = _reference(x, w, b, (sh, sw), (ph, pw))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert v.dtype == dtype and v.shape == ref.shape
    np.testing.assert_allclose(v, ref, rtol=tol, atol=tol)
    assert np.array_equal(mask, v > 0) and active == int(np.count_nonzero(v))
    assert (v >= 0).all()


@pytest.mark.parametrize("n, c, h, wd, k, stride, padding", [
    (14, 64, 8, 8, 3, 1, 1),    # several chunks of images, the last one short
    (2, 16, 32, 32, 3, 1, 1),   # more positions per image than one block
    (3, 8, 33, 37, 3, 2, 1),    # stride 2: even / odd column planes, odd sizes
    (2, 5, 17, 19, 3, 3, 1),    # stride 3: strided column copy
    (3, 1, 9, 10, 3, 1, 1),     # one input channel: fewer than 8 taps
    (4, 7, 12, 12, 1, 2, 0),    # 1x1 stride 2: only the even phase is read
    (2, 3, 10, 9, 1, 1, 1),     # padding wider than the kernel: separate zero borders
    (2, 6, 11, 13, 5, 2, 2),    # 5x5 stride 2: three rows of taps per phase
    (2, 4, 8, 8, 3, 1, 0),      # no padding
])
def test_layouts_equal_the_naive_conv(n, c, h, wd, k, stride, padding):
    # the chunk / block / phase-plane layouts, compared with the loop conv in float64;
    # a second call on other images reuses nothing from the first
    rng = np.random.default_rng(2)
    w = rng.standard_normal((1, c, k, k))
    b = np.array([0.2])
    for _ in range(2):
        x = rng.standard_normal((n, c, h, wd))
        v, mask, active = cheap_single(x, w, b, stride, padding)
        ref = np.maximum(conv2d_naive(x, w, b, stride, padding)[:, 0], 0)
        np.testing.assert_allclose(v, ref, rtol=1e-12, atol=1e-12)
        assert np.array_equal(mask, ref > 0) and active == int(np.count_nonzero(ref))


def test_float32_tolerance_and_inputs_left_alone():
    # float32 against the float64 conv; x, w and b are read, never written
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((1, 16, 3, 3)).astype(np.float32)
    b = np.array([0.1], np.float32)
    copies = x.copy(), w.copy(), b.copy()
    v, mask, active = cheap_single(x, w, b, 1, 1)
    ref = _reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1)
    np.testing.assert_allclose(v, ref, rtol=1e-4, atol=1e-4)
    assert v.dtype == np.float32 and active == int(np.count_nonzero(v))
    for a, a0 in zip((x, w, b), copies):
        assert np.array_equal(a, a0)


def test_bad_input():
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((1, 2, 3, 3), np.float32)
    b = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match=r"w must have shape \(1, 2, kh, kw\)"):
        cheap_single(x, np.ones((2, 2, 3, 3), np.float32), b)
    with pytest.raises(ValueError, match=r"b must have shape \(1,\)"):
        cheap_single(x, w, np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        cheap_single(x.astype(np.float64), w, b)
    with pytest.raises(ValueError, match="larger than the padded input"):
        cheap_single(x, np.ones((1, 2, 7, 7), np.float32), b)
    with pytest.raises(ValueError, match="stride"):
        cheap_single(x, w, b, stride=0)


@pytest.mark.parametrize("kind", ["kxkxCx1", "1x1xCx1"])
@pytest.mark.parametrize("stride", [1, 2])
def test_lccl_layer_uses_it_and_agrees_with_the_unfolded_branch(kind, stride):
    # with fold_bn (the default) the shared-mask layer goes through cheap_single; the
    # unfolded reference (conv, then eval BN, then ReLU) must give the same V' and mask
    rng = np.random.default_rng(1)
    layer = LCCLConv2d(4, 6, 3, stride, 1, cheap=kind, rng=1, dtype=np.float64).eval()
    bn = layer.cheap_bn
    bn.running_mean[...] = rng.standard_normal(1)
    bn.running_var[...] = rng.uniform(0.5, 2, 1)
    bn.bias.data[...] = 0.3
    x = rng.standard_normal((2, 4, 8, 8))
    v, mask, active = layer.cheap_eval(x)
    layer.fold_bn = False
    v_ref, mask_ref, active_ref = layer.cheap_eval(x)
    np.testing.assert_allclose(v, v_ref, rtol=1e-12, atol=1e-12)
    assert np.array_equal(mask, mask_ref) and active == active_ref
    assert mask.shape == (2,) + v.shape[2:]


@settings(deadline=None, max_examples=40)
@given(c=st.integers(1, 6), ho=st.integers(4, 19), wo=st.integers(4, 45),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_row_sweeps_equal_the_naive_conv_at_every_output_cell(c, ho, wo, dtype, seed):
    """The IR-vectorised 3x3 sweep (steps of 4 x 2, 8 x 1 or 4 x 1 vectors by the
    width, the last row group and column group shifted back) gives the naive conv at
    every cell of an Ho x Wo output, whatever Ho mod 4 and Wo mod the step's width;
    float64 vectors have 4 lanes."""
    from lccl_ref.fast.rows3x3 import row_sweeps_3x3

    lanes = 32 // np.dtype(dtype).itemsize
    if wo < lanes:
        wo = lanes + wo % 5
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, c, ho + 2, wo + 2)).astype(dtype)  # a padded image, pad 0
    w = rng.standard_normal((1, c, 3, 3)).astype(dtype)
    wq, chan = wo + 2, (ho + 2) * (wo + 2)
    xb = np.concatenate([x.reshape(-1), np.zeros(8 + wq, dtype)])  # the fused buffer's slack
    vflat = np.full((ho - 1) * wq + wo + 8, np.nan, dtype)
    row_sweeps_3x3(xb, w.reshape(-1), chan, c, ho, wo, wq, dtype(0.25), vflat)
    got = np.stack([vflat[i * wq: i * wq + wo] for i in range(ho)])
    ref = conv2d_naive(x.astype(np.float64), w.astype(np.float64), None, 1, 0)[0, 0] + 0.25
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * 10)


@settings(deadline=None, max_examples=40)
@given(c=st.integers(1, 4), t=st.integers(1, 5), h=st.integers(2, 12), wd=st.integers(6, 40),
       ph=st.integers(0, 2), pw=st.integers(0, 2), with_pre=st.booleans(),
       with_res=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_conv3x3_rows_is_the_dense_conv(c, t, h, wd, ph, pw, with_pre, with_res, dtype, seed):
    """The stem's row-sweep conv equals the naive conv (of ``max(x*s + h, 0)`` with a pre),
    plus the bias and the residual, at every cell; the padded buffer's border stays 0
    from call to call."""
    from lccl_ref.fast.rows3x3 import ROWS, conv3x3_rows

    lanes = 32 // np.dtype(dtype).itemsize
    ho, wo = h + 2 * ph - 2, wd + 2 * pw - 2
    assume(ho >= ROWS and wo >= lanes)
    g = np.random.default_rng(seed)
    x = g.standard_normal((c, h, wd)).astype(dtype)
    w = g.standard_normal((t, c, 3, 3)).astype(dtype)
    b = g.standard_normal(t).astype(dtype)
    s, sh = g.random(c).astype(dtype) + 0.5, g.standard_normal(c).astype(dtype)
    res = g.standard_normal((t, ho * wo)).astype(dtype)
    xin = np.maximum(x * s[:, None, None] + sh[:, None, None], 0) if with_pre else x
    ref = conv2d_naive(xin[None].astype(np.float64), w.astype(np.float64),
                       b.astype(np.float64), 1, (ph, pw))[0].reshape(t, -1)
    if with_res:
        ref = ref + res
    buf = np.zeros((c, h + 2 * ph, wd + 2 * pw), dtype)
    vflat = np.full((ho - 1) * (wd + 2 * pw) + wo + 8, np.nan, dtype)
    for _ in range(2):  # the second call reuses the buffer
        y = np.full((t, ho * wo), np.nan, dtype)
        args = (x, buf, w.reshape(t, -1), b, ph, pw, y, vflat, s, sh, with_pre)
        macs = conv3x3_rows(*args, res) if with_res else conv3x3_rows(*args)
        assert macs == ho * wo * t * c * 9
        tol = 1e-10 if dtype == np.float64 else 1e-4
        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * 10)


@settings(deadline=None, max_examples=40)
@given(nt=st.integers(1, 90), e0=st.integers(0, 9), n=st.integers(1, 140),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_tap_sweeps_equal_the_naive_sum_of_taps(nt, e0, n, dtype, seed):
    """Both strategies of ``tap_sweeps`` (accumulators in registers up to
    ``REGISTER_TAPS`` taps, block sweeps beyond) give ``bias + sum_k wt[k] *
    xb[e + toff[k]]`` at every cell ``e0 <= e < e0 + n``, whatever ``n`` mod the
    step; no cell before ``e0`` or from ``e0 + n + 7`` on is written."""
    from lccl_ref.fast.sweeps import tap_sweeps

    rng = np.random.default_rng(seed)
    toff = np.sort(rng.integers(0, 50, nt)).astype(np.int64)
    xb = rng.standard_normal(e0 + n + 60 + 8).astype(dtype)
    wt = rng.standard_normal(nt).astype(dtype)
    vflat = np.full(e0 + n + 24, np.nan, dtype)
    tap_sweeps(xb, wt, toff, e0, e0 + n, dtype(0.5), vflat)
    e = np.arange(e0, e0 + n)
    ref = 0.5 + (wt.astype(np.float64)[None, :] * xb.astype(np.float64)[e[:, None] + toff]).sum(1)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(vflat[e0:e0 + n], ref, rtol=tol, atol=tol * 10)
    assert np.isnan(vflat[e0 + n + 7:]).all() and np.isnan(vflat[:e0]).all()


@settings(deadline=None, max_examples=40)
@given(c=st.integers(1, 5), ho=st.integers(4, 13), wo=st.integers(4, 45),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_stride_2_row_sweeps_equal_the_naive_conv_at_every_output_cell(c, ho, wo, dtype, seed):
    """The stride-2 3x3 sweep over the phase layout of ``fast.fused`` (a phase row
    shared by the output rows of taps a = 0 and 2) gives the naive strided conv at
    every cell of an Ho x Wo output, whatever Ho mod 4 and Wo mod the step's width."""
    from lccl_ref.fast.fused import fused_buffer, fused_tables, taps_3x3
    from lccl_ref.fast.rows3x3 import row_sweeps_3x3_s2

    lanes = 32 // np.dtype(dtype).itemsize
    if wo < lanes:
        wo = lanes + wo % 5
    h, wd = 2 * ho, 2 * wo  # padding 1: (2*Ho + 2 - 3) // 2 + 1 = Ho
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, c, h, wd)).astype(dtype)
    w = rng.standard_normal((1, c, 3, 3)).astype(dtype)
    _, toff, _, _, _, _, hq, wq = fused_tables(c, h, wd, 3, 3, 3, 3, 2, 2, 1, 1, 0, 0)
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))  # the padded image, split into phases
    xb = np.zeros(fused_buffer(c, 2, 2, hq, wq, dtype).size, dtype)
    planes = xb[: c * 4 * hq * wq].reshape(c, 2, 2, hq, wq)
    for a in range(2):
        for b in range(2):
            ph = xp[:, a::2, b::2]
            planes[:, a, b, : ph.shape[1], : ph.shape[2]] = ph
    vflat = np.full((ho - 1) * wq + wo + 8, np.nan, dtype)
    row_sweeps_3x3_s2(xb, w.reshape(-1), 4 * hq * wq, hq * wq, c, ho, wo, wq, dtype(0.25), vflat)
    got = np.stack([vflat[i * wq: i * wq + wo] for i in range(ho)])
    ref = conv2d_naive(x.astype(np.float64), w.astype(np.float64), None, 2, 1)[0, 0] + 0.25
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * 10)
    assert taps_3x3(toff, c, 2, hq, wq)  # fused_image takes this sweep for these taps
