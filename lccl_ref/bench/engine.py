"""The whole network in one compiled call (``lccl_ref.fast.Engine``): plain vs LCCL.

The plain network is ``Engine(model, sparse=False)`` (every LCCL layer's expensive
conv alone), the LCCL network ``Engine(model)``; neither pays per-layer Python
dispatch nor a DRAM round trip per activation.  Whole network: wall medians (and
minima) of at least ``repeats`` calls per network and as many as fill about
``min_time`` seconds, in alternating runs of up to :data:`ENGINE_RUN` consecutive
calls of one network, as when one network serves request after request; also with
strictly alternating calls (``*_alternating``: each call finds the other network's
data in L2, 0.02-0.03 lower at batch 1), and from the sum of each op's minimum cycle
count (``*_cycles``: what the network computes, without the call and the
interruptions of a shared machine).  Per layer: each op's minimum cycle count.
"""

from __future__ import annotations

import time

import numpy as np

from ..models import PreActResNet
from .timing import fast_path, ratio, time_interleaved

#: Most consecutive calls of one network in :func:`bench_engine`'s timing runs.
ENGINE_RUN = 10


def bench_engine(model, x: np.ndarray, repeats: int = 5, min_time: float = 0.5) -> dict:
    """Theoretical vs real speed-up with the engine, whole network and per conv layer;
    ``{"skipped": reason}`` for a model the engine does not run.

    Returns
    -------
    dict with ``t_plain``, ``t_sparse`` (s, medians), ``t_plain_min``, ``t_sparse_min``,
    ``rounds`` (calls per network), ``run``, ``macs_dense``, ``macs_lccl``,
    ``theoretical``, ``real``, ``ratio``, ``real_min``, ``ratio_min``, the same
    ``*_alternating`` and ``real_cycles``, ``ratio_cycles``, and ``layers``: per conv
    layer ``name``, ``kind``, ``density`` (LCCL), ``macs_dense``, ``macs``,
    ``theoretical``, ``cycles_plain``, ``cycles_sparse``, ``real``, ``ratio``.
    """
    Engine = fast_path().Engine
    if not isinstance(model, PreActResNet):
        return dict(skipped=f"the engine runs PreActResNets, not {type(model).__name__}")
    try:
        sparse, plain = Engine(model), Engine(model, sparse=False)
    except ValueError as e:
        return dict(skipped=str(e))
    sparse(x)
    plain(x)  # the first call of each is cold: time the second
    t0 = time.perf_counter()
    plain(x)
    rounds = max(repeats, min(1000, int(min_time / max(time.perf_counter() - t0, 1e-9))))
    macs_dense, macs_lccl = plain.last_macs["executed"], sparse.last_macs["executed"]
    engines = dict(plain=plain, sparse=sparse)
    cyc = {}

    every = {}  # every op's (ADD_SUB and HEAD too) minimum cycles

    def cycles(name):  # read outside the timed call, as arrays (last_stats builds dicts)
        c, layer_ops = engines[name].last_cycles
        every[name] = np.minimum(every[name], c) if name in every else c
        cyc[name] = every[name][layer_ops]

    tmin = {}
    calls = {k: (lambda e=e: e(x)) for k, e in engines.items()}
    run = max(1, min(ENGINE_RUN, rounds // 10))
    t = time_interleaved(calls, rounds // run, warmup=0, minima=tmin, after=cycles,
                         run=run)  # warmed up above
    t_alt = t if run == 1 else time_interleaved(calls, rounds, warmup=0)
    theo = 1.0 - macs_lccl / macs_dense
    real, real_min = 1.0 - t["sparse"] / t["plain"], 1.0 - tmin["sparse"] / tmin["plain"]
    real_alt = 1.0 - t_alt["sparse"] / t_alt["plain"]
    real_cycles = 1.0 - every["sparse"].sum() / every["plain"].sum()
    layers = []
    for k, (p, q) in enumerate(zip(plain.last_stats, sparse.last_stats)):
        th = 1.0 - q["macs"] / p["macs_dense"] if p["macs_dense"] else 0.0
        re = 1.0 - cyc["sparse"][k] / cyc["plain"][k] if cyc["plain"][k] else 0.0
        layers.append(dict(name=q["name"], kind=q["kind"], density=q.get("density"),
                           macs_dense=p["macs_dense"], macs=q["macs"], theoretical=th,
                           cycles_plain=int(cyc["plain"][k]), cycles_sparse=int(cyc["sparse"][k]),
                           real=re, ratio=ratio(re, th) if q["kind"] == "lccl" else None))
    return dict(t_plain=t["plain"], t_sparse=t["sparse"], t_plain_min=tmin["plain"],
                t_sparse_min=tmin["sparse"], rounds=rounds // run * run, run=run,
                macs_dense=int(macs_dense), macs_lccl=int(macs_lccl), theoretical=theo,
                real=real, ratio=ratio(real, theo), real_min=real_min,
                ratio_min=ratio(real_min, theo), t_plain_alternating=t_alt["plain"],
                t_sparse_alternating=t_alt["sparse"], real_alternating=real_alt,
                ratio_alternating=ratio(real_alt, theo),
                real_cycles=real_cycles, ratio_cycles=ratio(real_cycles, theo), layers=layers)
