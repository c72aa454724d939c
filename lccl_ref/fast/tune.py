"""Pick the faster of equivalent kernels for a shape by timing them once.

Used by :func:`lccl_ref.kernels.conv2d_inference` (im2col vs vector at r = 1)
and by ``gated_conv2d(method="auto")`` on shared masks (vector vs gather).
Which kernel wins depends on the layer shape in ways no simple rule on
``C``, ``T`` and the image size captures (measured: the vector kernel wins
at C <= 96, ties at 128@28x28, loses at 256@14x14 but wins again at
512@7x7, where both are bound by reading the weights), and on the machine.
So the first call with a new shape times each candidate (one warm-up call,
then the best of ``trials``), and every later call with that shape reuses
the decision.  The candidates compute the same thing up to float rounding;
the decisions and the times behind them stay in the table for inspection.
"""

from __future__ import annotations

import time


def fastest(table: dict, key, candidates: dict, trials: int = 3) -> str:
    """Name of the fastest zero-argument callable in ``candidates``, timed once per ``key``.

    ``table[key]`` becomes ``{"method": name, "ms": {name: best time in ms}}``.
    """
    hit = table.get(key)
    if hit is None:
        best = {}
        for name, run in candidates.items():
            run()  # warm-up: compilation, first touch of buffers
            times = []
            for _ in range(trials):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            best[name] = 1e3 * min(times)
        hit = table[key] = dict(method=min(best, key=best.get), ms=best)
    return hit["method"]
