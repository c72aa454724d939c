"""The fast path's per-channel LCCL layer (``1x1xCxT``): the cheap conv by BLAS, then tiled.

For a cheap branch with ``T`` output channels the teaching path's cheap conv adds tap
after tap one output channel at a time; :func:`cheap_gemm` makes it one GEMM per
image over all taps and channels, then a shift-add per tap (the input read once, in
place: no padded copy).  :func:`per_channel_eval` then gates it and runs the
teaching path's tiled kernel with the product ``V * V'`` in its output write -- or,
where ``kernels.choose_method`` finds too many cells open for it to pay, the fast
dense conv and the mask.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..checks import conv_output_size, effective_stride
from ..kernels.gated import choose_method, gated_conv2d_unchecked
from .dense import conv2d_inference_unchecked


def per_channel_eval(layer, x, u):
    """``(O, mask, active, macs)`` of a ``1x1xCxT`` layer on the sparse path with its cheap
    BN folded; ``u`` the cheap branch's input (None: ``x``)."""
    conv, cconv = layer.conv, layer.cheap_conv
    z = cheap_gemm(x if u is None else u, *layer.folded_cheap(), cconv.stride, cconv.padding)
    v_cheap, _ = F.gate_forward(z, layer.gate)  # V' = g(z), (N, T, Ho, Wo)
    mask = F.gate_mask(z)
    active = int(np.count_nonzero(mask))
    if choose_method(mask) == "dense":  # too many cells open for the tiled kernel to pay
        v = conv2d_inference_unchecked(x, conv.weight.data, None, conv.stride, conv.padding,
                                       "auto", None)
        out, _ = F.product_forward(v, v_cheap, mask)
        return out, mask, active, v.size * conv.weight.data[0].size
    out, macs = gated_conv2d_unchecked(x, conv.weight.data, mask, None, conv.stride,
                                       conv.padding, "tiled", v_cheap)
    return out, mask, active, macs


def cheap_gemm(u, w, b, stride, padding):
    """The cheap branch's convolution at inference: one GEMM over the taps, then shift-add.

    Parameters
    ----------
    u : ndarray, (N, C, H, W);  w : ndarray, (T', C, kh, kw);  b : ndarray, (T',)
    stride, padding : (int, int)

    Returns
    -------
    ndarray, (N, T', Ho, Wo), dtype of ``u``: ``F.conv2d_forward(u, w, b, ...)`` up to
    float rounding.

    Notes
    -----
    The cheap branch has one output (``kxkxCx1``, ``1x1xCx1``) or a 1x1 kernel
    (``1x1xCxT``).  im2col would copy the input ``kh*kw`` times into channel-last
    rows to feed a GEMM with one column -- as costly as the expensive conv's own
    im2col when C is small (ResNet-20's first stage), which would eat the saving.
    Here the input is read once, in place, by one GEMM per image::

        Z = W'[taps] @ u               (kh*kw*T', C) @ (C, H*W)
        y[n, t, i, j] = b[t] + sum_{p, q} Z[n, (p, q, t), i*sh + p - ph, j*sw + q - pw]

    where a tap that falls into the zero padding adds nothing (no padded copy).

    ``Z`` holds ``kh*kw*T'`` planes: small for the cheap kinds (9 for ``kxkxCx1``,
    T for ``1x1xCxT``, 1 for ``1x1xCx1``).
    """
    n, c, h, wd = u.shape
    t, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = effective_stride(h, wd, stride, padding), padding
    ho, wo = conv_output_size(h, wd, kh, kw, (sh, sw), (ph, pw))
    if kh == 1 and kw == 1 and ph == 0 and pw == 0:  # subsample first: every stride-th cell
        us = np.ascontiguousarray(u[:, :, ::sh, ::sw][:, :, :ho, :wo])  # (N, C, Ho, Wo)
        y = np.matmul(w.reshape(t, c), us.reshape(n, c, ho * wo))  # (N, T', Ho*Wo)
        y += b[:, None]
        return y.reshape(n, t, ho, wo)
    uc = np.ascontiguousarray(u)  # no padded copy: taps that fall into the padding are skipped
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw * t, c)
    z = np.matmul(taps, uc.reshape(n, c, h * wd)).reshape(n, kh, kw, t, h, wd)
    y = np.empty((n, t, ho, wo), dtype=u.dtype)
    y[...] = b[:, None, None]
    for p in range(kh):
        i0, i1 = _inside(p, ph, sh, h, ho)
        for q in range(kw):
            j0, j1 = _inside(q, pw, sw, wd, wo)
            if i0 >= i1 or j0 >= j1:
                continue
            r0, c0 = i0 * sh + p - ph, j0 * sw + q - pw  # first input row / column read
            y[:, :, i0:i1, j0:j1] += z[:, p, q, :, r0 : r0 + sh * (i1 - i0 - 1) + 1 : sh,
                                       c0 : c0 + sw * (j1 - j0 - 1) + 1 : sw]
    return y


def _inside(tap, pad, stride, size, out):
    """Output indices ``[i0, i1)`` whose input ``i*stride + tap - pad`` lies in ``[0, size)``."""
    i0 = max(0, -((tap - pad) // stride))  # ceil((pad - tap) / stride)
    i1 = min(out, (size - 1 + pad - tap) // stride + 1)
    return i0, i1
