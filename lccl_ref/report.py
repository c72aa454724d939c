"""The paper's tables and figures next to ours: ``report.md``, PNG figures, ``results.json``.

:func:`write_report` takes the ``results`` dict that :mod:`lccl_ref.reproduce`
builds (plain JSON types only) and writes, into one folder:

``report.md``
    Our accuracy table (every LCCL run next to the plain net: accuracy, density,
    speed-up), then five tables with the paper's rows (labelled ``paper``) above
    ours (labelled ``ours``): the speed-up formulas, the sparsity of a cheap
    branch, the cheap kernels, the placements, theoretical vs real speed-up.
``results.json``
    ``results`` itself.  The report does no arithmetic: every number in an
    ``ours`` row is one number of ``results.json`` run through one of
    :data:`FORMATTERS` (the tests hold it to that).
``masks.png``, ``density.png``, ``speedup.png``, ``accuracy_density.png``
    The cheap branch's mask over input images, the density of every LCCL
    layer, theoretical vs real speed-up per layer, accuracy vs density.

The schema of ``results`` (keys the renderer reads; extra keys are kept)::

    meta      dataset, source, model, train_size, test_size, epochs, batch_size,
              seed, mode, threads, cpu_count, platform, elapsed_s
    formula   layer, X, Y, C, T, k, batch, rows: [{structure, r, macs_closed,
              macs_counted, speedup_closed, speedup_counted}]
    sparsity  model, kind, epochs, stability_rule,
              variants: {label: {train_zero_fraction: [...], test_zero_fraction: [...],
                                 cheap_bn, l1, mean, min, max, std, final, stable,
                                 test_accuracy, layers}}
    runs      {run_name: {lccl, placement, settings, gate, budget, test_accuracy,
                          test_error_pct, macs_dense, macs_lccl, speedup, mean_density,
                          min_density, train_seconds,
                          layers: [{name, density, macs_dense, macs_lccl}]}}
    curve     [{target, test_accuracy, mean_density, min_density, speedup, settings}]
    bench     run, threads, repeats, batches: [{batch, dense_ms, sparse_ms, macs_dense,
              macs_sparse, theoretical, real, real_over_theoretical,
              layers: [{name, theoretical, real}],
              engine: None | {dense_ms, sparse_ms, theoretical, real,
                              real_over_theoretical, real_over_theoretical_ops,
                              real_over_theoretical_alternating, layers}}],
              resnet18 (optional): {input_size, density, batch, macs_dense, macs_sparse,
              dense_ms, sparse_ms, theoretical, real, real_over_theoretical}

Densities, speed-ups and zero fractions are fractions in [0, 1]; the report
prints them as percentages.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ._cliutil import jsonable

# ---------------------------------------------------------------- the paper's figures
# Restated from the paper (see /work/shared/PAPER.md); printed verbatim in "paper" rows.

PAPER_FORMULAS = (
    # (structure, cost, speed-up ratio)
    ("plain conv", "XYTk²C", "0"),
    ("LCCL, k'xk'xCxT", "XYTC(k'² + k²r)", "1 − (k'²/k² + r)"),
    ("LCCL, 1x1xCxT", "XYTC(1 + k²r)", "1 − (1/k² + r)"),
    ("LCCL, kxkxCx1 (shared)", "XYk²C(1 + Tr)", "1 − (1/T + r)"),
    ("slides' kxkxCx1 (C, T swapped)", "XYTk²(1 + Cr)", "1 − (1/C + r)"),
)

PAPER_SPARSITY = (
    # (structure, fraction of zeros after the ReLU, behaviour over training)
    ("Conv+ReLU", "< 10%", "stable"),
    ("Conv+regularisation+ReLU", "5–70%", "unstable"),
    ("Conv+BN+ReLU", "about 30%", "stable"),
)

PAPER_CHEAP = (
    # (model, dense FLOPs, 1x1xCxT FLOPs / speed-up / error, kxkxCx1 FLOPs / speed-up / error)
    ("ResNet-20", "4.1E7", "3.2E7 / 20.3% / 8.57", "2.6E7 / 34.9% / 8.32"),
    ("ResNet-32", "6.9E7", "4.7E7 / 31.2% / 9.26", "4.9E7 / 28.1% / 7.44"),
    ("ResNet-44", "9.7E7", "6.3E7 / 34.8% / 8.57", "6.5E7 / 32.5% / 7.29"),
)

PAPER_PLACEMENT = (
    # (placement, top-1 error %, speed-up), ResNet-20 with kxkxCx1 on CIFAR-10
    ("aft-aft", "8.32", "34.9%"),
    ("aft-bef", "8.71", "24.1%"),
    ("bef-bef", "11.62", "39.8%"),
    ("bef-aft", "12.85", "55.4%"),
)

PAPER_REAL = (
    # (model, FLOPs dense -> LCCL, ms dense -> LCCL, theoretical, real)
    ("ResNet-18 (ImageNet, GPU)", "1.8E9 → 1.2E9", "97.1 → 77.1", "34.6%", "20.5%"),
    ("ResNet-34 (ImageNet, GPU)", "3.6E9 → 2.7E9", "169.3 → 138.6", "24.8%", "18.1%"),
)

CHEAP_KINDS = ("1x1xCxT", "kxkxCx1", "1x1xCx1")
PLACEMENT_ORDER = ("aft-aft", "aft-bef", "bef-bef", "bef-aft")
FIGURES = ("masks.png", "density.png", "speedup.png", "accuracy_density.png")


# ---------------------------------------------------------------- number formats
def fmt_int(v) -> str:
    """Exact integer with thousands separators: ``40,551,040``."""
    return f"{int(round(v)):,}"


def fmt_sci(v) -> str:
    """The paper's style for MACs, three significant digits: ``4.06E7``."""
    if v == 0:
        return "0"
    mant, exp = f"{float(v):.2E}".split("E")
    return f"{mant}E{int(exp)}"


