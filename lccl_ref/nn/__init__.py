"""Modules that hold parameters and gradients, over :mod:`lccl_ref.functional`."""

from .layers import BatchNorm2d, Conv2d, GlobalAvgPool, Linear, ReLU
from .module import Module, Parameter, Sequential, load_npz, save_npz

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "GlobalAvgPool",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "load_npz",
    "save_npz",
]
