"""Numba kernels for an LCCL layer at inference.

``gated_conv2d(x, w, mask, b=None, stride=1, padding=0, method="auto") -> (y, macs)``
computes a convolution only at the output cells where ``mask`` is true and
counts the multiply-accumulates it executes.  See :mod:`.gated` for which
variant serves which mask kind.

``cheap_single(x, w, b, stride, padding) -> (v, mask, active)`` is the cheap
branch of a shared-mask LCCL (one output channel): conv, bias, ReLU, mask and
its count in one call (:mod:`.cheap`).

``lccl_shared_eval(x, w, w_cheap, b_cheap, stride, padding, cheap_padding)`` does
both in one call for a shared-mask LCCL layer (:mod:`.fused`).

``conv2d_inference(x, w, b, stride, padding)`` is the dense convolution of
eval-mode ``Conv2d`` layers: the faster of im2col + GEMM and the ``"vector"``
kernel at density 1 (:mod:`.dense`), so that plain networks, the baseline of
every speed-up, run as fast as the library can make them.
"""

from ..fast.cheap import cheap_single
from ..fast.dense import conv2d_inference
from ..fast.fused import lccl_shared_eval
from .gated import METHODS, gated_conv2d

__all__ = ["METHODS", "cheap_single", "conv2d_inference", "gated_conv2d", "lccl_shared_eval"]
