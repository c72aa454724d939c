"""A shared-mask LCCL layer at inference in one call: cheap branch, mask and gated conv, fused.

For the ``kxkxCx1`` and ``1x1xCx1`` cheap kernels (one cheap output channel,
BN folded in) the eval forward of :class:`~lccl_ref.nn.LCCLConv2d` is::

    V'   = max(conv_{w_c}(x) + b_c, 0)            (N, Ho, Wo)      cheap branch
    mask = V' > 0                                 shared by all T channels (NaN: true)
    O    = conv_W(x) * V'  where mask, else 0     (N, T, Ho, Wo)

Done as two calls (:func:`.cheap.cheap_single_unchecked`, then the
``"vector"`` kernel of :mod:`.vector` with ``scale=V'``), the input is
copied and padded twice and ``V'`` and the mask go through memory between
them.  :func:`lccl_shared_eval` does it all in one Numba call, per image:

1. copy ``x[n]`` once into a zero-bordered buffer laid out
   ``(C, sh, sw, Hq, Wq)``: the padded image split into its ``sh * sw``
   stride phases (``Hq = ceil(Hp / sh)``, ``Wq = ceil(Wp / sw)``), so that
   at every stride the taps of consecutive output positions are consecutive
   in memory and consecutive output rows are ``Wq`` apart.  At stride 1
   this is :mod:`.vector`'s ``(C, Hp, Wp)`` buffer.  Output ``(i, j)`` has
   its window corner at ``i*Wq + j`` and tap ``(c, a, b)`` at the constant
   offset ``(((c*sh + a % sh)*sw + b % sw)*Hq + a // sh)*Wq + b // sw``;
2. the cheap branch: for a 3x3 window at stride 1 or 2, blocks of output rows
   by vectors of columns in LLVM IR (:func:`.cheap.row_sweeps_3x3`, at stride 2
   over the phase planes: :func:`.cheap.row_sweeps_3x3_s2`); otherwise
   for every flat position ``e = i*Wq + j`` of the image (one run; the
   ``Wq - Wo`` positions past each row's end are computed and thrown away),
   by :func:`.cheap.tap_sweeps` (few taps: a few vectors of positions at a
   time, accumulators in registers; many: eight taps per sweep over blocks of
   :data:`.cheap.BLOCK` positions);
3. per band of output rows (as in :mod:`.vector`): ``V' = max(v, 0)``, the
   mask bytes and the list of active positions in one pass, a vector at a
   time, one call for the band (:func:`_band_list`, :func:`_compact`); the register-blocked
   blocks of :mod:`.vector` (:func:`.vector.run_blocks`) for all ``T``
   outputs of the active positions; the band's ``y`` written plane by plane
   as ``acc * V'`` at active cells, 0 elsewhere (plus ``res``, a residual,
   when given).

Steps 1-3 for one image are :func:`fused_image` (scratch passed in, tables
from :func:`fused_tables`), which :func:`lccl_shared_eval` loops over the
batch and :mod:`lccl_ref.engine` calls per image.  ``pre=(s, h)`` (the BN-ReLU
before the layer) is applied in step 1's copy at every stride: in the
stride-1 copy and in the phase copies.

The cheap window must lie inside the expensive one (true for both kinds:
the same window, or its centre for 1x1 with ``cheap_padding = padding -
(k - 1) // 2``), so one buffer serves both convolutions.

MACs of the expensive conv are counted as the kernel runs, exactly as
:func:`.vector.vector_shared` counts them: ``active positions * T*C*kh*kw``.
The cheap branch's MACs (``N*Ho*Wo*C*kh'*kw'``, the cost model's) and the
product ``V * V'`` are not counted here.

Measured (``benchmarks/bench_fused.py``: float32, one core of an AMD EPYC
shared with other jobs, +-10 %, r = 0.65, 3x3, medians of 7), fused /
two-call / dense ms: 16@32x32 batch 128 16.3 / 17.2 / 20.9 (kxkxCx1) and
15.0 / 16.1 / 21.2 (1x1xCx1); 16 -> 32 stride 2 @32x32 8.4 / 9.3 / 10.7;
32@16x16 13.7 / 14.4 / 18.9; 64@8x8 12.9 / 13.1 / 18.0; 64@56x56 batch 1
5.4 / 6.8 / 9.0; at batch 1 on ResNet-20 shapes 0.85-1.02 of the two-call
time.  At 16@32x32 batch 128 the parts are: copy 0.9 ms, cheap branch
1.7 ms (11 GMAC/s; its ``1/T`` share of the dense conv would be 1.3), mask
and list 0.3, blocks and output write as in :mod:`.vector`.  In float64
the blocks spill (see :mod:`.vector`): fused / two-call 36.6 / 37.5 ms at
32@16x16 batch 128, but 35.1 / 31.6 at 64@8x8, where the two-call path's
``"auto"`` picks the gather-GEMM.

Tried and dropped: cheap blocks of 32 positions held in registers across
all taps (like :mod:`.vector`'s blocks): LLVM did not vectorise them
(scalar FMAs, 2 GMAC/s); three output rows per sweep so that each loaded
input vector serves three rows (27 FMAs per 15 loads): LLVM turned the
shifted loads into shuffles and spilled, 5 GMAC/s; rounding the cheap
blocks up to 32 positions (no gain at 8x8); 2 or 4 output rows per
block of 8 positions with the rows' accumulators on the stack (per
channel 12 or 18 loads for 18 or 36 FMAs): the SLP vectoriser left the
lanes scalar (5-8x slower), and as loops over a whole padded row (loop
vectoriser, 2 rows) the rows were too short for its interleaved vector
loop (2.7x slower at 16@32x32).  In the output write, the
product inside the select (``ot * s if m else 0``) made LLVM branch per
cell (+1.5 ms at 16@32x32 batch 128).  At stride 2 a scatter through a
column map (2.6 ms for the copy at 16@32x32 batch 128), two slices of the
source row, or the odd last column stored in the pair loop (both 3x
slower than the copy in :func:`_copy_rows_2`); that copy through a stack
row buffer, so that LLVM could see the even and odd outputs do not alias
(1.1-1.5x slower: the deinterleave stayed scalar; :func:`_split_pairs` now
spells it out in LLVM IR).

The naive twins are :func:`lccl_ref.functional.conv2d_naive` for both
convolutions (``tests/test_kernels_fused.py``) and the two-call path.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..checks import (
    check_conv_args,
    check_float_array,
    check_same_dtype,
    conv_geometry,
    effective_stride,
    pair,
)
from .cheap import ROWS, row_sweeps_3x3, row_sweeps_3x3_s2, tap_sweeps
from .ir import array_lanes, pre_value, splat, vector_ptr
from .vector import (
    band_cells,
    channel_block,
    copy_image,
    run_blocks,
    weight_blocks,
)


def lccl_shared_eval(x, w, w_cheap, b_cheap, stride=1, padding=0, cheap_padding=0):
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

    Returns
    -------
    y : ndarray, (N, T, Ho, Wo), dtype of ``x``
        ``conv_w(x) * V'`` where ``V' > 0``, exactly 0 elsewhere.
        ``Ho = (H + 2*ph - kh) // sh + 1``, likewise ``Wo``.
    v : ndarray, (N, Ho, Wo), dtype of ``x``
        ``V' = max(conv_{w_cheap}(x) + b_cheap, 0)``.
    mask : ndarray of bool, (N, Ho, Wo)
        ``v > 0``, and true where ``v`` is NaN (see :class:`~lccl_ref.nn.LCCLConv2d`).
    active : int
        The number of true cells of ``mask`` (positions, not cells times T).
    macs_expensive : int
        Multiply-accumulates of the expensive conv, counted as the kernel
        runs: ``active * T*C*kh*kw``.

    Notes
    -----
    PAPER.md, "The idea": ``O = V * V'`` with ``V`` needed only where
    ``V' > 0``; the cost is ``r XYTk^2C`` MACs for the expensive conv plus
    ``XYk'^2C`` for the cheap one (the LCCL rows of "Cost and speed-up").
    """
    (sh, sw), (ph, pw), ho, wo = check_conv_args(x, w, None, stride, padding)
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
    return lccl_shared_eval_unchecked(x, w, w_cheap, b_cheap, (sh, sw), (ph, pw), (cph, cpw))


