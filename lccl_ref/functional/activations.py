"""ReLU: ``y = max(x, 0)``, and its gradient ``dx = dy * (x > 0)``."""

from __future__ import annotations

import numpy as np

from ..checks import check_float_array, check_shape


def relu_forward(x):
    """ReLU forward.

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64

    Returns
    -------
    y : ndarray, shape and dtype of ``x``
    cache : ``(mask, dtype)``: the boolean mask ``x > 0`` and the dtype of ``x``
    """
    check_float_array("x", x)
    mask = x > 0
    return np.where(mask, x, x.dtype.type(0)), (mask, x.dtype)


def relu_backward(dy, cache):
    """ReLU backward: ``dx = dy * (x > 0)`` (the subgradient at 0 is taken as 0)."""
    mask, dtype = cache
    check_float_array("dy", dy)
    check_shape("dy", dy, mask.shape)
    if dy.dtype != dtype:
        raise TypeError(f"dy has dtype {dy.dtype} but the forward input x had dtype {dtype}")
    return np.where(mask, dy, dy.dtype.type(0))
