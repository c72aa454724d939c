"""Tests of the fused shared-mask LCCL eval forward, ``fast.fused.lccl_shared_eval``.

Three references: the naive twin (``conv2d_naive`` for both convolutions, in
float64), the dense ``conv2d_forward``, and the two-call path it replaces
(``cheap_single_unchecked`` then ``gated_conv2d_unchecked(..., scale=V')``).
Cases whose cheap pre-activation comes within 1e-6 of 0 are redrawn, so that
the mask cannot flip on rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from lccl_ref.fast.cheap import cheap_single_unchecked
from lccl_ref.fast.compact import _row_list, band_list
from lccl_ref.fast.fused import lccl_shared_eval, lccl_shared_eval_unchecked
from lccl_ref.fast.gated import gated_conv2d_unchecked
from lccl_ref.functional import conv2d_forward, conv2d_naive
from lccl_ref.functional.batchnorm import affine_relu_unchecked

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}
MARGIN = 1e-6
DTYPES = [np.float32, np.float64]

# (N, C, T, H, W, k, stride, padding, cheap kind "k" = kxkxCx1 or "1" = 1x1xCx1)
CASES = [
    (2, 3, 5, 9, 9, 3, 1, 1, "k"),
    (2, 3, 5, 9, 9, 3, 1, 1, "1"),
    (3, 4, 17, 8, 7, 3, 2, 1, "k"),
    (2, 2, 33, 10, 9, 3, 2, 1, "1"),
    (1, 5, 1, 7, 8, 3, 1, 0, "k"),
    (2, 1, 17, 6, 6, 3, 1, 2, "k"),
    (2, 4, 33, 6, 7, 3, 1, 2, "1"),  # 1x1 at padding 1 inside a window padded by 2
    (1, 3, 24, 11, 5, 5, 2, 2, "1"),
    (2, 2, 16, 5, 5, 1, 1, 0, "k"),  # 1x1 expensive conv: both kinds coincide
    (1, 16, 16, 12, 12, 3, 1, 1, "k"),
    (4, 2, 3, 3, 3, 3, 1, 1, "1"),  # many images with few positions each
    (1, 3, 40, 9, 9, 3, 2, 0, "k"),  # several channel blocks
    (2, 2, 5, 10, 11, 3, 3, 1, "k"),  # stride 3: the general column-phase copy
    (1, 3, 7, 11, 10, 3, 3, 2, "1"),
]


def _cheap_geometry(k, padding, kind):
    """Cheap kernel size and padding of a kind (as LCCLConv2d chooses them)."""
    if kind == "k":
        return k, padding
    return 1, padding - (k - 1) // 2


def _draw(case, dtype, seed, bias=None):
    """Arrays of a case with no cheap pre-activation within MARGIN of 0 (redrawn if so)."""
    n, c, t, h, wd, k, stride, padding, kind = case
    kc, cp = _cheap_geometry(k, padding, kind)
    for attempt in range(50):
        rng = np.random.default_rng(seed + 1000 * attempt)
        x = rng.standard_normal((n, c, h, wd)).astype(dtype)
        w = rng.standard_normal((t, c, k, k)).astype(dtype)
        wc = rng.standard_normal((1, c, kc, kc)).astype(dtype)
        b_c = np.array([rng.uniform(-1, 1) if bias is None else bias], dtype=dtype)
        pre = conv2d_naive(x.astype(np.float64), wc.astype(np.float64),
                           b_c.astype(np.float64), stride, cp)[:, 0]
        if np.abs(pre).min() >= MARGIN:
            return x, w, wc, b_c, stride, padding, cp, pre
    raise AssertionError("no draw kept the cheap pre-activation away from 0")


def _naive(x, w, pre, stride, padding):
    """The layer from its definition: conv_W(x) * V' where V' > 0, else 0 (float64)."""
    dense = conv2d_naive(x.astype(np.float64), w.astype(np.float64), None, stride, padding)
    v = np.maximum(pre, 0.0)
    return np.where(v[:, None] > 0, dense * v[:, None], 0.0), v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_matches_naive_twin(case, dtype):
    x, w, wc, b_c, stride, padding, cp, pre = _draw(case, dtype, seed=1)
    y, v, mask, active, macs = lccl_shared_eval(x, w, wc, b_c, stride, padding, cp)
    y_ref, v_ref = _naive(x, w, pre, stride, padding)
    t, c, kh, kw = w.shape
    assert y.dtype == v.dtype == dtype and mask.dtype == np.bool_
    assert y.shape == y_ref.shape and v.shape == mask.shape == v_ref.shape
    np.testing.assert_array_equal(mask, v_ref > 0)
    assert active == int(mask.sum())
    assert macs == active * t * c * kh * kw
    np.testing.assert_allclose(v, v_ref, **TOL[dtype])
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    assert np.all(y[np.broadcast_to(~mask[:, None], y.shape)] == 0)
    assert np.all(v[~mask] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES[:8])
def test_matches_two_call_path(case, dtype):
    x, w, wc, b_c, stride, padding, cp, _ = _draw(case, dtype, seed=2)
    s, p, q = (stride, stride), (padding, padding), (cp, cp)
    y, v, mask, active, macs = lccl_shared_eval_unchecked(x, w, wc, b_c, s, p, q)
    v2, mask2, active2 = cheap_single_unchecked(x, wc, b_c, s, q)
    y2, macs2 = gated_conv2d_unchecked(x, w, mask2, None, s, p, "vector", scale=v2)
    np.testing.assert_array_equal(mask, mask2)
    assert (active, macs) == (active2, macs2)
    np.testing.assert_allclose(v, v2, **TOL[dtype])
    np.testing.assert_allclose(y, y2, **TOL[dtype])


def test_non_contiguous_x_and_pair_arguments():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((3, 8, 11, 14)).astype(np.float32)
    x = base[::2, 1::2, :, ::2]  # (2, 4, 11, 7), strided on three axes
    assert not x.flags.c_contiguous
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    wc = rng.standard_normal((1, 4, 1, 1)).astype(np.float32)
    b_c = np.array([0.1], np.float32)
    y, v, mask, active, _ = lccl_shared_eval(x, w, wc, b_c, (2, 1), (1, 2), (0, 1))
    y_ref = lccl_shared_eval(np.ascontiguousarray(x), w, wc, b_c, (2, 1), (1, 2), (0, 1))[0]
    np.testing.assert_array_equal(y, y_ref)
    pre = conv2d_forward(x, wc, b_c, (2, 1), (0, 1))[0][:, 0]
    assert np.abs(pre).min() > 1e-4  # this draw: no mask flip on float32 rounding
    np.testing.assert_array_equal(mask, pre > 0)
    dense = conv2d_forward(x, w, None, (2, 1), (1, 2))[0]
    np.testing.assert_allclose(y, np.where(mask[:, None], dense * v[:, None], 0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["k", "1"])
def test_all_off_and_all_on(kind):
    case = (2, 3, 7, 6, 6, 3, 1, 1, kind)
    x, w, wc, b_c, stride, padding, cp, _ = _draw(case, np.float32, seed=4, bias=-1e4)
    y, v, mask, active, macs = lccl_shared_eval(x, w, wc, b_c, stride, padding, cp)
    assert active == 0 and macs == 0 and not mask.any()
    assert np.all(y == 0) and np.all(v == 0)
    x, w, wc, b_c, stride, padding, cp, pre = _draw(case, np.float32, seed=4, bias=1e4)
    y, v, mask, active, macs = lccl_shared_eval(x, w, wc, b_c, stride, padding, cp)
    assert mask.all() and active == mask.size
    assert macs == mask.size * 7 * 3 * 9  # the dense count XYTk^2C
    dense = conv2d_forward(x, w, None, stride, padding)[0]
    np.testing.assert_allclose(y, dense * v[:, None], rtol=1e-4, atol=1e-2)


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(1, 3), c=st.integers(1, 5), t=st.sampled_from([1, 2, 5, 16, 17, 24, 33]),
    h=st.integers(3, 10), wd=st.integers(3, 10), k=st.sampled_from([1, 3]),
    stride=st.integers(1, 2), padding=st.integers(0, 2), kind=st.sampled_from(["k", "1"]),
    bias=st.floats(-3, 3), seed=st.integers(0, 2**16),
)
def test_property_dense_times_cheap(n, c, t, h, wd, k, stride, padding, kind, bias, seed):
    """y = conv_W(x) * V' where V' > 0 and exactly 0 elsewhere, V' = ReLU(cheap conv)."""
    if kind == "1" and padding < (k - 1) // 2:
        kind = "k"  # a 1x1 cheap window needs padding >= (k - 1) // 2 to be centred
    rng = np.random.default_rng(seed)
    kc, cp = _cheap_geometry(k, padding, kind)
    x = rng.standard_normal((n, c, h, wd))
    w = rng.standard_normal((t, c, k, k))
    wc = rng.standard_normal((1, c, kc, kc))
    b_c = np.array([bias])
    pre = conv2d_forward(x, wc, b_c, stride, cp)[0][:, 0]
    if np.abs(pre).min() < MARGIN:
        return
    y, v, mask, active, macs = lccl_shared_eval(x, w, wc, b_c, stride, padding, cp)
    dense = conv2d_forward(x, w, None, stride, padding)[0]
    np.testing.assert_array_equal(mask, pre > 0)
    np.testing.assert_allclose(v, np.maximum(pre, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y[np.broadcast_to(mask[:, None], y.shape)],
                               (dense * v[:, None])[np.broadcast_to(mask[:, None], y.shape)],
                               rtol=1e-10, atol=1e-10)
    assert np.all(y[np.broadcast_to(~mask[:, None], y.shape)] == 0)
    assert active == int(mask.sum()) and macs == active * t * c * k * k


def _good():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    wc = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)
    return dict(x=x, w=w, w_cheap=wc, b_cheap=np.zeros(1, np.float32), stride=1, padding=1,
                cheap_padding=0)


