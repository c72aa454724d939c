"""Shared pieces of the adversarial tests (``tests/test_adversarial.py`` for the teaching
path, ``tests/fast/test_adversarial.py`` for the fast one): odd geometries, memory
layouts, and independent references -- ``conv2d_naive`` in float64 (the defining sum),
the LCCL layer and a whole network from the defining formulas.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from lccl_ref import functional as F
from lccl_ref.models import lccl_layers
from lccl_ref.nn import BatchNorm2d, LCCLConv2d

TS = (1, 7, 15, 16, 17, 23, 24, 25, 48, 49, 65)

#: Hypothesis arguments of a random gated conv (:func:`gated_case`): any T of ``TS``,
#: kernels, strides and paddings up to 4, 4 and 3, masks of any density.
GATED_CASE = dict(
    t=st.sampled_from(TS), c=st.integers(1, 6), n=st.integers(1, 3),
    h=st.integers(1, 9), wd=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
    sh=st.integers(1, 4), sw=st.integers(1, 4), ph=st.integers(0, 3), pw=st.integers(0, 3),
    dtype=st.sampled_from([np.float32, np.float64]), density=st.floats(0, 1),
    seed=st.integers(0, 2**31 - 1))


def gated_case(t, c, n, h, wd, kh, kw, sh, sw, ph, pw, dtype, density, seed):
    """``(rng, x, w, b, mask, scale)`` for the :data:`GATED_CASE` arguments, or None when
    the kernel does not fit the padded image; ``mask`` and ``scale`` are (N, Ho, Wo)."""
    if h + 2 * ph < kh or wd + 2 * pw < kw:
        return None
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    w = rng.standard_normal((t, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    mask = rng.random((n, ho, wo)) < density
    scale = rng.standard_normal((n, ho, wo)).astype(dtype)
    return rng, x, w, b, mask, scale


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


def ids(geoms):
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


def cheap_windows(geom):
    """(w_cheap kernel, cheap_padding) pairs inside the expensive window, same output size."""
    *_, (kh, kw), _, padding = geom
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    out = [((kh, kw), (ph, pw))]
    if kh % 2 and kw % 2 and ph >= kh // 2 and pw >= kw // 2:
        out.append(((1, 1), (ph - kh // 2, pw - kw // 2)))  # the centred 1x1 tap
    return out


def lccl_reference(layer, x, u=None):
    """Eval ``O = conv_W(x) * g(BN(conv_W'(u)))`` from ``conv2d_naive`` and the BN formula."""
    u = x if u is None else u
    v = naive(x, layer.conv.weight.data, None, layer.conv.stride, layer.conv.padding)
    pre = naive(u, layer.cheap_conv.weight.data, None, layer.cheap_conv.stride,
                layer.cheap_conv.padding)
    bn = layer.cheap_bn

    def f64(a):  # (C,) -> (C, 1, 1) in float64
        return np.asarray(a, np.float64)[:, None, None]

    z = (pre - f64(bn.running_mean)) / np.sqrt(f64(bn.running_var) + bn.eps) \
        * f64(bn.weight.data) + f64(bn.bias.data)
    g = np.maximum(z, 0)  # the gate: ReLU, or clip to [0, 1]
    return v * (np.minimum(g, 1) if layer.gate == "clip" else g)


SEQUENCE = [(1, 8, 8), (3, 8, 8), (1, 8, 8), (2, 5, 7), (3, 8, 8), (2, 9, 6), (1, 5, 7)]


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


def random_pre(rng, c, dtype):
    """A BN-ReLU's affine map ``(s, h)`` with a zero and a negative scale."""
    s = rng.uniform(0.5, 1.5, c)
    s[0] = 0.0
    s[-1] = -abs(s[-1]) if c > 1 else s[-1]
    return s.astype(dtype), rng.normal(0, 0.5, c).astype(dtype)


def apply_pre(x, pre):
    s, h = (np.asarray(a, np.float64)[:, None, None] for a in pre)
    return np.maximum(np.asarray(x, np.float64) * s + h, 0)


PRE_GEOMS = [(3, 16, 3, 1, 1), (2, 17, 3, 2, 1), (3, 24, (1, 3), 1, (0, 1)), (2, 7, 7, 2, 3),
             (1, 25, 3, 3, 2), (4, 65, 5, 1, 2)]


def random_running_stats(model, rng, cheap_shift=0.0):
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


def batch_statistics(model, x):
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
