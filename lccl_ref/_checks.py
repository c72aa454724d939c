"""Input checks shared by the public functions.

Every public function of the library validates its arguments here, at the
boundary, so that bad input fails with a ``TypeError`` or ``ValueError`` that
names the argument, what it got and what it needs -- never with an
``IndexError`` from deep inside a kernel or a silent broadcast.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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


def conv_output_size(
    h: int, w: int, kh: int, kw: int, stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """``Ho = (H + 2*ph - kh) // sh + 1`` (likewise W), checking the kernel fits."""
    sh, sw = stride
    ph, pw = padding
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"kernel ({kh}, {kw}) is larger than the padded input "
            f"({h + 2 * ph}, {w + 2 * pw}) (input ({h}, {w}), padding {padding})"
        )
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
