"""The fast path's gated conv: the teaching kernels plus "vector", the faster chosen by timing.

:func:`gated_conv2d` takes the arguments of :func:`lccl_ref.kernels.gated_conv2d` and
adds ``method="vector"`` for shared masks (:mod:`.vector`: all T outputs of a few
active positions at once, no im2col, no GEMM).  ``"auto"`` takes the teaching choice
for a per-channel mask (``kernels.choose_method``: tiled when few cells are open, else
the dense conv and the mask); for a shared one the faster of ``"vector"`` and ``"gather"`` for
the call's shape, timed at its first call (:mod:`.tune`, question ``"shared"``): the
vector kernel wins at small channel counts, the BLAS GEMM of ``"gather"`` where
reading the weights dominates (docs/kernel-notes.md, "vector").  The other methods
are the teaching kernels, which this is tested against.
"""

from __future__ import annotations

from ..checks import check_conv_args, effective_stride
from ..functional.batchnorm import affine_relu_unchecked
from ..kernels import gated as teaching
from .tune import fastest
from .vector import vector_conv

FAST_METHODS = ("auto", "direct", "gather", "tiled", "dense", "vector")


def gated_conv2d(x, w, mask, b=None, stride=1, padding=0, method="auto", *, scale=None):
    """:func:`lccl_ref.kernels.gated_conv2d` with ``method`` in :data:`FAST_METHODS`
    (``"vector"`` needs a shared mask; ``"auto"``: see the module header).

    Returns ``(y, macs)`` as the teaching function does: the same ``y`` up to float
    rounding, the same MACs.
    """
    (sh, sw), p, ho, wo = check_conv_args(x, w, b, stride, padding)
    per_channel = teaching.check_mask(mask, x.shape[0], w.shape[0], ho, wo)
    if method not in FAST_METHODS:
        raise ValueError(f"method must be one of {FAST_METHODS}, got {method!r}")
    if method in ("gather", "vector") and per_channel:
        raise ValueError(f"method={method!r} needs a shared mask (N, Ho, Wo), got a "
                         "per-channel mask")
    if scale is not None:
        teaching.check_scale(scale, mask, x.dtype)
    return gated_conv2d_unchecked(x, w, mask, b, (sh, sw), p, method, scale)


def gated_conv2d_unchecked(x, w, mask, b, stride, padding, method="auto", scale=None,
                           pre=None):
    """:func:`gated_conv2d` without the argument checks; ``pre``: None, or ``(s, h)``
    (C,) arrays, and the conv reads ``max(x * s[c] + h[c], 0)`` (the BN-ReLU before it,
    applied in the vector kernel's input copy, else as a pass of its own)."""
    stride = effective_stride(x.shape[2], x.shape[3], stride, padding)
    if method == "auto" and mask.ndim == 3:
        key = (x.shape, w.shape, stride, tuple(padding), x.dtype.str, scale is not None,
               pre is not None)
        method = fastest("shared", key, {
            m: (lambda m=m: gated_conv2d_unchecked(x, w, mask, b, stride, padding, m, scale,
                                                   pre))
            for m in ("vector", "gather")})
    if method == "vector":
        return vector_conv(x, w, b, stride, padding, mask, scale, pre)
    if pre is not None:
        x = affine_relu_unchecked(x, *pre)
    return teaching.gated_conv2d_unchecked(x, w, mask, b, stride, padding, method, scale)


__all__ = ["FAST_METHODS", "gated_conv2d", "gated_conv2d_unchecked"]
