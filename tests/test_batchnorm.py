"""batchnorm2d_forward / backward in training and eval mode, and fold_into_conv."""

import math

import numpy as np
import pytest
from gradcheck import check_grad
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref.functional import (
    batchnorm2d_backward,
    batchnorm2d_forward,
    batchnorm2d_inference,
    conv2d_forward,
    fold_into_conv,
    relu_forward,
)


def _params(c, dtype, seed=0):
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    return gamma, beta, rm, rv


def _hand_stats(x):
    """Per-channel mean, biased and unbiased variance with plain Python loops."""
    n, c, h, w = x.shape
    out = []
    for ch in range(c):
        vals = [float(x[i, ch, a, b]) for i in range(n) for a in range(h) for b in range(w)]
        m = len(vals)
        mean = math.fsum(vals) / m
        ss = math.fsum((v - mean) ** 2 for v in vals)
        out.append((mean, ss / m, ss / (m - 1)))
    return out


def test_running_stats_follow_pytorch():
    # momentum 0.1: running = 0.9 * running + 0.1 * batch; the running variance takes the
    # UNBIASED batch variance, the output is normalised with the BIASED one, eps = 1e-5.
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (4, 3, 2, 5))
    gamma, beta, rm, rv = _params(3, np.float64)
    rm0, rv0 = rm.copy(), rv.copy()
    y, _ = batchnorm2d_forward(x, gamma, beta, rm, rv, True)
    for ch, (mean, var_b, var_u) in enumerate(_hand_stats(x)):
        assert rm[ch] == pytest.approx(0.9 * rm0[ch] + 0.1 * mean, rel=1e-12)
        assert rv[ch] == pytest.approx(0.9 * rv0[ch] + 0.1 * var_u, rel=1e-12)
        expect = gamma[ch] * (x[:, ch] - mean) / math.sqrt(var_b + 1e-5) + beta[ch]
        np.testing.assert_allclose(y[:, ch], expect, rtol=1e-10, atol=1e-12)


def test_running_stats_over_several_steps_and_momentum():
    rng = np.random.default_rng(1)
    gamma, beta, rm, rv = _params(2, np.float64, seed=1)
    er_m, er_v = rm.copy(), rv.copy()
    for step in range(3):
        x = rng.normal(step, 1 + step, (3, 2, 3, 3))
        batchnorm2d_forward(x, gamma, beta, rm, rv, True, momentum=0.25)
        for ch, (mean, _, var_u) in enumerate(_hand_stats(x)):
            er_m[ch] = 0.75 * er_m[ch] + 0.25 * mean
            er_v[ch] = 0.75 * er_v[ch] + 0.25 * var_u
    np.testing.assert_allclose(rm, er_m, rtol=1e-12)
    np.testing.assert_allclose(rv, er_v, rtol=1e-12)


def test_eval_uses_running_stats_and_leaves_them_alone():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 4))
    gamma, beta, rm, rv = _params(3, np.float64, seed=2)
    rm0, rv0 = rm.copy(), rv.copy()
    y, _ = batchnorm2d_forward(x, gamma, beta, rm, rv, False)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    for ch in range(3):
        expect = gamma[ch] * (x[:, ch] - rm0[ch]) / math.sqrt(rv0[ch] + 1e-5) + beta[ch]
        np.testing.assert_allclose(y[:, ch], expect, rtol=1e-12, atol=1e-12)


def test_training_output_is_normalised():
    x = np.random.default_rng(3).normal(5.0, 3.0, (8, 4, 5, 5))
    c = x.shape[1]
    y, _ = batchnorm2d_forward(x, np.ones(c), np.zeros(c), np.zeros(c), np.ones(c), True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    var = y.var(axis=(0, 2, 3))
    np.testing.assert_allclose(var, 1 / (1 + 1e-5 / x.var(axis=(0, 2, 3))), rtol=1e-10)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 3, 2), (2, 3, 1, 4)])
def test_backward_finite_differences(training, shape):
    x = np.random.default_rng(4).normal(1.0, 2.0, shape)
    gamma, beta, rm, rv = _params(shape[1], np.float64, seed=4)
    check_grad(batchnorm2d_forward, batchnorm2d_backward, x, gamma, beta, rm, rv, training,
               wrt=[0, 1, 2], rng=11)


def test_all_ones_upstream_gradient_gives_zero_dx_in_training():
    # why the gradient checks use a random dy: with dy = 1 the training-mode dx is 0 exactly
    x = np.random.default_rng(5).standard_normal((2, 2, 3, 3))
    gamma, beta, rm, rv = _params(2, np.float64)
    y, cache = batchnorm2d_forward(x, gamma, beta, rm, rv, True)
    dx, _, dbeta = batchnorm2d_backward(np.ones_like(y), cache)
    np.testing.assert_allclose(dx, 0, atol=1e-12)
    np.testing.assert_allclose(dbeta, x.shape[0] * x.shape[2] * x.shape[3])


