"""Shared masks at small channel counts: register-blocked, vectorised over T ("vector").

For a mask shared by all ``T`` output channels, every active position needs
the full output vector ``y[n, :, i, j]``.  Instead of gathering im2col rows
and calling BLAS (:mod:`.gather`), this kernel computes the ``T`` outputs of
a few active positions at once, straight from a padded copy of the image::

    acc[p, 0:T] += xpad[n, c, i_p*sh + a, j_p*sw + b] * Wm[e, 0:T]
        for e = (c, a, b) over the kh*kw*C patch taps, p over PB positions

``T`` is innermost: in float32 a block of ``TB = 16`` channels is two AVX2
vectors, and ``PB = 5`` positions share each load of a weight row, so the
``PB * TB / 8 = 10`` accumulators stay in vector registers for the whole
patch (the inner step is 10 FMAs, 2 weight loads, 5 broadcasts); ``3x24``
blocks serve ``T`` that 24 divides with less padding (17-24, 65-72, ...).  Numba has no
stack arrays, so :func:`_stack_ptr` allocates the accumulators on the stack;
with ``PB`` and ``TB`` constants at the call site LLVM unrolls the block and
keeps it in registers (a heap ``np.zeros`` accumulator ran at a third of the
speed: every FMA went through memory).

Per image ``n``:

1. copy ``x[n]`` into the interior of a zero-bordered ``(C, Hp, Wp)`` buffer
   (no channel-last transpose; a tap is the constant offset
   ``off[e] = (c*Hp + a)*Wp + b`` from the window's top-left corner);
2. per band of output rows (as many as fill :data:`BAND_BYTES` of results),
   list the active positions (branch-free compaction, so blocks run across
   the rows of the band and only its last block is short: it repeats its
   last position, whose MACs are not counted);
3. for each block of ``TB`` channels (``T`` padded with zero weight columns
   up to a multiple of ``TB``) and each block of ``PB`` active positions,
   the register-blocked inner products, stored into a ``(T_pad, cells)``
   band buffer that stays in L1 (:func:`run_blocks`: the last positions of a
   band in 4-position blocks, so that no block computes a position twice);
4. write ``y[n, t]`` of the band along ``j``: ``(acc + b[t]) * s`` at active
   cells, 0 elsewhere (a vectorised select, so ``y`` may be uninitialised;
   ``s`` is the optional fused ``scale``, else 1; plus ``res``, a residual,
   when given).

Steps 1-4 for one image are :func:`vector_image`, with its scratch passed
in: :func:`vector_shared` loops it over a batch, :mod:`lccl_ref.engine` calls
it per image inside its one compiled call.  Without a mask (the dense
convolution, ``masked=False``) the position lists are made once
(:func:`all_positions`) and step 4 writes every cell.

Only the ``contract`` fast-math flag is set (for the FMAs): each
accumulator is a plain running sum over ``e``, so the result is the direct
loop's up to the order of the taps and the fused rounding.  MACs are counted
per band from the number of real positions: ``m * T * kh*kw*C``.

Measured (float32, one core of an AMD EPYC (Zen 1: one 256-bit FMA per
cycle, about 20 GMAC/s peak), shared with other jobs).  In-cache
micro-benchmark of the blocks, 144 taps: ``5x16`` 19 GMAC/s, ``3x24`` 19,
``2x32`` 18; shapes with fewer accumulators (``4x8``, ``2x16``, ``3x16``)
are not register-blocked by LLVM (2 GMAC/s) and ``6x16`` / ``4x24`` spill.
In the kernel ``2x32`` blocks were 5 % slower than two ``5x16`` at T = 32
(their 36 KB of weights leave L1) and equal at T = 64, so they were dropped.
In float64 the ``5x16`` block (20 registers) spills: 4 GMAC/s in the
micro-benchmark, against a float64 peak of about 10.
At 16@32x32 batch 128, r = 1: copies 0.9 ms, compaction 0.25 ms, blocks
17 ms (17.5 GMAC/s, against 10.6 for the dense im2col/shifted-rows GEMM
conv), output write 1.2-1.7 ms (about the time of a memset of ``y``).

Tried and dropped: a channel-last padded input (``pad_nhwc``, taps in
``(a, b, c)`` order): its transposed copy costs 5.2 ms at 16@32x32 batch
128 (this copy: 0.9 ms), 25-30 % slower overall at C = 16, 32, equal at
64@8x8, 10 % faster at 64@56x56 batch 1 only; chunks of taps so that a
chunk's weights stay in L1 (no gain up to C = 64, 3-5 % loss); whole-image
bands (64 KB of results at T = 16: 20 % slower than 32 KB); one call per
block instead of per band; ``q // Wo`` in the compaction loop (integer
division: 3 ms); reading the results position-major in the output write
(LLVM emitted a branch per cell: 10 ms at r = 0.65); ``dst[pw + col] =
src[col]`` for the padded copy (2.5x slower than indexing a slice from 0).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.numpy_support import carray

from .ir import array_lanes, pre_value, splat, vector_ptr

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


@intrinsic
def _stack_ptr(typingctx, size, dtype):
    """Pointer to ``size`` (a literal int) stack slots of ``dtype``.

    Scratch that LLVM can keep in registers (unlike ``np.empty``, which
    allocates on the heap through Numba's runtime).
    """
    if not isinstance(size, types.IntegerLiteral):
        return None
    n_slots = size.literal_value
    elem = dtype.dtype

    def codegen(context, builder, sig, args):
        slots = cgutils.alloca_once(builder, ir.ArrayType(context.get_value_type(elem), n_slots))
        zero = ir.Constant(ir.IntType(32), 0)
        return builder.gep(slots, [zero, zero])

    return types.CPointer(elem)(size, dtype), codegen


@njit(fastmath=_FMA, inline="always")
def _blocks(xb, wm, off, base, qs, m, bases, obuf, t0, pb, tb):
    """Blocks of ``pb`` of the ``m`` listed positions, for one block of ``tb`` channels.

    ``obuf[t0:t0+tb, qs[k]] = sum_e xb[base[k] + off[e]] * wm[e, :]`` for ``k < m``.
    A short last block repeats its last position (same value stored twice).
    ``pb`` and ``tb`` are constants at every call site (inlined), so the loops
    over them unroll and ``acc`` lives in registers.
    """
    acc = carray(_stack_ptr(_ACC, xb.dtype), (_ACC,))
    xs = carray(_stack_ptr(8, xb.dtype), (8,))
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
    5-block repeats as before).  A repeated position costs as much as a real
    one: at 64@8x8 a band is the 42 active positions of an image at r = 0.65,
    and the repeats were 5 % of the layer's MACs.  (4x16 blocks run at the
    speed of 5x16 ones; 1x16 to 3x16 are not register-blocked by LLVM and run
    at 2-3 GMAC/s, so they are no use for the tail.)
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
    a band of a few cells spends its time reading weights: at 512@7x7 (batch
    1) a 16-cell band took 13.9 ms at r = 1 and 11.3 at r = 0.65, a 256-cell
    band 12.1 and 10.2; at 256@14x14 9.2 / 6.7 -> 8.5 / 5.9.  No change at
    T <= 64, where ``BAND_BYTES`` already gives 128 cells or more.
    """
    return max(MIN_BAND_CELLS, BAND_BYTES // (t_pad * itemsize))


def weight_blocks(w, tb):
    """(T, C, kh, kw) -> (T_pad / tb, C*kh*kw, tb), ``T`` padded with zero columns.

    Rows follow the patch order ``(c, a, b)`` of :func:`vector_shared`'s offsets.
    Built at every call (weights may change between calls), by a Numba loop: the
    NumPy transposed copy took 47 us at 64 -> 64 channels, a fifth of a batch-1 layer.
    """
    t = w.shape[0]
    wm = np.ascontiguousarray(w).reshape(t, -1)  # (T, C*kh*kw)
    out = np.empty((-(-t // tb), wm.shape[1], tb), dtype=w.dtype)
    _fill_blocks(wm, out)
    return out


def vector_conv(x, w, b, stride, padding, mask=None, scale=None, pre=None):
    """``(y, macs)``: the shared-mask gated conv (``mask`` (N, Ho, Wo)), or with
    ``mask=None`` the dense one, by :func:`vector_shared`.  No argument checks
    (callers made them): ``b`` (T,) or None, ``stride``/``padding`` int pairs,
    ``scale`` None or like ``mask``, ``pre`` None or ``(s, h)`` (C,) arrays."""
    (sh, sw), (ph, pw) = stride, padding
    n, _, h, wd = x.shape
    t, _, kh, kw = w.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
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


@intrinsic
def _affine_rows(typingctx, src, dst, h, nv, ws, wd, a, b, has_pre):
    """``dst[r*wd + k] = f(src[r*ws + k])`` for ``r < h``, ``k < nv * L``, in LLVM IR.

    ``f(v) = max(v * a + b, 0)`` with ``has_pre``, else ``v`` (a multiply and an
    add, not an FMA: the rounding of :func:`copy_image`'s loop); ``L`` = 8 float32
    or 4 float64 lanes; ``ws``, ``wd`` the row strides in elements.  All rows in one
    call: the Numba loop per row spent as long on each row's loop set-up and
    alias checks as on a 16-column row's work.
    """
    sig = types.void(src, dst, h, nv, ws, wd, a, b, has_pre)

    def codegen(context, builder, signature, args):
        h_v, nv_v, ws_v, wd_v, a_v, b_v, pre_v = args[2:]
        (sp, dp), fty, size, lanes = array_lanes(context, builder, signature, args, (0, 1))
        vty, i64 = ir.VectorType(fty, lanes), ir.IntType(64)
        av, bv = splat(builder, vty, a_v), splat(builder, vty, b_v)
        with cgutils.for_range(builder, h_v) as rows:
            s0, d0 = builder.mul(rows.index, ws_v), builder.mul(rows.index, wd_v)
            with cgutils.for_range(builder, nv_v) as loop:
                k = builder.mul(loop.index, ir.Constant(i64, lanes))
                v = builder.load(vector_ptr(builder, sp, builder.add(s0, k), vty), align=size)
                builder.store(pre_value(builder, v, av, bv, pre_v),
                              vector_ptr(builder, dp, builder.add(d0, k), vty), align=size)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def copy_image(xn, buf, ph, pw, pre_s, pre_h, has_pre):
    """``buf[c, ph + r, pw + col] = xn[c, r, col]``, or ``max(xn * pre_s[c] + pre_h[c], 0)``.

    The interior of one zero-bordered padded image.  With ``has_pre`` the
    BN-ReLU that precedes the convolution is applied here, in the copy the
    kernel makes anyway, instead of as a pass of its own over the activations.
    Rows of whole vectors (unit column stride): a channel per :func:`_affine_rows`
    call (one image in cache, float32, has_pre: 32@16x16 3.1 -> 2.0 us, 64@8x8
    2.1 -> 1.4, 16@32x32 3.6 either way); other widths row by row.
    """
    c, h, w = xn.shape
    zero = buf.dtype.type(0)
    lanes = 32 // buf.itemsize
    whole = w % lanes == 0 and xn.strides[2] == xn.itemsize
    for ch in range(c):
        a = pre_s[ch] if has_pre else zero
        bb = pre_h[ch] if has_pre else zero
        if whole:
            _affine_rows(xn[ch], buf[ch, ph:, pw:], h, w // lanes, xn.strides[1] // xn.itemsize,
                         buf.shape[2], a, bb, has_pre)
            continue
        for r in range(h):
            dst = buf[ch, ph + r, pw : pw + w]  # indices from 0: a vectorised copy
            src = xn[ch, r]  # (2.5x faster than dst[pw + col] = src[col])
            if has_pre:
                for col in range(w):
                    v = src[col] * a + bb
                    dst[col] = zero if v <= zero else v  # NaN stays NaN
            else:
                for col in range(w):
                    dst[col] = src[col]


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