def lccl_shared_eval_unchecked(x, w, w_cheap, b_cheap, stride, padding, cheap_padding,
                               pre=None):
    """:func:`lccl_shared_eval` without the argument checks, for callers that made them.

    ``stride``, ``padding`` and ``cheap_padding`` are ``(int, int)`` pairs;
    the arrays are as :func:`lccl_shared_eval` requires (the layer's own
    weights and its checked ``x``).  ``pre``: None, or ``(s, h)`` (C,) arrays:
    both convolutions read ``max(x * s[c] + h[c], 0)``.
    """
    n, c, h, wd = x.shape
    (sh, sw), (ph, pw), (cph, cpw) = effective_stride(h, wd, stride, padding), padding, \
        cheap_padding
    t, _, kh, kw = w.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
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
                                 pre is not None)
    return y, v, mask, int(active), int(macs)


@njit(inline="always")
def _pre_value(v, a, b, has_pre, zero):
    """``max(v * a + b, 0)`` with ``has_pre`` (the folded BN-ReLU, no FMA), else ``v``."""
    if has_pre:
        v = v * a + b
        return zero if v <= zero else v  # NaN stays NaN, as np.maximum
    return v


@intrinsic
def _split_pairs(typingctx, src, de, do, rows, ws, wd, chunks, a, b, has_pre):
    """``de[r*wd + k] = f(src[r*ws + 2k])``, ``do[r*wd + k] = f(src[r*ws + 2k+1])`` for
    ``r < rows``, ``k < chunks * L``, in LLVM IR.

    ``f(v) = max(v * a + b, 0)`` with ``has_pre``, else ``v`` (a multiply and an
    add, not an FMA: the same rounding as ``F.batchnorm.affine_relu_unchecked``);
    ``L`` = 8 float32 or 4 float64 lanes; ``ws``, ``wd`` the row strides in
    elements, each row contiguous.  Per step two vector loads, two shuffles (even
    lanes, odd lanes) and two vector stores: LLVM did not vectorise the same
    deinterleave written as a Numba loop.  All the rows of a channel's row phase
    in one call (one call per row: 5.4 us for 16@32x32, a third more).
    """
    sig = types.void(src, de, do, rows, ws, wd, chunks, a, b, has_pre)

    def codegen(context, builder, signature, args):
        rows_v, ws_v, wd_v, n_v, a_v, b_v, pre_v = args[3:]
        (sp, ep, op), fty, size, lanes = array_lanes(context, builder, signature, args, (0, 1, 2))
        vty, i64, i32 = ir.VectorType(fty, lanes), ir.IntType(64), ir.IntType(32)

        def vec_at(ptr, k):
            return vector_ptr(builder, ptr, k, vty)

        av, bv = splat(builder, vty, a_v), splat(builder, vty, b_v)
        evens = ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2)))
        odds = ir.Constant(ir.VectorType(i32, lanes), list(range(1, 2 * lanes, 2)))
        with cgutils.for_range(builder, rows_v) as row:
            s0, d0 = builder.mul(row.index, ws_v), builder.mul(row.index, wd_v)
            with cgutils.for_range(builder, n_v) as loop:
                base = builder.add(s0, builder.mul(loop.index, ir.Constant(i64, 2 * lanes)))
                halves = []
                for k in (base, builder.add(base, ir.Constant(i64, lanes))):
                    v = builder.load(vec_at(sp, k), align=size)
                    halves.append(pre_value(builder, v, av, bv, pre_v))
                dk = builder.add(d0, builder.mul(loop.index, ir.Constant(i64, lanes)))
                builder.store(builder.shuffle_vector(*halves, evens), vec_at(ep, dk), align=size)
                builder.store(builder.shuffle_vector(*halves, odds), vec_at(op, dk), align=size)
        return context.get_dummy_value()

    return sig, codegen


