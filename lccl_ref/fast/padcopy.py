"""The fast kernels' padded copies: an image into a zero-bordered buffer, BN-ReLU on the way.

Every fast kernel reads its input from a padded copy whose zero border is written
once and kept from image to image, so a tap of the convolution is a constant offset
from a window's corner.  The copy is made anyway, so the BN-ReLU that precedes a
convolution in a pre-activation block can be applied in it (``pre = (s, h)``:
``max(x * s[c] + h[c], 0)``, ``functional.batchnorm.affine_relu_value``) instead of
as a pass of its own over the activations.  Layouts:

* :func:`copy_image`: ``(C, Hp, Wp)``, the padded image (the vector kernel, stride 1);
* :func:`copy_rows_2`, :func:`copy_rows_any`: ``(C, sh, sw, Hq, Wq)``, the padded image
  split into its stride phases, so that at any stride the taps of neighbouring outputs
  are neighbours in memory (the fused LCCL kernel, :mod:`.fused`);
* :func:`copy_planes`: images side by side in planes that share their zero borders
  (the cheap branch alone, :mod:`.cheap`).

Whole-vector rows go through LLVM IR (:func:`_affine_rows`, :func:`_split_pairs`):
LLVM left the same loops scalar, or spent as long on each row's set-up as on its
work.  Start at :func:`copy_image`; measurements: docs/kernel-notes.md, "copies".
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..functional.batchnorm import affine_relu_value
from .ir import array_lanes, pre_value, splat, vector_ptr


@njit(inline="always")
def _maybe_pre(v, a, b, has_pre, zero):
    """``max(v * a + b, 0)`` with ``has_pre`` (the folded BN-ReLU), else ``v``."""
    return affine_relu_value(v, a, b, zero) if has_pre else v


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
    call; other widths row by row.
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
                    dst[col] = affine_relu_value(src[col], a, bb, zero)
            else:
                for col in range(w):
                    dst[col] = src[col]


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
    in one call.
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


@njit(cache=True)
def copy_rows_2(xn, xb, chan, rowmap, even, odd, sh, wq, pre_s, pre_h, has_pre):
    """Column stride 2: columns ``2k`` and ``2k+1`` to their phases.

    Whole vectors of pairs by :func:`_split_pairs`, a channel's row phase (input
    rows ``p, p + sh, ...``, which land ``Wq`` apart) per call (rows with unit
    column stride), the rest one pair at a time; with ``has_pre`` each value is
    ``max(x * pre_s[c] + pre_h[c], 0)``, as in :func:`copy_image`.
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
                    de[k] = _maybe_pre(src[2 * k], a, b, has_pre, zero)
                    do[k] = _maybe_pre(src[2 * k + 1], a, b, has_pre, zero)
    if wd % 2:  # the odd last column, after the loop above (inside it: slower)
        for ch in range(c):
            for r in range(h):
                a = pre_s[ch] if has_pre else zero
                b = pre_h[ch] if has_pre else zero
                xb[ch * chan + rowmap[r] + even + wd // 2] = _maybe_pre(xn[ch, r, wd - 1], a, b,
                                                                      has_pre, zero)


@njit(cache=True)
def copy_rows_any(xn, xb, chan, rowmap, cols, sw, pre_s, pre_h, has_pre):
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
                    dst[k] = _maybe_pre(src[c0 + k * sw], a, bb, has_pre, zero)


@njit(cache=True)
def copy_planes(xn, buf, chan, plane, rowmap, cols, pw, sw, eo, oo, je, jo):
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
                while k + 8 <= wd:  # eight loads, then eight stores (faster)
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
