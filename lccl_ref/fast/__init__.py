"""Opt-in speed for lccl_ref: LLVM-IR kernels, autotune, fused layers, the engine."""
