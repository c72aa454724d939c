"""Number formats of the report: every number in an ``ours`` row goes through one of these.

The report does no arithmetic: each number it prints is one number of ``results.json``
run through one of :data:`FORMATTERS` (the tests hold it to that).
"""

from __future__ import annotations

import math


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


def na(v, fmt) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt(v)


def table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def section(title, text, header, rows) -> list[str]:
    """A report section: ``## title``, one paragraph, a table, and a blank line."""
    return [f"## {title}", "", text, "", *table(header, rows), ""]
