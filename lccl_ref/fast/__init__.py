"""Opt-in speed for lccl_ref: LLVM-IR kernels, autotune, fused layers, the whole-network engine.

The teaching path (``functional``, ``kernels``, ``nn``, ``models``, ``train``) is
NumPy and plain ``@njit``, and never imports this package.  Switch the fast path on
explicitly, per model::

    fast.accelerate(model)      # eval forwards through the fast kernels (plain(model) undoes it)
    fast.Engine(model)(x)       # the whole eval forward as one compiled call

Start at :mod:`.accelerate` (the hooks it fills) or :mod:`.engine`.  Every kernel
here is tested against its teaching twin (``tests/fast/``); the measurements behind
the choices are in docs/kernel-notes.md.
"""

from .accelerate import accelerate, is_accelerated, plain
from .cheap import cheap_single
from .dense import conv2d_inference
from .engine import Engine
from .fused import lccl_shared_eval
from .gated import gated_conv2d
from .tune import CHOICES

__all__ = ["CHOICES", "Engine", "accelerate", "cheap_single", "conv2d_inference",
           "gated_conv2d", "is_accelerated", "lccl_shared_eval", "plain"]
