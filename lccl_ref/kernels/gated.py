"""``gated_conv2d``: the convolution computed only where a mask is true.

This is the expensive branch of an LCCL layer at inference (PAPER.md, "The
idea"): the cheap branch gives ``V' > 0``, and ``V = conv_W(U)`` is needed only
there, because ``O = V * V'`` is zero wherever ``V'`` is.

Variants (``method=``)
----------------------
``"direct"``
    The algorithmic reference (:mod:`.direct`): a plain loop over active
    output cells, one inner product each.  Both mask kinds.
``"gather"``
    Shared masks ``(N, Ho, Wo)`` only (:mod:`.gather`, as in SBNet and
    DynConv): gather the im2col rows of the active positions only, one dense
    BLAS GEMM per chunk, scatter back.  The GEMM keeps the dense conv's speed
    per MAC, so the time falls in proportion to the density.
``"tiled"``
    Both mask kinds (:mod:`.tiled`): per tile of 128 positions, im2col rows
    packed in cache, then for each channel the active cells' inner products
    computed eight at a time (one weight load serves eight MACs).  It is the
    only variant that saves time on per-channel masks, where there is no
    dense block for a GEMM.
``"vector"``
    Shared masks only (:mod:`.vector`): all ``T`` outputs of a few active
    positions at once, from a padded copy of each image, vectorised over
    ``T`` with the accumulators in registers.  No im2col rows, no GEMM, no
    channel-last transpose of ``x``.
``"auto"``
    ``"tiled"`` for per-channel masks.  For shared masks the faster of
    ``"vector"`` and ``"gather"`` for the call's shape, timed at the first
    call with that shape (:mod:`._tune`; :data:`SHARED_CHOICES` keeps the
    decisions and times).  No rule on the shape picks the winner everywhere.
    Measured (``benchmarks/bench_vector.py`` and one-off runs at other
    shapes; 3x3, float32, one core shared with other jobs, +-10 %),
    vector/gather time at r = 0.3 ... 1: 0.46-0.63 at 16@32x32 (batch 128
    and 1), 0.72-0.81 at 32@16x16 batch 128, 0.87-0.96 at 64@8x8 batch 128,
    0.90-0.98 at 64@56x56 batch 1, 0.72-0.80 at 16 -> 64 channels @16x16,
    0.88-0.94 at 64 -> 128 and 96 -> 96 @8x8, 0.96-1.01 at 128@28x28
    (batch 1 and 8), 1.04-1.10 at 256@14x14 batch 1, but about 0.5 at
    512@3x3 and 512@7x7 (batch 1), where both are bound by reading the
    9.4 MB of weights and gather's GEMMs on a few rows read them once per
    piece.  In float64 the vector blocks spill registers (r = 0.65, batch
    128: vector 35 ms, gather 21 ms at 64@8x8; 37 and 27 at 32@16x16; 39 and
    45 at 16@32x32).
    ``benchmarks/bench_gated.py`` compared ``"tiled"`` with ``"gather"`` on
    shared masks: on an idle core the gather-GEMM was faster on every ResNet
    shape (tiled/gather 1.1-1.4 at C = 16 and 32, 1.0-1.4 at C = 64).

Fused product (``scale=``)
--------------------------
An LCCL layer outputs ``O = V * V'``.  Passing ``scale=V'`` (``(N, Ho, Wo)``
with a shared mask, ``V'`` of the one cheap channel; ``(N, T, Ho, Wo)`` with a
per-channel mask) multiplies each computed value by its factor in the step
that writes it into ``y`` (``expand_rows`` / ``scatter_rows`` for
``"gather"``, the band write of ``"vector"``, the cell write of ``"direct"``
and ``"tiled"``), so there is no
further pass over ``N*T*Ho*Wo``.  These multiplies are the product of the two
branches, not convolution MACs, and are not counted (as in the paper's cost
model, which counts the convolutions only).

MACs
----
Every variant counts the multiply-accumulates it executes as it runs (loop
trip counts or GEMM sizes), never from the mask afterwards.  All ``kh*kw*C``
taps of a computed cell count, zero-padding taps included, as in the dense
convention ``XYTk^2C``: ``macs = active cells * C*kh*kw`` for a per-channel
mask and ``active positions * T*C*kh*kw`` for a shared one.
"""

from __future__ import annotations

import numba
import numpy as np

