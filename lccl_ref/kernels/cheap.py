"""The cheap branch's convolution at inference: ``z = conv_{W'}(u) + b'``, one plain Numba loop.

In eval mode the cheap branch's BN is folded into its conv
(:func:`lccl_ref.functional.fold_into_conv`), so the branch is this convolution
followed by the gate, ``V' = g(z)``, and its mask ``V' > 0``
(:mod:`lccl_ref.functional.gate`).  The cheap kinds give it one output channel
(``kxkxCx1``, ``1x1xCx1``: ``T' = 1``) or a 1x1 kernel (``1x1xCxT``).

Why not im2col + GEMM, as the expensive conv: with one output channel the GEMM has
one column, and im2col would copy the input ``kh*kw`` times to feed it.  Instead
:func:`_cheap_conv` flattens each zero-padded input plane and adds tap after tap,
each one long run over the flattened positions::

    acc[e] = b[t] + sum over taps (c, p, q) of w[t, c, p, q] * upad_flat[n, c, e + p*Wp + q]

where ``e = i*Wp + j`` is output cell ``(i, j)`` at stride 1 (the ``kw - 1``
positions past each row's end wrap into the next row: computed and dropped).  The
run stays in cache for all ``C*kh*kw`` taps and its inner loop is contiguous, which
LLVM vectorises.  At stride ``s`` every ``s``-th row and column is kept (``s^2`` times
the cost model's MACs, ``N*Ho*Wo*T'*C*kh*kw``, are computed; a strided loop was
slower).  With a 1x1 kernel and several outputs (``1x1xCxT``) the conv is a matrix
product per image, ``z[n] = w (T', C) @ u[n] (C, Ho*Wo)``, and BLAS does it: the run
loop would sweep the input T' times.  Start at :func:`cheap_conv2d`; its naive twin
is ``functional.conv2d_naive``.
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
    n, c, h, wd = u.shape
    if w.shape[0] > 1 and w.shape[2:] == (1, 1) and ph == pw == 0:  # 1x1xCxT: a GEMM
        us = u[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]  # the cells read
        z = np.matmul(w.reshape(w.shape[0], c), us.reshape(n, c, ho * wo))  # (N, T', Ho*Wo)
        z += b[:, None]
        return z.reshape(n, w.shape[0], ho, wo)
    up = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=u.dtype)  # zero border, C order
    up[:, :, ph : ph + h, pw : pw + wd] = u
    z = np.empty((n, w.shape[0], ho, wo), dtype=u.dtype)
    _cheap_conv(up, np.ascontiguousarray(w), b, sh, sw, z)
    return z


@njit(cache=True)
def _cheap_conv(up, w, b, sh, sw, z):
    """``z[n, t, i, j]`` = ``b[t]`` + the sum over the taps of ``w[t]`` on the window at
    ``(i*sh, j*sw)`` of ``up`` (N, C, Hp, Wp), C-contiguous; ``z`` (N, T', Ho, Wo)."""
    n_img, n_out, ho, wo = z.shape
    _, c, kh, kw = w.shape
    hp, wp = up.shape[2], up.shape[3]
    run = (hp - kh) * wp + (wp - kw + 1)  # flat positions up to the last stride-1 output
    acc = np.empty(max(run, 0), dtype=z.dtype)  # the run, in cache for all the taps
    for n in range(n_img):
        for t in range(n_out):
            acc[:] = b[t]
            for ch in range(c):
                flat = up[n, ch].reshape(-1)  # (Hp*Wp,): the padded plane
                for p in range(kh):
                    for q in range(kw):
                        wv = w[t, ch, p, q]
                        src = flat[p * wp + q:]  # the tap's shift
                        for e in range(run):
                            acc[e] += wv * src[e]
            zt = z[n, t]
            for i in range(ho):  # every sh-th row, every sw-th column of the run
                row = acc[i * sh * wp:]
                for j in range(wo):
                    zt[i, j] = row[j * sw]


def cheap_conv2d_backward(dz, u, w, stride=1, padding=0):
    """The gradients of :func:`cheap_conv2d`, for the cheap branch in training.

    Parameters
    ----------
    dz : ndarray, (N, T', Ho, Wo), the upstream gradient, dtype of ``u``
    u, w, stride, padding : as given to :func:`cheap_conv2d`

    Returns
    -------
    du : (N, C, H, W);  dw : (T', C, kh, kw);  db : (T',)   dtype of ``u``

    Notes
    -----
    With ``D`` the flattened padded plane holding ``dz[n, t, i, j]`` at ``e = i*sh*Wp +
    j*sw`` and zeros elsewhere, the forward's runs give both gradients as runs again::

        dw[t, c, p, q]          = sum_e D[e] * upad_flat[n, c, e + p*Wp + q]   (summed over n)
        dupad_flat[n, c, e + p*Wp + q] += w[t, c, p, q] * D[e]

    and ``db[t] = sum dz[:, t]``; ``du`` is ``dupad`` without its border.
    """
    (sh, sw), (ph, pw), ho, wo = check_conv_args(u, w, None, stride, padding)
    n, c, h, wd = u.shape
    if dz.shape != (n, w.shape[0], ho, wo) or dz.dtype != u.dtype:
        raise ValueError(f"dz must be {(n, w.shape[0], ho, wo)} of dtype {u.dtype}, got "
                         f"{dz.shape} of dtype {dz.dtype}")
    up = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=u.dtype)
    up[:, :, ph : ph + h, pw : pw + wd] = u
    dup = np.zeros_like(up)
    dw = np.zeros(w.shape, dtype=u.dtype)
    _cheap_conv_backward(up, np.ascontiguousarray(w), np.ascontiguousarray(dz), sh, sw, dup, dw)
    return (np.ascontiguousarray(dup[:, :, ph : ph + h, pw : pw + wd]), dw,
            dz.sum(axis=(0, 2, 3)))


@njit(cache=True, fastmath={"reassoc", "contract"})
def _cheap_conv_backward(up, w, dz, sh, sw, dup, dw):
    """``dup`` (N, C, Hp, Wp) and ``dw`` (T', C, kh, kw) of :func:`_cheap_conv`, added into.
    ``reassoc`` lets LLVM split each tap's sum over the run into vector lanes (the order
    of a sum, as a GEMM chooses its own; NaN and infinities keep their meaning)."""
    n_img, n_out, ho, wo = dz.shape
    _, c, kh, kw = w.shape
    hp, wp = up.shape[2], up.shape[3]
    run = (hp - kh) * wp + (wp - kw + 1)
    d = np.zeros(max(run, 0), dtype=dz.dtype)  # dz spread over the run: 0 between outputs
    zero = np.zeros(1, dtype=dz.dtype)[0]  # of dz's dtype: a float32 sum stays float32
    for n in range(n_img):
        for t in range(n_out):
            for i in range(ho):
                for j in range(wo):
                    d[i * sh * wp + j * sw] = dz[n, t, i, j]
            for ch in range(c):
                flat, dflat = up[n, ch].reshape(-1), dup[n, ch].reshape(-1)
                for p in range(kh):
                    for q in range(kw):
                        wv, off = w[t, ch, p, q], p * wp + q
                        src, dst = flat[off : off + run], dflat[off : off + run]
                        acc = zero
                        for e in range(run):
                            acc += d[e] * src[e]
                        dw[t, ch, p, q] += acc
                        for e in range(run):
                            dst[e] += wv * d[e]
