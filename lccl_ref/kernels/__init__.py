"""Numba kernels for the gated convolution of an LCCL layer.

``gated_conv2d(x, w, mask, b=None, stride=1, padding=0, method="auto") -> (y, macs)``
computes a convolution only at the output cells where ``mask`` is true and
counts the multiply-accumulates it executes.  See :mod:`.gated` for which
variant serves which mask kind.
"""

from .gated import METHODS, gated_conv2d

__all__ = ["METHODS", "gated_conv2d"]