def fmt_pct(v) -> str:
    """A fraction as a percentage with one decimal: ``0.349 -> 34.9%``."""
    return f"{100.0 * float(v):.1f}%"


def fmt_f2(v) -> str:
    """Two decimals (error %, milliseconds)."""
    return f"{float(v):.2f}"


def fmt_f3(v) -> str:
    """Three decimals (ratios)."""
    return f"{float(v):.3f}"


FORMATTERS = (fmt_int, fmt_sci, fmt_pct, fmt_f2, fmt_f3)


def _run_key(kind: str, placement: str = "aft-aft") -> str:
    return f"{kind}/{placement}"


def _na(v, fmt) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt(v)


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


# ---------------------------------------------------------------- report.md
def ours_label(meta: dict) -> str:
    """One sentence that says where our numbers come from."""
    return (
        f"data set `{meta['dataset']}` ({meta['train_size']} training / {meta['test_size']} "
        f"test images), model `{meta['model']}`, {meta['epochs']} epoch(s), batch "
        f"{meta['batch_size']}, seed {meta['seed']}, trained with {meta['threads']} thread(s) on a "
        f"{meta['cpu_count']}-core machine ({meta['platform']}), mode `{meta['mode']}`"
    )


def _formula_section(res) -> list[str]:
    f = res["formula"]
    lines = [
        "## 1. Cost and speed-up formulas",
        "",
        "Multiply-accumulates (the paper's FLOPs) of one convolution with output X x Y, "
        "C input and T output channels, kernel k, and density r (fraction of output cells "
        "still computed). The paper's rows give the closed forms; our rows put one layer of "
        f"our trained networks into them: layer `{f['layer']}` with X={f['X']}, Y={f['Y']}, "
        f"C={f['C']}, T={f['T']}, k={f['k']}, counted over a batch of {f['batch']} test "
        "image(s). *closed form* evaluates the formula at the measured r; *counted* is what "
        "the sparse kernels actually executed (expensive + cheap branch). The slides' "
        "version of the shared kernel swaps C and T; it agrees with the count only when C = T.",
        "",
    ]
    rows = [("paper", s, cost, sp, "", "", "", "") for s, cost, sp in PAPER_FORMULAS]
    for r in f["rows"]:
        rows.append((
            "ours", r["structure"], "", "", _na(r["r"], fmt_pct), fmt_int(r["macs_closed"]),
            fmt_int(r["macs_counted"]),
            f"{fmt_pct(r['speedup_closed'])} / {fmt_pct(r['speedup_counted'])}",
        ))
    lines += _table(
        ("source", "structure", "cost", "speed-up ratio", "r (ours)", "MACs closed form",
         "MACs counted", "speed-up closed / counted"),
        rows,
    )
    return lines + [""]


