"""``conv2d_inference``: the dense convolution at inference, by the faster of two kernels.

An LCCL network's speed-up is measured against the same network without
LCCL (``bench.plain_network``), so the plain convolutions must be as fast as
the library can make them: a gated kernel that happened to be faster per MAC
than the dense conv would otherwise pass its own speed off as the saving of
the mask.  Two dense kernels are at hand:

``"im2col"``
    :func:`lccl_ref.functional.conv2d_forward`: im2col (or shifted rows at
    small C) and BLAS GEMMs; it also keeps the cache a backward pass needs.
``"vector"``
    :func:`lccl_ref.kernels.gated_conv2d` with ``method="vector"`` and every
    position active: the register-blocked Numba kernel that computes the
    gated convolution of shared-mask LCCL layers, at density 1.

Measured (float32, one thread, vector / im2col time): 0.6-0.8 on ResNet-20's
layers at batch 128 and 1, 0.73 on ResNet-18's 64@56x56, but 0.99 at
128@28x28 and 1.23 at 256@14x14 (batch 1), where the weights no longer fit in
L2, and 0.5-0.64 again at 512@7x7 and 512@3x3.  No simple rule on the shape
picks the winner on every layer, so ``method="auto"`` times both kernels the
first time it meets a shape (one warm-up call each, then the best of
:data:`TRIALS` calls; :mod:`._tune`) and uses the faster from then on;
:data:`CHOICES` holds the decisions and the times they were based on.
Both kernels give the same result up to float rounding.

Multiply-accumulates are those of the dense convention ``N*Ho*Wo*T*C*kh*kw``
either way (the vector kernel counts them as it runs; ``im2col`` runs exactly
that GEMM).
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
#: ``{shape key: {"method": str, "ms": {method: best time}}}``, filled by ``"auto"``.
CHOICES: dict = {}


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
    """:func:`conv2d_inference` without the argument checks (``stride``, ``padding``
    as int pairs), for eval-mode ``Conv2d``, which checks ``x`` against its own weight.
    ``pre``: None, or ``(s, h)`` (C,) arrays: the conv reads ``max(x * s[c] + h[c], 0)``."""
    (sh, sw), (ph, pw) = effective_stride(x.shape[2], x.shape[3], stride, padding), padding
    ho = (x.shape[2] + 2 * ph - w.shape[2]) // sh + 1
    wo = (x.shape[3] + 2 * pw - w.shape[3]) // sw + 1
    if method == "auto":
        method = _choose(x, w, b, (sh, sw), (ph, pw), ho, wo, pre)
    return _run(method, x, w, b, (sh, sw), (ph, pw), ho, wo, pre)


def _run(method, x, w, b, stride, padding, ho, wo, pre):
    if method == "im2col":
        if pre is not None:  # the BN-ReLU as a pass of its own
            x = affine_relu_unchecked(x, *pre)
        return conv2d_forward(x, w, b, stride, padding)[0]
    return vector_conv(x, w, b, stride, padding, pre=pre)[0]  # every position, no mask


def _choose(x, w, b, stride, padding, ho, wo, pre):
    key = (x.shape, w.shape, stride, padding, x.dtype.str, b is not None, pre is not None)
    return fastest(CHOICES, key, {
        m: (lambda m=m: _run(m, x, w, b, stride, padding, ho, wo, pre))
        for m in ("im2col", "vector")
    }, TRIALS)


__all__ = ["CHOICES", "DENSE_METHODS", "conv2d_inference", "conv2d_inference_unchecked"]
