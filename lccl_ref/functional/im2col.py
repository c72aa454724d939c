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
    Fast: one strided slice copy per kernel tap (kh*kw copies in total).
``im2col_naive`` / ``col2im_naive``
    The algorithmic reference: explicit loops over every output cell and tap.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_float_array, conv_output_size, pair


def _prepare(x, kernel_size, stride, padding, name="x"):
    check_float_array(name, x, ndim=4)
    kh, kw = pair("kernel_size", kernel_size, 1)
    s = pair("stride", stride, 1)
    p = pair("padding", padding, 0)
    ho, wo = conv_output_size(x.shape[2], x.shape[3], kh, kw, s, p)
    return kh, kw, s, p, ho, wo


def pad_nhwc(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> zero-padded channel-last copy (N, H + 2ph, W + 2pw, C)."""
    n, c, h, w = x.shape
    ph, pw = padding
    xp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    xp[:, ph : ph + h, pw : pw + w, :] = x.transpose(0, 2, 3, 1)
    return xp


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
    kh, kw, (sh, sw), p, ho, wo = _prepare(x, kernel_size, stride, padding)
    xp = pad_nhwc(x, p)  # (N, Hp, Wp, C)
    n, c = x.shape[0], x.shape[1]
    cols = np.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i : i + sh * ho : sh, j : j + sw * wo : sw, :]
    return cols


def col2im(cols: np.ndarray, x_shape, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add columns back onto the input grid.

    Parameters
    ----------
    cols : ndarray, (N, Ho, Wo, kh, kw, C)
    x_shape : (N, C, H, W), the shape of the image ``cols`` came from

    Returns
    -------
    dx : ndarray, (N, C, H, W), dtype of ``cols``
    """
    if not isinstance(cols, np.ndarray) or cols.ndim != 6:
        raise ValueError(
            f"cols must be a 6-D ndarray (N, Ho, Wo, kh, kw, C), got "
            f"{getattr(cols, 'shape', type(cols).__name__)}"
        )
    check_float_array("cols", cols)
    n, c, h, w = (int(v) for v in x_shape)
    kh, kw = pair("kernel_size", kernel_size, 1)
    sh, sw = pair("stride", stride, 1)
    ph, pw = pair("padding", padding, 0)
    ho, wo = conv_output_size(h, w, kh, kw, (sh, sw), (ph, pw))
    if cols.shape != (n, ho, wo, kh, kw, c):
        raise ValueError(
            f"cols must have shape {(n, ho, wo, kh, kw, c)} for x_shape {tuple(x_shape)}, "
            f"got {cols.shape}"
        )
    xp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=cols.dtype)  # (N, Hp, Wp, C)
    for i in range(kh):
        for j in range(kw):
            xp[:, i : i + sh * ho : sh, j : j + sw * wo : sw, :] += cols[:, :, :, i, j, :]
    return np.ascontiguousarray(xp[:, ph : ph + h, pw : pw + w, :].transpose(0, 3, 1, 2))


def im2col_naive(x: np.ndarray, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Loop twin of :func:`im2col` (same output), written for reading."""
    kh, kw, (sh, sw), (ph, pw), ho, wo = _prepare(x, kernel_size, stride, padding)
    n, c, h, w = x.shape
    cols = np.zeros((n, ho, wo, kh, kw, c), dtype=x.dtype)
    for b in range(n):
        for oi in range(ho):
            for oj in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        r, s = oi * sh + i - ph, oj * sw + j - pw
                        if 0 <= r < h and 0 <= s < w:
                            cols[b, oi, oj, i, j, :] = x[b, :, r, s]
    return cols


def col2im_naive(cols: np.ndarray, x_shape, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Loop twin of :func:`col2im` (same output), written for reading."""
    n, c, h, w = (int(v) for v in x_shape)
    kh, kw = pair("kernel_size", kernel_size, 1)
    sh, sw = pair("stride", stride, 1)
    ph, pw = pair("padding", padding, 0)
    ho, wo = conv_output_size(h, w, kh, kw, (sh, sw), (ph, pw))
    dx = np.zeros((n, c, h, w), dtype=cols.dtype)
    for b in range(n):
        for oi in range(ho):
            for oj in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        r, s = oi * sh + i - ph, oj * sw + j - pw
                        if 0 <= r < h and 0 <= s < w:
                            dx[b, :, r, s] += cols[b, oi, oj, i, j, :]
    return dx
