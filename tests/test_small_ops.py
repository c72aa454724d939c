"""relu, linear, global average pooling and softmax cross-entropy."""

import math

import numpy as np
import pytest
from gradcheck import check_grad, numerical_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lccl_ref.functional import (
    global_avg_pool_backward,
    global_avg_pool_forward,
    linear_backward,
    linear_forward,
    relu_backward,
    relu_forward,
    softmax_cross_entropy,
)

DTYPES = [np.float32, np.float64]


# ---- relu ------------------------------------------------------------------
def test_relu_values_and_subgradient_at_zero():
    x = np.array([[-2.0, 0.0, 3.0]])
    y, cache = relu_forward(x)
    np.testing.assert_array_equal(y, [[0, 0, 3]])
    np.testing.assert_array_equal(relu_backward(np.array([[5.0, 6.0, 7.0]]), cache), [[0, 0, 7]])


def test_relu_finite_differences():
    # keep |x| away from the kink so that the centred difference is well defined
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, (2, 3, 4, 5)) * rng.choice([-1.0, 1.0], (2, 3, 4, 5))
    check_grad(relu_forward, relu_backward, x, rng=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_keeps_dtype(dtype):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    y, cache = relu_forward(x)
    assert y.dtype == dtype and relu_backward(np.ones_like(y), cache).dtype == dtype


# ---- linear ----------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_linear_values_and_finite_differences(bias):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    b = rng.standard_normal(3) if bias else None
    y, cache = linear_forward(x, w, b)
    expect = np.array([[sum(x[i, k] * w[j, k] for k in range(5)) + (b[j] if bias else 0)
                        for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(y, expect, rtol=1e-12)
    check_grad(linear_forward, linear_backward, x, w, b, rng=3)
    assert (linear_backward(np.ones_like(y), cache)[2] is None) == (not bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_keeps_dtype(dtype):
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in [(2, 3), (4, 3), (4,)])
    y, cache = linear_forward(x, w, b)
    assert y.dtype == dtype
    assert all(g.dtype == dtype for g in linear_backward(np.ones_like(y), cache))


# ---- global average pooling -----------------------------------------------
def test_pool_values_and_finite_differences():
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5))
    y, _ = global_avg_pool_forward(x)
    np.testing.assert_allclose(y[1, 2], np.sum(x[1, 2]) / 20, rtol=1e-12)
    check_grad(global_avg_pool_forward, global_avg_pool_backward, x, rng=5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_keeps_dtype(dtype):
    x = np.ones((2, 3, 4, 4), dtype=dtype)
    y, cache = global_avg_pool_forward(x)
    dx = global_avg_pool_backward(np.ones_like(y), cache)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(dx, 1 / 16)
    assert dx.flags.writeable  # a real array, not a read-only broadcast view


# ---- softmax cross-entropy -------------------------------------------------
def test_loss_by_hand():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = np.array([2, 0])
    loss, d = softmax_cross_entropy(logits, labels)
    p0 = [math.exp(v) / (math.exp(1) + math.exp(2) + math.exp(3)) for v in (1, 2, 3)]
    expect = -(math.log(p0[2]) + math.log(1 / 3)) / 2
    assert isinstance(loss, float)
    assert loss == pytest.approx(expect, rel=1e-12)
    np.testing.assert_allclose(d[0], (np.array(p0) - [0, 0, 1]) / 2, rtol=1e-12)
    np.testing.assert_allclose(d[1], (np.array([1, 1, 1]) / 3 - [1, 0, 0]) / 2, rtol=1e-12)


def test_loss_gradient_finite_differences():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    _, d = softmax_cross_entropy(logits, labels)
    num = numerical_grad(lambda z: softmax_cross_entropy(z, labels)[0], logits)
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_stable_for_huge_logits(dtype):
    # exp(1e4) overflows; the shifted form must not.  Softmax is shift invariant, so adding
    # a huge constant to a row changes nothing.
    base = np.array([[0.0, 1.0, -2.0], [3.0, -1.0, 0.5]], dtype=dtype)
    labels = np.array([1, 0])
    ref_loss, ref_d = softmax_cross_entropy(base, labels)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, d = softmax_cross_entropy(base + dtype(1e4), labels)
        huge_loss, huge_d = softmax_cross_entropy(
            np.array([[1e30, -1e30, 0.0]], dtype=dtype), np.array([1]))
    assert d.dtype == dtype and np.isfinite(loss)
    assert loss == pytest.approx(ref_loss, rel=1e-3 if dtype == np.float32 else 1e-9)
    np.testing.assert_allclose(d, ref_d, atol=1e-6)
    # label logit 2e30 below the max: the loss is that gap, the gradient pushes it up
    assert huge_loss == pytest.approx(2e30, rel=1e-6)
    np.testing.assert_allclose(huge_d, [[1.0, -1.0, 0.0]], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 6), k=st.integers(1, 6),
       dtype=st.sampled_from(DTYPES))
def test_loss_properties(data, n, k, dtype):
    logits = data.draw(hnp.arrays(dtype, (n, k),
                                  elements=st.floats(-50, 50, width=32, allow_nan=False)))
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    loss, d = softmax_cross_entropy(logits, labels)
    assert d.dtype == dtype and d.shape == (n, k)
    assert loss >= 0 and np.isfinite(loss)
    # each row of (softmax - onehot) sums to 0; scaled by 1/N
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-6)
    assert np.all(d[np.arange(n), labels] <= 0)
