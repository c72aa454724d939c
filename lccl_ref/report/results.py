"""``results.json``: the plain-JSON results of ``lccl-ref reproduce``, their schema and checks.

:func:`check_results` says what the report reads (its docstring is the schema);
:func:`jsonable` turns what the experiments return into plain JSON types.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

_REQUIRED = {
    "meta": ("dataset", "model", "train_size", "test_size", "epochs", "batch_size", "seed",
             "mode", "threads", "cpu_count", "platform", "elapsed_s"),
    "formula": ("layer", "X", "Y", "C", "T", "k", "batch", "rows"),
    "sparsity": ("model", "kind", "epochs", "stability_rule", "variants"),
    "runs": (),
}


def check_results(results) -> None:
    """Check that ``results`` has the sections and keys the report reads.

    The schema of ``results`` (keys the renderer reads; extra keys are kept)::

        meta      dataset, source, model, train_size, test_size, epochs, batch_size,
                  seed, mode, threads, cpu_count, platform, elapsed_s
        formula   layer, X, Y, C, T, k, batch, rows: [{structure, r, macs_closed,
                  macs_counted, speedup_closed, speedup_counted}]
        sparsity  model, kind, epochs, stability_rule,
                  variants: {label: {train_zero_fraction: [...], test_zero_fraction: [...],
                                     cheap_bn, l1, mean, min, max, std, final, stable,
                                     test_accuracy, layers}}
        runs      {run_name: {lccl, placement, settings, gate, budget, test_accuracy,
                              test_error_pct, macs_dense, macs_lccl, speedup,
                              speedup_mask (optional), mean_density, min_density,
                              train_seconds,
                              layers: [{name, density, macs_dense, macs_lccl}]}}
        curve     [{target, test_accuracy, mean_density, min_density, speedup,
                    speedup_mask (optional), settings}]
        bench     run, threads, repeats, batches: [{batch, dense_ms, sparse_ms, macs_dense,
                  macs_sparse, theoretical, real, real_over_theoretical,
                  layers: [{name, theoretical, real}],
                  engine: None | {dense_ms, sparse_ms, theoretical, real,
                                  real_over_theoretical, real_over_theoretical_ops,
                                  real_over_theoretical_alternating, layers}}],
                  resnet18 (optional): {input_size, density, batch, macs_dense, macs_sparse,
                  dense_ms, sparse_ms, theoretical, real, real_over_theoretical}

    Densities, speed-ups and zero fractions are fractions in [0, 1]; the report prints
    them as percentages.
    """
    if not isinstance(results, dict):
        raise TypeError(f"results must be a dict, got {type(results).__name__}")
    for section, keys in _REQUIRED.items():
        if section not in results:
            raise ValueError(f"results is missing the section {section!r}; it has "
                             f"{sorted(results)}")
        missing = [k for k in keys if k not in results[section]]
        if missing:
            raise ValueError(f"results[{section!r}] is missing {missing}")


def jsonable(obj):
    """Tuples to lists, numpy values to Python ones, NaN/inf to None (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json(obj, path) -> Path:
    """Write ``obj`` (through :func:`jsonable`) to ``path`` as indented, key-sorted JSON,
    making its folder; returns the path.  The benchmark scripts' results files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(obj), indent=1, sort_keys=True))
    return path
