"""The cheap branch's convolution when it has one output channel (``kxkxCx1``, ``1x1xCx1``).

:class:`CheapConv2d` is a :class:`~lccl_ref.nn.Conv2d` whose training forward and
backward run :func:`lccl_ref.kernels.cheap_conv2d` and its backward instead of im2col +
GEMM: with one output channel the GEMM has one column, and the im2col copy of the
input (``k*k`` times its size) would cost as much as the expensive conv's own
(ResNet-20, 16@32x32, batch 128: 6 ms forward + backward against 21 ms).  Same
values, same gradients; in eval mode it is the plain ``Conv2d``.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from .layers import Conv2d


class CheapConv2d(Conv2d):
    """``Conv2d`` whose training passes use the cheap-branch kernels (see the module)."""

    _input = None  # the training forward's input, for backward

    def forward(self, x):
        self._input = None
        if not self.training:
            return super().forward(x)
        self.check_input(x)
        b = np.zeros(self.out_channels, x.dtype) if self.bias is None else self.bias.data
        y = kernels.cheap_conv2d(x, self.weight.data, b, self.stride, self.padding)
        self._input, self._cache, self.last_input_shape = x, None, x.shape
        self.count_macs(self.macs_per_pass(y.shape))
        return y

    def backward(self, dy):
        if self._input is None:
            return super().backward(dy)
        x, self._input = self._input, None
        dx, dw, db = kernels.cheap_conv2d_backward(dy, x, self.weight.data, self.stride,
                                                   self.padding)
        self.count_macs(2 * self.macs_per_pass(dy.shape))  # dX and dW
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx
