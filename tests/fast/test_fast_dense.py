"""fast.conv2d_inference: the dense eval conv, by the faster of im2col and "vector"."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref import fast
from lccl_ref.fast import tune
from lccl_ref.fast.dense import conv2d_inference
from lccl_ref.functional import conv2d_forward, conv2d_naive
from lccl_ref.nn import Conv2d

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


@pytest.mark.parametrize("method", ["im2col", "vector", "auto"])
@pytest.mark.parametrize("c, t, k, stride, padding", [(3, 5, 3, 1, 1), (4, 17, 3, 2, 1),
                                                      (2, 33, 1, 1, 0), (5, 3, (3, 1), 2, 2)])
def test_every_method_equals_the_naive_conv(method, c, t, k, stride, padding):
    rng = np.random.default_rng(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((2, c, 7, 9))
    w = rng.standard_normal((t, c, kh, kw))
    b = rng.standard_normal(t)
    y = conv2d_inference(x, w, b, stride, padding, method=method)
    np.testing.assert_allclose(y, conv2d_naive(x, w, b, stride, padding), **TOL[np.float64])


def test_auto_times_each_shape_once_and_records_why(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 11, 13)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    table = {"dense": {}, "shared": {}, "fused": {}}
    monkeypatch.setattr(tune, "CHOICES", table)
    conv2d_inference(x, w, None, 1, 1)
    conv2d_inference(x, w, None, 1, 1)
    assert len(table["dense"]) == 1
    (choice,) = table["dense"].values()
    assert choice["method"] in ("im2col", "vector")
    assert set(choice["ms"]) == {"im2col", "vector"}
    assert choice["ms"][choice["method"]] == min(choice["ms"].values())
    conv2d_inference(x[:, :, :, :12], w, None, 1, 1)  # another shape: another decision
    assert len(table["dense"]) == 2


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), t=st.integers(1, 20), k=st.integers(1, 3),
       s=st.integers(1, 2), p=st.integers(0, 1), h=st.integers(3, 9), bias=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_property_vector_at_density_one_is_the_dense_conv(n, c, t, k, s, p, h, bias, dtype,
                                                          seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, h + 1)).astype(dtype)
    w = rng.standard_normal((t, c, k, k)).astype(dtype)
    b = rng.standard_normal(t).astype(dtype) if bias else None
    y = conv2d_inference(x, w, b, s, p, method="vector")
    ref, _ = conv2d_forward(x, w, b, s, p)
    assert y.dtype == dtype and y.shape == ref.shape
    np.testing.assert_allclose(y, ref, **TOL[dtype])


def test_bad_input():
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="method must be one of"):
        conv2d_inference(x, w, method="fft")
    with pytest.raises(TypeError, match="dtype"):
        conv2d_inference(x.astype(np.float64), w)
    with pytest.raises(ValueError, match="channels"):
        conv2d_inference(x, np.ones((3, 4, 3, 3), np.float32))


def test_accelerated_conv_module_uses_it_and_backward_still_works():
    rng = np.random.default_rng(2)
    conv = Conv2d(3, 4, 3, 1, 1, bias=True, rng=2, dtype=np.float64)
    conv.bias.data[...] = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 6, 6))
    fast.accelerate(conv.eval())
    y = conv.forward(x)
    ref, _ = conv2d_forward(x, conv.weight.data, conv.bias.data, 1, 1)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)  # the im2col cache is built only now
    conv.train()
    conv.forward(x)
    conv.zero_grad()
    np.testing.assert_allclose(dx, conv.backward(dy), rtol=1e-12, atol=1e-12)


def test_accelerated_conv_module_refuses_bad_input():
    conv = fast.accelerate(Conv2d(3, 4, 3, 1, 0, rng=0).eval())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        conv.forward(np.ones((1, 2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="dtype float64 but the module is float32"):
        conv.forward(np.ones((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv.forward(np.ones((1, 3, 2, 5), np.float32))


# ---- pre=(s, h): the BN-ReLU before a conv, applied in the kernels' input copy --------

def _pre_case(rng, c, dtype):
    s = rng.uniform(0.5, 1.5, c).astype(dtype)
    h = rng.normal(0, 0.5, c).astype(dtype)
    return s, h


@pytest.mark.parametrize("method", ["im2col", "vector", "auto"])
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_with_pre_equals_the_conv_of_the_bn_relu_output(method, stride, padding, dtype):
    from lccl_ref.fast.dense import conv2d_inference_unchecked

    rng = np.random.default_rng(stride * 10 + padding)
    x = rng.standard_normal((2, 5, 7, 9)).astype(dtype)
    w = rng.standard_normal((17, 5, 3, 3)).astype(dtype)
    s, h = _pre_case(rng, 5, dtype)
    a = np.maximum(x * s[:, None, None] + h[:, None, None], 0)
    ref = conv2d_naive(a.astype(np.float64), w.astype(np.float64), None, stride, padding)
    y = conv2d_inference_unchecked(x, w, None, (stride, stride), (padding, padding), method,
                                   (s, h))
    np.testing.assert_allclose(y, ref, **TOL[dtype])


@pytest.mark.parametrize("method", ["vector", "gather", "tiled", "direct", "auto"])
def test_gated_with_pre_equals_gated_on_the_bn_relu_output(method):
    from lccl_ref.fast.gated import gated_conv2d_unchecked

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 8, 6))
    x0 = x.copy()
    w = rng.standard_normal((9, 4, 3, 3))
    mask = rng.random((2, 8, 6)) < 0.6
    scale = rng.standard_normal((2, 8, 6))
    s, h = _pre_case(rng, 4, np.float64)
    a = np.maximum(x * s[:, None, None] + h[:, None, None], 0)
    y, macs = gated_conv2d_unchecked(x, w, mask, None, (1, 1), (1, 1), method, scale, (s, h))
    ref, ref_macs = gated_conv2d_unchecked(a, w, mask, None, (1, 1), (1, 1), "direct", scale)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert macs == ref_macs
    assert np.array_equal(x, x0)  # the BN-ReLU is applied to a copy, never to x


@pytest.mark.parametrize("kind", ["kxkxCx1", "1x1xCx1"])
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_with_pre_equals_fused_on_the_bn_relu_output(kind, stride):
    from lccl_ref.fast.fused import lccl_shared_eval_unchecked

    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((5, 3, 3, 3))
    k = 3 if kind == "kxkxCx1" else 1
    wc = rng.standard_normal((1, 3, k, k))
    bc = np.array([0.1])
    s, h = _pre_case(rng, 3, np.float64)
    a = np.maximum(x * s[:, None, None] + h[:, None, None], 0)
    cpad = (1, 1) if k == 3 else (0, 0)
    got = lccl_shared_eval_unchecked(x, w, wc, bc, (stride, stride), (1, 1), cpad, (s, h))
    ref = lccl_shared_eval_unchecked(a, w, wc, bc, (stride, stride), (1, 1), cpad)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [(2, 1), (1, 2), (2, 2), (3, 1)])
def test_fused_with_pre_at_mixed_strides(stride):
    # the fused kernel folds pre into its copy at stride (1, 1) only; every other stride
    # must apply the BN-ReLU some other way and still match
    from lccl_ref.fast.fused import lccl_shared_eval_unchecked

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 9, 10))
    w = rng.standard_normal((4, 3, 3, 3))
    wc = rng.standard_normal((1, 3, 3, 3))
    s, h = _pre_case(rng, 3, np.float64)
    a = np.maximum(x * s[:, None, None] + h[:, None, None], 0)
    got = lccl_shared_eval_unchecked(x, w, wc, np.array([0.1]), stride, (1, 1), (1, 1), (s, h))
    ref = lccl_shared_eval_unchecked(a, w, wc, np.array([0.1]), stride, (1, 1), (1, 1))
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)
