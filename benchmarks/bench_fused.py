"""Benchmark: the fused shared-mask LCCL eval forward vs the two-call path vs the dense conv.

One thread, float32.  For each layer shape (3x3 expensive conv, padding 1)
and both shared-mask cheap kinds (``kxkxCx1``: the same 3x3 window;
``1x1xCx1``: its centre), the cheap bias is set so that the density is
about ``r = 0.65`` (the threshold at the 35 % quantile of the cheap
pre-activation), and three things are timed, interleaved in one process
(so that load from other processes hits all alike):

* ``fused``: :func:`lccl_ref.fast.fused.lccl_shared_eval_unchecked`, one call;
* ``two-call``: :func:`kernels.cheap.cheap_single_unchecked`, then
  ``gated_conv2d_unchecked(..., "auto", scale=V')`` (the LCCL layer's path
  before the fused kernel);
* ``dense``: :func:`kernels.conv2d_inference`, the eval-mode plain layer.

It prints the medians and

    real/theoretical = (1 - t / t_dense) / (1 - r - cheap_macs / dense_macs)

(1 = the cost model's whole saving kept; ``cheap_macs = XYk'^2C``, the
cheap branch's share ``1/T`` for ``kxkxCx1`` and ``1/(k^2 T)`` for
``1x1xCx1``).  Results also go to ``benchmarks/results/fused.json``.

Usage: ``python benchmarks/bench_fused.py [--repeats 7] [--quick]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / numba are imported

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from lccl_ref.bench import environment, timed  # noqa: E402
from lccl_ref.fast import conv2d_inference  # noqa: E402
from lccl_ref.fast.cheap import cheap_single_unchecked  # noqa: E402
from lccl_ref.fast.fused import lccl_shared_eval_unchecked  # noqa: E402
from lccl_ref.fast.gated import gated_conv2d_unchecked  # noqa: E402
from lccl_ref.functional.conv import conv2d_forward, warm_up_blas  # noqa: E402

SHAPES = [  # (name, N, C, T, H = W, stride): ResNet-20 at batch 128 and 1, ResNet-18's first stage
    ("16@32x32 b128", 128, 16, 16, 32, 1),
    ("16>32/2@32 b128", 128, 16, 32, 32, 2),
    ("32@16x16 b128", 128, 32, 32, 16, 1),
    ("64@8x8 b128", 128, 64, 64, 8, 1),
    ("16@32x32 b1", 1, 16, 16, 32, 1),
    ("16>32/2@32 b1", 1, 16, 32, 32, 2),
    ("32@16x16 b1", 1, 32, 32, 16, 1),
    ("64@8x8 b1", 1, 64, 64, 8, 1),
    ("64@56x56 b1", 1, 64, 64, 56, 1),
]
KINDS = {"kxkxCx1": (3, 1), "1x1xCx1": (1, 0)}  # cheap kernel size and padding (padding 1)
DENSITY = 0.65
OUT = Path(__file__).resolve().parent / "results" / "fused.json"



def measure(x, w, wc, b_c, stride, cheap_padding, repeats):
    """Median seconds of fused, two-call and dense, interleaved; checks fused first."""
    s, p, q = (stride, stride), (1, 1), (cheap_padding, cheap_padding)

    def fused():
        return lccl_shared_eval_unchecked(x, w, wc, b_c, s, p, q)

    def two_call():
        v, mask, active = cheap_single_unchecked(x, wc, b_c, s, q)
        y, macs = gated_conv2d_unchecked(x, w, mask, None, s, p, "auto", scale=v)
        return y, v, mask, active, macs

    def dense():
        return conv2d_inference(x, w, None, s, p)

    y, v, mask, active, macs = fused()  # warm-up (compilation, auto's timing) and a check
    y2, v2, mask2, active2, macs2 = two_call()
    dense()
    flips = int((mask != mask2).sum())  # only where V' is within rounding of 0
    if flips > 1e-4 * mask.size or abs(macs - macs2) > flips * w[0].size * w.shape[0]:
        raise RuntimeError(f"fused and two-call disagree on the mask ({flips} cells)")
    both = mask & mask2
    err = float(np.abs(y - y2)[np.broadcast_to(both[:, None], y.shape)].max(initial=0.0))
    if err > 1e-3 * max(1.0, float(np.abs(y2).max())):
        raise RuntimeError(f"fused: max abs error {err:.2e} against the two-call path")
    times = {"fused": [], "two_call": [], "dense": []}
    for _ in range(repeats):
        for name, fn in (("fused", fused), ("two_call", two_call), ("dense", dense)):
            times[name].append(timed(fn))
    return {k: float(np.median(v)) for k, v in times.items()}, active / mask.size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="the first shape only")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    warm_up_blas()  # OpenBLAS runs its GEMMs at half speed until this (docs/kernel-notes.md)
    shapes = SHAPES[:1] if args.quick else SHAPES
    rng = np.random.default_rng(0)
    rows = []
    print(f"numba threads {numba.get_num_threads()}; medians of {args.repeats}; "
          "the CPU is shared with other jobs, so +-10 %")
    print(f"{'shape':16s} {'cheap':8s} {'r':>5s} {'dense':>7s} {'2-call':>7s} {'fused':>7s}"
          f"  {'fused/2c':>8s} {'2c-fused':>8s} {'fused/dense':>11s}  real/theor fused  2-call")
    for name, n, c, t, hw, stride in shapes:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((t, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        for kind, (kc, cp) in KINDS.items():
            wc = (rng.standard_normal((1, c, kc, kc)) / np.sqrt(kc * kc * c)).astype(np.float32)
            pre = conv2d_forward(x, wc, None, stride, cp)[0]
            b_c = np.array([-np.quantile(pre, 1.0 - DENSITY)], np.float32)
            t_, r = measure(x, w, wc, b_c, stride, cp, args.repeats)
            share = 1.0 - r - (kc * kc) / (9 * t)  # theoretical saving 1 - r - cheap/dense
            row = dict(shape=name, n=n, c=c, t=t, hw=hw, stride=stride, cheap=kind,
                       density=r, **{f"t_{k}": v for k, v in t_.items()},
                       fused_over_two_call=t_["fused"] / t_["two_call"],
                       fused_over_dense=t_["fused"] / t_["dense"],
                       fused_real_over_theoretical=(1 - t_["fused"] / t_["dense"]) / share,
                       two_call_real_over_theoretical=(1 - t_["two_call"] / t_["dense"]) / share)
            rows.append(row)
            print(f"{name:16s} {kind:8s} {r:5.3f} {t_['dense'] * 1e3:7.2f} "
                  f"{t_['two_call'] * 1e3:7.2f} {t_['fused'] * 1e3:7.2f}  "
                  f"{row['fused_over_two_call']:8.2f} "
                  f"{(t_['two_call'] - t_['fused']) * 1e3:8.2f} "
                  f"{row['fused_over_dense']:11.2f}  {row['fused_real_over_theoretical']:10.2f}"
                  f"  {row['two_call_real_over_theoretical']:6.2f}", flush=True)
    result = dict(
        environment=environment(),
        repeats=args.repeats, density_target=DENSITY, rows=rows,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