def _sparsity_section(res) -> list[str]:
    s = res["sparsity"]
    lines = [
        "## 2. Sparsity of a cheap branch: Conv+ReLU vs Conv+L1+ReLU vs Conv+BN+ReLU",
        "",
        "Fraction of zeros of the cheap branch V' (1 − density), averaged over the LCCL "
        f"layers of `{s['model']}` with `{s['kind']}` cheap branches at `aft-aft` and the "
        "paper's layer (ReLU gate, no density budget), trained for "
        f"{s['epochs']} epoch(s). The cheap branch is a biased conv + ReLU, the same with "
        "an L1 penalty λ·Σ_l mean(V'_l) added to the loss, or conv + BN + ReLU. "
        "*final* is the test set after the last epoch (eval mode); mean and range are over "
        "the training batches of the second half of the epochs. "
        f"Stability rule (ours): {s['stability_rule']}",
        "",
    ]
    rows = [("paper", n, z, b, "") for n, z, b in PAPER_SPARSITY]
    for label, v in s["variants"].items():
        rows.append((
            "ours", label,
            f"{fmt_pct(v['test_zero_fraction'][-1])} (mean {fmt_pct(v['mean'])}, "
            f"{fmt_pct(v['min'])} – {fmt_pct(v['max'])})",
            f"{'stable' if v['stable'] else 'unstable'} (std {fmt_pct(v['std'])})",
            fmt_pct(v["test_accuracy"]),
        ))
    lines += _table(
        ("source", "cheap branch", "zeros of V' (final; mean, range over training)",
         "behaviour", "test accuracy (ours)"), rows)
    return lines + [""]


def _accuracy_section(res) -> list[str]:
    runs = res["runs"]
    base = runs.get("baseline")
    lines = [
        "## Accuracy: every LCCL network next to the plain one",
        "",
        "Same data, initialisation seed, minibatches and training recipe for every row; "
        "accuracy on the test set in eval mode on the sparse path (which equals the dense "
        "path). Density = fraction of the expensive convs' output cells computed (mean "
        "over the LCCL layers, lowest layer in brackets); speed-up = 1 − executed / dense "
        "MACs of the whole network, cheap branches included. *recipe* = the data set's "
        "LCCL recipe (bounded gate started open, density budget); *paper* = the paper's "
        "layer (ReLU gate, no budget).",
        "",
    ]
    rows = []
    for name, r in runs.items():
        delta = "" if base is None or name == "baseline" else \
            f"{100 * (r['test_accuracy'] - base['test_accuracy']):+.1f}"
        target = (r.get("budget") or {}).get("target")
        rows.append((
            f"`{name}`", r.get("settings") or "plain", fmt_pct(r["test_accuracy"]),
            fmt_pct(base["test_accuracy"]) if base else "n/a", delta or "–",
            "–" if r["mean_density"] is None else
            f"{fmt_pct(r['mean_density'])} ({fmt_pct(r['min_density'])})",
            _na(target, fmt_pct), fmt_pct(r["speedup"])))
    lines += _table(("run", "settings", "accuracy", "plain accuracy", "Δ pt", "density (min)",
                     "target", "speed-up"), rows)
    if res.get("curve"):
        lines += ["", "Accuracy vs density (`accuracy_density.png`): the recipe's "
                  "kxkxCx1 network trained toward each target.", ""]
        lines += _table(("target", "accuracy", "density (min)", "speed-up"), [
            (_na(p["target"], fmt_pct), fmt_pct(p["test_accuracy"]),
             f"{fmt_pct(p['mean_density'])} ({fmt_pct(p['min_density'])})",
             fmt_pct(p["speedup"])) for p in res["curve"]])
    return lines + [""]


def _cheap_section(res) -> list[str]:
    runs, meta = res["runs"], res["meta"]
    lines = [
        "## 3. Cheap kernels (aft-aft placement)",
        "",
        "MACs per image / speed-up ratio / top-1 error %. The paper's rows are CIFAR-10 "
        "ResNets; ours are our model on our data (not comparable in accuracy: see the "
        "note at the top). Speed-up = 1 − (network MACs with LCCL at the measured "
        "densities) / (dense network MACs), the cheap branches' cost included.",
        "",
    ]
    rows = [("paper", m, d, a, b, "") for m, d, a, b in PAPER_CHEAP]
    base = runs.get("baseline")
    cells = []
    for kind in CHEAP_KINDS:
        r = runs.get(_run_key(kind))
        cells.append("n/a" if r is None else
                     f"{fmt_sci(r['macs_lccl'])} / {fmt_pct(r['speedup'])} / "
                     f"{fmt_f2(r['test_error_pct'])}")
    dense = fmt_sci(base["macs_dense"]) if base else "n/a"
    base_err = fmt_f2(base["test_error_pct"]) if base else "n/a"
    rows.append(("ours", f"`{meta['model']}` (baseline error {base_err})", dense, *cells))
    lines += _table(("source", "model", "dense MACs", "1x1xCxT", "kxkxCx1",
                     "1x1xCx1 (authors' code default)"), rows)
    return lines + [""]


