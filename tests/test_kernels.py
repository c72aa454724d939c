"""Tests of lccl_ref.kernels.gated_conv2d: every variant equals dense conv times the mask."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref.functional import conv2d_forward
from lccl_ref.kernels import choose_method, gated_conv2d
from lccl_ref.kernels import gated as gated_mod
from lccl_ref.kernels import gather as gather_mod

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


def _dense_masked(x, w, b, mask, stride, padding):
    """Independent reference: the dense conv (+ bias), zeroed where the mask is false."""
    y, _ = conv2d_forward(x, w, b, stride, padding)
    m = mask[:, None] if mask.ndim == 3 else mask
    return y * m


def _expected_macs(mask, w, method="direct"):
    """The cells the method computes: the open ones, or all of them where ``"auto"``
    runs a per-channel mask densely (``kernels.choose_method``)."""
    t, c, kh, kw = w.shape
    per_cell = c * kh * kw
    if choose_method(mask, method) == "dense":
        return mask.size * per_cell * (t if mask.ndim == 3 else 1)
    return int(mask.sum()) * per_cell * (t if mask.ndim == 3 else 1)


def _check(x, w, b, mask, stride, padding, dtype):
    ref = _dense_masked(x, w, b, mask, stride, padding)
    results = {}
    methods = ("direct", "tiled", "auto") + (() if mask.ndim == 4 else ("gather",))
    for method in methods:
        y, macs = gated_conv2d(x, w, mask, b, stride=stride, padding=padding, method=method)
        assert y.dtype == dtype and y.shape == ref.shape
        np.testing.assert_allclose(y, ref, **TOL[dtype])
        off = ~np.broadcast_to(mask[:, None] if mask.ndim == 3 else mask, y.shape)
        assert np.all(y[off] == 0)  # exactly zero, bias included
        assert isinstance(macs, int) and macs == _expected_macs(mask, w, method)
        results[method] = y
    for method in methods[1:]:
        np.testing.assert_allclose(results[method], results["direct"], **TOL[dtype])


@st.composite
def _cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n, c, t = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 10))
    wd = draw(st.integers(max(1, kw - 2 * padding[1]), 10))
    per_channel = draw(st.booleans())
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    use_bias = draw(st.booleans())
    non_contig = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return dtype, n, c, t, kh, kw, stride, padding, h, wd, per_channel, density, use_bias, \
        non_contig, seed


def _arrays(case, non_contig_x):
    """Random ``(rng, x, w, b, mask)`` for a case drawn by :func:`_cases`."""
    dtype, n, c, t, kh, kw, stride, padding, h, wd, per_channel, density, use_bias, \
        _, seed = case
    rng = np.random.default_rng(seed)
    if non_contig_x:  # channel-last storage viewed as NCHW, then every other column
        x = rng.standard_normal((n, h, 2 * wd, c)).astype(dtype).transpose(0, 3, 1, 2)[..., ::2]
        assert wd == 1 or not x.flags.c_contiguous
    else:
        x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((t, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype) if use_bias else None
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (wd + 2 * padding[1] - kw) // stride[1] + 1
    shape = (n, t, ho, wo) if per_channel else (n, ho, wo)
    return rng, x, w, b, rng.random(shape) < density


@settings(max_examples=40, deadline=None)
@given(_cases())
def test_gated_equals_dense_times_mask(case):
    dtype, stride, padding, non_contig = case[0], case[6], case[7], case[13]
    _, x, w, b, mask = _arrays(case, non_contig_x=non_contig)
    _check(x, w, b, mask, stride, padding, dtype)


@pytest.mark.parametrize(
    "per_channel, method",
    [(False, m) for m in ("direct", "gather", "tiled", "auto")]
    + [(True, m) for m in ("direct", "tiled", "auto")],
)
def test_all_ones_is_dense_all_zeros_is_zero(per_channel, method):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 11, 9)).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    dense, _ = conv2d_forward(x, w, b, 1, 1)
    shape = dense.shape if per_channel else (2, 11, 9)
    y, macs = gated_conv2d(x, w, np.ones(shape, bool), b, padding=1, method=method)
    np.testing.assert_allclose(y, dense, rtol=1e-5, atol=1e-5)
    assert macs == dense.size * 6 * 9  # the dense count N*Ho*Wo*T*C*k*k
    y, macs = gated_conv2d(x, w, np.zeros(shape, bool), b, padding=1, method=method)
    assert macs == 0 and not y.any()


def test_larger_than_one_tile_and_one_chunk(monkeypatch):
    """Many positions: crosses tiles, (forced small) gather chunks and image groups."""
    monkeypatch.setattr(gather_mod, "CHUNK_ROWS", 7)  # chunks straddle images
    monkeypatch.setattr(gated_mod, "GROUP_BYTES", 1)  # the tiled path pads one image at a time
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 14, 13))
    w = rng.standard_normal((9, 5, 3, 3))
    b = rng.standard_normal(9)
    for shape in [(3, 9, 14, 13), (3, 14, 13)]:
        for density in (0.2, 0.7):
            mask = rng.random(shape) < density
            _check(x, w, b, mask, 1, 1, np.float64)


def test_clustered_mask_float32():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 32, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) * 0.1).astype(np.float32)
    yy, xx = np.mgrid[:16, :16]
    mask = ((yy - 8) ** 2 + (xx - 5) ** 2 < 30)[None]  # one blob
    _check(x, w, None, mask, 1, 1, np.float32)
    _check(x, w, None, np.broadcast_to(mask[:, None], (1, 32, 16, 16)), 1, 1, np.float32)


def test_explicit_methods_agree_and_gather_refuses_per_channel():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    shared = rng.random((1, 4, 4)) < 0.5
    per_ch = rng.random((1, 4, 4, 4)) < 0.5
    for mask, methods in [(shared, ("gather", "tiled", "auto", "dense")),
                          (per_ch, ("tiled", "auto", "dense"))]:
        y_ref, m_ref = gated_conv2d(x, w, mask, method="direct")
        for method in methods:
            y, m = gated_conv2d(x, w, mask, method=method)
            np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
            assert m == (m_ref if choose_method(mask, method) != "dense" else
                         mask.size * 27 * (4 if mask.ndim == 3 else 1))
    with pytest.raises(ValueError, match="shared mask"):
        gated_conv2d(x, w, per_ch, method="gather")
    with pytest.raises(ValueError, match="method"):
        gated_conv2d(x, w, shared, method="fast")


def test_auto_takes_gather_for_a_shared_mask_and_tiled_per_channel_below_the_threshold(
        monkeypatch):
    calls = []

    def fake(name):
        def kernel(*args, **kwargs):
            calls.append(name)
            return 0
        return kernel

    monkeypatch.setattr(gated_mod, "gather_shared", fake("gather"))
    monkeypatch.setattr(gated_mod, "tiled", fake("tiled"))
    x = np.zeros((1, 4, 6, 6), np.float32)
    w = np.zeros((2, 4, 3, 3), np.float32)
    gated_conv2d(x, w, np.ones((1, 4, 4), bool))  # shared: the GEMM of gather, untimed
    few = np.zeros((1, 2, 4, 4), bool)
    few[0, 1, 2, 3] = True  # density 1/32 < TILED_BELOW
    gated_conv2d(x, w, few)  # per-channel, few cells open: tiled
    gated_conv2d(x, w, np.ones((1, 2, 4, 4), bool))  # many open: the dense conv, masked
    assert calls == ["gather", "tiled"]
    assert choose_method(few) == "tiled" and choose_method(~few) == "dense"
    assert 0.0 < gated_mod.TILED_BELOW < 1.0


@pytest.mark.parametrize(
    "mask, exc, words",
    [
        (np.ones((1, 4, 4), dtype=np.int64), TypeError, "mask must have dtype bool, got int64"),
        (np.ones((1, 4, 4), dtype=np.float32), TypeError, "mask must have dtype bool"),
        ([[[True] * 4] * 4], TypeError, "mask must be a numpy.ndarray"),
        (np.ones((1, 5, 5), dtype=bool), ValueError, r"\(1, 4, 4\).*\(1, 4, 4, 4\)"),
        (np.ones((2, 4, 4), dtype=bool), ValueError, r"got \(2, 4, 4\)"),
        (np.ones((1, 3, 4, 4), dtype=bool), ValueError, r"got \(1, 3, 4, 4\)"),
        (np.ones((4, 4), dtype=bool), ValueError, "mask must have shape"),
    ],
)
def test_bad_masks(mask, exc, words):
    x = np.zeros((1, 3, 6, 6), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(exc, match=words):
        gated_conv2d(x, w, mask)


def test_bad_conv_arguments_are_named():
    x = np.zeros((1, 3, 6, 6), np.float32)
    mask = np.ones((1, 4, 4), bool)
    with pytest.raises(TypeError, match="dtype"):
        gated_conv2d(x, np.zeros((4, 3, 3, 3)), mask)  # float64 w with float32 x
    with pytest.raises(ValueError, match="channel mismatch"):
        gated_conv2d(x, np.zeros((4, 2, 3, 3), np.float32), mask)
    with pytest.raises(TypeError, match="x must have dtype"):
        gated_conv2d(x.astype(np.int32), np.zeros((4, 3, 3, 3), np.float32), mask)


@settings(max_examples=30, deadline=None)
@given(_cases())
def test_scale_is_fused_product(case):
    """``scale=s`` gives ``conv * mask * s`` (s per position or per cell), same MACs as without."""
    dtype, stride, padding, per_channel, non_contig = case[0], case[6], case[7], case[10], case[13]
    rng, x, w, b, mask = _arrays(case, non_contig_x=False)
    s = rng.uniform(-2.0, 2.0, mask.shape).astype(dtype)
    if non_contig:  # a strided view, as LCCLConv2d passes v_cheap[:, 0]
        s = np.stack([s, -s], axis=1)[:, 0]
    dense, _ = conv2d_forward(x, w, b, stride, padding)
    ref = dense * (mask * s)[:, None] if mask.ndim == 3 else dense * mask * s
    methods = ("direct", "tiled", "auto") + (() if per_channel else ("gather",))
    for method in methods:
        y, macs = gated_conv2d(x, w, mask, b, stride, padding, method, scale=s)
        assert y.dtype == dtype and y.shape == ref.shape
        np.testing.assert_allclose(y, ref, **TOL[dtype])
        off = ~np.broadcast_to(mask[:, None] if mask.ndim == 3 else mask, y.shape)
        assert np.all(y[off] == 0)
        assert macs == _expected_macs(mask, w, method)  # products by s are not conv MACs


def test_scale_through_gather_pieces_and_scatter(monkeypatch):
    """Scale on forced small gather pieces (bands, image groups) and on the scatter path."""
    monkeypatch.setattr(gather_mod, "CHUNK_ROWS", 7)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 12, 11))
    w = rng.standard_normal((5, 4, 3, 3))
    dense, _ = conv2d_forward(x, w, None, 1, 1)
    for density in (0.05, 0.5, 0.95):  # 0.05: below SCATTER_BELOW, zero-and-scatter
        mask = rng.random((3, 12, 11)) < density
        s = rng.standard_normal((3, 12, 11))
        y, _ = gated_conv2d(x, w, mask, method="gather", padding=1, scale=s)
        np.testing.assert_allclose(y, dense * (mask * s)[:, None], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize(
    "scale, exc, words",
    [
        ("list", TypeError, "scale must be a numpy.ndarray or None, got list"),
        ("float64", TypeError, r"scale must have the dtype of x \(float32\), got float64"),
        ("int", TypeError, "scale must have the dtype of x"),
        ("other_kind", ValueError, "scale must have the shape of the"),
        ("bad_shape", ValueError, r"got \(1, 4, 5\)"),
    ],
)
def test_bad_scale(per_channel, scale, exc, words):
    x = np.zeros((1, 3, 6, 6), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    shape, other = ((1, 4, 4, 4), (1, 4, 4)) if per_channel else ((1, 4, 4), (1, 4, 4, 4))
    mask = np.ones(shape, bool)
    bad = {
        "list": np.ones(shape).tolist(),
        "float64": np.ones(shape),
        "int": np.ones(shape, np.int32),
        "other_kind": np.ones(other, np.float32),
        "bad_shape": np.ones((1, 4, 5), np.float32),
    }[scale]
    for method in ("direct", "tiled", "auto"):
        with pytest.raises(exc, match=words):
            gated_conv2d(x, w, mask, method=method, scale=bad)