@pytest.mark.parametrize("change, error, match", [
    (dict(x=[[1.0]]), TypeError, "x must be a numpy.ndarray"),
    (dict(x=np.zeros((2, 3, 6, 6), np.int32)), TypeError, "x must have dtype"),
    (dict(w=np.zeros((4, 3, 3, 3))), TypeError, "dtype"),
    (dict(w=np.zeros((4, 2, 3, 3), np.float32)), ValueError, "channel mismatch"),
    (dict(w_cheap=np.zeros((1, 3, 1, 1))), TypeError, "w_cheap has dtype"),
    (dict(w_cheap=np.zeros((2, 3, 1, 1), np.float32)), ValueError, "w_cheap must have shape"),
    (dict(w_cheap=np.zeros((1, 3, 1), np.float32)), ValueError, "w_cheap must be 4-D"),
    (dict(b_cheap=np.zeros(2, np.float32)), ValueError, "b_cheap must have shape"),
    (dict(b_cheap=0.0), TypeError, "b_cheap must be a numpy.ndarray"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(cheap_padding=-1), ValueError, "cheap_padding must be >= 0"),
    (dict(cheap_padding=1.5), TypeError, "cheap_padding must be an int"),
    (dict(cheap_padding=2), ValueError, "must lie inside"),  # 1x1 window off the 3x3 one
    (dict(w_cheap=np.zeros((1, 3, 5, 5), np.float32), cheap_padding=2), ValueError,
     "must lie inside"),
    (dict(w_cheap=np.zeros((1, 3, 2, 2), np.float32), cheap_padding=1), ValueError,
     "output"),  # inside the window but a different output size
])
def test_bad_input(change, error, match):
    args = {**_good(), **change}
    with pytest.raises(error, match=match):
        lccl_shared_eval(**args)


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(1, 2), c=st.integers(1, 4), t=st.sampled_from([1, 5, 16, 17]),
    h=st.integers(3, 9), wd=st.integers(3, 9), sh=st.integers(1, 3), sw=st.integers(1, 3),
    padding=st.integers(0, 2), seed=st.integers(0, 2**16),
)
def test_property_pre_in_the_copy_is_the_bn_relu_first(n, c, t, h, wd, sh, sw, padding, seed):
    """``pre=(s, h)`` at any stride (the phase copies of stride 2 and 3 included, odd
    widths too) gives what the kernel gives on ``max(x * s + h, 0)`` made first."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd))
    w = rng.standard_normal((t, c, 3, 3))
    wc = rng.standard_normal((1, c, 3, 3))
    b_c = np.array([rng.normal()])
    s, sh_ = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c)
    xa = affine_relu_unchecked(x, s, sh_)
    ref = lccl_shared_eval_unchecked(xa, w, wc, b_c, (sh, sw), (padding, padding),
                                     (padding, padding))
    got = lccl_shared_eval_unchecked(x, w, wc, b_c, (sh, sw), (padding, padding),
                                     (padding, padding), pre=(s, sh_))
    for a, b in zip(got[:3], ref[:3]):
        np.testing.assert_array_equal(a, b)
    assert got[3:] == ref[3:]


def test_float32_rows_path_equals_the_naive_convs():
    """kxkxCx1 at 3x3 / stride 1 with Ho >= 4 and Wo >= 8 takes the row-blocked cheap
    sweep (cheap.row_sweeps_3x3); in float32 it must still match the naive convs."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 12, 17)).astype(np.float32)
    w = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    wc = rng.standard_normal((1, 5, 3, 3)).astype(np.float32)
    b_c = np.array([0.3], np.float32)
    y, v, mask, active, macs = lccl_shared_eval(x, w, wc, b_c, 1, 1, 1)
    pre = conv2d_naive(x.astype(np.float64), wc.astype(np.float64), b_c.astype(np.float64),
                       1, 1)[:, 0]
    clear = np.abs(pre) > 1e-3  # no float32 rounding flips these cells
    np.testing.assert_array_equal(mask[clear], pre[clear] > 0)
    np.testing.assert_allclose(v[clear], np.maximum(pre, 0)[clear], rtol=1e-4, atol=1e-4)
    dense = conv2d_naive(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
    ref = dense * np.maximum(pre, 0)[:, None]
    on = np.broadcast_to((mask & clear)[:, None], y.shape)
    np.testing.assert_allclose(y[on], ref[on], rtol=1e-3, atol=1e-3)
    assert np.all(y[np.broadcast_to(~mask[:, None], y.shape)] == 0)
    assert active == int(mask.sum()) and macs == active * 7 * 5 * 9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd", [16, 17, 23, 40])
def test_vector_phase_copy_equals_the_bn_relu_first(dtype, wd):
    """Rows wide enough for the vectorised stride-2 deinterleave (_split_pairs: 8 float32
    or 4 float64 pairs per step, then the remainder and an odd last column): the same
    bits as the kernel on max(x * s + h, 0) made first, and on a non-contiguous x."""
    rng = np.random.default_rng(wd)
    x = rng.standard_normal((2, 3, 9, wd)).astype(dtype)
    w = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    wc = rng.standard_normal((1, 3, 3, 3)).astype(dtype)
    b_c = np.array([0.1], dtype)
    s, h = rng.uniform(0.5, 1.5, 3).astype(dtype), rng.normal(0, 0.5, 3).astype(dtype)
    ref = lccl_shared_eval_unchecked(affine_relu_unchecked(x, s, h), w, wc, b_c, (2, 2), (1, 1),
                                     (1, 1))
    for xin in (x, np.asfortranarray(x)):
        got = lccl_shared_eval_unchecked(xin, w, wc, b_c, (2, 2), (1, 1), (1, 1), pre=(s, h))
        for a, b in zip(got[:3], ref[:3]):
            np.testing.assert_array_equal(a, b)
    plain = lccl_shared_eval_unchecked(x, w, wc, b_c, (2, 2), (1, 1), (1, 1))  # no pre
    y_ref = conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, 2, 1)[0]
    on = np.broadcast_to(plain[2][:, None], y_ref.shape)
    tol = 1e-10 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(plain[0][on], (y_ref * plain[1][:, None])[on], rtol=tol, atol=tol)


