"""The cheap branch of a shared-mask LCCL at inference, in one call: ``V'``, its mask, its count.

For the ``kxkxCx1`` and ``1x1xCx1`` cheap kernels (one output channel, BN folded in)::

    V'[n, i, j] = max(0, b + sum_{c, p, q} w[c, p, q] * x[n, c, i*sh + p - ph, j*sw + q - pw])
    mask        = V' > 0      (N, Ho, Wo), shared by all T channels; true where V' is NaN

:func:`cheap_single` does it in one Numba call (:func:`_cheap_single`): (1) copy a
chunk of images into zero-bordered planes in which every output position is one flat
index and every tap a constant offset (:func:`.padcopy.copy_planes`: at stride 1
neighbouring images share their zero borders; at stride ``s`` each channel is split
into ``s x s`` phase planes, which makes the strided conv a stride-1 one over
``C*s*s`` planes); (2) the sums at every flat position (:func:`.sweeps.tap_sweeps`);
(3) ReLU, mask and count while writing the output rows.  It computes
``(Hs*Wq)/(Ho*Wo)`` times the cost model's MACs (1.06 at 32x32, 1.27 at 8x8).  Its
naive twin is ``functional.conv2d_naive`` then ``max(., 0)``; the teaching path's is
``kernels.cheap_conv2d``.  Measurements: docs/kernel-notes.md, "cheap branch".
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..checks import check_conv_args, check_float_array, conv_output_size, effective_stride
from .padcopy import copy_planes
from .sweeps import tap_sweeps

_FMA = {"contract"}

#: Bytes of the plane buffer: a chunk holds as many images as fit (at least one).
BUF_BYTES = 131072


def cheap_single(x, w, b, stride=1, padding=0):
    """Single-output-channel conv + bias + ReLU, and its mask, in one call.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (1, C, kh, kw), dtype of ``x`` (the folded cheap weight)
    b : ndarray, (1,), dtype of ``x`` (the folded cheap bias)
    stride, padding : int or (int, int)

    Returns
    -------
    v : ndarray, (N, Ho, Wo), dtype of ``x``
        ``max(conv_w(x) + b, 0)``: the cheap branch ``V'`` of its one channel.
    mask : ndarray of bool, (N, Ho, Wo)
        ``v > 0``, and true where ``v`` is NaN.
    active : int
        The number of true cells of ``mask``.
    """
    check_float_array("x", x, ndim=4)
    check_float_array("w", w, ndim=4)
    check_float_array("b", b, ndim=1)
    if w.shape[0] != 1 or w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (1, {x.shape[1]}, kh, kw) for x of shape "
                         f"{x.shape}, got {w.shape}")
    if b.shape != (1,):
        raise ValueError(f"b must have shape (1,), got {b.shape}")
    stride, padding, _, _ = check_conv_args(x, w, b, stride, padding)
    return cheap_single_unchecked(x, w, b, stride, padding)


def cheap_single_unchecked(x, w, b, stride, padding):
    """:func:`cheap_single` without the argument checks, for callers that made them.

    ``stride`` and ``padding`` are ``(int, int)`` pairs.  :class:`~lccl_ref.nn.LCCLConv2d`
    calls it at every eval forward: at batch 1 the checks cost as much as the kernel.
    """
    n, c, h, wd = x.shape
    (sh, sw), (ph, pw) = effective_stride(h, wd, stride, padding), padding
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = conv_output_size(h, wd, kh, kw, (sh, sw), (ph, pw))
    v = np.empty((n, ho, wo), dtype=x.dtype)
    mask = np.empty((n, ho, wo), dtype=np.bool_)
    active = _cheap_single(np.ascontiguousarray(x), np.ascontiguousarray(w[0]), b[0],
                           sh, sw, ph, pw, v, mask)
    return v, mask, int(active)


@njit(cache=True, fastmath=_FMA)
def _cheap_single(x, wt, b, sh, sw, ph, pw, v, mask):
    """Steps 1-3 of the module header for every chunk of images; returns the active count.

    ``x`` (N, C, H, W) C-contiguous, ``wt`` (C, kh, kw), ``v`` / ``mask`` (N, Ho, Wo).
    """
    n_img, c, h, wd = x.shape
    kh, kw = wt.shape[1], wt.shape[2]
    _, ho, wo = v.shape
    na, nb = min(sh, kh), min(sw, kw)  # row / column phases read by some tap
    if sh == 1 and sw == 1 and ph <= kh - 1 and pw <= kw - 1:
        hs, wq = h + ph, wd + pw  # neighbours share their zero rows and columns
    else:
        hs, wq = ho + (kh - 1) // sh, wo + (kw - 1) // sw
    img = hs * wq  # one image's slot in a plane
    nc = max(1, min(n_img, BUF_BYTES // (c * na * nb * img * x.itemsize)))
    plane = (nc * hs + ph) * wq  # ph zero rows below the last slot
    chan = na * nb * plane
    nt = c * kh * kw
    tw = wt.reshape(nt)  # tap weights, (ch, p, q) order, and their offsets in the buffer
    to = np.empty(nt, dtype=np.int64)
    kk = kh * kw
    tap = np.empty(kk, dtype=np.int64)
    for p in range(kh):  # divisions once per tap, not per channel and tap
        for q in range(kw):
            tap[p * kw + q] = ((p % sh) * nb + q % sw) * plane + (p // sh) * wq + q // sw
    for ch in range(c):
        for k in range(kk):
            to[ch * kk + k] = ch * chan + tap[k]
    rowmap = np.full(h, -1, dtype=np.int64)
    for xr in range(h):
        a, r = (xr + ph) % sh, (xr + ph) // sh
        if a < na and r < hs:
            rowmap[xr] = a * nb * plane + r * wq
    cols = np.zeros((nb, 3), dtype=np.int64)
    for bb in range(nb):
        c0 = max(0, -((bb - pw) // sw))  # first column of phase bb inside x
        cols[bb, 0], cols[bb, 1] = c0, max(c0, min(wq, (wd - 1 + pw - bb) // sw + 1))
        cols[bb, 2] = c0 * sw + bb - pw
    eo, oo, je, jo = -1, -1, 0, 0
    if sw == 2 and nb == 2:
        eo, oo = (pw % 2) * plane + pw // 2, ((pw + 1) % 2) * plane + (pw + 1) // 2
        je, jo = wq - pw // 2, wq - (pw + 1) // 2
    # slack: the taps of the garbage positions (a block rounded up to 8) read past the end
    buf = np.zeros(c * chan + 8 + kh * wq + kw, dtype=x.dtype)
    vflat = np.empty(nc * hs * wq + 8, dtype=x.dtype)  # the chunk's flat positions
    zero = v.dtype.type(0)
    active = 0
    for n0 in range(0, n_img, nc):
        n1 = min(n_img, n0 + nc)
        for nl in range(n1 - n0):  # 1. the chunk's planes
            copy_planes(x[n0 + nl], buf[nl * img:], chan, plane, rowmap, cols, pw, sw,
                        eo, oo, je, jo)
        total = ((n1 - n0 - 1) * hs + ho - 1) * wq + wo  # flat positions up to the last output
        tap_sweeps(buf, tw, to, 0, total, b, vflat)  # 2. the sums at every flat position
        for nl in range(n1 - n0):  # 3. each output row: ReLU, mask, count
            for i in range(ho):
                src = vflat[(nl * hs + i) * wq:]
                orow, mrow = v[n0 + nl, i], mask[n0 + nl, i]
                for j in range(wo):
                    val = src[j]
                    on = not val <= zero  # NaN opens the gate (LCCLConv2d)
                    orow[j] = val if on else zero
                    mrow[j] = on
                    active += on
    return active


__all__ = ["cheap_single", "cheap_single_unchecked"]
