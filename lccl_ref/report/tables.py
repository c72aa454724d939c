"""The report's tables, one function per section: the paper's rows above ours.

Each ``*_section(results)`` returns the markdown lines of one section of
``report.md``: the accuracy of every LCCL run next to the plain one, then the paper's
sections 1-4 (formulas, sparsity of a cheap branch, cheap kernels, placements); the
speed-up section is :mod:`.speed`.  Start at :func:`accuracy_section`.
"""

from __future__ import annotations

from .formats import fmt_f2, fmt_int, fmt_pct, fmt_sci, na, section, table
from .paper import PAPER_CHEAP, PAPER_FORMULAS, PAPER_PLACEMENT, PAPER_SPARSITY

CHEAP_KINDS = ("1x1xCxT", "kxkxCx1", "1x1xCx1")
PLACEMENT_ORDER = ("aft-aft", "aft-bef", "bef-bef", "bef-aft")


def _run_key(kind: str, placement: str = "aft-aft") -> str:
    return f"{kind}/{placement}"


def fmt_speedup(r) -> str:
    """The paper's speed-up (from the masks, ``speedup_mask``), and what the kernels ran
    (``speedup``) in brackets where a dense fallback made the two differ."""
    mask, ran = r.get("speedup_mask", r["speedup"]), r["speedup"]
    return fmt_pct(mask) if abs(mask - ran) < 5e-4 else f"{fmt_pct(mask)} (ran {fmt_pct(ran)})"


def accuracy_section(res) -> list[str]:
    runs = res["runs"]
    base = runs.get("baseline")
    lines = [
        "## Accuracy: every LCCL network next to the plain one",
        "",
        "Same data, initialisation seed, minibatches and training recipe for every row; "
        "accuracy on the test set in eval mode on the sparse path (which equals the dense "
        "path). Density = fraction of the expensive convs' output cells computed (mean "
        "over the LCCL layers, lowest layer in brackets); speed-up = 1 − needed / dense "
        "MACs of the whole network, cheap branches included, needed = the expensive convs "
        "at their open cells only (the paper's ratio); where a layer ran a dense fallback "
        "(a per-channel mask denser than `kernels.TILED_BELOW`) the MACs it ran give the "
        "figure in brackets. *recipe* = the data set's "
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
            na(target, fmt_pct), fmt_speedup(r)))
    lines += table(("run", "settings", "accuracy", "plain accuracy", "Δ pt", "density (min)",
                     "target", "speed-up"), rows)
    if res.get("curve"):
        lines += ["", "Accuracy vs density (`accuracy_density.png`): the recipe's "
                  "kxkxCx1 network trained toward each target.", ""]
        lines += table(("target", "accuracy", "density (min)", "speed-up"), [
            (na(p["target"], fmt_pct), fmt_pct(p["test_accuracy"]),
             f"{fmt_pct(p['mean_density'])} ({fmt_pct(p['min_density'])})",
             fmt_speedup(p)) for p in res["curve"]])
    return lines + [""]


def formula_section(res) -> list[str]:
    f = res["formula"]
    text = ("Multiply-accumulates (the paper's FLOPs) of one convolution with output X x Y, "
            "C input and T output channels, kernel k, and density r (fraction of output cells "
            "still computed). The paper's rows give the closed forms; our rows put one layer "
            f"of our trained networks into them: layer `{f['layer']}` with X={f['X']}, "
            f"Y={f['Y']}, C={f['C']}, T={f['T']}, k={f['k']}, counted over a batch of "
            f"{f['batch']} test image(s). *closed form* evaluates the formula at the measured "
            "r; *counted* is what the sparse kernels actually executed (expensive + cheap "
            "branch). The slides' version of the shared kernel swaps C and T; it agrees with "
            "the count only when C = T.")
    rows = [("paper", s, cost, sp, "", "", "", "") for s, cost, sp in PAPER_FORMULAS]
    rows += [("ours", r["structure"], "", "", na(r["r"], fmt_pct), fmt_int(r["macs_closed"]),
              fmt_int(r["macs_counted"]),
              f"{fmt_pct(r['speedup_closed'])} / {fmt_pct(r['speedup_counted'])}")
             for r in f["rows"]]
    return section("1. Cost and speed-up formulas", text,
                   ("source", "structure", "cost", "speed-up ratio", "r (ours)",
                    "MACs closed form", "MACs counted", "speed-up closed / counted"), rows)


