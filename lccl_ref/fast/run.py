"""The engine's one compiled call: every op of a program on every image of a batch.

:func:`run_program` takes the batch image by image through the op rows of a
:class:`.program.Program`, so that an image goes through every layer while its
activations stay in L2, calling the same per-image kernels the module path's batch
kernels loop over (:func:`.vector.vector_image`, :func:`.fused.fused_image`,
:func:`.rows3x3.conv3x3_rows`).  Each op adds its active positions, MACs and CPU
cycles to a stats row.  Ops::

    CONV      dst = conv_W(max(src * s + h, 0)) + b [+ res]     (pre: the block's BN-ReLU)
    LCCL      dst = V * V' [+ res], mask = V' > 0               (the fused LCCL kernel)
    ADD_SUB   dst[:C] += src[:, ::s, ::s]                       (a parameter-free shortcut)
    HEAD      out = fc(mean_hw(max(src * s + h, 0)))            (BN-ReLU, pool, linear)

Numba's disk cache keys a compiled function on its own source file: this one compiles
the per-image kernels into itself, so after editing them delete the cache files
(``find lccl_ref -name "*.nb[ic]" -delete``) or its cached copy runs the old ones.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..functional.batchnorm import affine_relu_value
from .fused import fused_image
from .ir import cycle_counter, prefetch_write
from .program import (  # the columns of an op row and the op codes
    F_BAND,
    F_BASE,
    F_BIAS,
    F_C,
    F_CHEAP,
    F_CLIP,
    F_CODE,
    F_DST,
    F_EVEN,
    F_FCW,
    F_H,
    F_HO,
    F_HQ,
    F_KH,
    F_KW,
    F_MASK,
    F_NTB,
    F_OBUF,
    F_ODD,
    F_OFF,
    F_PAD,
    F_PH,
    F_PRE,
    F_PREFETCH,
    F_PW,
    F_QS,
    F_RES,
    F_ROWS,
    F_SH,
    F_SRC,
    F_SW,
    F_T,
    F_TB,
    F_TOFF,
    F_VF,
    F_W,
    F_WB,
    F_WO,
    F_WQ,
    OP_ADD_SUB,
    OP_CONV,
    OP_HEAD,
    OP_LCCL,
)
from .rows3x3 import conv3x3_rows
from .vector import vector_image


@njit(inline="always")
def _at(arena, offs, i):
    """Entry ``i`` of an arena: ``arena[start:start + size]`` with ``offs[i] = (start, size)``."""
    return arena[offs[i, 0]: offs[i, 0] + offs[i, 1]]


@njit(inline="always")
def _relu_mean(row, a, b):
    """``mean(max(row * a + b, 0))``, as eight partial sums: one running sum waited on
    the latency of each add (ResNet-20's head, 64@8x8: 14k cycles, 9k now)."""
    zero = row.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    n = row.shape[0]
    q = 0
    while q + 8 <= n:
        s0 += affine_relu_value(row[q], a, b, zero)
        s1 += affine_relu_value(row[q + 1], a, b, zero)
        s2 += affine_relu_value(row[q + 2], a, b, zero)
        s3 += affine_relu_value(row[q + 3], a, b, zero)
        s4 += affine_relu_value(row[q + 4], a, b, zero)
        s5 += affine_relu_value(row[q + 5], a, b, zero)
        s6 += affine_relu_value(row[q + 6], a, b, zero)
        s7 += affine_relu_value(row[q + 7], a, b, zero)
        q += 8
    for r in range(q, n):
        s0 += affine_relu_value(row[r], a, b, zero)
    return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) / n


