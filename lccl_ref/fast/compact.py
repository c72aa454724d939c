"""V', the mask and the list of active positions of a band of output rows, a vector at a time.

Step 3 of the fused LCCL kernel (:mod:`.fused`): from the cheap branch's sums ``v``,
``V' = max(v, 0)`` (NaN for NaN), the mask bytes ``not v <= 0`` (true for NaN: a NaN
opens the gate) and the branch-free list of the open positions that the
register-blocked blocks then compute.  :func:`_compact` does a vector per step in
LLVM IR: one compare, a select and the mask bytes stored; the compare's lane bits
index a table (:func:`_lane_lists`) of the lanes to keep, stored as two whole vectors
(lanes past the count are overwritten by the next step), and the list grows by the
popcount.  :func:`_band_list` does a band's rows in one call when a row is whole
vectors, else row by row (:func:`_row_list`, its scalar twin for the remainder).
Measurements: docs/kernel-notes.md, "fused".
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .ir import array_lanes, splat, vector_ptr


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
    popcount.  It replaces a scalar loop that did a store per list per cell
    (docs/kernel-notes.md, "fused").
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
def band_list(vflat, vrow, mrow, qs, base, i0, rows, q0, wo, wq):
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
