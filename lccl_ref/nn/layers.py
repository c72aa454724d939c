"""Thin modules over :mod:`lccl_ref.functional`: they hold parameters and caches."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..checks import FLOAT_DTYPES, MAX_PADDING, check_float_array, conv_geometry, pair
from ..fast.dense import DENSE_METHODS, conv2d_inference_unchecked
from ..functional.batchnorm import batchnorm2d_inference_unchecked
from .module import Module, Parameter


def _rng(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")


def check_pre(pre, channels, dtype):
    """``pre`` must be a pair ``(s, h)`` of C-contiguous (C,) arrays of the module's dtype."""
    if not (isinstance(pre, tuple) and len(pre) == 2):
        raise TypeError(f"pre must be a pair (s, h) of arrays (BatchNorm2d.eval_affine()), "
                        f"got {type(pre).__name__}")
    for name, v in zip(("s", "h"), pre):
        check_float_array(f"pre[{name}]", v, ndim=1)
        if v.shape != (channels,) or v.dtype != dtype or not v.flags.c_contiguous:
            raise ValueError(f"pre's {name} must be a contiguous ({channels},) array of dtype "
                             f"{dtype}, got shape {v.shape}, dtype {v.dtype}")


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


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

    #: Dense kernel of eval-mode forwards, see :func:`lccl_ref.kernels.conv2d_inference`
    #: ("auto": the faster of "im2col" and "vector" for each shape, timed once).
    inference_method = "auto"

    def forward(self, x, pre=None):
        """Training mode: ``F.conv2d_forward``, cache for :meth:`backward`.  Eval mode:
        ``kernels.conv2d_inference`` (the faster dense kernel, no im2col cache kept).

        ``pre`` (eval mode only): None, or ``(s, h)`` (C,) arrays, and the conv reads
        ``max(x * s[c] + h[c], 0)``: the BN-ReLU before it, applied in the kernel's
        input copy (``BatchNorm2d.eval_affine``; see ``PreActBlock``).
        """
        b = None if self.bias is None else self.bias.data
        if self.training:
            if pre is not None:
                raise ValueError("pre (a BN-ReLU folded into the input copy) is for eval mode")
            y, self._cache = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding)
        else:  # x checked against the module's own weight, then the unchecked kernel
            self._check_eval_input(x, pre)
            y = conv2d_inference_unchecked(x, self.weight.data, b, self.stride, self.padding,
                                           self.inference_method, pre)
            self._cache = ("eval input", x, pre)
        self.last_input_shape = x.shape  # read by lccl_ref.flops to build per-layer tables
        return y

    def _check_eval_input(self, x, pre=None):
        check_float_array("x", x, ndim=4)
        if pre is not None:
            check_pre(pre, self.in_channels, self.weight.data.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (N, {self.in_channels}, H, W), got {x.shape}")
        if x.dtype != self.weight.data.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the module is "
                            f"{self.weight.data.dtype} (see Module.astype)")
        conv_geometry(x.shape[2], x.shape[3], *self.kernel_size, self.stride, self.padding)
        if self.inference_method not in DENSE_METHODS:
            raise ValueError(f"inference_method must be one of {DENSE_METHODS}, "
                             f"got {self.inference_method!r}")

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError("Conv2d.backward needs a forward first")
        if isinstance(self._cache[0], str):  # after an eval forward: build the cache now
            b = None if self.bias is None else self.bias.data
            _, x, pre = self._cache
            if pre is not None:
                x = F.batchnorm.affine_relu_unchecked(x, *pre)
            _, self._cache = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding)
        dx, dw, db = F.conv2d_backward(dy, self._cache)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def output_shape(self, h, w):
        """(Ho, Wo) for an (H, W) input."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

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

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        y, self._cache = F.linear_forward(x, self.weight.data, b)
        self.last_input_shape = x.shape
        return y

    def backward(self, dy):
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
