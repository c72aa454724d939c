"""``gated_conv2d``: the convolution computed only where a mask is true, and its MAC count.

This is the expensive branch of an LCCL layer at inference (PAPER.md, "The idea"):
the cheap branch gives the mask ``V' > 0``, and ``V = conv_W(U)`` is needed only
there, because ``O = V * V'`` is 0 wherever ``V'`` is.  :func:`gated_conv2d` checks
its arguments and picks a kernel by the mask's kind (``method=``):

``"direct"``   both kinds, :mod:`.direct`: the algorithmic reference loop.
``"gather"``   shared masks ``(N, Ho, Wo)``, :mod:`.gather`: the active positions'
               im2col rows, one BLAS GEMM per piece, scattered back (SBNet, DynConv).
``"tiled"``    both kinds, :mod:`.tiled`: packed rows per tile, eight cells per weight
               load; the only one that saves time on per-channel masks.
``"dense"``    both kinds: the dense conv (im2col + GEMM), then the mask; counts the
               dense MACs.  What a per-channel mask costs when too many cells are open.
``"auto"``     ``"gather"`` for a shared mask; for a per-channel one ``"tiled"`` below
               the density :data:`TILED_BELOW`, else ``"dense"`` (:func:`choose_method`).

``scale=`` (optional, shaped like the mask) multiplies each computed value as it is
written, so that a caller can have the product ``V * V'`` in the same pass.  Every
kernel counts the multiply-accumulates it executes as it runs (loop trip counts or
GEMM sizes), never from the mask afterwards; all ``kh*kw*C`` taps of a computed
cell count, padding included (``XYTk^2C``): ``active cells * C*kh*kw`` for a
per-channel mask, ``active positions * T*C*kh*kw`` for a shared one.
"""

from __future__ import annotations

import numba
import numpy as np

from ..checks import check_conv_args, conv_output_size, effective_stride
from ..functional.conv import conv2d_forward, weight_matrix
from ..functional.im2col import pad_nhwc
from .direct import direct
from .gather import gather_shared
from .tiled import tiled

METHODS = ("auto", "direct", "gather", "tiled", "dense")

#: Per-channel masks: the tiled kernel below this density, the dense conv and the mask
#: at or above it.  The tiled kernel runs a MAC at a third to a quarter of a GEMM's
#: speed.  In ResNet-20's 1x1xCxT layers with calibrated masks (batch 64, one thread,
#: benchmarks/bench_per_channel.py) it beat the dense conv + mask in every layer at
#: r = 0.3 and lost to it by 5-15% at r = 0.5; the choice switches between the two.
TILED_BELOW = 0.35


def choose_method(mask, method="auto") -> str:
    """The kernel ``"auto"`` runs for ``mask``: ``"gather"`` (shared), ``"tiled"`` or
    ``"dense"`` (per-channel, by its density against :data:`TILED_BELOW`)."""
    if method != "auto":
        return method
    if mask.ndim == 3:
        return "gather"
    return "tiled" if mask.size == 0 or mask.mean() < TILED_BELOW else "dense"

#: Bytes of padded input the tiled kernel takes per call (a few images; stays in L2).
GROUP_BYTES = 1 << 18


def check_mask(mask, n, t, ho, wo) -> bool:
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


def check_scale(scale, mask, dtype):
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
    method : {"auto", "direct", "gather", "tiled", "dense"}
        See the module header; all give the same ``y`` (to rounding) and ``macs``.
        ``"gather"`` needs a shared mask.
    scale : ndarray or None, keyword only
        Dtype of ``x``, shape of ``mask``.  When given, each computed value is
        multiplied by its factor as it is written.

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
    per_channel = check_mask(mask, x.shape[0], w.shape[0], ho, wo)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "gather" and per_channel:
        raise ValueError("method='gather' needs a shared mask (N, Ho, Wo), got a per-channel "
                         "mask")
    if scale is not None:
        check_scale(scale, mask, x.dtype)
    return gated_conv2d_unchecked(x, w, mask, b, (sh, sw), p, method, scale)


def gated_conv2d_unchecked(x, w, mask, b, stride, padding, method="auto", scale=None):
    """:func:`gated_conv2d` without the argument checks, for callers that made them.

    ``stride`` and ``padding`` are ``(int, int)`` pairs, ``mask`` a bool array of
    one of the two shapes, ``scale`` None or shaped like ``mask``, all dtypes alike.
    """
    n, _, h, wd = x.shape
    t, _, kh, kw = w.shape
    stride = effective_stride(h, wd, stride, padding)
    ho, wo = conv_output_size(h, wd, kh, kw, stride, padding)
    per_channel = mask.ndim == 4
    method = choose_method(mask, method)
    dtype = x.dtype
    scaled = scale is not None
    scale = np.ascontiguousarray(scale) if scaled else np.ones((1,) * mask.ndim, dtype=dtype)
    bias = np.zeros(t, dtype) if b is None else np.ascontiguousarray(b)
    mask = np.ascontiguousarray(mask)
    if method == "gather":  # writes every cell of y, zeros included, once and in order
        y = np.empty((n, t, ho, wo), dtype=dtype)
        macs = gather_shared(x, weight_matrix(w), bias, mask, kh, kw, stride, padding, y,
                             scale if scaled else None)
        return y, int(macs)
    mask4 = mask if per_channel else mask[:, None]  # (N, T or 1, Ho, Wo)
    scale4 = scale if per_channel else scale[:, None]  # like mask4 (or (1, 1, 1, 1))
    if method == "dense":  # every cell computed (and counted), then the mask applied
        y, _ = conv2d_forward(x, w, b, stride, padding)
        if scaled:
            y *= scale4
        np.multiply(y, mask4, out=y)  # 0 where shut: x * 0 = 0 for finite x, and fast
        if not np.isfinite(y).all():  # inf * 0 = NaN: exactly 0 where shut, whatever y was
            np.copyto(y, 0, where=~mask4)
        return y, n * ho * wo * t * w[0].size
    y = np.zeros((n, t, ho, wo), dtype=dtype)
    wt = np.ascontiguousarray(w.transpose(0, 2, 3, 1))  # (T, kh, kw, C)
    if method == "direct":
        macs = direct(pad_nhwc(x, padding), wt, bias, mask4, scale4, scaled, stride[0],
                      stride[1], dtype.type(0), y)
        return y, int(macs)
    macs = 0
    for b0, b1, xp in _padded_groups(x, padding):  # a few images at a time, padded in cache
        macs += tiled(xp, wt, bias, mask4[b0:b1], scale4[b0:b1] if scaled else scale4, scaled,
                      stride[0], stride[1], y[b0:b1], numba.get_num_threads())
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
        pad_nhwc(x[b0:b1], padding, out=buf)
        yield b0, b1, buf[: b1 - b0]
