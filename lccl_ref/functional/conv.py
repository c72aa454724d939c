"""2-D convolution (cross-correlation, as in every deep-learning library): im2col + GEMM.

Shapes follow PyTorch so results compare one to one::

    x : (N, C, H, W)      w : (T, C, kh, kw)      b : (T,) or None
    y : (N, T, Ho, Wo)    Ho = (H + 2*ph - kh) // sh + 1,  Wo likewise

    y[n, t, i, j] = b[t] + sum_{c, p, q} w[t, c, p, q] * xpad[n, c, i*sh + p, j*sw + q]

Cost: ``N * Ho * Wo * T * C * kh * kw`` multiply-accumulates (the paper's ``XYTk^2C``).

Start at :func:`conv2d_forward`: the im2col rows of the output cells (channel last,
:mod:`.im2col`) times the weight matrix, one BLAS GEMM -- as notebook 01 shows on
the whole batch at once.  Here the rows are made and multiplied a chunk of about
``CHUNK_ROWS`` output cells at a time (a few images, or a band of rows of one large
image), so that the ``kh*kw``-times-the-input im2col matrix is never built whole:
75 MB for a CIFAR ResNet layer at batch 128, and writing it out and reading it back
would cost about as much as the GEMM.  :func:`conv2d_backward` rebuilds the rows
chunk by chunk rather than caching them; :func:`conv2d_naive` is the defining sum,
one output cell at a time (the algorithmic reference the tests hold the others to).
"""

from __future__ import annotations

import functools

import numpy as np

from ..checks import check_conv_args, check_float_array, check_same_dtype, check_shape
from .im2col import add_windows, pad_nhwc, sliding_windows

#: Target number of im2col rows (output cells) per GEMM (much smaller chunks make BLAS
#: slower: it repacks the weights per call).
CHUNK_ROWS = 1024


@functools.cache
def warm_up_blas() -> None:
    """Run one 64x512x512 float32 GEMM, once per process.

    OpenBLAS (0.3.31, one thread) runs the conv GEMMs at half speed until one GEMM
    with a large packed operand has run in the process (docs/kernel-notes.md, "BLAS
    warm-up"); the CIFAR ResNets never issue one themselves.  This costs ~10 ms, once.
    """
    np.ones((64, 512), np.float32) @ np.ones((512, 512), np.float32)


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
    """Forward pass of a 2-D convolution: im2col rows times the weight matrix, by chunks.

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
    warm_up_blas()  # once per process (2x faster GEMMs)
    n, c, h, wd = x.shape
    t, _, kh, kw = w.shape
    wm = weight_matrix(w)  # (kh*kw*C, T)
    imgs, rows, pieces = _chunks(n, ho, wo)
    xp = np.zeros((imgs, h + 2 * p[0], wd + 2 * p[1], c), dtype=x.dtype)  # padding stays 0
    win = sliding_windows(xp, (kh, kw), s, (ho, wo))  # (imgs, Ho, Wo, kh, kw, C) view
    cols = np.empty((imgs * rows * wo, kh * kw * c), dtype=x.dtype)
    out = np.empty((imgs * rows * wo, t), dtype=x.dtype)
    y = np.empty((n, t, ho, wo), dtype=x.dtype)
    for b0, b1, i0, i1 in pieces:
        k, r = b1 - b0, i1 - i0
        m = k * r * wo
        if i0 == 0:
            pad_nhwc(x[b0:b1], p, out=xp)  # the group's images, channel last
        np.copyto(cols[:m].reshape(k, r, wo, kh, kw, c), win[:k, i0:i1])  # im2col rows
        np.matmul(cols[:m], wm, out=out[:m])  # (m, T)
        if b is not None:
            out[:m] += b
        y[b0:b1, :, i0:i1, :] = out[:m].reshape(k, r, wo, t).transpose(0, 3, 1, 2)
    return y, (x, w, b is not None, s, p, (ho, wo))


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
            pad_nhwc(x[b0:b1], p, out=xp)
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
