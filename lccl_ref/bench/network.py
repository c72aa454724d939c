"""A whole LCCL network against its plain twin: theoretical vs real speed-up, per path.

``theoretical = 1 - MACs_lccl / MACs_dense``, from the MACs the kernels counted as
they ran (plain layers -- stem, shortcuts, classifier -- count the same in both);
``real = 1 - t_sparse / t_plain``, medians of interleaved calls, where the plain
network is ``models.plain_network(model)`` (every LCCL layer replaced by its expensive
conv alone: the network the paper compares with) and ``t_sparse`` the LCCL network's
sparse eval path.  :func:`bench_network` times both on each path asked for (the
teaching modules, the fast modules), then with the engine (:mod:`.engine`, fast
path), and each LCCL layer in isolation on the teaching path (:mod:`.layer`).
"""

from __future__ import annotations

import numpy as np

from ..flops import mac_table
from ..models import lccl_layers, plain_network
from ..nn import set_sparse
from .engine import bench_engine
from .layer import bench_layer, layer_inputs
from .timing import PATHS, eval_mode, fast_path, on_path, ratio, time_interleaved


def bench_network(model, x: np.ndarray, repeats: int = 5, layers: bool = True,
                  torch_ref: bool = True, engine: bool = True, paths=PATHS) -> dict:
    """Whole-network and per-layer theoretical vs real speed-up on batch ``x``.

    Returns
    -------
    dict
        ``network``: MACs (dense total, LCCL total: plain layers + cheap + executed),
        ``theoretical``, ``mean_density``, ``batch``; ``paths``: per path ("teaching",
        "fast"; the fast one skipped without ``lccl_ref.fast``) the times (s) ``t_plain``,
        ``t_sparse``, ``t_dense_lccl``, their minima, ``real``, ``ratio``, ``real_min``,
        ``ratio_min``; ``layers``: :func:`.layer.bench_layer` rows (teaching path) and
        ``lccl_layers_sum``; ``engine``: :func:`.engine.bench_engine`'s result.
    """
    lay = lccl_layers(model)
    if not lay:
        raise ValueError("model has no LCCLConv2d layer; build it with lccl=<kind>")
    paths = [p for p in paths if p == "teaching" or fast_path() is not None]
    plain = plain_network(model)
    n = x.shape[0]
    table = mac_table(model, x=x)  # one eval pass (the sparse flags as they are)
    plain_macs = n * sum(r["macs_dense"] for r in table["rows"]
                         if r["kind"] in ("conv", "linear"))
    flags = [m.sparse for _, m in lay]
    try:
        with eval_mode(model), eval_mode(plain):
            set_sparse(model, True)
            model.forward(x)
            lccl_dense = sum(m.last_stats["macs_dense"] for _, m in lay)
            lccl_exec = sum(m.last_stats["macs_cheap"] + m.last_stats["macs_expensive"]
                            for _, m in lay)
            densities = {name: m.last_stats["density"] for name, m in lay}
            theo = 1.0 - (plain_macs + lccl_exec) / (plain_macs + lccl_dense)
            by_path = {p: _time_path(model, plain, x, p, repeats, theo) for p in paths}
        rows = []
        if layers:
            for name, (xi, ci) in layer_inputs(model, x).items():
                rows.append(bench_layer(dict(lay)[name], xi, ci, repeats, name, torch_ref))
    finally:
        for (_, m), f in zip(lay, flags):
            m.sparse = f
    net = dict(batch=n, macs_dense=int(plain_macs + lccl_dense),
               macs_lccl=int(plain_macs + lccl_exec), macs_plain_layers=int(plain_macs),
               mean_density=float(np.mean(list(densities.values()))), theoretical=theo)
    eng = None
    if engine:
        eng = dict(skipped="the fast path (lccl_ref.fast) is not available") \
            if fast_path() is None else bench_engine(model, x, repeats)
    return dict(network=net, paths=by_path, lccl_layers_sum=_layer_sum(rows, lccl_exec,
                                                                         lccl_dense),
                densities=densities, layers=rows, engine=eng)


def _time_path(model, plain, x, path, repeats, theo) -> dict:
    """Plain network vs the LCCL network's sparse and dense eval paths on ``path``."""
    lay = [m for _, m in lccl_layers(model)]

    def lccl(sparse):
        for m in lay:
            m.sparse = sparse
        model.forward(x)

    tmin = {}
    with on_path(model, path), on_path(plain, path):
        t = time_interleaved(dict(plain=lambda: plain.forward(x), sparse=lambda: lccl(True),
                                  dense_lccl=lambda: lccl(False)), repeats, minima=tmin)
    real, real_min = 1.0 - t["sparse"] / t["plain"], 1.0 - tmin["sparse"] / tmin["plain"]
    return dict(path=path, t_plain=t["plain"], t_sparse=t["sparse"],
                t_dense_lccl=t["dense_lccl"], t_plain_min=tmin["plain"],
                t_sparse_min=tmin["sparse"], real=real, ratio=ratio(real, theo),
                real_min=real_min, ratio_min=ratio(real_min, theo))


def _layer_sum(rows, lccl_exec, lccl_dense):
    """The LCCL layers alone, timed in isolation and summed (None without layer rows)."""
    if not rows:
        return None
    tp, ts = sum(r["t_plain"] for r in rows), sum(r["t_sparse"] for r in rows)
    tf = sum(r["t_gated_full"] for r in rows)
    th = 1.0 - lccl_exec / lccl_dense
    out = dict(t_plain=tp, t_sparse=ts, t_gated_full=tf, theoretical=th, real=1.0 - ts / tp,
               ratio=ratio(1.0 - ts / tp, th), real_vs_gated_full=1.0 - ts / tf,
               ratio_vs_gated_full=ratio(1.0 - ts / tf, th))
    if all(r["t_torch"] is not None for r in rows):
        tt = sum(r["t_torch"] for r in rows)
        out.update(t_torch=tt, real_vs_torch=1.0 - ts / tt)
    return out
