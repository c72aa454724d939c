"""The autotune: the faster of equivalent kernels for a shape, timed once, and its one table.

Which kernel wins depends on the layer shape in ways no simple rule on ``C``, ``T``
and the image size captures, and on the machine (docs/kernel-notes.md, "autotune").
So the first call with a new shape times each candidate (one warm-up call, then the
best of ``trials``) and every later call with that shape reuses the decision.  The
candidates compute the same thing up to float rounding.

:data:`CHOICES` is the one table of every decision, by the question asked
(``"dense"``: im2col or the vector kernel at r = 1, :mod:`.dense`; ``"shared"``:
vector or gather on a shared mask, :mod:`.gated`; ``"fused"``: the fused LCCL kernel
or two calls, :mod:`.lccl`), then by shape; each entry keeps the times behind it.
"""

from __future__ import annotations

import time

#: ``{question: {shape key: {"method": name, "ms": {name: best time in ms}}}}``.
CHOICES: dict = {"dense": {}, "shared": {}, "fused": {}}


def fastest(question: str, key, candidates: dict, trials: int = 3) -> str:
    """Name of the fastest zero-argument callable in ``candidates``, timed once per ``key``.

    ``CHOICES[question][key]`` becomes ``{"method": name, "ms": {name: best time in ms}}``.
    """
    table = CHOICES[question]
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