@njit
def _row_list_py(vin, vout, mout, qs, base, um, q0, b0):
    return _row_list(vin, vout, mout, qs, base, um, q0, b0)


@settings(max_examples=60, deadline=None)
@given(wo=st.integers(0, 40), start=st.integers(0, 5), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16), p=st.floats(0, 1))
def test_compact_lists_the_positive_cells_in_order(wo, start, dtype, seed, p):
    """The IR row step is the scalar definition: V' = max(vin, 0) (NaN kept), the mask
    not vin <= 0 (true for NaN: NaN opens the gate), and the positions j of the mask, in
    order, after the ``start`` entries already listed, which it keeps; whole vectors and
    the rest."""
    g = np.random.default_rng(seed)
    vin = np.where(g.random(wo) < p, g.random(wo) + 0.5, -g.random(wo)).astype(dtype)
    vin[g.random(wo) < 0.1] = 0.0
    vin[g.random(wo) < 0.05] = np.nan
    qs = np.full(start + wo, -7, dtype=np.int64)
    base = np.full(start + wo, 7, dtype=np.uint64)
    vout, mout = np.full(wo, -3.0, dtype), np.zeros(wo, np.bool_)
    um = _row_list_py(vin, vout, mout, qs, base, np.uint64(start), 11, np.uint64(100))
    gate = ~(vin <= 0)
    on = np.flatnonzero(gate)
    assert um == start + on.size
    np.testing.assert_array_equal(vout, np.where(gate, vin, 0))  # NaN == NaN here
    np.testing.assert_array_equal(mout, gate)
    np.testing.assert_array_equal(qs[:start], -7)
    np.testing.assert_array_equal(base[:start], 7)
    np.testing.assert_array_equal(qs[start: start + on.size], 11 + on)
    np.testing.assert_array_equal(base[start: start + on.size], 100 + on)



