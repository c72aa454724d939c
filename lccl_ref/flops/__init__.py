"""Multiply-accumulate (MAC) accounting, arithmetic only: closed forms and per-layer tables.

What is counted: **multiply-accumulates, not FLOPs** (the paper calls them FLOPs; one
MAC is one multiply and one add), every tap, zero-padding taps included -- the
convention of the paper and of the gated kernels' own counters.  Start at
:mod:`.formulas` (the paper's cost table, one function per row), then :mod:`.tables`
(a model's per-layer table, and the kernels' counts against it).
"""

from .formulas import (
    authors_code_overhead_1x1xCx1,
    cheap_shape,
    conv_macs,
    kind_speedup_ratio,
    lccl_kind_macs,
    lccl_macs,
    slides_kxkxCx1_macs,
    slides_kxkxCx1_speedup,
    speedup_ratio,
    train_macs,
)
from .tables import counted_vs_table, format_table, mac_table

__all__ = [
    "authors_code_overhead_1x1xCx1",
    "cheap_shape",
    "conv_macs",
    "counted_vs_table",
    "format_table",
    "kind_speedup_ratio",
    "lccl_kind_macs",
    "train_macs",
    "lccl_macs",
    "mac_table",
    "slides_kxkxCx1_macs",
    "slides_kxkxCx1_speedup",
    "speedup_ratio",
]
