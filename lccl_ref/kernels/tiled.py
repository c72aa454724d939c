"""Per-channel masks: tiles of packed im2col rows, inner products eight at a time ("tiled").

A per-channel mask ``(N, T, Ho, Wo)`` (the paper's ``1x1xCxT`` cheap branch) switches
single (position, channel) cells, so the work is a *sampled* matrix product --
``y = mask * (rows @ W)`` evaluated only where the mask is true -- with no dense block
to hand to BLAS (with random masks nearly every position keeps some active channel,
``1 - (1 - r)^T``).  A shared mask is accepted too, passed as ``(N, 1, Ho, Wo)``.

Start at :func:`tiled`; per tile of ``TILE`` consecutive positions ``(n, i, j)``,
:func:`_tile` (1) packs the tile's im2col rows into a buffer that stays in cache
(for a shared mask only the active positions'), (2) lists, per channel ``t``, the
tile's active positions (a branch-free compaction: random masks would make an
``if`` mispredict), (3) computes their inner products with filter ``t`` eight at a
time (:func:`_cells8`: one load of a weight serves eight MACs), then the rest one by
one, and (4) writes ``y[n, t, i, j] = (acc + b[t]) * s`` (``s`` the optional factor
``scale``, the LCCL's ``V'``) and counts ``kh*kw*C`` MACs per cell.  The loops carry
``reassoc``/``contract`` fast-math flags so that LLVM vectorises the sums (they
differ from the direct loop by rounding only).  Alternatives measured and why they
lose: docs/kernel-notes.md, "tiled".
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Positions per tile, counted over (n, i, j) so a tile may span several small
#: images: enough that each channel has cells to fill the blocks of eight, few
#: enough that the tile's input rows stay in L2.
TILE = 128

_FAST = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FAST)
def _cells8(rows, w2, t, bases, idx, g, k_len, zero, out):
    """Inner products of filter ``t`` with the packed rows at ``bases[idx[g:g+8]]``.

    Slices indexed by the loop counter (not ``rows[base + k]``) keep the
    indices provably in range, which is what lets LLVM vectorise the loop.
    """
    wv = w2[t]
    x0, x1 = rows[bases[idx[g]] :], rows[bases[idx[g + 1]] :]
    x2, x3 = rows[bases[idx[g + 2]] :], rows[bases[idx[g + 3]] :]
    x4, x5 = rows[bases[idx[g + 4]] :], rows[bases[idx[g + 5]] :]
    x6, x7 = rows[bases[idx[g + 6]] :], rows[bases[idx[g + 7]] :]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
    for k in range(k_len):
        wk = wv[k]
        a0 += wk * x0[k]
        a1 += wk * x1[k]
        a2 += wk * x2[k]
        a3 += wk * x3[k]
        a4 += wk * x4[k]
        a5 += wk * x5[k]
        a6 += wk * x6[k]
        a7 += wk * x7[k]
    out[0], out[1], out[2], out[3] = a0, a1, a2, a3
    out[4], out[5], out[6], out[7] = a4, a5, a6, a7


@njit(cache=True, fastmath=_FAST)
def _cell1(rows, w2, t, base, k_len, zero):
    """Inner product of filter ``t`` with the packed row at ``base``."""
    wv = w2[t]
    x0 = rows[base:]
    acc = zero
    for k in range(k_len):
        acc += wv[k] * x0[k]
    return acc


@njit(cache=True, fastmath=_FAST)
def _tile(x_flat, w2, b, m_flat, s_flat, scaled, y_flat, rows, start, m, geom):
    """The cells of one tile: ``m`` positions from flat position ``start``.

    ``geom`` = ``(n_out, n_mask, plane, hp, wp, c, wo, kh, span, sh, sw)``.
    ``rows`` is scratch for the tile's packed im2col rows.  ``s_flat`` is the
    flattened scale (laid out like ``m_flat``), used when ``scaled``.
    Returns the MACs.
    """
    n_out, n_mask, plane, hp, wp, c, wo, kh, span, sh, sw = geom
    per_channel = n_mask == n_out
    k_len = kh * span
    y_off = np.empty(m, dtype=np.int64)  # offset of y[n, 0, i, j] in y_flat
    m_off = np.empty(m, dtype=np.int64)  # offset of mask[n, 0, i, j] in m_flat
    bases = np.empty(m, dtype=np.int64)  # offset of each position's row in rows
    idx = np.empty(m, dtype=np.int64)  # the tile's active positions for one channel
    out = np.zeros(8, dtype=rows.dtype)
    zero = out[0]  # 0 typed like the data: float32 sums stay float32
    sc = np.ones(m, dtype=rows.dtype)  # scale of the active positions idx[:cnt] (1 if none)
    for r in range(m):
        n, ij = (start + r) // plane, (start + r) % plane
        y_off[r] = n * n_out * plane + ij
        m_off[r] = n * n_mask * plane + ij
        bases[r] = r * k_len
        if per_channel or m_flat[m_off[r]]:  # shared mask: pack active positions only
            i, j = ij // wo, ij % wo
            row = rows[r * k_len :]
            for a in range(kh):
                src = x_flat[((n * hp + i * sh + a) * wp + j * sw) * c :]  # kw*C contiguous
                dst = row[a * span :]
                for e in range(span):
                    dst[e] = src[e]
    macs = 0
    cnt = 0
    for t in range(n_out):
        if per_channel or t == 0:
            # branch-free compaction: with random masks an ``if`` would mispredict often
            cnt = 0
            for r in range(m):
                o = m_off[r] + t * plane
                idx[cnt] = r
                if scaled:  # loop-invariant, predicted; sc[cnt] follows idx[cnt]
                    sc[cnt] = s_flat[o]
                cnt += np.int64(m_flat[o])
        bt = b[t]
        y_t = y_flat[t * plane :]
        g = 0
        while g + 8 <= cnt:
            _cells8(rows, w2, t, bases, idx, g, k_len, zero, out)
            for q in range(8):
                y_t[y_off[idx[g + q]]] = (out[q] + bt) * sc[g + q]
            macs += 8 * k_len
            g += 8
        while g < cnt:
            r = idx[g]
            y_t[y_off[r]] = (_cell1(rows, w2, t, bases[r], k_len, zero) + bt) * sc[g]
            macs += k_len
            g += 1
    return macs


@njit(cache=True, parallel=True)
def tiled(xp, wt, b, mask, scale, scaled, sh, sw, y, n_workers):
    """Active cells of ``y`` from ``xp`` (N, Hp, Wp, C) and ``wt`` (T, kh, kw, C).

    ``mask`` is ``(N, T, Ho, Wo)`` per channel or ``(N, 1, Ho, Wo)`` shared;
    when ``scaled``, ``scale`` has the shape of ``mask`` and multiplies each
    written value (else it is ignored); all arrays C-contiguous.  Writes into
    ``y`` ``(N, T, Ho, Wo)`` (zeros) and returns the MACs executed.
    ``n_workers`` (the Numba thread count) workers each take every
    ``n_workers``-th tile and own one row buffer.
    """
    n_img, n_out, ho, wo = y.shape
    _, hp, wp, c = xp.shape
    _, kh, kw, _ = wt.shape
    span = kw * c  # one kernel row of a window: contiguous in xp and in wt
    k_len = kh * span
    plane = ho * wo
    geom = (n_out, mask.shape[1], plane, hp, wp, c, wo, kh, span, sh, sw)
    x_flat = xp.reshape(-1)
    w2 = wt.reshape(n_out, k_len)  # (T, kh*kw*C), the order of a packed row
    y_flat = y.reshape(-1)
    m_flat = mask.reshape(-1)
    s_flat = scale.reshape(-1)
    n_cells = n_img * plane  # positions (n, i, j), flattened; a tile may span images
    n_tiles = (n_cells + TILE - 1) // TILE
    macs = 0
    for worker in prange(n_workers):
        rows = np.empty(TILE * k_len, dtype=xp.dtype)  # (TILE * kh*kw*C,) packed rows
        for tile in range(worker, n_tiles, n_workers):
            start = tile * TILE
            macs += _tile(x_flat, w2, b, m_flat, s_flat, scaled, y_flat, rows, start,
                          min(TILE, n_cells - start), geom)
    return macs
