"""Normalisation, class-balanced subsets, CIFAR augmentation and minibatches.

All randomness comes from an explicit ``numpy.random.Generator`` (or an integer
seed), so a run is reproducible and a resumed run can continue the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def _check_int(name: str, v, minimum: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return int(v)


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images, in units of ``x / 255``.

    Parameters
    ----------
    x : ndarray, uint8, shape (N, C, H, W)

    Returns
    -------
    mean, std : ndarray, float32, shape (C,)

    Notes
    -----
    Computed exactly from a 256-bin histogram per channel, so no float copy of
    the whole dataset is made.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"x must be a uint8 array of shape (N, C, H, W), got {got}")
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image, got N = 0")
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean = np.empty(x.shape[1])
    std = np.empty(x.shape[1])
    for c in range(x.shape[1]):
        hist = np.bincount(x[:, c].reshape(-1), minlength=256).astype(np.float64)
        p = hist / hist.sum()
        mean[c] = p @ levels
        std[c] = np.sqrt(p @ (levels - mean[c]) ** 2)
    std = np.maximum(std, 1e-8)  # a constant channel would divide by zero
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x / 255 - mean[c]) / std[c]`` per channel.

    Parameters
    ----------
    x : ndarray, uint8, shape (N, C, H, W)
    mean, std : ndarray, shape (C,)

    Returns
    -------
    ndarray, float32, shape (N, C, H, W)
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"x must be a uint8 array of shape (N, C, H, W), got {got}")
    c = x.shape[1]
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (c,) or std.shape != (c,):
        raise ValueError(
            f"mean and std must have shape ({c},), got {mean.shape} and {std.shape}"
        )
    # folding /255 into the affine map: x * scale + shift
    scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
    shift = (-mean / std).astype(np.float32)[:, None, None]
    out = x.astype(np.float32)
    out *= scale
    out += shift
    return out


def balanced_subset(y, n: int, seed) -> np.ndarray:
    """Indices of a class-balanced random subset of size ``n``.

    Each class present in ``y`` gets ``n // K`` samples; the ``n % K`` left over go
    to classes chosen at random. A class with too few samples gives all it has
    and the shortfall is spread over the others, so the result is as balanced
    as the data allows.

    Parameters
    ----------
    y : array-like of int, shape (N,)
        Labels.
    n : int
        Subset size, ``1 <= n <= N``.
    seed : int or numpy.random.Generator

    Returns
    -------
    ndarray, int64, shape (n,)
        Sorted, distinct indices into ``y``; the same for the same ``(y, n, seed)``.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must be a 1-D integer array, got {y.dtype} {y.shape}")
    n = _check_int("n", n, 1)
    if n > y.shape[0]:
        raise ValueError(f"n must be <= len(y) = {y.shape[0]}, got {n}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.zeros(len(classes), dtype=np.int64)
    left = n
    while left > 0:  # water-filling: equal shares, capped by what each class has
        open_ = np.flatnonzero(quota < counts)
        share = left // len(open_)
        if share == 0:
            quota[rng.choice(open_, size=left, replace=False)] += 1
            break
        add = np.minimum(share, counts[open_] - quota[open_])
        quota[open_] += add
        left -= int(add.sum())
    picks = [
        rng.choice(np.flatnonzero(y == c), size=q, replace=False)
        for c, q in zip(classes, quota)
    ]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def random_crop_flip(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """CIFAR augmentation: random crop of the zero-padded image, then a random flip.

    Each image is padded with ``pad`` zeros on every side, an ``H x W`` window
    is cut at an offset drawn uniformly from ``[0, 2*pad]^2``, and the window is
    mirrored left-right with probability 1/2.

    Parameters
    ----------
    x : ndarray, float, shape (N, C, H, W)
    rng : numpy.random.Generator
    pad : int, >= 0

    Returns
    -------
    ndarray, same dtype and shape as ``x`` (a new array)
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"x must be an array of shape (N, C, H, W), got {got}")
    rng = _check_rng(rng)
    pad = _check_int("pad", pad, 0)
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # (N, C, H+2p, W+2p)
    oy = rng.integers(0, 2 * pad + 1, size=n)
    ox = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    # windows[i, c, a, b] is the H x W window at offset (a, b): a view, no copy
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    out = windows[np.arange(n), :, oy, ox]  # (N, C, H, W), a copy
    out[flip] = out[flip, :, :, ::-1]
    return out


def iterate_minibatches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(xb, yb)`` minibatches covering ``x, y`` once.

    Parameters
    ----------
    x : ndarray, shape (N, ...)
    y : ndarray, shape (N,)
    batch_size : int, >= 1
    rng : numpy.random.Generator, optional
        Source of the shuffling order; a fresh unseeded one if None.
    shuffle : bool
        Visit the samples in a random order (else in order, yielding views).
    drop_last : bool
        Skip the last batch if it is smaller than ``batch_size``.
    """
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError("x and y must be numpy arrays")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    batch_size = _check_int("batch_size", batch_size, 1)
    n = x.shape[0]
    order = None
    if shuffle:
        order = _check_rng(rng if rng is not None else np.random.default_rng()).permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
