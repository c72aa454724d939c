"""One check of convolution arguments (``checks.check_conv_args`` / ``conv_geometry``) at
every entry point of the teaching path that takes a kernel, channels, a stride and a
padding (the fast path's: ``tests/fast/test_conv_args.py``).

A zero-size kernel or channel count, a stride < 1, a padding < 0 or above
``MAX_PADDING``, an argument of the wrong type, a kernel larger than the padded input
and a channel mismatch raise a ValueError or TypeError naming the argument, from the
functional convolutions, the Numba kernels, im2col and the modules alike -- never a
ZeroDivisionError, IndexError, MemoryError or OverflowError, never a wrong-shaped
output.  A stride larger than the padded input reads one window, exactly as the stride
equal to it does, and gives that output.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref import functional as F
from lccl_ref.checks import MAX_PADDING
from lccl_ref.kernels import cheap_conv2d, gated_conv2d
from lccl_ref.nn import Conv2d, LCCLConv2d, set_sparse

f32 = np.float32


def _mask(n, h, w, kh, kw, stride, padding):
    """A shared mask of the output size the arguments would give when they are valid."""
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    ho = wo = 1
    if all(isinstance(v, tuple) and len(v) == 2 and all(type(e) is int for e in v)
           for v in (s, p)) and min(s) >= 1:
        ho = max(1, min(64, (h + 2 * p[0] - kh) // s[0] + 1))
        wo = max(1, min(64, (w + 2 * p[1] - kw) // s[1] + 1))
    return np.ones((n, ho, wo), bool)


def _module(cls, c, t, kh, kw, stride, padding, x):
    layer = cls(c, t, (kh, kw), stride, padding, **({"cheap": "kxkxCx1"} if cls is LCCLConv2d
                                                    else {}))
    return layer.eval().forward(x)


#: name -> f(x, w, b, stride, padding), w (T, C, kh, kw), b (T,)
ENTRY_POINTS = {
    "conv2d_forward": lambda x, w, b, s, p: F.conv2d_forward(x, w, b, s, p),
    "conv2d_naive": lambda x, w, b, s, p: F.conv2d_naive(x, w, b, s, p),
    "gated_conv2d auto": lambda x, w, b, s, p: gated_conv2d(
        x, w, _mask(x.shape[0], *x.shape[2:], *w.shape[2:], s, p), b, s, p),
    "gated_conv2d tiled": lambda x, w, b, s, p: gated_conv2d(
        x, w, _mask(x.shape[0], *x.shape[2:], *w.shape[2:], s, p), b, s, p, "tiled"),
    "gated_conv2d gather": lambda x, w, b, s, p: gated_conv2d(
        x, w, _mask(x.shape[0], *x.shape[2:], *w.shape[2:], s, p), b, s, p, "gather"),
    "cheap_conv2d": lambda x, w, b, s, p: cheap_conv2d(x, w, b, s, p),
    "im2col": lambda x, w, b, s, p: F.im2col(x, w.shape[2:], s, p),
    "im2col_naive": lambda x, w, b, s, p: F.im2col_naive(x, w.shape[2:], s, p),
    "Conv2d": lambda x, w, b, s, p: _module(Conv2d, *w.shape[1::-1], *w.shape[2:], s, p, x),
    "LCCLConv2d": lambda x, w, b, s, p: _module(LCCLConv2d, *w.shape[1::-1], *w.shape[2:], s, p,
                                                x),
}
#: im2col reads no weight: it has no channel or output-channel count to refuse
NO_CHANNELS = {"im2col", "im2col_naive"}

#: defect -> (exception types, regex the message must match)
DEFECTS = {
    "kernel 0": ((ValueError,), r"kernel"),
    "C 0": ((ValueError,), r"channel"),
    "T 0": ((ValueError,), r"output channel|out_channels|w must have shape \(1"),
    "stride < 1": ((ValueError,), r"stride must be >= 1"),
    "stride type": ((TypeError,), r"stride must be an int"),
    "padding < 0": ((ValueError,), r"padding must be >= 0"),
    "padding huge": ((ValueError,), rf"padding must be <= {MAX_PADDING}"),
    "padding type": ((TypeError,), r"padding must be an int"),
    "kernel too big": ((ValueError,), r"larger than the padded input"),
    "channel mismatch": ((ValueError,), r"channel|x must have shape \(N, \d|w must have shape"),
}


@st.composite
def bad_conv(draw):
    """Valid arguments (N, C, H, W, T, kh, kw, stride, padding) with one defect."""
    defect = draw(st.sampled_from(sorted(DEFECTS)))
    n, c, t = draw(st.integers(0, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(3, 7)), draw(st.integers(3, 7))
    stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    c_w = c
    if defect == "kernel 0":
        kh, kw = draw(st.sampled_from([(0, 3), (3, 0), (0, 0)]))
    elif defect == "C 0":
        c = c_w = 0
    elif defect == "T 0":
        t = 0
    elif defect == "stride < 1":
        stride = draw(st.sampled_from([0, -1, (1, 0), (-3, 2)]))
    elif defect == "stride type":
        stride = draw(st.sampled_from([1.0, True, None, "2", (1, 1, 1), (1.5, 1), [2]]))
    elif defect == "padding < 0":
        padding = draw(st.sampled_from([-1, (0, -2), -(2**63)]))
    elif defect == "padding huge":
        padding = draw(st.sampled_from([MAX_PADDING + 1, 10**5, (0, 2**63), 2**70]))
    elif defect == "padding type":
        padding = draw(st.sampled_from([0.0, False, "1", (1,), (0, 0, 0), np.float32(1)]))
    elif defect == "kernel too big":
        padding = 0
        kh = draw(st.integers(h + 1, h + 3))
    else:  # channel mismatch
        c_w = c + draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, h, w)).astype(f32)
    wt = rng.standard_normal((t, c_w, kh, kw)).astype(f32)
    b = rng.standard_normal(max(t, 1)).astype(f32)[:t]
    return defect, x, wt, b, stride, padding


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@settings(max_examples=40, deadline=None)
@given(case=bad_conv())
def test_every_entry_point_refuses_bad_conv_arguments(name, case):
    assert_refused(name, ENTRY_POINTS[name], case)


def assert_refused(name, entry_point, case):
    """``entry_point`` raises the defect's exception, with a message naming it."""
    defect, x, w, b, stride, padding = case
    if name in NO_CHANNELS and defect in ("C 0", "T 0", "channel mismatch"):
        return
    exceptions, pattern = DEFECTS[defect]
    with pytest.raises(exceptions) as info:
        entry_point(x, w, b, stride, padding)
    assert re.search(pattern, str(info.value)), f"{name}, {defect}: {info.value}"


