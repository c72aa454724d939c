"""A shared-mask LCCL layer at inference in one call: cheap branch, mask and gated conv, fused.

For the ``kxkxCx1`` and ``1x1xCx1`` cheap kernels (one cheap output channel, BN
folded in) the eval forward is::

    V'   = g(conv_{w_c}(x) + b_c)                 (N, Ho, Wo)   cheap branch, gate g
    mask = V' > 0                                 shared by all T channels (NaN: true)
    O    = conv_W(x) * V'  where mask, else 0     (N, T, Ho, Wo)

Done as two calls (:mod:`.cheap`, then the vector kernel with ``scale=V'``) the input
is copied twice and ``V'`` and the mask go through memory between them.
:func:`fused_image` does it per image: (1) one padded copy in the stride-phase layout
``(C, sh, sw, Hq, Wq)`` that serves both convolutions (:mod:`.padcopy`, ``pre``
applied on the way); (2) the cheap branch (:mod:`.rows3x3` for a 3x3 window at stride
1 or 2, else :func:`.sweeps.tap_sweeps`); (3) per band of output rows, V', the mask
and the list of open positions (:func:`.compact.band_list`; the clip gate bounds V'
by 1), the register-blocked blocks of :mod:`.blocks` for all ``T`` outputs, and the
band's ``y`` written as ``acc * V'`` at open cells, 0 elsewhere (plus ``res``).  The
cheap window must lie inside the expensive one (true for both kinds).  MACs of the
expensive conv are counted as it runs; the cheap branch's are the cost model's.
Start at :func:`lccl_shared_eval`; measurements: docs/kernel-notes.md, "fused".
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..checks import (
    check_conv_args,
    check_float_array,
    check_same_dtype,
    conv_geometry,
    conv_output_size,
    effective_stride,
    pair,
)
from ..functional.gate import GATES
from .blocks import band_cells, channel_block, run_blocks, weight_blocks
from .compact import band_list
from .padcopy import copy_image, copy_rows_2, copy_rows_any
from .rows3x3 import ROWS, row_sweeps_3x3, row_sweeps_3x3_s2
from .sweeps import tap_sweeps


def lccl_shared_eval(x, w, w_cheap, b_cheap, stride=1, padding=0, cheap_padding=0,
                     gate="relu"):
    """Eval forward of a shared-mask LCCL layer (cheap branch, mask, gated conv) in one call.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64 (any strides)
    w : ndarray, (T, C, kh, kw), dtype of ``x``: the expensive weight (no bias)
    w_cheap : ndarray, (1, C, kh', kw'), dtype of ``x``: the cheap weight, BN folded in
    b_cheap : ndarray, (1,), dtype of ``x``: the cheap bias, BN folded in
    stride : int or (int, int)
        Of both convolutions.
    padding, cheap_padding : int or (int, int)
        Of the expensive and of the cheap convolution.  The cheap window must
        lie inside the expensive one: ``0 <= padding - cheap_padding`` and
        ``padding - cheap_padding + kh' <= kh`` (likewise along W), and both
        give the same ``(Ho, Wo)``.
    gate : {"relu", "clip"}
        ``V' = max(z, 0)`` or ``min(max(z, 0), 1)``, ``z = conv_{w_cheap}(x) + b_cheap``.

    Returns
    -------
    y : ndarray, (N, T, Ho, Wo), dtype of ``x``
        ``conv_w(x) * V'`` where ``V' > 0``, exactly 0 elsewhere.
        ``Ho = (H + 2*ph - kh) // sh + 1``, likewise ``Wo``.
    v : ndarray, (N, Ho, Wo), dtype of ``x``
        ``V' = g(z)``.
    mask : ndarray of bool, (N, Ho, Wo)
        ``v > 0``, and true where ``v`` is NaN (see :class:`~lccl_ref.nn.LCCLConv2d`).
    active : int
        The number of true cells of ``mask`` (positions, not cells times T).
    macs_expensive : int
        Multiply-accumulates of the expensive conv, counted as the kernel
        runs: ``active * T*C*kh*kw`` (the cheap conv's ``N*Ho*Wo*C*kh'*kw'`` are not).
    """
    (sh, sw), (ph, pw), ho, wo = check_conv_args(x, w, None, stride, padding)
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    check_float_array("w_cheap", w_cheap, ndim=4)
    check_float_array("b_cheap", b_cheap, ndim=1)
    check_same_dtype(x=x, w_cheap=w_cheap, b_cheap=b_cheap)
    c, kh, kw = w.shape[1:]
    if w_cheap.shape[0] != 1 or w_cheap.shape[1] != c or min(w_cheap.shape[2:]) < 1:
        raise ValueError(f"w_cheap must have shape (1, {c}, kh', kw') with kh', kw' >= 1 "
                         f"for x of shape {x.shape}, got {w_cheap.shape}")
    if b_cheap.shape != (1,):
        raise ValueError(f"b_cheap must have shape (1,), got {b_cheap.shape}")
    cph, cpw = pair("cheap_padding", cheap_padding, 0)
    khc, kwc = w_cheap.shape[2:]
    dh, dw = ph - cph, pw - cpw
    if dh < 0 or dw < 0 or dh + khc > kh or dw + kwc > kw:
        raise ValueError(
            f"the cheap window ({khc}, {kwc}) with cheap_padding {(cph, cpw)} must lie inside "
            f"the expensive window ({kh}, {kw}) with padding {(ph, pw)}: need "
            f"0 <= padding - cheap_padding and padding - cheap_padding + kernel <= {(kh, kw)}")
    _, _, cheap_out = conv_geometry(x.shape[2], x.shape[3], khc, kwc, (sh, sw), (cph, cpw))
    if cheap_out != (ho, wo):
        raise ValueError(f"the cheap conv gives outputs of size {cheap_out} but the expensive "
                         f"conv {(ho, wo)}; choose cheap_padding so that they agree")
    return lccl_shared_eval_unchecked(x, w, w_cheap, b_cheap, (sh, sw), (ph, pw), (cph, cpw),
                                      clip=gate == "clip")


def lccl_shared_eval_unchecked(x, w, w_cheap, b_cheap, stride, padding, cheap_padding,
                               pre=None, clip=False):
    """:func:`lccl_shared_eval` without the argument checks (``stride``, the paddings
    int pairs).  ``pre``: None, or ``(s, h)`` (C,) arrays: both convolutions read
    ``max(x * s[c] + h[c], 0)``.  ``clip``: the gate ``min(max(z, 0), 1)``.
    """
    n, c, h, wd = x.shape
    (sh, sw), (ph, pw), (cph, cpw) = effective_stride(h, wd, stride, padding), padding, \
        cheap_padding
    t, _, kh, kw = w.shape
    ho, wo = conv_output_size(h, wd, kh, kw, (sh, sw), (ph, pw))
    tb = channel_block(t)
    wb = weight_blocks(w, tb)  # (T_pad / TB, C*kh*kw, TB)
    wc = np.ascontiguousarray(w_cheap[0])  # (C, kh', kw')
    y = np.empty((n, t, ho, wo), dtype=x.dtype)
    v = np.empty((n, ho, wo), dtype=x.dtype)
    mask = np.empty((n, ho, wo), dtype=np.bool_)
    cells = band_cells(wb.shape[0] * tb, x.itemsize)
    pre_s, pre_h = pre if pre is not None else (b_cheap, b_cheap)  # typed, unread without
    active, macs = _fused_shared(x, wb, wc, b_cheap[0], kh, kw, sh, sw, ph, pw,
                                 ph - cph, pw - cpw, y, v, mask, cells, pre_s, pre_h,
                                 pre is not None, clip)
    return y, v, mask, int(active), int(macs)


@njit(cache=True)
def fused_tables(c, h, wd, kh, kw, khc, kwc, sh, sw, ph, pw, dh, dw):
    """The layout of the padded image and the tap offsets, made once per shape.

    Returns ``(off, toff, rowmap, cols, even, odd, hq, wq)``: expensive taps
    ``(ch, a, b)`` and cheap taps (their window shifted by ``(dh, dw)``) as
    offsets from a window's corner in the ``(C, sh, sw, Hq, Wq)`` phase layout
    (at stride 1 the ``(C, Hp, Wp)`` padded image); the copy's tables:
    ``rowmap[r]`` where input row ``r`` goes in a channel, ``cols[b]`` (first
    input column, its offset, count) of column phase ``b``, ``even`` / ``odd``
    where columns ``2k`` / ``2k+1`` go at ``sw = 2``; a phase is ``Hq x Wq``.
    """
    hq, wq = -(-(h + 2 * ph) // sh), -(-(wd + 2 * pw) // sw)  # rows, columns of a phase
    ph_size = hq * wq  # one (row phase, column phase) plane of a channel
    off = np.empty(c * kh * kw, dtype=np.uint64)
    _phase_offsets(c, 0, kh, 0, kw, sh, sw, hq, wq, off)
    toff = np.empty(c * khc * kwc, dtype=np.int64)
    _phase_offsets(c, dh, khc, dw, kwc, sh, sw, hq, wq, toff)
    rowmap = np.empty(h, dtype=np.int64)
    for r in range(h):
        rowmap[r] = (((ph + r) % sh) * sw * hq + (ph + r) // sh) * wq
    cols = np.zeros((sw, 3), dtype=np.int64)
    for b in range(sw):
        c0 = (b - pw) % sw
        cols[b, 0], cols[b, 1] = c0, b * ph_size + (pw + c0) // sw
        cols[b, 2] = max(0, -(-(wd - c0) // sw))
    even = (pw % 2) * ph_size + pw // 2
    odd = ((pw + 1) % 2) * ph_size + (pw + 1) // 2
    return off, toff, rowmap, cols, even, odd, hq, wq


@njit(inline="always")
def _phase_offsets(c, a0, kh, b0, kw, sh, sw, hq, wq, out):
    """``out[e]``, tap ``e = (ch, a, b)`` for ``a0 <= a < a0 + kh``, ``b0 <= b < b0 + kw``:
    its offset from a window's corner in the ``(C, sh, sw, Hq, Wq)`` phase layout."""
    e = 0
    for ch in range(c):
        for a in range(a0, a0 + kh):
            for b in range(b0, b0 + kw):
                out[e] = (((ch * sh + a % sh) * sw + b % sw) * hq + a // sh) * wq + b // sw
                e += 1


def fused_buffer(c, sh, sw, hq, wq, dtype):
    """The zero padded image of :func:`fused_image` (with slack for the cheap overrun)."""
    return np.zeros(c * sh * sw * hq * wq + 8 + wq, dtype=dtype)


@njit(cache=True)
def taps_3x3(toff, c, s, hq, wq):
    """Whether the cheap taps are a 3x3 window at the corner of the expensive one at
    stride ``s`` (tap ``(ch, a, b)`` at ``((ch*s + a % s)*s + b % s)*Hq*Wq + (a // s)*Wq
    + b // s``): :func:`.rows3x3.row_sweeps_3x3` at stride 1, ``_s2`` at stride 2."""
    if toff.shape[0] != 9 * c:
        return False
    for ch in range(c):
        for a in range(3):
            for b in range(3):
                want = ((ch * s + a % s) * s + b % s) * hq * wq + (a // s) * wq + b // s
                if toff[(ch * 3 + a) * 3 + b] != want:
                    return False
    return True


@njit(cache=True)
def fused_image(xn, xb, off, toff, wt, bias, rowmap, cols, even, odd, hq, wq, wb, sh, sw,
                ph, pw, yn, vrow, mrow, ho, wo, band, vflat, qs, base, bases, obuf,
                pre_s, pre_h, has_pre, clip, res=None):
    """Steps 1-3 of the module header for one image; returns ``(active, macs)``.

    ``xn`` (C, H, W) any strides; ``xb`` from :func:`fused_buffer` (its zeros
    are kept from image to image), the tables from :func:`fused_tables`;
    ``wt`` the cheap weights (C*kh'*kw',), ``bias`` their folded bias;
    ``yn`` (T, Ho*Wo), ``vrow`` and ``mrow`` (Ho*Wo,), every cell written;
    ``vflat`` ((Ho-1)*Wq + Wo + 8,), ``qs``, ``base`` (band*Wo,), ``bases``
    (8,), ``obuf`` (T_pad, band*Wo) scratch.  With ``has_pre`` both
    convolutions read ``max(x * pre_s[c] + pre_h[c], 0)``; with ``clip`` the gate is
    ``min(max(z, 0), 1)``.  ``res`` (T, Ho*Wo) or None: added to the output as it is
    written (a residual connection).
    """
    c = xn.shape[0]
    n_tb, k_len, tb = wb.shape
    n_out = yn.shape[0]
    chan = sh * sw * hq * wq  # from one channel to the next in xb
    if sw == 1 and sh == 1:  # 1. the padded copy: the (C, Hp, Wp) buffer of .vector
        copy_image(xn, xb[: c * hq * wq].reshape(c, hq, wq), ph, pw, pre_s, pre_h, has_pre)
    elif sw == 2:
        copy_rows_2(xn, xb, chan, rowmap, even, odd, sh, wq, pre_s, pre_h, has_pre)
    else:
        copy_rows_any(xn, xb, chan, rowmap, cols, sw, pre_s, pre_h, has_pre)
    run = (ho - 1) * wq + wo  # flat positions i*Wq + j up to the last output
    rows_ok = ho >= ROWS and wo >= 32 // xb.itemsize
    if sh == sw and sh <= 2 and rows_ok and taps_3x3(toff, c, sh, hq, wq):
        if sh == 1:  # 2. the cheap branch: kxkxCx1 at 3x3, rows blocked
            row_sweeps_3x3(xb, wt, chan, c, ho, wo, wq, bias, vflat)
        else:
            row_sweeps_3x3_s2(xb, wt, chan, hq * wq, c, ho, wo, wq, bias, vflat)
    else:  # 1x1, other strides and windows, small outputs
        tap_sweeps(xb, wt, toff, 0, run, bias, vflat)
    zero, one = yn.dtype.type(0), yn.dtype.type(1)
    active = 0
    macs = 0
    for i0 in range(0, ho, band):  # 3. per band
        q0, q1 = i0 * wo, min(ho, i0 + band) * wo
        m = band_list(vflat, vrow, mrow, qs, base, i0, (q1 - q0) // wo, q0, wo, wq)
        if clip:  # the bounded gate: V' = min(max(z, 0), 1), NaN stays NaN
            for q in range(q0, q1):
                vq = vrow[q]
                vrow[q] = one if vq > one else vq
        run_blocks(xb, wb, off, base, qs, m, bases, obuf)
        active += m
        macs += m * n_out * k_len
        sb = vrow[q0:q1]  # V' > 0 is the mask: a float compare is faster than a byte load
        for t in range(n_out):  # unit strides: vectorised
            yt = yn[t, q0:q1]
            ot = obuf[t]
            if res is None:
                for q in range(q1 - q0):
                    s = sb[q]
                    val = ot[q] * s  # computed first: with the product inside the
                    yt[q] = zero if s <= zero else val  # select, LLVM branched per cell
            else:
                rt = res[t, q0:q1]
                for q in range(q1 - q0):
                    s = sb[q]
                    val = ot[q] * s
                    yt[q] = (zero if s <= zero else val) + rt[q]
    return active, macs


@njit(cache=True)
def _fused_shared(x, wb, wc, bias, kh, kw, sh, sw, ph, pw, dh, dw, y, v, mask, band_cells,
                  pre_s, pre_h, has_pre, clip):
    """:func:`fused_image` for every image; returns ``(active, macs)``.

    ``x`` (N, C, H, W) any strides; ``wb`` from :func:`.blocks.weight_blocks`; ``wc``
    (C, kh', kw') C-contiguous, its window at ``(dh, dw)`` inside the expensive one;
    ``y`` (N, T, Ho, Wo), ``v`` and ``mask`` (N, Ho, Wo), C-contiguous, all written.
    """
    n_img, c, h, wd = x.shape
    _, n_out, ho, wo = y.shape
    n_tb, k_len, tb = wb.shape
    khc, kwc = wc.shape[1], wc.shape[2]
    off, toff, rowmap, cols, even, odd, hq, wq = fused_tables(c, h, wd, kh, kw, khc, kwc,
                                                              sh, sw, ph, pw, dh, dw)
    band = max(1, min(ho, band_cells // wo))  # output rows per band
    xb = np.zeros(c * sh * sw * hq * wq + 8 + wq, dtype=x.dtype)  # = fused_buffer(...)
    vflat = np.empty((ho - 1) * wq + wo + 8, dtype=x.dtype)
    qs = np.empty(band * wo, dtype=np.int64)  # active positions of a band, (i - i0)*Wo + j
    base = np.empty(band * wo, dtype=np.uint64)  # their window corners in xb
    bases = np.empty(8, dtype=np.uint64)
    obuf = np.empty((n_tb * tb, band * wo), dtype=x.dtype)  # (T_pad, cells of a band)
    y3 = y.reshape(n_img, n_out, ho * wo)
    m2 = mask.reshape(n_img, ho * wo)
    v2 = v.reshape(n_img, ho * wo)
    wt = wc.reshape(c * khc * kwc)
    active = macs = 0
    for n in range(n_img):
        a, m = fused_image(x[n], xb, off, toff, wt, bias, rowmap, cols, even, odd, hq, wq, wb,
                           sh, sw, ph, pw, y3[n], v2[n], m2[n], ho, wo, band, vflat, qs, base,
                           bases, obuf, pre_s, pre_h, has_pre, clip)
        active += a
        macs += m
    return active, macs


__all__ = ["lccl_shared_eval", "lccl_shared_eval_unchecked"]
