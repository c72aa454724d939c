"""The cheap branch's sums for one output channel, a block of output positions at a time.

The cheap conv of a shared-mask LCCL has one output channel, so it is vectorised over
output positions instead of channels: with the input laid out so that every output is
one flat index ``e`` and every tap ``k`` a constant offset (:mod:`.padcopy`),
:func:`tap_sweeps` computes ``v[e] = bias + sum_k w[k] * x[e + off[k]]`` for a run of
``e``.  Few taps (the 1x1 kernels): :data:`TAP_COLS` vectors of positions at a time,
accumulators in registers for all taps (:func:`_taps_step`, LLVM IR: per tap one
broadcast, 4 loads, 4 FMAs).  Many taps: blocks of :data:`BLOCK` positions with a
stack accumulator, eight taps per sweep (:func:`_block_sweeps`: per 8 lanes 9 loads,
8 FMAs, one store).  Both give each output as the FMA chain over the taps in order.
The 3x3 kernels have a faster way at stride 1 and 2, :mod:`.rows3x3`.  Measurements:
docs/kernel-notes.md, "cheap branch".
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.numpy_support import carray

from .ir import array_lanes, fma, splat, stack_ptr, vector_ptr

#: Fast-math flags of the sums: FMA contraction only, no reassociation.
_FMA = {"contract"}

#: Output positions per block: a block's accumulators live on the stack (L1).
BLOCK = 1024


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
    acc = carray(stack_ptr(BLOCK, xb.dtype), (BLOCK,))
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
    * more taps, :func:`_block_sweeps` (with many taps the register steps would
      stream the whole input buffer through L1 for every step).
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
