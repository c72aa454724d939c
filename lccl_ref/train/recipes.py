"""Default training settings per dataset: what ``lccl-ref train`` uses when not told.

``mnist5k`` (4,000 training / 1,000 test digits) with the small
``mnist-resnet``: batch 64, lr 0.1, cosine over 10 epochs passes 97% test
accuracy at epoch 5 and ends near 98% (about 40 s / 80 s on 2 idle cores;
``benchmarks/train_mnist5k.py`` measures it). A shorter cosine (6 epochs,
batch 32, lr 0.05) stopped at 96.1%. The CIFAR settings are the usual ResNet
recipe (SGD, momentum 0.9, weight decay 5e-4, lr 0.1, cosine), shortened.
"""

from __future__ import annotations

# LCCL layers (``lccl-ref train --lccl K``): the bounded gate, started open, and a
# density budget that ramps from 1 to 0.6 over the first 30% of training
# (docs/results.md, "LCCL accuracy", gives the runs behind these choices).
_LCCL = {"gate": "clip", "gate_init": (1.0, 1.0),
         "budget": {"target": 0.6, "weight": 1.0, "scope": "layer", "ramp": 0.3, "floor": 0.05}}

_MNIST_LIKE = {"model": "mnist-resnet", "epochs": 10, "batch_size": 64, "lr": 0.1,
               "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}
_CIFAR = {"model": "resnet20", "epochs": 30, "batch_size": 128, "lr": 0.1,
          "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}

RECIPES = {
    "mnist5k": dict(_MNIST_LIKE),
    "mnist": {**_MNIST_LIKE, "epochs": 3, "batch_size": 128},
    "fashion-mnist": {**_MNIST_LIKE, "epochs": 10, "batch_size": 128},
    "cifar10": dict(_CIFAR),
    "cifar100": dict(_CIFAR),
}


def recipe_for(dataset: str) -> dict:
    """A copy of the default settings for ``dataset`` (one of ``RECIPES``), with the
    LCCL settings under ``"lccl"``: ``gate``, ``gate_init`` and ``budget`` (the keyword
    arguments of :class:`~lccl_ref.train.DensityBudget`, or None for no budget)."""
    if dataset not in RECIPES:
        raise ValueError(f"dataset must be one of {tuple(RECIPES)}, got {dataset!r}")
    lccl = dict(RECIPES[dataset].get("lccl", _LCCL))
    lccl["budget"] = None if lccl.get("budget") is None else dict(lccl["budget"])
    return {**RECIPES[dataset], "lccl": lccl}
