"""Benchmark: gated convolution vs the dense convolution, single-threaded float32.

Times ``lccl_ref.fast.gated_conv2d`` against the project's dense
convolution at inference, ``lccl_ref.fast.conv2d_inference`` (the faster of
im2col + GEMM and the vector kernel at r = 1, as eval-mode ``Conv2d`` layers
run it; im2col's own time is kept as ``t_im2col``), and PyTorch's dense conv
when torch is importable, on the ResNet-20 layer shapes (batch 128: 16@32x32, 32@16x16,
64@8x8) and ResNet-18's 64@56x56 (batch 1 and 8), 3x3 kernels, stride 1,
padding 1, at densities 1.0 ... 0.1, with three kinds of mask:

* ``shared-random``: one mask per position, shared by all T channels, i.i.d.;
* ``shared-clustered``: thresholded smoothed noise (blobs, as real masks are);
* ``per-channel``: one i.i.d. mask per (channel, position).

For each row it prints ``ideal = 1 - r`` (r = measured density), ``real =
1 - t_gated / t_dense`` and ``real / ideal``, then the break-even density
(where ``t_gated == t_dense``, by linear interpolation).  Each time is the
median of ``--repeats`` runs, dense and gated interleaved in one process so
that load from other processes hits both alike.  Results go to
``benchmarks/results/gated.json``.

Usage: ``python benchmarks/bench_gated.py [--repeats 5] [--quick] [--shared-only]``
(``--shared-only`` reruns the shared-mask rows and keeps the per-channel rows
already in the output file.)
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy / numba / torch are imported

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from lccl_ref.bench import blob_mask, environment, timed  # noqa: E402
from lccl_ref.fast import (  # noqa: E402
    conv2d_inference,
    gated_conv2d,
    tune,  # noqa: E402
)
from lccl_ref.functional.conv import conv2d_forward  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # torch is optional
    torch = None

SHAPES = [  # (name, N, C = T, H = W)
    ("resnet20-16@32x32", 128, 16, 32),
    ("resnet20-32@16x16", 128, 32, 16),
    ("resnet20-64@8x8", 128, 64, 8),
    ("resnet18-64@56x56-b1", 1, 64, 56),
    ("resnet18-64@56x56-b8", 8, 64, 56),
]
DENSITIES = [1.0, 0.9, 0.7, 0.5, 0.3, 0.1]
KINDS = ["shared-random", "shared-clustered", "per-channel"]
OUT = Path(__file__).resolve().parent / "results" / "gated.json"


def auto_method(kind, x, w):
    """The variant ``method="auto"`` ran (after a call): tiled, or the one it timed faster."""
    if kind == "per-channel":
        return "tiled"
    key = (x.shape, w.shape, (1, 1), (1, 1), x.dtype.str, False, False)
    return tune.CHOICES["shared"][key]["method"]


def other_method(kind, x, w):
    """For shared masks, the variant auto did not pick (timed to justify the choice)."""
    if kind == "per-channel":
        return None  # the gather-GEMM and vector kernels need a shared mask
    return "gather" if auto_method(kind, x, w) == "vector" else "vector"


def make_mask(kind, rng, n, t, h, w, density):
    if kind == "shared-random":
        return rng.random((n, h, w)) < density
    if kind == "shared-clustered":
        return blob_mask(rng, n, h, w, density)
    return rng.random((n, t, h, w)) < density



def break_even(rows):
    """Density where t_gated / t_dense crosses 1 (linear interpolation in r)."""
    pts = sorted((r["density"], r["t_gated"] / r["t_dense"]) for r in rows)
    if pts[-1][1] < 1.0:
        return 1.0  # faster than dense even when every cell is computed
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if q0 < 1.0 <= q1:
            return r0 + (1.0 - q0) * (r1 - r0) / (q1 - q0)
    return 0.0  # slower than dense at every density measured


def print_targets(rows):
    """The issue's targets: real/ideal >= 0.9 (shared, r <= 0.7), >= 0.6 (per-channel, C >= 32).

    For per-channel masks we also take r <= 0.7: at r = 0.9 the ideal saving
    is 0.1 and the ratio is mostly timing noise.
    """
    groups = [
        ("shared masks, r <= 0.7", 0.9,
         [q for q in rows if q["kind"] != "per-channel" and q["density"] <= 0.7]),
        ("per-channel masks, C >= 32, r <= 0.7", 0.6,
         [q for q in rows if q["kind"] == "per-channel" and q["c"] >= 32 and q["density"] <= 0.7]),
    ]
    for label, target, sel in groups:
        if not sel:
            continue
        vs_dense = [q["real_over_ideal"] for q in sel]
        vs_dense_min = [q["real_over_ideal_min"] for q in sel]
        vs_full = [q["real_over_ideal_vs_full_mask"] for q in sel
                   if q["real_over_ideal_vs_full_mask"] is not None]
        line = (f"{label}: real/ideal vs conv2d_inference min {min(vs_dense):.2f} "
                f"median {np.median(vs_dense):.2f} (min-time: min {min(vs_dense_min):.2f} "
                f"median {np.median(vs_dense_min):.2f}; target {target})")
        if vs_full:
            line += f"; vs the same kernel on an all-true mask min {min(vs_full):.2f}"
        print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="first shape only, 3 densities")
    ap.add_argument("--shared-only", action="store_true",
                    help="shared masks only; keep the per-channel rows already in --out")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    shapes = SHAPES[:1] if args.quick else SHAPES
    densities = [1.0, 0.5, 0.1] if args.quick else DENSITIES
    kinds = [k for k in KINDS if k != "per-channel"] if args.shared_only else KINDS
    rng = np.random.default_rng(0)
    rows, summary = [], []
    print(f"numba threads {numba.get_num_threads()}, torch {torch.__version__ if torch else None}")
    for name, n, c, hw in shapes:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        dense, _ = conv2d_forward(x, w, None, 1, 1)
        t_torch = None
        if torch is not None:
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)
            conv = torch.nn.functional.conv2d
            with torch.no_grad():
                conv(xt, wt, padding=1)
                t_torch = float(np.median(
                    [timed(conv, xt, wt, padding=1) for _ in range(args.repeats)]
                ))
        for kind in kinds:
            kind_rows = []
            for density in densities:
                mask = make_mask(kind, rng, n, c, hw, hw, density)
                y, macs = gated_conv2d(x, w, mask, None, 1, 1)  # warm-up and check
                m = mask[:, None] if mask.ndim == 3 else mask
                err = float(np.abs(y - dense * m).max())
                t_d, t_g, t_alt, t_i = [], [], [], []
                alt = other_method(kind, x, w)
                conv2d_inference(x, w, None, 1, 1)  # picks its kernel for this shape once
                for _ in range(args.repeats):
                    t_d.append(timed(conv2d_inference, x, w, None, 1, 1))
                    t_i.append(timed(conv2d_forward, x, w, None, 1, 1))
                    t_g.append(timed(gated_conv2d, x, w, mask, None, 1, 1))
                    if alt:
                        t_alt.append(timed(gated_conv2d, x, w, mask, None, 1, 1, method=alt))
                dense_macs = dense.size * c * 9
                r = macs / dense_macs  # measured density, from the kernel's own count
                row = dict(
                    shape=name, n=n, c=c, t=c, hw=hw, kind=kind, target_density=density,
                    density=r, macs=macs, dense_macs=dense_macs, method=auto_method(kind, x, w),
                    t_dense=float(np.median(t_d)), t_gated=float(np.median(t_g)),
                    t_im2col=float(np.median(t_i)),
                    t_torch=t_torch, max_abs_err=err, other_method=alt,
                    t_other=float(np.median(t_alt)) if alt else None,
                )
                row["ideal_saving"] = 1.0 - r
                row["real_saving"] = 1.0 - row["t_gated"] / row["t_dense"]
                row["real_over_ideal"] = (
                    row["real_saving"] / row["ideal_saving"] if r < 1.0 else None
                )
                # the fastest run of each, less sensitive to other processes' bursts
                row["t_dense_min"], row["t_gated_min"] = float(min(t_d)), float(min(t_g))
                row["real_over_ideal_min"] = (
                    (1.0 - row["t_gated_min"] / row["t_dense_min"]) / row["ideal_saving"]
                    if r < 1.0 else None
                )
                kind_rows.append(row)
                ratio = "  -                 "
                if r < 1.0:
                    ratio = (f"{row['real_over_ideal']:5.2f} "
                             f"(min-time {row['real_over_ideal_min']:5.2f})")
                vs_torch = f"  gated/torch {row['t_gated'] / t_torch:5.2f}" if t_torch else ""
                other = ""
                if alt:
                    other = f"  {alt}/{row['method']} {row['t_other'] / row['t_gated']:4.2f}"
                print(
                    f"{name:20s} {kind:16s} r={r:.3f}  dense {row['t_dense'] * 1e3:6.1f} ms  "
                    f"gated {row['t_gated'] * 1e3:6.1f} ms  ideal {row['ideal_saving']:4.2f}  "
                    f"real {row['real_saving']:5.2f}  real/ideal {ratio}{vs_torch}{other}",
                    flush=True,
                )
            full = [q["t_gated"] for q in kind_rows if q["density"] == 1.0]
            for q in kind_rows:  # the same kernel on an all-true mask as the baseline
                q["real_over_ideal_vs_full_mask"] = (
                    (1.0 - q["t_gated"] / full[0]) / q["ideal_saving"]
                    if full and q["density"] < 1.0 else None
                )
            be = break_even(kind_rows)
            summary.append(dict(shape=name, kind=kind, break_even_density=be))
            print(f"{name:20s} {kind:16s} break-even density {be:.2f}", flush=True)
            rows.extend(kind_rows)
        if t_torch:
            t_ours = np.median([r["t_dense"] for r in rows if r["shape"] == name])
            t_im2col = np.median([r["t_im2col"] for r in rows if r["shape"] == name])
            print(f"{name:20s} dense conv2d_inference / torch dense: {t_ours / t_torch:.2f} "
                  f"(im2col conv2d_forward / torch: {t_im2col / t_torch:.2f})")
    if args.shared_only and args.out.exists():  # keep the per-channel rows measured before
        old = json.loads(args.out.read_text())
        rows += [q for q in old["rows"] if q["kind"] == "per-channel"]
        summary += [q for q in old["break_even"] if q["kind"] == "per-channel"]
    print_targets(rows)
    result = dict(
        threads=dict(numba=numba.get_num_threads(), blas=os.environ["OPENBLAS_NUM_THREADS"],
                     torch=torch.get_num_threads() if torch else None),
        environment=environment(),
        torch=torch.__version__ if torch else None,
        repeats=args.repeats, rows=rows, break_even=summary,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
