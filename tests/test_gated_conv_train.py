"""Tests of the gated convolution's training pair (kernels/gated_train.py, issue 18).

Three layers: (a) each Numba kernel of kernels/train_gather.py against its loop
twin; (b) float64 finite differences of the pair with a random upstream
gradient; (c) hypothesis properties over shapes, strides, padding, both mask
kinds and densities from 0 to 1: ``v``, ``dx``, ``dw`` equal the dense conv and
its backward with the mask applied, ``v`` is exactly 0 where the mask is off,
and the MACs counted equal those the mask implies.  Then bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_grad
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref.functional import conv2d_backward, conv2d_forward
from lccl_ref.functional.im2col import pad_nhwc
from lccl_ref.kernels import gather as gather_mod
from lccl_ref.kernels import train_gather as tg
from lccl_ref.kernels.gated_train import (
    gated_conv2d_backward,
    gated_conv2d_forward,
    gated_conv2d_naive,
)


def _random_case(rng, n, c, t, h, wd, k, stride, padding, per_channel, density, dtype):
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((t, c, k, k)).astype(dtype)
    ho, wo = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    mask = rng.random((n, t, ho, wo) if per_channel else (n, ho, wo)) < density
    dv = rng.standard_normal((n, t, ho, wo)).astype(dtype)
    return x, w, mask, dv


# (a) Numba kernels against their loop twins ----------------------------------------------

@pytest.mark.parametrize("stride, padding, k", [(1, 1, 3), (2, 2, 3), (1, 0, 1), (2, 0, 3)])
def test_row_kernels_equal_their_naive_twins(stride, padding, k):
    rng = np.random.default_rng(0)
    x, w, mask, dv = _random_case(rng, 3, 5, 4, 9, 8, k, stride, padding, False, 0.4, np.float64)
    xp = pad_nhwc(x, (padding, padding))  # (N, Hp, Wp, C)
    ho = mask.shape[1]
    k_len = k * k * x.shape[1]
    for g0, g1, n0 in [(0, 3 * ho, 0), (ho + 1, 2 * ho, 1), (2 * ho, 2 * ho + 2, 2)]:
        sub = xp[n0 : n0 + (g1 - g0 + ho - 1) // ho]
        pair = [np.full((3 * ho * mask.shape[2], k_len), np.nan) for _ in range(2)]
        m = [gather_mod.fill_rows(sub, n0, mask, g0, g1, k, k, stride, stride, pair[0]),
             tg.fill_rows_naive(sub, n0, mask, g0, g1, k, k, stride, stride, pair[1])]
        assert m[0] == m[1] == mask.reshape(-1, mask.shape[2])[g0:g1].sum()
        np.testing.assert_array_equal(pair[0][: m[0]], pair[1][: m[1]])

        grads = [np.full((m[0], 4), np.nan) for _ in range(2)]
        assert tg.gather_grad_rows(dv, mask, g0, g1, grads[0]) == m[0]
        assert tg.gather_grad_rows_naive(dv, mask, g0, g1, grads[1]) == m[0]
        np.testing.assert_array_equal(grads[0], grads[1])

        dcols = rng.standard_normal((m[0], k_len))
        dxp = [rng.standard_normal(sub.shape) for _ in range(2)]
        dxp[1][...] = dxp[0]
        assert tg.add_rows(dxp[0], n0, mask, g0, g1, k, k, stride, stride, dcols) == m[0]
        assert tg.add_rows_naive(dxp[1], n0, mask, g0, g1, k, k, stride, stride, dcols) == m[0]
        np.testing.assert_allclose(dxp[0], dxp[1], rtol=1e-14, atol=1e-14)


def test_keep_active_equals_its_twin_and_zeroes_nan():
    rng = np.random.default_rng(7)
    src = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    src[0, 0, 0, :2] = [np.nan, np.inf]
    mask = rng.random(src.shape) < 0.5
    mask[0, 0, 0, :2] = False
    out = [np.full_like(src, 7.0) for _ in range(2)]
    tg.keep_active(src, mask, out[0])
    tg.keep_active_naive(src, mask, out[1])
    np.testing.assert_array_equal(out[0], out[1])
    assert np.all(out[0][~mask] == 0) and np.all(out[0][mask] == src[mask])


def test_nan_off_the_mask_stays_off():
    """dv is read at active cells only, and v is exactly 0 off the mask even if x has NaN."""
    rng = np.random.default_rng(8)
    for per_channel in (False, True):
        x, w, mask, dv = _random_case(rng, 2, 3, 4, 6, 6, 3, 1, 1, per_channel, 0.5, np.float64)
        cells = mask if per_channel else np.broadcast_to(mask[:, None], dv.shape)
        dv_nan = np.where(cells, dv, np.nan)
        _, cache = gated_conv2d_forward(x, w, mask, 1, 1)
        dx, dw = gated_conv2d_backward(dv_nan, cache)
        _, dx_ref, dw_ref = gated_conv2d_naive(x, w, mask, dv, 1, 1)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
        x[0, 0, 2, 2] = np.nan
        v, _ = gated_conv2d_forward(x, w, mask, 1, 1)
        assert np.all(v[~cells] == 0)


def test_add_rows_is_the_adjoint_of_fill_rows():
    """<fill(x), d> == <x, add(d)>: the scatter-add is exactly the transpose of the gather."""
    rng = np.random.default_rng(1)
    x, _, mask, _ = _random_case(rng, 2, 3, 1, 7, 7, 3, 2, 1, False, 0.6, np.float64)
    xp = pad_nhwc(x, (1, 1))
    ho = mask.shape[1]
    rows = np.zeros((mask.sum(), 27))
    m = gather_mod.fill_rows(xp, 0, mask, 0, 2 * ho, 3, 3, 2, 2, rows)
    d = rng.standard_normal(rows.shape)
    dxp = np.zeros_like(xp)
    tg.add_rows(dxp, 0, mask, 0, 2 * ho, 3, 3, 2, 2, d)
    assert np.isclose(np.sum(rows[:m] * d), np.sum(xp * dxp), rtol=1e-12)


# (b) float64 finite differences ----------------------------------------------------------

@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
def test_finite_differences(per_channel, stride, padding):
    rng = np.random.default_rng(2)
    x, w, mask, _ = _random_case(rng, 2, 3, 4, 6, 5, 3, stride, padding, per_channel, 0.5,
                                 np.float64)
    check_grad(gated_conv2d_forward, gated_conv2d_backward, x, w, mask, stride, padding,
               rng=3, rtol=1e-6, atol=1e-8)


# (c) properties -----------------------------------------------------------------------------

def _gamma(n_terms, dtype):
    """Higham's bound gamma_n = n u / (1 - n u) on the relative error of an n-term sum."""
    u = np.finfo(dtype).eps / 2
    return n_terms * u / (1 - n_terms * u)


