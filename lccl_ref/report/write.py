"""``report.md``, ``results.json`` and the figures of ``lccl-ref reproduce``, written out.

:func:`write_report` takes the ``results`` dict that :mod:`lccl_ref.reproduce` builds
(plain JSON types; :func:`.results.check_results` documents the schema) and writes
``report.md`` (:func:`render_report`: the accuracy table, then the paper's sections
next to ours, :mod:`.tables` and :mod:`.speed`), ``results.json`` and the PNG figures
of :mod:`.figures` into one folder.
"""

from __future__ import annotations

import json
import os

from .figures import plot_accuracy_density, plot_density, plot_masks, plot_speedup, plt_agg
from .formats import fmt_f2
from .results import check_results, jsonable
from .speed import real_section
from .tables import (
    accuracy_section,
    cheap_section,
    formula_section,
    placement_section,
    sparsity_section,
)

FIGURES = ("masks.png", "density.png", "speedup.png", "accuracy_density.png")


# ---------------------------------------------------------------- report.md
def ours_label(meta: dict) -> str:
    """One sentence that says where our numbers come from."""
    return (
        f"data set `{meta['dataset']}` ({meta['train_size']} training / {meta['test_size']} "
        f"test images), model `{meta['model']}`, {meta['epochs']} epoch(s), batch "
        f"{meta['batch_size']}, seed {meta['seed']}, trained with {meta['threads']} thread(s) on a "
        f"{meta['cpu_count']}-core machine ({meta['platform']}), mode `{meta['mode']}`"
    )


def render_report(results: dict) -> str:
    """The markdown text of ``report.md`` for a ``results`` dict (see the module docstring)."""
    check_results(results)
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
    lines += accuracy_section(results)
    lines += formula_section(results)
    lines += sparsity_section(results)
    lines += cheap_section(results)
    lines += placement_section(results)
    lines += real_section(results)
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
        plt = plt_agg()
        fig, ax = plt.subplots(figsize=(3, 1))
        ax.text(0.5, 0.5, "no LCCL mask recorded", ha="center", va="center")
        ax.axis("off")
        fig.savefig(paths["masks.png"], dpi=100)
        plt.close(fig)
    plot_density(results, paths["density.png"])
    plot_speedup(results, paths["speedup.png"])
    plot_accuracy_density(results, paths["accuracy_density.png"])
    return paths
