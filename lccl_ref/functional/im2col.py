"""im2col / col2im: turning a convolution into one matrix multiply.

Layout (NHWC columns, which make the GEMM and the gated kernels cheap)::

    x    : (N, C, H, W)
    cols : (N, Ho, Wo, kh, kw, C)   -- row (n, i, j) holds the receptive field
                                       of output cell (n, :, i, j), channel last

so that ``cols.reshape(N*Ho*Wo, kh*kw*C) @ w.transpose(2, 3, 1, 0).reshape(kh*kw*C, T)``
is the convolution.  ``col2im`` is the adjoint of ``im2col``: it scatters-adds
each column entry back to the input pixel it came from, which is exactly what
the backward pass of a convolution needs.

Variants
--------
``im2col`` / ``col2im``
    Fast: the receptive fields are a strided *view* of the zero-padded
    channel-last input (:func:`sliding_windows`, no copy); ``im2col`` copies
    that view once, ``col2im`` adds into it tap by tap (:func:`add_windows`).
    Both loop only over the ``kh*kw`` kernel taps, never over pixels.  The
    convolution in :mod:`.conv` uses the same two helpers chunk by chunk.
``im2col_naive`` / ``col2im_naive``
    The algorithmic reference: explicit loops over every output cell and tap.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..checks import check_float_array, conv_geometry, pair


def _prepare(x, kernel_size, stride, padding, name="x"):
    check_float_array(name, x, ndim=4)
    kh, kw = pair("kernel_size", kernel_size, 1)
    s, p, (ho, wo) = conv_geometry(x.shape[2], x.shape[3], kh, kw, stride, padding)
    return kh, kw, s, p, ho, wo


def _prepare_cols(cols, x_shape, kernel_size, stride, padding):
    """Validate col2im's arguments; return ``(x_shape, kh, kw, stride, padding, ho, wo)``."""
    check_float_array("cols", cols, ndim=6)
    if not isinstance(x_shape, (tuple, list)) or len(x_shape) != 4:
        raise ValueError(f"x_shape must be a 4-tuple (N, C, H, W), got {x_shape!r}")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
               for v in x_shape):
        raise ValueError(f"x_shape must hold positive ints (N, C, H, W), got {x_shape!r}")
    n, c, h, w = (int(v) for v in x_shape)
    kh, kw = pair("kernel_size", kernel_size, 1)
    s, p, (ho, wo) = conv_geometry(h, w, kh, kw, stride, padding)
    if cols.shape != (n, ho, wo, kh, kw, c):
        raise ValueError(
            f"cols must have shape {(n, ho, wo, kh, kw, c)} (N, Ho, Wo, kh, kw, C) for "
            f"x_shape {(n, c, h, w)}, kernel ({kh}, {kw}), stride {s}, padding {p}; "
            f"got {cols.shape}"
        )
    return (n, c, h, w), kh, kw, s, p, ho, wo


def pad_nhwc(x: np.ndarray, padding: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) -> zero-padded channel-last copy (N, H + 2ph, W + 2pw, C).

    The one padded copy of the library's channel-last kernels (im2col, the
    convolution's chunks, the gated kernels).  ``out``: a buffer of at least that
    shape to reuse, whose border already holds zeros (made once with ``np.zeros``):
    only its interior ``out[:N, ph:ph + H, pw:pw + W]`` is written, and it is returned.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    if out is None:
        out = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    out[:n, ph : ph + h, pw : pw + w, :] = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return out


def sliding_windows(xp: np.ndarray, kernel_size, stride, out_size) -> np.ndarray:
    """Read-only strided view of every receptive field of a padded channel-last input.

    Parameters
    ----------
    xp : ndarray, (N, Hp, Wp, C), e.g. from :func:`pad_nhwc`
    kernel_size, stride, out_size : (int, int) each -- ``(kh, kw)``, ``(sh, sw)``, ``(Ho, Wo)``

    Returns
    -------
    view : ndarray, (N, Ho, Wo, kh, kw, C), sharing memory with ``xp``
        ``view[n, i, j, p, q, c] == xp[n, i*sh + p, j*sw + q, c]``.  Neighbouring
        windows overlap in memory, so the view is read-only; copying it *is*
        im2col.  The ``kw*C`` numbers of one kernel row are contiguous, which
        makes that copy fast.
    """
    (kh, kw), (sh, sw), (ho, wo) = kernel_size, stride, out_size
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (xp.shape[0], ho, wo, kh, kw, xp.shape[3]),
                      (s0, sh * s1, sw * s2, s1, s2, s3), writeable=False)


