"""2-D convolution (cross-correlation, as in every deep-learning library).

Shapes follow PyTorch so results compare one to one::

    x : (N, C, H, W)      w : (T, C, kh, kw)      b : (T,) or None
    y : (N, T, Ho, Wo)    Ho = (H + 2*ph - kh) // sh + 1,  Wo likewise

    y[n, t, i, j] = b[t] + sum_{c, p, q} w[t, c, p, q] * xpad[n, c, i*sh + p, j*sw + q]

Cost: ``N * Ho * Wo * T * C * kh * kw`` multiply-accumulates (the paper's
``XYTk^2C`` per image, Table "Cost and speed-up", row "plain conv").

Variants
--------
``conv2d_forward`` / ``conv2d_backward``
    im2col into channel-last rows, then one GEMM (BLAS).
``conv2d_naive``
    The algorithmic reference: the sum above, one output cell at a time.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_float_array, check_same_dtype, check_shape, conv_output_size, pair
from .im2col import col2im, im2col


def _check_conv_args(x, w, b, stride, padding):
    check_float_array("x", x, ndim=4)
    check_float_array("w", w, ndim=4)
    if b is not None:
        check_float_array("b", b, ndim=1)
    check_same_dtype(x=x, w=w, b=b)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"channel mismatch: x has C={x.shape[1]} channels (shape {x.shape}) but "
            f"w expects C={w.shape[1]} (shape {w.shape}, layout (T, C, kh, kw))"
        )
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b must have shape ({w.shape[0]},) to match w, got {b.shape}")
    s = pair("stride", stride, 1)
    p = pair("padding", padding, 0)
    ho, wo = conv_output_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], s, p)
    return s, p, ho, wo


def weight_matrix(w: np.ndarray) -> np.ndarray:
    """(T, C, kh, kw) -> (kh*kw*C, T), the row order of :func:`im2col`'s columns."""
    t = w.shape[0]
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(-1, t)


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass of a 2-D convolution.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (T, C, kh, kw), same dtype as ``x``
    b : ndarray, (T,), or None
    stride, padding : int or (int, int)

    Returns
    -------
    y : ndarray, (N, T, Ho, Wo), dtype of ``x``
    cache : tuple
        What :func:`conv2d_backward` needs: the im2col rows, ``w``, whether
        there is a bias, the input shape, stride and padding.
    """
    s, p, ho, wo = _check_conv_args(x, w, b, stride, padding)
    n = x.shape[0]
    t, _, kh, kw = w.shape
    cols = im2col(x, (kh, kw), s, p).reshape(n * ho * wo, -1)  # (N*Ho*Wo, kh*kw*C)
    y = cols @ weight_matrix(w)  # (N*Ho*Wo, T)
    if b is not None:
        y += b
    y = np.ascontiguousarray(y.reshape(n, ho, wo, t).transpose(0, 3, 1, 2))  # (N, T, Ho, Wo)
    return y, (cols, w, b is not None, x.shape, s, p)


def conv2d_backward(dy, cache):
    """Backward pass of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : ndarray, (N, T, Ho, Wo), upstream gradient, dtype of the forward input
    cache : from :func:`conv2d_forward`

    Returns
    -------
    dx : ndarray, (N, C, H, W)
    dw : ndarray, (T, C, kh, kw)
    db : ndarray, (T,), or None when the forward pass had no bias
    """
    cols, w, has_bias, x_shape, s, p = cache
    t, c, kh, kw = w.shape
    n = x_shape[0]
    ho_wo = cols.shape[0] // n
    check_float_array("dy", dy, ndim=4)
    check_same_dtype(w=w, dy=dy)
    if dy.shape[0] != n or dy.shape[1] != t or dy.shape[2] * dy.shape[3] != ho_wo:
        raise ValueError(f"dy shape {dy.shape} does not match the forward output")
    ho, wo = dy.shape[2], dy.shape[3]
    check_shape("dy", dy, (n, t, ho, wo))
    dy_rows = np.ascontiguousarray(dy.transpose(0, 2, 3, 1)).reshape(-1, t)  # (N*Ho*Wo, T)
    dw = (cols.T @ dy_rows).reshape(kh, kw, c, t).transpose(3, 2, 0, 1)  # (T, C, kh, kw)
    dcols = (dy_rows @ weight_matrix(w).T).reshape(n, ho, wo, kh, kw, c)
    dx = col2im(dcols, x_shape, (kh, kw), s, p)  # (N, C, H, W)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, np.ascontiguousarray(dw), db


def conv2d_naive(x, w, b=None, stride=1, padding=0):
    """Reference convolution: the defining sum, one output cell at a time.

    Same arguments and output ``y`` as :func:`conv2d_forward` (no cache).
    """
    (sh, sw), (ph, pw), ho, wo = _check_conv_args(x, w, b, stride, padding)
    n = x.shape[0]
    t, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, t, ho, wo), dtype=x.dtype)
    for b_ in range(n):
        for o in range(t):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b_, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    y[b_, o, i, j] = np.sum(patch * w[o])
            if b is not None:
                y[b_, o] += b[o]
    return y
