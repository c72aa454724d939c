"""conv2d_forward / conv2d_backward: naive twin, finite differences, properties."""

import numpy as np
import pytest
from gradcheck import check_grad
from hypothesis import given, settings
from hypothesis import strategies as st

import lccl_ref.functional.conv as conv_mod
from lccl_ref.functional import conv2d_backward, conv2d_forward, conv2d_naive

# (N, C, H, W, T, kernel, stride, padding)
CASES = [
    (2, 3, 6, 6, 4, 3, 1, 1),
    (1, 2, 7, 5, 3, (2, 3), (2, 1), (0, 1)),
    (3, 4, 4, 4, 2, 1, 1, 0),
    (2, 2, 9, 8, 5, (3, 1), 2, (2, 0)),
    (1, 3, 3, 3, 2, 3, 1, 0),
    (2, 1, 2, 3, 3, (3, 3), (1, 2), (1, 1)),
    (2, 2, 4, 5, 3, (1, 2), 1, (1, 2)),  # stride 1 but padding > kernel - 1
]


def _make(case, dtype, seed=0, bias=True):
    n, c, h, w, t, k, s, p = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((t, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype) if bias else None
    return x, wt, b, s, p


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_naive(case, bias, dtype):
    x, w, b, s, p = _make(case, dtype, bias=bias)
    y, _ = conv2d_forward(x, w, b, s, p)
    ref = conv2d_naive(x, w, b, s, p)
    assert y.dtype == dtype and ref.dtype == dtype
    assert y.shape == ref.shape
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def test_forward_by_hand():
    # all-ones 2x2 kernel on 0..8: each output is the sum of a 2x2 block, plus the bias.
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.ones((2, 1, 2, 2))
    w[1] *= -1
    y, _ = conv2d_forward(x, w, np.array([0.5, 0.0]))
    np.testing.assert_array_equal(y[0, 0], [[8.5, 12.5], [20.5, 24.5]])
    np.testing.assert_array_equal(y[0, 1], [[-8, -12], [-20, -24]])
    # cross-correlation, not convolution: a kernel with a single 1 at (0, 1) shifts left
    w = np.zeros((1, 1, 1, 2))
    w[0, 0, 0, 1] = 1
    y, _ = conv2d_forward(x, w)
    np.testing.assert_array_equal(y[0, 0], x[0, 0, :, 1:])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_backward_finite_differences(case, bias):
    x, w, b, s, p = _make(case, np.float64, seed=3, bias=bias)
    grads = check_grad(conv2d_forward, conv2d_backward, x, w, b, s, p,
                       wrt=[0, 1, 2] if bias else [0, 1], rng=7)
    assert len(grads) == (3 if bias else 2)
    y, cache = conv2d_forward(x, w, b, s, p)
    _, _, db = conv2d_backward(np.ones_like(y), cache)
    assert (db is None) == (not bias)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_keeps_dtype(dtype):
    x, w, b, s, p = _make(CASES[1], dtype)
    y, cache = conv2d_forward(x, w, b, s, p)
    dx, dw, db = conv2d_backward(np.ones_like(y), cache)
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape


def test_backward_float32_matches_float64():
    x, w, b, s, p = _make(CASES[0], np.float64)
    y, cache = conv2d_forward(x, w, b, s, p)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    g64 = conv2d_backward(dy, cache)
    y32, cache32 = conv2d_forward(x.astype(np.float32), w.astype(np.float32),
                                  b.astype(np.float32), s, p)
    g32 = conv2d_backward(dy.astype(np.float32), cache32)
    for a, b_ in zip(g32, g64):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-4)


@st.composite
def conv_problem(draw):
    n, c, t = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    return (n, c, h, w, t, (kh, kw), (sh, sw), (ph, pw)), draw(st.integers(0, 2**31))


@settings(max_examples=40, deadline=None)
@given(problem=conv_problem(), dtype=st.sampled_from([np.float32, np.float64]))
def test_linear_in_x_and_w(problem, dtype):
    case, seed = problem
    x1, w1, _, s, p = _make(case, dtype, seed, bias=False)
    x2, w2, _, _, _ = _make(case, dtype, seed + 1, bias=False)
    a, b = dtype(0.7), dtype(-1.3)
    tol = 1e-4 if dtype == np.float32 else 1e-11

    def f(x, w):
        y, _ = conv2d_forward(x, w, None, s, p)
        assert y.dtype == dtype
        return y

    np.testing.assert_allclose(f(a * x1 + b * x2, w1), a * f(x1, w1) + b * f(x2, w1),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(f(x1, a * w1 + b * w2), a * f(x1, w1) + b * f(x1, w2),
                               rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(problem=conv_problem(), bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_forward_matches_naive_property(problem, bias, dtype):
    case, seed = problem
    x, w, b, s, p = _make(case, dtype, seed, bias=bias)
    y, _ = conv2d_forward(x, w, b, s, p)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype
    np.testing.assert_allclose(y, conv2d_naive(x, w, b, s, p), rtol=tol, atol=tol)


@settings(max_examples=30, deadline=None)
@given(problem=conv_problem())
def test_backward_is_adjoint_of_forward(problem):
    # <conv(x, w), dy> == <x, dx(dy)> == <w, dw(dy)>: the backward pass is the transpose
    # of the forward in x (for fixed w) and in w (for fixed x) -- without a bias.
    case, seed = problem
    x, w, _, s, p = _make(case, np.float64, seed, bias=False)
    y, cache = conv2d_forward(x, w, None, s, p)
    dy = np.random.default_rng(seed + 2).standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    assert db is None
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.sum(y * dy), np.sum(w * dw), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk_rows", [1, 5, 13, 40, 60])
@pytest.mark.parametrize("case", [(3, 2, 9, 7, 3, 3, 1, 1), (2, 3, 8, 9, 2, (2, 3), (2, 1), (0, 2)),
                                  (4, 1, 4, 4, 2, 3, 2, 1)])
def test_chunking_does_not_change_results(monkeypatch, chunk_rows, case):
    # conv2d_forward/backward work through pieces of about CHUNK_ROWS output cells (bands of
    # one image, or groups of images); force small pieces so that every kind of piece is exercised.
    x, w, b, s, p = _make(case, np.float64, seed=8)
    y_ref, cache = conv2d_forward(x, w, b, s, p)
    dy = np.random.default_rng(9).standard_normal(y_ref.shape)
    g_ref = conv2d_backward(dy, cache)
    monkeypatch.setattr(conv_mod, "CHUNK_ROWS", chunk_rows)
    y, cache = conv2d_forward(x, w, b, s, p)
    np.testing.assert_allclose(y, conv2d_naive(x, w, b, s, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for g, gr in zip(conv2d_backward(dy, cache), g_ref):
        np.testing.assert_allclose(g, gr, rtol=1e-11, atol=1e-11)
    check_grad(conv2d_forward, conv2d_backward, np.ascontiguousarray(x[:2, :, :6]), w, b, s, p,
               rng=2)
