"""Stochastic gradient descent with momentum and decoupled-from-BN weight decay.

The update follows PyTorch's ``torch.optim.SGD`` (dampening 0, no Nesterov),
so a learning-rate recipe written for PyTorch means the same thing here::

    g = grad + weight_decay * p        # only for parameters that decay
    v = momentum * v + g               # v starts at 0, so the first v is g
    p = p - lr * v

Weight decay applies to convolution and linear *weights* only: never to a
:class:`~lccl_ref.nn.Parameter` created with ``decay=False`` (BatchNorm's
gamma and beta) and never to a bias, as is usual for ResNets.
"""

from __future__ import annotations

import numpy as np

from ..nn import Module


def _non_negative(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def decays(name: str, param) -> bool:
    """Whether weight decay applies to the parameter ``name``: not BN, not a bias."""
    return bool(param.decay) and name.rsplit(".", 1)[-1] != "bias"


class SGD:
    """SGD with momentum over every parameter of ``model``.

    Parameters
    ----------
    model : Module
        Its ``named_parameters()`` are read once here; the optimiser keeps the
        :class:`Parameter` objects and reads ``p.data`` / ``p.grad`` at each
        step, so ``model.load_state_dict`` (which replaces ``p.data``) is safe.
    lr : float
        Default learning rate for :meth:`step` (schedules pass their own).
    momentum : float, in [0, 1)
    weight_decay : float, >= 0
        L2 coefficient added to the gradient of decaying parameters (see
        :func:`decays`).

    Attributes
    ----------
    momentum_buffers : dict[str, ndarray]
        One velocity ``v`` per parameter name, same shape and dtype, zero at
        the start; saved in checkpoints by :meth:`state_dict`.
    """

    def __init__(self, model: Module, lr: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 5e-4):
        if not isinstance(model, Module):
            raise TypeError(f"model must be an lccl_ref.nn.Module, got {type(model).__name__}")
        self.lr = _non_negative("lr", lr)
        self.momentum = _non_negative("momentum", momentum)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {momentum!r}")
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.params = list(model.named_parameters())
        if not self.params:
            raise ValueError("model has no parameters to optimise")
        self.momentum_buffers = {n: np.zeros_like(p.data) for n, p in self.params}

    def step(self, lr: float | None = None) -> None:
        """Apply one update from the gradients currently in ``p.grad``."""
        lr = self.lr if lr is None else _non_negative("lr", lr)
        for name, p in self.params:
            dt = p.data.dtype.type  # keep float32 arithmetic in float32
            g = p.grad
            if self.weight_decay and decays(name, p):
                g = g + dt(self.weight_decay) * p.data
            v = self.momentum_buffers[name]
            v *= dt(self.momentum)
            v += g
            p.data -= dt(lr) * v

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{parameter name: momentum buffer copy}``."""
        return {n: v.copy() for n, v in self.momentum_buffers.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore momentum buffers; names and shapes must match the model's parameters."""
        own = set(self.momentum_buffers)
        if set(state) != own:
            raise ValueError(
                f"optimiser state does not match the model: missing "
                f"{sorted(own - set(state))[:5]}, unexpected {sorted(set(state) - own)[:5]}")
        for n, p in self.params:
            v = np.asarray(state[n])
            if v.shape != p.data.shape:
                raise ValueError(
                    f"momentum buffer {n!r} has shape {v.shape}, expected {p.data.shape}")
            self.momentum_buffers[n] = v.astype(p.data.dtype, copy=True)
