"""im2col / col2im: fast versions against their loop twins, adjointness, dtypes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lccl_ref.functional import col2im, col2im_naive, im2col, im2col_naive

# (N, C, H, W, kernel, stride, padding): square and rectangular kernels, strides, padding
CASES = [
    (2, 3, 5, 5, 3, 1, 1),
    (1, 2, 6, 7, (2, 3), (2, 1), (0, 1)),
    (3, 1, 4, 4, 1, 1, 0),
    (2, 4, 7, 5, (3, 1), 2, (2, 0)),
    (1, 3, 3, 3, 3, 1, 0),  # a single output cell
    (2, 2, 1, 1, 3, 1, 1),  # the kernel sees only padding and one pixel
    (1, 2, 8, 6, (1, 4), (3, 2), (1, 2)),
]


def _out_size(h, w, k, s, p):
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (s, s) if isinstance(s, int) else s
    ph, pw = (p, p) if isinstance(p, int) else p
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1, kh, kw


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_matches_naive(case, dtype):
    n, c, h, w, k, s, p = case
    x = np.random.default_rng(0).standard_normal((n, c, h, w)).astype(dtype)
    fast, slow = im2col(x, k, s, p), im2col_naive(x, k, s, p)
    ho, wo, kh, kw = _out_size(h, w, k, s, p)
    assert fast.shape == (n, ho, wo, kh, kw, c)
    assert fast.dtype == dtype
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_col2im_matches_naive(case, dtype):
    n, c, h, w, k, s, p = case
    ho, wo, kh, kw = _out_size(h, w, k, s, p)
    cols = np.random.default_rng(1).standard_normal((n, ho, wo, kh, kw, c)).astype(dtype)
    fast, slow = col2im(cols, (n, c, h, w), k, s, p), col2im_naive(cols, (n, c, h, w), k, s, p)
    assert fast.shape == (n, c, h, w)
    assert fast.dtype == dtype
    np.testing.assert_allclose(fast, slow, rtol=1e-6 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-12)


def test_im2col_by_hand():
    # 1 image, 1 channel, 3x3 input, 2x2 kernel, stride 1, no padding: four patches.
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    cols = im2col(x, 2)
    assert cols.shape == (1, 2, 2, 2, 2, 1)
    np.testing.assert_array_equal(cols[0, 0, 0, :, :, 0], [[0, 1], [3, 4]])
    np.testing.assert_array_equal(cols[0, 1, 1, :, :, 0], [[4, 5], [7, 8]])
    # with padding 1 the top-left patch sees three zeros and x[0, 0, 0, 0]
    cols = im2col(x, 2, padding=1)
    np.testing.assert_array_equal(cols[0, 0, 0, :, :, 0], [[0, 0], [0, 0]])
    np.testing.assert_array_equal(cols[0, 0, 1, :, :, 0], [[0, 0], [0, 1]])


def test_col2im_counts_overlaps():
    # col2im of all-ones columns counts how many receptive fields cover each pixel.
    x_shape = (1, 1, 3, 3)
    cols = np.ones((1, 3, 3, 3, 3, 1))
    counts = col2im(cols, x_shape, 3, 1, 1)
    np.testing.assert_array_equal(counts[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


@st.composite
def geometry(draw):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 8))
    w = draw(st.integers(max(1, kw - 2 * pw), 8))
    return n, c, h, w, (kh, kw), (sh, sw), (ph, pw)


@settings(max_examples=40, deadline=None)
@given(geom=geometry(), seed=st.integers(0, 2**31), dtype=st.sampled_from([np.float32, np.float64]))
def test_im2col_col2im_adjoint(geom, seed, dtype):
    # <im2col(x), c> == <x, col2im(c)> for every x and c: col2im is the transpose of im2col.
    n, c, h, w, k, s, p = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    cols = im2col(x.astype(dtype), k, s, p)
    cc = rng.standard_normal(cols.shape)
    back = col2im(cc.astype(dtype), x.shape, k, s, p)
    assert cols.dtype == dtype and back.dtype == dtype
    lhs = np.sum(cols.astype(np.float64) * cc.astype(dtype))
    rhs = np.sum(x.astype(dtype) * back.astype(np.float64))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert abs(lhs - rhs) <= tol * (1 + np.sqrt(cols.size))


@settings(max_examples=30, deadline=None)
@given(geom=geometry(), data=st.data())
def test_im2col_matches_naive_property(geom, data):
    n, c, h, w, k, s, p = geom
    x = data.draw(hnp.arrays(np.float64, (n, c, h, w),
                             elements=st.floats(-10, 10, allow_nan=False, width=64)))
    np.testing.assert_array_equal(im2col(x, k, s, p), im2col_naive(x, k, s, p))
    cols = im2col(x, k, s, p)
    np.testing.assert_allclose(col2im(cols, x.shape, k, s, p),
                               col2im_naive(cols, x.shape, k, s, p), rtol=1e-12, atol=1e-12)
