"""Gather-GEMM-scatter for a mask shared by all output channels (as in SBNet and DynConv).

A shared mask ``(N, Ho, Wo)`` switches whole output positions on or off, so the
work at the active positions is still one dense matrix product::

    rows  = im2col rows of the active positions only  (m, kh*kw*C)  channel last
    out   = rows @ weight_matrix(w)                   (m, T)         one BLAS GEMM
    y[n, :, i, j] = (out[p] + b) * scale[n, i, j]     0 at inactive cells

The GEMM runs at the dense convolution's speed per MAC, so its time falls with the
density ``r``; everything else is overhead the dense conv does not have, and decides
how much of the ideal saving ``1 - r`` is kept.  Start at :func:`gather_shared`: it
cuts the output rows into pieces of at most ``chunk`` active positions
(:func:`plan_pieces`: whole images when small, bands of rows when not), and per
piece (1) copies its images into a reused padded channel-last buffer and gathers
the active rows (:func:`fill_rows`), (2) runs one GEMM, (3) writes ``y``: every
cell, ``out + b`` or 0, into a channel-last block copied once into ``y``
(:func:`expand_rows`), or, for sparse pieces, zeros and a scatter
(:func:`scatter_rows`).  ``chunk`` keeps a GEMM's rows near 1 MB (the L2 is 512 KB
per core).  Measurements: docs/kernel-notes.md, "gather".
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..functional.im2col import pad_nhwc

#: Upper bound on the active positions per GEMM.
CHUNK_ROWS = 2048
#: Target size of one GEMM's gathered rows, in bytes (see the module header).
CHUNK_BYTES = 1 << 20
#: Pieces with fewer active cells than this fraction are zeroed and scattered into.
SCATTER_BELOW = 0.25


@njit(cache=True)
def plan_pieces(mask, chunk):
    """Split the output rows into pieces of at most about ``chunk`` active positions.

    Returns ``(cuts, count)``: piece ``k`` is the output rows ``cuts[k] :
    cuts[k + 1]`` of the flattened ``(N*Ho)`` rows, ``count[k]`` its active
    positions.  Pieces are whole images when an image has at most ``chunk``
    active positions (so the output write is one block), else bands of rows
    of one image.
    """
    n_img, ho, wo = mask.shape
    cnt = np.zeros(n_img * ho, dtype=np.int64)
    for n in range(n_img):
        for i in range(ho):
            s = 0
            for j in range(wo):
                s += mask[n, i, j]
            cnt[n * ho + i] = s
    cuts = [0]
    sizes = []
    acc = 0
    for n in range(n_img):
        img = 0
        for i in range(ho):
            img += cnt[n * ho + i]
        if img <= chunk:  # whole image
            group = n * ho - cuts[-1]  # rows already in the group
            if group > 0 and (acc + img > chunk or group * wo >= 8 * chunk):
                cuts.append(n * ho)
                sizes.append(acc)
                acc = 0
            acc += img
            continue
        if cuts[-1] != n * ho:  # close the group of whole images before it
            cuts.append(n * ho)
            sizes.append(acc)
            acc = 0
        for i in range(ho):  # bands of one image
            if acc > 0 and acc + cnt[n * ho + i] > chunk:
                cuts.append(n * ho + i)
                sizes.append(acc)
                acc = 0
            acc += cnt[n * ho + i]
        cuts.append((n + 1) * ho)
        sizes.append(acc)
        acc = 0
    if cuts[-1] != n_img * ho:
        cuts.append(n_img * ho)
        sizes.append(acc)
    return np.array(cuts, dtype=np.int64), np.array(sizes, dtype=np.int64)


@njit(cache=True)
def fill_rows(xp, n0, mask, g0, g1, kh, kw, sh, sw, rows):
    """Fill ``rows[:m]`` with the im2col rows of the active positions of output rows ``g0:g1``.

    ``xp`` : (k, Hp, Wp, C) padded channel-last images ``n0 .. n0 + k - 1``
    (at least the input rows these output rows read); ``g`` indexes the
    flattened output rows ``(n, i) = divmod(g, Ho)``; positions in order.
    Returns ``m``, the number of rows written.  The copies index slices with
    the loop counter, which lets LLVM turn them into vector moves.
    """
    _, hp, wp, c = xp.shape
    _, ho, wo = mask.shape
    span = kw * c
    flat = xp.reshape(-1)
    m = 0
    for g in range(g0, g1):
        n, i = g // ho - n0, g % ho
        for j in range(wo):
            if mask[n + n0, i, j]:
                row = rows[m]
                for a in range(kh):
                    src = flat[((n * hp + i * sh + a) * wp + j * sw) * c :]  # kw*C numbers
                    dst = row[a * span :]
                    for e in range(span):
                        dst[e] = src[e]
                m += 1
    return m


@njit(cache=True)
def expand_rows(out, b, mask, scale, scaled, g0, g1, dense):
    """``dense[q] = (out[p] + b) * s`` at active cells, 0 elsewhere, cells of rows ``g0:g1``.

    ``out`` : (m + 1, T), the GEMM result plus one spare row, read (and
    discarded) at inactive cells so that the loop has no branch.
    ``s`` is ``scale[n, i, j]`` (shaped like ``mask``) when ``scaled``, else 1.
    ``dense`` : (>= (g1 - g0) * Wo, T) channel-last block of the piece, cells in order.
    """
    _, ho, wo = mask.shape
    n_out = out.shape[1]
    zero = dense.dtype.type(0)
    one = dense.dtype.type(1)
    q = p = 0
    for g in range(g0, g1):
        n, i = g // ho, g % ho
        mrow = mask[n, i]
        srow = scale[n, i] if scaled else scale[0, 0]
        for j in range(wo):
            on = mrow[j]
            s = srow[j] if scaled else one
            src = out[p]  # out has a spare row: p may equal m here
            dst = dense[q]
            for t in range(n_out):
                dst[t] = (src[t] + b[t]) * s if on else zero
            p += on
            q += 1


@njit(cache=True)
def scatter_rows(out, b, mask, scale, scaled, g0, g1, y):
    """For sparse pieces: zero ``y`` on rows ``g0:g1``, then ``y[n, :, i, j] = (out[p] + b) * s``.

    ``s`` is ``scale[n, i, j]`` when ``scaled``, else 1.

    The zeroing runs along contiguous bands of each ``y[n, t]`` plane; the
    values go 64 positions at a time, channel by channel, so the block of
    ``out`` stays in L1 while the writes for one channel run along ``y``.
    """
    _, n_out, ho, wo = y.shape
    zero = y.dtype.type(0)
    for n in range(g0 // ho, (g1 - 1) // ho + 1):
        i0, i1 = max(g0 - n * ho, 0), min(g1 - n * ho, ho)
        for t in range(n_out):
            band = y[n, t, i0:i1].reshape(-1)
            for e in range(band.shape[0]):
                band[e] = zero
    m = out.shape[0] - 1
    cell = np.empty(m, dtype=np.int64)  # (n, i, j) of each active position, as n*Ho*Wo + i*Wo + j
    sc = np.ones(m, dtype=y.dtype)  # the scale of each active position
    p = 0
    for g in range(g0, g1):
        n, i = g // ho, g % ho
        for j in range(wo):
            if mask[n, i, j]:
                cell[p] = (n * n_out * ho + i) * wo + j
                if scaled:
                    sc[p] = scale[n, i, j]
                p += 1
    y_flat = y.reshape(-1)
    plane = ho * wo
    for r0 in range(0, p, 64):
        r1 = min(p, r0 + 64)
        for t in range(n_out):
            bt = b[t]
            y_t = y_flat[t * plane :]
            for r in range(r0, r1):
                y_t[cell[r]] = (out[r, t] + bt) * sc[r]


def gather_shared(x, wm, b, mask, kh, kw, stride, padding, y, scale=None):
    """Shared mask ``(N, Ho, Wo)``: gather active rows, one GEMM per piece, write ``y``.

    ``x`` is the (N, C, H, W) input, ``wm`` is
    :func:`lccl_ref.functional.conv.weight_matrix` of ``w``, ``(kh*kw*C, T)``,
    ``b`` the (T,) bias (zeros for none), ``mask`` C-contiguous, ``scale``
    None or a C-contiguous ``(N, Ho, Wo)`` factor multiplied into every
    written value of its position (in :func:`expand_rows` / :func:`scatter_rows`).  Writes
    every cell of ``y`` (which may be uninitialised) and returns the MACs
    executed, summed from the sizes of the GEMMs actually run.
    """
    n_img, c, h, w = x.shape
    (sh, sw), (ph, pw) = stride, padding
    k_len, n_out = wm.shape
    ho, wo = mask.shape[1:]
    chunk = max(1, min(CHUNK_ROWS, CHUNK_BYTES // max(1, k_len * x.itemsize)))
    cuts, cnt = plan_pieces(mask, chunk)
    max_m = int(cnt.max()) if len(cnt) else 0
    max_g = int(np.diff(cuts).max()) if len(cnt) else 0
    rows = np.empty((max(max_m, 1), k_len), dtype=x.dtype)
    out = np.zeros((max_m + 1, n_out), dtype=x.dtype)
    dense = np.empty((max_g * wo, n_out), dtype=x.dtype)
    hp, wp = h + 2 * ph, w + 2 * pw
    max_k = int(max(-(-(g1 - g0) // ho) for g0, g1 in zip(cuts[:-1], cuts[1:]))) if len(cnt) else 0
    xp = np.zeros((max_k, hp, wp, c), dtype=x.dtype)  # padded images; the border stays 0
    scaled = scale is not None
    if not scaled:  # typed like a real scale, never read
        scale = np.ones((1, 1, 1), dtype=x.dtype)
    macs = 0
    for g0, g1 in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        n0, i0 = divmod(g0, ho)
        if g1 - g0 >= ho:  # whole images n0 .. n0 + k - 1
            k = (g1 - g0) // ho
            pad_nhwc(x[n0 : n0 + k], padding, out=xp)
        else:  # the input rows lo:hi that output rows i0 .. i1 - 1 of image n0 read
            i1 = i0 + g1 - g0
            lo, hi = max(i0 * sh - ph, 0), min((i1 - 1) * sh + kh - ph, h)
            if hi > lo:  # into their place in the padded image: rows ph + lo ...
                pad_nhwc(x[n0 : n0 + 1, :, lo:hi], (ph + lo, pw), out=xp)
        m = fill_rows(xp, n0, mask, g0, g1, kh, kw, sh, sw, rows)
        if m:
            np.matmul(rows[:m], wm, out=out[:m])
            macs += m * k_len * n_out
        if m < SCATTER_BELOW * (g1 - g0) * wo:
            scatter_rows(out[: m + 1], b, mask, scale, scaled, g0, g1, y)
            continue
        expand_rows(out, b, mask, scale, scaled, g0, g1, dense)
        if g1 - g0 >= ho:  # whole images n0 .. n1-1
            k = (g1 - g0) // ho
            y[n0 : n0 + k] = dense[: k * ho * wo].reshape(k, ho, wo, n_out).transpose(0, 3, 1, 2)
        else:  # a band of rows of image n0
            i1 = i0 + g1 - g0
            y[n0, :, i0:i1] = dense[: (i1 - i0) * wo].reshape(i1 - i0, wo, n_out).transpose(2, 0, 1)
    return macs
