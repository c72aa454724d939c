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

    CONV        dst = conv_W(src) + b            (vector_image, every position)
    LCCL        dst = V * V', mask = V' > 0      (fused_image: cheap branch, then
                                                 the expensive conv where the mask is on)
    ADD         dst += src                       (the identity shortcut)
    ADD_SUB     dst[:C] += src[:, ::s, ::s]      (the parameter-free "identity" shortcut
                                                 of a block that changes the shape)
    HEAD        out = fc(mean_hw(max(src * s + h, 0)))   (final BN-ReLU, pool, linear)

CONV and LCCL read ``max(src * s + h, 0)`` when the op has a ``pre`` (the
block's BN-ReLU, applied in the kernel's input copy, as the module path's
``pre=`` does), so no BN-ReLU is a pass of its own.  A
pre-activation block (``aft`` placements) becomes::

    h = CONV|LCCL(x, pre=BN1)
    o = CONV|LCCL(h, pre=BN2)
    o += x | x[:, ::s, ::s] | CONV_1x1(x, pre=BN1)     (shortcut)

Activations live in a few per-image buffers, reused once a value is dead;
padded copies are shared by the ops of one geometry (their zero borders are
never written).

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
from numba.typed import List

from ._checks import check_float_array
from .functional.batchnorm import bn_affine
from .kernels.fused import fused_buffer, fused_image, fused_tables
from .kernels.vector import (
    all_positions,
    band_cells,
    channel_block,
    patch_offsets,
    vector_image,
    weight_blocks,
)
from .models.blocks import PreActBlock, SubsamplePad
from .models.resnet import PreActResNet
from .nn import Conv2d, LCCLConv2d

OP_CONV, OP_LCCL, OP_ADD, OP_ADD_SUB, OP_HEAD = range(5)
OP_NAMES = ("CONV", "LCCL", "ADD", "ADD_SUB", "HEAD")

# Columns of an op row.  -1 means "none" in the index columns.
(F_CODE,  # OP_*
 F_SRC, F_DST,  # activation buffers; F_SRC = -1: the input image x[n]
 F_C, F_H, F_W,  # input geometry
 F_T, F_HO, F_WO,  # output geometry
 F_KH, F_KW, F_SH, F_SW, F_PH, F_PW,  # kernel, stride, padding (ADD_SUB: F_SH = s)
 F_WB,  # wbs: weight blocks (T_pad / TB, C*kh*kw, TB)
 F_BIAS,  # vecs: the conv's bias (T,), zeros when it has none; HEAD: the fc bias
 F_PRE,  # vecs: s at F_PRE, h at F_PRE + 1 (the BN-ReLU read through)
 F_PAD,  # pads: the padded image
 F_OFF,  # utabs: expensive tap offsets; F_OFF + 1: window corners (scratch or all)
 F_QS,  # itabs: positions of a band (scratch, or 0, 1, ... for CONV)
 F_OBUF,  # fbufs: (T_pad, band*Wo) results of a band
 F_BAND,  # output rows per band
 F_CHEAP,  # vecs: cheap weights (C*kh'*kw',) at F_CHEAP, folded bias (1,) at F_CHEAP + 1
 F_TOFF,  # itabs: cheap taps at F_TOFF, rowmap at + 1, cols (sw*3,) at + 2
 F_EVEN, F_ODD, F_HQ, F_WQ,  # fused layout (fused_tables)
 F_VF,  # fbufs: the cheap conv's flat output at F_VF, V' of the image at F_VF + 1
 F_MASK,  # column of this layer's mask in the (N, cells) mask array
 F_FCW,  # vecs: HEAD's fc weight (classes * C,)
 N_FIELDS) = range(33)


