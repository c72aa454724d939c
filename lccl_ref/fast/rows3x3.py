"""3x3 convolutions with one output channel, a few output rows by a few vectors at a time.

The cheap branch of ``kxkxCx1`` at 3x3 (stride 1, and stride 2 over the phase planes
of :mod:`.padcopy`), and a network's stem as ``T`` such one-channel sweeps
(:func:`conv3x3_rows`).  :func:`_rows_3x3` is one step in LLVM IR: ``rows x cols``
vector accumulators; the input rows that neighbouring output rows share are loaded
once, and a channel's taps are added column shift by column shift, each weight
broadcast where it is first used.  In that order LLVM keeps a step of 8 accumulators
(4 rows x 2 vectors, or 8 x 1) in registers; with more it spills.  Python-level Numba
code was not kept in registers by either of LLVM's vectorisers.  Start at
:func:`row_sweeps_3x3`; measurements: docs/kernel-notes.md, "cheap branch".
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .ir import array_lanes, fma, splat, vector_ptr
from .padcopy import copy_image

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
    broadcast first).  Steps of 10-16 accumulators spill.  At
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
    """
    _sweeps(xb, wt, chan, 0, nc, ho, wo, wq, bias, vflat, 1)


@njit(cache=True)
def row_sweeps_3x3_s2(xb, wt, chan, plane, nc, ho, wo, wq, bias, vflat):
    """The 3x3 stride-2 cheap conv in the phase layout of :mod:`.fused` (channel ``c``'s
    phase plane ``(pa, pb)`` at ``c*chan + (2*pa + pb)*plane``, ``Wq`` columns):
    ``vflat[i*Wq + j]`` for ``i < Ho``, ``j < Wo``, as :func:`row_sweeps_3x3` does
    at stride 1 (same steps, same needs), for the taps of :func:`tap_sweeps` at
    ``(2*(a % 2) + b % 2)*plane + (a // 2)*Wq + b // 2``.
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
    :func:`.padcopy.copy_image`, which fills it, with ``max(x * pre_s + pre_h, 0)``
    when ``has_pre``); ``wt`` (T, 9C) the weights, ``b`` (T,) the bias; ``yn``
    (T, Ho*Wo) gets ``conv + b`` (``+ res``, (T, Ho*Wo), when given);
    ``vflat`` ((Ho-1)*Wp + Wo + 8,) scratch.  Needs ``Ho >= ROWS`` and ``Wo >=``
    the vector width.

    Why: with ``C*9 = 27`` taps, the register-blocked kernel of :mod:`.vector`
    spends a third of its time per block outside the FMAs (loading positions,
    zeroing and storing 80 accumulators).
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
