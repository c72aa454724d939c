"""Adversarial tests of the inference kernels and the eval paths built on them.

Shapes, layouts and call sequences a user can hit that the per-kernel tests do
not: non-square and large kernels (ResNet-18's 7x7 / stride 2 / padding 3
stem), strides larger than the kernel, paddings larger than ``k // 2``,
images smaller than the kernel, 1x1 images, empty batches, ``T`` on both sides
of the 16- and 24-wide channel blocks, ``C = 1`` and ``C = 300``; Fortran,
strided, reversed, read-only and channel-last-backed inputs (never written);
extreme masks and scales; timed per-shape choices met with other shapes in
sequence; every switch of the LCCL eval path; whole networks sparse vs dense;
eval-mode backward against finite differences.

Every result is compared with an independent reference: ``conv2d_naive`` in
float64 (the defining sum), ``conv2d_forward``, or the ``"direct"`` gated kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_grad_at
from hypothesis import given, settings
from hypothesis import strategies as st
from lcclhelp import randomise_bn

from lccl_ref import functional as F
from lccl_ref.fast import dense as dense_mod
from lccl_ref.fast.fused import lccl_shared_eval
from lccl_ref.kernels import cheap_single, conv2d_inference, gated_conv2d
from lccl_ref.kernels import gated as gated_mod
from lccl_ref.models import build_model, lccl_layers, set_sparse
from lccl_ref.nn import CHEAP_KINDS, BatchNorm2d, Conv2d, LCCLConv2d
from lccl_ref.nn import lccl as lccl_mod

GATED = ("direct", "gather", "tiled", "vector", "auto")
SHARED_ONLY = ("gather", "vector")
DENSE = ("im2col", "vector", "auto")
TS = (1, 7, 15, 16, 17, 23, 24, 25, 48, 49, 65)

# (N, C, H, W, T, (kh, kw), stride, padding): geometries the per-kernel tests do not use
GEOMS = [
    (2, 3, 5, 7, 4, (1, 3), 1, (0, 1)),  # non-square kernels
    (2, 3, 7, 5, 5, (3, 1), 1, (1, 0)),
    (1, 2, 9, 8, 7, (5, 5), 1, 2),
    (1, 3, 17, 16, 16, (7, 7), 2, 3),  # ResNet-18's stem (at a small image)
    (2, 2, 8, 9, 17, (2, 2), 3, 0),  # stride larger than the kernel
    (2, 2, 7, 7, 3, (1, 1), 3, 0),
    (1, 2, 9, 10, 24, (3, 3), 4, 1),
    (2, 2, 5, 4, 23, (3, 3), 1, 3),  # padding larger than k // 2
    (1, 2, 6, 6, 25, (3, 3), 2, (4, 2)),
    (2, 2, 2, 1, 15, (5, 3), 1, 2),  # image smaller than the kernel, padded
    (2, 3, 1, 1, 16, (3, 3), 1, 1),  # 1x1 image
    (3, 2, 1, 1, 48, (1, 1), 1, 0),
    (2, 1, 6, 5, 49, (3, 3), 1, 1),  # C = 1
    (1, 300, 4, 3, 65, (3, 3), 1, 1),  # C = 300
    (1, 4, 11, 7, 7, (3, 3), (2, 1), (1, 0)),  # anisotropic stride and padding
    (1, 3, 7, 11, 24, (3, 5), (1, 3), (0, 2)),
    (5, 2, 8, 8, 16, (3, 3), 1, 1),  # several images per cheap block
    (1, 2, 2, 300, 16, (3, 3), 1, 1),  # rows wider than a band
]


def _ids(geoms):
    return [f"n{g[0]}c{g[1]}h{g[2]}w{g[3]}t{g[4]}k{g[5][0]}x{g[5][1]}s{g[6]}p{g[7]}"
            for g in geoms]


def naive(x, w, b=None, stride=1, padding=0):
    """``conv2d_naive`` in float64: the defining sum, independent of every kernel."""
    def f64(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    return F.conv2d_naive(f64(x), f64(w), f64(b), stride, padding)


def tol(dtype, scale=1.0):
    """(rtol, atol) for a result of magnitude ``scale`` computed in ``dtype``."""
    return (1e-10, 1e-10 * scale) if dtype == np.float64 else (2e-4, 2e-4 * scale)


def close(actual, expected, dtype, what=""):
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    rtol, atol = tol(np.dtype(dtype), scale)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def arrays(geom, dtype, seed=0):
    n, c, h, wd, t, (kh, kw), _, _ = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((t, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype)
    return rng, x, w, b


def masks(rng, n, ho, wo):
    """Random, all false, all true, a single true cell (the last one: the tail of a band)."""
    single = np.zeros((n, ho, wo), dtype=bool)
    single[-1, -1, -1] = True
    return {"random": rng.random((n, ho, wo)) < 0.4, "none": np.zeros((n, ho, wo), bool),
            "all": np.ones((n, ho, wo), bool), "single": single}


def layouts(x):
    """The same values as ``x`` in other memory layouts; none may be written to."""
    n, c, h, wd = x.shape
    out = {"C": x.copy(), "fortran": np.asfortranarray(x)}
    out["reversed"] = np.ascontiguousarray(x[:, :, ::-1, ::-1])[:, :, ::-1, ::-1]
    big = np.full((2 * n, c + 1, 2 * h, 3 * wd), np.nan, dtype=x.dtype)
    big[::2, 1:, ::2, ::3] = x
    out["strided"] = big[::2, 1:, ::2, ::3]
    out["nhwc-backed"] = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    ro = x.copy()
    ro.setflags(write=False)
    out["read-only"] = ro
    for v in out.values():
        assert np.array_equal(v, x)
    return out


# ---------------------------------------------------------------- kernels on odd geometry


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=_ids(GEOMS))
def test_gated_every_method_every_mask_on_odd_geometry(geom, dtype):
    rng, x, w, b = arrays(geom, dtype)
    n, c, _, _, t, (kh, kw), stride, padding = geom
    ref = naive(x, w, b, stride, padding)  # (N, T, Ho, Wo)
    _, _, ho, wo = ref.shape
    scale = rng.standard_normal((n, ho, wo)).astype(dtype)
    scale[rng.random((n, ho, wo)) < 0.3] = 0  # zeros and negatives in the fused product
    for mname, mask in masks(rng, n, ho, wo).items():
        for method in GATED:
            for s in (None, scale):
                y, macs = gated_conv2d(x, w, mask, b, stride, padding, method, scale=s)
                exp = ref if s is None else ref * s[:, None]
                close(y, np.where(mask[:, None], exp, 0), dtype, f"{method} {mname}")
                assert np.all(y[~np.broadcast_to(mask[:, None], y.shape)] == 0)
                assert macs == int(mask.sum()) * t * c * kh * kw, (method, mname)
    pc = rng.random((n, t, ho, wo)) < 0.5  # per-channel masks on the same geometry
    for method in ("direct", "tiled", "auto"):
        y, macs = gated_conv2d(x, w, pc, b, stride, padding, method)
        close(y, np.where(pc, ref, 0), dtype, method)
        assert macs == int(pc.sum()) * c * kh * kw


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=_ids(GEOMS))
def test_dense_inference_every_method_on_odd_geometry(geom, dtype):
    _, x, w, b = arrays(geom, dtype, seed=1)
    *_, stride, padding = geom
    ref = naive(x, w, b, stride, padding)
    for method in DENSE:
        close(conv2d_inference(x, w, b, stride, padding, method), ref, dtype, method)
        close(conv2d_inference(x, w, None, stride, padding, method),
              naive(x, w, None, stride, padding), dtype, method + " no bias")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=_ids(GEOMS))
def test_cheap_single_on_odd_geometry(geom, dtype):
    rng, x, _, _ = arrays(geom, dtype, seed=2)
    *_, (kh, kw), stride, padding = geom
    wc = rng.standard_normal((1, x.shape[1], kh, kw)).astype(dtype)
    for bias in (0.0, 0.5, -1e4, 1e4):  # mixed, mostly on, all off, all on
        bc = np.array([bias], dtype)
        ref = np.maximum(naive(x, wc, bc, stride, padding)[:, 0], 0)
        v, mask, active = cheap_single(x, wc, bc, stride, padding)
        close(v, ref, dtype, f"bias {bias}")
        assert v.dtype == dtype and mask.dtype == bool
        np.testing.assert_array_equal(mask, v > 0)
        assert active == int(mask.sum())
        if bias == -1e4:
            assert active == 0 and not v.any()
        if bias == 1e4:
            assert active == mask.size


def _cheap_windows(geom):
    """(w_cheap kernel, cheap_padding) pairs inside the expensive window, same output size."""
    *_, (kh, kw), _, padding = geom
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    out = [((kh, kw), (ph, pw))]
    if kh % 2 and kw % 2 and ph >= kh // 2 and pw >= kw // 2:
        out.append(((1, 1), (ph - kh // 2, pw - kw // 2)))  # the centred 1x1 tap
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=_ids(GEOMS))
def test_fused_on_odd_geometry(geom, dtype):
    rng, x, w, _ = arrays(geom, dtype, seed=3)
    n, c, _, _, t, (kh, kw), stride, padding = geom
    dense = naive(x, w, None, stride, padding)
    for (khc, kwc), cpad in _cheap_windows(geom):
        wc = rng.standard_normal((1, c, khc, kwc)).astype(dtype)
        for bias in (0.2, -1e4, 1e4):
            bc = np.array([bias], dtype)
            v_ref = np.maximum(naive(x, wc, bc, stride, cpad)[:, 0], 0)
            y, v, mask, active, macs = lccl_shared_eval(x, w, wc, bc, stride, padding, cpad)
            what = f"cheap {khc}x{kwc} bias {bias}"
            close(v, v_ref, dtype, what)
            np.testing.assert_array_equal(mask, v > 0)
            assert active == int(mask.sum()) and macs == active * t * c * kh * kw
            # against the dense conv times the kernel's own V' (the mask is V' > 0 exactly)
            close(y, dense * v[:, None], dtype, what)
            if bias < 0:
                assert active == 0 and not y.any()
            if bias > 1:
                assert active == n * v.shape[1] * v.shape[2]


@settings(max_examples=30, deadline=None)
@given(t=st.sampled_from(TS), c=st.integers(1, 6), n=st.integers(1, 3),
       h=st.integers(1, 9), wd=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 4), sw=st.integers(1, 4), ph=st.integers(0, 3), pw=st.integers(0, 3),
       dtype=st.sampled_from([np.float32, np.float64]), density=st.floats(0, 1),
       seed=st.integers(0, 2**31 - 1))
def test_property_vector_and_gather_equal_direct_for_any_t(t, c, n, h, wd, kh, kw, sh, sw,
                                                            ph, pw, dtype, density, seed):
    if h + 2 * ph < kh or wd + 2 * pw < kw:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((t, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    mask = rng.random((n, ho, wo)) < density
    scale = rng.standard_normal((n, ho, wo)).astype(dtype)
    y_ref, m_ref = gated_conv2d(x, w, mask, b, (sh, sw), (ph, pw), "direct", scale=scale)
    for method in SHARED_ONLY:
        y, m = gated_conv2d(x, w, mask, b, (sh, sw), (ph, pw), method, scale=scale)
        close(y, y_ref, dtype, method)
        assert m == m_ref
    wc = rng.standard_normal((1, c, kh, kw)).astype(dtype)
    bc = np.array([rng.normal()], dtype)
    y, v, mk, _, _ = lccl_shared_eval(x, w, wc, bc, (sh, sw), (ph, pw), (ph, pw))
    v_ref = np.maximum(naive(x, wc, bc, (sh, sw), (ph, pw))[:, 0], 0)
    close(v, v_ref, dtype, "fused V'")
    close(y, naive(x, w, None, (sh, sw), (ph, pw)) * v[:, None], dtype, "fused y")


# ---------------------------------------------------------------- layouts, read-only, N = 0


@pytest.mark.parametrize("dtype", [np.float64])  # each layout is a Numba compile per dtype
def test_every_layout_gives_the_same_result_and_is_never_written(dtype):
    geom = (2, 3, 7, 6, 17, (3, 3), 2, 1)
    rng, x0, w, b = arrays(geom, dtype, seed=4)
    ref = naive(x0, w, b, 2, 1)
    wc = rng.standard_normal((1, 3, 3, 3)).astype(dtype)
    bc = np.array([0.1], dtype)
    v_ref = np.maximum(naive(x0, wc, bc, 2, 1)[:, 0], 0)
    mask = rng.random(v_ref.shape) < 0.5
    scale = rng.standard_normal(v_ref.shape).astype(dtype)
    mask_f, scale_f = np.asfortranarray(mask), scale.T.copy().T  # non-C-contiguous too
    for name, x in layouts(x0).items():
        before = x.copy()
        for method in GATED:
            y, _ = gated_conv2d(x, w, mask_f, b, 2, 1, method, scale=scale_f)
            close(y, np.where(mask[:, None], ref * scale[:, None], 0), dtype, f"{name} {method}")
        for method in DENSE:
            close(conv2d_inference(x, w, b, 2, 1, method), ref, dtype, f"{name} {method}")
        v, _, _ = cheap_single(x, wc, bc, 2, 1)
        close(v, v_ref, dtype, name)
        y, v, *_ = lccl_shared_eval(x, w, wc, bc, 2, 1, 1)
        close(v, v_ref, dtype, name)
        close(y, (ref - b[:, None, None]) * v[:, None], dtype, name)
        np.testing.assert_array_equal(x, before, err_msg=name)
        np.testing.assert_array_equal(mask_f, mask)
        np.testing.assert_array_equal(scale_f, scale)
    # read-only weights, mask and scale (e.g. memory-mapped checkpoints)
    ro = [a.copy() for a in (w, b, mask, scale, wc, bc)]
    for a in ro:
        a.setflags(write=False)
    w_r, b_r, m_r, s_r, wc_r, bc_r = ro
    for method in GATED:
        y, _ = gated_conv2d(x0, w_r, m_r, b_r, 2, 1, method, scale=s_r)
        close(y, np.where(mask[:, None], ref * scale[:, None], 0), dtype, method)
    close(conv2d_inference(x0, w_r, b_r, 2, 1, "vector"), ref, dtype, "ro dense")
    close(cheap_single(x0, wc_r, bc_r, 2, 1)[0], v_ref, dtype, "ro cheap")
    close(lccl_shared_eval(x0, w_r, wc_r, bc_r, 2, 1, 1)[1], v_ref, dtype, "ro fused")


def test_empty_batch_through_every_kernel():
    x = np.zeros((0, 3, 5, 4))
    w = np.ones((17, 3, 3, 3))
    b = np.ones(17)
    m = np.zeros((0, 5, 4), bool)
    for method in GATED:
        for s in (None, np.zeros((0, 5, 4))):
            y, macs = gated_conv2d(x, w, m, b, 1, 1, method, scale=s)
            assert y.shape == (0, 17, 5, 4) and macs == 0
    for method in DENSE:
        assert conv2d_inference(x, w, b, 1, 1, method).shape == (0, 17, 5, 4)
    v, mask, active = cheap_single(x, w[:1], b[:1], 1, 1)
    assert v.shape == mask.shape == (0, 5, 4) and active == 0
    y, v, mask, active, macs = lccl_shared_eval(x, w, w[:1], b[:1], 1, 1, 1)
    assert y.shape == (0, 17, 5, 4) and v.shape == (0, 5, 4) and active == macs == 0


def test_empty_image_inside_padding():
    # H = 0 (or W = 0) with padding >= kernel: every output reads only zero padding
    rng = np.random.default_rng(20)
    for shape in [(2, 3, 0, 4), (1, 3, 3, 0)]:
        x = np.zeros(shape)
        w = rng.standard_normal((17, 3, 3, 3))
        b = rng.standard_normal(17)
        ref = naive(x, w, b, 1, 2)
        mask = np.ones((shape[0],) + ref.shape[2:], bool)
        for method in GATED:
            close(gated_conv2d(x, w, mask, b, 1, 2, method)[0], ref, np.float64, method)
        for method in DENSE:
            close(conv2d_inference(x, w, b, 1, 2, method), ref, np.float64, method)
        v, _, active = cheap_single(x, w[:1], np.array([0.5]), 1, 2)
        assert active == v.size and np.all(v == 0.5)
        y, v, _, active, _ = lccl_shared_eval(x, w, w[:1], np.array([0.5]), 1, 2, 2)
        assert active == v.size and not y.any()


# ---------------------------------------------------------------- timed choices per shape


def lccl_reference(layer, x, u=None):
    """Eval ``O = conv_W(x) * ReLU(BN(conv_W'(u)))`` from ``conv2d_naive`` and the BN formula."""
    u = x if u is None else u
    v = naive(x, layer.conv.weight.data, None, layer.conv.stride, layer.conv.padding)
    pre = naive(u, layer.cheap_conv.weight.data, None, layer.cheap_conv.stride,
                layer.cheap_conv.padding)
    bn = layer.cheap_bn

    def f64(a):  # (C,) -> (C, 1, 1) in float64
        return np.asarray(a, np.float64)[:, None, None]

    z = (pre - f64(bn.running_mean)) / np.sqrt(f64(bn.running_var) + bn.eps) \
        * f64(bn.weight.data) + f64(bn.bias.data)
    return v * np.maximum(z, 0)


SEQUENCE = [(1, 8, 8), (3, 8, 8), (1, 8, 8), (2, 5, 7), (3, 8, 8), (2, 9, 6), (1, 5, 7)]


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_one_layer_called_with_many_shapes_in_sequence(kind, monkeypatch):
    # the eval path's timed choices (fused or two calls, vector or gather, and the dense
    # conv's im2col or vector) are cached per shape: interleaving shapes must never apply
    # one shape's cached kernel to another (a wrong Ho / Wo or batch would show here)
    rng = np.random.default_rng(5)
    layer = LCCLConv2d(3, 17, 3, 2, 1, cheap=kind, rng=1, dtype=np.float32).eval()
    randomise_bn(layer, rng, spread=0.3)
    conv = Conv2d(3, 17, 3, 2, 1, rng=2, dtype=np.float32).eval()
    tables = ({}, {}, {})  # fresh tables: what this sequence decides, nothing earlier
    for mod, name, table in zip((lccl_mod, gated_mod, dense_mod),
                                ("FUSED_CHOICES", "SHARED_CHOICES", "CHOICES"), tables):
        monkeypatch.setattr(mod, name, table)
    seen = set()
    for n, h, wd in SEQUENCE + SEQUENCE[::-1]:
        x = rng.standard_normal((n, 3, h, wd)).astype(np.float32)
        out = layer.forward(x)
        close(out, lccl_reference(layer, x), np.float32, f"{kind} {(n, h, wd)}")
        assert layer.last_mask.shape[0] == n and out.shape[0] == n
        close(conv.forward(x), naive(x, conv.weight.data, None, 2, 1), np.float32, "conv")
        seen.add(x.shape)
    # one decision per shape met, keyed by the full input shape (batch and image size)
    new_keys = [set(t) for t in tables]
    for keys in new_keys:
        assert {k[0] for k in keys} <= seen
    assert {k[0] for k in new_keys[2]} == seen  # the plain conv met every shape
    if kind != "1x1xCxT":
        assert {k[0] for k in new_keys[0]} == seen  # the fused-or-two-calls decision too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forcing_either_cached_choice_gives_the_same_output(dtype, monkeypatch):
    # whatever the timing decides on a given machine, both candidates must be right
    # for every shape: pin each decision in turn through the tables
    rng = np.random.default_rng(6)
    layer = LCCLConv2d(4, 25, 3, 1, 1, cheap="kxkxCx1", rng=3, dtype=dtype).eval()
    randomise_bn(layer, rng, spread=0.3)
    conv = Conv2d(4, 25, 3, 1, 1, rng=4, dtype=dtype).eval()
    for n, h, wd in [(1, 6, 6), (3, 7, 5)]:
        x = rng.standard_normal((n, 4, h, wd)).astype(dtype)
        ref = lccl_reference(layer, x)
        outs = []
        for fused in ("fused", "two calls"):
            for gm in ("vector", "gather"):
                ft, gt = {}, {}
                monkeypatch.setattr(lccl_mod, "FUSED_CHOICES", ft)
                monkeypatch.setattr(gated_mod, "SHARED_CHOICES", gt)
                layer.forward(x)  # fills the empty tables for this shape
                assert len(ft) == 1
                for key in ft:
                    ft[key] = dict(method=fused, ms={})
                for key in gt:
                    gt[key] = dict(method=gm, ms={})
                outs.append(layer.forward(x))
                close(outs[-1], ref, dtype, f"{fused} {gm}")
        for dm in ("im2col", "vector"):
            ct = {}
            monkeypatch.setattr(dense_mod, "CHOICES", ct)
            conv.forward(x)
            for key in ct:
                ct[key] = dict(method=dm, ms={})
            close(conv.forward(x), naive(x, conv.weight.data, None, 1, 1), dtype, dm)


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_weights_changed_in_place_and_astype_between_eval_calls(kind):
    # evaluating between training steps: nothing derived from the weights (folded cheap
    # BN, weight blocks, timed choices) may outlive an in-place update or a dtype change
    rng = np.random.default_rng(19)
    layer = LCCLConv2d(3, 17, 3, 1, 1, cheap=kind, rng=6, dtype=np.float32).eval()
    randomise_bn(layer, rng, spread=0.3)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    close(layer.forward(x), lccl_reference(layer, x), np.float32, "first")
    layer.conv.weight.data *= np.float32(-1.5)  # in place, as an optimiser step does
    layer.cheap_conv.weight.data += np.float32(0.1)
    layer.cheap_bn.running_mean += np.float32(0.2)
    layer.cheap_bn.weight.data *= np.float32(0.5)
    close(layer.forward(x), lccl_reference(layer, x), np.float32, "after the update")
    layer.train()
    y = layer.forward(x)  # a training step still works after eval forwards
    layer.backward(np.ones_like(y))
    layer.eval().astype(np.float64)
    x64 = x.astype(np.float64)
    out = layer.forward(x64)
    assert out.dtype == np.float64
    close(out, lccl_reference(layer, x64), np.float64, "float64 after astype")
    with pytest.raises(TypeError, match="dtype"):
        layer.forward(x)


# ---------------------------------------------------------------- LCCL switches


LAYER_GEOMS = [  # (C, T, kernel, stride, padding)
    (3, 16, 3, 1, 1),
    (2, 17, 3, 2, 1),
    (3, 24, 5, 1, 2),
    (2, 7, 3, 1, 2),  # padding > k // 2: the 1x1 cheap tap gets padding 1
    (2, 25, (1, 3), 1, (0, 1)),
    (2, 15, (3, 1), 2, (1, 0)),
    (1, 49, 7, 2, 3),
    (2, 16, 3, 3, 1),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", LAYER_GEOMS)
@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_every_eval_switch_agrees_with_the_reference(kind, geom, dtype):
    c, t, k, stride, padding = geom
    layer = LCCLConv2d(c, t, k, stride, padding, cheap=kind, rng=7, dtype=dtype).eval()
    rng = np.random.default_rng(8)
    randomise_bn(layer, rng, 0.2, 0.3)
    x = rng.standard_normal((2, c, 9, 8)).astype(dtype)
    x_before = x.copy()
    ref = lccl_reference(layer, x)
    seen = []
    for sparse in (True, False):
        for fold in (True, False):
            for fused in (True, False):
                for sep in (False, True):  # a separate cheap_input holding the same values
                    layer.sparse, layer.fold_bn, layer.fused = sparse, fold, fused
                    out = layer.forward(x, cheap_input=x.copy() if sep else None)
                    what = f"sparse={sparse} fold={fold} fused={fused} separate={sep}"
                    close(out, ref, dtype, what)
                    st_ = layer.last_stats
                    seen.append(st_["density"])
                    per_cell = layer.conv.weight.data[0].size  # C*kh*kw
                    assert st_["macs_expensive"] == (
                        st_["active_cells"] * per_cell if sparse else st_["macs_dense"]), what
    np.testing.assert_array_equal(x, x_before)
    assert 0 < seen[0] < 1  # the test exercises a partial mask
    if dtype == np.float64:  # the mask is the same on every path (no near-zero V' here)
        assert max(seen) - min(seen) < 0.05


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(CHEAP_KINDS), t=st.sampled_from(TS), c=st.integers(1, 5),
       n=st.integers(1, 3), h=st.integers(1, 9), wd=st.integers(1, 9),
       kh=st.sampled_from([1, 3, 5]), kw=st.sampled_from([1, 3]), sh=st.integers(1, 3),
       sw=st.integers(1, 3), extra=st.integers(0, 2), dtype=st.sampled_from([np.float32,
                                                                            np.float64]),
       shift=st.floats(-1, 1), seed=st.integers(0, 2**31 - 1))
def test_property_lccl_eval_paths_equal_the_reference(kind, t, c, n, h, wd, kh, kw, sh, sw,
                                                      extra, dtype, shift, seed):
    padding = (kh // 2 + extra, kw // 2 + extra)  # valid for the 1x1 cheap kinds too
    layer = LCCLConv2d(c, t, (kh, kw), (sh, sw), padding, cheap=kind, rng=seed, dtype=dtype)
    layer.eval()
    rng = np.random.default_rng(seed)
    randomise_bn(layer, rng, shift, 0.3)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    ref = lccl_reference(layer, x)
    for sparse, fold, fused in [(True, True, True), (True, True, False), (True, False, True),
                                (False, True, True)]:
        layer.sparse, layer.fold_bn, layer.fused = sparse, fold, fused
        close(layer.forward(x), ref, dtype, f"sparse={sparse} fold={fold} fused={fused}")
    close(layer.forward(x, cheap_input=x.copy()), ref, dtype, "separate cheap_input")


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_eval_layer_on_odd_inputs(kind):
    rng = np.random.default_rng(9)
    layer = LCCLConv2d(3, 16, 3, 1, 1, cheap=kind, rng=5, dtype=np.float64).eval()
    randomise_bn(layer, rng, 0.2, 0.3)
    x0 = rng.standard_normal((2, 3, 6, 5))
    ref = lccl_reference(layer, x0)
    for name, x in layouts(x0).items():
        close(layer.forward(x), ref, np.float64, name)
        close(layer.forward(x, cheap_input=x), ref, np.float64, name + " cheap_input=x")
    one = rng.standard_normal((1, 3, 1, 1))  # a 1x1 image
    close(layer.forward(one), lccl_reference(layer, one), np.float64, "1x1 image")


@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("sparse", [True, False])
def test_eval_layer_empty_batch(kind, sparse):
    # plain eval Conv2d and a plain network accept N = 0; so must an LCCL layer
    layer = LCCLConv2d(3, 16, 3, 1, 1, cheap=kind, rng=5).eval()
    layer.sparse = sparse
    out = layer.forward(np.zeros((0, 3, 6, 5), np.float32))
    assert out.shape == (0, 16, 6, 5)
    assert layer.last_stats["active_cells"] == 0 and layer.last_stats["macs_expensive"] == 0
    assert layer.last_stats["density"] == 0.0


@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("sparse, fused", [(True, True), (True, False), (False, True)])
def test_eval_layer_refuses_what_eval_conv_refuses(kind, sparse, fused):
    # a float64 x into a float32 layer, and an input smaller than the kernel: the training
    # path, the dense eval path and eval Conv2d raise a named error; the sparse eval path
    # must not compute in mixed dtypes or fail inside a kernel (ZeroDivisionError)
    layer = LCCLConv2d(3, 16, 3, 1, 0 if kind == "kxkxCx1" else 1, cheap=kind, rng=5).eval()
    layer.sparse, layer.fused = sparse, fused
    with pytest.raises(TypeError, match="dtype"):
        layer.forward(np.ones((1, 3, 6, 6), np.float64))
    small = np.ones((1, 3, 2, 2) if kind == "kxkxCx1" else (1, 3, 0, 3), np.float32)
    with pytest.raises(ValueError, match="kernel"):
        layer.forward(small)


# ---------------------------------------------------------------- pre= (BN-ReLU in the copy)


def _pre(rng, c, dtype):
    """A BN-ReLU's affine map ``(s, h)`` with a zero and a negative scale."""
    s = rng.uniform(0.5, 1.5, c)
    s[0] = 0.0
    s[-1] = -abs(s[-1]) if c > 1 else s[-1]
    return s.astype(dtype), rng.normal(0, 0.5, c).astype(dtype)


def _apply_pre(x, pre):
    s, h = (np.asarray(a, np.float64)[:, None, None] for a in pre)
    return np.maximum(np.asarray(x, np.float64) * s + h, 0)


PRE_GEOMS = [(3, 16, 3, 1, 1), (2, 17, 3, 2, 1), (3, 24, (1, 3), 1, (0, 1)), (2, 7, 7, 2, 3),
             (1, 25, 3, 3, 2), (4, 65, 5, 1, 2)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", PRE_GEOMS)
def test_conv_eval_with_pre_is_bn_relu_then_conv_and_backward_agrees(geom, dtype):
    c, t, k, stride, padding = geom
    rng = np.random.default_rng(21)
    conv = Conv2d(c, t, k, stride, padding, bias=True, rng=22, dtype=dtype).eval()
    conv.bias.data[...] = rng.standard_normal(t)
    pre = _pre(rng, c, dtype)
    x0 = rng.standard_normal((2, c, 7, 8)).astype(dtype)
    a = _apply_pre(x0, pre)
    ref = naive(a, conv.weight.data, conv.bias.data, stride, padding)
    dy = rng.standard_normal(ref.shape).astype(dtype)
    train = Conv2d(c, t, k, stride, padding, bias=True, dtype=np.float64)
    train.weight.data, train.bias.data = (conv.weight.data.astype(np.float64),
                                          conv.bias.data.astype(np.float64))
    train.forward(a)
    dx_ref = train.backward(dy.astype(np.float64))  # gradient of the BN-ReLU output
    for method in DENSE:
        conv.inference_method = method
        for name, x in layouts(x0).items():
            if name not in ("C", "strided", "read-only"):
                continue
            close(conv.forward(x, pre=pre), ref, dtype, f"{method} {name}")
            np.testing.assert_array_equal(x, x0)
        conv.zero_grad()
        close(conv.backward(dy), dx_ref, dtype, f"{method} backward")
        close(conv.weight.grad, train.weight.grad, dtype, f"{method} dw")
    conv.inference_method = "auto"
    assert conv.forward(x0[:0], pre=pre).shape == (0,) + ref.shape[1:]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", PRE_GEOMS)
@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_lccl_eval_with_pre_every_switch(kind, geom, dtype):
    c, t, k, stride, padding = geom
    if kind.startswith("1x1") and isinstance(k, int) and padding < k // 2:
        return
    rng = np.random.default_rng(23)
    layer = LCCLConv2d(c, t, k, stride, padding, cheap=kind, rng=24, dtype=dtype).eval()
    randomise_bn(layer, rng, 0.3, 0.3)
    pre = _pre(rng, c, dtype)
    x = rng.standard_normal((2, c, 7, 8)).astype(dtype)
    strided = layouts(x)["strided"]
    a = _apply_pre(x, pre)
    other = rng.standard_normal(x.shape).astype(dtype)
    # cheap_input None: both branches read the BN-ReLU output; given (the "bef"
    # placements): the cheap branch reads it as it is, without pre
    refs = {"none": lccl_reference(layer, a), "x": lccl_reference(layer, a, x),
            "other": lccl_reference(layer, a, other)}
    for sparse, fold, fused in [(True, True, True), (True, True, False), (True, False, True),
                                (False, True, True)]:
        layer.sparse, layer.fold_bn, layer.fused = sparse, fold, fused
        for which, u in (("none", None), ("x", x), ("other", other)):
            for xin in (x, strided):
                out = layer.forward(xin, cheap_input=None if u is None else
                                    (xin if which == "x" else u), pre=pre)
                close(out, refs[which], dtype,
                      f"sparse={sparse} fold={fold} fused={fused} cheap_input={which}")
    np.testing.assert_array_equal(strided, x)


# ---------------------------------------------------------------- whole networks


def _random_running_stats(model, rng, cheap_shift=0.0):
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            dt = m.weight.data.dtype
            k = m.num_features
            m.running_mean = rng.normal(0, 0.2, k).astype(dt)
            m.running_var = rng.uniform(0.5, 1.5, k).astype(dt)
            m.weight.data = rng.uniform(0.7, 1.3, k).astype(dt)
            m.bias.data = rng.normal(0, 0.2, k).astype(dt)
    for _, layer in lccl_layers(model):
        layer.cheap_bn.bias.data += layer.cheap_bn.bias.data.dtype.type(cheap_shift)


def _calibrate(model, x):
    """Running statistics from one training-mode batch (momentum 1), so that the eval
    activations stay O(1): with made-up statistics each LCCL product V * V' squares the
    scale of the activations and a deep network overflows."""
    bns = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    for m in bns:
        m.momentum = 1.0
    model.train()
    model.forward(x)
    for m in bns:
        m.momentum = 0.1
    return model.eval()


@pytest.mark.parametrize("name, hw", [("resnet20", 16), ("wrn-16-4", 8)])
@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network_sparse_eval_equals_dense_eval(name, hw, kind, dtype):
    rng = np.random.default_rng(10)
    model = build_model(name, lccl=kind, rng=11, dtype=dtype)
    _random_running_stats(model, rng)  # random gamma and beta, then real statistics
    _calibrate(model, rng.standard_normal((4, 3, hw, hw + 1)).astype(dtype))
    for _, layer in lccl_layers(model):  # halve V' (same mask): a stable eval network
        layer.cheap_bn.weight.data *= dtype(0.5)
        layer.cheap_bn.bias.data *= dtype(0.5)
    for n in (1, 3):
        x = rng.standard_normal((n, 3, hw, hw + 1)).astype(dtype)  # odd W: ceil at stride 2
        dense = set_sparse(model, False).forward(x)
        d_dense = np.array([m.last_stats["density"] for _, m in lccl_layers(model)])
        sparse = set_sparse(model, True).forward(x)
        d_sparse = np.array([m.last_stats["density"] for _, m in lccl_layers(model)])
        assert np.isfinite(dense).all() and np.sum((d_sparse > 0) & (d_sparse < 1)) > 5
        np.testing.assert_allclose(d_sparse, d_dense, atol=1e-3 if dtype == np.float64 else 2e-2)
        rtol = 1e-9 if dtype == np.float64 else 2e-3
        scale = float(np.abs(dense).max())
        np.testing.assert_allclose(sparse, dense, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{name} {kind} batch {n}")
        for _, layer in lccl_layers(model):
            layer.fused = False
        two = model.forward(x)
        for _, layer in lccl_layers(model):
            layer.fused = True
        np.testing.assert_allclose(two, dense, rtol=rtol, atol=rtol * scale)
        one = model.forward(x[:1])  # batch 1 after batch n: the same first logits
        np.testing.assert_allclose(one, dense[:1], rtol=rtol, atol=rtol * scale)


def reference_network(model, x):
    """Eval forward of a ``PreActResNet`` from the functional pieces in float64: no block
    code, no fused BN-ReLU, no inference kernel (``conv2d_naive`` for every conv)."""
    def bn_relu(bn, z):
        y, _ = F.batchnorm2d_forward(z, *(np.asarray(a, np.float64) for a in (
            bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var)), False,
            bn.momentum, bn.eps)
        return np.maximum(y, 0)

    def conv(m, z, u):
        if isinstance(m, LCCLConv2d):
            return lccl_reference(m, z, u)
        return naive(z, m.weight.data, None, m.stride, m.padding)

    h = conv(model.stem, np.asarray(x, np.float64), None)
    for stage in model.stage_names:
        for blk in getattr(model, stage):
            a = bn_relu(blk.bn1, h)
            h1 = conv(blk.conv1, a, h if blk.cheap_before[0] else None)
            b = bn_relu(blk.bn2, h1)
            o = conv(blk.conv2, b, h1 if blk.cheap_before[1] else None)
            if blk.shortcut_kind == "projection":
                o = o + conv(blk.shortcut, a, None)
            elif blk.shortcut_kind == "identity":
                o = o + blk.shortcut.forward(h)
            else:
                o = o + h
            h = o
    pooled = bn_relu(model.bn, h).mean(axis=(2, 3))
    return pooled @ model.fc.weight.data.astype(np.float64).T + model.fc.bias.data


@pytest.mark.parametrize("kind, placement, shortcut", [
    ("none", "aft-aft", "identity"), ("none", "aft-aft", "projection"),
    ("kxkxCx1", "aft-bef", "identity"), ("1x1xCx1", "bef-aft", "projection"),
    ("1x1xCxT", "bef-bef", "identity")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network_eval_equals_a_functional_reference(kind, placement, shortcut, dtype):
    # the whole eval forward (fused BN-ReLU, timed kernels, sparse LCCL) against the
    # defining formulas, on a small net with odd image sizes (ceil at every stride 2)
    rng = np.random.default_rng(17)
    model = build_model("resnet8", in_channels=2, lccl=kind, placement=placement,
                        shortcut=shortcut, rng=18, dtype=dtype)
    _random_running_stats(model, rng)
    _calibrate(model, rng.standard_normal((4, 2, 7, 9)).astype(dtype))
    for n in (1, 3):
        x = rng.standard_normal((n, 2, 7, 9)).astype(dtype)
        ref = reference_network(model, x)
        close(model.forward(x), ref, dtype, f"batch {n}")
        if kind != "none":
            close(set_sparse(model, False).forward(x), ref, dtype, f"dense, batch {n}")
            set_sparse(model, True)


def test_network_empty_batch():
    model = build_model("resnet8", lccl="kxkxCx1", rng=0).eval()
    assert model.forward(np.zeros((0, 3, 8, 8), np.float32)).shape == (0, 10)


# ---------------------------------------------------------------- eval-mode backward


def test_eval_backward_of_a_plain_network_is_the_gradient_of_its_eval_forward():
    # LCCL-free WRN (projection shortcuts) with odd image sizes: an eval forward (fast
    # dense kernels, fused BN-ReLU), then backward through frozen BN, vs finite differences
    rng = np.random.default_rng(12)
    model = build_model("wrn-10-1", in_channels=2, num_classes=3, rng=13, dtype=np.float64)
    _random_running_stats(model, rng)
    model.eval()
    x = rng.standard_normal((2, 2, 5, 7))
    y = model.forward(x)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)

    def loss():
        return float(np.sum(model.forward(x) * dy))

    def fd(arr, idx):
        return numerical_grad_at(lambda _: loss(), arr, idx)

    idx = rng.choice(x.size, 20, replace=False)
    np.testing.assert_allclose(dx.reshape(-1)[idx], fd(x, idx), rtol=1e-5, atol=1e-8)
    for pname, p in model.named_parameters():
        j = rng.choice(p.data.size, min(2, p.data.size), replace=False)
        np.testing.assert_allclose(p.grad.reshape(-1)[j], fd(p.data, j), rtol=1e-5, atol=1e-8,
                                   err_msg=pname)
    # running statistics untouched by the eval forward / backward
    bn = model.bn
    before = bn.running_mean.copy()
    model.forward(x)
    model.backward(dy)
    np.testing.assert_array_equal(bn.running_mean, before)


@pytest.mark.parametrize("k, stride, padding", [((1, 3), 1, (0, 1)), (7, 2, 3), (3, 3, 2)])
def test_eval_conv_backward_on_odd_geometry_equals_training_backward(k, stride, padding):
    rng = np.random.default_rng(14)
    conv = Conv2d(3, 5, k, stride, padding, bias=True, rng=15, dtype=np.float64)
    x = rng.standard_normal((2, 3, 9, 8))
    y_train = conv.forward(x)
    dy = rng.standard_normal(y_train.shape)
    conv.zero_grad()
    dx_train = conv.backward(dy)
    dw_train = conv.weight.grad.copy()
    conv.eval()
    close(conv.forward(x), y_train, np.float64)
    conv.zero_grad()
    close(conv.backward(dy), dx_train, np.float64)
    close(conv.weight.grad, dw_train, np.float64)


def test_batchnorm_inference_on_odd_layouts():
    rng = np.random.default_rng(16)
    c = 5
    g, bta = rng.uniform(-1, 2, c), rng.normal(0, 1, c)  # negative gamma too
    mu, var = rng.normal(0, 1, c), rng.uniform(0.1, 2, c)
    x0 = rng.standard_normal((3, c, 4, 7))
    ref, _ = F.batchnorm2d_forward(x0, g, bta, mu.copy(), var.copy(), False)
    for name, x in layouts(x0).items():
        for relu in (False, True):
            y = F.batchnorm2d_inference(x, g, bta, mu, var, relu=relu)
            close(y, np.maximum(ref, 0) if relu else ref, np.float64, f"{name} relu={relu}")
    assert F.batchnorm2d_inference(x0[:0], g, bta, mu, var).shape == (0, c, 4, 7)
