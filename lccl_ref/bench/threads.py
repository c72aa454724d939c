"""One thread for every timing, and what the timings ran on.

:func:`one_thread` is the library's one thread limiter: inside it BLAS (through
threadpoolctl) and Numba use one thread, and it restores what it found, so that a
benchmark inside a longer process (a test, a notebook, ``lccl-ref reproduce``)
leaves the thread counts as they were.  Scripts should also set ``OMP_NUM_THREADS=1``
etc. before importing NumPy (``benchmarks/`` do).  :func:`environment` records the
versions, the machine, its load and the thread counts for a results file.
"""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager

import numpy as np


@contextmanager
def one_thread():
    """Within the block BLAS and Numba use one thread; yields what :func:`environment`
    says about the threads then (``threads``, ``blas_threads``, ``threadpoolctl``)."""
    import numba

    before = numba.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # env vars set before numpy's import are then the only limit
        limiter = None
    else:
        limiter = threadpool_limits(limits=1)
    numba.set_num_threads(1)
    try:
        yield {k: v for k, v in environment().items()
               if k in ("threads", "blas_threads", "threadpoolctl")}
    finally:
        numba.set_num_threads(before)
        if limiter is not None:
            limiter.restore_original_limits()


def load_average() -> float | None:
    """The 1-minute load average (other processes sharing the CPU make timings noisy)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def environment() -> dict:
    """Versions, machine, load and thread counts, for a results file."""
    import numba

    from .. import __version__

    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        blas, pools = None, False
    else:
        blas = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
        pools = True
    return dict(lccl_ref=__version__, numpy=np.__version__, numba=numba.__version__,
                python=platform.python_version(), platform=platform.platform(terse=True),
                processor=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                load_average=load_average(), threads=int(numba.get_num_threads()),
                blas_threads=blas, threadpoolctl=pools)