@njit(cache=True)
def run_program(x, out, ops, fa, fo, ua, uo, ia, io, masks, stats):
    """Run the program ``ops`` on every image of ``x``; ``out`` (N, classes) gets the logits.

    ``fa``, ``ua``, ``ia``: the float, uint64 and int64 arenas, ``fo``, ``uo``,
    ``io`` their ``(start, size)`` tables; an op's index columns name entries.
    ``stats[k] += (active positions, MACs, cycles)`` of op ``k``;
    ``masks[n, F_MASK:...]`` the masks of the LCCL ops.
    """
    bases = np.empty(8, dtype=np.uint64)
    no_mask = np.ones(1, dtype=np.bool_)
    for n in range(x.shape[0]):
        for k in range(ops.shape[0]):
            start = cycle_counter()
            op = ops[k]
            if op[F_PREFETCH] >= 0:  # a cold buffer of the next op, while this one computes
                nxt = _at(fa, fo, op[F_PREFETCH])
                for q in range(0, nxt.shape[0], 64 // nxt.itemsize):
                    prefetch_write(nxt, q)
            code = op[F_CODE]
            c, h, w = op[F_C], op[F_H], op[F_W]
            t, ho, wo = op[F_T], op[F_HO], op[F_WO]
            if op[F_SRC] < 0:
                src = x[n]
            else:
                src = _at(fa, fo, op[F_SRC])[: c * h * w].reshape(c, h, w)
            if code != OP_HEAD:  # HEAD writes out[n] (classes may outnumber a buffer's cells)
                dst = _at(fa, fo, op[F_DST])[: t * ho * wo].reshape(t, ho * wo)
            else:
                dst = out[n:n + 1]  # typed like the others, not written
            has_pre = op[F_PRE] >= 0
            pre_s = _at(fa, fo, op[F_PRE] if has_pre else 0)  # typed, unread without a pre
            pre_h = _at(fa, fo, op[F_PRE] + 1 if has_pre else 0)
            if code == OP_CONV or code == OP_LCCL:
                wb = _at(fa, fo, op[F_WB]).reshape(op[F_NTB], c * op[F_KH] * op[F_KW], op[F_TB])
                t_pad, cells = op[F_NTB] * op[F_TB], op[F_BAND] * op[F_WO]
                obuf = _at(fa, fo, op[F_OBUF])[: t_pad * cells].reshape(t_pad, cells)
            if code == OP_CONV:
                hp, wp = h + 2 * op[F_PH], w + 2 * op[F_PW]
                buf = _at(fa, fo, op[F_PAD])[: c * hp * wp].reshape(c, hp, wp)
                off = _at(ua, uo, op[F_OFF])
                base = _at(ua, uo, op[F_BASE])
                qs = _at(ia, io, op[F_QS])
                bias = _at(fa, fo, op[F_BIAS])
                sh, sw, ph, pw = op[F_SH], op[F_SW], op[F_PH], op[F_PW]
                # two calls, not one with res=None or an array: the call without res
                # compiles the kernel with its residual branch pruned
                if op[F_ROWS] == 1:
                    wrows = _at(fa, fo, op[F_CHEAP]).reshape(t, -1)
                    vflat = _at(fa, fo, op[F_VF])
                    if op[F_RES] >= 0:
                        res = _at(fa, fo, op[F_RES])[: t * ho * wo].reshape(t, ho * wo)
                        stats[k, 1] += conv3x3_rows(src, buf, wrows, bias, ph, pw, dst, vflat,
                                                    pre_s, pre_h, has_pre, res)
                    else:
                        stats[k, 1] += conv3x3_rows(src, buf, wrows, bias, ph, pw, dst, vflat,
                                                    pre_s, pre_h, has_pre)
                elif op[F_RES] >= 0:
                    res = _at(fa, fo, op[F_RES])[: t * ho * wo].reshape(t, ho * wo)
                    stats[k, 1] += vector_image(
                        src, buf, off, wb, bias, no_mask, pre_s, False, False, sh, sw, ph, pw,
                        dst, ho, wo, op[F_BAND], qs, base, bases, obuf, pre_s, pre_h, has_pre,
                        res)
                else:
                    stats[k, 1] += vector_image(
                        src, buf, off, wb, bias, no_mask, pre_s, False, False, sh, sw, ph, pw,
                        dst, ho, wo, op[F_BAND], qs, base, bases, obuf, pre_s, pre_h, has_pre)
                stats[k, 0] += ho * wo
            elif code == OP_LCCL:
                cols = _at(ia, io, op[F_TOFF] + 2).reshape(-1, 3)
                mrow = masks[n, op[F_MASK]: op[F_MASK] + ho * wo]
                xb = _at(fa, fo, op[F_PAD])
                off = _at(ua, uo, op[F_OFF])
                base = _at(ua, uo, op[F_BASE])
                toff = _at(ia, io, op[F_TOFF])
                rowmap = _at(ia, io, op[F_TOFF] + 1)
                qs = _at(ia, io, op[F_QS])
                wt, bias = _at(fa, fo, op[F_CHEAP]), _at(fa, fo, op[F_CHEAP] + 1)[0]
                vflat, vrow = _at(fa, fo, op[F_VF]), _at(fa, fo, op[F_VF] + 1)
                if op[F_RES] >= 0:
                    res = _at(fa, fo, op[F_RES])[: t * ho * wo].reshape(t, ho * wo)
                    active, macs = fused_image(
                        src, xb, off, toff, wt, bias, rowmap, cols, op[F_EVEN], op[F_ODD],
                        op[F_HQ], op[F_WQ], wb, op[F_SH], op[F_SW], op[F_PH], op[F_PW], dst,
                        vrow, mrow, ho, wo, op[F_BAND], vflat, qs, base, bases, obuf, pre_s,
                        pre_h, has_pre, op[F_CLIP] == 1, res)
                else:
                    active, macs = fused_image(
                        src, xb, off, toff, wt, bias, rowmap, cols, op[F_EVEN], op[F_ODD],
                        op[F_HQ], op[F_WQ], wb, op[F_SH], op[F_SW], op[F_PH], op[F_PW], dst,
                        vrow, mrow, ho, wo, op[F_BAND], vflat, qs, base, bases, obuf, pre_s,
                        pre_h, has_pre, op[F_CLIP] == 1)
                stats[k, 0] += active
                stats[k, 1] += macs
            elif code == OP_ADD_SUB:
                s = op[F_SH]
                for ch in range(c):
                    d_row = dst[ch]
                    for i in range(ho):
                        for j in range(wo):
                            d_row[i * wo + j] += src[ch, i * s, j * s]
            else:  # OP_HEAD: BN-ReLU, global average, linear
                fc_w, fc_b = _at(fa, fo, op[F_FCW]), _at(fa, fo, op[F_BIAS])
                pooled = _at(fa, fo, op[F_OBUF])
                for ch in range(c):
                    pooled[ch] = _relu_mean(src[ch].reshape(-1), pre_s[ch], pre_h[ch])
                for o in range(t):
                    acc = fc_b[o]
                    for ch in range(c):
                        acc += fc_w[o * c + ch] * pooled[ch]
                    out[n, o] = acc
                stats[k, 1] += t * c
            stats[k, 2] += cycle_counter() - start
