"""``lccl-ref reproduce``: train what the paper's tables need, measure, write the report.

:func:`run_reproduce` does, on one data set, in this order:

1. **sparsity**: the cheap branch's zeros for Conv+ReLU, Conv+L1+ReLU and
   Conv+BN+ReLU in an LCCL net with the paper's layer (:mod:`.sparsity`);
2. **runs**: the plain net and its LCCL variants (:data:`.config.RUNS`), the
   same recipe, seed and minibatches for all, evaluated on the sparse path
   (:func:`.runs.train_run`);
3. **curve**: the ``kxkxCx1`` network trained toward several densities;
4. **formula**: one layer put into the paper's closed forms (:mod:`.formula`);
5. **bench**: dense vs sparse eval time, one thread (:mod:`.timing`);

and :func:`lccl_ref.report.write_report` turns the results into ``report.md``,
``results.json`` and the figures. Modes (:data:`.config.MODES`): ``quick``
finishes in about a minute on 2 cores (CI runs it); ``full`` follows the data
set's recipe (mnist5k: 16 networks x 10 epochs, about 15 minutes on 2 cores).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..bench.threads import environment
from .config import BENCH_RUN, CURVE_KIND, RUNS, SPARSITY_VARIANTS, ReproduceConfig
from .formula import formula_table, mask_examples
from .runs import curve_point, train_run
from .sparsity import STABILITY_RULE, sparsity_experiment
from .timing import run_bench, run_bench_resnet18


def _say(cfg, text):
    if cfg.progress:
        print(f"[reproduce] {text}", flush=True)


def run_reproduce(cfg: ReproduceConfig) -> dict:
    """Run every experiment of the report and write it to ``cfg.out``; return the results.

    Raises
    ------
    ValueError
        Unknown data set, model, mode or run name.
    """
    from .. import __version__
    from ..data import load_dataset
    from ..models import build_model
    from ..report import write_report
    from ..train import recipe_for

    t_start = time.perf_counter()
    s = cfg.settings()
    recipe = recipe_for(cfg.dataset)
    model_name = cfg.model or recipe["model"]
    known = {r[0] for r in RUNS}
    bad = [r for r in cfg.runs if r not in known]
    if bad:
        raise ValueError(f"unknown run(s) {bad}; choose from {sorted(known)}")
    build_model(model_name)  # fails early, with the model registry's message, on a bad name
    prepare_out(cfg.out)  # an unusable --out fails now, not after the training
    epochs = s["epochs"] or recipe["epochs"]
    recipe["batch_size"] = s["batch_size"] or recipe["batch_size"]
    ds = load_dataset(cfg.dataset, data_dir=cfg.data_dir, subset=s["subset"],
                      test_subset=s["test_subset"], seed=cfg.seed)
    meta = {"dataset": cfg.dataset, "source": str(getattr(ds, "source", "")),
            "model": model_name, "train_size": int(len(ds.x_train)),
            "test_size": int(len(ds.x_test)), "epochs": int(epochs),
            "batch_size": int(recipe["batch_size"]), "lr": recipe["lr"], "seed": cfg.seed,
            "mode": cfg.mode, "lccl_recipe": recipe["lccl"], **environment(),
            "lccl_ref": __version__,
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    phases, t_phase = {}, time.perf_counter()

    # 1. sparsity of the cheap branch
    sp_ds = ds
    if s["sparsity_subset"] is not None and s["sparsity_subset"] < len(ds.x_train):
        sp_ds = take(ds, s["sparsity_subset"], cfg.seed)
    sp_epochs = s["sparsity_epochs"] or epochs
    variants = {}
    for label, cheap_bn, l1 in SPARSITY_VARIANTS:
        _say(cfg, f"sparsity: {label} ({sp_epochs} epoch(s))")
        variants[label] = sparsity_experiment(sp_ds, cheap_bn, l1, sp_epochs, model_name,
                                              recipe, CURVE_KIND, cfg.seed, cfg.progress)
    sparsity = {"model": model_name, "kind": CURVE_KIND, "epochs": sp_epochs,
                "train_size": int(len(sp_ds.x_train)), "stability_rule": STABILITY_RULE,
                "variants": variants}
    phases["sparsity"] = time.perf_counter() - t_phase

    # 2. the plain net and the LCCL networks, same recipe and seed
    runs, models = {}, {}
    for name, kind, placement, settings in RUNS:
        if name in cfg.runs:
            _say(cfg, f"training {name} ({model_name}, {epochs} epoch(s))")
            models[name], runs[name] = train_run(kind, placement, settings, ds, model_name,
                                                 recipe, epochs, cfg.seed, cfg.progress)

    # 3. accuracy vs density: the recipe's network toward other targets
    curve = []
    if cfg.curve:
        for target in s["curve_targets"]:
            _say(cfg, f"training {CURVE_KIND}/aft-aft toward density {target}")
            _, run = train_run(CURVE_KIND, "aft-aft", "recipe", ds, model_name, recipe, epochs,
                               cfg.seed, cfg.progress, target=target)
            curve.append(curve_point(run, target))
        if BENCH_RUN in runs:
            budget = runs[BENCH_RUN]["budget"]
            curve.append(curve_point(runs[BENCH_RUN], budget and budget["target"]))
        curve.sort(key=lambda p: p["mean_density"])
    phases["training"] = time.perf_counter() - t_phase - phases["sparsity"]

    # 4. the formula table on one layer
    cheap = {k: models[f"{k}/aft-aft"] for k in ("1x1xCxT", "kxkxCx1", "1x1xCx1")
             if f"{k}/aft-aft" in models}
    results = {"config": asdict(cfg), "meta": meta, "sparsity": sparsity, "runs": runs,
               "curve": curve}
    # Test images in a fixed random order (the balanced subsets come sorted by class).
    x_shuffled = ds.x_test[np.random.default_rng(cfg.seed).permutation(len(ds.x_test))]
    results["formula"] = (formula_table(cheap, x_shuffled[:s["formula_batch"]]) if cheap
                          else no_formula())

    # 5. theoretical vs real speed-up
    t_bench = time.perf_counter()
    if BENCH_RUN in models:
        results["bench"] = run_bench(models[BENCH_RUN], x_shuffled, s["bench_batches"],
                                     s["bench_repeats"])
        results["bench"]["run"] = BENCH_RUN
        _say(cfg, f"ResNet-18 layers at {s['resnet18_size']}x{s['resnet18_size']}")
        results["bench"]["resnet18"] = run_bench_resnet18(
            runs[BENCH_RUN]["mean_density"], s["resnet18_size"], s["bench_repeats"], cfg.seed)
    phases["bench"] = time.perf_counter() - t_bench
    examples = mask_examples(cheap, x_shuffled[:4]) if cheap else None
    meta["phase_seconds"] = phases
    meta["elapsed_s"] = time.perf_counter() - t_start
    write_report(results, cfg.out, mask_examples=examples)
    return results


def prepare_out(out) -> None:
    """Create the output folder, or say in a ValueError why it cannot be used."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {str(out)!r}: cannot create the folder ({e.strerror})") from e
    if not os.access(path, os.W_OK):
        raise ValueError(f"--out {str(out)!r}: the folder is not writable")


def no_formula() -> dict:
    return {"layer": "n/a (no LCCL run)", "X": 0, "Y": 0, "C": 0, "T": 0, "k": 0, "batch": 0,
            "rows": []}


def take(ds, n, seed):
    """``ds`` with a class-balanced random subset of ``n`` of its training images."""
    from ..data import balanced_subset

    idx = balanced_subset(ds.y_train, n, seed)
    return dataclasses.replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx])
