"""Learning-rate schedules: constant, step (per epoch) and cosine (per iteration).

A schedule is a function of the *progress* ``t = epoch + i / iters_per_epoch``
(a float, in epochs, 0 at the start of training), so one call signature serves
both granularities:

- ``"step"`` changes only at epoch boundaries: ``lr * gamma**k`` where ``k``
  counts the milestones ``<= floor(t)``. Default milestones are 50% and 75% of
  the epochs (He et al.'s CIFAR recipe, scaled to the run's length), gamma 0.1.
- ``"cosine"`` is evaluated at every iteration (SGDR without restarts, no
  warm-up): ``lr * (1 + cos(pi * t / epochs)) / 2``, from ``lr`` down to 0
  at the end of the last iteration.
- ``"constant"`` is ``lr`` throughout.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "step", "constant")


def default_milestones(epochs: int) -> tuple[int, ...]:
    """Epochs at which ``"step"`` divides the rate by 10: 50% and 75% of ``epochs``."""
    return tuple(sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)}))


def learning_rate(schedule: str, lr: float, t: float, epochs: int,
                  milestones=None, gamma: float = 0.1) -> float:
    """Learning rate at progress ``t`` (in epochs) of a run of ``epochs`` epochs.

    Parameters
    ----------
    schedule : {"cosine", "step", "constant"}
    lr : float
        The base (initial) learning rate.
    t : float
        ``epoch + i / iters_per_epoch``, with ``0 <= t <= epochs``.
    epochs : int
        Length of the run; the cosine reaches 0 at ``t = epochs``.
    milestones : sequence of int, optional
        For ``"step"``; default :func:`default_milestones`.
    gamma : float
        For ``"step"``: the factor applied at each milestone.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not 0 <= t <= epochs:
        raise ValueError(f"t must lie in [0, {epochs}], got {t!r}")
    if schedule == "constant":
        return float(lr)
    if schedule == "cosine":
        return float(lr) * 0.5 * (1.0 + math.cos(math.pi * t / epochs))
    ms = default_milestones(epochs) if milestones is None else tuple(milestones)
    k = sum(1 for m in ms if math.floor(t) >= m)
    return float(lr) * gamma**k
