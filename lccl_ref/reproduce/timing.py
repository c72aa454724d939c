"""Dense vs sparse eval time of a trained network, one thread: the report's real speed-ups.

:func:`run_bench` times the whole network layer by layer through the modules and,
where it can, with :mod:`lccl_ref.engine`; :func:`run_bench_resnet18` times
ResNet-18's ImageNet layers at our network's density. :func:`machine_info`
records what the timings ran on.
"""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager

import numpy as np


def load_average() -> float | None:
    """The 1-minute load average (other processes sharing the CPU make timings noisy)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def machine_info() -> dict:
    import numba

    try:
        from threadpoolctl import threadpool_info

        blas = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with the test extra
        blas = None
    return {"threads": int(numba.get_num_threads()), "blas_threads": blas,
            "cpu_count": os.cpu_count(), "load_average": load_average(),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(), "numpy": np.__version__}


@contextmanager
def one_thread():
    """Within the block BLAS (threadpoolctl, when installed) and Numba use one thread.

    Scoped, unlike :func:`lccl_ref.bench.single_thread`, so that a reproduce run inside
    a longer process (the tests) leaves the thread counts as it found them.
    """
    import numba

    before = numba.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn/mlxtend
        limiter = None
    else:
        limiter = threadpool_limits(limits=1)
    numba.set_num_threads(1)
    try:
        yield 1
    finally:
        numba.set_num_threads(before)
        if limiter is not None:
            limiter.restore_original_limits()


def run_bench(model, x_test, batches, repeats) -> dict:
    """Dense vs sparse eval time of ``model`` on test images, one thread (:mod:`lccl_ref.bench`).

    Returns the ``bench`` section of the results: per batch size the network's MACs per
    image (plain network vs LCCL as executed), median times in ms of the plain network
    and of the sparse LCCL network, theoretical and real speed-ups, and the same per layer;
    ``engine``: the same comparison with :mod:`lccl_ref.engine` (whole network, one call).
    """
    from ..bench import bench_network

    out = {"threads": 1, "repeats": int(repeats), "load_average": load_average(),
           "batches": []}
    for b in batches:
        x = np.asarray(x_test[:b], model.dtype)
        with one_thread():
            res = bench_network(model, x, repeats=repeats)
        net, n = res["network"], len(x)
        out["batches"].append({
            "batch": n, "macs_dense": net["macs_dense"] / n, "macs_sparse": net["macs_lccl"] / n,
            "dense_ms": 1e3 * net["t_plain"], "sparse_ms": 1e3 * net["t_sparse"],
            "dense_lccl_ms": 1e3 * net["t_dense_lccl"], "theoretical": net["theoretical"],
            "real": net["real"], "real_over_theoretical": net["ratio"],
            "mean_density": net["mean_density"],
            "layers": [{"name": r["name"], "density": r["density"],
                        "theoretical": r["theoretical"], "real": r["real"],
                        "plain_ms": 1e3 * r["t_plain"], "sparse_ms": 1e3 * r["t_sparse"]}
                       for r in res["layers"]],
            "engine": _engine_row(res.get("engine")),
            "engine_skipped": (res.get("engine") or {}).get("skipped"),
        })
    return out


def _engine_row(e):
    """The :func:`lccl_ref.bench.bench_engine` figures for ``results.json`` (None if not run)."""
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
    from ..bench import bench_resnet18

    with one_thread():
        res = bench_resnet18(float(density), "kxkxCx1", repeats, 1, int(input_size), seed)
    net = res["network"]
    return {"input_size": int(input_size), "density": float(density), "batch": 1,
            "macs_dense": net["macs_dense"], "macs_sparse": net["macs_lccl"],
            "dense_ms": net["ms_dense"], "sparse_ms": net["ms_lccl"],
            "theoretical": net["theoretical"], "real": net["real"],
            "real_over_theoretical": net["ratio"]}