def _placement_section(res) -> list[str]:
    runs = res["runs"]
    lines = [
        "## 4. Placement of the LCCL in a pre-activation block (kxkxCx1)",
        "",
        "Reading (ours, the slides do not define the words): for each of the block's two "
        "convolutions, the cheap branch takes its input *aft*er the BN-ReLU that precedes "
        "that convolution (the expensive conv's own input) or *bef*ore it. "
        "Top-1 error % / speed-up; ours also give the mean density of the LCCL layers.",
        "",
    ]
    paper = {p: (e, s) for p, e, s in PAPER_PLACEMENT}
    rows = []
    for p in PLACEMENT_ORDER:
        e, s = paper[p]
        r = runs.get(_run_key("kxkxCx1", p))
        ours = ("n/a", "n/a", "n/a") if r is None else (
            fmt_f2(r["test_error_pct"]), fmt_pct(r["speedup"]), _na(r["mean_density"], fmt_pct))
        rows.append((p, e, s, *ours))
    lines += _table(("placement", "paper error %", "paper speed-up", "ours error %",
                     "ours speed-up", "ours mean density"), rows)
    return lines + [""]


def _speed_row(label, macs, times) -> tuple:
    """One ``ours`` row of the speed-up table: MACs from ``macs``, the rest from ``times``."""
    return ("ours", label, f"{fmt_sci(macs['macs_dense'])} → {fmt_sci(macs['macs_sparse'])}",
            f"{fmt_f2(times['dense_ms'])} → {fmt_f2(times['sparse_ms'])}",
            fmt_pct(times["theoretical"]), fmt_pct(times["real"]),
            _na(times["real_over_theoretical"], fmt_f3))


def _real_section(res) -> list[str]:
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
            rows.append(_speed_row(f"batch {x['batch']}", x, x))
            if x.get("engine"):
                rows.append(_speed_row(f"batch {x['batch']}, engine", x, x["engine"]))
        skipped = next((x["engine_skipped"] for x in b["batches"] if x.get("engine_skipped")),
                       None)
        if skipped:
            lines[2] += f" The engine did not run this network: {skipped}."
        if any(x.get("engine") for x in b["batches"]):
            lines[2] += (" Rows marked `engine` run both networks with `lccl_ref.engine` (the "
                         "whole network compiled into one call, image by image: no per-layer "
                         "Python dispatch; timed in alternating runs of up to 10 consecutive "
                         "calls of one network, `results.json` has the ratio from strictly "
                         "alternating calls as well); the others layer by layer through the "
                         "modules.")
        r18 = b.get("resnet18")
        if r18:
            lines[2] += (f" The last row times ResNet-18's ImageNet-shaped layers at "
                         f"{r18['input_size']}x{r18['input_size']} (random weights, kxkxCx1 "
                         "cheap branches calibrated to our network's mean density r, sum of "
                         "per-layer times), the direct counterpart of the paper's rows.")
            rows.append(_speed_row(
                f"ResNet-18 layers, {r18['input_size']}x{r18['input_size']}, batch "
                f"{r18['batch']}, r = {fmt_pct(r18['density'])}", r18, r18))
    lines += _table(("source", "network", "MACs dense → LCCL", "ms dense → LCCL",
                     "theoretical", "real", "real / theoretical"), rows)
    return lines + [""]


