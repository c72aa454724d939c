"""The report's figures: masks, density per layer, speed-up per layer, accuracy vs density.

Each ``plot_*`` writes one PNG (matplotlib, Agg backend, 100 dpi) from the results
dict (:mod:`.results` has its schema); :func:`plot_masks` takes the images and masks
that ``lccl_ref.reproduce.mask_examples`` collects.
"""

from __future__ import annotations

import numpy as np

from .formats import fmt_pct


# ---------------------------------------------------------------- figures
def plt_agg():
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
    plt = plt_agg()
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
    plt = plt_agg()
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
    plt = plt_agg()
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
        ax.set_title(f"batch {b['batch']}, teaching path: theoretical {fmt_pct(b['theoretical'])}, "
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
    plt = plt_agg()
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
