"""Pure forward/backward pairs, NCHW, PyTorch conventions: the paper's equations in NumPy.

Each ``*_forward`` returns ``(out, cache)`` and its ``*_backward`` takes
``(dout, cache)``; every function keeps its input dtype (float32 or float64)
and refuses mixed dtypes.
"""

from .activations import relu_backward, relu_forward
from .batchnorm import (
    batchnorm2d_backward,
    batchnorm2d_forward,
    batchnorm2d_inference,
    fold_into_conv,
)
from .conv import conv2d_backward, conv2d_forward, conv2d_naive
from .gate import (
    GATES,
    check_gate_init,
    density_backward,
    density_forward,
    gate_backward,
    gate_forward,
    gate_mask,
)
from .im2col import col2im, col2im_naive, im2col, im2col_naive
from .linear import linear_backward, linear_forward
from .loss import softmax_cross_entropy
from .pooling import global_avg_pool_backward, global_avg_pool_forward
from .product import product_backward, product_forward

__all__ = [
    "GATES",
    "density_backward",
    "density_forward",
    "check_gate_init",
    "gate_backward",
    "gate_forward",
    "gate_mask",
    "batchnorm2d_backward",
    "batchnorm2d_forward",
    "batchnorm2d_inference",
    "col2im",
    "col2im_naive",
    "conv2d_backward",
    "conv2d_forward",
    "conv2d_naive",
    "fold_into_conv",
    "global_avg_pool_backward",
    "global_avg_pool_forward",
    "im2col",
    "im2col_naive",
    "linear_backward",
    "linear_forward",
    "product_backward",
    "product_forward",
    "relu_backward",
    "relu_forward",
    "softmax_cross_entropy",
]