def render_report(results: dict) -> str:
    """The markdown text of ``report.md`` for a ``results`` dict (see the module docstring)."""
    _check_results(results)
    meta = results["meta"]
    lines = [
        "# More is Less (Dong et al., CVPR 2017): the paper's tables next to ours",
        "",
        f"**Ours:** {ours_label(meta)}; total run time {fmt_f2(meta['elapsed_s'])} s.",
        "",
        "**Paper:** rows labelled `paper` restate the paper's own figures (CIFAR-10 and "
        "ImageNet, GPU). Our accuracies on "
        f"`{meta['dataset']}` with a small subset and few epochs are **not comparable** to "
        "the paper's CIFAR-10 errors; the MAC counts, densities and speed-ups are measured "
        "the same way the paper defines them.",
        "",
    ]
    if meta["mode"] != "full":
        lines += [
            f"**Mode `{meta['mode']}`:** the networks trained for {meta['epochs']} epoch(s) on "
            f"{meta['train_size']} images, a fraction of the recipe, so their accuracies are "
            "a first look, one seed each (differences of a point or two are noise here); the "
            "MAC counts, densities and timings are exact for the networks as trained. Run "
            "without `--quick` for the full recipe.",
            "",
        ]
    bad = [name for name, r in results["runs"].items() if r.get("test_loss", 0.0) is None]
    if bad:
        lines += [
            "**Warning:** the eval pass of " + ", ".join(f"`{b}`" for b in bad) + " gave a "
            "non-finite loss (float32 overflow; typical of a network trained for a few steps "
            "whose BatchNorm running statistics have not settled). Train longer.",
            "",
        ]
    lines += _accuracy_section(results)
    lines += _formula_section(results)
    lines += _sparsity_section(results)
    lines += _cheap_section(results)
    lines += _placement_section(results)
    lines += _real_section(results)
    lines += [
        "## Figures",
        "",
        "- `masks.png`: test images and the cheap branch's mask (white = computed) in the "
        "first LCCL layers.",
        "- `density.png`: density of every LCCL layer, per run.",
        "- `speedup.png`: theoretical vs real speed-up per LCCL layer.",
        "- `accuracy_density.png`: test accuracy against density, the plain net as a line.",
        "",
        "All numbers of our rows are in `results.json`.",
        "",
    ]
    return "\n".join(lines)


_REQUIRED = {
    "meta": ("dataset", "model", "train_size", "test_size", "epochs", "batch_size", "seed",
             "mode", "threads", "cpu_count", "platform", "elapsed_s"),
    "formula": ("layer", "X", "Y", "C", "T", "k", "batch", "rows"),
    "sparsity": ("model", "kind", "epochs", "stability_rule", "variants"),
    "runs": (),
}


def _check_results(results) -> None:
    if not isinstance(results, dict):
        raise TypeError(f"results must be a dict, got {type(results).__name__}")
    for section, keys in _REQUIRED.items():
        if section not in results:
            raise ValueError(f"results is missing the section {section!r}; it has "
                             f"{sorted(results)}")
        missing = [k for k in keys if k not in results[section]]
        if missing:
            raise ValueError(f"results[{section!r}] is missing {missing}")


