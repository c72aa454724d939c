"""The cheap branch of a shared-mask LCCL at inference, in one call: ``V'`` and its mask.

For the ``kxkxCx1`` and ``1x1xCx1`` cheap kernels the cheap branch has a
single output channel, and at inference its BN is folded into the conv
(:func:`lccl_ref.functional.fold_into_conv`), so it is::

    V'[n, i, j] = max(0, b + sum_{c, p, q} w[c, p, q] * x[n, c, i*sh + p - ph, j*sw + q - pw])
    mask        = V' > 0                       (N, Ho, Wo), shared by all T channels

(``V'`` NaN where the sum is NaN, and the mask true there: NaN opens the gate, see
:class:`~lccl_ref.nn.LCCLConv2d`.)

with the taps that fall into the zero padding adding nothing.

How (:func:`cheap_single`, one Numba call, NCHW, ``x`` only read):

1. copy a chunk of images (as many as fit in :data:`BUF_BYTES`) into
   zero-bordered *planes* laid out so that every output position is one
   flat index ``e = (image_slot*Hs + i)*Wq + j`` and every tap ``(c, p, q)``
   a constant offset from it.  At stride 1 a plane is the padded image,
   and neighbours share their zero borders (``Wq = W + pw``: a row's right
   padding is the next row's left padding; ``Hs = H + ph`` likewise between
   images), so only ``(H+ph)(W+pw)/(H*W)`` of the positions are wasted.
   At stride ``s`` each channel is split into ``s x s`` phase planes
   (``plane[a, b][r, j] = xpad[s*r + a, s*j + b]``), which turns the strided
   conv into a stride-1 one over ``C*s*s`` planes with ``ceil(k/s)^2`` taps
   each, so only the needed outputs are computed (even / odd columns split
   in one pass at stride 2).  Positions outside ``x`` are zeroed once per
   call and never written;
2. the sums at every flat position (:func:`tap_sweeps`).  Up to
   :data:`REGISTER_TAPS` taps (the 1x1 kernels), :data:`TAP_COLS` vectors of
   positions at a time with their accumulators in registers for all taps
   (:func:`_taps_step`, LLVM IR: per tap one broadcast, 4 loads, 4 FMAs).
   With more taps, for a block of :data:`BLOCK` flat positions, sweeps of
   eight taps::

       acc[e] += w0*P[e + o0] + ... + w7*P[e + o7]      (e over the block)

   ``acc`` is on the stack (:func:`~lccl_ref.kernels.vector._stack_ptr`, so
   LLVM knows it aliases nothing and vectorises the sweep without run-time
   checks; the block is rounded up to whole vectors, the extra positions are
   garbage that the buffer's slack absorbs): per 8 lanes, 9 loads, 8 FMAs and
   one store (sweeps of 4 and 1 taps for the rest of ``C*kh*kw``);
3. ReLU, mask and count while writing the block's output rows.

Why not im2col + GEMM: the cheap conv has one output channel, so im2col
would copy the input ``kh*kw`` times to feed a one-column product.

Only the ``contract`` fast-math flag is set (FMAs): each output is a plain
sum over the taps in ``(c, p, q)`` order, so the result is the loop conv's
up to the grouping of eight taps and the fused roundings.

Work: ``C*kh*kw`` MACs per flat position, the cost model's
``C*kh*kw*Ho*Wo`` (``macs_cheap`` of ``LCCLConv2d.last_stats``) times
``(Hs*Wq)/(Ho*Wo)``: 1.06 at 32x32, 1.13 at 16x16, 1.27 at 8x8 (3x3, pad 1),
at stride 2 too (the previous version computed all ``H*W`` positions, four
times the needed work).

Measured (float32, one thread, medians of 11, the better of 3 alternating
runs, old and new in one process; one core of a shared AMD EPYC (Zen 1),
others running, so +-10 %).  ResNet-20 shapes, 3x3 pad 1 unless said:

===========================  =========  =========
N, C@HxW, stride             old (ms)   new (ms)
===========================  =========  =========
128, 16@32x32, 1                 4.9        2.8
128, 16@32x32, 2                 4.8        1.8
128, 32@16x16, 1                 2.1        1.5
128, 32@16x16, 2                 1.9        1.2
128, 64@8x8, 1                   1.2        0.85
1, 16@32x32, 1                   0.051      0.039
1, 64@8x8, 1                     0.026      0.024
1, 64@56x56, 1                   0.34       0.25
128, 16@32x32, 1x1, 1            1.55       1.35
128, 16@32x32, 1x1, 2            1.35       1.15
===========================  =========  =========

At 128x16@32x32 stride 1: copy 0.87 ms (a NumPy ``x.sum()`` of the same
8 MB takes 0.86), sweeps 1.75 ms (10.8 GMAC/s; the sweep alone in L1 runs at
14.7 GMAC/s with aligned taps, 11-13 with the shifted ones: apparently
bound by the nine 256-bit loads and the store per 8 FMAs), output
0.15 ms.  The old tap planes did the same MACs as axpys through memory
(a load and a store per FMA) plus a shift-add pass.

Tried and dropped: two output rows per sweep for 3x3 (row-phase planes, the
shared input rows loaded once: 12 loads for 18 FMAs; 13.9 GMAC/s in L1 but
only 6 % faster end to end); 4 rows (no better in L1); splitting the
eight-tap FMA chain into two or four partial sums (no change: not latency
bound); copying the next chunk between sweeps, or software prefetch of it,
to overlap the copy with the sweeps (5-15 % slower); 512 / 2048 positions per
block and a 64 KB buffer (same); a 32-byte aligned accumulator (same);
vectorising across a block's columns with the channels inside (LLVM's SLP
vectoriser left it scalar, 1 GMAC/s).  Keep out of this kernel: integer
divisions per row or tap (the tap table by ``%`` and ``//`` per channel and
tap: 0.028 instead of 0.024 ms at 1x64@8x8), and the copy's branches inside
the main kernel's loops (the copy ran 3x slower than as its own function).

The naive twin is ``functional.conv2d_naive`` followed by ``max(., 0)``
(``tests/test_kernels_cheap.py``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.numpy_support import carray

from ..checks import check_conv_args, check_float_array, effective_stride
from .ir import array_lanes, fma, splat, vector_ptr
from .vector import _stack_ptr, copy_image

#: Fast-math flags of the sums: FMA contraction only, no reassociation.
_FMA = {"contract"}
#: Output positions per block: a block's accumulators live on the stack (L1).
BLOCK = 1024
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
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    v = np.empty((n, ho, wo), dtype=x.dtype)
    mask = np.empty((n, ho, wo), dtype=np.bool_)
    active = _cheap_single(np.ascontiguousarray(x), np.ascontiguousarray(w[0]), b[0],
                           sh, sw, ph, pw, v, mask)
    return v, mask, int(active)


@njit(cache=True)
def _copy_image(xn, buf, chan, plane, rowmap, cols, pw, sw, eo, oo, je, jo):
    """Step 1: copy the image ``xn`` (C, H, W) into its slot of the planes, from ``buf[0]``.

    ``rowmap[xr]`` is the offset of input row ``xr`` in a channel's planes (-1: read by no
    tap), ``chan`` the distance between channels; columns: contiguous at stride 1, split
    into the even / odd planes (offsets ``eo`` / ``oo``, at most ``je`` / ``jo`` columns)
    at stride 2, else phase ``b`` takes its columns ``cols[b, 0] <= j < cols[b, 1]`` from
    ``x`` columns ``cols[b, 2] + (j - cols[b, 0])*sw``.  Positions never written stay zero.
    """
    c, h, wd = xn.shape
    for ch in range(c):
        for xr in range(h):
            rm = rowmap[xr]
            if rm < 0:
                continue
            src = xn[ch, xr]
            base = ch * chan + rm
            if sw == 1:
                dst = buf[base + pw:base + pw + wd]
                k = 0
                while k + 8 <= wd:  # loads, then stores: 0.85 not 0.98 ms at 128x64@8x8
                    a0, a1, a2, a3 = src[k], src[k + 1], src[k + 2], src[k + 3]
                    a4, a5, a6, a7 = src[k + 4], src[k + 5], src[k + 6], src[k + 7]
                    dst[k], dst[k + 1], dst[k + 2], dst[k + 3] = a0, a1, a2, a3
                    dst[k + 4], dst[k + 5], dst[k + 6], dst[k + 7] = a4, a5, a6, a7
                    k += 8
                for r in range(k, wd):
                    dst[r] = src[r]
            elif eo >= 0:
                even, odd = buf[base + eo:], buf[base + oo:]
                npair = min(wd // 2, je, jo)
                for k in range(npair):
                    even[k] = src[2 * k]
                    odd[k] = src[2 * k + 1]
                for xc in range(2 * npair, wd):
                    k = xc // 2
                    if xc % 2 == 0:
                        if k < je:
                            even[k] = src[xc]
                    elif k < jo:
                        odd[k] = src[xc]
            else:
                for bb in range(cols.shape[0]):
                    c0, c1, x0 = cols[bb, 0], cols[bb, 1], cols[bb, 2]
                    dst = buf[base + bb * plane + c0:]
                    for k in range(c1 - c0):
                        dst[k] = src[x0 + k * sw]


@intrinsic
def _taps_step(typingctx, xb, wt, toff, e, bias, out, cols):
    """One step of :func:`tap_sweeps`, in LLVM IR: ``cols`` (a literal int) vectors of
    outputs ``out[e + l] = bias + sum_k wt[k] * xb[e + toff[k] + l]``, ``l < cols * L``.

    The ``cols`` accumulators stay in registers for the whole tap loop (one weight
    broadcast, ``cols`` loads and ``cols`` FMAs per tap), and are stored once.
    """
    if not isinstance(cols, types.IntegerLiteral):
        return None
    n_cols = cols.literal_value
    sig = types.void(xb, wt, toff, e, bias, out, cols)

    def codegen(context, builder, signature, args):
        e_v, bias_v = args[3], args[4]
        (xp, wp, tp, op), fty, size, lanes = array_lanes(context, builder, signature, args,
                                                         (0, 1, 2, 5))
        vty, i64 = ir.VectorType(fty, lanes), ir.IntType(64)
        fma_v = fma(builder, vty)
        n_taps = cgutils.create_struct_proxy(signature.args[2])(
            context, builder, value=args[2]).nitems
        accp = [cgutils.alloca_once_value(builder, splat(builder, vty, bias_v))
                for _ in range(n_cols)]
        with cgutils.for_range(builder, n_taps) as loop:
            k = loop.index
            w = splat(builder, vty, builder.load(builder.gep(wp, [k])))
            p = builder.add(e_v, builder.load(builder.gep(tp, [k])))
            for v, a_ptr in enumerate(accp):
                ptr = vector_ptr(builder, xp, builder.add(p, ir.Constant(i64, v * lanes)), vty)
                x = builder.load(ptr, align=size)
                builder.store(builder.call(fma_v, [x, w, builder.load(a_ptr)]), a_ptr)
        for v, a_ptr in enumerate(accp):
            ptr = vector_ptr(builder, op, builder.add(e_v, ir.Constant(i64, v * lanes)), vty)
            builder.store(builder.load(a_ptr), ptr, align=size)
        return context.get_dummy_value()

    return sig, codegen


#: Vectors of outputs per :func:`_taps_step`.
TAP_COLS = 4
#: Taps up to which :func:`tap_sweeps` keeps its accumulators in registers.
REGISTER_TAPS = 64


@njit(fastmath=_FMA, cache=True)
def _block_sweeps(xb, wt, toff, e0, e1, bias, vflat):
    """:func:`tap_sweeps` for many taps, in blocks of :data:`BLOCK` positions: eight taps
    per sweep over a block, so the stack accumulator is loaded and stored once per
    eight FMAs (then four, then one for the remaining taps); LLVM vectorises each
    sweep over the positions.
    """
    acc = carray(_stack_ptr(BLOCK, xb.dtype), (BLOCK,))
    nt = toff.shape[0]
    for g in range(e0, e1, BLOCK):
        m8 = (min(BLOCK, e1 - g) + 7) // 8 * 8  # whole vectors: no scalar remainder
        for k in range(m8):
            acc[k] = bias
        t = 0
        while t + 8 <= nt:
            w0, w1, w2, w3 = wt[t], wt[t + 1], wt[t + 2], wt[t + 3]
            w4, w5, w6, w7 = wt[t + 4], wt[t + 5], wt[t + 6], wt[t + 7]
            s0, s1 = xb[g + toff[t]:], xb[g + toff[t + 1]:]
            s2, s3 = xb[g + toff[t + 2]:], xb[g + toff[t + 3]:]
            s4, s5 = xb[g + toff[t + 4]:], xb[g + toff[t + 5]:]
            s6, s7 = xb[g + toff[t + 6]:], xb[g + toff[t + 7]:]
            for k in range(m8):
                acc[k] = (acc[k] + w0 * s0[k] + w1 * s1[k] + w2 * s2[k] + w3 * s3[k]
                          + w4 * s4[k] + w5 * s5[k] + w6 * s6[k] + w7 * s7[k])
            t += 8
        if t + 4 <= nt:
            w0, w1, w2, w3 = wt[t], wt[t + 1], wt[t + 2], wt[t + 3]
            s0, s1 = xb[g + toff[t]:], xb[g + toff[t + 1]:]
            s2, s3 = xb[g + toff[t + 2]:], xb[g + toff[t + 3]:]
            for k in range(m8):
                acc[k] = acc[k] + w0 * s0[k] + w1 * s1[k] + w2 * s2[k] + w3 * s3[k]
            t += 4
        while t < nt:
            w0, s0 = wt[t], xb[g + toff[t]:]
            for k in range(m8):
                acc[k] = acc[k] + w0 * s0[k]
            t += 1
        dst = vflat[g:]
        for k in range(m8):
            dst[k] = acc[k]


@njit(cache=True)
def tap_sweeps(xb, wt, toff, e0, e1, bias, vflat):
    """``vflat[e] = bias + sum_k wt[k] * xb[e + toff[k]]`` for ``e0 <= e < e1`` (and up to
    7 past ``e1``: whole vectors).

    Step 2 of the module header, shared with :mod:`.fused`.  Each output is the FMA
    chain over the taps in order, so both strategies give the same bits:

    * up to :data:`REGISTER_TAPS` taps, :func:`_taps_step` over :data:`TAP_COLS`
      vectors of positions at a time, then one vector at a time, the accumulators
      in registers for all taps;
    * more taps, :func:`_block_sweeps`.

    Measured (one image in cache, float32, us, block sweeps / register steps): the
    1x1 kernel at 16@32x32 2.2 / 1.9 (in :func:`.fused.fused_image`, right after
    its copy, 2.6-4.3 / 2.0), 32@16x16 1.14 / 1.12, 64@8x8 0.70 / 0.72, at
    stride 2 16@32x32 0.62 / 0.53, 32@16x16 0.40 / 0.34; the 3x3 at stride 2
    16@32x32 (144 taps) 3.8 / 4.5, 64@8x8 (576) 4.5 / 5.3: with many taps the
    register steps stream the whole input buffer through L1 for every step,
    the block sweeps eight taps' rows in order.
    """
    if toff.shape[0] > REGISTER_TAPS:
        _block_sweeps(xb, wt, toff, e0, e1, bias, vflat)
        return
    lanes = 32 // xb.itemsize
    step = TAP_COLS * lanes
    end = e0 + (e1 - e0 + lanes - 1) // lanes * lanes
    g = e0
    while g + step <= end:
        _taps_step(xb, wt, toff, g, bias, vflat, TAP_COLS)
        g += step
    while g < end:  # then one vector at a time
        _taps_step(xb, wt, toff, g, bias, vflat, 1)
        g += lanes


#: Fewest output rows :func:`row_sweeps_3x3` needs (its narrowest step is 4 rows high).
ROWS = 4


@intrinsic
def _rows_3x3(typingctx, xb, w9, e, chan, plane, nc, wq, bias, out, rows, cols, stride):
    """One step of :func:`row_sweeps_3x3` (``stride`` 1) or :func:`row_sweeps_3x3_s2`
    (``stride`` 2), written in LLVM IR with explicit vectors.

    ``out[e + r*Wq + l] = bias + sum_{c, a, b} w9[9c + 3a + b] * xb[c*chan + e + tap(a, b) + l]``
    for ``r < rows`` and ``l`` over ``cols`` vectors (of 8 float32 or 4 float64
    lanes); ``rows``, ``cols`` and ``stride`` are literal ints.  At stride 1
    ``tap(a, b) = (r+a)*Wq + b``: per channel 9 weight broadcasts, ``(rows + 2) *
    3 * cols`` vector loads (the input rows that the output rows share are loaded
    once) and ``9 * rows * cols`` FMAs into ``rows * cols`` accumulators, column
    shift ``b`` by column shift (an accumulator adds a channel's taps in the order
    ``(b, a)``), each weight broadcast where it is first used.  In that order
    LLVM keeps a step of 8 accumulators (4 x 2, 8 x 1) in registers and
    schedules it better than row by row (``(a, b)`` order, all 9 weights
    broadcast first): 32@16x16 4.3 -> 3.7 us at 4 x 2, 64@8x8 2.4 -> 1.8 at
    8 x 1.  Steps of 10-16 accumulators still spill.  At
    stride 2, in the phase layout of :mod:`.fused` (a channel's four ``Hq x Wq``
    phase planes ``plane`` apart), ``tap(a, b) = (2*(a % 2) + b % 2)*plane + (r + a//2)*Wq
    + b//2``: a row of phase plane ``(0, b % 2)`` serves two output rows (taps
    ``a`` = 0 and 2), so ``(6*rows + 3) * cols`` loads for the same FMAs.  In
    Python-level Numba code LLVM would not keep this block in registers (both of
    its vectorisers were tried, see :mod:`.fused`), so the IR is spelled out.
    """
    if not all(isinstance(k, types.IntegerLiteral) for k in (rows, cols, stride)):
        return None
    n_rows, n_cols, step = rows.literal_value, cols.literal_value, stride.literal_value
    sig = types.void(xb, w9, e, chan, plane, nc, wq, bias, out, rows, cols, stride)

    def codegen(context, builder, signature, args):
        xb_v, w_v, e_v, chan_v, plane_v, nc_v, wq_v, bias_v, out_v = args[:9]
        (xp, wp, op), fty, size, lanes = array_lanes(context, builder, signature, args,
                                                     (0, 1, 8))
        vty, i64 = ir.VectorType(fty, lanes), ir.IntType(64)
        fma_v = fma(builder, vty)

        def const(k):
            return ir.Constant(i64, k)

        accp = [cgutils.alloca_once_value(builder, splat(builder, vty, bias_v))
                for _ in range(n_rows * n_cols)]  # accumulator r*cols + v
        with cgutils.for_range(builder, nc_v) as loop:
            c = loop.index
            p = builder.add(builder.mul(c, chan_v), e_v)
            w0 = builder.mul(c, const(9))
            ws = {}

            def weight(k):  # broadcast at its first use (fewer live registers)
                if k not in ws:
                    ws[k] = splat(builder, vty, builder.load(builder.gep(wp, [builder.add(
                        w0, const(k))])))
                return ws[k]

            accs = [builder.load(a) for a in accp]

            def taps(row, b, shift, rows_of):  # the loads of one row: FMAs for its taps
                for v in range(n_cols):
                    ptr = vector_ptr(builder, xp, builder.add(row, const(v * lanes + shift)), vty)
                    x = builder.load(ptr, align=size)
                    for r, a in rows_of:
                        k = r * n_cols + v
                        accs[k] = builder.call(fma_v, [x, weight(3 * a + b), accs[k]])

            if step == 1:
                for b in range(3):
                    for rho in range(n_rows + 2):  # input rows e + rho*Wq
                        row = builder.add(p, builder.mul(const(rho), wq_v))
                        taps(row, b, b, [(r, rho - r) for r in range(n_rows)
                                         if 0 <= rho - r < 3])
            else:
                for pa in range(2):  # row phase: taps a = pa, pa + 2
                    for pb in range(2):
                        base = builder.add(p, builder.mul(const(2 * pa + pb), plane_v))
                        for rho in range(n_rows + 1 - pa):  # phase rows e + rho*Wq
                            row = builder.add(base, builder.mul(const(rho), wq_v))
                            rows_of = [(r, pa + 2 * (rho - r)) for r in range(n_rows)
                                       if 0 <= rho - r <= 1 - pa]
                            for b in range(pb, 3, 2):
                                taps(row, b, b // 2, rows_of)
            for a_ptr, acc in zip(accp, accs):
                builder.store(acc, a_ptr)
        for r in range(n_rows):
            for v in range(n_cols):
                off = builder.add(builder.add(e_v, builder.mul(const(r), wq_v)),
                                  const(v * lanes))
                ptr = vector_ptr(builder, op, off, vty)
                builder.store(builder.load(accp[r * n_cols + v]), ptr, align=size)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _sweep_grid(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat, rows, cols, stride):
    """:func:`_rows_3x3` steps of ``rows`` x ``cols`` vectors over the output, the last
    row group and column group shifted back to end at ``Ho`` and ``Wo``."""
    width = cols * (32 // xb.itemsize)
    for i0 in range(0, ho, rows):
        i = min(i0, ho - rows)
        for j0 in range(0, wo, width):
            j = min(j0, wo - width)
            _rows_3x3(xb, wt, i * wq + j, chan, plane, nc, wq, bias, vflat, rows, cols, stride)


@njit(inline="always")
def _sweeps(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat, stride):
    """Steps of 8 accumulators where the output holds them: 4 rows x 2 vectors from
    ``Wo >=`` 2 vectors, else 8 x 1 from ``Ho >= 8``, else 4 x 1."""
    lanes = 32 // xb.itemsize
    if wo >= 2 * lanes:
        _sweep_grid(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat, 4, 2, stride)
    elif ho >= 8:
        _sweep_grid(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat, 8, 1, stride)
    else:
        _sweep_grid(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat, 4, 1, stride)


@njit(cache=True)
def row_sweeps_3x3(xb, wt, chan, nc, ho, wo, wq, bias, vflat):
    """The 3x3 stride-1 cheap conv: ``vflat[i*Wq + j]`` for ``i < Ho``, ``j < Wo``.

    Same result as :func:`tap_sweeps` (taps ``(c, a, b)`` at ``c*chan + a*Wq + b``,
    ``wt`` (9C,)) at the output cells, up to the rounding of the order of the
    taps: steps of 8 accumulators, a few output rows by a few vectors of
    columns -- 4 rows x 2 vectors from ``Wo >=`` 2 vectors (16 float32
    columns), else 8 x 1 from ``Ho >= 8``, else 4 x 1 -- the last group of
    rows and of columns shifted back to end at ``Ho`` and ``Wo`` (cells in
    the overlap are computed twice, with the same value).  Needs
    ``Ho >= ROWS`` and ``Wo >=`` the vector width (8 in float32, 4 in
    float64).  The padding columns (``j >= Wo``) that :func:`tap_sweeps`
    computes too are not computed: at 8x8 they were 18% of its work.

    Measured (one image in cache, float32, us; the cheap branch's 1/T share of
    the dense conv's time in brackets): 16@32x32 6.3-7.4 at 4 x 2, 6.4-7.5 at
    2 x 4 (9.3; the range is from process to process, by where the buffers
    fall), in :func:`.fused.fused_image` 7.8; 32@16x16 3.7 (4.4); 64@8x8 1.8
    at 8 x 1, 2.4 at 4 x 1 (2.1).  In the earlier ``(a, b)`` tap order:
    8.6, 4.3-4.8 and 2.4-2.6, and 8 x 1 no faster than 4 x 1.  Steps of 3 x
    4, 4 x 4, 5 x 2, 6 x 2 and 3 x 3 (10-16 accumulators) spill and run at
    0.8-0.9 FMA per cycle, against 1.25-1.45 for 8.  :func:`tap_sweeps` took
    13.5, 7.2 and 4.4.
    """
    _sweeps(xb, wt, chan, 0, nc, ho, wo, wq, bias, vflat, 1)


@njit(cache=True)
def row_sweeps_3x3_s2(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat):
    """The 3x3 stride-2 cheap conv in the phase layout of :mod:`.fused` (channel ``c``'s
    phase plane ``(pa, pb)`` at ``c*chan + (2*pa + pb)*plane``, ``Wq`` columns):
    ``vflat[i*Wq + j]`` for ``i < Ho``, ``j < Wo``, as :func:`row_sweeps_3x3` does
    at stride 1 (same steps, same needs), for the taps of :func:`tap_sweeps` at
    ``(2*(a % 2) + b % 2)*plane + (a // 2)*Wq + b // 2``.

    Measured (one image in cache, float32, us; the MAC share in brackets): 16@32x32
    -> 16x16 2.8 (2.4), 32@16x16 -> 8x8 1.6 (1.1); :func:`tap_sweeps` took 4.1 and
    2.6 (its eight-tap sweeps load every tap's input, 9 loads per 8 FMAs).
    """
    _sweeps(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat, 2)


#: Input channels up to which :func:`conv3x3_rows` beats the register-blocked kernel.
ROWS_MAX_C = 4


@njit(cache=True)
def conv3x3_rows(xn, buf, wt, b, ph, pw, yn, vflat, pre_s, pre_h, has_pre, res=None):
    """A dense 3x3 stride-1 conv with few input channels (a network's stem), as ``T``
    one-channel :func:`row_sweeps_3x3`; returns its MACs.

    ``xn`` (C, H, W) any strides; ``buf`` the zero-bordered ``(C, Hp, Wp)`` padded
    image (its border kept from call to call, as in
    :func:`.vector.copy_image`, which fills it, with ``max(x * pre_s + pre_h, 0)``
    when ``has_pre``); ``wt`` (T, 9C) the weights, ``b`` (T,) the bias; ``yn``
    (T, Ho*Wo) gets ``conv + b`` (``+ res``, (T, Ho*Wo), when given);
    ``vflat`` ((Ho-1)*Wp + Wo + 8,) scratch.  Needs ``Ho >= ROWS`` and ``Wo >=``
    the vector width.

    Why: with ``C*9 = 27`` taps, the register-blocked kernel of :mod:`.vector`
    spends a third of its time per block outside the FMAs (loading positions,
    zeroing and storing 80 accumulators).  ResNet-20's stem, 3 -> 16 at 32x32,
    one image in cache: 30 us against 42 (float32).
    """
    c, hp, wp = buf.shape
    t = yn.shape[0]
    ho, wo = hp - 2, wp - 2
    copy_image(xn, buf, ph, pw, pre_s, pre_h, has_pre)
    xb = buf.reshape(-1)
    for o in range(t):
        row_sweeps_3x3(xb, wt[o], hp * wp, c, ho, wo, wp, b[o], vflat)
        yt = yn[o]
        for i in range(ho):
            src = vflat[i * wp: i * wp + wo]
            dst = yt[i * wo: i * wo + wo]
            if res is None:
                for j in range(wo):
                    dst[j] = src[j]
            else:
                rt = res[o, i * wo: i * wo + wo]
                for j in range(wo):
                    dst[j] = src[j] + rt[j]
    return ho * wo * t * c * 9


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
            _copy_image(x[n0 + nl], buf[nl * img:], chan, plane, rowmap, cols, pw, sw,
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
