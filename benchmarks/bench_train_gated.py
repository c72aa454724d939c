"""Benchmark: the gated conv's training pair vs the dense training conv, float32, one thread.

Times ``F.conv2d_forward`` + ``F.conv2d_backward`` (dense) against
``gated_conv2d_forward`` + ``gated_conv2d_backward`` (kernels/gated_train.py)
on the ResNet-20 conv shapes (16@32x32, 32@16x16, 64@8x8 at stride 1, and the
stride-2 transitions 16->32 and 32->64), 3x3, padding 1, batch 128 and 32, at
densities 1.0, 0.65, 0.5, 0.3, with i.i.d. random shared masks (N, Ho, Wo)
and per-channel masks (N, T, Ho, Wo).  Every time is the median of
``--repeats`` rounds in which all variants of a shape run interleaved in this
one process, so load from other jobs hits them alike; the ratios are what to
read.  Timer: process CPU time (one thread), wall time kept beside it.

Per row: ``ideal`` = 1 - (MACs executed / dense MACs), as the kernels counted
them; ``saving`` = 1 - t_gated / t_dense per pass and for both;
``kept`` = saving / ideal (when ideal >= 0.05).  Then the cost centres of the gated backward
(shared mask, r = 0.65, batch 128) and of the dense training conv, against
the time of its bare GEMMs, and per-channel forward alternatives.

    python benchmarks/bench_train_gated.py [--repeats 9] [--quick]

Writes ``benchmarks/results/train_gated.json``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"  # before NumPy and Numba load their thread pools

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from lccl_ref.bench import environment  # noqa: E402
from lccl_ref.functional import conv2d_backward, conv2d_forward  # noqa: E402
from lccl_ref.functional.conv import weight_matrix  # noqa: E402
from lccl_ref.functional.im2col import add_windows, sliding_windows  # noqa: E402
from lccl_ref.kernels import gated_conv2d  # noqa: E402
from lccl_ref.kernels.gated_train import (  # noqa: E402
    gated_conv2d_backward,
    gated_conv2d_forward,
)
from lccl_ref.kernels.gather import fill_rows, plan_pieces  # noqa: E402
from lccl_ref.kernels.train_gather import add_rows, chunk_rows, gather_grad_rows  # noqa: E402

SHAPES = [  # (name, C, T, H = W, stride)
    ("16@32x32", 16, 16, 32, 1),
    ("32@16x16", 32, 32, 16, 1),
    ("64@8x8", 64, 64, 8, 1),
    ("16->32@32x32/2", 16, 32, 32, 2),
    ("32->64@16x16/2", 32, 64, 16, 2),
]
DENSITIES = [1.0, 0.65, 0.5, 0.3]


def cpu_and_wall(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - t0


def interleaved(fns: dict, repeats: int) -> dict:
    """Median CPU and wall seconds of each zero-argument callable, one round at a time."""
    for fn in fns.values():  # warm-up: compile, allocate, BLAS buffers
        fn()
    runs = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            runs[k].append(cpu_and_wall(fn))
    return {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
            for k, v in runs.items()}


def layer_rows(name, c, t, h, s, n, repeats, rng):
    """Dense and gated times of one layer shape at every density and mask kind."""
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)
    w = (rng.standard_normal((t, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    ho = (h + 2 - 3) // s + 1
    dv = rng.standard_normal((n, t, ho, ho)).astype(np.float32)
    fns, caches, masks = {}, {}, {}
    _, dense_cache = conv2d_forward(x, w, None, s, 1)
    fns["dense_f"] = lambda: conv2d_forward(x, w, None, s, 1)
    fns["dense_b"] = lambda: conv2d_backward(dv, dense_cache)
    for kind in ("shared", "per-channel"):
        for r in DENSITIES:
            shape = (n, ho, ho) if kind == "shared" else (n, t, ho, ho)
            mask = masks[kind, r] = rng.random(shape) < r
            caches[kind, r] = gated_conv2d_forward(x, w, mask, s, 1)[1]
            fns[kind, r, "f"] = lambda m=mask: gated_conv2d_forward(x, w, m, s, 1)
            fns[kind, r, "b"] = lambda cc=caches[kind, r]: gated_conv2d_backward(dv, cc)
    times = interleaved(fns, repeats)
    d_f, d_b = times["dense_f"][0], times["dense_b"][0]
    rows = []
    for (kind, r), cache in caches.items():
        g_f, g_b = times[kind, r, "f"][0], times[kind, r, "b"][0]
        macs = cache.macs
        ideal = 1 - macs["forward"] / macs["dense_forward"]
        saving = {"forward": 1 - g_f / d_f, "backward": 1 - g_b / d_b,
                  "both": 1 - (g_f + g_b) / (d_f + d_b)}
        rows.append(dict(
            layer=name, batch=n, mask=kind, density=r,
            density_measured=float(masks[kind, r].mean()),
            ideal_saving=ideal, saving=saving,
            kept={k: (v / ideal if ideal >= 0.05 else None) for k, v in saving.items()},
            ms=dict(dense_f=1e3 * d_f, dense_b=1e3 * d_b, gated_f=1e3 * g_f, gated_b=1e3 * g_b),
            wall_ms=dict(dense_f=1e3 * times["dense_f"][1], dense_b=1e3 * times["dense_b"][1],
                         gated_f=1e3 * times[kind, r, "f"][1],
                         gated_b=1e3 * times[kind, r, "b"][1]),
            macs=macs))
    return rows


def gated_backward_stages(x, w, mask, dv, s, repeats):
    """Median CPU ms of each stage of ``gather_backward`` (shared mask), run stage by stage."""
    n, c, h, _ = x.shape
    wm = weight_matrix(w)
    k_len, t = wm.shape
    ho = mask.shape[1]
    cuts, cnt = plan_pieces(mask, chunk_rows(k_len, 4))
    pieces = list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), cnt.tolist()))
    max_m = max(cnt.max(), 1)
    xp = np.zeros((n, h + 2, h + 2, c), np.float32)  # all images padded once: stage timing only
    rows, dcols = np.empty((max_m, k_len), np.float32), np.empty((max_m, k_len), np.float32)
    dv_r, dwm = np.empty((max_m, t), np.float32), np.zeros_like(wm)

    def pad():
        xp[:, 1 : h + 1, 1 : h + 1] = x.transpose(0, 2, 3, 1)
        xp[:] = 0  # the dx buffer's zeroing, as gather_backward does per image

    def crop():
        return np.ascontiguousarray(xp[:, 1 : h + 1, 1 : h + 1].transpose(0, 3, 1, 2))

    def over_pieces(step):
        def run():
            for g0, g1, m in pieces:
                n0 = g0 // ho
                if m:
                    step(g0, g1, m, n0)
        return run

    stages = {
        "pad x, zero dx buffer": pad,
        "fill_rows (im2col of active rows)": over_pieces(
            lambda g0, g1, m, n0: fill_rows(xp[n0:], n0, mask, g0, g1, 3, 3, s, s, rows)),
        "gather_grad_rows": over_pieces(
            lambda g0, g1, m, n0: gather_grad_rows(dv, mask, g0, g1, dv_r)),
        "GEMM dW": over_pieces(lambda g0, g1, m, n0: np.matmul(rows[:m].T, dv_r[:m], out=dwm)),
        "GEMM dcols": over_pieces(
            lambda g0, g1, m, n0: np.matmul(dv_r[:m], wm.T, out=dcols[:m])),
        "add_rows (col2im of active rows)": over_pieces(
            lambda g0, g1, m, n0: add_rows(xp[n0:], n0, mask, g0, g1, 3, 3, s, s, dcols)),
        "crop dx, back to NCHW": crop,
    }
    return {k: 1e3 * v[0] for k, v in interleaved(stages, repeats).items()}


def dense_stages(x, w, dv, s, repeats):
    """Cost centres of the dense training conv: both passes, and each of their steps run
    over the batch in ~1024-row chunks in reused buffers, as conv2d_forward/backward do."""
    n, c, h, _ = x.shape
    t, ho = w.shape[0], dv.shape[2]
    wm = weight_matrix(w)
    imgs = max(1, min(n, 1024 // (ho * ho)))
    groups = range(0, n - imgs + 1, imgs)
    xp = np.zeros((imgs, h + 2, h + 2, c), np.float32)
    win = sliding_windows(xp, (3, 3), (s, s), (ho, ho))  # (imgs, Ho, Wo, 3, 3, C) view
    m = imgs * ho * ho
    cols, dcols = np.empty((m, 9 * c), np.float32), np.empty((m, 9 * c), np.float32)
    out, dyr, dwm = np.empty((m, t), np.float32), np.empty((m, t), np.float32), np.empty_like(wm)
    y = np.empty_like(dv)

    def each_group(step):
        def run():
            for b0 in groups:
                step(b0)
        return run

    _, cache = conv2d_forward(x, w, None, s, 1)
    big = np.ones((1024, 1024), np.float32)
    fns = {
        "conv2d_forward": lambda: conv2d_forward(x, w, None, s, 1),
        "conv2d_backward": lambda: conv2d_backward(dv, cache),
        "x to padded NHWC": each_group(lambda b0: xp[:, 1 : h + 1, 1 : h + 1].__setitem__(
            slice(None), x[b0 : b0 + imgs].transpose(0, 2, 3, 1))),
        "im2col rows (copy)": each_group(lambda b0: np.copyto(cols.reshape(win.shape), win)),
        "GEMM X @ W": each_group(lambda b0: np.matmul(cols, wm, out=out)),
        "y to NCHW": each_group(lambda b0: y[b0 : b0 + imgs].__setitem__(
            slice(None), out.reshape(imgs, ho, ho, t).transpose(0, 3, 1, 2))),
        "dy rows (copy)": each_group(lambda b0: np.copyto(
            dyr.reshape(imgs, ho, ho, t), dv[b0 : b0 + imgs].transpose(0, 2, 3, 1))),
        "GEMM dW = X.T @ dY": each_group(lambda b0: np.matmul(cols.T, dyr, out=dwm)),
        "GEMM dX rows = dY @ W.T": each_group(lambda b0: np.matmul(dyr, wm.T, out=dcols)),
        "col2im (add_windows)": each_group(lambda b0: add_windows(
            xp, dcols.reshape(win.shape), (s, s))),
        "1024^3 GEMM (peak)": lambda: big @ big,
    }
    res = {k: 1e3 * v[0] for k, v in interleaved(fns, repeats).items()}
    gflop = 2 * n * ho * ho * 9 * c * t / 1e9
    res["GFLOP/s of the conv GEMMs"] = 3 * gflop / sum(
        res[k] / 1e3 for k in ("GEMM X @ W", "GEMM dW = X.T @ dY", "GEMM dX rows = dY @ W.T"))
    res["GFLOP/s of a 1024^3 GEMM"] = 2 * 1024**3 / 1e9 / (res["1024^3 GEMM (peak)"] / 1e3)
    res["f+b over its 3 GEMMs"] = (res["conv2d_forward"] + res["conv2d_backward"]) / sum(
        res[k] for k in ("GEMM X @ W", "GEMM dW = X.T @ dY", "GEMM dX rows = dY @ W.T"))
    return res


def per_channel_alternatives(repeats, rng):
    """Forward only, 32@16x16 batch 128, random per-channel masks: our union-row GEMM vs
    the inference kernels that compute only active (position, channel) cells."""
    x = rng.standard_normal((128, 32, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
    out = {}
    for r in (0.65, 0.3, 0.1):
        mask = rng.random((128, 32, 16, 16)) < r
        fns = {"dense": lambda: conv2d_forward(x, w, None, 1, 1),
               "union rows + GEMM (ours)": lambda m=mask: gated_conv2d_forward(x, w, m, 1, 1),
               "tiled (inference)": lambda m=mask: gated_conv2d(x, w, m, None, 1, 1, "tiled"),
               "direct dot loop": lambda m=mask: gated_conv2d(x, w, m, None, 1, 1, "direct")}
        t = interleaved(fns, max(3, repeats // 3))
        out[str(r)] = {k: t[k][0] / t["dense"][0] for k in fns if k != "dense"}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="batch 32 only, 3 repeats")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_gated.json"))
    args = ap.parse_args()
    repeats = 3 if args.quick else args.repeats
    batches = (32,) if args.quick else (128, 32)
    rng = np.random.default_rng(0)
    res = dict(environment(), what=__doc__.split("\n")[0], repeats=repeats,
               timer="median process CPU time, all variants of a layer interleaved",
               threads=dict(numba=numba.get_num_threads(),
                            blas=os.environ["OPENBLAS_NUM_THREADS"]), rows=[])
    for n in batches:
        for name, c, t, h, s in SHAPES:
            rows = layer_rows(name, c, t, h, s, n, repeats, rng)
            res["rows"] += rows
            for row in rows:
                k = row["kept"]
                print(f"{name:>15} b{n:<3} {row['mask']:>11} r={row['density']:.2f} "
                      f"ideal {row['ideal_saving']:.2f}  saving f {row['saving']['forward']:+.2f} "
                      f"b {row['saving']['backward']:+.2f} both {row['saving']['both']:+.2f}"
                      + (f"  kept {k['both']:.2f}" if k["both"] is not None else ""), flush=True)
    res["stages_gated_backward_shared_r0.65_b128"] = {}
    res["stages_dense_b128"] = {}
    n = 32 if args.quick else 128
    for name, c, t, h, s in SHAPES:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = (rng.standard_normal((t, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        ho = (h + 2 - 3) // s + 1
        dv = rng.standard_normal((n, t, ho, ho)).astype(np.float32)
        mask = rng.random((n, ho, ho)) < 0.65
        st = gated_backward_stages(x, w, mask, dv, s, repeats)
        res["stages_gated_backward_shared_r0.65_b128"][name] = st
        res["stages_dense_b128"][name] = ds = dense_stages(x, w, dv, s, repeats)
        print(name, "gated backward stages (ms):", {k: round(v, 1) for k, v in st.items()})
        print(name, "dense:", {k: round(v, 2) for k, v in ds.items()}, flush=True)
    res["per_channel_forward_alternatives_time_over_dense"] = alt = per_channel_alternatives(
        repeats, rng)
    print("per-channel forward, time / dense:", alt)
    res["load_average_1_5_15_min_at_end"] = list(os.getloadavg())
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
