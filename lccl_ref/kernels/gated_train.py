"""The expensive convolution of an LCCL layer, trained on the active cells only (issue 18).

An LCCL layer outputs ``O = V * V'``, ``V = conv_W(x)``, ``V' = g(z)`` with
``g(z) = 0`` exactly where ``z <= 0`` (PAPER.md, "The idea").  Backprop through
the product (PAPER.md, "Training is end-to-end"), where the mask is off::

    dV = dO * V'  = 0           -> the conv's backward reads dV at active cells only
    dz = g'(z) dV' = 0          -> V (in dV' = dO * V) is not needed there either

(a density budget adds a term to ``dz`` that reads ``z`` only).  So the
expensive conv's forward, ``dW`` and ``dX`` skip the masked cells and still give
exactly the dense step's result: ``v`` = dense conv times the mask, ``(dx,
dw)`` = dense backward of ``dv * mask``.

Kernels (:mod:`lccl_ref.kernels.gather`, :mod:`lccl_ref.kernels.train_gather`):
the im2col rows of the active positions, one BLAS GEMM for ``V``, two for the
gradients, a col2im scatter-add of the active rows into ``dx``.  A per-channel
mask ``(N, T, Ho, Wo)`` runs them on the positions with an active channel, full
rows, then zeroes the inactive channels: exact and at BLAS speed per MAC, but
no saving on random masks, where almost every position keeps an active channel
(a per-cell dot loop runs ~25x slower per MAC: bench_train_gated.py).

``gated_conv2d_naive`` is the algorithmic reference: the dense conv and its
backward, masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import check_conv_args, check_float_array, check_same_dtype, check_shape
from ..functional.conv import conv2d_backward, conv2d_forward, weight_matrix
from .gather import gather_shared
from .train_gather import gather_backward, keep_active


@dataclass
class GatedConvCache:
    """What :func:`gated_conv2d_backward` needs, and the MACs counted on the way.

    ``x`` is kept by reference (the rows are rebuilt in backward): do not
    modify it in place before the backward pass.  ``positions`` (N, Ho, Wo)
    is where the rows are computed: the mask itself, or for a per-channel
    mask the positions with at least one active channel.

    ``macs`` : dict of multiply-accumulates.  ``"forward"``, ``"backward_dw"``,
    ``"backward_dx"``, ``"backward"`` (their sum) are counted by the kernels
    from the GEMMs they run (the backward entries are None until backward
    runs, and set, not added, by each backward call); ``"dense_forward"`` =
    ``N*Ho*Wo*T*C*kh*kw`` and ``"dense_backward"`` = twice that, the dense
    conv's, for comparison.
    """

    x: np.ndarray
    w: np.ndarray
    mask: np.ndarray
    positions: np.ndarray
    stride: tuple
    padding: tuple
    macs: dict


def _check_mask(mask, n, t, ho, wo) -> bool:
    """Validate ``mask``; return True when it is per channel ``(N, T, Ho, Wo)``."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray of dtype bool, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must have dtype bool, got {mask.dtype} "
                        "(convert explicitly, e.g. mask = v_cheap > 0)")
    if mask.shape not in ((n, ho, wo), (n, t, ho, wo)):
        raise ValueError(
            f"mask must have shape {(n, ho, wo)} (shared by all output channels) or "
            f"{(n, t, ho, wo)} (one per output channel) for this x, w, stride and padding, "
            f"got {mask.shape}")
    return mask.ndim == 4


