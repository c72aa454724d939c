"""Section 5 of the report: theoretical vs real speed-up, the paper's rows above ours.

Our rows say which path made each figure: the teaching path (the modules' own eval
forward), the fast path through the modules (``lccl_ref.fast.accelerate``), and the
fast path's engine (``lccl_ref.fast.Engine``, the whole network in one call).
"""

from __future__ import annotations

from .formats import fmt_f2, fmt_f3, fmt_pct, fmt_sci, na, table
from .paper import PAPER_REAL


def speed_row(label, macs, times) -> tuple:
    """One ``ours`` row of the speed-up table: MACs from ``macs``, the rest from ``times``."""
    return ("ours", label, f"{fmt_sci(macs['macs_dense'])} → {fmt_sci(macs['macs_sparse'])}",
            f"{fmt_f2(times['dense_ms'])} → {fmt_f2(times['sparse_ms'])}",
            fmt_pct(times["theoretical"]), fmt_pct(times["real"]),
            na(times["real_over_theoretical"], fmt_f3))


def real_section(res) -> list[str]:
    b = res.get("bench")
    lines = [
        "## 5. Theoretical vs real speed-up",
        "",
        "Theoretical = 1 − executed MACs / dense MACs; real = 1 − sparse time / dense time "
        "(eval forward of the whole network, float32, median of repeats). The paper's rows "
        "are ImageNet ResNets on a GPU with the authors' kernels.",
        "",
    ]
    rows = [("paper", m, f, t, th, re, "") for m, f, t, th, re in PAPER_REAL]
    if b:
        lines[2] += (f" Ours: the `{b['run']}` network, {b['threads']} thread(s), "
                     f"{b['repeats']} repeats, dense = the same network with each LCCL layer "
                     "replaced by its expensive conv alone.")
        if b.get("load_average") is not None:
            lines[2] += (f" The 1-minute load average was {fmt_f2(b['load_average'])} on "
                         f"{res['meta']['cpu_count']} core(s) when timing started: other "
                         "processes sharing the CPU make real speed-ups noisy.")
        for x in b["batches"]:
            rows.append(speed_row(f"batch {x['batch']}, teaching path", x, x))
            if x.get("fast"):
                rows.append(speed_row(f"batch {x['batch']}, fast path", x, x["fast"]))
            if x.get("engine"):
                rows.append(speed_row(f"batch {x['batch']}, fast path, engine", x, x["engine"]))
        skipped = next((x["engine_skipped"] for x in b["batches"] if x.get("engine_skipped")),
                       None)
        if skipped:
            lines[2] += f" The engine did not run this network: {skipped}."
        lines[2] += (" The *teaching path* is the modules' own eval forward (NumPy and plain "
                     "Numba kernels, each BN-ReLU a pass of its own); the *fast path* the same "
                     "modules after `lccl_ref.fast.accelerate` (LLVM-IR kernels, the faster "
                     "kernel per shape, each BN-ReLU folded into the next convolution's "
                     "input copy)")
        if any(x.get("engine") for x in b["batches"]):
            lines[2] += (", and its *engine* `lccl_ref.fast.Engine` (the whole network "
                         "compiled into one call, image by image: no per-layer Python "
                         "dispatch; timed in alternating runs of up to 10 consecutive calls "
                         "of one network, `results.json` has the ratio from strictly "
                         "alternating calls as well)")
        lines[2] += "."
        r18 = b.get("resnet18")
        if r18:
            lines[2] += (f" The last row times ResNet-18's ImageNet-shaped layers at "
                         f"{r18['input_size']}x{r18['input_size']} on the "
                         f"{r18.get('path', 'teaching')} path (random weights, kxkxCx1 "
                         "cheap branches calibrated to our network's mean density r, sum of "
                         "per-layer times), the direct counterpart of the paper's rows.")
            rows.append(speed_row(
                f"ResNet-18 layers, {r18['input_size']}x{r18['input_size']}, batch "
                f"{r18['batch']}, r = {fmt_pct(r18['density'])}, "
                f"{r18.get('path', 'teaching')} path", r18, r18))
    lines += table(("source", "network", "MACs dense → LCCL", "ms dense → LCCL",
                     "theoretical", "real", "real / theoretical"), rows)
    return lines + [""]
