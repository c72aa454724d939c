"""Register-blocked inner products, vectorised over the output channels: the heart of "vector".

For a mask shared by all ``T`` output channels every active position needs the
whole output vector ``y[n, :, i, j]``.  :func:`run_blocks` computes it for ``PB``
positions at a time straight from a padded image (taps at constant offsets)::

    acc[p, 0:TB] += xpad[base[p] + off[e]] * Wm[e, 0:TB]     e over the kh*kw*C taps

``T`` is innermost: in float32 a block of ``TB = 16`` channels is two AVX2 vectors,
and ``PB = 5`` positions share each load of a weight row, so the 10 accumulators stay
in vector registers for the whole patch (``3x24`` blocks serve a ``T`` that 24 divides
with less padding).  Numba has no stack arrays, so :func:`~.ir.stack_ptr` puts the
accumulators on the stack; with ``PB`` and ``TB`` constants at the call site LLVM
unrolls the block and keeps it in registers.  The weights are re-laid once per call
as ``(T_pad / TB, C*kh*kw, TB)`` (:func:`weight_blocks`).  Only the ``contract``
fast-math flag is set (FMAs): each accumulator is a plain running sum over the taps.
Start at :func:`run_blocks`; measurements: docs/kernel-notes.md, "vector".
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.np.numpy_support import carray

from .ir import stack_ptr

#: Fast-math flags of the inner products: FMA contraction only, no reassociation.
_FMA = {"contract"}

#: Output-channel blocks ``TB`` the kernel is compiled for, with their position blocks ``PB``.
BLOCKS = {16: 5, 24: 3}

#: Bytes of one band's results ``(T_pad, cells)``: a band is as many output rows as fit.
BAND_BYTES = 32768

#: ... but never fewer output cells than this in a band (see :func:`band_cells`).
MIN_BAND_CELLS = 256

#: Stack slots for one block's accumulators (``PB * TB`` <= this).
_ACC = 96


@njit(fastmath=_FMA, inline="always")
def _blocks(xb, wm, off, base, qs, m, bases, obuf, t0, pb, tb):
    """Blocks of ``pb`` of the ``m`` listed positions, for one block of ``tb`` channels.

    ``obuf[t0:t0+tb, qs[k]] = sum_e xb[base[k] + off[e]] * wm[e, :]`` for ``k < m``.
    A short last block repeats its last position (same value stored twice).
    ``pb`` and ``tb`` are constants at every call site (inlined), so the loops
    over them unroll and ``acc`` lives in registers.
    """
    acc = carray(stack_ptr(_ACC, xb.dtype), (_ACC,))
    xs = carray(stack_ptr(8, xb.dtype), (8,))
    for g in range(0, m, pb):
        last = min(pb, m - g) - 1
        for p in range(pb):
            bases[p] = base[g + min(p, last)]
        for k in range(pb * tb):
            acc[k] = 0
        for e in range(off.shape[0]):
            o = off[e]
            for p in range(pb):
                xs[p] = xb[bases[p] + o]  # unsigned indices: no negative-index wraparound code
            for t in range(tb):
                wv = wm[e, t]
                for p in range(pb):
                    acc[p * tb + t] += xs[p] * wv
        for p in range(pb):
            q = qs[g + min(p, last)]
            for t in range(tb):
                obuf[t0 + t, q] = acc[p * tb + t]


@njit(fastmath=_FMA, cache=True)
def _blocks_5x16(xb, wm, off, base, qs, m, bases, obuf, t0):
    _blocks(xb, wm, off, base, qs, m, bases, obuf, t0, 5, 16)


@njit(fastmath=_FMA, cache=True)
def _blocks_4x16(xb, wm, off, base, qs, m, bases, obuf, t0):
    _blocks(xb, wm, off, base, qs, m, bases, obuf, t0, 4, 16)


@njit(fastmath=_FMA, cache=True)
def _blocks_3x24(xb, wm, off, base, qs, m, bases, obuf, t0):
    _blocks(xb, wm, off, base, qs, m, bases, obuf, t0, 3, 24)


@njit(cache=True)
def run_blocks(xb, wb, off, base, qs, m, bases, obuf):
    """Every channel block of ``wb`` for the ``m`` listed positions (:func:`_blocks`).

    ``TB = 16``: blocks of 5 positions, and the last ``4*b4`` positions in blocks
    of 4, with ``b4 = -m mod 5``, so that ``m = 5*a + 4*b4`` and no block
    repeats a position (``m >= 12``; below, when ``4*b4 > m``, the short last
    5-block repeats).  A repeated position costs as much as a real one.  (1x16 to
    3x16 blocks are not register-blocked by LLVM: no use for the tail.)
    """
    n_tb, _, tb = wb.shape
    if tb == 16:
        b4 = (-m) % 5
        if 4 * b4 > m:
            b4 = 0
        m5 = m - 4 * b4
        for ci in range(n_tb):
            _blocks_5x16(xb, wb[ci], off, base, qs, m5, bases, obuf, ci * tb)
            if b4 > 0:
                _blocks_4x16(xb, wb[ci], off, base[m5:], qs[m5:], m - m5, bases, obuf,
                             ci * tb)
    else:
        for ci in range(n_tb):
            _blocks_3x24(xb, wb[ci], off, base, qs, m, bases, obuf, ci * tb)


def channel_block(t):
    """``TB`` for ``T`` output channels: the least padding, then the smaller block."""
    return min(BLOCKS, key=lambda tb: (-(-t // tb) * tb, tb))


def band_cells(t_pad, itemsize):
    """Output cells per band: the band's ``(T_pad, cells)`` results fill ``BAND_BYTES``,
    but at least ``MIN_BAND_CELLS``.

    Each band streams all the weight blocks once, so at large ``T`` (and ``C``)
    a band of a few cells would spend its time reading weights.
    """
    return max(MIN_BAND_CELLS, BAND_BYTES // (t_pad * itemsize))


def weight_blocks(w, tb):
    """(T, C, kh, kw) -> (T_pad / tb, C*kh*kw, tb), ``T`` padded with zero columns.

    Rows follow the patch order ``(c, a, b)`` of :func:`vector_shared`'s offsets.
    Built at every call (weights may change between calls), by a Numba loop (the
    NumPy transposed copy took a fifth of a batch-1 layer's time).
    """
    t = w.shape[0]
    wm = np.ascontiguousarray(w).reshape(t, -1)  # (T, C*kh*kw)
    out = np.empty((-(-t // tb), wm.shape[1], tb), dtype=w.dtype)
    _fill_blocks(wm, out)
    return out


@njit(cache=True)
def _fill_blocks(wm, out):
    """``out[g, e, u] = wm[g*tb + u, e]``, 0 where ``g*tb + u >= T``."""
    t, k_len = wm.shape
    n_tb, _, tb = out.shape
    zero = out.dtype.type(0)
    for g in range(n_tb):
        blk = out[g]
        m = min(tb, t - g * tb)
        src = wm[g * tb : g * tb + m]
        for e0 in range(0, k_len, 64):  # 64 patch rows at a time: reads stay in cache lines
            for e in range(e0, min(k_len, e0 + 64)):
                row = blk[e]
                for u in range(m):
                    row[u] = src[u, e]
                for u in range(m, tb):
                    row[u] = zero
