"""``conv2d_inference``: the dense convolution at inference, by the faster of two kernels.

An LCCL network's speed-up is measured against the same network without LCCL, so the
plain convolutions must be as fast as the library can make them: a gated kernel that
happened to be faster per MAC than the dense conv would otherwise pass its own speed
off as the saving of the mask.  Two dense kernels are at hand: ``"im2col"``, the
teaching path's :func:`lccl_ref.functional.conv2d_forward`, and ``"vector"``, the
register-blocked kernel of :mod:`.vector` at every position.  Neither wins on every
layer (the vector kernel takes 0.6-0.8 of im2col's time on ResNet-20's layers, but
1.2 at 256@14x14), so ``method="auto"`` times both the first time it meets a shape
(:mod:`.tune`, question ``"dense"``) and uses the faster from then on.  Both give the
same result up to float rounding and the dense MACs ``N*Ho*Wo*T*C*kh*kw``.  ``pre``
(unchecked entry only): the conv reads ``max(x * s[c] + h[c], 0)``, applied in the
vector kernel's input copy, or as a pass of its own before im2col.
"""

from __future__ import annotations

from ..checks import check_conv_args, effective_stride
from ..functional import conv2d_forward
from ..functional.batchnorm import affine_relu_unchecked
from .tune import fastest
from .vector import vector_conv

DENSE_METHODS = ("auto", "im2col", "vector")
#: Timed calls per kernel when ``"auto"`` meets a new shape (after one warm-up call).
TRIALS = 3


def conv2d_inference(x, w, b=None, stride=1, padding=0, method="auto"):
    """Dense 2-D convolution for inference (no cache), by the faster kernel.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (T, C, kh, kw), dtype of ``x``
    b : ndarray, (T,), or None
    stride, padding : int or (int, int)
    method : {"auto", "im2col", "vector"}
        See the module header.

    Returns
    -------
    y : ndarray, (N, T, Ho, Wo), dtype of ``x``: ``conv2d_forward(x, w, b, ...)[0]``
        up to float rounding.
    """
    stride, padding, _, _ = check_conv_args(x, w, b, stride, padding)
    if method not in DENSE_METHODS:
        raise ValueError(f"method must be one of {DENSE_METHODS}, got {method!r}")
    return conv2d_inference_unchecked(x, w, b, stride, padding, method)


def conv2d_inference_unchecked(x, w, b, stride, padding, method="auto", pre=None):
    """:func:`conv2d_inference` without the argument checks (``stride``, ``padding`` int
    pairs); ``pre``: None, or ``(s, h)`` (C,) arrays, the BN-ReLU read through."""
    stride = effective_stride(x.shape[2], x.shape[3], stride, padding)
    if method == "auto":
        key = (x.shape, w.shape, stride, padding, x.dtype.str, b is not None, pre is not None)
        method = fastest("dense", key, {
            m: (lambda m=m: _run(m, x, w, b, stride, padding, pre)) for m in ("im2col", "vector")
        }, TRIALS)
    return _run(method, x, w, b, stride, padding, pre)


def _run(method, x, w, b, stride, padding, pre):
    if method == "im2col":
        if pre is not None:  # the BN-ReLU as a pass of its own
            x = affine_relu_unchecked(x, *pre)
        return conv2d_forward(x, w, b, stride, padding)[0]
    return vector_conv(x, w, b, stride, padding, pre=pre)[0]  # every position, no mask


__all__ = ["DENSE_METHODS", "conv2d_inference", "conv2d_inference_unchecked"]
