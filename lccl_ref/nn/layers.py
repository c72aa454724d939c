"""Thin modules over :mod:`lccl_ref.functional`: they hold parameters and caches.

Each module calls its forward/backward pair and keeps the cache on itself; start at
:class:`Conv2d`.  In eval mode a :class:`Conv2d` may hand its forward to an
``accelerator`` (None by default; :func:`lccl_ref.fast.accelerate` sets one).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..checks import (
    MAX_PADDING,
    check_float_array,
    conv_geometry,
    conv_output_size,
    pair,
)
from ..functional.batchnorm import batchnorm2d_inference_unchecked
from .module import Module, Parameter, _dtype, _positive_int, _rng


class Conv2d(Module):
    """2-D convolution with weight ``(out_channels, in_channels, kh, kw)``.

    He-normal initialisation (``std = sqrt(2 / (C*kh*kw))``), no bias by default
    because every convolution in a pre-activation ResNet is followed by a BN.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=False, rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = pair("kernel_size", kernel_size, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        if max(self.padding) > MAX_PADDING:
            raise ValueError(f"padding must be <= {MAX_PADDING}, got {padding!r}")
        dt = _dtype(dtype)
        kh, kw = self.kernel_size
        std = np.sqrt(2.0 / (in_channels * kh * kw))
        w = _rng(rng).normal(0.0, std, (out_channels, in_channels, kh, kw)).astype(dt)
        self.weight = Parameter(w)
        self.bias = Parameter(np.zeros(out_channels, dt)) if bias else None
        self._cache = None
        self.last_input_shape = None
        self.train_macs = {"dense": 0, "executed": 0}  # training passes, see count_macs

    #: Eval-mode hook: None (the teaching path), or a callable ``accelerator(conv, x)``
    #: returning ``y`` (or None: "not mine, run the teaching path").
    #: :func:`lccl_ref.fast.accelerate` sets it; see docs/architecture.md.
    accelerator = None

    def forward(self, x):
        """``F.conv2d_forward`` (im2col + GEMM), its cache kept for :meth:`backward`, in
        training and eval mode alike; in eval mode an :attr:`accelerator`, when set, may
        compute ``y`` instead."""
        if not self.training and self.accelerator is not None:
            self.check_input(x)
            y = self.accelerator(self, x)
            if y is not None:
                self.keep_eval_input(x, x.shape)
                return y
        b = None if self.bias is None else self.bias.data
        y, self._cache = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding)
        self.last_input_shape = x.shape  # read by lccl_ref.flops to build per-layer tables
        if self.training:
            self.count_macs(self.macs_per_pass(y.shape))
        return y

    def macs_per_pass(self, y_shape) -> int:
        """MACs of one dense pass (the forward, dX or dW) for an output of ``y_shape``."""
        kh, kw = self.kernel_size
        return int(np.prod(y_shape)) * self.in_channels * kh * kw

    def count_macs(self, dense, executed=None):
        """Add a training pass's multiply-accumulates to :attr:`train_macs`: ``dense``
        (what a plain conv runs) and ``executed`` (what ran; ``dense`` when None)."""
        self.train_macs["dense"] += int(dense)
        self.train_macs["executed"] += int(dense if executed is None else executed)

    def check_input(self, x):
        """``x`` must be (N, in_channels, H, W) of the module's dtype, with room for the kernel."""
        check_float_array("x", x, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (N, {self.in_channels}, H, W), got {x.shape}")
        if x.dtype != self.weight.data.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the module is "
                            f"{self.weight.data.dtype} (see Module.astype)")
        conv_geometry(x.shape[2], x.shape[3], *self.kernel_size, self.stride, self.padding)

    def keep_eval_input(self, x, shape):
        """Remember the input of an eval forward computed elsewhere (an accelerator): ``x``,
        or a callable that makes it, for a later :meth:`backward` (called only then),
        and its ``shape`` for the per-layer MAC tables."""
        self._cache = ("eval input", x)
        self.last_input_shape = shape

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError("Conv2d.backward needs a forward first")
        if isinstance(self._cache[0], str):  # after an accelerated forward: the cache now
            x = self._cache[1]
            x = x() if callable(x) else x
            b = None if self.bias is None else self.bias.data
            _, self._cache = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding)
        dx, dw, db = F.conv2d_backward(dy, self._cache)
        self.count_macs(2 * self.macs_per_pass(dy.shape))  # dX and dW
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def output_shape(self, h, w):
        """(Ho, Wo) for an (H, W) input."""
        return conv_output_size(h, w, *self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class BatchNorm2d(Module):
    """BatchNorm over (N, H, W) per channel; gamma=1, beta=0, running mean 0, var 1."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5, dtype=np.float32):
        super().__init__()
        c = _positive_int("num_features", num_features)
        dt = _dtype(dtype)
        self.num_features, self.momentum, self.eps = c, float(momentum), float(eps)
        self.weight = Parameter(np.ones(c, dt), decay=False)  # gamma
        self.bias = Parameter(np.zeros(c, dt), decay=False)  # beta
        self.register_buffer("running_mean", np.zeros(c, dt))
        self.register_buffer("running_var", np.ones(c, dt))
        self._cache = None

    def forward(self, x):
        """Training mode: batch statistics, cache for :meth:`backward`.  Eval mode:
        :meth:`inference` (running statistics, one pass)."""
        if not self.training:
            return self.inference(x)
        y, self._cache = F.batchnorm2d_forward(
            x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            self.training, self.momentum, self.eps)
        return y

    def eval_affine(self, x=None):
        """``(s, h)``: this BN in eval mode, ``x * s + h`` per channel (``F.batchnorm.bn_affine``).

        Given ``x``, the input the BN stands for, it is kept for a later
        :meth:`backward`, as :meth:`inference` keeps it: a block that folds its
        BN-ReLU into the next convolution's input copy never calls
        :meth:`inference`.
        """
        if x is not None:
            self._cache = ("eval input", x)
        return F.batchnorm.bn_affine(self.weight.data, self.bias.data, self.running_mean,
                                     self.running_var, self.eps)

    def inference(self, x, relu=False):
        """``F.batchnorm2d_inference``: eval-mode BN (then ReLU if ``relu``), one pass.

        Keeps only a reference to ``x``; a later :meth:`backward` (gradients
        through a frozen-statistics BN) recomputes the eval-mode cache from it.
        """
        check_float_array("x", x, ndim=4)
        if x.shape[1] != self.num_features:
            raise ValueError(f"x must have shape (N, {self.num_features}, H, W), got {x.shape}")
        if x.dtype != self.weight.data.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the module is "
                            f"{self.weight.data.dtype} (see Module.astype)")
        y = batchnorm2d_inference_unchecked(x, self.weight.data, self.bias.data,
                                            self.running_mean, self.running_var, self.eps,
                                            bool(relu))
        self._cache = ("eval input", x)
        return y

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError("BatchNorm2d.backward needs a forward first")
        if isinstance(self._cache[0], str):  # recompute what an eval-mode forward caches
            _, self._cache = F.batchnorm2d_forward(
                self._cache[1], self.weight.data, self.bias.data, self.running_mean,
                self.running_var, False, self.momentum, self.eps)
        dx, dgamma, dbeta = F.batchnorm2d_backward(dy, self._cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx

    def extra_repr(self):
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"


class ReLU(Module):
    """``max(x, 0)``; remembers its mask for backward."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def forward(self, x):
        if not self.training:  # one pass; the mask is made only if backward is called
            check_float_array("x", x)
            y = np.maximum(x, x.dtype.type(0))
            self.keep_output(y)
            return y
        y, self._cache = F.relu_forward(x)
        return y

    def keep_output(self, y):
        """Remember the output ``y = max(x, 0)`` of a forward done elsewhere (a fused
        BN-ReLU); :meth:`backward` takes the mask ``x > 0`` as ``y > 0``.  ``y`` may be
        a callable that makes the output, called only if :meth:`backward` is."""
        self._cache = ("eval output", y)

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError("ReLU.backward needs a forward first")
        if isinstance(self._cache[0], str):
            y = self._cache[1]
            y = y() if callable(y) else y
            self._cache = (y > 0, y.dtype)
        return F.relu_backward(dy, self._cache)


class Linear(Module):
    """``y = x @ W.T + b`` with ``W`` (out_features, in_features), PyTorch's init."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        dt = _dtype(dtype)
        bound = 1.0 / np.sqrt(in_features)
        g = _rng(rng)
        self.weight = Parameter(g.uniform(-bound, bound, (out_features, in_features)).astype(dt))
        self.bias = Parameter(g.uniform(-bound, bound, out_features).astype(dt)) if bias else None
        self._cache = None
        self.last_input_shape = None
        self.train_macs = {"dense": 0, "executed": 0}  # training passes, as Conv2d's

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        y, self._cache = F.linear_forward(x, self.weight.data, b)
        self.last_input_shape = x.shape
        if self.training:
            self._count(y.size * self.in_features)
        return y

    def _count(self, macs):
        self.train_macs["dense"] += macs
        self.train_macs["executed"] += macs

    def backward(self, dy):
        self._count(2 * dy.size * self.in_features)  # dX and dW
        dx, dw, db = F.linear_backward(dy, self._cache)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class GlobalAvgPool(Module):
    """(N, C, H, W) -> (N, C): the mean over each feature map."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def forward(self, x):
        y, self._cache = F.global_avg_pool_forward(x)
        return y

    def backward(self, dy):
        return F.global_avg_pool_backward(dy, self._cache)
