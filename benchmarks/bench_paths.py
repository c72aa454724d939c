"""Benchmark: the teaching gather kernel's real / ideal saving, and the fast path's engine.

Two figures of issue 17, measured after the teaching path and the fast path were
separated, single-threaded, float32, medians of interleaved calls (ratios come from
the same process and the same calls):

* **teaching**: ``kernels.gated_conv2d`` (``"gather"``, the gather-GEMM-scatter of a
  shared mask) against the teaching dense conv ``functional.conv2d_forward`` (im2col +
  GEMM) on ResNet-20's layer shapes at batch 128, masks in blobs as trained cheap
  branches give (``bench.blob_mask``), densities r = 0.3 ... 0.65.  ``real = 1 -
  t_gated / t_dense``, ``ideal = 1 - r``; target: real / ideal >= 0.85 at r <= 0.65.
  Times are this thread's CPU time (``time.thread_time``): the machine is shared.
* **fast**: ``fast.Engine`` on ResNet-20 (``kxkxCx1``, ``1x1xCx1``; the ReLU gate and
  the recipes' clip gate) at batch 1 and 128, masks calibrated to r = 0.65
  (``bench.calibrate``): real / theoretical from ``bench.bench_engine`` (runs of
  consecutive calls; also from strictly alternating calls and from op cycles).

Results: ``benchmarks/results/paths.json``.  Usage: ``python benchmarks/bench_paths.py
[--quick] [--repeats 7] [--part teaching|fast|both]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / numba are imported

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from lccl_ref import bench  # noqa: E402
from lccl_ref.functional import conv2d_forward  # noqa: E402
from lccl_ref.kernels import gated_conv2d  # noqa: E402
from lccl_ref.models import build_model  # noqa: E402
from lccl_ref.report import write_json  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "paths.json"
#: ResNet-20's convolution shapes: (name, C, T, H, stride)
SHAPES = [("16@32x32", 16, 16, 32, 1), ("16->32 /2 @32x32", 16, 32, 32, 2),
          ("32@16x16", 32, 32, 16, 1), ("32->64 /2 @16x16", 32, 64, 16, 2),
          ("64@8x8", 64, 64, 8, 1)]
DENSITIES = (0.3, 0.5, 0.65)


def teaching_gather(batch, repeats, seed=0):
    """Rows: shape, r, dense and gated ms (medians), real, ideal, real / ideal."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, c, t, h, s in SHAPES:
        x = rng.standard_normal((batch, c, h, h)).astype(np.float32)
        w = rng.standard_normal((t, c, 3, 3)).astype(np.float32)
        ho = (h + 2 - 3) // s + 1
        for r in DENSITIES:
            mask = bench.blob_mask(rng, batch, ho, ho, r)
            t_ = bench.time_interleaved(dict(
                dense=lambda x=x, w=w, s=s: conv2d_forward(x, w, None, s, 1),
                gated=lambda x=x, w=w, s=s, m=mask: gated_conv2d(x, w, m, None, s, 1, "gather")),
                repeats, clock=time.thread_time)
            real, ideal = 1 - t_["gated"] / t_["dense"], 1 - float(mask.mean())
            rows.append(dict(shape=name, batch=batch, r=float(mask.mean()),
                             ms_dense=1e3 * t_["dense"], ms_gated=1e3 * t_["gated"],
                             real=real, ideal=ideal, real_over_ideal=real / ideal))
            print(f"teaching gather {name:18s} r={r:.2f}: dense {1e3 * t_['dense']:7.2f} ms, "
                  f"gated {1e3 * t_['gated']:7.2f} ms, real/ideal {real / ideal:.2f}", flush=True)
    return rows


def fast_engine(batches, repeats, seed=0):
    """Rows: kind, gate, batch, the engine's real / theoretical (runs, alternating, cycles)."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind in ("kxkxCx1", "1x1xCx1"):
        for gate in ("relu", "clip"):
            for b in batches:
                net = build_model("resnet20", lccl=kind, gate=gate, rng=seed)
                x = rng.standard_normal((b, 3, 32, 32)).astype(np.float32)
                dens = bench.calibrate(net, x, 0.65)
                e = bench.bench_engine(net, x, repeats)
                rows.append(dict(kind=kind, gate=gate, batch=b,
                                 mean_density=float(np.mean(list(dens.values()))),
                                 ms_plain=1e3 * e["t_plain"], ms_sparse=1e3 * e["t_sparse"],
                                 theoretical=e["theoretical"], real=e["real"],
                                 ratio=e["ratio"], ratio_min=e["ratio_min"],
                                 ratio_alternating=e["ratio_alternating"],
                                 ratio_cycles=e["ratio_cycles"], rounds=e["rounds"],
                                 run=e["run"]))
                print(f"fast engine {kind} {gate} batch {b:3d}: theoretical "
                      f"{100 * e['theoretical']:.1f}%, real {100 * e['real']:.1f}%, "
                      f"real/theoretical {e['ratio']:.2f} (alternating "
                      f"{e['ratio_alternating']:.2f}, cycles {e['ratio_cycles']:.2f})",
                      flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 16 instead of 128, 3 repeats")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--part", choices=("teaching", "fast", "both"), default="both")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    big = 16 if args.quick else 128
    t0 = time.perf_counter()
    res = dict(environment=bench.environment(), repeats=repeats,
               clocks={"teaching_gather": "time.thread_time (this thread's CPU time)",
                       "fast_engine": "time.perf_counter (wall), as bench.bench_engine times it"},
               note="single-threaded; the 2-core machine was shared with other processes; "
                    "each ratio from interleaved calls in one process (medians)")
    with bench.one_thread() as threads:
        res["threads"] = threads
        if args.part in ("teaching", "both"):
            res["teaching_gather"] = teaching_gather(big, repeats)
        if args.part in ("fast", "both"):
            res["fast_engine"] = fast_engine((1, big), repeats)
    res["wall_time_s"] = time.perf_counter() - t0
    out = write_json(res, args.out)
    print(f"wrote {out} ({res['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
