"""Train one network of the report, plain or LCCL, and describe it: accuracy, densities, MACs.

:func:`train_run` is what every row of the accuracy table and every point of
the density curve comes from: the same data, seed, minibatches and training
recipe for the plain net and its LCCL variants, so their accuracies compare.
"""

from __future__ import annotations

import time

import numpy as np


def lccl_settings(recipe: dict, settings: str | None, target=None) -> tuple[dict, object]:
    """``(build_model keyword arguments, budget)`` for an LCCL run.

    ``settings`` "recipe": the recipe's gate, gate initialisation and density budget
    (``target`` replaces the budget's target); "paper": the paper's layer (ReLU gate,
    cheap BN at gamma = 1, beta = 0, no budget); None: a plain net.
    """
    from ..train import DensityBudget

    if settings is None:
        return {}, None
    if settings == "paper":
        return {"gate": "relu", "gate_init": None}, None
    if settings != "recipe":
        raise ValueError(f"settings must be 'recipe', 'paper' or None, got {settings!r}")
    lccl = recipe["lccl"]
    budget = dict(lccl["budget"]) if lccl["budget"] else None
    if target is not None:
        budget = {**(budget or {}), "target": float(target)}
    return ({"gate": lccl["gate"], "gate_init": lccl["gate_init"]},
            None if budget is None else DensityBudget(**budget))


def train_run(kind, placement, settings, ds, model_name, recipe, epochs, seed, progress,
              target=None):
    """Train ``model_name`` with cheap kind ``kind`` ("none": plain) on ``ds``; return
    ``(model, run)``, ``run`` the row of ``results["runs"]`` (see :mod:`lccl_ref.report`)."""
    from ..models import build_model, lccl_layers
    from ..train import evaluate, fit

    options, budget = lccl_settings(recipe, settings if kind != "none" else None, target)
    model = build_model(model_name, num_classes=int(ds.num_classes),
                        in_channels=int(ds.x_train.shape[1]), lccl=kind, placement=placement,
                        rng=seed, **options)
    t0 = time.perf_counter()
    history = fit(model, ds, epochs, batch_size=recipe["batch_size"], lr=recipe["lr"],
                  momentum=recipe["momentum"], weight_decay=recipe["weight_decay"],
                  schedule=recipe["schedule"], seed=seed, progress=progress, budget=budget)
    train_s = time.perf_counter() - t0
    ev = evaluate(model, ds.x_test, ds.y_test)
    dens = list(ev["lccl"].values())
    run = {
        "lccl": kind, "placement": placement, "settings": settings if kind != "none" else None,
        "gate": options.get("gate"), "gate_init": options.get("gate_init"),
        "budget": None if budget is None else budget.config(),
        "test_accuracy": ev["accuracy"], "test_error_pct": 100.0 * (1.0 - ev["accuracy"]),
        "test_loss": ev["loss"], "macs_dense": ev["macs"]["dense"],
        "macs_lccl": ev["macs"]["executed"], "speedup": ev["macs"]["speedup"],
        "speedup_mask": ev["macs"]["speedup_mask"],
        "mean_density": float(np.mean(dens)) if dens else None,
        "min_density": float(np.min(dens)) if dens else None,
        "train_seconds": train_s, "layers": layer_rows(model, ds, ev["lccl"]),
        "lccl_layer_names": [n for n, _ in lccl_layers(model)],
        "history": [{k: rec[k] for k in ("epoch", "lr", "train_loss", "train_acc", "test_loss",
                                         "test_acc", "time_s")} for rec in history.epochs],
    }
    return model, run


def layer_rows(model, ds, density: dict) -> list[dict]:
    """Per LCCL layer: density (mean over the test set) and MACs per image (flops table)."""
    if not density:
        return []
    from ..flops import mac_table

    table = mac_table(model, input_shape=ds.x_train.shape[1:], density=density)
    by_name = {r["name"]: r for r in table["rows"]}
    rows = []
    for name, d in density.items():
        exp, cheap = by_name[f"{name}.conv"], by_name[f"{name}.cheap_conv"]
        rows.append({"name": name, "density": float(d), "macs_dense": exp["macs_dense"],
                     "macs_lccl": float(exp["macs_lccl"] + cheap["macs_lccl"])})
    return rows


def curve_point(run: dict, target) -> dict:
    """One point of the accuracy-vs-density curve from a run row."""
    return {"target": None if target is None else float(target),
            "test_accuracy": run["test_accuracy"], "mean_density": run["mean_density"],
            "min_density": run["min_density"], "speedup": run["speedup"],
            "speedup_mask": run.get("speedup_mask", run["speedup"]),
            "settings": run["settings"]}