def _lane_lists():
    """``LUT[m]``: the set bits of the byte ``m``, in order, one per byte of an int64
    (``m = 0b1011``: bytes 0, 1, 3); the other bytes 0."""
    lut = []
    for m in range(256):
        packed = 0
        for k, lane in enumerate(b for b in range(8) if m >> b & 1):
            packed |= lane << (8 * k)
        lut.append(packed)
    return lut


@intrinsic
def _compact(typingctx, vin, vout, mout, qs, base, um, q0, b0, nv, rows, ws, wd):
    """V', the mask and the branch-free list of the positive cells of ``rows`` rows, a
    vector at a time, in LLVM IR.

    Row ``r`` reads ``vin[r*ws:]`` and writes ``vout[r*wd:]``, ``mout[r*wd:]``.  For
    ``j < nv * L`` (``L`` = 8 float32 or 4 float64 lanes): ``vout[r*wd + j] =
    max(vin[r*ws + j], 0)`` (NaN for NaN), ``mout[r*wd + j] = not vin[r*ws + j] <= 0``
    (true for NaN, see :class:`~lccl_ref.nn.LCCLConv2d`), and for those cells, in order
    from ``qs[um]`` and ``base[um]`` on: ``qs = q0 + r*wd + j``, ``base = b0 + r*ws + j``;
    returns the new ``um``.  Per vector: one
    compare, a select and the mask bytes stored, its lane bits (``movmsk``)
    index :func:`_lane_lists` for the lanes to keep, which are stored as two whole
    vectors (lanes past the count are overwritten by the next step, and never
    reach past ``um + L``: the slots of the row's cells), and ``um`` grows by the
    popcount.  The scalar loop it replaces did a store per list per cell
    (1.8 us per 32x32 image with V' and the mask; 1.2 with this list and a
    vectorised Numba loop for V' and the mask, whose set-up per row cost as much as
    its work at 16 columns; in ResNet-20 at batch 1, 1.9 -> 1.7 us per 16@32x32
    layer with both here).  A band's rows in one call (:func:`_band_list`) instead
    of a call per row: 1.7 -> 1.1 us per 16@32x32 image, 0.6 -> 0.4 at 32@16x16,
    0.3 -> 0.1 at 64@8x8.  (Lists of 32-bit integers, half the stores: 1.1 -> 0.8
    us, but the blocks that read them took 1 us longer.)
    """
    sig = types.uint64(vin, vout, mout, qs, base, um, q0, b0, nv, rows, ws, wd)

    def codegen(context, builder, signature, args):
        um_v, q0_v, b0_v, nv_v, rows_v, ws_v, wd_v = args[5:]
        (vp, op, mp, qp, bp), fty, size, lanes = array_lanes(context, builder, signature, args,
                                                             (0, 1, 2, 3, 4))
        i64, i32, i8 = ir.IntType(64), ir.IntType(32), ir.IntType(8)
        vty, ity = ir.VectorType(fty, lanes), ir.VectorType(i64, lanes)
        module = builder.module
        lut = module.globals.get("lccl_lane_lists")
        if lut is None:
            lut = ir.GlobalVariable(module, ir.ArrayType(i64, 256), name="lccl_lane_lists")
            lut.initializer = ir.Constant(ir.ArrayType(i64, 256), _lane_lists())
            lut.global_constant = True
            lut.linkage = "internal"
        ctpop = cgutils.get_or_insert_function(module, ir.FunctionType(i64, [i64]),
                                               "llvm.ctpop.i64")

        zero = ir.Constant(vty, [0.0] * lanes)
        ump = cgutils.alloca_once_value(builder, um_v)
        with cgutils.for_range(builder, rows_v) as row:
            src, dst = builder.mul(row.index, ws_v), builder.mul(row.index, wd_v)
            vr, orow, mr = builder.gep(vp, [src]), builder.gep(op, [dst]), builder.gep(mp, [dst])
            qr, br = builder.add(q0_v, dst), builder.add(b0_v, src)
            with cgutils.for_range(builder, nv_v) as loop:
                j = builder.mul(loop.index, ir.Constant(i64, lanes))
                v = builder.load(vector_ptr(builder, vr, j, vty), align=size)
                on = builder.fcmp_unordered(">", v, zero)  # ugt: true for NaN
                builder.store(builder.select(on, v, zero), vector_ptr(builder, orow, j, vty),
                              align=size)
                builder.store(builder.zext(on, ir.VectorType(i8, lanes)),
                              vector_ptr(builder, mr, j, ir.VectorType(i8, lanes)), align=1)
                bits = builder.zext(builder.bitcast(on, ir.IntType(lanes)), i64)
                packed = builder.load(builder.gep(lut, [ir.Constant(i32, 0), bits]))
                if lanes == 8:
                    idx = builder.zext(builder.bitcast(packed, ir.VectorType(i8, 8)), ity)
                else:
                    idx = builder.zext(builder.bitcast(builder.trunc(packed, i32),
                                                       ir.VectorType(i8, 4)), ity)
                u = builder.load(ump)
                for ptr, start in ((qp, qr), (bp, br)):
                    builder.store(builder.add(idx, splat(builder, ity, builder.add(start, j))),
                                  vector_ptr(builder, ptr, u, ity), align=8)
                builder.store(builder.add(u, builder.call(ctpop, [bits])), ump)
        return builder.load(ump)

    return sig, codegen


