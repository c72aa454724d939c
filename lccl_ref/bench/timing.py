"""Timing: interleaved medians, eval mode, and which path (teaching or fast) a model runs.

:func:`time_interleaved` is how every figure of the benchmarks is measured: the
functions compared are called in turn, round after round, so that a noisy neighbour
on the CPU slows them alike, and the medians are reported (the minima too, when
asked: on a shared machine noise only adds time).  :func:`on_path` runs a model on
the teaching path (the modules' default) or the fast one (``lccl_ref.fast.accelerate``)
for the length of a block; :func:`fast_path` is ``lccl_ref.fast``, or None where it is
absent (the teaching path runs without it, and so do the benchmarks, with fewer rows).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

#: The two ways to run a model's modules (the engine is a third, fast-path, way).
PATHS = ("teaching", "fast")


def fast_path():
    """``lccl_ref.fast``, or None when it cannot be imported."""
    try:
        from .. import fast
    except ImportError:
        return None
    return fast


@contextmanager
def on_path(model, path: str):
    """Within the block ``model`` runs on ``path`` ("teaching" or "fast"); then as before."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    fast = fast_path()
    if fast is None:
        if path == "fast":
            raise RuntimeError("the fast path (lccl_ref.fast) is not available")
        yield model
        return
    was = fast.is_accelerated(model)
    fast.accelerate(model, path == "fast")
    try:
        yield model
    finally:
        fast.accelerate(model, was)


@contextmanager
def eval_mode(model):
    """Within the block ``model`` is in eval mode (and NumPy quiet about overflow)."""
    was_training = model.training
    model.eval()
    try:
        with np.errstate(all="ignore"):
            yield model
    finally:
        model.train(was_training)


def timed(fn, *args, **kwargs) -> float:
    """Wall time (s) of one call ``fn(*args, **kwargs)``."""
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def ratio(real, theoretical):
    """``real / theoretical``, or None when nothing was to be saved."""
    return real / theoretical if theoretical > 0 else None


def time_interleaved(fns: dict, repeats: int, warmup: int = 1, minima: dict | None = None,
                     after=None, run: int = 1, clock=time.perf_counter) -> dict:
    """Median time (s) of each zero-argument callable, calls interleaved.

    Each of the ``repeats`` rounds calls every function ``run`` times in a row (every
    call timed), the functions in the same order; ``warmup`` untimed rounds come first
    (Numba compilation, first-touch allocation).  With ``run = 1`` every call follows
    a call of another function, which may have evicted its data from the caches; with
    longer runs most calls follow one of their own, as when one network serves request
    after request.  ``minima`` (a dict) receives each function's minimum too;
    ``after(name)``, if given, runs after each timed call, outside the timing.  ``clock``:
    wall time by default; ``time.thread_time`` counts only this thread's CPU time (on a
    shared machine, not the time other processes took the core; one-thread BLAS and
    Numba run in this thread).
    """
    if run < 1:
        raise ValueError(f"run must be at least 1, got {run}")
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, f in fns.items():
            for _ in range(run):
                t0 = clock()
                f()
                times[k].append(clock() - t0)
                if after is not None:
                    after(k)
    if minima is not None:
        minima.update({k: float(np.min(v)) for k, v in times.items()})
    return {k: float(np.median(v)) for k, v in times.items()}
