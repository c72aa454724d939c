"""The paper's tables and figures next to ours: ``report.md``, PNG figures, ``results.json``.

Start at :func:`write_report` (:mod:`.write`).  The paper's figures are in
:mod:`.paper`, the sections in :mod:`.tables` and :mod:`.speed`, the figures in
:mod:`.figures`, the number formats in :mod:`.formats` and the schema of the results
in :mod:`.results`.
"""

from .figures import plot_accuracy_density, plot_density, plot_masks, plot_speedup
from .formats import FORMATTERS, fmt_f2, fmt_f3, fmt_int, fmt_pct, fmt_sci
from .paper import PAPER_CHEAP, PAPER_FORMULAS, PAPER_PLACEMENT, PAPER_REAL, PAPER_SPARSITY
from .results import check_results, jsonable, write_json
from .tables import CHEAP_KINDS, PLACEMENT_ORDER
from .write import FIGURES, ours_label, render_report, write_report

__all__ = ["CHEAP_KINDS", "FIGURES", "FORMATTERS", "PLACEMENT_ORDER", "PAPER_CHEAP",
           "PAPER_FORMULAS", "PAPER_PLACEMENT",
           "PAPER_REAL", "PAPER_SPARSITY", "check_results", "fmt_f2", "fmt_f3", "fmt_int",
           "fmt_pct", "fmt_sci", "jsonable", "write_json", "ours_label", "plot_accuracy_density",
           "plot_density", "plot_masks", "plot_speedup", "render_report", "write_report"]
