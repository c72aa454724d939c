"""Batch normalisation over (N, H, W) for each channel, PyTorch conventions.

Training mode::

    mu      = mean(x, axis=(0, 2, 3))                  (C,)
    var     = mean((x - mu)^2, axis=(0, 2, 3))         biased, used to normalise
    xhat    = (x - mu) / sqrt(var + eps)
    y       = gamma * xhat + beta
    running_mean = (1 - momentum) * running_mean + momentum * mu
    running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)
                                                     unbiased, M = N*H*W

Eval mode uses ``running_mean`` / ``running_var`` in place of ``mu`` / ``var``,
which makes the layer an affine map per channel (and lets it be folded into a
preceding convolution, see :func:`fold_into_conv`).  At inference
:func:`batchnorm2d_inference` applies that affine map, optionally followed by a
ReLU, in one pass over ``x`` (one Numba loop) and keeps no cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..checks import check_float_array, check_same_dtype, check_shape


def _check_bn_args(x, gamma, beta, running_mean, running_var):
    """``x`` (N, C, H, W) and four (C,) arrays, all of one float dtype."""
    check_float_array("x", x, ndim=4)
    c = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        check_float_array(name, v, ndim=1)
        check_shape(name, v, (c,))
    check_same_dtype(x=x, gamma=gamma, beta=beta, running_mean=running_mean,
                     running_var=running_var)


def batchnorm2d_forward(
    x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5
):
    """Forward pass of 2-D batch normalisation.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    gamma, beta : ndarray, (C,), dtype of ``x``
    running_mean, running_var : ndarray, (C,), dtype of ``x``
        Updated **in place** when ``training`` is true, read when it is false.
    training : bool
    momentum : float in [0, 1]
    eps : float > 0

    Returns
    -------
    y : ndarray, (N, C, H, W), dtype of ``x``
    cache : tuple for :func:`batchnorm2d_backward`
    """
    _check_bn_args(x, gamma, beta, running_mean, running_var)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    dt = x.dtype
    if training:
        m = x.shape[0] * x.shape[2] * x.shape[3]
        if m < 2:
            raise ValueError(
                f"training-mode batchnorm needs more than one value per channel, got x of "
                f"shape {x.shape}"
            )
        mu = x.mean(axis=(0, 2, 3))  # (C,)
        xc = x - mu[:, None, None]  # (N, C, H, W)
        var = np.mean(xc * xc, axis=(0, 2, 3))  # (C,) biased
        running_mean *= 1 - momentum
        running_mean += (momentum * mu).astype(dt)
        running_var *= 1 - momentum
        running_var += (momentum * var * (m / (m - 1))).astype(dt)
    else:
        xc = x - running_mean[:, None, None]
        var = running_var
    inv_std = (1.0 / np.sqrt(var + dt.type(eps))).astype(dt)  # (C,)
    xhat = xc * inv_std[:, None, None]
    y = xhat * gamma[:, None, None] + beta[:, None, None]
    return y, (xhat, inv_std, gamma, bool(training))


def batchnorm2d_backward(dy, cache):
    """Backward pass of :func:`batchnorm2d_forward`.

    Returns
    -------
    dx : ndarray, (N, C, H, W)
    dgamma, dbeta : ndarray, (C,)

    Notes
    -----
    In training mode the batch statistics depend on ``x``, which gives the
    familiar three-term formula::

        dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

    with means over (N, H, W) and ``dxhat = dy * gamma``. In eval mode the
    statistics are constants, so ``dx = dy * gamma * inv_std``.
    """
    xhat, inv_std, gamma, training = cache
    check_float_array("dy", dy, ndim=4)
    check_shape("dy", dy, xhat.shape)
    check_same_dtype(dy=dy, xhat=xhat)
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = np.sum(dy * xhat, axis=(0, 2, 3))
    dxhat = dy * gamma[:, None, None]
    if training:
        mean_dxhat = dxhat.mean(axis=(0, 2, 3))[:, None, None]
        mean_dxhat_xhat = np.mean(dxhat * xhat, axis=(0, 2, 3))[:, None, None]
        dx = (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) * inv_std[:, None, None]
    else:
        dx = dxhat * inv_std[:, None, None]
    return dx, dgamma, dbeta


def fold_into_conv(w, b, gamma, beta, running_mean, running_var, eps=1e-5):
    """Fold an eval-mode BatchNorm that follows a conv into the conv's weights.

    ``BN(conv_w(x) + b) == conv_w'(x) + b'`` with ``w' = w * s[:, None, None, None]``,
    ``b' = b * s + h``, where ``(s, h)`` is the BN as an affine map (:func:`bn_affine`:
    ``s = gamma / sqrt(running_var + eps)``, ``h = beta - running_mean * s``).

    Parameters
    ----------
    w : ndarray, (T, C, kh, kw);  b : ndarray (T,) or None
    gamma, beta, running_mean, running_var : ndarray, (T,)

    Returns
    -------
    w_folded : (T, C, kh, kw);  b_folded : (T,)   (dtype of ``w``)
    """
    check_float_array("w", w, ndim=4)
    t = w.shape[0]
    for name, v in (("b", b), ("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if v is not None:
            check_float_array(name, v, ndim=1)
            check_shape(name, v, (t,))
    check_same_dtype(w=w, b=b, gamma=gamma, beta=beta, running_mean=running_mean,
                     running_var=running_var)
    s, h = bn_affine(gamma, beta, running_mean, running_var, eps)  # BN(v) = v * s + h
    b0 = np.zeros(t, dtype=w.dtype) if b is None else b
    return (w * s[:, None, None, None]).astype(w.dtype), (b0 * s + h).astype(w.dtype)


def batchnorm2d_inference(x, gamma, beta, running_mean, running_var, eps=1e-5, relu=False):
    """Eval-mode batch normalisation, optionally followed by a ReLU, in one pass.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    gamma, beta, running_mean, running_var : ndarray, (C,), dtype of ``x``
    eps : float > 0
    relu : bool
        True returns ``max(BN(x), 0)``: the BN-ReLU pair that precedes every
        convolution of a pre-activation ResNet.

    Returns
    -------
    y : ndarray, (N, C, H, W), dtype of ``x``; no cache (inference only).
        Equals ``batchnorm2d_forward(x, ..., training=False)[0]`` (then
        ``relu_forward``) up to float rounding.

    Notes
    -----
    With ``s = gamma / sqrt(running_var + eps)`` and ``h = beta - running_mean * s``
    (the same per-channel affine map :func:`fold_into_conv` folds into a conv)::

        y[n, c, i, j] = x[n, c, i, j] * s[c] + h[c]          (then max(., 0))

    :func:`batchnorm2d_forward` in eval mode makes three passes and keeps
    ``xhat`` for a backward pass; with the ReLU as a separate module that is
    five passes over the activations, which took a third of a ResNet-20's eval
    forward; this loop takes one.
    """
    _check_bn_args(x, gamma, beta, running_mean, running_var)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"relu must be a bool, got {type(relu).__name__}")
    return batchnorm2d_inference_unchecked(x, gamma, beta, running_mean, running_var, eps,
                                           bool(relu))


def batchnorm2d_inference_unchecked(x, gamma, beta, running_mean, running_var, eps, relu):
    """:func:`batchnorm2d_inference` without the argument checks, for callers that made
    them (``BatchNorm2d.inference``: at batch 1 the checks cost as much as the pass)."""
    s, h = bn_affine(gamma, beta, running_mean, running_var, eps)
    return affine_relu_unchecked(x, s, h, relu)


def bn_affine(gamma, beta, running_mean, running_var, eps):
    """``(s, h)``: eval-mode BN as the per-channel affine map ``x * s + h``.

    ``s = gamma / sqrt(running_var + eps)``, ``h = beta - running_mean * s``, in the
    dtype of ``gamma`` (the map :func:`fold_into_conv` folds into a conv).
    """
    dt = gamma.dtype
    s = (gamma / np.sqrt(running_var + dt.type(eps))).astype(dt)
    return s, (beta - running_mean * s).astype(dt)


def affine_relu_unchecked(x, s, h, relu=True):
    """``max(x * s[c] + h[c], 0)`` (or without the max), one pass; ``x`` (N, C, H, W)."""
    n, c, hh, ww = x.shape
    y = np.empty((n, c, hh, ww), dtype=x.dtype)
    _affine_relu(np.ascontiguousarray(x).reshape(n, c, hh * ww), s, h, relu,
                 y.reshape(n, c, hh * ww))
    return y


@njit(inline="always")
def affine_relu_value(v, a, b, zero):
    """``max(v * a + b, 0)`` for one value: a multiply and an add, not an FMA; NaN stays
    NaN, as ``np.maximum``.  The folded BN-ReLU, shared by every Numba kernel that
    applies one (``lccl_ref.fast`` spells the same in vectors of LLVM IR)."""
    v = v * a + b
    return zero if v <= zero else v


@njit(cache=True)
def _affine_relu(x, s, h, relu, y):
    """``y[n, c, :] = x[n, c, :] * s[c] + h[c]``, then ``max(., 0)`` if ``relu``; (N, C, H*W)."""
    zero = x.dtype.type(0)
    for c in range(x.shape[1]):
        a = s[c]
        b = h[c]
        for n in range(x.shape[0]):
            src, dst = x[n, c], y[n, c]
            if relu:
                for e in range(src.shape[0]):
                    dst[e] = affine_relu_value(src[e], a, b, zero)
            else:
                for e in range(src.shape[0]):
                    dst[e] = src[e] * a + b
