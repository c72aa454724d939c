"""A one-time OpenBLAS warm-up that halves the time of the convolution GEMMs.

Measured on this project's machines (OpenBLAS 0.3.31, Haswell kernels, one
thread): in a fresh process, ``(8192, 576) @ (576, 64)`` in float32 takes about
36 ms, and keeps taking 36 ms however often it runs, until one GEMM with a
large packed operand (about k >= 512 and n >= 384) has run; from then on the
same product takes about 20 ms for the rest of the process.  The convolutions
of the CIFAR ResNets never issue such a GEMM themselves, so without this they
would run at half speed.  The cause is inside OpenBLAS (its buffer set-up), not
in this project; the fix costs one 64x512x512 product (~10 ms), once.
``benchmarks/bench_conv.py`` records both states.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def warm_up() -> None:
    """Run one 64x512x512 float32 GEMM, once per process."""
    np.ones((64, 512), np.float32) @ np.ones((512, 512), np.float32)
