"""Calibration of untrained networks, so that their masks and activations look trained.

An untrained network has BN running statistics (0 and 1) that do not fit its
activations, and cheap branches open at about half of their cells.  :func:`calibrate`
makes one explicit eval pass (:func:`.walk.walk`) in which, as the pass reaches them:

* (``bn_stats``) every BN's running statistics become the mean and variance of the
  input it receives (the cheap BNs': of the cheap conv's output);
* (``density``) each LCCL's cheap-BN shift ``beta`` is set so that a fraction
  ``density`` of ``V'`` is positive on the batch: ``beta_c`` is minus the
  ``(1 - density)`` quantile of ``z_c - beta_c`` (the layer's own cheap
  pre-activation, ``LCCLConv2d.cheap_preactivation``, without its shift).

Doing both in the same pass keeps them consistent: every layer is set on the input
the already-set layers before it produce.  :func:`blob_mask` makes masks like trained
ones for the kernel benchmarks.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..models import lccl_layers
from ..nn import LCCLConv2d, Module
from .timing import eval_mode
from .walk import walk


def calibrate(model: Module, x: np.ndarray, density=None, bn_stats: bool = True) -> dict:
    """Prepare an (untrained) LCCL network for benchmarking on the batch ``x`` (see above).

    Parameters
    ----------
    model : a model of :mod:`lccl_ref.models` with LCCLConv2d layers, or one LCCLConv2d
    x : ndarray, (N, C, H, W)
    density : None, float in [0, 1], or dict {LCCL layer name: float}
    bn_stats : bool
        False for trained networks (keep their statistics).

    Returns
    -------
    dict {LCCL layer name: density measured on ``x`` afterwards}
    """
    layers = lccl_layers(model)
    if not layers:
        raise ValueError("model has no LCCLConv2d layer to calibrate")
    for name, m in layers:
        if m.cheap_bn is None:
            raise ValueError(f"{name} has no cheap BN (cheap_bn=False) to calibrate")
    targets = {}
    if density is not None:
        for name, _ in layers:
            r = density[name] if isinstance(density, dict) else density
            if not isinstance(r, (int, float)) or not 0.0 <= float(r) <= 1.0:
                raise ValueError(f"density for {name!r} must be in [0, 1], got {r!r}")
            targets[name] = float(r)

    def on_bn(bn, z):
        if bn_stats:
            _set_batch_stats(bn, z)

    def on_lccl(name, layer, x_in, u):
        _set_cheap(layer, u, targets.get(name), bn_stats)

    with eval_mode(model):
        walk(model, x, on_bn, on_lccl)
    return measure_densities(model, x)


def _set_cheap(layer: LCCLConv2d, u, target, bn_stats):
    """The cheap BN's statistics from the cheap conv's output on ``u`` (``bn_stats``),
    then its shift for ``target`` (a density, or None)."""
    conv, bn = layer.cheap_conv, layer.cheap_bn
    if bn_stats:
        raw, _ = F.conv2d_forward(u, conv.weight.data, None, conv.stride, conv.padding)
        _set_batch_stats(bn, raw)
    if target is not None:
        beta = bn.bias.data
        z = layer.cheap_preactivation(u) - beta[:, None, None]  # (N, T', Ho, Wo), no shift
        bn.bias.data = np.asarray([-_threshold(z[:, c], target) for c in range(z.shape[1])],
                                  dtype=beta.dtype)


def measure_densities(model: Module, x: np.ndarray) -> dict[str, float]:
    """Eval pass on ``x``; the density of each LCCL layer."""
    with eval_mode(model):
        model.forward(x)
    return {n: float(m.last_stats["density"]) for n, m in lccl_layers(model)}


def _threshold(values: np.ndarray, density: float) -> float:
    """A threshold with about ``round(density * n)`` of ``values`` strictly above it.

    The threshold lies halfway between two distinct values, never on a value:
    where ties straddle the exact count (e.g. positions whose cheap input is
    all zero after a ReLU give equal values), the cut goes to the nearer side
    of the tied group, so float rounding in the eval pass cannot flip it.
    """
    v = np.sort(values.ravel().astype(np.float64))
    n = v.size
    k = int(round(density * n))  # how many should end up above the threshold
    if k >= n:
        return v[0] - 1.0 - abs(v[0])
    if k <= 0:
        return v[-1] + 1.0 + abs(v[-1])
    lo = np.searchsorted(v, v[n - k], side="left")  # the tied group holding v[n - k]
    hi = np.searchsorted(v, v[n - k], side="right")
    cut = lo if (n - lo) - k <= k - (n - hi) else hi  # above the cut: n - cut values
    if cut <= 0:
        return v[0] - 1.0 - abs(v[0])
    if cut >= n:
        return v[-1] + 1.0 + abs(v[-1])
    return 0.5 * (v[cut - 1] + v[cut])


def _set_batch_stats(bn, z: np.ndarray) -> None:
    """``running_mean, running_var <- `` the mean and variance of ``z`` over (N, H, W)."""
    z64 = z.astype(np.float64)
    bn.running_mean = z64.mean(axis=(0, 2, 3)).astype(bn.running_mean.dtype)
    bn.running_var = z64.var(axis=(0, 2, 3)).astype(bn.running_var.dtype)


def blob_mask(rng, n: int, h: int, w: int, density: float, sigma: float = 2.0) -> np.ndarray:
    """(N, H, W) bool masks in blobs, as trained cheap branches give: Gaussian-smoothed
    noise thresholded at each image's ``1 - density`` quantile."""
    if density >= 1.0:
        return np.ones((n, h, w), bool)
    noise = rng.standard_normal((n, h, w))
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    smooth = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)))
    smooth = smooth.real.reshape(n, -1)
    cut = np.quantile(smooth, 1.0 - density, axis=1, keepdims=True)
    return (smooth > cut).reshape(n, h, w)
