"""Input checks shared by the public functions.

Every public function of the library validates its arguments here, at the
boundary, so that bad input fails with a ``TypeError`` or ``ValueError`` that
names the argument, what it got and what it needs -- never with an
``IndexError`` from deep inside a kernel or a silent broadcast.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: The largest padding a convolution takes (see :func:`conv_geometry`).
MAX_PADDING = 1024


def check_float_array(name: str, x, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` if it is a float32/float64 ndarray of rank ``ndim``.

    Raises
    ------
    TypeError
        ``x`` is not an ndarray, or its dtype is not float32/float64.
    ValueError
        ``x`` has the wrong number of dimensions.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D, got {x.ndim}-D array of shape {x.shape}"
        )
    return x


def check_same_dtype(**arrays) -> np.dtype:
    """Check that all non-None arrays share one dtype and return it."""
    named = [(k, v) for k, v in arrays.items() if v is not None]
    first_name, first = named[0]
    for name, arr in named[1:]:
        if arr.dtype != first.dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {first_name} has dtype {first.dtype}; "
                "mixing dtypes is not allowed (cast one of them explicitly)"
            )
    return first.dtype


def check_shape(name: str, x: np.ndarray, shape: tuple) -> None:
    """Check ``x.shape == shape`` exactly (no broadcasting)."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def pair(name: str, v, minimum: int) -> tuple[int, int]:
    """Turn an int or a pair of ints into ``(vh, vw)``, each ``>= minimum``."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        vals = (int(v), int(v))
    elif (
        isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in v)
    ):
        vals = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if min(vals) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return vals


def conv_geometry(
    h: int, w: int, kh: int, kw: int, stride, padding
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Check a convolution's sizes, stride and padding; return ``(stride, padding, (Ho, Wo))``.

    The one check of conv arguments that every public convolution (functional,
    kernels, im2col) makes; the output size is :func:`conv_output_size`.

    Needs a kernel of at least 1 x 1 that fits the padded input (``H = 0`` inside
    enough padding is a valid, all-padding input),
    ``stride >= 1`` and ``0 <= padding <= MAX_PADDING``.  A padding beyond ``kh - 1``
    only adds output cells that read zeros (the 1x1 cheap branch of an LCCL layer
    uses a few to match the expensive conv's output size); the cap keeps the padded
    buffers bounded (``padding=10**5`` once asked for 298 GiB, ``2**63`` overflowed).

    A stride larger than the padded size ``H + 2*ph`` reads one window, as the
    stride equal to that size does; the returned stride is the smaller of the two,
    which gives the same output, so that no buffer is sized by a stride of
    ``10**6`` and no kernel overflows on one of ``2**63``.

    Raises
    ------
    TypeError
        ``stride`` or ``padding`` is not an int or a pair of ints.
    ValueError
        Any of the bounds above.
    """
    sh, sw = pair("stride", stride, 1)
    ph, pw = pair("padding", padding, 0)
    if kh < 1 or kw < 1:
        raise ValueError(f"the kernel (kh, kw) must be at least 1 x 1, got ({kh}, {kw})")
    if max(ph, pw) > MAX_PADDING:
        raise ValueError(f"padding must be <= {MAX_PADDING} (MAX_PADDING: beyond the kernel "
                         f"size it only pads the output with cells that read zeros), got "
                         f"{padding!r}")
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"kernel ({kh}, {kw}) is larger than the padded input "
            f"({h + 2 * ph}, {w + 2 * pw}) (input ({h}, {w}), padding {(ph, pw)})"
        )
    stride = effective_stride(h, w, (sh, sw), (ph, pw))
    return stride, (ph, pw), conv_output_size(h, w, kh, kw, stride, (ph, pw))


def conv_output_size(h: int, w: int, kh: int, kw: int, stride, padding) -> tuple[int, int]:
    """``(Ho, Wo)`` of a convolution: ``Ho = (H + 2*ph - kh) // sh + 1``, likewise ``Wo``.

    The one place the formula is written; arithmetic only, no checks (``stride`` and
    ``padding`` are int pairs, as :func:`conv_geometry` or :func:`effective_stride`
    give them: both strides give the same size).
    """
    return (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1


def effective_stride(h: int, w: int, stride, padding) -> tuple[int, int]:
    """``stride`` (a pair) with each entry at most the padded input size ``H + 2*ph``
    (likewise W): the same output, one window along an axis whose stride exceeds it.

    The ``*_unchecked`` kernels and the engine apply it too, as modules pass their
    own stride to them unchecked: no buffer is sized by, and no Numba int overflows on,
    a stride of ``10**6`` or ``2**63``.
    """
    return min(stride[0], h + 2 * padding[0]), min(stride[1], w + 2 * padding[1])


def check_conv_args(x, w, b, stride, padding):
    """Check the arguments of a convolution ``x (N, C, H, W) * w (T, C, kh, kw) + b (T,)``.

    Arrays: float32/float64 ndarrays of one dtype, 4-D (``b`` 1-D or None), at least
    one input and one output channel, ``w``'s C that of ``x``, ``b`` of length T;
    then :func:`conv_geometry`.  ``N = 0`` (an empty batch) is allowed.

    Returns
    -------
    stride, padding : (int, int)
        ``stride`` as :func:`conv_geometry` returns it.
    ho, wo : int
    """
    check_float_array("x", x, ndim=4)
    check_float_array("w", w, ndim=4)
    if b is not None:
        check_float_array("b", b, ndim=1)
    check_same_dtype(x=x, w=w, b=b)
    if x.shape[1] < 1:
        raise ValueError(f"x must have at least one channel, got shape {x.shape}")
    if w.shape[0] < 1:
        raise ValueError(f"w must have at least one output channel (T, C, kh, kw), "
                         f"got shape {w.shape}")
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"channel mismatch: x has C={x.shape[1]} channels (shape {x.shape}) but "
            f"w expects C={w.shape[1]} (shape {w.shape}, layout (T, C, kh, kw))"
        )
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(f"b must have shape ({w.shape[0]},) to match w, got {b.shape}")
    s, p, (ho, wo) = conv_geometry(x.shape[2], x.shape[3], w.shape[2], w.shape[3], stride,
                                   padding)
    return s, p, ho, wo
