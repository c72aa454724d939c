"""Global average pooling: (N, C, H, W) -> (N, C), the mean over H and W."""

from __future__ import annotations

import numpy as np

from ..checks import check_float_array, check_shape


def global_avg_pool_forward(x):
    """``y[n, c] = mean(x[n, c])``.  Returns ``(y, cache)``, ``cache = (x.shape, x.dtype)``."""
    check_float_array("x", x, ndim=4)
    return x.mean(axis=(2, 3)), (x.shape, x.dtype)


def global_avg_pool_backward(dy, cache):
    """Spread each gradient evenly over the H*W cells it averaged."""
    (n, c, h, w), dtype = cache
    check_float_array("dy", dy, ndim=2)
    check_shape("dy", dy, (n, c))
    if dy.dtype != dtype:
        raise TypeError(f"dy has dtype {dy.dtype} but the forward input x had dtype {dtype}")
    return np.broadcast_to((dy / dy.dtype.type(h * w))[:, :, None, None], (n, c, h, w)).copy()