@pytest.mark.parametrize("stride", [10**6, 2**63, (1, 10**6), (2**70, 2)])
def test_a_stride_beyond_the_padded_input_gives_the_padded_size_output(stride):
    """One window along an axis whose stride exceeds the padded input (7 + 2 = 9): the
    output of stride 9 there, bit for bit, with no huge buffer and no int overflow."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6)).astype(f32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(f32)
    b = rng.standard_normal(4).astype(f32)
    s = (stride, stride) if isinstance(stride, int) else stride
    same = (min(s[0], 9), min(s[1], 8))
    m = np.ones((2, (9 - 3) // same[0] + 1, (8 - 3) // same[1] + 1), bool)
    for name, fn in [
        ("conv2d_forward", lambda s: F.conv2d_forward(x, w, b, s, 1)[0]),
        ("conv2d_naive", lambda s: F.conv2d_naive(x, w, b, s, 1)),
        ("gated_conv2d", lambda s: gated_conv2d(x, w, m, b, s, 1)[0]),
        ("gated_conv2d tiled", lambda s: gated_conv2d(x, w, m, b, s, 1, "tiled")[0]),
        ("cheap_conv2d", lambda s: cheap_conv2d(x, w, b, s, 1)),
        ("im2col", lambda s: F.im2col(x, 3, s, 1)),
    ]:
        np.testing.assert_array_equal(fn(stride), fn(same), err_msg=name)
    for kind in ("kxkxCx1", "1x1xCx1", "1x1xCxT"):
        layers = [LCCLConv2d(3, 4, 3, st_, 1, cheap=kind, rng=1).eval() for st_ in (s, same)]
        np.testing.assert_array_equal(layers[0].forward(x), layers[1].forward(x), err_msg=kind)
    convs = [Conv2d(3, 4, 3, st_, 1, rng=1).eval() for st_ in (s, same)]
    np.testing.assert_array_equal(convs[0].forward(x), convs[1].forward(x))


def test_set_sparse_needs_a_module():
    with pytest.raises(TypeError, match="model must be a Module, got str"):
        set_sparse("x", True)
