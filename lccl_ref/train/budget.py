"""The density budget: train LCCL layers toward a density the user chooses
(and :class:`GateL1`, the paper's L1 alternative, for comparison).

Without it, a layer's density is whatever training makes of it (and may reach 0,
a dead layer). With it, the loss gets a penalty on the densities measured on each
batch, ``d_l = mean(z_l > 0)`` (:func:`lccl_ref.functional.density_forward`)::

    "network":  L_b = weight * n * (d_bar - rho)^2,   d_bar = sum_l M_l d_l / sum_l M_l
    "layer":    L_b = weight * sum_l (d_l - rho)^2
    both:       + floor_weight * sum_l max(0, floor - d_l)^2          (no dead layers)

``M_l`` is layer l's dense MACs and ``n`` the number of layers, so that
``d_bar`` is the fraction of the LCCL layers' dense work that is done, and a
network budget pulls on a layer as hard as a layer budget does. The target
``rho`` ramps linearly from 1 to ``target`` over the first ``ramp`` of training:
the net starts as a (nearly) plain one and gives up work gradually.
:meth:`DensityBudget.apply` writes ``dL_b/dd_l`` into each layer's
``density_grad``; the layer's backward takes it to ``z`` (docs/derivations.md,
section 9).
"""

from __future__ import annotations

import numpy as np

SCOPES = ("network", "layer")
#: A layer whose density falls below this computes almost nothing (a dead gate): ``fit``
#: reports such layers in each epoch's record (``low_density``), ``lccl-ref train`` warns,
#: and a budget's ``floor`` (by default this value) keeps trained layers above it.
LOW_DENSITY = 0.05


def _number(name, v, lo, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    v = float(v)
    if not (v >= lo and (hi is None or v <= hi)):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {bound}, got {v!r}")
    return v


class DensityBudget:
    """A penalty that trains the LCCL layers of a model toward density ``target``.

    Parameters
    ----------
    target : float in [0, 1]
        The density ``rho`` at the end of the ramp.
    weight : float >= 0
        Strength of the penalty (1 holds the density within a few points of the target).
    scope : {"network", "layer"}
        One MAC-weighted density for the network (layers may differ), or every layer
        at the target.
    ramp : float in [0, 1]
        Fraction of training over which ``rho`` goes from 1 to ``target`` (0: from the start).
    floor : float in [0, 1]
        No layer may fall below this density without a penalty (``floor_weight``).
    floor_weight : float >= 0
    """

    def __init__(self, target, weight=1.0, scope="network", ramp=0.5, floor=LOW_DENSITY,
                 floor_weight=4.0):
        self.target = _number("target", target, 0.0, 1.0)
        self.weight = _number("weight", weight, 0.0)
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.scope = scope
        self.ramp = _number("ramp", ramp, 0.0, 1.0)
        self.floor = _number("floor", floor, 0.0, 1.0)
        self.floor_weight = _number("floor_weight", floor_weight, 0.0)

    def config(self) -> dict:
        """The settings as a JSON-able dict (``DensityBudget(**config)`` rebuilds it)."""
        return {"target": self.target, "weight": self.weight, "scope": self.scope,
                "ramp": self.ramp, "floor": self.floor, "floor_weight": self.floor_weight}

    def target_at(self, progress: float) -> float:
        """``rho`` at ``progress`` in [0, 1] (the fraction of training done)."""
        if self.ramp == 0 or progress >= self.ramp:
            return self.target
        return 1.0 - (1.0 - self.target) * progress / self.ramp

    def loss(self, densities, macs, progress):
        """``(L_b, dL_b/dd)`` for the measured densities ``d_l`` and dense MACs ``M_l``.

        Parameters
        ----------
        densities, macs : sequences of float, one entry per layer
        progress : float in [0, 1]

        Returns
        -------
        loss : float
        grad : ndarray (n,), ``dL_b / dd_l``
        """
        d = np.asarray(densities, dtype=np.float64)
        m = np.asarray(macs, dtype=np.float64)
        rho = self.target_at(progress)
        if self.scope == "network":
            share = m / m.sum() if m.sum() > 0 else np.full(len(d), 1.0 / max(len(d), 1))
            gap = float(share @ d) - rho
            loss = self.weight * len(d) * gap * gap
            grad = 2.0 * self.weight * len(d) * gap * share
        else:
            gap = d - rho
            loss = self.weight * float(gap @ gap)
            grad = 2.0 * self.weight * gap
        short = np.minimum(d - self.floor, 0.0)  # < 0 where a layer is below the floor
        loss += self.floor_weight * float(short @ short)
        grad += 2.0 * self.floor_weight * short
        return loss, grad

    def apply(self, layers, progress) -> dict:
        """After a training forward: the penalty of ``layers`` (LCCLConv2d modules), with
        its gradient written into each layer's ``density_grad`` for the backward.

        Returns ``{"loss", "target", "density"}``, ``density`` the MAC-weighted mean.
        """
        if not layers:
            return {"loss": 0.0, "target": self.target_at(progress), "density": 1.0}
        d = [layer.last_train_density for layer in layers]
        if any(v is None for v in d):
            raise RuntimeError("DensityBudget.apply needs a training-mode forward of every layer")
        m = [layer.last_train_macs for layer in layers]
        loss, grad = self.loss(d, m, progress)
        for layer, g in zip(layers, grad):
            layer.density_grad = float(g)
        mean = float(np.dot(m, d) / np.sum(m)) if np.sum(m) > 0 else float(np.mean(d))
        return {"loss": loss, "target": self.target_at(progress), "density": mean}

    def __repr__(self):
        return "DensityBudget(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"


class GateL1:
    """An L1 penalty on the gate, ``L = weight * sum_l mean(V'_l)`` (``V' >= 0``).

    The paper's "Conv + regularisation + ReLU" cheap branch: it pushes every gate
    value toward 0, so the density falls by an amount that depends on ``weight``,
    the data and the moment of training (notebook 02).  Used like
    :class:`DensityBudget` (``fit(..., budget=GateL1(1e-2))``).
    """

    def __init__(self, weight):
        self.weight = _number("weight", weight, 0.0)

    def config(self) -> dict:
        return {"l1": self.weight}

    def apply(self, layers, progress) -> dict:
        """After a training forward: the penalty, with ``gate_mean_grad`` set in each layer."""
        means = [layer.last_gate_mean for layer in layers]
        if any(v is None for v in means):
            raise RuntimeError("GateL1.apply needs a training-mode forward of every layer")
        for layer in layers:
            layer.gate_mean_grad = self.weight
        dens = [layer.last_train_density for layer in layers]
        return {"loss": self.weight * float(np.sum(means)), "target": None,
                "density": float(np.mean(dens)) if dens else 1.0}

    def __repr__(self):
        return f"GateL1(weight={self.weight!r})"
