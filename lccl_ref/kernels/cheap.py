"""The cheap branch's convolution at inference: ``z = conv_{W'}(u) + b'``, one plain Numba loop.

In eval mode the cheap branch's BN is folded into its conv
(:func:`lccl_ref.functional.fold_into_conv`), so the branch is this convolution
followed by the gate, ``V' = g(z)``, and its mask ``V' > 0``
(:mod:`lccl_ref.functional.gate`).  The cheap kinds give it one output channel
(``kxkxCx1``, ``1x1xCx1``: ``T' = 1``) or a 1x1 kernel (``1x1xCxT``).

Why not im2col + GEMM, as the expensive conv: with one output channel the GEMM has
one column, and im2col would copy the input ``kh*kw`` times to feed it.  Instead
:func:`_cheap_conv` reads a zero-padded copy of the input in place and adds tap
after tap into each output plane::

    z[n, t] = b[t]
    for every tap (c, p, q):  z[n, t, i, j] += w[t, c, p, q] * upad[n, c, i*sh + p, j*sw + q]

The plane ``z[n, t]`` stays in cache while all ``C*kh*kw`` taps are added, and at
stride 1 the inner loop over ``j`` reads and writes contiguous memory (LLVM
vectorises it).  Cost: ``N*Ho*Wo*T'*C*kh*kw`` MACs, the cost model's ``macs_cheap``.
Start at :func:`cheap_conv2d`; its naive twin is ``functional.conv2d_naive``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..checks import check_conv_args


def cheap_conv2d(u, w, b, stride=1, padding=0):
    """The cheap branch's pre-activation ``z = conv_w(u) + b`` at inference.

    Parameters
    ----------
    u : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (T', C, kh, kw), dtype of ``u`` (the cheap weight, BN folded in)
    b : ndarray, (T',), dtype of ``u`` (the folded bias)
    stride, padding : int or (int, int)

    Returns
    -------
    z : ndarray, (N, T', Ho, Wo), dtype of ``u``: ``functional.conv2d_forward(u, w, b, ...)``
        up to float rounding (here the taps are added in ``(c, p, q)`` order).
    """
    if b is None:
        raise TypeError("b must be the cheap conv's (T',) bias, got None")
    (sh, sw), (ph, pw), ho, wo = check_conv_args(u, w, b, stride, padding)
    up = np.pad(u, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, Hp, Wp), zero border
    z = np.empty((u.shape[0], w.shape[0], ho, wo), dtype=u.dtype)
    _cheap_conv(up, np.ascontiguousarray(w), b, sh, sw, z)
    return z


@njit(cache=True)
def _cheap_conv(up, w, b, sh, sw, z):
    """``z[n, t] = b[t] + sum over taps (c, p, q) of w[t, c, p, q] * up[n, c, p::sh, q::sw]``.

    ``up`` (N, C, Hp, Wp) the padded input, ``w`` (T', C, kh, kw), ``z`` (N, T', Ho, Wo).
    """
    n_img, n_out, ho, wo = z.shape
    _, c, kh, kw = w.shape
    for n in range(n_img):
        for t in range(n_out):
            zt = z[n, t]  # (Ho, Wo): one output plane, in cache for all the taps
            for i in range(ho):
                for j in range(wo):
                    zt[i, j] = b[t]
            for ch in range(c):
                for p in range(kh):
                    for q in range(kw):
                        wv = w[t, ch, p, q]
                        for i in range(ho):
                            src = up[n, ch, i * sh + p]  # the input row this tap reads
                            dst = zt[i]
                            for j in range(wo):
                                dst[j] += wv * src[j * sw + q]