@njit
def _band_list_py(vflat, vrow, mrow, qs, base, i0, rows, q0, wo, wq):
    return band_list(vflat, vrow, mrow, qs, base, i0, rows, q0, wo, wq)


@settings(max_examples=60, deadline=None)
@given(ho=st.integers(1, 6), i0=st.integers(0, 3), wo=st.sampled_from([1, 4, 5, 8, 12, 16, 24]),
       gap=st.integers(0, 3), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16),
       p=st.floats(0, 1))
def test_band_list_is_the_rows_one_after_another(ho, i0, wo, gap, dtype, seed, p):
    """A band's step 3 (one IR call over its rows when a row is whole vectors, a call per
    row otherwise) is the scalar definition over the rows ``i0 .. i0+ho-1`` of V' laid
    out ``wq = wo + gap`` apart: V' and the mask band-major from cell ``q0``, the list
    ``qs = (i-i0)*wo + j``, ``base = i*wq + j`` of the positive cells in row-major
    order; the cells between rows (``gap``) are never read into it."""
    g = np.random.default_rng(seed)
    wq, q0 = wo + gap, 3
    vflat = np.where(g.random((i0 + ho) * wq + 8) < p, g.random((i0 + ho) * wq + 8) + 0.5,
                     -g.random((i0 + ho) * wq + 8)).astype(dtype)
    vflat[g.random(vflat.size) < 0.05] = np.nan
    for i in range(i0 + ho):  # the gap cells would be listed if they were read
        vflat[i * wq + wo: (i + 1) * wq] = 9.0
    vrow, mrow = np.full(q0 + ho * wo, -3.0, dtype), np.ones(q0 + ho * wo, np.bool_)
    qs = np.full(ho * wo + 8, -7, dtype=np.int64)
    base = np.full(ho * wo + 8, 7, dtype=np.uint64)
    m = _band_list_py(vflat, vrow, mrow, qs, base, i0, ho, q0, wo, wq)
    band = np.stack([vflat[i * wq: i * wq + wo] for i in range(i0, i0 + ho)])  # (ho, wo)
    gate = ~(band <= 0)  # NaN opens the gate
    on_i, on_j = np.nonzero(gate)
    assert m == on_i.size
    np.testing.assert_array_equal(vrow[q0:], np.where(gate, band, 0).ravel())
    np.testing.assert_array_equal(mrow[q0:], gate.ravel())
    np.testing.assert_array_equal(vrow[:q0], -3.0)
    np.testing.assert_array_equal(qs[:m], on_i * wo + on_j)
    np.testing.assert_array_equal(base[:m], (on_i + i0) * wq + on_j)

