"""The LCCL's gate ``V' = g(z)`` on the cheap pre-activation ``z``, and the density budget.

Gates (``GATES``); each is exactly 0 wherever ``z <= 0``, so the expensive
convolution may be skipped there and the skip stays exact:

- ``"relu"``: ``g(z) = max(z, 0)``, the paper's layer.
- ``"clip"``: ``g(z) = min(max(z, 0), 1)``, bounded above by 1, so that
  ``O = V * V'`` is never larger than ``V``: a layer no longer squares its
  input's scale (docs/derivations.md, section 8).

The density ``d = mean(z > 0)`` (:func:`density_forward`) is what a density
budget (:class:`lccl_ref.train.DensityBudget`) penalises; its gradient reaches
``z`` through a sigmoid surrogate of the step (:func:`density_backward`,
docs/derivations.md section 9).
"""

from __future__ import annotations

import numpy as np

from ..checks import check_float_array
from .activations import masked_backward

GATES = ("relu", "clip")


def _check_gate(kind):
    if kind not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {kind!r}")


def check_gate_init(pair):
    """``(gamma, beta)``, the cheap BN's initial scale and shift, checked: two finite numbers."""
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
                       and np.isfinite(v) for v in pair)):
        raise ValueError(f"gate_init must be a pair (gamma, beta) of finite numbers, got {pair!r}")
    return float(pair[0]), float(pair[1])


def gate_forward(z, kind="relu"):
    """The gate ``V' = g(z)``.

    Parameters
    ----------
    z : ndarray, any shape, float32 or float64
        The cheap branch's pre-activation ``BN(conv_W'(u))``.
    kind : {"relu", "clip"}

    Returns
    -------
    v : ndarray, shape and dtype of ``z``
        ``max(z, 0)`` or ``min(max(z, 0), 1)``; 0 wherever ``z <= 0``.
    cache : ``(slope, dtype)``, ``slope`` the boolean array where ``g'(z) = 1``:
        ``z > 0`` (relu) or ``0 < z < 1`` (clip).
    """
    check_float_array("z", z)
    _check_gate(kind)
    zero = z.dtype.type(0)
    v = np.maximum(z, zero)  # NaN stays NaN, as in the eval path
    if kind == "clip":
        v = np.minimum(v, z.dtype.type(1))
        slope = (z > 0) & (z < 1)
    else:
        slope = z > 0
    return v, (slope, z.dtype)


def gate_backward(dv, cache):
    """``dz = dv * g'(z)``: 1 where the gate passes ``z`` through, else 0 (0 at the kinks).

    The ReLU's backward (:func:`~.activations.masked_backward`) with the gate's slope.
    """
    return masked_backward(dv, cache, "dv", "z")


def gate_mask(z):
    """Where the gate is open, ``V' > 0``: ``z > 0``, and also where ``z`` is NaN.

    Both gates are 0 exactly where ``z <= 0``, so this is the mask of the expensive
    conv's cells that must be computed (the paper's ``V' > 0``).  A NaN ``z`` opens
    the gate: ``g(NaN) = NaN``, and the sparse path must carry that NaN into ``O``
    as the dense product ``V * NaN`` does.  Bool array of the shape of ``z``.
    """
    check_float_array("z", z)
    return ~(z <= 0)


def density_forward(z):
    """The density ``d = mean(z > 0)``: the fraction of cells the expensive conv computes.

    Parameters
    ----------
    z : ndarray, any shape, float32 or float64
        The cheap pre-activation; the gate is non-zero exactly where ``z > 0``.

    Returns
    -------
    d : float (0.0 for an empty ``z``)
    cache : ``z``, for :func:`density_backward`
    """
    check_float_array("z", z)
    return (float(np.count_nonzero(z > 0)) / z.size if z.size else 0.0), z


def density_backward(dd, cache, tau=1.0):
    """``dz`` for an upstream ``dd = dL/dd``: the straight-through surrogate of the step.

    ``d`` is a step function of ``z`` (derivative 0 almost everywhere), so the
    backward uses the derivative of ``mean(sigmoid(z / tau))`` in its place::

        dz = dd * sigmoid'(z / tau) / (tau * z.size)          shape and dtype of z

    A loss that wants less density (``dd > 0``) then lowers ``z`` everywhere, most
    where ``z`` is near 0 (the cells about to switch); one that wants more raises
    it -- also in a dead layer, whose ``z <= 0`` gets no gradient through the gate.
    """
    z = cache
    if isinstance(dd, bool) or not isinstance(dd, (int, float, np.integer, np.floating)):
        raise TypeError(f"dd must be a number (dL/dd), got {type(dd).__name__}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    s = 1.0 / (1.0 + np.exp(-z.astype(np.float64) / tau))  # sigmoid(z / tau)
    return (float(dd) / (tau * max(z.size, 1)) * s * (1.0 - s)).astype(z.dtype)
