"""Gather-GEMM-scatter for a mask shared by all output channels (SBNet / DynConv).

A shared mask ``(N, Ho, Wo)`` switches whole output positions on or off, so
the work at the active positions is still a dense matrix product::

    rows  = im2col rows of the active positions only  (m, kh*kw*C)  channel-last
    out   = rows @ weight_matrix(w)                   (m, T)         one BLAS GEMM
    y[n, :, i, j] = (out[p] + b) * scale[n, i, j]     0 at inactive cells

The GEMM runs at the dense convolution's speed per MAC, so its time falls in
proportion to the density ``r``.  Everything else is overhead that the dense
conv does not have, or has in a cheaper form, and it decides how much of the
ideal saving ``1 - r`` is kept.  The output rows ``(n, i)`` are cut into
pieces (:func:`plan_pieces`) of at most ``chunk`` active positions -- whole
images when they are small, bands of rows of one image when not -- and per
piece:

1. the images of the piece (or, for a band, just the input rows it reads)
   are copied once into a reused channel-last buffer whose zero border is
   written once (NumPy transposed copy), and :func:`fill_rows` (Numba)
   copies the active positions' rows out of it: ``kh`` contiguous runs of
   ``kw*C`` numbers each;
2. one GEMM on those rows;
3. :func:`expand_rows` (Numba) writes ``out + b`` (times the optional
   per-position ``scale``, the LCCL factor ``V'`` fused into this write) or 0
   for every cell of the piece into a channel-last block, branch-free (a random mask makes an
   ``if`` mispredict), and one NumPy transposed copy writes the block into
   ``y`` -- whole images or whole rows, every cell of ``y`` written once, so
   ``y`` needs no ``np.zeros`` first.  Pieces with fewer than
   ``SCATTER_BELOW`` of their cells active are instead zeroed plane band by
   plane band and the values scattered (:func:`scatter_rows`): at r = 0.1 on
   64@56x56 batch 1 the expand + copy of every cell took 0.5 ms of a 1.8 ms
   call.

Measured (float32, 1 thread, process CPU time, median of 9, the machine
shared with other jobs, so +-10 %; real/ideal = (1 - t/t_dense) / (1 - r)
against ``conv2d_forward``), previous version -> this one:

    shape (batch)       r = 0.7         r = 0.3
    16@32x32 (128)     -0.45 -> 0.22    0.54 -> 0.60
    32@16x16 (128)      0.57 -> 0.83    0.84 -> 0.86
    64@8x8 (128)        0.82 -> 0.88    0.88 -> 0.90
    64@56x56 (1)        0.65 -> 0.83    0.92 -> 0.88
    64@56x56 (8)        0.56 -> 0.87    0.86 -> 0.90

The previous version (``np.argwhere``, chunks of 1024 positions that cut
through images so that each chunk padded again every image it touched,
``np.zeros`` for ``y`` then a strided scatter) took 32-34 ms at 16@32x32,
r = 0.7, against 28-30 ms dense.  Now: rows 9 ms, GEMM 15 ms, expand 2 ms,
write 4 ms.  Tried and dropped: a ring of ``kh`` channel-last input rows
filled by a Numba transpose (no better at C = 16, 15 % slower at C = 32 than
NumPy's transposed copy of whole images); one fused Numba write of ``y``
reading ``out`` column by column (6 ms against 2 + 4); a transposed GEMM
``(T, m)`` (2 ms slower); explicit 8-wide or NumPy-slice copies of the rows
(13 and 25 ms instead of 9).  At C = 16 the dense conv avoids im2col
altogether (its "shifted rows" path) and the GEMM has only T = 16 columns,
so the row copy (``kh*kw*C`` numbers per position for ``kh*kw*C*T`` MACs)
stays expensive: issue 3's 0.9 is not reached there.

Rows per piece: ``chunk = min(CHUNK_ROWS, CHUNK_BYTES // row bytes)``, so
that the rows of one GEMM stay about 1 MB (the L2 is 512 KB per core):
about 1800 rows at C = 16, 900 at 32, 450 at 64.  A fixed 1024 cost 5-20 %
more at C = 64 (64@8x8 and 64@56x56 at r = 0.7), 2048 even more; smaller
pieces make BLAS slower at C = 16.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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
            xp[:k, ph : ph + h, pw : pw + w] = x[n0 : n0 + k].transpose(0, 2, 3, 1)
        else:  # the input rows that output rows i0 .. i1 - 1 of image n0 read
            i1 = i0 + g1 - g0
            lo, hi = max(i0 * sh - ph, 0), min((i1 - 1) * sh + kh - ph, h)
            if hi > lo:
                xp[0, ph + lo : ph + hi, pw : pw + w] = x[n0, :, lo:hi].transpose(1, 2, 0)
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