@njit(inline="always")
def _row_list(vin, vout, mout, qs, base, um, q0, b0):
    """Step 3's row: :func:`_compact` over the whole vectors of ``vin``, then the rest of
    the cells one at a time (the same V', mask and list); returns the new ``um``."""
    lanes = 32 // vin.itemsize
    wo = vin.shape[0]
    zero = vin.dtype.type(0)
    um = _compact(vin, vout, mout, qs, base, um, q0, b0, wo // lanes, 1, 0, 0)
    for j in range(wo // lanes * lanes, wo):
        val = vin[j]
        on = not val <= zero  # true for NaN
        vout[j] = val if on else zero
        mout[j] = on
        qs[um] = q0 + j
        base[um] = b0 + np.uint64(j)
        um += np.uint64(on)
    return um


@njit(inline="always")
def _band_list(vflat, vrow, mrow, qs, base, i0, rows, q0, wo, wq):
    """Step 3 for the ``rows`` output rows of a band from row ``i0`` (its first cell
    ``q0``): V' and the mask into ``vrow`` / ``mrow``, the list of the positive cells
    into ``qs`` / ``base``; returns its length.  One :func:`_compact` call for the
    band when a row is whole vectors, else :func:`_row_list` row by row."""
    lanes = 32 // vflat.itemsize  # as in _row_list
    if wo % lanes == 0:
        return np.int64(_compact(vflat[i0 * wq:], vrow[q0:], mrow[q0:], qs, base, np.uint64(0),
                                 0, np.uint64(i0 * wq), wo // lanes, rows, wq, wo))
    um = np.uint64(0)
    for i in range(i0, i0 + rows):
        row0 = (i - i0) * wo
        vin = vflat[i * wq: i * wq + wo]
        vout, mout = vrow[q0 + row0: q0 + row0 + wo], mrow[q0 + row0: q0 + row0 + wo]
        b0 = np.uint64(i * wq)  # (unsigned: no wraparound code on the stores)
        um = _row_list(vin, vout, mout, qs, base, um, row0, b0)
    return np.int64(um)


@njit(cache=True)
def _copy_rows_2(xn, xb, chan, rowmap, even, odd, sh, wq, pre_s, pre_h, has_pre):
    """Column stride 2: columns ``2k`` and ``2k+1`` to their phases.

    Whole vectors of pairs by :func:`_split_pairs`, a channel's row phase (input
    rows ``p, p + sh, ...``, which land ``Wq`` apart) per call (rows with unit
    column stride), the rest one pair at a time; with ``has_pre`` each value is
    ``max(x * pre_s[c] + pre_h[c], 0)``, as in :func:`.vector.copy_image`.
    16@32x32, one image in cache: 4.0-4.5 us (5.5 with a call per row, 9.3 as a
    Numba loop; the stride-1 copy takes 3.6).
    """
    c, h, wd = xn.shape
    zero = xb.dtype.type(0)
    half = wd // 2
    chunks = half // (32 // xb.itemsize) if xn.strides[2] == xn.itemsize else 0
    done = chunks * (32 // xb.itemsize)
    row_step = sh * xn.strides[1] // xn.itemsize
    for ch in range(c):
        a = pre_s[ch] if has_pre else zero
        b = pre_h[ch] if has_pre else zero
        if chunks > 0:
            for p in range(min(sh, h)):
                _split_pairs(xn[ch, p:], xb[ch * chan + rowmap[p] + even:],
                             xb[ch * chan + rowmap[p] + odd:], (h - p + sh - 1) // sh, row_step,
                             wq, chunks, a, b, has_pre)
        if done < half:
            for r in range(h):
                src = xn[ch, r]
                de = xb[ch * chan + rowmap[r] + even:]
                do = xb[ch * chan + rowmap[r] + odd:]
                for k in range(done, half):
                    de[k] = _pre_value(src[2 * k], a, b, has_pre, zero)
                    do[k] = _pre_value(src[2 * k + 1], a, b, has_pre, zero)
    if wd % 2:  # the odd last column, after the loop above (inside it: 3x slower)
        for ch in range(c):
            for r in range(h):
                a = pre_s[ch] if has_pre else zero
                b = pre_h[ch] if has_pre else zero
                xb[ch * chan + rowmap[r] + even + wd // 2] = _pre_value(xn[ch, r, wd - 1], a, b,
                                                                      has_pre, zero)


@njit(cache=True)
def _copy_rows_any(xn, xb, chan, rowmap, cols, sw, pre_s, pre_h, has_pre):
    """Any column stride: each phase ``b`` takes ``cols[b, 2]`` columns from ``cols[b, 0]``
    (with ``has_pre``, ``max(x * pre_s[c] + pre_h[c], 0)``)."""
    c, h, wd = xn.shape
    zero = xb.dtype.type(0)
    for ch in range(c):
        a = pre_s[ch] if has_pre else zero
        bb = pre_h[ch] if has_pre else zero
        for r in range(h):
            src = xn[ch, r]
            for b in range(sw):
                c0 = cols[b, 0]
                dst = xb[ch * chan + rowmap[r] + cols[b, 1]:]
                for k in range(cols[b, 2]):
                    dst[k] = _pre_value(src[c0 + k * sw], a, bb, has_pre, zero)


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
    e = 0
    for ch in range(c):
        for a in range(kh):
            for b in range(kw):
                off[e] = (((ch * sh + a % sh) * sw + b % sw) * hq + a // sh) * wq + b // sw
                e += 1
    toff = np.empty(c * khc * kwc, dtype=np.int64)
    e = 0
    for ch in range(c):
        for a in range(dh, dh + khc):
            for b in range(dw, dw + kwc):
                toff[e] = (((ch * sh + a % sh) * sw + b % sw) * hq + a // sh) * wq + b // sw
                e += 1
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


def fused_buffer(c, sh, sw, hq, wq, dtype):
    """The zero padded image of :func:`fused_image` (with slack for the cheap overrun)."""
    return np.zeros(c * sh * sw * hq * wq + 8 + wq, dtype=dtype)


@njit(cache=True)
def _taps_3x3(toff, c, s, hq, wq):
    """Whether the cheap taps are a 3x3 window at the corner of the expensive one at
    stride ``s`` (tap ``(ch, a, b)`` at ``((ch*s + a % s)*s + b % s)*Hq*Wq + (a // s)*Wq
    + b // s``): :func:`.cheap.row_sweeps_3x3` at stride 1, ``_s2`` at stride 2."""
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
                pre_s, pre_h, has_pre, res=None):
    """Steps 1-3 of the module header for one image; returns ``(active, macs)``.

    ``xn`` (C, H, W) any strides; ``xb`` from :func:`fused_buffer` (its zeros
    are kept from image to image), the tables from :func:`fused_tables`;
    ``wt`` the cheap weights (C*kh'*kw',), ``bias`` their folded bias;
    ``yn`` (T, Ho*Wo), ``vrow`` and ``mrow`` (Ho*Wo,), every cell written;
    ``vflat`` ((Ho-1)*Wq + Wo + 8,), ``qs``, ``base`` (band*Wo,), ``bases``
    (8,), ``obuf`` (T_pad, band*Wo) scratch.  With ``has_pre`` both
    convolutions read ``max(x * pre_s[c] + pre_h[c], 0)``.  ``res`` (T, Ho*Wo) or
    None: added to the output as it is written (a residual connection).
    """
    c = xn.shape[0]
    n_tb, k_len, tb = wb.shape
    n_out = yn.shape[0]
    chan = sh * sw * hq * wq  # from one channel to the next in xb
    if sw == 1 and sh == 1:  # 1. the padded copy: the (C, Hp, Wp) buffer of .vector
        copy_image(xn, xb[: c * hq * wq].reshape(c, hq, wq), ph, pw, pre_s, pre_h, has_pre)
    elif sw == 2:
        _copy_rows_2(xn, xb, chan, rowmap, even, odd, sh, wq, pre_s, pre_h, has_pre)
    else:
        _copy_rows_any(xn, xb, chan, rowmap, cols, sw, pre_s, pre_h, has_pre)
    run = (ho - 1) * wq + wo  # flat positions i*Wq + j up to the last output
    rows_ok = ho >= ROWS and wo >= 32 // xb.itemsize
    if sh == sw and sh <= 2 and rows_ok and _taps_3x3(toff, c, sh, hq, wq):
        if sh == 1:  # 2. the cheap branch: kxkxCx1 at 3x3, rows blocked
            row_sweeps_3x3(xb, wt, chan, c, ho, wo, wq, bias, vflat)
        else:
            row_sweeps_3x3_s2(xb, wt, chan, hq * wq, c, ho, wo, wq, bias, vflat)
    else:  # 1x1, other strides and windows, small outputs
        tap_sweeps(xb, wt, toff, 0, run, bias, vflat)
    zero = yn.dtype.type(0)
    active = 0
    macs = 0
    for i0 in range(0, ho, band):  # 3. per band
        q0, q1 = i0 * wo, min(ho, i0 + band) * wo
        m = _band_list(vflat, vrow, mrow, qs, base, i0, (q1 - q0) // wo, q0, wo, wq)
        run_blocks(xb, wb, off, base, qs, m, bases, obuf)
        active += m
        macs += m * n_out * k_len
        sb = vrow[q0:q1]  # V' > 0 is the mask: a float compare, not a byte load (2.9 vs
        for t in range(n_out):  # 3.6 us per 16@32x32 image); unit strides: vectorised
            yt = yn[t, q0:q1]
            ot = obuf[t]
            if res is None:
                for q in range(q1 - q0):
                    s = sb[q]
                    val = ot[q] * s  # computed first: with the product inside the
                    yt[q] = zero if s <= zero else val  # select, LLVM branched (+1.5 ms)
            else:
                rt = res[t, q0:q1]
                for q in range(q1 - q0):
                    s = sb[q]
                    val = ot[q] * s
                    yt[q] = (zero if s <= zero else val) + rt[q]
    return active, macs


@njit(cache=True)
def _fused_shared(x, wb, wc, bias, kh, kw, sh, sw, ph, pw, dh, dw, y, v, mask, band_cells,
                  pre_s, pre_h, has_pre):
    """:func:`fused_image` for every image; returns ``(active, macs)``.

    ``x`` (N, C, H, W) any strides; ``wb`` from :func:`.vector.weight_blocks`;
    ``wc`` (C, kh', kw') C-contiguous, its window at ``(dh, dw)`` inside the
    expensive one; ``y`` (N, T, Ho, Wo), ``v`` and ``mask`` (N, Ho, Wo),
    C-contiguous, every cell written.  With ``has_pre`` both
    convolutions read ``max(x * pre_s[c] + pre_h[c], 0)``, made in the copy.
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
    active = 0
    macs = 0
    for n in range(n_img):
        a, m = fused_image(x[n], xb, off, toff, wt, bias, rowmap, cols, even, odd, hq, wq, wb,
                           sh, sw, ph, pw, y3[n], v2[n], m2[n], ho, wo, band, vflat, qs, base,
                           bases, obuf, pre_s, pre_h, has_pre)
        active += a
        macs += m
    return active, macs


__all__ = ["lccl_shared_eval", "lccl_shared_eval_unchecked"]