def _assert_close(ours, dense, abs_ref, n_terms, dtype):
    """``ours`` and ``dense`` (both in ``dtype``) each lie within gamma_n * abs_ref of the
    exact value, where ``abs_ref`` is the same sum taken over |terms| in float64."""
    tol = 2 * _gamma(n_terms, dtype) * abs_ref + np.finfo(dtype).tiny
    bad = np.abs(ours.astype(np.float64) - dense) > tol
    assert not bad.any(), f"{bad.sum()} cells beyond the rounding bound; worst " \
        f"{np.max(np.abs(ours - dense) - tol)}"


@st.composite
def _cases(draw):
    k = draw(st.sampled_from([1, 3]))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 9)), t=draw(st.integers(1, 9)),
                h=draw(st.integers(3, 10)), wd=draw(st.integers(3, 10)), k=k,
                stride=draw(st.sampled_from([1, 2])), padding=draw(st.integers(0, 2)),
                per_channel=draw(st.booleans()),
                density=draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=120, deadline=None)
@given(_cases())
def test_pair_equals_dense_conv_with_the_mask(case):
    case = dict(case)
    dtype, stride, padding = case["dtype"], case["stride"], case["padding"]
    x, w, mask, dv = _random_case(np.random.default_rng(case.pop("seed")), **case)
    n, t, c, k = x.shape[0], w.shape[0], x.shape[1], w.shape[2]
    cells = mask if mask.ndim == 4 else np.broadcast_to(mask[:, None], dv.shape)

    v, cache = gated_conv2d_forward(x, w, mask, stride, padding)
    dx, dw = gated_conv2d_backward(dv, cache)
    assert v.dtype == dx.dtype == dw.dtype == dtype
    assert v.shape == dv.shape and dx.shape == x.shape and dw.shape == w.shape
    assert np.all(v[~cells] == 0)  # exactly, not to rounding

    y_dense, dense_cache = conv2d_forward(x, w, None, stride, padding)
    dx_dense, dw_dense, _ = conv2d_backward(dv * cells, dense_cache)
    # The same sums over |terms| in float64 bound the rounding error of each result.
    x64, w64, dvm64 = (np.abs(a).astype(np.float64) for a in (x, w, dv * cells))
    y_abs, abs_cache = conv2d_forward(x64, w64, None, stride, padding)
    dx_abs, dw_abs, _ = conv2d_backward(dvm64, abs_cache)
    _assert_close(v, y_dense * cells, y_abs, c * k * k + k, dtype)  # + k: dense sums k GEMMs
    # dx: T-term GEMM sums, then up to k*k of them added; dw: sums over the rows of a
    # piece, then over the pieces (at most N*Ho of them).
    _assert_close(dx, dx_dense, dx_abs, t * k * k + k * k, dtype)
    _assert_close(dw, dw_dense, dw_abs, n * v.shape[2] * (v.shape[3] + 1), dtype)
    if dtype == np.float64:
        for ours, ref in [(v, y_dense * cells), (dx, dx_dense), (dw, dw_dense)]:
            np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)

    positions = mask.any(axis=1) if mask.ndim == 4 else mask
    per_pass = int(positions.sum()) * t * c * k * k
    dense_macs = v.size * c * k * k
    assert cache.macs == {"forward": per_pass, "backward_dw": per_pass,
                          "backward_dx": per_pass, "backward": 2 * per_pass,
                          "dense_forward": dense_macs, "dense_backward": 2 * dense_macs}


