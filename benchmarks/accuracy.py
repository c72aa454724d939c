"""Plain vs LCCL accuracy at the same budget, over seeds: the figures of issue 16.

For each seed, trains the plain network and one LCCL network per cheap kind with
the data set's recipe (``lccl_ref.train.RECIPES``; the LCCL settings under
``"lccl"``), the same initialisation seed and minibatches for all, through
``lccl_ref.reproduce.train_run`` -- what ``lccl-ref train --lccl K --seed S``
runs -- and writes every run plus the mean and spread per network:

    python benchmarks/accuracy.py [--dataset mnist5k] [--epochs E] [--seeds 0,1,2]
                                  [--kinds kxkxCx1,1x1xCx1,1x1xCxT] [--target R]
                                  [--paper] [--out FILE]

``--paper`` adds the paper's layer (ReLU gate, no budget); ``--target`` trains the
LCCL networks toward another density. One thread per process: run several
processes side by side (one per seed) on a multi-core machine.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # before NumPy and Numba start their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from lccl_ref.data import load_dataset  # noqa: E402
from lccl_ref.reproduce import train_run  # noqa: E402
from lccl_ref.train import recipe_for  # noqa: E402


def summary(runs):
    """Mean, sd and per-seed values of accuracy, density and speed-up per network."""
    out = {}
    for name in dict.fromkeys(r["network"] for r in runs):
        rs = [r for r in runs if r["network"] == name]
        acc = np.array([r["test_accuracy"] for r in rs])
        row = {"seeds": [r["seed"] for r in rs], "accuracy": acc.tolist(),
               "accuracy_mean": float(acc.mean()), "accuracy_sd": float(acc.std()),
               "speedup_mean": float(np.mean([r["speedup"] for r in rs]))}
        if rs[0]["mean_density"] is not None:
            row["density_mean"] = float(np.mean([r["mean_density"] for r in rs]))
            row["min_density"] = float(min(r["min_density"] for r in rs))
        out[name] = row
    plain = out.get("plain")
    for row in out.values():
        if plain:
            row["delta_vs_plain_pt"] = 100 * (row["accuracy_mean"] - plain["accuracy_mean"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--model")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--kinds", default="kxkxCx1,1x1xCx1,1x1xCxT")
    ap.add_argument("--target", type=float, help="density target of the LCCL networks")
    ap.add_argument("--paper", action="store_true", help="also the paper's layer (kxkxCx1)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "accuracy.json"))
    args = ap.parse_args()
    recipe = recipe_for(args.dataset)
    epochs = args.epochs or recipe["epochs"]
    model = args.model or recipe["model"]
    nets = [("plain", "none", None)] + [(k, k, "recipe") for k in args.kinds.split(",") if k]
    if args.paper:
        nets.append(("kxkxCx1, paper's layer", "kxkxCx1", "paper"))
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        ds = load_dataset(args.dataset, seed=seed)
        for name, kind, settings in nets:
            t0 = time.perf_counter()
            _, r = train_run(kind, "aft-aft", settings, ds, model, recipe, epochs, seed, False,
                             target=args.target if settings == "recipe" else None)
            runs.append({"network": name, "seed": seed, "seconds": time.perf_counter() - t0,
                         **{k: r[k] for k in ("lccl", "settings", "gate", "budget",
                                              "test_accuracy", "mean_density", "min_density",
                                              "speedup", "macs_dense", "macs_lccl")}})
            print(f"seed {seed} {name:26s} accuracy {100 * r['test_accuracy']:5.1f}%  "
                  f"density {r['mean_density'] or 1:.2f}  speed-up {100 * r['speedup']:5.1f}%",
                  flush=True)
    out = {"dataset": args.dataset, "model": model, "epochs": epochs,
           "lccl_recipe": recipe["lccl"], "threads": int(os.environ["NUMBA_NUM_THREADS"]),
           "runs": runs, "summary": summary(runs)}
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    for name, row in out["summary"].items():
        print(f"{name:26s} {100 * row['accuracy_mean']:5.2f} ± {100 * row['accuracy_sd']:.2f}"
              f"  Δ {row.get('delta_vs_plain_pt', 0):+.2f} pt  density "
              f"{row.get('density_mean', 1):.2f}")


if __name__ == "__main__":
    main()
