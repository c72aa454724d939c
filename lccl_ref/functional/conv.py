"""2-D convolution (cross-correlation, as in every deep-learning library).

Shapes follow PyTorch so results compare one to one::

    x : (N, C, H, W)      w : (T, C, kh, kw)      b : (T,) or None
    y : (N, T, Ho, Wo)    Ho = (H + 2*ph - kh) // sh + 1,  Wo likewise

    y[n, t, i, j] = b[t] + sum_{c, p, q} w[t, c, p, q] * xpad[n, c, i*sh + p, j*sw + q]

Cost: ``N * Ho * Wo * T * C * kh * kw`` multiply-accumulates (the paper's
``XYTk^2C`` per image, Table "Cost and speed-up", row "plain conv").

Variants
--------
``conv2d_forward`` / ``conv2d_backward``
    im2col into channel-last rows, then GEMM (BLAS), one chunk of rows at a
    time (see :func:`_chunks`).
``_forward_shifted_rows``
    The forward pass for stride 1 and few input channels (``C <=
    SHIFTED_ROWS_MAX_C``), where the im2col copy costs most relative to the
    GEMM: ``kh`` GEMMs on shifted views of the padded NCHW input, no im2col.
``conv2d_naive``
    The algorithmic reference: the sum above, one output cell at a time.

Why chunks
----------
The whole im2col matrix is ``kh*kw`` times the input (75 MB for a CIFAR
ResNet layer at batch 128); writing it to memory and reading it back costs
about as much as the GEMM.  Instead a few images (or a band of output rows
of one large image) are padded into a small channel-last buffer, their rows
are copied out of :func:`~.im2col.sliding_windows` into a buffer of about
``CHUNK_ROWS`` rows, and multiplied while they are still in cache.  The
buffers are reused, so no large temporary is ever allocated.  Chunks much
smaller than ~1000 rows make BLAS slower (it repacks the weights per call).
"""

from __future__ import annotations

import numpy as np

from .._blas import warm_up as _warm_up_blas
from ..checks import check_conv_args, check_float_array, check_same_dtype, check_shape
from .im2col import add_windows, sliding_windows

#: Target number of im2col rows (output cells) per GEMM.
CHUNK_ROWS = 1024
#: Stride-1 convolutions with at most this many input channels use
#: :func:`_forward_shifted_rows` (measured: 1.4x instead of 1.8x PyTorch's time at
#: C = 16; no gain from C = 32 on, where the GEMM dominates).
SHIFTED_ROWS_MAX_C = 16


def weight_matrix(w: np.ndarray) -> np.ndarray:
    """(T, C, kh, kw) -> (kh*kw*C, T), the row order of :func:`im2col`'s columns."""
    t = w.shape[0]
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(-1, t)