from ..checks import check_conv_args, effective_stride
from ..fast.tune import fastest
from ..fast.vector import vector_conv
from ..functional.batchnorm import affine_relu_unchecked
from ..functional.conv import weight_matrix
from ..functional.im2col import pad_nhwc
from .direct import direct_per_channel, direct_shared
from .gather import gather_shared
from .tiled import tiled

METHODS = ("auto", "direct", "gather", "tiled", "vector")

#: ``method="auto"`` on shared masks: ``{shape key: {"method", "ms"}}``, see :mod:`._tune`.
SHARED_CHOICES: dict = {}

#: Bytes of padded input the tiled kernel takes per call (a few images; stays in L2).
GROUP_BYTES = 1 << 18


def _check_mask(mask, n, t, ho, wo) -> bool:
    """Validate ``mask``; return True when it is per channel ``(N, T, Ho, Wo)``."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray of dtype bool, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(
            f"mask must have dtype bool, got {mask.dtype} "
            "(convert explicitly, e.g. mask = v_cheap > 0)"
        )
    shared, per_channel = (n, ho, wo), (n, t, ho, wo)
    if mask.shape == shared:
        return False
    if mask.shape == per_channel:
        return True
    raise ValueError(
        f"mask must have shape {shared} (shared by all output channels) or {per_channel} "
        f"(one per output channel) for this x, w, stride and padding, got {mask.shape}"
    )


def _check_scale(scale, mask, dtype):
    """Validate ``scale``: an ndarray of the input's dtype with the shape of ``mask``."""
    if not isinstance(scale, np.ndarray):
        raise TypeError(f"scale must be a numpy.ndarray or None, got {type(scale).__name__}")
    if scale.dtype != dtype:
        raise TypeError(f"scale must have the dtype of x ({dtype}), got {scale.dtype}")
    if scale.shape != mask.shape:
        kind = "per-channel (N, T, Ho, Wo)" if mask.ndim == 4 else "shared (N, Ho, Wo)"
        raise ValueError(
            f"scale must have the shape of the {kind} mask, {mask.shape}, got {scale.shape}"
        )


def gated_conv2d(x, w, mask, b=None, stride=1, padding=0, method="auto", *, scale=None):
    """2-D convolution evaluated only at the output cells where ``mask`` is true.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64 (any strides)
    w : ndarray, (T, C, kh, kw), same dtype as ``x``
    mask : ndarray of bool, (N, Ho, Wo) shared by all T channels, or (N, T, Ho, Wo)
    b : ndarray, (T,), or None; added only at active cells
    stride, padding : int or (int, int)
    method : {"auto", "direct", "gather", "tiled", "vector"}
        See the module header; all give the same ``y`` (to rounding) and
        ``macs``.  ``"gather"`` and ``"vector"`` need a shared mask.
    scale : ndarray or None, keyword only
        Dtype of ``x``, shape of ``mask``: ``(N, Ho, Wo)`` (one factor per
        position, for all T channels) or ``(N, T, Ho, Wo)``.  When given, each
        computed value is multiplied by its factor as it is written (the LCCL
        product ``O = V * V'``, fused; see the module header).

    Returns
    -------
    y : ndarray, (N, T, Ho, Wo), dtype of ``x``
        The dense convolution (plus bias), times ``scale`` if given, where
        ``mask`` is true; exactly 0 elsewhere.
        ``Ho = (H + 2*ph - kh) // sh + 1``, likewise ``Wo``.
    macs : int
        Multiply-accumulates of the convolution executed, counted by the
        kernel as it runs (the multiplies by ``scale`` are not counted).

    Notes
    -----
    With density ``r`` (fraction of cells computed) this costs ``r XYTk^2C``
    MACs instead of the plain conv's ``XYTk^2C`` (PAPER.md, "Cost and
    speed-up", the ``k^2 r`` / ``Tr`` terms of the LCCL rows).
    """
    (sh, sw), p, ho, wo = check_conv_args(x, w, b, stride, padding)
    n = x.shape[0]
    t, _, kh, kw = w.shape
    per_channel = _check_mask(mask, n, t, ho, wo)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in ("gather", "vector") and per_channel:
        raise ValueError(
            f"method={method!r} needs a shared mask (N, Ho, Wo), got a per-channel mask"
        )
    if scale is not None:
        _check_scale(scale, mask, x.dtype)
    return gated_conv2d_unchecked(x, w, mask, b, (sh, sw), p, method, scale)


def shared_key(x, w, stride, padding, scaled, pre=False):
    """The key of :data:`SHARED_CHOICES` for a shared-mask call."""
    return (x.shape, w.shape, tuple(stride), tuple(padding), x.dtype.str, bool(scaled),
            bool(pre))


