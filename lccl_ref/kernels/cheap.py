"""The cheap branch of a shared-mask LCCL at inference, in one call: ``V'`` and its mask.

For the ``kxkxCx1`` and ``1x1xCx1`` cheap kernels the cheap branch has a
single output channel, and at inference its BN is folded into the conv
(:func:`lccl_ref.functional.fold_into_conv`), so it is::

    V'[n, i, j] = max(0, b + sum_{c, p, q} w[c, p, q] * x[n, c, i*sh + p - ph, j*sw + q - pw])
    mask        = V' > 0                       (N, Ho, Wo), shared by all T channels

with the taps that fall into the zero padding adding nothing.

How (:func:`cheap_single`, one Numba call, ``x`` read in place, NCHW):

1. tap planes ``Z[(p, q), :] = sum_c w[c, p, q] * x[n, c, :]`` for each image,
   ``kh*kw`` weighted sums of the ``C`` input planes, as long contiguous
   axpys (vectorised), a block of columns at a time so ``Z`` stays in L1;
2. shift-add: ``V'[n, i, j] = b + sum_{p, q} Z[(p, q), i*sh + p - ph, j*sw + q - pw]``;
3. ReLU, mask and count in the same sweep over the output row.

Why not im2col + GEMM: the cheap conv has one output channel, so im2col
would copy the input ``kh*kw`` times to feed a one-column product.  The
NumPy version this replaces (the same tap planes by one batched GEMM, then
nine shifted adds, ReLU, mask and count as separate array passes) spent most
of a batch-1 call in Python: 0.09-0.11 ms per ResNet-20 layer whose
expensive conv takes 0.25 ms.

Work: step 1 runs on every input position, ``C*kh*kw*H*W`` MACs per image;
at stride 1 with "same" padding that is the cost model's ``C*kh*kw*Ho*Wo``
(the ``macs_cheap`` of ``LCCLConv2d.last_stats``), at stride 2 it is about
four times that (every input row is read by some tap, but each tap needs
only a quarter of its plane).  Two of ResNet-20's eighteen LCCL layers have
stride 2; their cheap branch is 1/T of their cost.

The naive twin is ``functional.conv2d_forward`` followed by ``max(., 0)``
(``tests/test_kernels.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._checks import check_float_array, check_same_dtype, conv_output_size, pair

#: Input positions per block of tap planes: ``kh*kw`` planes of 512 float32 stay in L1.
BLOCK = 512


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
        ``v > 0``.
    active : int
        The number of true cells of ``mask``.
    """
    check_float_array("x", x, ndim=4)
    check_float_array("w", w, ndim=4)
    check_float_array("b", b, ndim=1)
    check_same_dtype(x=x, w=w, b=b)
    if w.shape[0] != 1 or w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (1, {x.shape[1]}, kh, kw) for x of shape "
                         f"{x.shape}, got {w.shape}")
    if b.shape != (1,):
        raise ValueError(f"b must have shape (1,), got {b.shape}")
    stride, padding = pair("stride", stride, 1), pair("padding", padding, 0)
    conv_output_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], stride, padding)
    return cheap_single_unchecked(x, w, b, stride, padding)


def cheap_single_unchecked(x, w, b, stride, padding):
    """:func:`cheap_single` without the argument checks, for callers that made them.

    ``stride`` and ``padding`` are ``(int, int)`` pairs.  :class:`~lccl_ref.nn.LCCLConv2d`
    calls it at every eval forward: at batch 1 the checks cost as much as the kernel.
    """
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    v = np.empty((n, ho, wo), dtype=x.dtype)
    mask = np.empty((n, ho, wo), dtype=np.bool_)
    taps = np.ascontiguousarray(w[0].reshape(c, kh * kw))  # (C, kh*kw), tap t = p*kw + q
    active = _cheap_single(np.ascontiguousarray(x), taps, b[0], kh, kw, sh, sw, ph, pw, v, mask)
    return v, mask, int(active)


@njit(cache=True, fastmath={"contract"})
def _cheap_single(x, taps, b, kh, kw, sh, sw, ph, pw, v, mask):
    """Steps 1-3 of the module header for every image; returns the active count.

    ``x`` (N, C, H, W) C-contiguous, ``taps`` (C, kh*kw), ``v`` / ``mask`` (N, Ho, Wo).
    """
    n_img, c, h, wd = x.shape
    _, ho, wo = v.shape
    ntap = kh * kw
    hw = h * wd
    xf = x.reshape(n_img, c, hw)
    z = np.empty((ntap, hw), dtype=x.dtype)
    zero = v.dtype.type(0)
    active = 0
    for n in range(n_img):
        for e0 in range(0, hw, BLOCK):  # 1. tap planes, a block of positions at a time
            e1 = min(hw, e0 + BLOCK)
            m = e1 - e0
            for t in range(ntap):
                zt = z[t, e0:e1]
                for e in range(m):
                    zt[e] = zero
            for ch in range(c):
                plane = xf[n, ch, e0:e1]
                for t in range(ntap):
                    wv = taps[ch, t]
                    zt = z[t, e0:e1]
                    for e in range(m):  # from 0: LLVM then knows e >= 0 and vectorises
                        zt[e] += wv * plane[e]
        out = v[n]
        for i in range(ho):
            orow = out[i]
            for j in range(wo):
                orow[j] = b
            for p in range(kh):  # 2. shift-add; taps in the padding are skipped
                r = i * sh + p - ph
                if r < 0 or r >= h:
                    continue
                for q in range(kw):
                    j0 = max(0, -((q - pw) // sw))  # first j with j*sw + q - pw >= 0
                    j1 = min(wo, (wd - 1 + pw - q) // sw + 1)
                    if j0 >= j1:
                        continue
                    c0 = j0 * sw + q - pw  # first input column read
                    zrow = z[p * kw + q, r * wd + c0:(r + 1) * wd]
                    dst = orow[j0:j1]
                    if sw == 1:
                        for j in range(j1 - j0):
                            dst[j] += zrow[j]
                    else:
                        for j in range(j1 - j0):
                            dst[j] += zrow[j * sw]
            mrow = mask[n, i]
            for j in range(wo):  # 3. ReLU, mask, count
                on = orow[j] > zero
                orow[j] = orow[j] if on else zero
                mrow[j] = on
                active += on
    return active


__all__ = ["cheap_single", "cheap_single_unchecked"]
