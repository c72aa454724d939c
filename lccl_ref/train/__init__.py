"""Training: SGD with momentum, learning-rate schedules, the loop, checkpoints.

- :mod:`.optim`       :class:`SGD` (PyTorch's update; no decay on BN parameters or biases)
- :mod:`.schedules`   :func:`learning_rate` for ``"cosine"`` / ``"step"`` / ``"constant"``
- :mod:`.loop`        :func:`fit`, :class:`History`; :mod:`.evaluate` :func:`evaluate`
- :mod:`.checkpoint`  :func:`save_checkpoint`, :func:`load_checkpoint`,
                      :func:`model_from_checkpoint`
- :mod:`.recipes`     :data:`RECIPES`, the default settings per dataset used by ``lccl-ref train``
- :mod:`.budget`      :class:`DensityBudget`, training LCCL layers toward a chosen density
"""

from .budget import DensityBudget, GateL1
from .checkpoint import (
    Checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .evaluate import evaluate, take_train_macs
from .loop import History, fit
from .optim import SGD, decays
from .recipes import RECIPES, recipe_for
from .schedules import SCHEDULES, default_milestones, learning_rate

__all__ = [
    "RECIPES",
    "SCHEDULES",
    "SGD",
    "Checkpoint",
    "DensityBudget",
    "GateL1",
    "History",
    "decays",
    "default_milestones",
    "evaluate",
    "fit",
    "learning_rate",
    "load_checkpoint",
    "model_from_checkpoint",
    "recipe_for",
    "restore_rng",
    "take_train_macs",
    "save_checkpoint",
]
