"""Fully connected layer, PyTorch layout: ``y = x @ w.T + b`` with ``w`` (out, in)."""

from __future__ import annotations

from ..checks import check_float_array, check_same_dtype, check_shape


def linear_forward(x, w, b=None):
    """Linear forward.

    Parameters
    ----------
    x : ndarray, (N, D_in), float32 or float64
    w : ndarray, (D_out, D_in), dtype of ``x``
    b : ndarray, (D_out,), or None

    Returns
    -------
    y : ndarray, (N, D_out);  cache : (x, w, has_bias)

    Cost: ``N * D_in * D_out`` multiply-accumulates.
    """
    check_float_array("x", x, ndim=2)
    check_float_array("w", w, ndim=2)
    if b is not None:
        check_float_array("b", b, ndim=1)
        check_shape("b", b, (w.shape[0],))
    check_same_dtype(x=x, w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"feature mismatch: x has {x.shape[1]} features (shape {x.shape}) but w expects "
            f"{w.shape[1]} (shape {w.shape}, layout (out, in))"
        )
    y = x @ w.T  # (N, D_out)
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_backward(dy, cache):
    """Linear backward: ``dx = dy @ w``, ``dw = dy.T @ x``, ``db = dy.sum(0)`` (or None)."""
    x, w, has_bias = cache
    check_float_array("dy", dy, ndim=2)
    check_shape("dy", dy, (x.shape[0], w.shape[0]))
    check_same_dtype(x=x, dy=dy)
    return dy @ w, dy.T @ x, (dy.sum(axis=0) if has_bias else None)