def gated_conv2d_unchecked(x, w, mask, b, stride, padding, method="auto", scale=None,
                           pre=None):
    """:func:`gated_conv2d` without the argument checks, for callers that made them.

    ``stride`` and ``padding`` are ``(int, int)`` pairs, ``mask`` a bool array of
    one of the two shapes, ``scale`` None or shaped like ``mask``, all dtypes
    alike.  :class:`~lccl_ref.nn.LCCLConv2d` calls it at every eval forward
    (its inputs are its own arrays and its checked ``x``): at batch 1 the
    checks took a fifth of a ResNet-20 layer's gated call.  ``pre``: None, or
    ``(s, h)`` (C,) arrays: the conv reads ``max(x * s[c] + h[c], 0)``.
    """
    n, _, h, wd = x.shape
    stride = effective_stride(h, wd, stride, padding)
    (sh, sw), p = stride, padding
    t, _, kh, kw = w.shape
    ho, wo = (h + 2 * p[0] - kh) // sh + 1, (wd + 2 * p[1] - kw) // sw + 1
    per_channel = mask.ndim == 4
    if method == "auto" and per_channel:
        method = "tiled"
    elif method == "auto":  # the faster of vector and gather for this shape, timed once
        key = shared_key(x, w, stride, padding, scale is not None, pre is not None)
        method = fastest(SHARED_CHOICES, key, {
            m: (lambda m=m: gated_conv2d_unchecked(x, w, mask, b, stride, padding, m, scale,
                                                   pre))
            for m in ("vector", "gather")})
    if pre is not None and method != "vector":  # the BN-ReLU as a pass of its own
        x, pre = affine_relu_unchecked(x, *pre), None
    dtype = x.dtype
    scaled = scale is not None
    if scaled:
        scale = np.ascontiguousarray(scale)
    bias = np.zeros(t, dtype) if b is None else np.ascontiguousarray(b)
    mask = np.ascontiguousarray(mask)
    if method == "gather":  # writes every cell of y, zeros included, once and in order
        y = np.empty((n, t, ho, wo), dtype=dtype)
        macs = gather_shared(x, weight_matrix(w), bias, mask, kh, kw, (sh, sw), p, y, scale)
        return y, int(macs)
    if method == "vector":  # writes every cell of y, zeros included
        return vector_conv(x, w, b, stride, p, mask, scale, pre)
    if not scaled:  # a placeholder typed like a real scale; the kernels never read it
        scale = np.ones((1,) * mask.ndim, dtype=dtype)
    y = np.zeros((n, t, ho, wo), dtype=dtype)
    wt = np.ascontiguousarray(w.transpose(0, 2, 3, 1))  # (T, kh, kw, C)
    if method == "tiled":
        macs = 0
        for b0, b1, xp in _padded_groups(x, p):  # a few images at a time, padded in cache
            mask_g = mask[b0:b1] if per_channel else mask[b0:b1, None]  # (k, T or 1, Ho, Wo)
            if scaled:
                scale_g = scale[b0:b1] if per_channel else scale[b0:b1, None]  # like mask_g
            else:
                scale_g = scale if per_channel else scale[:, None]
            macs += tiled(xp, wt, bias, mask_g, scale_g, scaled, sh, sw, y[b0:b1],
                          numba.get_num_threads())
    else:
        xp = pad_nhwc(x, p)  # (N, Hp, Wp, C), contiguous
        kernel = direct_per_channel if per_channel else direct_shared
        macs = kernel(xp, wt, bias, mask, scale, scaled, sh, sw, dtype.type(0), y)
    return y, int(macs)


def _padded_groups(x, padding):
    """Yield ``(b0, b1, xp)``: images ``b0:b1`` of ``x`` as a padded channel-last buffer.

    Groups hold about ``GROUP_BYTES`` so the buffer is still in cache when the
    kernel reads it; the buffer is reused, its zero border written once.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    per_image = (h + 2 * ph) * (w + 2 * pw) * c * x.itemsize
    k = max(1, min(n, GROUP_BYTES // per_image))
    buf = np.zeros((k, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    for b0 in range(0, n, k):
        b1 = min(n, b0 + k)
        buf[: b1 - b0, ph : ph + h, pw : pw + w] = x[b0:b1].transpose(0, 2, 3, 1)  # NCHW -> NHWC
        yield b0, b1, buf[: b1 - b0]