@settings(deadline=None, max_examples=60)
@given(c=st.integers(1, 3), h=st.integers(1, 9), wd=st.integers(1, 40), sh=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), row_gap=st.integers(0, 2),
       has_pre=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_stride_2_copy_puts_every_column_in_its_phase(c, h, wd, sh, ph, pw, row_gap, has_pre,
                                                      dtype, seed):
    """The column-stride-2 copy (a channel's row phase per LLVM IR call, whole vectors of
    pairs, then the rest of the pairs and an odd last column one at a time) writes
    ``f(x[ch, r, col])`` at ``ch*chan + rowmap[r] + (even or odd) + col // 2``, bit for
    bit, also for rows further apart than their width, and nothing else."""
    from lccl_ref.fast.fused import fused_buffer, fused_tables
    from lccl_ref.fast.padcopy import copy_rows_2

    rng = np.random.default_rng(seed)
    _, _, rowmap, _, even, odd, hq, wq = fused_tables(c, h, wd, 3, 3, 3, 3, sh, 2, ph, pw, 0, 0)
    xb = np.full(fused_buffer(c, sh, 2, hq, wq, dtype).size, 7.0, dtype)
    x = rng.standard_normal((c, h, wd + row_gap)).astype(dtype)[:, :, :wd]
    s, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    chan = sh * 2 * hq * wq
    copy_rows_2(x, xb, chan, rowmap, even, odd, sh, wq, s, b, has_pre)
    ref = np.full_like(xb, 7.0)
    f = np.maximum(x * s[:, None, None] + b[:, None, None], 0) if has_pre else x
    for ch in range(c):
        for r in range(h):
            for col in range(wd):
                phase = even if col % 2 == 0 else odd
                ref[ch * chan + rowmap[r] + phase + col // 2] = f[ch, r, col]
    assert np.array_equal(xb, ref)
