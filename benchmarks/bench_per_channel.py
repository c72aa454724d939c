"""Benchmark: per-channel masks (1x1xCxT) at inference, against the plain conv, by density.

Issue 18 asks that skipping never make a user slower.  For every LCCL layer of a
ResNet-20 with per-channel masks, calibrated so that a fraction r of each mask is
on (``bench.calibrate``), this times, single-threaded and interleaved in one
process (``bench.bench_layer`` / ``bench.time_interleaved``, medians):

* ``plain``: the layer's expensive conv alone, dense (the plain network's layer);
* ``auto``: the LCCL eval forward as shipped (``GatedConv2d.method = "auto"``:
  ``kernels.choose_method`` runs the tiled per-channel kernel below
  ``kernels.TILED_BELOW`` and the dense conv then the mask above it);
* ``tiled`` and ``dense``: the same forward with each choice forced.

Every LCCL forward includes its cheap branch (a 1x1 conv with T outputs, BN, gate).
``theoretical = 1 - (MACs_cheap + r * MACs_dense) / MACs_dense`` (equation (5) of
docs/derivations.md; negative when the cheap branch costs more than the mask saves:
r > 1 - 1/k^2 = 0.89 for 3x3, where no kernel can beat the plain conv);
``real = 1 - t / t_plain``, times summed over the network's LCCL layers.

Results: ``benchmarks/results/per_channel.json``.  Usage:
``python benchmarks/bench_per_channel.py [--quick] [--repeats 7] [--batch 64]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / numba are imported

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from lccl_ref import bench, kernels  # noqa: E402
from lccl_ref.models import build_model, lccl_layers  # noqa: E402
from lccl_ref.report import write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "per_channel.json"
DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.65, 0.8, 0.95)


def run_density(r, batch, repeats, seed=0):
    """One calibrated network at density ``r``: per-layer and summed times per method."""
    rng = np.random.default_rng(seed)
    net = build_model("resnet20", lccl="1x1xCxT", rng=seed)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    bench.calibrate(net, x, r)
    inputs = bench.layer_inputs(net, x)
    layers = dict(lccl_layers(net))
    rows = []
    for name, (xin, u) in inputs.items():
        layer = layers[name]
        fns, stats = {}, {}
        for method in ("auto", "tiled", "dense"):
            def fwd(m=method, layer=layer, xin=xin, u=u):
                layer.conv.method = m
                layer.forward(xin, u)
            fns[method] = fwd
        fns["plain"] = lambda layer=layer, xin=xin: layer.conv.forward(xin)  # no mask: dense
        with bench.eval_mode(layer):
            layer.sparse = True
            for method in ("auto", "tiled", "dense"):
                layer.conv.method = method
                layer.forward(xin, u)
                stats[method] = dict(layer.last_stats)
            t = bench.time_interleaved(fns, repeats, clock=time.thread_time)
            layer.conv.method = "auto"
        s = stats["auto"]
        macs = s["macs_cheap"] + s["density"] * s["macs_dense"]  # equation (5)'s numerator
        theo = 1.0 - macs / s["macs_dense"]
        rows.append(dict(layer=name, in_shape=xin.shape[1:], density=s["density"],
                         method=s["method"], theoretical=theo,
                         macs=macs, macs_dense=s["macs_dense"],
                         ms={k: 1e3 * v for k, v in t.items()},
                         real={k: 1.0 - t[k] / t["plain"] for k in ("auto", "tiled", "dense")}))
    tot = {k: sum(row["ms"][k] for row in rows) for k in ("plain", "auto", "tiled", "dense")}
    theo = 1.0 - sum(row["macs"] for row in rows) / sum(row["macs_dense"] for row in rows)
    return dict(r=r, batch=batch, layers=rows, ms_total=tot, theoretical=theo,
                real={k: 1.0 - tot[k] / tot["plain"] for k in ("auto", "tiled", "dense")},
                methods=sorted({row["method"] for row in rows}),
                worst_layer_real_auto=min(row["real"]["auto"] for row in rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 8, 3 repeats, three densities")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    batch = args.batch or (8 if args.quick else 64)
    densities = (0.1, 0.5, 0.9) if args.quick else DENSITIES
    t0 = time.perf_counter()
    res = dict(environment=bench.environment(), repeats=repeats, batch=batch,
               tiled_below=kernels.TILED_BELOW, clock="time.thread_time (this thread's CPU)",
               note="ResNet-20 1x1xCxT, untrained, calibrated per density; single-threaded; "
                    "times summed over its LCCL layers, each a median of interleaved calls")
    rows = []
    with bench.one_thread() as threads:
        res["threads"] = threads
        for r in densities:
            row = run_density(r, batch, repeats)
            rows.append(row)
            print(f"r={r:.2f} (measured {np.mean([x['density'] for x in row['layers']]):.2f}) "
                  f"theoretical {100 * row['theoretical']:6.1f}%  real: auto "
                  f"{100 * row['real']['auto']:6.1f}%  tiled {100 * row['real']['tiled']:6.1f}%  "
                  f"dense+mask {100 * row['real']['dense']:6.1f}%  methods {row['methods']}  "
                  f"worst layer (auto) {100 * row['worst_layer_real_auto']:.1f}%", flush=True)
    res["rows"] = rows
    res["wall_time_s"] = time.perf_counter() - t0
    out = write_json(res, args.out)
    print(f"wrote {out} ({res['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
