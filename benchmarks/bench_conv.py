"""Benchmark (not a test): dense conv2d forward/backward against PyTorch and the naive twin.

Single-threaded float32 on the layer shapes the paper's networks spend their time in:
CIFAR ResNet-20 (C = T = 16 at 32x32, 32 at 16x16, 64 at 8x8; batch 128) and
ResNet-18's first stage (64 channels at 56x56, batch 1 and 8); 3x3 kernels, stride 1,
padding 1.  Prints milliseconds, GFLOP/s (2 * MACs / time) and the ratio to
``torch.nn.functional.conv2d`` (when torch is importable; it is an optional ``bench``
extra, never imported by the library), and writes ``benchmarks/results/conv.json``.

Run::

    python benchmarks/bench_conv.py [--repeats 7] [--out benchmarks/results/conv.json]

How it measures
---------------
* One thread everywhere: the ``*_NUM_THREADS`` variables are set before numpy is
  imported, threadpoolctl (if present) caps the BLAS pool, ``torch.set_num_threads(1)``.
* Every repeat times, back to back, torch forward, ours forward, torch backward, ours
  backward, so that slow phases of a shared machine hit both sides alike; the tables
  report medians over the repeats.  Both wall-clock time and the process's CPU time
  are recorded; the ratios use CPU time, which other processes on a shared machine
  disturb less (wall time is in the JSON).
* Backward is "given dy, compute dx and dw": ours is ``conv2d_backward``; torch's is
  ``torch.autograd.grad`` on a retained graph.
* Warm-up: one forward and one backward per shape before timing, and first of all
  one 512x512x512 float32 matmul.  That last one matters for OpenBLAS: in a fresh
  process its single-threaded SGEMM runs the forward's ``(M, 576) @ (576, 64)``
  product about 2x slower, and stays slow, until some GEMM has packed a large
  operand (roughly ``k >= 576`` and ``n >= 384``) -- after that it is fast for the
  rest of the process.  Our reading: the first large GEMM faults in the pages of
  OpenBLAS's packing buffer, which the kernel's prefetches otherwise hit unmapped.
  Nothing in the library triggers it for 64-channel layers, so the script also
  times a *cold* pass (a fresh process without that matmul) and stores it under
  ``cold_openblas`` -- a training script should run one such matmul at start.
* The naive twin (a Python loop per output cell) is timed on one image and at most
  8 output channels, and its time is extrapolated to the full shape in proportion to
  the MACs (marked ``naive_extrapolated``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import redirect_stdout  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from lccl_ref.functional import conv2d_backward, conv2d_forward, conv2d_naive  # noqa: E402

try:
    import torch
except ImportError:  # the comparison is optional
    torch = None

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

#: (name, N, C, T, H, W); all 3x3, stride 1, padding 1
SHAPES = [
    ("resnet20_16ch_32x32_b128", 128, 16, 16, 32, 32),
    ("resnet20_32ch_16x16_b128", 128, 32, 32, 16, 16),
    ("resnet20_64ch_8x8_b128", 128, 64, 64, 8, 8),
    ("resnet18_64ch_56x56_b1", 1, 64, 64, 56, 56),
    ("resnet18_64ch_56x56_b8", 8, 64, 64, 56, 56),
]
K, STRIDE, PAD = 3, 1, 1
TARGET_RATIO = 1.5


def macs(n, c, t, ho, wo, k=K):
    """Multiply-accumulates of one dense conv forward: N * Ho * Wo * T * C * k * k."""
    return n * ho * wo * t * c * k * k


def timed(fn):
    """Run ``fn`` once; return ``(wall_seconds, cpu_seconds, result)``."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def blas_info():
    if threadpool_info is not None:
        return [{k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                       "threading_layer", "architecture", "filepath")}
                for d in threadpool_info()]
    buf = io.StringIO()
    with redirect_stdout(buf):
        np.show_config()
    return buf.getvalue()


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def naive_estimate(x, w, n_macs):
    """Time conv2d_naive on one image and <= 8 output channels; scale by MACs."""
    xs, ws = x[:1], w[:8]
    _, _, ho, wo = conv2d_naive(xs[:, :, :4, :4], ws[:1], None, STRIDE, PAD).shape  # warm
    wall, cpu, y = timed(lambda: conv2d_naive(xs, ws, None, STRIDE, PAD))
    part = macs(1, x.shape[1], ws.shape[0], y.shape[2], y.shape[3])
    return {"measured_on": {"N": 1, "T": int(ws.shape[0])},
            "measured_cpu_ms": cpu * 1e3,
            "extrapolated_cpu_ms": cpu * 1e3 * n_macs / part}


