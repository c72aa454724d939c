"""Whole-network inference in one compiled call: ``Engine(model)(x)``.

The module-by-module eval forward (``model.eval(); model.forward(x)``) is the
reference, and it pays two costs per layer that do not shrink with the mask,
for the plain network and the LCCL network alike, so they cap the real
speed-up at a fraction of the theoretical one:

* Python and Numba dispatch: about 110 us per layer at batch 1 (module
  calls, argument checks, the per-call setup of the kernels), while a
  ResNet-20 layer computes for 60-150 us.  At batch 1 the real speed-up of a
  ResNet-20 was 0.37 of the theoretical.
* memory traffic at large batches: every layer reads its whole input batch
  and writes its whole output batch (8 MB at 16@32x32, batch 128), from and to
  DRAM: about 2.5 ms of a 20 ms layer, and the same for every density.

:class:`Engine` removes both.  It compiles the network once per input size
into a *program*, a table of ops (below), packs the weights the kernels read
(weight blocks, folded BN affine maps, the cheap branches' folded weights) and
the scratch they need, and runs the whole batch with **one** Numba call
(:func:`_run`), **image by image**: an image goes through every layer while
its activations (64 KB at 16@32x32) stay in L2.  The kernels are the same
per-image functions the module path uses, :func:`.kernels.vector.vector_image`
for dense convolutions and :func:`.kernels.fused.fused_image` for
shared-mask LCCL layers, so the engine computes what the modules compute, up
to float rounding (tests/test_engine.py) and counts the same MACs.

Ops (one row of ``ops`` each; the columns are the ``F_*`` constants)::

    CONV        dst = conv_W(src) + b [+ res]    (vector_image, every position; a 3x3
                                                 stride-1 conv of at most ROWS_MAX_C input
                                                 channels, the stem: conv3x3_rows)
    LCCL        dst = V * V' [+ res],            (fused_image: cheap branch, then
                mask = V' > 0                    the expensive conv where the mask is on)
    ADD_SUB     dst[:C] += src[:, ::s, ::s]      (the parameter-free "identity" shortcut
                                                 of a block that changes the shape)
    HEAD        out = fc(mean_hw(max(src * s + h, 0)))   (final BN-ReLU, pool, linear)

CONV and LCCL read ``max(src * s + h, 0)`` when the op has a ``pre`` (the
block's BN-ReLU, applied in the kernel's input copy, as the module path's
``pre=`` does), so no BN-ReLU is a pass of its own.  A
pre-activation block (``aft`` placements) becomes::

    h = CONV|LCCL(x, pre=BN1)
    o = CONV|LCCL(h, pre=BN2, res=x)                   (identity shortcut), or
    p = CONV_1x1(x, pre=BN1);  o = CONV|LCCL(h, pre=BN2, res=p)   (projection), or
    o = CONV|LCCL(h, pre=BN2);  ADD_SUB(o, x)          (parameter-free, new shape)

``res``: the shortcut is added as conv2 writes its output, in the same pass
(``y + res``, the one rounding of the module path's ``o += x``).

Activations live in a few per-image buffers, reused once a value is dead;
padded copies are shared by the ops of one geometry (their zero borders are
never written), and the scratch that an op fills and reads before the next op
runs (a band's results, its position lists, the cheap branch's output) by
every op, so that it stays in cache (with a buffer per op, ResNet-20's
scratch alone was more than L2 holds, and came from L3 at every image).

What it does not do (``ValueError`` at construction): models other than
:class:`~lccl_ref.models.PreActResNet`; per-channel masks (``1x1xCxT``);
"bef" placements, whose cheap branch reads another input than the expensive
conv.  The LCCL layers always take the sparse path with the cheap BN folded
(``LCCLConv2d(sparse=True, fold_bn=True)``); ``Engine(model, sparse=False)``
runs every LCCL layer's expensive conv alone, densely: the plain network the
LCCL network is measured against.

The engine reads the weights when it compiles a program: after the model's
weights or BN statistics change, call :meth:`Engine.refresh` (or build a new
engine).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..checks import check_float_array, effective_stride
from ..functional.batchnorm import bn_affine
from ..models.blocks import PreActBlock, SubsamplePad
from ..models.resnet import PreActResNet
from ..nn import Conv2d, LCCLConv2d
from .cheap import ROWS, ROWS_MAX_C, conv3x3_rows
from .fused import _pre_value, fused_buffer, fused_image, fused_tables
from .vector import (
    all_positions,
    band_cells,
    channel_block,
    patch_offsets,
    vector_image,
    weight_blocks,
)

OP_CONV, OP_LCCL, OP_ADD_SUB, OP_HEAD = range(4)
OP_NAMES = ("CONV", "LCCL", "ADD_SUB", "HEAD")

# Columns of an op row.  The index columns name entries of the three arenas (float,
# uint64, int64 arrays; :class:`_Program`), -1 meaning "none".
(F_CODE,  # OP_*
 F_SRC, F_DST,  # activations (float); F_SRC = -1: the input image x[n]
 F_C, F_H, F_W,  # input geometry
 F_T, F_HO, F_WO,  # output geometry
 F_KH, F_KW, F_SH, F_SW, F_PH, F_PW,  # kernel, stride, padding (ADD_SUB: F_SH = s)
 F_WB, F_NTB, F_TB,  # weight blocks (T_pad / TB, C*kh*kw, TB): entry, T_pad / TB, TB
 F_BIAS,  # the conv's bias (T,), zeros when it has none; HEAD: the fc bias
 F_PRE,  # s at F_PRE, h at F_PRE + 1 (the BN-ReLU read through)
 F_PAD,  # the padded image
 F_OFF,  # (uint64) expensive tap offsets
 F_QS,  # (int64) positions of a band (scratch, or 0, 1, ... for CONV)
 F_OBUF,  # (T_pad, band*Wo) results of a band; HEAD: the pooled vector
 F_BAND,  # output rows per band
 F_CHEAP,  # cheap weights (C*kh'*kw',) at F_CHEAP, folded bias (1,) at F_CHEAP + 1
 F_TOFF,  # (int64) cheap taps at F_TOFF, rowmap at + 1, cols (sw*3,) at + 2
 F_EVEN, F_ODD, F_HQ, F_WQ,  # fused layout (fused_tables)
 F_VF,  # the cheap conv's flat output at F_VF, V' of the image at F_VF + 1
 F_MASK,  # column of this layer's mask in the (N, cells) mask array
 F_FCW,  # HEAD's fc weight (classes * C,)
 F_RES,  # CONV, LCCL: the activation added to the output as it is written (or -1)
 F_BASE,  # (uint64) window corners of the band's positions (scratch, or all for CONV)
 F_ROWS,  # CONV: 1 = a 3x3 conv with few input channels by row sweeps (conv3x3_rows),
          # its weights (T, 9C) at F_CHEAP, its scratch at F_VF; else -1
 F_PREFETCH,  # the next op's padded image, when the op before it used another (or -1)
 N_FIELDS) = range(39)


@intrinsic
def _cycles(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``: RDTSC on x86), for per-op times."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


@intrinsic
def _prefetch(typingctx, arr, k):
    """Ask for the cache line of ``arr[k]``, to be written (``llvm.prefetch``: on x86
    ``prefetchw``), without waiting for it."""
    def codegen(context, builder, sig, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        data = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0]).data
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        ptr = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        # write, keep in all cache levels, data cache
        builder.call(fn, [ptr, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, k), codegen


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
        s0 += _pre_value(row[q], a, b, True, zero)
        s1 += _pre_value(row[q + 1], a, b, True, zero)
        s2 += _pre_value(row[q + 2], a, b, True, zero)
        s3 += _pre_value(row[q + 3], a, b, True, zero)
        s4 += _pre_value(row[q + 4], a, b, True, zero)
        s5 += _pre_value(row[q + 5], a, b, True, zero)
        s6 += _pre_value(row[q + 6], a, b, True, zero)
        s7 += _pre_value(row[q + 7], a, b, True, zero)
        q += 8
    for r in range(q, n):
        s0 += _pre_value(row[r], a, b, True, zero)
    return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) / n


@njit(cache=True)
def _run(x, out, ops, fa, fo, ua, uo, ia, io, masks, stats):
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
            start = _cycles()
            op = ops[k]
            if op[F_PREFETCH] >= 0:  # a cold buffer of the next op, while this one computes
                nxt = _at(fa, fo, op[F_PREFETCH])
                for q in range(0, nxt.shape[0], 64 // nxt.itemsize):
                    _prefetch(nxt, q)
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
                        pre_h, has_pre, res)
                else:
                    active, macs = fused_image(
                        src, xb, off, toff, wt, bias, rowmap, cols, op[F_EVEN], op[F_ODD],
                        op[F_HQ], op[F_WQ], wb, op[F_SH], op[F_SW], op[F_PH], op[F_PW], dst,
                        vrow, mrow, ho, wo, op[F_BAND], vflat, qs, base, bases, obuf, pre_s,
                        pre_h, has_pre)
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
            stats[k, 2] += _cycles() - start


class _Builder:
    """Collects the op rows of one program and the arrays their index columns name.

    Arrays go to three lists by type (``f`` float of the model's dtype, ``u``
    uint64, ``i`` int64); :class:`_Program` packs each list into one arena.
    """

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.rows = []
        self.f, self.u, self.i = [], [], []
        self.values = [None]  # value id -> (C, H, W); value 0 is the input image
        self.uses = []  # per op: (value ids read, value id written)
        self.scratch = {}
        self.layers = []  # (op index, module name, module)
        self.mask_cells = 0

    def _float(self, *arrays):
        """Entries for ``arrays`` (flattened, in the model's dtype); the first one's index."""
        first = len(self.f)
        for a in arrays:
            self.f.append(np.ascontiguousarray(a, dtype=self.dtype).reshape(-1))
        return first

    def _uint(self, *arrays):
        first = len(self.u)
        self.u += [np.ascontiguousarray(a, dtype=np.uint64).reshape(-1) for a in arrays]
        return first

    def _int(self, *arrays):
        first = len(self.i)
        self.i += [np.ascontiguousarray(a, dtype=np.int64).reshape(-1) for a in arrays]
        return first

    def _row(self, code, shape_in, shape_out, **fields):
        row = np.full(N_FIELDS, -1, dtype=np.int64)
        row[F_CODE] = code
        row[F_C], row[F_H], row[F_W] = shape_in
        row[F_T], row[F_HO], row[F_WO] = shape_out
        for name, value in fields.items():
            row[globals()["F_" + name.upper()]] = value
        self.rows.append(row)
        return row

    def value(self, shape):
        self.values.append(tuple(int(s) for s in shape))
        return len(self.values) - 1

    def _pad(self, key, size):
        """A zeroed padded-image buffer shared by the ops of one layout ``key``."""
        return self._scratch("f", ("pad", *key), size)

    def _scratch(self, kind, key, *sizes):
        """Consecutive zeroed entries (``kind`` "f", "u" or "i"), one per size, shared by
        every op that asks with the same ``key`` and as large as the largest asked for:
        scratch that one op fills and reads before the next op runs stays in cache."""
        entries, dtype = dict(f=(self.f, self.dtype), u=(self.u, np.uint64),
                              i=(self.i, np.int64))[kind]
        k = self.scratch.get((kind, key))
        if k is None:
            k = self.scratch[(kind, key)] = len(entries)
            entries += [np.zeros(0, dtype) for _ in sizes]
        for j, size in enumerate(sizes):
            if entries[k + j].size < size:
                entries[k + j] = np.zeros(size, dtype)
        return k

    def _positions(self, key, values):
        """A read-only position list shared by the ops of one geometry (``"iota"``,
        0, 1, 2, ...: by every op, each writing the prefix it needs)."""
        kind = "u" if values.dtype == np.uint64 else "i"
        k = self._scratch(kind, key, values.size)
        (self.u if kind == "u" else self.i)[k][: values.size] = values
        return k

    def _pre(self, pre):
        return -1 if pre is None else self._float(*pre)

    def _weights(self, wt):
        """Weight blocks of ``wt`` (T, C, kh, kw): their entry, ``T_pad / TB`` and ``TB``."""
        tb = channel_block(wt.shape[0])
        wb = weight_blocks(np.ascontiguousarray(wt, dtype=self.dtype), tb)
        return dict(wb=self._float(wb), ntb=wb.shape[0], tb=tb)

    def _band(self, t, wo):
        tb = channel_block(t)
        t_pad = -(-t // tb) * tb
        return t_pad, max(1, band_cells(t_pad, self.dtype.itemsize) // wo)

    def conv(self, conv: Conv2d, src, pre=None, res=None):
        """A dense CONV op (the vector kernel at every position); ``res``: a value of the
        output's shape added as the output is written (the block's shortcut)."""
        c, h, w = self.values[src]
        wt = conv.weight.data
        t, _, kh, kw = wt.shape
        (ph, pw) = conv.padding
        sh, sw = effective_stride(h, w, conv.stride, conv.padding)
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        t_pad, band = self._band(t, wo)
        band = min(ho, band)
        hp, wp = h + 2 * ph, w + 2 * pw
        cells = max(band, ho) * wo
        qs, base = np.zeros(cells, dtype=np.int64), np.zeros(cells, dtype=np.uint64)
        all_positions(ho, wo, sh, sw, wp, qs, base)
        bias = conv.bias.data if conv.bias is not None else np.zeros(t)
        dst = self.value((t, ho, wo))
        rows = {}  # a stem-like conv: row sweeps, one output channel at a time
        if ((kh, kw), (sh, sw)) == ((3, 3), (1, 1)) and c <= ROWS_MAX_C and ho >= ROWS \
                and wo >= 32 // self.dtype.itemsize:
            rows = dict(rows=1, cheap=self._float(wt.reshape(t, -1)),
                        vf=self._scratch("f", "vf", (ho - 1) * wp + wo + 8, 0))
        self._row(OP_CONV, (c, h, w), (t, ho, wo), kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
                  bias=self._float(bias), pre=self._pre(pre),
                  pad=self._pad(("plain", c, h, w, ph, pw), c * hp * wp),
                  off=self._uint(patch_offsets(c, kh, kw, hp, wp)),
                  base=self._positions(("corners", ho, wo, sh, sw, wp), base),
                  qs=self._positions("iota", qs),
                  obuf=self._scratch("f", "obuf", t_pad * band * wo), band=band,
                  **rows, **self._weights(wt))
        self.uses.append(((src,) if res is None else (src, res), dst))
        return dst

    def lccl(self, layer: LCCLConv2d, src, pre=None, res=None):
        """An LCCL op (fused cheap branch and gated conv); ``res`` as for :meth:`conv`."""
        c, h, w = self.values[src]
        conv, cconv = layer.conv, layer.cheap_conv
        wt = conv.weight.data
        t, _, kh, kw = wt.shape
        (ph, pw), (cph, cpw) = conv.padding, cconv.padding
        sh, sw = effective_stride(h, w, conv.stride, conv.padding)
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        w_f, b_f = layer._folded_cheap()  # (1, C, kh', kw'), (1,)
        khc, kwc = w_f.shape[2:]
        off, toff, rowmap, cols, even, odd, hq, wq = fused_tables(
            c, h, w, kh, kw, khc, kwc, sh, sw, ph, pw, ph - cph, pw - cpw)
        t_pad, band = self._band(t, wo)
        band = min(ho, band)
        # at stride 1 the layout of CONV's padded image (with slack for the cheap overrun)
        key = ("plain", c, h, w, ph, pw) if (sh, sw) == (1, 1) else ("phase", c, h, w, ph, pw,
                                                                      sh, sw)
        dst = self.value((t, ho, wo))
        cheap = self._float(w_f, b_f)
        self._row(OP_LCCL, (c, h, w), (t, ho, wo), kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
                  pre=self._pre(pre), bias=cheap,  # bias: typed placeholder, never read
                  pad=self._pad(key, fused_buffer(c, sh, sw, hq, wq, self.dtype).size),
                  off=self._uint(off), base=self._scratch("u", "list", band * wo),
                  qs=self._scratch("i", "list", band * wo),
                  obuf=self._scratch("f", "obuf", t_pad * band * wo), band=band, cheap=cheap,
                  toff=self._int(toff, rowmap, cols), even=even, odd=odd, hq=hq, wq=wq,
                  vf=self._scratch("f", "vf", (ho - 1) * wq + wo + 8, ho * wo),
                  mask=self.mask_cells, **self._weights(wt))
        self.mask_cells += ho * wo
        self.uses.append(((src,) if res is None else (src, res), dst))
        return dst

    def add_subsampled(self, dst, src, stride):
        """``dst[:C] += src[:, ::s, ::s]``: in place, ``dst`` stays live."""
        c, h, w = self.values[src]
        sh = min(stride, max(h, w))  # as effective_stride: the same cells, a bounded int
        self._row(OP_ADD_SUB, self.values[src], self.values[dst], sh=sh)
        self.uses.append(((src, dst), dst))

    def head(self, src, pre, fc):
        c, h, w = self.values[src]
        k = fc.weight.data.shape[0]
        bias = fc.bias.data if fc.bias is not None else np.zeros(k)
        self._row(OP_HEAD, (c, h, w), (k, 1, 1), pre=self._pre(pre),
                  fcw=self._float(fc.weight.data), bias=self._float(bias),
                  obuf=self._float(np.zeros(c)))
        self.uses.append(((src,), None))

    def assign_buffers(self):
        """Give every value a per-image buffer, reusing those of dead values."""
        last = {}
        for k, (reads, _) in enumerate(self.uses):
            for v in reads:
                last[v] = k
        size = max(int(np.prod(s)) for s in self.values[1:])
        where = {0: -1}
        free = []
        for k, (reads, wrote) in enumerate(self.uses):
            if wrote is not None and wrote not in where:
                if free:
                    where[wrote] = free.pop()
                else:
                    where[wrote] = self._float(np.zeros(size))
            for v in set(reads):
                if last[v] == k and v != wrote and where[v] >= 0:
                    free.append(where[v])
            row = self.rows[k]
            row[F_SRC] = where[reads[0]]
            row[F_DST] = where[wrote] if wrote is not None else where[reads[0]]
            if row[F_CODE] in (OP_CONV, OP_LCCL) and len(reads) == 2:
                row[F_RES] = where[reads[1]]

    def plan_prefetches(self):
        """An op whose padded image the op using one before it (in the loop over a batch,
        the last before the first) did not use finds it out of cache at batch 1: the whole
        network's weights and buffers do not fit in L2.  The op before it prefetches it.

        ResNet-20 at batch 1, kxkxCx1: the stride-2 LCCL's phase copy (16@32x32) took
        9.1 us instead of the 4.3 of a warm buffer, 7.6-7.9 with the prefetch, and
        at 32@16x16 5.2 -> 4.4, the op before them no slower; over the whole network
        the change is below the run-to-run noise.
        """
        users = [k for k, row in enumerate(self.rows) if row[F_PAD] >= 0]
        for j, k in enumerate(users):
            if self.rows[users[j - 1]][F_PAD] != self.rows[k][F_PAD]:
                self.rows[k - 1][F_PREFETCH] = self.rows[k][F_PAD]


def _arena(arrays, dtype):
    """One array holding ``arrays`` one after the other, each start 64-byte aligned, and
    its ``(start, size)`` table."""
    step = max(1, 64 // np.dtype(dtype).itemsize)
    offs = np.zeros((max(len(arrays), 1), 2), dtype=np.int64)
    pos = 0
    for k, a in enumerate(arrays):
        offs[k] = pos, a.size
        pos += -(-a.size // step) * step
    raw = np.zeros(pos + step, dtype=dtype)
    shift = (-(raw.ctypes.data // raw.itemsize)) % step  # the arena's start, aligned
    arena = raw[shift: shift + pos]
    for (start, size), a in zip(offs, arrays):
        arena[start: start + size] = a
    return arena, offs


class _Program:
    """One compiled network for one input shape: op rows, the three arenas, the layers."""

    def __init__(self, b: _Builder):
        self.ops = np.stack(b.rows)
        self.arenas = (*_arena(b.f, b.dtype), *_arena(b.u, np.uint64), *_arena(b.i, np.int64))
        self.layers = b.layers
        self.layer_ops = np.array([k for k, _, _ in b.layers], dtype=np.int64)  # their ops
        self.mask_cells = b.mask_cells
        self.n_out = int(self.ops[-1, F_T])


class Engine:
    """A :class:`~lccl_ref.models.PreActResNet`'s eval forward as one compiled call.

    Parameters
    ----------
    model : PreActResNet
        Plain, or with shared-mask LCCL layers (``kxkxCx1``, ``1x1xCx1``) in the
        ``aft-aft`` placement.  Its training/eval mode does not matter: the
        engine always computes the eval forward (BN running statistics).
    sparse : bool
        True: LCCL layers compute ``O = V * V'`` with the gated conv where the
        mask is on.  False: each LCCL layer's expensive conv alone, densely (the
        plain network of ``bench.plain_network``).

    ``engine(x)`` maps (N, C, H, W) of the model's dtype to logits (N, classes),
    the model's eval-mode ``forward(x)`` up to float rounding.  After a call:

    ``last_stats``
        One dict per conv layer in network order: ``name``, ``kind`` ("conv"
        or "lccl"), ``macs`` (executed by the kernels, cheap branch included
        for LCCL), ``macs_dense`` (the dense conv's), ``cycles`` (its op's CPU
        cycles, summed over the batch; see ``last_ops``), and for LCCL layers
        ``macs_cheap``, ``macs_expensive``, ``active`` (mask cells on, over
        the batch) and ``density``.
    ``last_masks``
        ``{name: (N, Ho, Wo) bool}`` of the LCCL layers.
    ``last_macs``
        ``{"executed": ..., "dense": ...}``: every conv and the classifier.
    ``last_ops``
        ``[(op name, cycles)]`` for every op of the program (``OP_NAMES``).
    """

    def __init__(self, model, sparse: bool = True):
        if not isinstance(model, PreActResNet):
            raise TypeError(f"model must be a PreActResNet (lccl_ref.models), got "
                            f"{type(model).__name__}")
        self.model, self.sparse = model, bool(sparse)
        self.dtype = model.fc.weight.data.dtype
        self._programs = {}
        self._last = None  # (program, N, masks, stats) of the last call
        for name, block in self._blocks():
            for i, conv in enumerate((block.conv1, block.conv2)):
                if isinstance(conv, LCCLConv2d):
                    if not conv.shared_mask:
                        raise ValueError(
                            f"{name}.conv{i + 1}: the engine runs shared-mask LCCL layers "
                            f"(kxkxCx1, 1x1xCx1), not {conv.cheap!r}; use the module forward")
                    if conv.gate != "relu":
                        raise ValueError(
                            f"{name}.conv{i + 1}: the engine runs the paper's gate "
                            f"(V' = relu(z)), not {conv.gate!r}; use the module forward")
                    if block.cheap_before[i]:
                        raise ValueError(
                            f"{name}.conv{i + 1}: a 'bef' placement (the cheap branch reads "
                            "another input than the conv) is not supported by the engine; "
                            "use the module forward")

    def _blocks(self):
        for stage in self.model.stage_names:
            for j, block in enumerate(getattr(self.model, stage)):
                if not isinstance(block, PreActBlock):
                    raise TypeError(f"{stage}.{j} is a {type(block).__name__}, not a "
                                    "PreActBlock")
                yield f"{stage}.{j}", block

    def refresh(self):
        """Forget the compiled programs: the next call reads the model's weights again."""
        self._programs.clear()

    def _compile(self, shape):
        m = self.model
        b = _Builder(self.dtype)
        b.values[0] = shape
        v = b.conv(m.stem, 0)
        b.layers.append((len(b.rows) - 1, "stem", m.stem))
        for name, blk in self._blocks():
            x = v
            pre1, pre2 = _affine(blk.bn1), _affine(blk.bn2)
            if isinstance(blk.conv1, LCCLConv2d) and self.sparse:
                hv = b.lccl(blk.conv1, x, pre1)
            else:
                hv = b.conv(_expensive(blk.conv1), x, pre1)
            b.layers.append((len(b.rows) - 1, f"{name}.conv1", blk.conv1))
            res = None  # the shortcut, added by conv2 as it writes its output
            if blk.shortcut_kind == "projection":
                res = b.conv(blk.shortcut, x, pre1)
                b.layers.append((len(b.rows) - 1, f"{name}.shortcut", blk.shortcut))
            elif blk.shortcut_kind == "none":
                res = x
            if isinstance(blk.conv2, LCCLConv2d) and self.sparse:
                o = b.lccl(blk.conv2, hv, pre2, res)
            else:
                o = b.conv(_expensive(blk.conv2), hv, pre2, res)
            b.layers.append((len(b.rows) - 1, f"{name}.conv2", blk.conv2))
            if blk.shortcut_kind == "identity":  # subsampled, zero channels appended
                sc = blk.shortcut
                if not isinstance(sc, SubsamplePad):
                    raise TypeError(f"{name}.shortcut must be a SubsamplePad")
                b.add_subsampled(o, x, sc.stride)
            v = o
        b.head(v, _affine(m.bn), m.fc)
        b.assign_buffers()
        b.plan_prefetches()
        return _Program(b)

    def __call__(self, x):
        """(N, C, H, W) -> logits (N, classes); then ``last_stats``, ``last_masks``,
        ``last_macs`` and ``last_ops`` describe this call."""
        check_float_array("x", x, ndim=4)
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model is {self.dtype}")
        c_in = self.model.stem.in_channels
        if x.shape[1] != c_in:
            raise ValueError(f"x must have {c_in} channels (N, C, H, W), got shape {x.shape}")
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"x must have a positive height and width, got shape {x.shape}")
        key = x.shape[1:]
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._compile(key)
        n = x.shape[0]
        out = np.empty((n, prog.n_out), dtype=self.dtype)
        masks = np.empty((n, max(prog.mask_cells, 1)), dtype=np.bool_)
        stats = np.zeros((prog.ops.shape[0], 3), dtype=np.int64)
        _run(np.ascontiguousarray(x), out, prog.ops, *prog.arenas, masks, stats)
        self._last = (prog, n, masks, stats)  # the properties below read it when asked
        return out

    forward = __call__

    @property
    def last_ops(self):
        """``[(op name, CPU cycles)]`` of the last call, in program order (the cycle counter
        of ``llvm.readcyclecounter``: on x86 the TSC, which ticks at a constant rate)."""
        if self._last is None:
            return None
        prog, _, _, stats = self._last
        return [(OP_NAMES[int(op[F_CODE])], int(st[2])) for op, st in zip(prog.ops, stats)]

    @property
    def last_cycles(self):
        """``(cycles of every op, op index of each row of last_stats)`` of the last call, as
        int64 arrays: ``last_ops`` and ``last_stats`` without building their lists and
        dicts (what a timing loop reads between calls)."""
        if self._last is None:
            return None
        prog, _, _, stats = self._last
        return stats[:, 2].copy(), prog.layer_ops.copy()

    @property
    def last_masks(self):
        if self._last is None:
            return None
        prog, n, masks, _ = self._last
        out = {}
        for k, name, _ in prog.layers:
            op = prog.ops[k]
            if op[F_CODE] == OP_LCCL:
                col, ho, wo = int(op[F_MASK]), int(op[F_HO]), int(op[F_WO])
                out[name] = masks[:, col: col + ho * wo].reshape(n, ho, wo)
        return out

    @property
    def last_stats(self):
        if self._last is None:
            return None
        prog, n, _, stats = self._last
        rows = []
        for k, name, layer in prog.layers:
            op = prog.ops[k]
            ho, wo = int(op[F_HO]), int(op[F_WO])
            dense = n * ho * wo * int(op[F_T] * op[F_C] * op[F_KH] * op[F_KW])
            row = dict(name=name, kind="conv", macs=int(stats[k, 1]), macs_dense=dense,
                       cycles=int(stats[k, 2]))
            if op[F_CODE] == OP_LCCL:
                khc, kwc = layer.cheap_conv.kernel_size
                cheap = n * ho * wo * int(op[F_C]) * khc * kwc
                active = int(stats[k, 0])
                row.update(kind="lccl", macs_cheap=cheap, macs_expensive=int(stats[k, 1]),
                           macs=cheap + int(stats[k, 1]), active=active,
                           density=active / (n * ho * wo) if n else 0.0)
            rows.append(row)
        return rows

    @property
    def last_macs(self):
        rows = self.last_stats
        if rows is None:
            return None
        head = int(self._last[3][-1, 1])  # the classifier's
        return dict(executed=sum(r["macs"] for r in rows) + head,
                    dense=sum(r["macs_dense"] for r in rows) + head)


def _affine(bn):
    return bn_affine(bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var, bn.eps)


def _expensive(conv):
    """The dense conv of a layer: an LCCL layer's expensive conv alone, or ``conv``."""
    return conv.conv if isinstance(conv, LCCLConv2d) else conv


__all__ = ["Engine", "OP_NAMES"]