def add_windows(xp: np.ndarray, cols: np.ndarray, stride) -> None:
    """Adjoint of :func:`sliding_windows`: ``xp[n, i*sh + p, j*sw + q] += cols[n, i, j, p, q]``.

    ``xp`` (N, Hp, Wp, C) is updated in place; ``cols`` is (N, Ho, Wo, kh, kw, C).
    Overlapping windows must *add*, so this loops over the ``kh*kw`` taps, each
    a strided ``+=`` that touches every pixel at most once.
    """
    sh, sw = stride
    _, ho, wo, kh, kw, _ = cols.shape
    for p in range(kh):
        for q in range(kw):
            xp[:, p : p + sh * (ho - 1) + 1 : sh, q : q + sw * (wo - 1) + 1 : sw, :] += (
                cols[:, :, :, p, q, :]
            )


def im2col(x: np.ndarray, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Gather every receptive field of ``x`` into a row.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), float32 or float64
    kernel_size, stride, padding : int or (int, int)

    Returns
    -------
    cols : ndarray, (N, Ho, Wo, kh, kw, C), dtype of ``x``
        ``Ho = (H + 2*ph - kh) // sh + 1``, likewise ``Wo``.
    """
    kh, kw, s, p, ho, wo = _prepare(x, kernel_size, stride, padding)
    xp = pad_nhwc(x, p)  # (N, Hp, Wp, C)
    return np.ascontiguousarray(sliding_windows(xp, (kh, kw), s, (ho, wo)))


def col2im(cols: np.ndarray, x_shape, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add columns back onto the input grid.

    Parameters
    ----------
    cols : ndarray, (N, Ho, Wo, kh, kw, C), float32 or float64
    x_shape : (N, C, H, W), the shape of the image ``cols`` came from
    kernel_size, stride, padding : int or (int, int), as given to :func:`im2col`

    Returns
    -------
    dx : ndarray, (N, C, H, W), dtype of ``cols``
    """
    (n, c, h, w), _, _, s, (ph, pw), _, _ = _prepare_cols(
        cols, x_shape, kernel_size, stride, padding)
    xp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=cols.dtype)  # (N, Hp, Wp, C)
    add_windows(xp, cols, s)
    return np.ascontiguousarray(xp[:, ph : ph + h, pw : pw + w, :].transpose(0, 3, 1, 2))


def _naive_taps(n, h, w, kh, kw, stride, padding, ho, wo):
    """Every ``(b, oi, oj, i, j, r, s)``: image ``b``, output cell ``(oi, oj)``, kernel tap
    ``(i, j)`` and the input pixel ``(r, s)`` it reads, for the taps inside the input (the
    others read zero padding).  The one loop nest of both naive twins."""
    (sh, sw), (ph, pw) = stride, padding
    for b in range(n):
        for oi in range(ho):
            for oj in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        r, s = oi * sh + i - ph, oj * sw + j - pw
                        if 0 <= r < h and 0 <= s < w:
                            yield b, oi, oj, i, j, r, s


def im2col_naive(x: np.ndarray, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Loop twin of :func:`im2col` (same output), written for reading."""
    kh, kw, s, p, ho, wo = _prepare(x, kernel_size, stride, padding)
    n, c, h, w = x.shape
    cols = np.zeros((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for b, oi, oj, i, j, r, s_ in _naive_taps(n, h, w, kh, kw, s, p, ho, wo):
        cols[b, oi, oj, i, j, :] = x[b, :, r, s_]
    return cols


def col2im_naive(cols: np.ndarray, x_shape, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Loop twin of :func:`col2im` (same output), written for reading."""
    (n, c, h, w), kh, kw, s, p, ho, wo = _prepare_cols(cols, x_shape, kernel_size, stride,
                                                       padding)
    dx = np.zeros((n, c, h, w), dtype=cols.dtype)
    for b, oi, oj, i, j, r, s_ in _naive_taps(n, h, w, kh, kw, s, p, ho, wo):
        dx[b, :, r, s_] += cols[b, oi, oj, i, j, :]
    return dx
