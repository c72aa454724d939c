"""The paper's sparsity table, measured where the paper means it: in the LCCL's cheap branch.

The paper reports the fraction of zeros of the cheap branch ``V'`` for three
cheap branches: Conv+ReLU (< 10%, stable), Conv+regularisation+ReLU (5-70%,
unstable), Conv+BN+ReLU (about 30%, stable).  Our protocol
(:func:`sparsity_experiment`): the data set's recipe network with ``kxkxCx1``
LCCLs at ``aft-aft`` and **the paper's layer** (ReLU gate, no density budget),
trained with the recipe; the cheap branch is a biased conv (``cheap_bn=False``),
the same with an L1 penalty on ``V'`` (:class:`lccl_ref.train.GateL1`), or conv +
BN.  Zeros are measured over all LCCL layers, on the training batches (per epoch)
and on the test set (eval mode, after every epoch).
"""

from __future__ import annotations

import numpy as np

STABLE_RANGE = 0.10
STABILITY_RULE = (f"stable if the fraction of zeros over the second half of the epochs "
                  f"stays within a band of {int(100 * STABLE_RANGE)} percentage points "
                  "(max − min), unstable otherwise")


def sparsity_experiment(ds, cheap_bn: bool, l1: float, epochs: int, model_name: str,
                        recipe: dict, kind: str = "kxkxCx1", seed: int = 0,
                        progress: bool = False) -> dict:
    """Train an LCCL net with the paper's layer; the zeros of its cheap branch per epoch.

    Parameters
    ----------
    ds : lccl_ref.data.Dataset
    cheap_bn : bool
        Conv+BN+ReLU (True) or Conv+ReLU with a biased conv (False).
    l1 : float >= 0
        Weight of an L1 penalty ``l1 * sum_l mean(V'_l)`` (Conv+L1+ReLU when > 0).
    epochs, model_name, recipe, kind, seed, progress : the training run

    Returns
    -------
    dict
        ``train_zero_fraction`` and ``test_zero_fraction``: per epoch, ``1 - density``
        averaged over the LCCL layers (training batches, train mode; test set, eval
        mode); ``layers``: each layer's final test zero fraction; ``test_accuracy``;
        and :func:`summarise_zeros` of the training curve.
    """
    from ..models import build_model
    from ..train import GateL1, fit

    model = build_model(model_name, num_classes=int(ds.num_classes),
                        in_channels=int(ds.x_train.shape[1]), lccl=kind, rng=seed,
                        gate="relu", cheap_bn=cheap_bn)
    h = fit(model, ds, epochs, batch_size=recipe["batch_size"], lr=recipe["lr"],
            momentum=recipe["momentum"], weight_decay=recipe["weight_decay"],
            schedule=recipe["schedule"], seed=seed, progress=progress,
            budget=GateL1(l1) if l1 > 0 else None)
    train = [1.0 - float(np.mean(list(e["train_density"].values()))) for e in h.epochs]
    test = [1.0 - float(np.mean(list(e["lccl_density"].values()))) for e in h.epochs]
    out = summarise_zeros(train, h.last["test_acc"])
    out.update(train_zero_fraction=train, test_zero_fraction=test, cheap_bn=bool(cheap_bn),
               l1=float(l1), layers={k: 1.0 - v for k, v in h.last["lccl_density"].items()})
    return out


def summarise_zeros(zero_fraction, test_accuracy: float) -> dict:
    """Over the second half of the epochs: ``mean``, ``min``, ``max``, ``std``, ``stable``
    (:data:`STABILITY_RULE`); ``final``: the last epoch's value."""
    z = np.asarray(zero_fraction, dtype=np.float64)
    if z.size == 0:
        raise ValueError("zero_fraction must hold at least one value")
    half = z[len(z) // 2:]
    return {"mean": float(half.mean()), "min": float(half.min()), "max": float(half.max()),
            "std": float(half.std()), "final": float(z[-1]),
            "stable": bool(half.max() - half.min() < STABLE_RANGE),
            "test_accuracy": float(test_accuracy)}
