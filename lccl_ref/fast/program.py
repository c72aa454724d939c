"""The engine's program: a table of ops over three arenas, built once per input size.

:class:`Builder` turns a network's layers into op rows (one int64 row per op, the
columns are the ``F_*`` constants below) and collects the arrays the rows name:
weight blocks, folded BN affine maps, the cheap branches' folded weights, tap
offsets, padded images, per-image activations and scratch.  :class:`Program` packs
them into three arenas (float of the model's dtype, uint64, int64), each entry
64-byte aligned, which :func:`.run.run_program` reads.  Activations live in a few
per-image buffers reused once a value is dead (:meth:`Builder.assign_buffers`);
padded copies are shared by the ops of one layout (their zero borders are never
written), and the scratch an op fills and reads before the next op runs by every op,
so that an image's working set stays in L2.  Start at :class:`Builder`.
"""

from __future__ import annotations

import numpy as np

from ..checks import conv_output_size, effective_stride
from ..nn import Conv2d, LCCLConv2d
from .blocks import band_cells, channel_block, weight_blocks
from .fused import fused_buffer, fused_tables
from .rows3x3 import ROWS, ROWS_MAX_C
from .vector import all_positions, patch_offsets

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
 F_CLIP,  # LCCL: 1 = the bounded gate min(max(z, 0), 1), else the ReLU gate
 N_FIELDS) = range(40)


class Builder:
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
        ho, wo = conv_output_size(h, w, kh, kw, (sh, sw), (ph, pw))
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
        ho, wo = conv_output_size(h, w, kh, kw, (sh, sw), (ph, pw))
        w_f, b_f = layer.folded_cheap()  # (1, C, kh', kw'), (1,)
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
                  mask=self.mask_cells, clip=int(layer.gate == "clip"), **self._weights(wt))
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
        network's weights and buffers do not fit in L2.  The op before it prefetches it
        (docs/kernel-notes.md, "engine").
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


class Program:
    """One compiled network for one input shape: op rows, the three arenas, the layers."""

    def __init__(self, b: Builder):
        self.ops = np.stack(b.rows)
        self.arenas = (*_arena(b.f, b.dtype), *_arena(b.u, np.uint64), *_arena(b.i, np.int64))
        self.layers = b.layers
        self.layer_ops = np.array([k for k, _, _ in b.layers], dtype=np.int64)  # their ops
        self.mask_cells = b.mask_cells
        self.n_out = int(self.ops[-1, F_T])
