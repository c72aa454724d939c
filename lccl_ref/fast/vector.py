"""The gated conv for shared masks, vectorised over T ("vector"): all T outputs of a few
active positions at once, straight from a padded copy of the image (no im2col, no GEMM).

Per image, :func:`vector_image`: (1) copy ``x[n]`` into a zero-bordered ``(C, Hp, Wp)``
buffer (:func:`.padcopy.copy_image`, the BN-ReLU ``pre`` applied on the way; a tap is
the constant offset ``(c*Hp + a)*Wp + b`` from the window's corner,
:func:`patch_offsets`); (2) per band of output rows, list the active positions
(branch-free compaction: blocks run across the band's rows); (3) the register-blocked
inner products of :mod:`.blocks` into a ``(T_pad, cells)`` band buffer in L1;
(4) write ``y[n, t]`` of the band along ``j``: ``(acc + b[t]) * s`` at active cells, 0
elsewhere (a vectorised select; ``s`` the optional ``scale``; plus ``res``, a
residual, when given).  :func:`vector_shared` loops it over a batch, the engine calls
it per image.  Without a mask (``masked=False``, the dense convolution) the position
lists are made once (:func:`all_positions`) and every cell is written.  MACs are
counted per band from the number of real positions: ``m * T * kh*kw*C``.  Start at
:func:`vector_conv`; measurements: docs/kernel-notes.md, "vector".
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..checks import conv_output_size
from .blocks import band_cells, channel_block, run_blocks, weight_blocks
from .padcopy import copy_image


def vector_conv(x, w, b, stride, padding, mask=None, scale=None, pre=None):
    """``(y, macs)``: the shared-mask gated conv (``mask`` (N, Ho, Wo)), or with
    ``mask=None`` the dense one, by :func:`vector_shared`.  No argument checks
    (callers made them): ``b`` (T,) or None, ``stride``/``padding`` int pairs,
    ``scale`` None or like ``mask``, ``pre`` None or ``(s, h)`` (C,) arrays."""
    (sh, sw), (ph, pw) = stride, padding
    n, _, h, wd = x.shape
    t, _, kh, kw = w.shape
    ho, wo = conv_output_size(h, wd, kh, kw, stride, padding)
    dtype = x.dtype
    bias = np.zeros(t, dtype) if b is None else np.ascontiguousarray(b)
    y = np.empty((n, t, ho, wo), dtype=dtype)
    tb = channel_block(t)
    wb = weight_blocks(w, tb)  # (T_pad / TB, C*kh*kw, TB)
    masked, scaled = mask is not None, scale is not None
    mask = np.ascontiguousarray(mask) if masked else np.ones((1, 1, 1), dtype=np.bool_)
    # placeholders typed like the real arrays, never read
    scale = np.ascontiguousarray(scale) if scaled else np.ones((1, 1, 1), dtype=dtype)
    pre_s, pre_h = pre if pre is not None else (bias, bias)
    cells = band_cells(wb.shape[0] * tb, x.itemsize)
    macs = vector_shared(x, wb, bias, mask, scale, scaled, kh, kw, sh, sw, ph, pw, y, cells,
                         pre_s, pre_h, pre is not None, masked)
    return y, int(macs)


@njit(cache=True)
def patch_offsets(c, kh, kw, hp, wp):
    """``off[e]``, tap ``e = (ch, a, b)``: ``(ch*Hp + a)*Wp + b``, from the window's corner
    in a ``(C, Hp, Wp)`` padded image (unsigned: no negative-index wraparound code)."""
    off = np.empty(c * kh * kw, dtype=np.uint64)
    e = 0
    for ch in range(c):
        for a in range(kh):
            for q in range(kw):
                off[e] = (ch * hp + a) * wp + q
                e += 1
    return off


@njit(cache=True)
def all_positions(ho, wo, sh, sw, wp, qs, base):
    """The position lists of a dense (unmasked) conv, made once: ``qs[k] = k`` and
    ``base[i*Wo + j] = i*sh*Wp + j*sw`` (the window corners), for every output cell."""
    for k in range(qs.shape[0]):
        qs[k] = k
    for i in range(ho):
        for j in range(wo):
            base[i * wo + j] = i * sh * wp + j * sw


@njit(cache=True)
def vector_image(xn, buf, off, wb, b, mrow, srow, masked, scaled, sh, sw, ph, pw, yn, ho, wo,
                 band, qs, base, bases, obuf, pre_s, pre_h, has_pre, res=None):
    """Steps 1-4 of the module header for one image; returns its MACs.

    ``xn`` (C, H, W) any strides; ``buf`` the zero-bordered ``(C, Hp, Wp)``
    padded image (its border is never written: kept from image to image);
    ``off`` from :func:`patch_offsets`; ``yn`` (T, Ho*Wo) C-contiguous.
    ``masked``: ``mrow`` (Ho*Wo,) is the image's mask and ``srow`` its scale
    (when ``scaled``); ``qs`` and ``base`` (at least ``band*Wo`` and ``Ho*Wo``
    long) are scratch.  Not ``masked``: every position, from the lists that
    :func:`all_positions` made in ``qs`` and ``base``; ``mrow``, ``srow`` unread.
    ``obuf`` (T_pad, band*Wo) and ``bases`` (8,) are scratch.  ``res`` (T, Ho*Wo) or
    None: added to the output as it is written (a residual connection, in the
    same pass; ``y + res`` in one rounding, as ``y`` then ``+= res``).
    """
    n_tb, k_len, tb = wb.shape
    n_out = yn.shape[0]
    wp = buf.shape[2]
    copy_image(xn, buf, ph, pw, pre_s, pre_h, has_pre)
    xb = buf.reshape(-1)
    zero = yn.dtype.type(0)
    macs = 0
    for i0 in range(0, ho, band):
        q0, q1 = i0 * wo, min(ho, i0 + band) * wo
        if masked:
            um = np.uint64(0)  # branch-free compaction (an ``if`` would mispredict on
            for i in range(i0, i0 + (q1 - q0) // wo):  # random masks; unsigned: no
                row0 = (i - i0) * wo  # wraparound code on the stores)
                b0 = np.uint64(i * sh * wp)
                for j in range(wo):
                    qs[um] = row0 + j
                    base[um] = b0 + np.uint64(j * sw)
                    um += np.uint64(mrow[q0 + row0 + j])
            m = np.int64(um)
            band_base = base
        else:
            m = q1 - q0
            band_base = base[q0:q1]
        run_blocks(xb, wb, off, band_base, qs, m, bases, obuf)
        macs += m * n_out * k_len
        if masked:
            mb = mrow[q0:q1]
            sb = srow[q0:q1] if scaled else srow[:1]
            for t in range(n_out):  # unit strides: LLVM vectorises the select
                bt = b[t]
                yt = yn[t, q0:q1]
                ot = obuf[t]
                if res is None:
                    for q in range(q1 - q0):
                        s = sb[q] if scaled else sb[0]
                        v = (ot[q] + bt) * s
                        yt[q] = v if mb[q] else zero
                else:
                    rt = res[t, q0:q1]
                    for q in range(q1 - q0):
                        s = sb[q] if scaled else sb[0]
                        v = (ot[q] + bt) * s
                        yt[q] = (v if mb[q] else zero) + rt[q]
        else:
            for t in range(n_out):
                bt = b[t]
                yt = yn[t, q0:q1]
                ot = obuf[t]
                if res is None:
                    for q in range(q1 - q0):
                        yt[q] = ot[q] + bt
                else:
                    rt = res[t, q0:q1]
                    for q in range(q1 - q0):
                        yt[q] = (ot[q] + bt) + rt[q]
    return macs


@njit(cache=True)
def vector_shared(x, wb, b, mask, scale, scaled, kh, kw, sh, sw, ph, pw, y, band_cells,
                  pre_s, pre_h, has_pre, masked=True):
    """Shared mask ``(N, Ho, Wo)``: all ``T`` outputs of each active position, blocked.

    ``x`` (N, C, H, W) any strides; ``wb`` from :func:`weight_blocks`;
    ``b`` (T,); ``mask`` and (when ``scaled``) ``scale`` C-contiguous
    ``(N, Ho, Wo)``; ``y`` C-contiguous ``(N, T, Ho, Wo)``, every cell written.
    Output rows go in bands of about ``band_cells`` cells (at least one row).
    With ``has_pre`` the convolution reads ``max(x * pre_s[c] + pre_h[c], 0)``
    (:func:`copy_image`).  ``masked=False``: the dense convolution, every
    position (``mask`` and ``scale`` unread).  Returns the MACs executed.
    """
    n_img, c, h, w = x.shape
    _, n_out, ho, wo = y.shape
    n_tb, k_len, tb = wb.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    band = max(1, min(ho, band_cells // wo))  # output rows per band
    buf = np.zeros((c, hp, wp), dtype=x.dtype)  # padded image; the border stays 0
    off = patch_offsets(c, kh, kw, hp, wp)
    qs = np.empty(max(band, ho) * wo, dtype=np.int64)  # active positions of a band, (i - i0)*Wo + j
    base = np.empty(max(band, ho) * wo, dtype=np.uint64)  # their window corners in buf
    if not masked:
        all_positions(ho, wo, sh, sw, wp, qs, base)
    bases = np.empty(8, dtype=np.uint64)
    obuf = np.empty((n_tb * tb, band * wo), dtype=x.dtype)  # (T_pad, cells of a band)
    y3 = y.reshape(n_img, n_out, ho * wo)
    m3 = mask.reshape(mask.shape[0], -1)
    s3 = scale.reshape(scale.shape[0], -1)
    macs = 0
    for n in range(n_img):
        mrow = m3[n] if masked else m3[0]
        srow = s3[n] if scaled else s3[0]
        macs += vector_image(x[n], buf, off, wb, b, mrow, srow, masked, scaled, sh, sw, ph, pw,
                             y3[n], ho, wo, band, qs, base, bases, obuf, pre_s, pre_h, has_pre)
    return macs
