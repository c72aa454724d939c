"""The one check of convolution arguments at every entry point of the fast path, as
``tests/test_conv_args.py`` holds the teaching path's to it; and a stride beyond the
padded input in the fast kernels and the engine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from test_conv_args import _mask, assert_refused, bad_conv

from lccl_ref import fast
from lccl_ref.models import PreActResNet
from lccl_ref.nn import Conv2d, LCCLConv2d

f32 = np.float32


def _accelerated(cls, c, t, kh, kw, stride, padding, x):
    layer = cls(c, t, (kh, kw), stride, padding, **({"cheap": "kxkxCx1"} if cls is LCCLConv2d
                                                    else {}))
    return fast.accelerate(layer.eval()).forward(x)


ENTRY_POINTS = {
    "conv2d_inference": lambda x, w, b, s, p: fast.conv2d_inference(x, w, b, s, p),
    "gated_conv2d vector": lambda x, w, b, s, p: fast.gated_conv2d(
        x, w, _mask(x.shape[0], *x.shape[2:], *w.shape[2:], s, p), b, s, p, "vector"),
    "cheap_single": lambda x, w, b, s, p: fast.cheap_single(x, w[:1], b[:1], s, p),
    "lccl_shared_eval": lambda x, w, b, s, p: fast.lccl_shared_eval(x, w, w[:1], b[:1], s, p, p),
    "Conv2d accelerated": lambda x, w, b, s, p: _accelerated(Conv2d, *w.shape[1::-1],
                                                             *w.shape[2:], s, p, x),
    "LCCLConv2d accelerated": lambda x, w, b, s, p: _accelerated(LCCLConv2d, *w.shape[1::-1],
                                                                 *w.shape[2:], s, p, x),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@settings(max_examples=40, deadline=None)
@given(case=bad_conv())
def test_every_fast_entry_point_refuses_bad_conv_arguments(name, case):
    assert_refused(name, ENTRY_POINTS[name], case)


@pytest.mark.parametrize("stride", [10**6, 2**63, (1, 10**6), (2**70, 2)])
def test_a_stride_beyond_the_padded_input_gives_the_padded_size_output(stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6)).astype(f32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(f32)
    b = rng.standard_normal(4).astype(f32)
    s = (stride, stride) if isinstance(stride, int) else stride
    same = (min(s[0], 9), min(s[1], 8))
    m = np.ones((2, (9 - 3) // same[0] + 1, (8 - 3) // same[1] + 1), bool)
    for name, fn in [
        ("conv2d_inference", lambda s: fast.conv2d_inference(x, w, b, s, 1)),
        ("gated_conv2d", lambda s: fast.gated_conv2d(x, w, m, b, s, 1, "vector")[0]),
        ("cheap_single", lambda s: fast.cheap_single(x, w[:1], b[:1], s, 1)[0]),
        ("lccl_shared_eval", lambda s: fast.lccl_shared_eval(x, w, w[:1], b[:1], s, 1, 1)[0]),
    ]:
        np.testing.assert_array_equal(fn(stride), fn(same), err_msg=name)
    for kind in ("kxkxCx1", "1x1xCx1"):
        layers = [fast.accelerate(LCCLConv2d(3, 4, 3, st_, 1, cheap=kind, rng=1).eval())
                  for st_ in (s, same)]
        np.testing.assert_array_equal(layers[0].forward(x), layers[1].forward(x), err_msg=kind)


def test_the_engine_takes_a_stride_beyond_the_padded_input():
    nets = [PreActResNet(1, (2, 4), stem_channels=2, in_channels=3, strides=(1, s),
                         lccl="kxkxCx1", rng=3) for s in (2**63, 9)]
    x = np.random.default_rng(1).standard_normal((1, 3, 7, 7)).astype(f32)
    np.testing.assert_array_equal(fast.Engine(nets[0])(x), fast.Engine(nets[1])(x))
