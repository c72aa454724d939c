"""The backward pass of the gather-GEMM-scatter convolution: training on active rows only.

Where the mask is off, the gated conv's output gradient is 0, so the rows of
those positions add nothing to ``dW`` or ``dX``.  Per piece of output rows
(:func:`~.gather.plan_pieces`, as in the forward pass of :mod:`.gather`)::

    rows  = im2col rows of the active positions   (m, kh*kw*C)  fill_rows (reused)
    dv_r  = dv at the active positions            (m, T)        gather_grad_rows
    dW   += rows.T @ dv_r                         (kh*kw*C, T)  GEMM, m*K*T MACs
    dcols = dv_r @ W.T                            (m, kh*kw*C)  GEMM, m*K*T MACs
    dx   += col2im of the active rows dcols                     add_rows

``add_rows`` is the adjoint of ``fill_rows``: ``kh`` contiguous runs of
``kw*C`` numbers per row, added (windows overlap) into a padded channel-last
gradient whose border is cropped when an image is complete.  Rows are rebuilt
from ``x`` rather than cached by the forward pass, as the dense
``conv2d_backward`` does: ``kh*kw`` times less memory.

``keep_active`` zeroes a per-channel mask's inactive cells (of the computed
rows, and of ``dv``).  Variants: ``*_naive`` are the algorithmic references,
plain loops or NumPy (``fill_rows_naive`` is the twin of the reused
:func:`~.gather.fill_rows`).  Plain NumPy, ``@njit`` and BLAS only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .gather import CHUNK_BYTES, CHUNK_ROWS, fill_rows, plan_pieces


@njit(cache=True)
def gather_grad_rows(dv, mask, g0, g1, out):
    """``out[p] = dv[n, :, i, j]`` for the ``p``-th active position of output rows ``g0:g1``.

    ``dv`` : (N, T, Ho, Wo); ``mask`` : (N, Ho, Wo) bool; ``g`` indexes the
    flattened output rows ``(n, i) = divmod(g, Ho)``; positions in order, as
    :func:`~.gather.fill_rows` takes them.  Returns the number of rows written.
    """
    _, n_out, ho, wo = dv.shape
    m = 0
    for g in range(g0, g1):
        n, i = g // ho, g % ho
        for j in range(wo):
            if mask[n, i, j]:
                row = out[m]
                for t in range(n_out):
                    row[t] = dv[n, t, i, j]
                m += 1
    return m


def gather_grad_rows_naive(dv, mask, g0, g1, out):
    """Loop twin of :func:`gather_grad_rows` (same ``out`` and return value)."""
    ho = dv.shape[2]
    m = 0
    for g in range(g0, g1):
        for j in range(dv.shape[3]):
            if mask[g // ho, g % ho, j]:
                out[m] = dv[g // ho, :, g % ho, j]
                m += 1
    return m


@njit(cache=True)
def add_rows(dxp, n0, mask, g0, g1, kh, kw, sh, sw, dcols):
    """Adjoint of :func:`~.gather.fill_rows`: add the active rows ``dcols[:m]`` into ``dxp``.

    ``dxp`` : (k, Hp, Wp, C) padded channel-last gradient of images ``n0 ..
    n0 + k - 1``; row ``p`` of ``dcols`` (m, kh*kw*C) belongs to the ``p``-th
    active position of output rows ``g0:g1``.  Returns ``m``.
    """
    _, hp, wp, c = dxp.shape
    _, ho, wo = mask.shape
    span = kw * c
    flat = dxp.reshape(-1)
    m = 0
    for g in range(g0, g1):
        n, i = g // ho - n0, g % ho
        for j in range(wo):
            if mask[n + n0, i, j]:
                row = dcols[m]
                for a in range(kh):
                    dst = flat[((n * hp + i * sh + a) * wp + j * sw) * c :]  # kw*C numbers
                    src = row[a * span :]
                    for e in range(span):
                        dst[e] += src[e]
                m += 1
    return m


def add_rows_naive(dxp, n0, mask, g0, g1, kh, kw, sh, sw, dcols):
    """Loop twin of :func:`add_rows`: one tap ``(a, b)`` of one active position at a time."""
    ho, wo = mask.shape[1:]
    c = dxp.shape[3]
    m = 0
    for g in range(g0, g1):
        n, i = divmod(g, ho)
        for j in range(wo):
            if mask[n, i, j]:
                taps = dcols[m].reshape(kh, kw, c)
                for a in range(kh):
                    for b in range(kw):
                        dxp[n - n0, i * sh + a, j * sw + b] += taps[a, b]
                m += 1
    return m


@njit(cache=True)
def keep_active(src, mask, out):
    """``out = src`` where ``mask``, exactly 0 elsewhere (NaN and inf too); ``out`` may be ``src``.

    All three C-contiguous, one shape.  For per-channel masks: the computed rows'
    inactive channels in the forward pass, ``dv * mask`` in the backward.  A
    select, not a multiply (``NaN * 0`` is NaN); 10x faster than ``np.copyto(..., where=)``.
    """
    s, m, o = src.reshape(-1), mask.reshape(-1), out.reshape(-1)
    zero = o.dtype.type(0)
    for e in range(o.shape[0]):
        o[e] = s[e] if m[e] else zero


def keep_active_naive(src, mask, out):
    """Twin of :func:`keep_active`."""
    out[...] = np.where(mask, src, src.dtype.type(0))


def fill_rows_naive(xp, n0, mask, g0, g1, kh, kw, sh, sw, rows):
    """Loop twin of :func:`~.gather.fill_rows` (same ``rows[:m]`` and return value)."""
    ho, wo = mask.shape[1:]
    m = 0
    for g in range(g0, g1):
        n, i = divmod(g, ho)
        for j in range(wo):
            if mask[n, i, j]:
                rows[m] = xp[n - n0, i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(-1)
                m += 1
    return m


def chunk_rows(k_len, itemsize):
    """Active positions per GEMM: the forward pass's rule (:mod:`.gather`, about 1 MB of rows)."""
    return max(1, min(CHUNK_ROWS, CHUNK_BYTES // max(1, k_len * itemsize)))


def gather_backward(x, wm, mask, dv, kh, kw, stride, padding):
    """Gradients of ``y = conv(x, w)`` kept at the active positions of ``mask`` only.

    Parameters
    ----------
    x : (N, C, H, W); wm : (kh*kw*C, T), :func:`~lccl_ref.functional.conv.weight_matrix`
    mask : (N, Ho, Wo) bool, C-contiguous; dv : (N, T, Ho, Wo), read at active positions only
    stride, padding : (int, int) pairs, checked

    Returns
    -------
    dx : (N, C, H, W); dwm : (kh*kw*C, T), the weight-matrix gradient
    macs_dw, macs_dx : int, summed from the sizes of the GEMMs actually run
    """
    n_img, c, h, w = x.shape
    (sh, sw), (ph, pw) = stride, padding
    k_len, n_out = wm.shape
    ho, wo = mask.shape[1:]
    cuts, cnt = plan_pieces(mask, chunk_rows(k_len, x.itemsize))
    max_m = max(int(cnt.max()) if len(cnt) else 0, 1)
    max_k = max([-(-(g1 - g0) // ho) for g0, g1 in zip(cuts[:-1], cuts[1:])], default=1)
    hp, wp = h + 2 * ph, w + 2 * pw
    xp = np.zeros((max_k, hp, wp, c), dtype=x.dtype)  # padded images; the border stays 0
    dxp = np.empty_like(xp)  # their gradient, border included, zeroed per image
    rows = np.empty((max_m, k_len), dtype=x.dtype)  # (m, kh*kw*C)
    dcols = np.empty_like(rows)  # dv_r @ W.T
    dv_r = np.empty((max_m, n_out), dtype=x.dtype)  # (m, T)
    dx = np.empty_like(x, order="C")
    dwm = np.zeros_like(wm)
    dwm_piece = np.empty_like(wm)
    macs_dw = macs_dx = 0
    for g0, g1, m in zip(cuts[:-1].tolist(), cuts[1:].tolist(), cnt.tolist()):
        n0, i0 = divmod(g0, ho)
        whole = g1 - g0 >= ho  # whole images n0 .. n0 + k - 1, else a band of image n0
        k = (g1 - g0) // ho if whole else 1
        if whole and m == 0:  # nothing active: the gradient of these images is 0
            dx[n0 : n0 + k] = 0
            continue
        if whole or i0 == 0:  # a band reads the whole padded image, copied at its first band
            xp[:k, ph : ph + h, pw : pw + w] = x[n0 : n0 + k].transpose(0, 2, 3, 1)
            dxp[:k] = 0
        if m:
            fill_rows(xp, n0, mask, g0, g1, kh, kw, sh, sw, rows)  # (m, kh*kw*C)
            gather_grad_rows(dv, mask, g0, g1, dv_r)  # (m, T)
            dwm += np.matmul(rows[:m].T, dv_r[:m], out=dwm_piece)
            np.matmul(dv_r[:m], wm.T, out=dcols[:m])  # (m, kh*kw*C)
            add_rows(dxp, n0, mask, g0, g1, kh, kw, sh, sw, dcols)
            macs_dw += m * k_len * n_out
            macs_dx += m * k_len * n_out
        if whole or g1 - n0 * ho == ho:  # the images are complete: crop, back to NCHW
            dx[n0 : n0 + k] = dxp[:k, ph : ph + h, pw : pw + w].transpose(0, 3, 1, 2)
    return dx, dwm, macs_dw, macs_dx
