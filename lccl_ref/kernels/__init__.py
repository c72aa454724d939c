"""Numba kernels of an LCCL layer: plain ``@njit`` a student can read top to bottom.

``cheap_conv2d(u, w_f, b_f, stride, padding) -> z`` is the cheap branch's convolution
(its BN folded in; :mod:`.cheap`).  ``gated_conv2d(x, w, mask, ...) -> (y, macs)``
computes the expensive convolution only where the mask is true and counts the
multiply-accumulates it executes (:mod:`.gated`, which picks :mod:`.direct`,
:mod:`.gather` or :mod:`.tiled` by the mask's kind).  ``lccl_ref.fast`` has faster
variants of both, tested against these.  In training, ``gated_conv2d_forward`` /
``gated_conv2d_backward`` (:mod:`.gated_train`) run the expensive convolution's
forward, ``dW`` and ``dX`` over the active cells only, exactly.
"""

from .cheap import cheap_conv2d, cheap_conv2d_backward
from .gated import METHODS, TILED_BELOW, choose_method, gated_conv2d
from .gated_train import GatedConvCache, gated_conv2d_backward, gated_conv2d_forward

__all__ = ["METHODS", "TILED_BELOW", "GatedConvCache", "cheap_conv2d", "cheap_conv2d_backward",
           "choose_method", "gated_conv2d", "gated_conv2d_backward", "gated_conv2d_forward"]