def test_naive_reference_matches_and_shared_equals_broadcast_per_channel():
    rng = np.random.default_rng(4)
    x, w, mask, dv = _random_case(rng, 2, 4, 5, 8, 8, 3, 1, 1, False, 0.5, np.float64)
    v, cache = gated_conv2d_forward(x, w, mask, 1, 1)
    dx, dw = gated_conv2d_backward(dv, cache)
    for ours, ref in zip((v, dx, dw), gated_conv2d_naive(x, w, mask, dv, 1, 1)):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    per_ch = np.ascontiguousarray(np.broadcast_to(mask[:, None], dv.shape))
    v2, cache2 = gated_conv2d_forward(x, w, per_ch, 1, 1)
    dx2, dw2 = gated_conv2d_backward(dv, cache2)
    for ours, ref in [(v2, v), (dx2, dx), (dw2, dw)]:
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert cache2.macs == cache.macs


def test_many_pieces_bands_and_image_groups(monkeypatch):
    """Small forced chunks: pieces are bands of one image and groups of images, mixed."""
    monkeypatch.setattr(gather_mod, "CHUNK_ROWS", 7)
    monkeypatch.setattr(tg, "CHUNK_ROWS", 7)
    rng = np.random.default_rng(5)
    for stride in (1, 2):
        x, w, mask, dv = _random_case(rng, 4, 3, 6, 13, 11, 3, stride, 1, False, 0.3,
                                      np.float64)
        mask[1] = False  # an empty image between others
        mask[2] = True  # a full one, cut into bands
        v, cache = gated_conv2d_forward(x, w, mask, stride, 1)
        dx, dw = gated_conv2d_backward(dv, cache)
        for ours, ref in zip((v, dx, dw), gated_conv2d_naive(x, w, mask, dv, stride, 1)):
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_non_contiguous_input_and_empty_batch():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 7, 9, 4)).transpose(0, 3, 1, 2)  # NHWC storage viewed as NCHW
    w = rng.standard_normal((3, 4, 3, 3))
    mask = rng.random((2, 7, 9)) < 0.5
    dv = rng.standard_normal((2, 3, 7, 9))
    v, cache = gated_conv2d_forward(x, w, mask, 1, 1)
    dx, dw = gated_conv2d_backward(dv, cache)
    for ours, ref in zip((v, dx, dw), gated_conv2d_naive(x, w, mask, dv, 1, 1)):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    v, cache = gated_conv2d_forward(x[:0], w, mask[:0], 1, 1)
    dx, dw = gated_conv2d_backward(dv[:0], cache)
    assert v.shape == (0, 3, 7, 9) and dx.shape == (0, 4, 7, 9) and not dw.any()
    assert cache.macs["forward"] == cache.macs["backward"] == 0


