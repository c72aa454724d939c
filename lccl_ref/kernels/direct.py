"""The direct gated convolution: the algorithmic reference, one loop over output cells.

An inactive cell is skipped before any arithmetic, an active one gets its full
``kh*kw*C`` inner product.  It is the readable twin that :mod:`.gather` and
:mod:`.tiled` are tested against::

    for every output cell (n, t, i, j) with mask true:
        y[n, t, i, j] = b[t] + sum_{p, q, c} w[t, p, q, c] * xpad[n, i*sh + p, j*sw + q, c]
        y[n, t, i, j] *= scale[cell]        (optional factor, e.g. the LCCL's V')
        macs += kh * kw * C

Inputs are already in the layouts the loops want (:func:`lccl_ref.kernels.gated_conv2d`
prepares them): ``xp`` the zero-padded input, channel last ``(N, Hp, Wp, C)``, and
``wt`` the weight as ``(T, kh, kw, C)``, so the innermost loop walks contiguous
memory in both.  Zero-padding taps are multiplied like any other tap and counted as
MACs (the convention of the dense conv and of the paper's ``XYTk^2C``).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def _dot_cell(xp, wt, n, t, r0, s0, zero):
    """Inner product of filter ``t`` with the window whose top-left is ``(r0, s0)``."""
    _, kh, kw, c = wt.shape
    acc = zero  # same type as the data: float32 input accumulates in float32
    for p in range(kh):
        for q in range(kw):
            for ch in range(c):
                acc += wt[t, p, q, ch] * xp[n, r0 + p, s0 + q, ch]
    return acc


@njit(cache=True)
def direct(xp, wt, b, mask, scale, scaled, sh, sw, zero, y):
    """The active cells of ``y`` (N, T, Ho, Wo), which must hold zeros; returns the MACs.

    ``mask`` is ``(N, T, Ho, Wo)`` (a mask per channel) or ``(N, 1, Ho, Wo)`` (one mask
    shared by the T channels).  When ``scaled``, each written value is multiplied by
    ``scale`` at the cell (``scale`` shaped like ``mask``; else ignored).
    """
    n_img, n_out, ho, wo = y.shape
    _, kh, kw, c = wt.shape
    shared = mask.shape[1] == 1
    macs = 0
    for n in range(n_img):
        for t in range(n_out):
            tm = 0 if shared else t  # the mask's channel for output channel t
            for i in range(ho):
                for j in range(wo):
                    if not mask[n, tm, i, j]:
                        continue
                    v = _dot_cell(xp, wt, n, t, i * sh, j * sw, zero) + b[t]
                    y[n, t, i, j] = v * scale[n, tm, i, j] if scaled else v
                    macs += kh * kw * c
    return macs