def _chunks(n, ho, wo):
    """Split the output ``(N, Ho, Wo)`` into GEMM-sized pieces of about ``CHUNK_ROWS`` cells.

    Returns ``(imgs, rows, pieces)``: at most ``imgs`` images per group, bands of
    at most ``rows`` output rows, and the list of ``(b0, b1, i0, i1)`` pieces --
    several whole images when images are small, bands of one image when large.
    """
    cells = ho * wo
    imgs = max(1, min(n, CHUNK_ROWS // cells))
    rows = ho if imgs > 1 else max(1, min(ho, -(-CHUNK_ROWS // wo)))
    pieces = [(b0, min(n, b0 + imgs), i0, min(ho, i0 + rows))
              for b0 in range(0, n, imgs) for i0 in range(0, ho, rows)]
    return imgs, rows, pieces


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward pass of a 2-D convolution.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    w : ndarray, (T, C, kh, kw), same dtype as ``x``
    b : ndarray, (T,), or None
    stride, padding : int or (int, int)
        ``stride >= 1``, ``0 <= padding <= MAX_PADDING`` (1024); a stride beyond the
        padded input reads one window, as the padded size does (``checks.conv_geometry``,
        the check every convolution makes).

    Returns
    -------
    y : ndarray, (N, T, Ho, Wo), dtype of ``x``
    cache : tuple
        What :func:`conv2d_backward` needs: ``x`` itself, by reference (not its
        im2col rows, which backward rebuilds chunk by chunk -- ``kh*kw`` times
        less memory; so do not modify ``x`` in place before the backward pass),
        ``w``, whether there is a bias, stride, padding and the output size.
    """
    s, p, ho, wo = check_conv_args(x, w, b, stride, padding)
    _warm_up_blas()  # once per process: see lccl_ref/_blas.py (2x faster GEMMs)
    cache = (x, w, b is not None, s, p, (ho, wo))
    if s == (1, 1) and x.shape[1] <= SHIFTED_ROWS_MAX_C:
        return _forward_shifted_rows(x, w, b, p, ho, wo), cache
    n, c, h, wd = x.shape
    t, _, kh, kw = w.shape
    ph, pw = p
    wm = weight_matrix(w)  # (kh*kw*C, T)
    imgs, rows, pieces = _chunks(n, ho, wo)
    xp = np.zeros((imgs, h + 2 * ph, wd + 2 * pw, c), dtype=x.dtype)  # padding stays 0
    win = sliding_windows(xp, (kh, kw), s, (ho, wo))  # (imgs, Ho, Wo, kh, kw, C) view
    cols = np.empty((imgs * rows * wo, kh * kw * c), dtype=x.dtype)
    out = np.empty((imgs * rows * wo, t), dtype=x.dtype)
    y = np.empty((n, t, ho, wo), dtype=x.dtype)
    for b0, b1, i0, i1 in pieces:
        k, r = b1 - b0, i1 - i0
        m = k * r * wo
        if i0 == 0:
            xp[:k, ph : ph + h, pw : pw + wd] = x[b0:b1].transpose(0, 2, 3, 1)  # NCHW -> NHWC
        np.copyto(cols[:m].reshape(k, r, wo, kh, kw, c), win[:k, i0:i1])  # im2col rows
        np.matmul(cols[:m], wm, out=out[:m])  # (m, T)
        if b is not None:
            out[:m] += b
        y[b0:b1, :, i0:i1, :] = out[:m].reshape(k, r, wo, t).transpose(0, 3, 1, 2)
    return y, cache


def _forward_shifted_rows(x, w, b, padding, ho, wo):
    """Stride-1 forward pass without im2col: ``kh`` GEMMs on shifted views of the input.

    Same result as :func:`conv2d_forward` (which calls it), for stride 1 only.

    Flatten each zero-padded image ``(C, Hp, Wp)`` to ``(C, Hp*Wp)``.  Tap
    ``(p, q)`` of output cell ``(i, j)`` sits at flat index
    ``(i + p)*Wp + (j + q) = (i*Wp + j) + (p*Wp + q)``: a constant shift.  So on a
    "wide" output grid ``(Ho, Wp)`` -- whose last ``kw - 1`` columns wrap into
    the next row and are dropped -- every tap reads a contiguous slice.  Stacking
    the ``kw`` horizontal shifts once, ``Z[c, q, :] = flat[c, q : q + Hp*Wp]``
    ``(C*kw, Hp*Wp)``, turns kernel row ``p`` into the strided view
    ``Z[:, p*Wp : p*Wp + Ho*Wp]`` that BLAS reads in place::

        y_wide (T, Ho*Wp) = sum_p  w[:, :, p, :] (T, C*kw)  @  Z[:, p*Wp :][:, :Ho*Wp]

    and the result is already channel-first.  Costs ``Wp / Wo`` times the MACs
    and copies the input ``kw`` times (im2col: ``kh*kw`` times).
    """
    n, c, h, wd = x.shape
    t, _, kh, kw = w.shape
    ph, pw = padding
    hp, wp = h + 2 * ph, wd + 2 * pw
    flat_len, wide_len = hp * wp, ho * wp
    w_rows = [np.ascontiguousarray(w[:, :, p, :]).reshape(t, c * kw) for p in range(kh)]
    imgs = max(1, min(n, -(-2 * CHUNK_ROWS // wide_len)))
    flat = np.zeros((imgs, c, flat_len + kw - 1), dtype=x.dtype)  # padding and tail stay 0
    images = flat[:, :, :flat_len].reshape(imgs, c, hp, wp)
    z = np.empty((imgs, c, kw, flat_len), dtype=x.dtype)  # the kw horizontal shifts
    y_wide = np.empty((imgs, t, ho, wp), dtype=x.dtype)
    tmp = np.empty((imgs, t, wide_len), dtype=x.dtype)
    y = np.empty((n, t, ho, wo), dtype=x.dtype)
    for b0 in range(0, n, imgs):
        b1 = min(n, b0 + imgs)
        k = b1 - b0
        images[:k, :, ph : ph + h, pw : pw + wd] = x[b0:b1]
        for q in range(kw):
            z[:k, :, q] = flat[:k, :, q : q + flat_len]
        zk = z[:k].reshape(k, c * kw, flat_len)
        acc = y_wide[:k].reshape(k, t, wide_len)
        np.matmul(w_rows[0], zk[:, :, :wide_len], out=acc)  # (k, T, Ho*Wp)
        for p in range(1, kh):
            acc += np.matmul(w_rows[p], zk[:, :, p * wp : p * wp + wide_len], out=tmp[:k])
        if b is not None:
            acc += b[:, None]
        y[b0:b1] = y_wide[:k, :, :, :wo]  # drop the wrapped columns
    return y


def conv2d_backward(dy, cache):
    """Backward pass of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : ndarray, (N, T, Ho, Wo), upstream gradient, dtype of the forward input
    cache : from :func:`conv2d_forward`

    Returns
    -------
    dx : ndarray, (N, C, H, W)
    dw : ndarray, (T, C, kh, kw)
    db : ndarray, (T,), or None when the forward pass had no bias

    Notes
    -----
    With ``X`` the im2col rows ``(N*Ho*Wo, kh*kw*C)``, ``W`` the weight matrix
    ``(kh*kw*C, T)`` and ``dY`` the rows of ``dy`` ``(N*Ho*Wo, T)``::

        dW = X.T @ dY          dX_rows = dY @ W.T          dx = col2im(dX_rows)

    computed chunk by chunk like the forward pass: the rows ``X`` are rebuilt
    from ``x`` rather than cached, and ``dW`` is summed over the chunks.

    For stride 1 (and ``padding <= kernel - 1``) the last two steps together are
    a stride-1 convolution of ``dy`` with the kernel flipped in space and with
    ``C`` and ``T`` swapped, padded by ``kernel - 1 - padding``; that runs through
    :func:`conv2d_forward`, which avoids the scatter-add of ``col2im``.
    """
    x, w, has_bias, s, p, (ho, wo) = cache
    n, c, h, wd = x.shape
    t, _, kh, kw = w.shape
    ph, pw = p
    sh = s[0]
    check_float_array("dy", dy, ndim=4)
    check_same_dtype(w=w, dy=dy)
    check_shape("dy", dy, (n, t, ho, wo))
    wm = weight_matrix(w)  # (kh*kw*C, T)
    imgs, rows, pieces = _chunks(n, ho, wo)
    hp, wp = h + 2 * ph, wd + 2 * pw
    xp = np.zeros((imgs, hp, wp, c), dtype=x.dtype)
    win = sliding_windows(xp, (kh, kw), s, (ho, wo))
    cols = np.empty((imgs * rows * wo, kh * kw * c), dtype=x.dtype)  # im2col rows X
    dx_by_conv = s == (1, 1) and ph <= kh - 1 and pw <= kw - 1
    if dx_by_conv:
        w_flip = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, T, kh, kw)
        dx, _ = conv2d_forward(dy, w_flip, None, 1, (kh - 1 - ph, kw - 1 - pw))  # (N, C, H, W)
    else:
        dx = np.empty_like(x)
        dxp = np.empty((imgs, hp, wp, c), dtype=x.dtype)  # gradient w.r.t. the padded input
        dcols = np.empty_like(cols)  # the gradient of the rows, dY @ W.T
    dy_rows = np.empty((imgs * rows * wo, t), dtype=x.dtype)  # dY
    dwm = np.zeros_like(wm)  # (kh*kw*C, T)
    dwm_piece = np.empty_like(wm)
    for b0, b1, i0, i1 in pieces:
        k, r = b1 - b0, i1 - i0
        m = k * r * wo
        if i0 == 0:
            xp[:k, ph : ph + h, pw : pw + wd] = x[b0:b1].transpose(0, 2, 3, 1)
        np.copyto(cols[:m].reshape(k, r, wo, kh, kw, c), win[:k, i0:i1])  # (m, kh*kw*C)
        np.copyto(dy_rows[:m].reshape(k, r, wo, t), dy[b0:b1, :, i0:i1, :].transpose(0, 2, 3, 1))
        dwm += np.matmul(cols[:m].T, dy_rows[:m], out=dwm_piece)
        if dx_by_conv:
            continue
        if i0 == 0:
            dxp[:k] = 0
        np.matmul(dy_rows[:m], wm.T, out=dcols[:m])  # (m, kh*kw*C)
        add_windows(dxp[:k, i0 * sh :], dcols[:m].reshape(k, r, wo, kh, kw, c), s)
        if i1 == ho:  # the group's gradient is complete: crop the padding, back to NCHW
            dx[b0:b1] = dxp[:k, ph : ph + h, pw : pw + wd].transpose(0, 3, 1, 2)
    dw = np.ascontiguousarray(dwm.reshape(kh, kw, c, t).transpose(3, 2, 0, 1))  # (T, C, kh, kw)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db


def conv2d_naive(x, w, b=None, stride=1, padding=0):
    """Reference convolution: the defining sum, one output cell at a time.

    Same arguments and output ``y`` as :func:`conv2d_forward` (no cache).
    """
    (sh, sw), (ph, pw), ho, wo = check_conv_args(x, w, b, stride, padding)
    n = x.shape[0]
    t, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, t, ho, wo), dtype=x.dtype)
    for b_ in range(n):
        for o in range(t):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b_, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    y[b_, o, i, j] = np.sum(patch * w[o])
            if b is not None:
                y[b_, o] += b[o]
    return y
