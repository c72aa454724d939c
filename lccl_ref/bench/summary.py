"""The benchmark's result as text a newcomer can read: one table, a legend line per column.

:func:`format_summary` prints one row per network, batch and path (the path says
whose kernels made the figure), then the LCCL layers timed in isolation, then
ResNet-18's layers next to the paper's figures; every column is explained in the
legend under its table.
"""

from __future__ import annotations

PATH_LEGEND = (
    "  path        teaching = the modules' own eval forward (NumPy + plain Numba kernels);\n"
    "              fast = the same modules after lccl_ref.fast.accelerate(model);\n"
    "              engine = lccl_ref.fast.Engine, the whole network in one compiled call")
LEGEND = PATH_LEGEND + """
  cheap       the cheap branch of every LCCL layer (1x1xCxT: a mask per channel)
  batch       images per forward pass
  r           mean density: fraction of the expensive convolutions' outputs computed
  plain ms    median time of the plain network (each LCCL replaced by its expensive conv)
  LCCL ms     median time of the LCCL network (cheap branch, mask, gated conv)
  MACs saved  theoretical speed-up, 1 - MACs executed / MACs of the plain network
  time saved  real speed-up, 1 - LCCL ms / plain ms
  time/MACs   time saved / MACs saved: 1.00 = the clock saves what the MACs promise
              (the paper's ResNet-18: 0.59); "best" uses each network's fastest call"""

LAYER_LEGEND = """
  layers      the LCCL layers alone, each timed in isolation on its network input
              (teaching path), summed: MACs saved, time saved, time/MACs;
  vs r=1      time/MACs against the gated kernel itself at r = 1 (every cell computed)
  vs torch    time saved against PyTorch's dense conv, one thread (when installed)"""


def format_summary(result) -> str:
    """The :func:`lccl_ref.bench.run_benchmark` result as a plain-text report."""
    head = (f"{'path':9s} {'cheap':8s} {'batch':>5s} {'r':>5s} {'plain ms':>9s} "
            f"{'LCCL ms':>9s} {'MACs saved':>10s} {'time saved':>10s} {'time/MACs':>9s} "
            f"{'best':>5s}")
    lines = ["Whole network, theoretical vs real speed-up:", head]
    for r in result["summary"]:
        if "skipped" in r:
            lines.append(f"{r['path']:9s} {r['kind']:8s} {r['batch']:5d}  n/a: "
                         f"{r['skipped'][:70]}")
            continue
        lines.append(f"{r['path']:9s} {r['kind']:8s} {r['batch']:5d} {r['mean_density']:5.2f} "
                     f"{r['ms_plain']:9.2f} {r['ms_sparse']:9.2f} {_pct(r['theoretical']):>10s} "
                     f"{_pct(r['real']):>10s} {_fmt(r['ratio']):>9s} {_fmt(r['ratio_min']):>5s}")
    lines += ["", "Legend:", LEGEND]
    lay = [r for r in result["summary"] if r.get("layers")]
    if lay:
        lines += ["", "LCCL layers in isolation (teaching path):",
                  f"{'cheap':8s} {'batch':>5s} {'MACs saved':>10s} {'time saved':>10s} "
                  f"{'time/MACs':>9s} {'vs r=1':>7s} {'vs torch':>8s}"]
        for r in lay:
            s = r["layers"]
            lines.append(f"{r['kind']:8s} {r['batch']:5d} {_pct(s['theoretical']):>10s} "
                         f"{_pct(s['real']):>10s} {_fmt(s['ratio']):>9s} "
                         f"{_fmt(s['ratio_vs_gated_full']):>7s} "
                         f"{_pct(s.get('real_vs_torch')):>8s}")
        lines.append(LAYER_LEGEND)
    r18s = result.get("resnet18") or {}
    for k, (path, r18) in enumerate(r18s.items()):
        n, p = r18["network"], r18["paper"]
        if k == 0:
            lines += ["", f"ResNet-18 layers, {r18['input_size']}x{r18['input_size']}, batch 1, "
                          f"kxkxCx1 at r = {r18['target_density']}, summed over the layers:"]
        lines.append(f"  {path + ' path':13s}: {n['macs_dense']:.2e} -> {n['macs_lccl']:.2e} MACs, "
                     f"{n['ms_dense']:.1f} -> {n['ms_lccl']:.1f} ms, MACs saved "
                     f"{_pct(n['theoretical'])}, time saved {_pct(n['real'])}, time/MACs "
                     f"{_fmt(n['ratio'])}")
    if r18s:
        lines.append(f"  {'paper (GPU)':13s}: {p['macs_dense']:.1e} -> {p['macs_lccl']:.1e} "
                     f"FLOPs, {p['ms_dense']} -> {p['ms_lccl']} ms, MACs saved "
                     f"{_pct(p['theoretical'])}, time saved {_pct(p['real'])}, time/MACs "
                     f"{p['ratio']:.2f}")
    return "\n".join(lines)


def _pct(v):
    return "" if v is None else f"{100 * v:.1f}%"


def _fmt(ratio):
    return "n/a" if ratio is None else f"{ratio:.2f}"