def bench_shape(name, n, c, t, h, w, repeats, rng):
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = (rng.standard_normal((t, c, K, K), dtype=np.float32) / np.float32(np.sqrt(c * K * K)))
    y, cache = conv2d_forward(x, wt, None, STRIDE, PAD)
    assert y.dtype == np.float32
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    conv2d_backward(dy, cache)  # warm-up (see module docstring)
    n_macs = macs(n, c, t, y.shape[2], y.shape[3])
    fns = {
        "ours_fwd": lambda: conv2d_forward(x, wt, None, STRIDE, PAD),
        "ours_bwd": lambda: conv2d_backward(dy, cache),
    }
    check = {}
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_(True)
        wtt = torch.from_numpy(wt).requires_grad_(True)
        dyt = torch.from_numpy(dy)
        yt = torch.nn.functional.conv2d(xt, wtt, padding=PAD)
        dxt, dwt = torch.autograd.grad(yt, (xt, wtt), dyt, retain_graph=True)
        dx, dw, _ = conv2d_backward(dy, cache)
        check = {f"max_rel_diff_{k}": float(np.abs(ours - ref).max() / np.abs(ref).max())
                 for k, ours, ref in (("y", y, yt.detach().numpy()), ("dx", dx, dxt.numpy()),
                                      ("dw", dw, dwt.numpy()))}

        def torch_fwd():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wtt, padding=PAD)

        fns = {"torch_fwd": torch_fwd, "ours_fwd": fns["ours_fwd"],
               "torch_bwd": lambda: torch.autograd.grad(yt, (xt, wtt), dyt, retain_graph=True),
               "ours_bwd": fns["ours_bwd"]}
    for f in fns.values():
        f()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            tw, tc, _ = timed(f)
            wall[k].append(tw)
            cpu[k].append(tc)
    res = {"name": name, "N": n, "C": c, "T": t, "H": h, "W": w, "kernel": K, "stride": STRIDE,
           "padding": PAD, "macs": n_macs, "repeats": repeats,
           "median_cpu_ms": {k: float(np.median(v) * 1e3) for k, v in cpu.items()},
           "median_wall_ms": {k: float(np.median(v) * 1e3) for k, v in wall.items()},
           "check_vs_torch": check}
    # backward does two GEMMs of the forward's size (dx and dw): 2 * MACs multiply-adds
    res["gflops_cpu"] = {k: (2 if k.endswith("fwd") else 4) * n_macs / (v * 1e-3) / 1e9
                         for k, v in res["median_cpu_ms"].items()}
    if torch is not None:
        m = res["median_cpu_ms"]
        res["ratio_to_torch"] = {"fwd": m["ours_fwd"] / m["torch_fwd"],
                                 "bwd": m["ours_bwd"] / m["torch_bwd"]}
        mw = res["median_wall_ms"]
        res["ratio_to_torch_wall"] = {"fwd": mw["ours_fwd"] / mw["torch_fwd"],
                                      "bwd": mw["ours_bwd"] / mw["torch_bwd"]}
    res["naive_extrapolated"] = naive_estimate(x, wt, n_macs)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "conv.json"))
    ap.add_argument("--cold", action="store_true",
                    help="skip the OpenBLAS warm-up matmul and the cold pass (used internally)")
    args = ap.parse_args(argv)
    if not args.cold:
        np.matmul(np.ones((512, 512), np.float32), np.ones((512, 512), np.float32))
    if threadpool_limits is not None:
        threadpool_limits(1)
    if torch is not None:
        torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    results = []
    hdr = (f"{'shape':26s} {'GMAC':>6s} | {'ours fwd':>9s} {'torch fwd':>9s} {'ratio':>5s} | "
           f"{'ours bwd':>9s} {'torch bwd':>9s} {'ratio':>5s} | {'GFLOP/s fwd':>11s} | "
           f"{'naive fwd (extrap.)':>19s}")
    print("CPU-time medians in ms; ratio = ours / torch (target: forward <= "
          f"{TARGET_RATIO}x)\n" + hdr + "\n" + "-" * len(hdr))
    for shape in SHAPES:
        r = bench_shape(*shape, repeats=args.repeats, rng=rng)
        results.append(r)
        m, g = r["median_cpu_ms"], r["gflops_cpu"]
        tf, tb = m.get("torch_fwd", float("nan")), m.get("torch_bwd", float("nan"))
        print(f"{r['name']:26s} {r['macs'] / 1e9:6.3f} | {m['ours_fwd']:9.1f} {tf:9.1f} "
              f"{m['ours_fwd'] / tf:5.2f} | {m['ours_bwd']:9.1f} {tb:9.1f} "
              f"{m['ours_bwd'] / tb:5.2f} | {g['ours_fwd']:11.1f} | "
              f"{r['naive_extrapolated']['extrapolated_cpu_ms']:17.0f}ms", flush=True)
    meta = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "threads": 1,
        "dtype": "float32",
        "timer": "medians of time.process_time() per call (wall-clock in median_wall_ms)",
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": None if torch is None else torch.__version__,
        "blas": blas_info(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "target": f"forward within {TARGET_RATIO}x of torch on every shape",
    }
    if torch is not None:
        ratios = [r["ratio_to_torch"]["fwd"] for r in results]
        meta["target_met"] = all(q <= TARGET_RATIO for q in ratios)
        meta["worst_forward_ratio"] = max(ratios)
    doc = {"meta": meta, "shapes": results}
    if not args.cold:
        doc["cold_openblas"] = cold_pass(args.repeats)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


def cold_pass(repeats):
    """Re-run in a fresh process without the OpenBLAS warm-up; return its per-shape ratios."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cold.json"
        print("\ncold pass (fresh process, no OpenBLAS warm-up matmul):", flush=True)
        subprocess.run([sys.executable, __file__, "--cold", "--repeats", str(repeats),
                        "--out", str(path)], check=True)
        cold = json.loads(path.read_text())
    return {"note": "fresh process without the 512^3 warm-up matmul (see module docstring)",
            "shapes": [{"name": r["name"], "median_cpu_ms": r["median_cpu_ms"],
                        "ratio_to_torch": r.get("ratio_to_torch")} for r in cold["shapes"]]}


if __name__ == "__main__":
    main()
