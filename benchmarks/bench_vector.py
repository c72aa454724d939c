"""Benchmark: the "vector" shared-mask kernel vs "gather" vs the dense conv, one thread, float32.

For each layer shape (3x3 kernels, stride 1, padding 1, C = T) and density
``r`` it times, interleaved in one process (so that load from other
processes hits all alike), the dense ``conv2d_forward`` and
``gated_conv2d(..., method="vector")`` and ``method="gather"`` on the same
shared mask, and prints the medians and

    real/ideal = (1 - t / t_dense) / (1 - r)      (1 = the whole saving 1 - r kept)

with two kinds of mask: ``random`` (i.i.d. per position) and ``blobs``
(Gaussian-smoothed noise thresholded at the (1 - r) quantile of each image).
At ``r = 1`` the row shows only ``t / t_dense``.  ``vec/vec(1)`` is the
vector kernel's time over its own time on the all-true mask (``r`` if its
cost were all proportional to the active positions).  Results also go to
``benchmarks/results/vector.json``.

Usage: ``python benchmarks/bench_vector.py [--repeats 9] [--quick]``
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

from lccl_ref.bench import blob_mask, environment, timed  # noqa: E402
from lccl_ref.fast import gated_conv2d  # noqa: E402
from lccl_ref.functional.conv import conv2d_forward, warm_up_blas  # noqa: E402

SHAPES = [  # (name, N, C = T, H = W)
    ("16@32x32 b128", 128, 16, 32),
    ("32@16x16 b128", 128, 32, 16),
    ("64@8x8 b128", 128, 64, 8),
    ("16@32x32 b1", 1, 16, 32),
    ("64@56x56 b1", 1, 64, 56),
]
DENSITIES = [1.0, 0.65, 0.5, 0.3]  # r = 1 first: later rows compare with it
KINDS = ["random", "blobs"]
METHODS = ["vector", "gather"]
OUT = Path(__file__).resolve().parent / "results" / "vector.json"



def measure(x, w, mask, repeats):
    """Median seconds of dense and of each method, interleaved; checks the results first."""
    dense, _ = conv2d_forward(x, w, None, 1, 1)
    for method in METHODS:  # warm-up (compilation) and a correctness check
        y, _ = gated_conv2d(x, w, mask, None, 1, 1, method)
        err = float(np.abs(y - dense * mask[:, None]).max())
        if err > 1e-3:
            raise RuntimeError(f"{method}: max abs error {err:.2e} against the dense conv")
    times = {"dense": [], **{m: [] for m in METHODS}}
    for _ in range(repeats):
        times["dense"].append(timed(conv2d_forward, x, w, None, 1, 1))
        for method in METHODS:
            times[method].append(timed(gated_conv2d, x, w, mask, None, 1, 1, method))
    return {k: float(np.median(v)) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="first shape, r = 0.65 and 1 only")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    warm_up_blas()  # OpenBLAS runs its GEMMs at half speed until this (docs/kernel-notes.md)
    shapes = SHAPES[:1] if args.quick else SHAPES
    densities = [1.0, 0.65] if args.quick else DENSITIES
    rng = np.random.default_rng(0)
    rows = []
    print(f"numba threads {numba.get_num_threads()}; medians of {args.repeats}; "
          "the CPU is shared with other jobs, so +-10 %")
    print(f"{'shape':14s} {'mask':6s} {'r':>5s} {'dense ms':>8s} {'vector':>7s} {'gather':>7s}"
          f"  {'vec/dense':>9s} {'vec/gath':>8s} {'vec/vec(1)':>10s}  real/ideal vector  gather")
    for name, n, c, hw in shapes:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        t_full = None  # the vector kernel on the all-true mask
        for kind in KINDS:
            for density in densities:
                if kind == "blobs" and density >= 1.0:
                    continue  # the same all-true mask as "random"
                mask = (rng.random((n, hw, hw)) < density if kind == "random"
                        else blob_mask(rng, n, hw, hw, density))
                r = float(mask.mean())
                t = measure(x, w, mask, args.repeats)
                row = dict(shape=name, n=n, c=c, hw=hw, mask=kind, density=r,
                           **{f"t_{k}": v for k, v in t.items()})
                for m in METHODS:
                    row[f"{m}_over_dense"] = t[m] / t["dense"]
                    row[f"{m}_real_over_ideal"] = (
                        (1.0 - t[m] / t["dense"]) / (1.0 - r) if r < 1.0 else None)
                if r >= 1.0:
                    t_full = t["vector"]
                row["vector_over_vector_full"] = t["vector"] / t_full if t_full else None
                rows.append(row)
                ratios = ("   (t/t_dense at r = 1)" if r >= 1.0 else
                          f"  {row['vector_real_over_ideal']:6.2f}      "
                          f"{row['gather_real_over_ideal']:6.2f}")
                full = row["vector_over_vector_full"]
                print(f"{name:14s} {kind:6s} {r:5.3f} {t['dense'] * 1e3:8.2f} "
                      f"{t['vector'] * 1e3:7.2f} {t['gather'] * 1e3:7.2f}  "
                      f"{row['vector_over_dense']:9.2f} {t['vector'] / t['gather']:8.2f} "
                      f"{full if full else float('nan'):10.2f}{ratios}", flush=True)
    result = dict(
        environment=environment(),
        repeats=args.repeats, rows=rows,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