# bad input ----------------------------------------------------------------------------------

X = np.zeros((2, 3, 6, 6), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


@pytest.mark.parametrize("mask, exc, words", [
    (np.ones((2, 4, 4), np.int64), TypeError, "mask must have dtype bool, got int64"),
    (np.ones((2, 4, 4), np.float32), TypeError, "mask must have dtype bool"),
    ([[[True] * 4] * 4] * 2, TypeError, "mask must be a numpy.ndarray"),
    (np.ones((2, 6, 6), bool), ValueError, r"\(2, 4, 4\).*\(2, 4, 4, 4\).*got \(2, 6, 6\)"),
    (np.ones((1, 4, 4), bool), ValueError, r"got \(1, 4, 4\)"),
    (np.ones((2, 3, 4, 4), bool), ValueError, r"got \(2, 3, 4, 4\)"),
    (np.ones((4, 4), bool), ValueError, "mask must have shape"),
])
def test_forward_rejects_bad_masks(mask, exc, words):
    with pytest.raises(exc, match=words):
        gated_conv2d_forward(X, W, mask)


@pytest.mark.parametrize("x, w, exc, words", [
    (X.astype(np.float64), W, TypeError, "mixing dtypes"),
    (X.astype(np.int32), W, TypeError, "x must have dtype float32 or float64"),
    (X[0], W, ValueError, "x must be 4-D"),
    (X, W[:, :2], ValueError, "channel mismatch"),
])
def test_forward_rejects_bad_arrays(x, w, exc, words):
    with pytest.raises(exc, match=words):
        gated_conv2d_forward(x, w, np.ones((2, 4, 4), bool))


@pytest.mark.parametrize("dv, exc, words", [
    (np.zeros((2, 4, 4, 5), np.float32), ValueError, r"dv must have shape \(2, 4, 4, 4\)"),
    (np.zeros((2, 4, 4), np.float32), ValueError, "dv must be 4-D"),
    (np.zeros((2, 4, 4, 4), np.float64), TypeError, "mixing dtypes"),
    ([[0.0]], TypeError, "dv must be a numpy.ndarray"),
])
def test_backward_rejects_bad_dv(dv, exc, words):
    _, cache = gated_conv2d_forward(X, W, np.ones((2, 4, 4), bool), 1, 0)
    with pytest.raises(exc, match=words):
        gated_conv2d_backward(dv, cache)