@intrinsic
def _cycles(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``: RDTSC on x86), for per-op times."""
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


@njit(cache=True)
def _run(x, out, ops, acts, vecs, wbs, pads, utabs, itabs, fbufs, masks, stats):
    """Run the program ``ops`` on every image of ``x``; ``out`` (N, classes) gets the logits.

    ``stats[k] += (active positions, MACs, cycles)`` of op ``k``; ``masks[n, F_MASK:...]``
    the masks of the LCCL ops.  The typed lists hold the arrays the op rows index.
    """
    bases = np.empty(8, dtype=np.uint64)
    no_mask = np.ones(1, dtype=np.bool_)
    for n in range(x.shape[0]):
        for k in range(ops.shape[0]):
            start = _cycles()
            op = ops[k]
            code = op[F_CODE]
            c, h, w = op[F_C], op[F_H], op[F_W]
            t, ho, wo = op[F_T], op[F_HO], op[F_WO]
            if op[F_SRC] < 0:
                src = x[n]
            else:
                src = acts[op[F_SRC]][: c * h * w].reshape(c, h, w)
            dst = acts[op[F_DST]][: t * ho * wo].reshape(t, ho * wo)
            has_pre = op[F_PRE] >= 0
            pre_s = vecs[op[F_PRE]] if has_pre else vecs[0]  # typed, unread without a pre
            pre_h = vecs[op[F_PRE] + 1] if has_pre else vecs[0]
            if code == OP_CONV:
                hp, wp = h + 2 * op[F_PH], w + 2 * op[F_PW]
                buf = pads[op[F_PAD]][: c * hp * wp].reshape(c, hp, wp)
                wb = wbs[op[F_WB]]
                obuf = fbufs[op[F_OBUF]].reshape(wb.shape[0] * wb.shape[2], -1)
                stats[k, 1] += vector_image(
                    src, buf, utabs[op[F_OFF]], wb, vecs[op[F_BIAS]], no_mask, pre_s, False,
                    False, op[F_SH], op[F_SW], op[F_PH], op[F_PW], dst, ho, wo, op[F_BAND],
                    itabs[op[F_QS]], utabs[op[F_OFF] + 1], bases, obuf, pre_s, pre_h, has_pre)
                stats[k, 0] += ho * wo
            elif code == OP_LCCL:
                wb = wbs[op[F_WB]]
                obuf = fbufs[op[F_OBUF]].reshape(wb.shape[0] * wb.shape[2], -1)
                cols = itabs[op[F_TOFF] + 2].reshape(-1, 3)
                mrow = masks[n, op[F_MASK]: op[F_MASK] + ho * wo]
                active, macs = fused_image(
                    src, pads[op[F_PAD]], utabs[op[F_OFF]], itabs[op[F_TOFF]],
                    vecs[op[F_CHEAP]], vecs[op[F_CHEAP] + 1][0], itabs[op[F_TOFF] + 1], cols,
                    op[F_EVEN], op[F_ODD], op[F_HQ], op[F_WQ], wb, op[F_SH], op[F_SW],
                    op[F_PH], op[F_PW], dst, fbufs[op[F_VF] + 1], mrow, ho, wo, op[F_BAND],
                    fbufs[op[F_VF]], itabs[op[F_QS]], utabs[op[F_OFF] + 1], bases, obuf,
                    pre_s, pre_h, has_pre)
                stats[k, 0] += active
                stats[k, 1] += macs
            elif code == OP_ADD:
                for ch in range(t):
                    s_row = src[ch].reshape(-1)
                    d_row = dst[ch]
                    for q in range(ho * wo):
                        d_row[q] += s_row[q]
            elif code == OP_ADD_SUB:
                s = op[F_SH]
                for ch in range(c):
                    d_row = dst[ch]
                    for i in range(ho):
                        for j in range(wo):
                            d_row[i * wo + j] += src[ch, i * s, j * s]
            else:  # OP_HEAD: BN-ReLU, global average, linear
                fc_w, fc_b = vecs[op[F_FCW]], vecs[op[F_BIAS]]
                pooled = fbufs[op[F_OBUF]]
                zero = src.dtype.type(0)
                for ch in range(c):
                    a, b = pre_s[ch], pre_h[ch]
                    s_row = src[ch].reshape(-1)
                    acc = zero
                    for q in range(h * w):
                        v = s_row[q] * a + b
                        acc += v if v > zero else zero
                    pooled[ch] = acc / (h * w)
                for o in range(t):
                    acc = fc_b[o]
                    for ch in range(c):
                        acc += fc_w[o * c + ch] * pooled[ch]
                    out[n, o] = acc
                stats[k, 1] += t * c
            stats[k, 2] += _cycles() - start


class _Builder:
    """Collects the op rows of one program and the arrays they index."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.rows = []
        self.vecs, self.wbs, self.pads, self.utabs, self.itabs, self.fbufs = ([] for _ in
                                                                              range(6))
        self.values = [None]  # value id -> (C, H, W); value 0 is the input image
        self.uses = []  # per op: (value ids read, value id written)
        self.pad_keys = {}
        self.layers = []  # (op index, module name, LCCLConv2d or Conv2d, mask column or -1)
        self.mask_cells = 0

    def _vec(self, *arrays):
        i = len(self.vecs)
        for a in arrays:
            self.vecs.append(np.ascontiguousarray(a, dtype=self.dtype).reshape(-1))
        return i

    def _add(self, arr, lst):
        lst.append(arr)
        return len(lst) - 1

    def _row(self, code, src, shape_in, shape_out, **fields):
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
        if key not in self.pad_keys:
            self.pad_keys[key] = self._add(np.zeros(size, dtype=self.dtype), self.pads)
        i = self.pad_keys[key]
        if self.pads[i].size < size:
            self.pads[i] = np.zeros(size, dtype=self.dtype)
        return i

    def _pre(self, pre):
        return -1 if pre is None else self._vec(*pre)

    def conv(self, conv: Conv2d, src, pre=None):
        """A dense CONV op (the vector kernel at every position)."""
        c, h, w = self.values[src]
        wt = conv.weight.data
        t, _, kh, kw = wt.shape
        (sh, sw), (ph, pw) = conv.stride, conv.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        tb = channel_block(t)
        wb = weight_blocks(np.ascontiguousarray(wt, dtype=self.dtype), tb)
        band = max(1, min(ho, band_cells(wb.shape[0] * tb, self.dtype.itemsize) // wo))
        hp, wp = h + 2 * ph, w + 2 * pw
        qs = np.empty(max(band, ho) * wo, dtype=np.int64)
        base = np.empty(max(band, ho) * wo, dtype=np.uint64)
        all_positions(ho, wo, sh, sw, wp, qs, base)
        off = len(self.utabs)
        self.utabs += [patch_offsets(c, kh, kw, hp, wp), base]
        bias = conv.bias.data if conv.bias is not None else np.zeros(t, self.dtype)
        dst = self.value((t, ho, wo))
        self._row(OP_CONV, src, (c, h, w), (t, ho, wo), kh=kh, kw=kw, sh=sh, sw=sw, ph=ph,
                  pw=pw, wb=self._add(wb, self.wbs), bias=self._vec(bias), pre=self._pre(pre),
                  pad=self._pad(("plain", c, h, w, ph, pw), c * hp * wp + 8 + wp),
                  off=off, qs=self._add(qs, self.itabs),
                  obuf=self._add(np.empty(wb.shape[0] * tb * band * wo, self.dtype),
                                 self.fbufs), band=band)
        self.uses.append(((src,), dst))
        return dst

    def lccl(self, layer: LCCLConv2d, src, pre=None):
        """An LCCL op (fused cheap branch and gated conv)."""
        c, h, w = self.values[src]
        conv, cconv = layer.conv, layer.cheap_conv
        wt = conv.weight.data
        t, _, kh, kw = wt.shape
        (sh, sw), (ph, pw), (cph, cpw) = conv.stride, conv.padding, cconv.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        w_f, b_f = layer._folded_cheap()  # (1, C, kh', kw'), (1,)
        khc, kwc = w_f.shape[2:]
        dh, dw = ph - cph, pw - cpw
        off, toff, rowmap, cols, even, odd, hq, wq = fused_tables(
            c, h, w, kh, kw, khc, kwc, sh, sw, ph, pw, dh, dw)
        tb = channel_block(t)
        wb = weight_blocks(np.ascontiguousarray(wt, dtype=self.dtype), tb)
        band = max(1, min(ho, band_cells(wb.shape[0] * tb, self.dtype.itemsize) // wo))
        key = ("plain", c, h, w, ph, pw) if (sh, sw) == (1, 1) else ("phase", c, h, w, ph, pw,
                                                                      sh, sw)
        size = fused_buffer(c, sh, sw, hq, wq, self.dtype).size
        utab = len(self.utabs)
        self.utabs += [off, np.empty(band * wo, dtype=np.uint64)]
        itab = len(self.itabs)
        self.itabs += [toff, rowmap, cols.reshape(-1)]
        vf = len(self.fbufs)
        self.fbufs += [np.empty((ho - 1) * wq + wo + 8, self.dtype),
                       np.empty(ho * wo, self.dtype)]
        dst = self.value((t, ho, wo))
        row = self._row(OP_LCCL, src, (c, h, w), (t, ho, wo), kh=kh, kw=kw, sh=sh, sw=sw,
                        ph=ph, pw=pw, wb=self._add(wb, self.wbs), pre=self._pre(pre),
                        pad=self._pad(key, size), off=utab,
                        qs=self._add(np.empty(band * wo, dtype=np.int64), self.itabs),
                        obuf=self._add(np.empty(wb.shape[0] * tb * band * wo, self.dtype),
                                       self.fbufs),
                        band=band, cheap=self._vec(w_f, b_f), toff=itab, even=even, odd=odd,
                        hq=hq, wq=wq, vf=vf, mask=self.mask_cells)
        row[F_BIAS] = row[F_CHEAP]  # typed placeholder (LCCL convs have no bias)
        self.mask_cells += ho * wo
        self.uses.append(((src,), dst))
        return dst

    def add(self, dst, src, stride=None):
        """``dst += src`` (or its subsampled first channels): in place, ``dst`` stays live."""
        code = OP_ADD if stride is None else OP_ADD_SUB
        self._row(code, src, self.values[src], self.values[dst],
                  sh=1 if stride is None else stride)
        self.uses.append(((src, dst), dst))

    def head(self, src, pre, fc):
        c, h, w = self.values[src]
        k = fc.weight.data.shape[0]
        bias = fc.bias.data if fc.bias is not None else np.zeros(k, self.dtype)
        self._row(OP_HEAD, src, (c, h, w), (k, 1, 1), pre=self._pre(pre),
                  fcw=self._vec(fc.weight.data), bias=self._vec(bias),
                  obuf=self._add(np.empty(c, self.dtype), self.fbufs))
        self.uses.append(((src,), None))

    def assign_buffers(self):
        """Give every value a per-image buffer, reusing those of dead values."""
        last = {}
        for k, (reads, _) in enumerate(self.uses):
            for v in reads:
                last[v] = k
        size = max(int(np.prod(s)) for s in self.values[1:])
        where = {0: -1}
        free, n_buf = [], 0
        for k, (reads, wrote) in enumerate(self.uses):
            if wrote is not None and wrote not in where:
                if free:
                    where[wrote] = free.pop()
                else:
                    where[wrote], n_buf = n_buf, n_buf + 1
            for v in set(reads):
                if last[v] == k and v != wrote and where[v] >= 0:
                    free.append(where[v])
            row = self.rows[k]
            reads_src = reads[0]
            row[F_SRC] = where[reads_src]
            row[F_DST] = where[wrote] if wrote is not None else where[reads_src]
        self.acts = [np.zeros(size, dtype=self.dtype) for _ in range(n_buf)]


def _typed(arrays):
    out = List()
    for a in arrays:
        out.append(a)
    return out


class _Program:
    """One compiled network for one input shape: op rows, their arrays, the layers."""

    def __init__(self, b: _Builder):
        self.ops = np.stack(b.rows)
        self.lists = tuple(_typed(a) for a in (b.acts, b.vecs, b.wbs, b.pads, b.utabs, b.itabs,
                                               b.fbufs))
        self.layers = b.layers
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
        for LCCL), ``macs_dense`` (the dense conv's), and for LCCL layers
        ``macs_cheap``, ``macs_expensive``, ``active`` (mask cells on, over
        the batch) and ``density``.
    ``last_masks``
        ``{name: (N, Ho, Wo) bool}`` of the LCCL layers.
    ``last_macs``
        ``{"executed": ..., "dense": ...}``: every conv and the classifier.
    """

    def __init__(self, model, sparse: bool = True):
        if not isinstance(model, PreActResNet):
            raise TypeError(f"model must be a PreActResNet (lccl_ref.models), got "
                            f"{type(model).__name__}")
        self.model, self.sparse = model, bool(sparse)
        self.dtype = model.fc.weight.data.dtype
        self._programs = {}
        self.last_stats = self.last_masks = self.last_macs = None
        for name, block in self._blocks():
            for i, conv in enumerate((block.conv1, block.conv2)):
                if isinstance(conv, LCCLConv2d):
                    if not conv.shared_mask:
                        raise ValueError(
                            f"{name}.conv{i + 1}: the engine runs shared-mask LCCL layers "
                            f"(kxkxCx1, 1x1xCx1), not {conv.cheap!r}; use the module forward")
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
            if isinstance(blk.conv2, LCCLConv2d) and self.sparse:
                o = b.lccl(blk.conv2, hv, pre2)
            else:
                o = b.conv(_expensive(blk.conv2), hv, pre2)
            b.layers.append((len(b.rows) - 1, f"{name}.conv2", blk.conv2))
            if blk.shortcut_kind == "projection":
                p = b.conv(blk.shortcut, x, pre1)
                b.layers.append((len(b.rows) - 1, f"{name}.shortcut", blk.shortcut))
                b.add(o, p)
            elif blk.shortcut_kind == "identity":
                sc = blk.shortcut
                if not isinstance(sc, SubsamplePad):
                    raise TypeError(f"{name}.shortcut must be a SubsamplePad")
                b.add(o, x, sc.stride)
            else:
                b.add(o, x)
            v = o
        b.head(v, _affine(m.bn), m.fc)
        b.assign_buffers()
        return _Program(b)

    def __call__(self, x):
        """(N, C, H, W) -> logits (N, classes); fills ``last_stats``, ``last_masks``,
        ``last_macs``."""
        check_float_array("x", x, ndim=4)
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model is {self.dtype}")
        c_in = self.model.stem.in_channels
        if x.shape[1] != c_in:
            raise ValueError(f"x must have {c_in} channels (N, C, H, W), got shape {x.shape}")
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"x must have a positive height and width, got shape {x.shape}")
        key = x.shape[1:]
        if key not in self._programs:
            self._programs[key] = self._compile(key)
        prog = self._programs[key]
        n = x.shape[0]
        out = np.empty((n, prog.n_out), dtype=self.dtype)
        masks = np.empty((n, max(prog.mask_cells, 1)), dtype=np.bool_)
        stats = np.zeros((prog.ops.shape[0], 3), dtype=np.int64)
        _run(np.ascontiguousarray(x), out, prog.ops, *prog.lists, masks, stats)
        self.last_ops = [(OP_NAMES[int(op[F_CODE])], int(st[2])) for op, st in zip(prog.ops, stats)]
        self._record(prog, n, masks, stats)
        return out

    forward = __call__

    def _record(self, prog, n, masks, stats):
        rows, self.last_masks = [], {}
        for k, name, layer in prog.layers:
            op = prog.ops[k]
            dense = n * int(op[F_HO] * op[F_WO] * op[F_T] * op[F_C] * op[F_KH] * op[F_KW])
            row = dict(name=name, kind="conv", macs=int(stats[k, 1]), macs_dense=dense)
            if op[F_CODE] == OP_LCCL:
                ho, wo = int(op[F_HO]), int(op[F_WO])
                khc, kwc = layer.cheap_conv.kernel_size
                cheap = n * ho * wo * int(op[F_C]) * khc * kwc
                active = int(stats[k, 0])
                row.update(kind="lccl", macs_cheap=cheap, macs_expensive=int(stats[k, 1]),
                           macs=cheap + int(stats[k, 1]), active=active,
                           density=active / (n * ho * wo) if n else 0.0)
                col = int(op[F_MASK])
                self.last_masks[name] = masks[:, col: col + ho * wo].reshape(n, ho, wo)
            rows.append(row)
        self.last_stats = rows
        head = int(stats[-1, 1])  # the classifier's
        self.last_macs = dict(executed=sum(r["macs"] for r in rows) + head,
                              dense=sum(r["macs_dense"] for r in rows) + head)


def _affine(bn):
    return bn_affine(bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var, bn.eps)


def _expensive(conv):
    """The dense conv of a layer: an LCCL layer's expensive conv alone, or ``conv``."""
    return conv.conv if isinstance(conv, LCCLConv2d) else conv


__all__ = ["Engine", "OP_NAMES"]