def sparsity_section(res) -> list[str]:
    s = res["sparsity"]
    text = ("Fraction of zeros of the cheap branch V' (1 − density), averaged over the LCCL "
            f"layers of `{s['model']}` with `{s['kind']}` cheap branches at `aft-aft` and the "
            f"paper's layer (ReLU gate, no density budget), trained for {s['epochs']} "
            "epoch(s). The cheap branch is a biased conv + ReLU, the same with an L1 penalty "
            "λ·Σ_l mean(V'_l) added to the loss, or conv + BN + ReLU. *final* is the test set "
            "after the last epoch (eval mode); mean and range are over the training batches "
            f"of the second half of the epochs. Stability rule (ours): {s['stability_rule']}")
    rows = [("paper", n, z, b, "") for n, z, b in PAPER_SPARSITY]
    rows += [("ours", label, f"{fmt_pct(v['test_zero_fraction'][-1])} (mean "
              f"{fmt_pct(v['mean'])}, {fmt_pct(v['min'])} – {fmt_pct(v['max'])})",
              f"{'stable' if v['stable'] else 'unstable'} (std {fmt_pct(v['std'])})",
              fmt_pct(v["test_accuracy"])) for label, v in s["variants"].items()]
    return section("2. Sparsity of a cheap branch: Conv+ReLU vs Conv+L1+ReLU vs Conv+BN+ReLU",
                   text, ("source", "cheap branch", "zeros of V' (final; mean, range over "
                          "training)", "behaviour", "test accuracy (ours)"), rows)


def cheap_section(res) -> list[str]:
    runs, meta = res["runs"], res["meta"]
    text = ("MACs per image / speed-up ratio / top-1 error %. The paper's rows are CIFAR-10 "
            "ResNets; ours are our model on our data (not comparable in accuracy: see the "
            "note at the top). Speed-up = 1 − (network MACs with LCCL at the measured "
            "densities) / (dense network MACs), the cheap branches' cost included.")
    rows = [("paper", m, d, a, b, "") for m, d, a, b in PAPER_CHEAP]
    base = runs.get("baseline")
    cells = []
    for kind in CHEAP_KINDS:
        r = runs.get(_run_key(kind))
        cells.append("n/a" if r is None else
                     f"{fmt_sci(r['macs_lccl'])} / {fmt_speedup(r)} / "
                     f"{fmt_f2(r['test_error_pct'])}")
    dense = fmt_sci(base["macs_dense"]) if base else "n/a"
    base_err = fmt_f2(base["test_error_pct"]) if base else "n/a"
    rows.append(("ours", f"`{meta['model']}` (baseline error {base_err})", dense, *cells))
    return section("3. Cheap kernels (aft-aft placement)", text,
                   ("source", "model", "dense MACs", "1x1xCxT", "kxkxCx1",
                    "1x1xCx1 (authors' code default)"), rows)


def placement_section(res) -> list[str]:
    runs = res["runs"]
    text = ("Reading (ours, the slides do not define the words): for each of the block's two "
            "convolutions, the cheap branch takes its input *aft*er the BN-ReLU that precedes "
            "that convolution (the expensive conv's own input) or *bef*ore it. Top-1 error % / "
            "speed-up; ours also give the mean density of the LCCL layers.")
    paper = {p: (e, s) for p, e, s in PAPER_PLACEMENT}
    rows = []
    for p in PLACEMENT_ORDER:
        r = runs.get(_run_key("kxkxCx1", p))
        ours = ("n/a", "n/a", "n/a") if r is None else (
            fmt_f2(r["test_error_pct"]), fmt_speedup(r), na(r["mean_density"], fmt_pct))
        rows.append((p, *paper[p], *ours))
    return section("4. Placement of the LCCL in a pre-activation block (kxkxCx1)", text,
                   ("placement", "paper error %", "paper speed-up", "ours error %",
                    "ours speed-up", "ours mean density"), rows)