def gated_conv2d_forward(x, w, mask, stride=1, padding=0):
    """Forward pass: the convolution at the active cells, exactly 0 elsewhere.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (T, C, kh, kw), same dtype as ``x``
    mask : ndarray of bool, (N, Ho, Wo) shared by all T channels, or (N, T, Ho, Wo)
        ``Ho = (H + 2*ph - kh) // sh + 1``, likewise ``Wo``.
    stride, padding : int or (int, int)

    Returns
    -------
    v : ndarray, (N, T, Ho, Wo), dtype of ``x``
        ``conv2d(x, w)`` where ``mask`` is true, exactly 0 elsewhere.
    cache : GatedConvCache
        ``cache.macs["forward"]``: the MACs executed, ``active positions *
        T*C*kh*kw`` (per-channel mask: positions with an active channel).

    Notes
    -----
    Costs ``r XYTk^2C`` MACs instead of ``XYTk^2C`` (PAPER.md, "Cost and
    speed-up", the ``k^2 r`` / ``Tr`` terms), with ``r`` the density of positions.
    """
    s, p, ho, wo = check_conv_args(x, w, None, stride, padding)
    n = x.shape[0]
    t, c, kh, kw = w.shape
    per_channel = _check_mask(mask, n, t, ho, wo)
    positions = np.ascontiguousarray(mask.any(axis=1) if per_channel else mask)  # (N, Ho, Wo)
    v = np.empty((n, t, ho, wo), dtype=x.dtype)  # every cell is written
    macs = gather_shared(x, weight_matrix(w), np.zeros(t, x.dtype), positions, kh, kw, s, p, v)
    if per_channel:  # the rows were computed whole: drop their inactive channels
        keep_active(v, np.ascontiguousarray(mask), v)
    dense = n * ho * wo * t * c * kh * kw
    macs = {"forward": int(macs), "backward_dw": None, "backward_dx": None, "backward": None,
            "dense_forward": dense, "dense_backward": 2 * dense}
    return v, GatedConvCache(x, w, mask, positions, s, p, macs)


def gated_conv2d_backward(dv, cache):
    """Backward pass of :func:`gated_conv2d_forward`: the gradients of ``sum(v * dv)``.

    Parameters
    ----------
    dv : ndarray, (N, T, Ho, Wo), upstream gradient, dtype of the forward input;
        read at active cells only (``v`` does not depend on ``x`` or ``w`` elsewhere)
    cache : GatedConvCache, from :func:`gated_conv2d_forward`

    Returns
    -------
    dx : ndarray, (N, C, H, W)
    dw : ndarray, (T, C, kh, kw)
        Both equal the dense ``conv2d_backward`` of ``dv * mask``.  Sets
        ``cache.macs["backward_dw"]``, ``["backward_dx"]`` and ``["backward"]``.

    Notes
    -----
    With ``X_a`` the im2col rows and ``dV_a`` the rows of ``dv`` at the active
    positions: ``dW = X_a.T @ dV_a``, ``dX = col2im(dV_a @ W.T)``; the dense
    sums run over all positions, whose extra terms are all 0.
    """
    x, w, mask = cache.x, cache.w, cache.mask
    n, t, ho, wo = mask.shape[0], w.shape[0], mask.shape[-2], mask.shape[-1]
    check_float_array("dv", dv, ndim=4)
    check_same_dtype(x=x, dv=dv)
    check_shape("dv", dv, (n, t, ho, wo))
    if mask.ndim == 4:  # the rows' inactive channels were dropped: their gradient is 0
        dv_active = np.empty(dv.shape, dv.dtype)
        keep_active(np.ascontiguousarray(dv), np.ascontiguousarray(mask), dv_active)
        dv = dv_active
    _, c, kh, kw = w.shape
    dx, dwm, macs_dw, macs_dx = gather_backward(x, weight_matrix(w), cache.positions, dv,
                                                kh, kw, cache.stride, cache.padding)
    dw = np.ascontiguousarray(dwm.reshape(kh, kw, c, t).transpose(3, 2, 0, 1))  # (T, C, kh, kw)
    cache.macs.update(backward_dw=int(macs_dw), backward_dx=int(macs_dx),
                      backward=int(macs_dw + macs_dx))
    return dx, dw


def gated_conv2d_naive(x, w, mask, dv, stride=1, padding=0):
    """Reference: ``(v, dx, dw)`` from the dense conv and its backward, masked.

    Same arguments as the pair (``dv`` shaped like ``v``); every MAC of the
    dense conv is executed, the masked ones then multiplied by 0.
    """
    y, dense_cache = conv2d_forward(x, w, None, stride, padding)
    _, _, ho, wo = check_conv_args(x, w, None, stride, padding)
    cells = mask[:, None] if not _check_mask(mask, x.shape[0], w.shape[0], ho, wo) else mask
    dx, dw, _ = conv2d_backward(dv * cells, dense_cache)
    return y * cells, dx, dw