# ---------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_masks(images, masks: dict, path) -> None:
    """Images (first column) and, per labelled layer, its cheap-branch mask.

    Parameters
    ----------
    images : ndarray, (n, H, W) or (n, C, H, W); shown as grey (channel mean) images
    masks : dict label -> ndarray (n, h, w) or (n, T, h, w)
        Active cells (bool or 0/1). A per-channel mask is shown as the fraction of
        active channels at each position.
    path : where to write the PNG
    """
    plt = _plt()
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images.mean(axis=1)
    n = images.shape[0]
    cols = 1 + len(masks)
    fig, axes = plt.subplots(n, cols, figsize=(1.8 * cols, 1.8 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i], cmap="gray")
        if i == 0:
            axes[i, 0].set_title("input", fontsize=8)
        for j, (label, m) in enumerate(masks.items(), start=1):
            m = np.asarray(m, dtype=np.float64)
            mi = m[i].mean(axis=0) if m.ndim == 4 else m[i]
            axes[i, j].imshow(mi, cmap="gray", vmin=0, vmax=1)
            if i == 0:
                suffix = "\n(fraction of T active)" if m.ndim == 4 else ""
                axes[i, j].set_title(label + suffix, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("cheap-branch masks (white = expensive conv computed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_density(results: dict, path) -> None:
    """Grouped bars: density of each LCCL layer, one colour per LCCL run."""
    plt = _plt()
    runs = {k: r for k, r in results["runs"].items() if r.get("lccl", "none") != "none"
            and r.get("layers")}
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / max(len(runs), 1)
    for i, (name, r) in enumerate(runs.items()):
        dens = [lay["density"] for lay in r["layers"]]
        ax.bar(np.arange(len(dens)) + i * width, dens, width, label=name)
    names = next(iter(runs.values()))["layers"] if runs else []
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels([lay["name"] for lay in names], rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("density r (fraction computed)")
    ax.set_ylim(0, 1)
    ax.set_title(f"LCCL density per layer ({results['meta']['dataset']}, "
                 f"{results['meta']['model']})", fontsize=9)
    if runs:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_speedup(results: dict, path) -> None:
    """Per LCCL layer, theoretical vs real speed-up, one panel per benchmarked batch size."""
    plt = _plt()
    batches = (results.get("bench") or {}).get("batches", [])
    fig, axes = plt.subplots(1, max(len(batches), 1), figsize=(6 * max(len(batches), 1), 3.8),
                             squeeze=False)
    for ax, b in zip(axes[0], batches):
        lays = b.get("layers", [])
        x = np.arange(len(lays))
        ax.bar(x - 0.2, [lay["theoretical"] for lay in lays], 0.4, label="theoretical")
        ax.bar(x + 0.2, [lay["real"] for lay in lays], 0.4, label="real")
        ax.set_xticks(x)
        ax.set_xticklabels([lay["name"] for lay in lays], rotation=60, ha="right", fontsize=6)
        ax.axhline(0, color="black", linewidth=0.5)
        low = min([0.0] + [lay["real"] for lay in lays] + [lay["theoretical"] for lay in lays])
        ax.set_ylim(max(low, -1.0) - 0.05, 1.0)  # bars below -100% are clipped
        ax.set_title(f"batch {b['batch']}: network theoretical {fmt_pct(b['theoretical'])}, "
                     f"real {fmt_pct(b['real'])}", fontsize=9)
        ax.set_ylabel("speed-up (1 − sparse / dense)")
        ax.legend(fontsize=7)
    if not batches:
        axes[0, 0].text(0.5, 0.5, "no benchmark in this run", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_accuracy_density(results: dict, path) -> None:
    """Test accuracy against mean density: the curve's runs, the other LCCL runs as
    points, the plain network as a horizontal line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    curve = results.get("curve") or []
    if curve:
        ax.plot([p["mean_density"] for p in curve], [100 * p["test_accuracy"] for p in curve],
                "o-", label="kxkxCx1, recipe, toward each target")
    base = results["runs"].get("baseline")
    if base:
        ax.axhline(100 * base["test_accuracy"], color="black", lw=1, ls="--",
                   label="plain network")
    for name, r in results["runs"].items():
        if r["mean_density"] is not None:
            ax.scatter(r["mean_density"], 100 * r["test_accuracy"], s=14)
            ax.annotate(name, (r["mean_density"], 100 * r["test_accuracy"]), fontsize=6,
                        textcoords="offset points", xytext=(3, 2))
    ax.set_xlabel("density r (mean over LCCL layers; 1 − r is skipped)")
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"accuracy vs density ({results['meta']['dataset']}, "
                 f"{results['meta']['model']}, {results['meta']['epochs']} epoch(s))",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- writing

def write_report(results: dict, out_dir, mask_examples: dict | None = None) -> dict:
    """Write ``report.md``, ``results.json`` and the figures into ``out_dir``.

    Parameters
    ----------
    results : dict, the schema of the module docstring (numpy scalars are converted)
    out_dir : str or path-like; created if missing
    mask_examples : dict with ``images`` (n, H, W) or (n, C, H, W) and ``masks``
        (label -> (n, h, w) or (n, T, h, w)), or None (then ``masks.png`` says so)

    Returns
    -------
    paths : dict name -> written path
    """
    results = jsonable(results)
    text = render_report(results)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("report.md", "results.json",
                                                            *FIGURES)}
    with open(paths["results.json"], "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1, allow_nan=False)
    with open(paths["report.md"], "w", encoding="utf-8") as fh:
        fh.write(text)
    if mask_examples is not None and mask_examples.get("masks"):
        plot_masks(mask_examples["images"], mask_examples["masks"], paths["masks.png"])
    else:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(3, 1))
        ax.text(0.5, 0.5, "no LCCL mask recorded", ha="center", va="center")
        ax.axis("off")
        fig.savefig(paths["masks.png"], dpi=100)
        plt.close(fig)
    plot_density(results, paths["density.png"])
    plot_speedup(results, paths["speedup.png"])
    plot_accuracy_density(results, paths["accuracy_density.png"])
    return paths
