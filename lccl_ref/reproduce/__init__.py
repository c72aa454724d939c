"""``lccl-ref reproduce``: the paper's tables and figures from our own runs.

Start reading at :func:`run_reproduce` (:mod:`.driver`), which calls, in order,
:mod:`.sparsity` (the cheap branch's zeros), :mod:`.runs` (plain and LCCL
networks, the density curve), :mod:`.formula` (closed forms vs counted MACs) and
:mod:`.timing` (dense vs sparse time, on the teaching and the fast path); :mod:`.config`
says what is trained in each mode, and :mod:`lccl_ref.report` writes the results out.
"""

from .config import BENCH_RUN, CURVE_KIND, MODES, RUNS, SPARSITY_VARIANTS, ReproduceConfig
from .driver import run_reproduce
from .formula import formula_table, mask_examples
from .runs import lccl_settings, train_run
from .sparsity import STABILITY_RULE, STABLE_RANGE, sparsity_experiment, summarise_zeros
from .timing import run_bench, run_bench_resnet18

__all__ = [
    "BENCH_RUN",
    "CURVE_KIND",
    "MODES",
    "RUNS",
    "SPARSITY_VARIANTS",
    "STABILITY_RULE",
    "STABLE_RANGE",
    "ReproduceConfig",
    "formula_table",
    "lccl_settings",
    "mask_examples",
    "run_bench",
    "run_bench_resnet18",
    "run_reproduce",
    "sparsity_experiment",
    "summarise_zeros",
    "train_run",
]
