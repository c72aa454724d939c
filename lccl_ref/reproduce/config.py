"""What a reproduce run trains and measures: the runs, the density curve, the modes.

Start here to change the experiment: :data:`RUNS` (the networks of the paper's
tables, plain and LCCL side by side), :data:`CURVE_TARGETS` (the density targets
of the accuracy-vs-density curve), :data:`SPARSITY_VARIANTS` (the cheap branches
of the sparsity table) and :data:`MODES` (how big each mode is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (run name, cheap kind, placement, LCCL settings). Settings "recipe": the data set's
# recipe for LCCL nets (bounded gate started open, density budget; lccl_ref.train.RECIPES);
# "paper": the paper's layer as published (ReLU gate, cheap BN at 1/0, no budget).
RUNS = (
    ("baseline", "none", "aft-aft", None),
    ("1x1xCxT/aft-aft", "1x1xCxT", "aft-aft", "recipe"),
    ("kxkxCx1/aft-aft", "kxkxCx1", "aft-aft", "recipe"),
    ("1x1xCx1/aft-aft", "1x1xCx1", "aft-aft", "recipe"),
    ("kxkxCx1/aft-bef", "kxkxCx1", "aft-bef", "recipe"),
    ("kxkxCx1/bef-bef", "kxkxCx1", "bef-bef", "recipe"),
    ("kxkxCx1/bef-aft", "kxkxCx1", "bef-aft", "recipe"),
    ("kxkxCx1/aft-aft, paper's layer", "kxkxCx1", "aft-aft", "paper"),
)
BENCH_RUN = "kxkxCx1/aft-aft"
#: The curve: the recipe's kxkxCx1/aft-aft network trained toward each target (the
#: recipe's own target is the run ``BENCH_RUN``).
CURVE_KIND = "kxkxCx1"
#: The sparsity table's cheap branches: (label, cheap BN?, L1 weight on the gate).
SPARSITY_VARIANTS = (
    ("conv+relu", False, 0.0),
    ("conv+l1+relu, λ=0.001", False, 1e-3),
    ("conv+l1+relu, λ=0.01", False, 1e-2),
    ("conv+bn+relu", True, 0.0),
)

# Per mode: training subset / test subset (None = all), epochs and batch size (None = the
# data set's recipe), the sparsity experiment's subset and epochs (None = the recipe's),
# the curve's targets, the batch of the formula table, the benchmark's batch sizes and
# repeats, and the input size of the ResNet-18 layers.
MODES = {
    "tiny": dict(subset=64, test_subset=50, epochs=1, batch_size=32, sparsity_subset=64,
                 sparsity_epochs=1, curve_targets=(0.4,), formula_batch=8,
                 bench_batches=(1, 8), bench_repeats=2, resnet18_size=32),
    "quick": dict(subset=2000, test_subset=500, epochs=3, batch_size=None,
                  sparsity_subset=1000, sparsity_epochs=3, curve_targets=(0.4, 0.8),
                  formula_batch=32, bench_batches=(1, 32), bench_repeats=3, resnet18_size=112),
    "full": dict(subset=None, test_subset=None, epochs=None, batch_size=None,
                 sparsity_subset=None, sparsity_epochs=None,
                 curve_targets=(0.3, 0.45, 0.75, 0.9), formula_batch=100,
                 bench_batches=(1, 128), bench_repeats=5, resnet18_size=224),
}


@dataclass
class ReproduceConfig:
    """Everything a reproduce run depends on (stored in ``results.json`` under ``config``)."""

    dataset: str = "mnist5k"
    data_dir: str | None = None
    model: str | None = None
    mode: str = "full"
    epochs: int | None = None
    subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    out: str = "lccl_reproduce"
    progress: bool = True
    runs: tuple = field(default_factory=lambda: tuple(r[0] for r in RUNS))
    curve: bool = True

    def settings(self) -> dict:
        """The mode's settings with the explicit overrides applied."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {self.mode!r}")
        s = dict(MODES[self.mode])
        for key in ("epochs", "subset", "test_subset"):
            if getattr(self, key) is not None:
                s[key] = getattr(self, key)
        if self.subset is not None:
            s["sparsity_subset"] = self.subset
        return s
