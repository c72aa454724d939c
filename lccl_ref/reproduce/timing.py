"""Dense vs sparse eval time of a trained network, one thread: the report's real speed-ups.

:func:`run_bench` times the plain twin against the LCCL network on the teaching path
(the modules' own eval forward), on the fast path (the same modules accelerated) and
with the engine (:mod:`lccl_ref.bench`); :func:`run_bench_resnet18` times
ResNet-18's ImageNet layers at our network's density, on the fast path where it is
available.  Every row says which path made it.
"""

from __future__ import annotations

import numpy as np

from ..bench import bench_network, bench_resnet18, one_thread
from ..bench.threads import load_average
from ..bench.timing import fast_path


def run_bench(model, x_test, batches, repeats) -> dict:
    """The ``bench`` section of the results: per batch size the network's MACs per image
    (plain network vs LCCL as executed), median times in ms of the plain and of the
    sparse LCCL network, theoretical and real speed-ups (top level: the teaching path;
    ``fast``: the fast modules; ``engine``: the engine), and the same per layer."""
    out = {"threads": 1, "repeats": int(repeats), "load_average": load_average(),
           "batches": []}
    for b in batches:
        x = np.asarray(x_test[:b], model.dtype)
        with one_thread():
            res = bench_network(model, x, repeats=repeats)
        net, n = res["network"], len(x)
        teach, fast = res["paths"]["teaching"], res["paths"].get("fast")
        out["batches"].append({
            "batch": n, "path": "teaching", "macs_dense": net["macs_dense"] / n,
            "macs_sparse": net["macs_lccl"] / n, "theoretical": net["theoretical"],
            "mean_density": net["mean_density"], **_times(teach, net["theoretical"]),
            "dense_lccl_ms": 1e3 * teach["t_dense_lccl"],
            "layers": [{"name": r["name"], "density": r["density"],
                        "theoretical": r["theoretical"], "real": r["real"],
                        "plain_ms": 1e3 * r["t_plain"], "sparse_ms": 1e3 * r["t_sparse"]}
                       for r in res["layers"]],
            "fast": None if fast is None else _times(fast, net["theoretical"]),
            "engine": _engine_row(res.get("engine")),
            "engine_skipped": (res.get("engine") or {}).get("skipped"),
        })
    return out


def _times(p, theoretical) -> dict:
    return {"dense_ms": 1e3 * p["t_plain"], "sparse_ms": 1e3 * p["t_sparse"],
            "theoretical": theoretical, "real": p["real"], "real_over_theoretical": p["ratio"]}


def _engine_row(e):
    """The engine's figures for ``results.json`` (None if it did not run)."""
    if not e or "skipped" in e:
        return None
    return {"dense_ms": 1e3 * e["t_plain"], "sparse_ms": 1e3 * e["t_sparse"],
            "theoretical": e["theoretical"], "real": e["real"],
            "real_over_theoretical": e["ratio"],
            "real_over_theoretical_ops": e.get("ratio_cycles"),
            "real_over_theoretical_alternating": e.get("ratio_alternating"),
            "layers": [{"name": r["name"], "theoretical": r["theoretical"], "real": r["real"]}
                       for r in e["layers"] if r["kind"] == "lccl"]}


def run_bench_resnet18(density: float, input_size: int, repeats: int, seed: int) -> dict:
    """ResNet-18's ImageNet layers with ``kxkxCx1`` masks at our network's mean density."""
    path = "teaching" if fast_path() is None else "fast"
    with one_thread():
        res = bench_resnet18(float(density), "kxkxCx1", repeats, 1, int(input_size), seed,
                             path=path)
    net = res["network"]
    return {"input_size": int(input_size), "density": float(density), "batch": 1,
            "path": path, "macs_dense": net["macs_dense"], "macs_sparse": net["macs_lccl"],
            "dense_ms": net["ms_dense"], "sparse_ms": net["ms_lccl"],
            "theoretical": net["theoretical"], "real": net["real"],
            "real_over_theoretical": net["ratio"]}
