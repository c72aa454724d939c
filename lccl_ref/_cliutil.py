"""Small helpers shared by the command-line modules (cli, reproduce, bench, report).

Kept below every command module so that none of them imports another's
private helpers, and nothing imports :mod:`lccl_ref.cli`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def bounded_int(maximum: int):
    """argparse type: an int in ``[1, maximum]``."""
    def parse(text: str) -> int:
        v = positive_int(text)
        if v > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum}, got {text!r}")
        return v

    return parse


def check_out_file(out, force: bool, flag: str = "--out") -> Path:
    """``out``, a file to write: refused (ValueError, one line) when it is a folder, or
    exists and ``force`` is false, so that no earlier result is overwritten unasked."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"{flag} {str(out)!r} is a folder; give a file name")
    if path.exists() and not force:
        raise ValueError(f"{flag} {str(out)!r} exists; pass --force to overwrite it or "
                         f"choose another file")
    return path


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    v = non_negative_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def density_or_none(text: str):
    """argparse type: a density in [0, 1], or the word ``none``."""
    return "none" if text.strip().lower() == "none" else fraction(text)


def float_pair(text: str) -> tuple[float, float]:
    """argparse type: two finite floats ``A,B``."""
    parts = text.split(",")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 2 or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected two numbers A,B, got {text!r}")
    return vals


def jsonable(obj):
    """Tuples to lists, numpy values to Python ones, NaN/inf to None (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
