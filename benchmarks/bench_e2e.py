"""Benchmark: an LCCL network's eval forward, plain (dense) vs sparse, one thread, float32.

For each cheap kind (``kxkxCx1``, ``1x1xCx1`` -- masks shared over the output
channels -- and ``1x1xCxT`` -- a mask per channel) and each batch size (1 and
128), on ResNet-20 by default:

* theoretical speed-up ``1 - (MACs_cheap + MACs_expensive_executed) / MACs_dense``
  from the MACs the gated kernels counted, whole network and per LCCL layer;
* real speed-up ``1 - t_sparse / t_plain`` (medians, calls interleaved), where
  the plain network is the same network with each LCCL layer replaced by its
  expensive conv alone, whole network and each LCCL layer timed in isolation;
* their ratio (the paper reached 0.59 on ResNet-18; our target for shared
  masks is >= 0.85);
* all of the above twice: through the modules, layer by layer, and with
  :class:`lccl_ref.fast.engine.Engine` (the whole network in one compiled call;
  per-layer times from its cycle counts; timed in alternating runs of up to
  10 consecutive calls of one network, ``r(alt)`` from strictly alternating
  calls, see :func:`lccl_ref.bench.bench_engine`).

Untrained networks are calibrated on the batch: BN statistics from the batch,
cheap-branch biases set so that ``--density`` of the mask is on
(:func:`lccl_ref.bench.calibrate`); ``--checkpoint`` uses trained masks on
test images instead.  Then ResNet-18's ImageNet-shaped layers (224x224 input,
batch 1) with ``kxkxCx1`` masks at ``--resnet18-density``, against the paper's
1.8E9 -> 1.2E9 FLOPs, 97.1 -> 77.1 ms, 34.6% theoretical vs 20.5% real.

Results: ``benchmarks/results/e2e.json`` (thread count, versions, every row);
``e2e_wrn-16-4.json`` from ``--model wrn-16-4 --batch 1,16 --kinds kxkxCx1,1x1xCx1
--no-resnet18 --repeats 15 --out benchmarks/results/e2e_wrn-16-4.json``.

Usage: ``python benchmarks/bench_e2e.py [--quick] [--model resnet20] [--batch 1,128]
[--density 0.65] [--checkpoint runs/.../last.npz] [--repeats 5]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / numba are imported

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from lccl_ref.bench import format_summary, run_benchmark  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "e2e.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--kinds", default="kxkxCx1,1x1xCx1,1x1xCxT",
                   help="comma-separated cheap kinds")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes "
                   "(default 1,128; quick: 1,16)")
    p.add_argument("--density", type=float, default=None,
                   help="target density of the cheap-branch masks (default 0.65 for untrained "
                        "networks; with --checkpoint the trained masks unless given)")
    p.add_argument("--checkpoint", default=None, help="a last.npz of `lccl-ref train`")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--resnet18-density", type=float, default=0.65)
    p.add_argument("--no-resnet18", action="store_true")
    p.add_argument("--quick", action="store_true", help="batches 1,16, 2 repeats, 112x112")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    batches = tuple(int(b) for b in (args.batch or ("1,16" if args.quick else "1,128"))
                    .split(","))
    t0 = time.perf_counter()
    res = run_benchmark(model=args.model, kinds=tuple(args.kinds.split(",")), batches=batches,
                        density=(0.65 if args.density is None and args.checkpoint is None
                                 else args.density), checkpoint=args.checkpoint, quick=args.quick,
                        repeats=args.repeats, resnet18=not args.no_resnet18,
                        resnet18_density=args.resnet18_density,
                        log=lambda s: print(s, flush=True))
    res["wall_time_s"] = time.perf_counter() - t0
    res["note"] = ("single-threaded; the 2-core machine was shared with other processes while "
                   "this ran, so absolute times are noisy; ratios come from interleaved calls "
                   "in one process (the engine's from alternating runs of up to 10 consecutive "
                   "calls of one network, ratio_alternating from strictly alternating calls)")
    print()
    print(format_summary(res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, sort_keys=True))
    print(f"\nwrote {out} ({res['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