@pytest.mark.parametrize("training", [True, False])
def test_float32_stays_float32(training):
    x = np.random.default_rng(6).standard_normal((4, 3, 5, 5)).astype(np.float32)
    gamma, beta, rm, rv = _params(3, np.float32)
    y, cache = batchnorm2d_forward(x, gamma, beta, rm, rv, training)
    assert y.dtype == np.float32 and rm.dtype == np.float32 and rv.dtype == np.float32
    dx, dg, db = batchnorm2d_backward(np.ones_like(y), cache)
    assert dx.dtype == dg.dtype == db.dtype == np.float32


def test_fold_into_conv_matches_conv_then_eval_bn():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    gamma, beta, rm, rv = _params(4, np.float64, seed=7)
    for bias in (b, None):
        v, _ = conv2d_forward(x, w, bias, 1, 1)
        ref, _ = batchnorm2d_forward(v, gamma, beta, rm.copy(), rv.copy(), False)
        wf, bf = fold_into_conv(w, bias, gamma, beta, rm, rv)
        y, _ = conv2d_forward(x, wf, bf, 1, 1)
        np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), c=st.integers(1, 4), h=st.integers(1, 4), w=st.integers(1, 4),
       training=st.booleans(), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_backward_properties(n, c, h, w, training, seed, dtype):
    # training mode: dx sums to zero per channel (the gradient cannot move the batch mean)
    # and sum(dx * xhat) = inv_std * sum(dy * gamma * xhat) * (1 - mean(xhat**2)), which
    # is ~0 unless eps matters; both modes: dbeta = sum(dy), dtypes kept.
    if training and n * h * w < 2:
        return
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, (n, c, h, w)).astype(dtype)
    gamma, beta, rm, rv = _params(c, dtype, seed)
    y, cache = batchnorm2d_forward(x, gamma, beta, rm, rv, training)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dgamma, dbeta = batchnorm2d_backward(dy, cache)
    assert y.dtype == dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    tol = 1e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(dbeta, dy.sum(axis=(0, 2, 3)), rtol=tol, atol=tol)
    if training:
        xhat = (y - beta[:, None, None]) / gamma[:, None, None]
        scale = np.abs(dy).sum() + 1
        np.testing.assert_allclose(dx.sum(axis=(0, 2, 3)), 0, atol=tol * scale)
        inv_std = 1 / np.sqrt(x.astype(np.float64).var(axis=(0, 2, 3)) + 1e-5)
        dgx = (dy * gamma[:, None, None] * xhat).sum(axis=(0, 2, 3))
        expect = inv_std * dgx * (1 - (xhat * xhat).mean(axis=(0, 2, 3)))
        np.testing.assert_allclose((dx * xhat).sum(axis=(0, 2, 3)), expect,
                                   atol=tol * scale * inv_std.max())
    else:
        expect = dy * (gamma / np.sqrt(rv.astype(np.float64) + 1e-5))[:, None, None]
        np.testing.assert_allclose(dx, expect, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 5), h=st.integers(1, 6), w=st.integers(1, 6),
       relu=st.booleans(), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float32, np.float64]), strided=st.booleans())
def test_inference_equals_eval_forward_then_relu(n, c, h, w, relu, seed, dtype, strided):
    # the one-pass kernel against its naive twin: eval-mode batchnorm2d_forward (+ relu_forward)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, (n, c, h, 2 * w if strided else w)).astype(dtype)
    if strided:
        x = x[:, :, :, ::2]  # not contiguous
    gamma, beta, rm, rv = _params(c, dtype, seed)
    ref, _ = batchnorm2d_forward(x, gamma, beta, rm, rv, False)
    if relu:
        ref, _ = relu_forward(ref)
    y = batchnorm2d_inference(x, gamma, beta, rm, rv, relu=relu)
    assert y.dtype == dtype and y.shape == x.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    if relu:
        assert (y >= 0).all()


def test_inference_bad_input():
    x = np.ones((1, 2, 3, 3), np.float32)
    p = _params(2, np.float32)
    with pytest.raises(ValueError, match="gamma"):
        batchnorm2d_inference(x, p[0][:1], *p[1:])
    with pytest.raises(TypeError, match="dtype"):
        batchnorm2d_inference(x.astype(np.float64), *p)
    with pytest.raises(ValueError, match="eps"):
        batchnorm2d_inference(x, *p, eps=0.0)
    with pytest.raises(TypeError, match="relu"):
        batchnorm2d_inference(x, *p, relu="yes")
