"""Gather-GEMM-scatter for a mask shared by all output channels (SBNet / DynConv).

A shared mask ``(N, Ho, Wo)`` switches whole output positions on or off, so
the work at the active positions is still a dense matrix product::

    pos   = active (n, i, j)                          (P, 3)
    rows  = im2col rows of those positions only       (P, kh*kw*C)   channel-last
    out   = rows @ weight_matrix(w)                   (P, T)         one BLAS GEMM
    y[n, :, i, j] = out[p] + b                        scatter; zeros elsewhere

The GEMM runs at the same speed per MAC as the dense convolution's, so the
time falls in proportion to the density ``r``; the gather and scatter are
``O(P * kh*kw*C)`` and ``O(P * T)`` copies, small beside ``P * kh*kw*C * T``
MACs.  Active positions are processed in chunks of ``CHUNK_ROWS``: only the
images a chunk touches are padded into a channel-last buffer, its rows are
gathered and multiplied while they are still in cache (no input-sized or
im2col-sized temporary), and images without an active position are never
even copied.

Only rows of active positions are ever built (no full im2col then select).
With the input in channel-last layout, the ``kw`` taps of one kernel row are
``kw*C`` consecutive numbers, so a row is ``kh`` contiguous copies.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Active positions per GEMM: much smaller chunks make BLAS slower (it repacks
#: the weight matrix on every call), much larger ones fall out of cache.
CHUNK_ROWS = 1024


@njit(cache=True)
def gather_rows(xp, n0, pos, start, stop, kh, kw, sh, sw, rows):
    """Fill ``rows[: stop - start]`` with the im2col rows of ``pos[start:stop]``.

    ``xp`` : (k, Hp, Wp, C) padded channel-last images ``n0 .. n0 + k - 1``;
    ``pos`` : (P, 3) int64 ``(n, i, j)``; ``rows`` : (>= stop - start, kh*kw*C).
    The copies index slices with the loop counter, which lets LLVM turn them
    into vector moves (an index computed as ``base + e`` would not).
    """
    _, hp, wp, c = xp.shape
    span = kw * c
    flat = xp.reshape(-1)
    for p in range(start, stop):
        n, i, j = pos[p, 0] - n0, pos[p, 1], pos[p, 2]
        row = rows[p - start]
        for a in range(kh):
            src = flat[((n * hp + i * sh + a) * wp + j * sw) * c :]  # kw*C contiguous numbers
            dst = row[a * span :]
            for e in range(span):
                dst[e] = src[e]


@njit(cache=True)
def scatter_rows(out, b, pos, start, y):
    """``y[n, :, i, j] = out[p - start] + b`` for the chunk's positions ``p``.

    ``out`` is the chunk's GEMM result ``(m, T)``.  Blocks of 64 positions
    are written channel by channel: the block of ``out`` stays in L1 while
    the writes for one channel run along the NCHW output.
    """
    _, n_out, ho, wo = y.shape
    plane = ho * wo
    y_flat = y.reshape(-1)
    m = out.shape[0]
    offset = np.empty(m, dtype=np.int64)  # of y[n, 0, i, j] in y_flat
    for r in range(m):
        p = start + r
        offset[r] = pos[p, 0] * n_out * plane + pos[p, 1] * wo + pos[p, 2]
    for r0 in range(0, m, 64):
        r1 = min(m, r0 + 64)
        for t in range(n_out):
            bt = b[t]
            y_t = y_flat[t * plane :]
            for r in range(r0, r1):
                y_t[offset[r]] = out[r, t] + bt


def gather_shared(x, wm, b, mask, kh, kw, stride, padding, y):
    """Shared mask ``(N, Ho, Wo)``: gather active rows, one GEMM per chunk, scatter.

    ``x`` is the (N, C, H, W) input, ``wm`` is
    :func:`lccl_ref.functional.conv.weight_matrix` of ``w``, ``(kh*kw*C, T)``.
    Writes into ``y`` (zeros) and returns the MACs executed, summed from the
    sizes of the GEMMs actually run.
    """
    n_img, c, h, w = x.shape
    (sh, sw), (ph, pw) = stride, padding
    k_len, n_out = wm.shape
    pos = np.ascontiguousarray(np.argwhere(mask), dtype=np.int64)  # (P, 3): (n, i, j), sorted
    rows = np.empty((min(CHUNK_ROWS, len(pos)), k_len), dtype=x.dtype)  # (chunk, kh*kw*C)
    xp = np.zeros((0, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)  # padded images, grown on demand
    macs = 0
    for start in range(0, len(pos), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(pos))
        n0, n1 = int(pos[start, 0]), int(pos[stop - 1, 0]) + 1  # images this chunk touches
        if n1 - n0 > xp.shape[0]:
            xp = np.zeros((n1 - n0, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)  # border stays 0
        xp[: n1 - n0, ph : ph + h, pw : pw + w] = x[n0:n1].transpose(0, 2, 3, 1)  # NCHW -> NHWC
        gather_rows(xp, n0, pos, start, stop, kh, kw, sh, sw, rows)
        block = rows[: stop - start]
        out = block @ wm  # (chunk, T)
        macs += block.shape[0] * block.shape[1] * wm.shape[1]
        scatter_rows(out, b, pos, start, y)
    return macs
