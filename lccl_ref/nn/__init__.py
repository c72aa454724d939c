"""Modules that hold parameters and gradients, over :mod:`lccl_ref.functional`.

Start at :mod:`.module` (``Module``, ``Parameter``), then :mod:`.layers` and
:mod:`.gated` (``GatedConv2d``, a conv computed only where a mask is on) and
:mod:`.lccl` (``LCCLConv2d``, the paper's layer).
"""

from .cheap import CheapConv2d
from .gated import GatedConv2d
from .layers import BatchNorm2d, Conv2d, GlobalAvgPool, Linear, ReLU
from .lccl import CHEAP_KINDS, LCCLConv2d, set_sparse
from .module import Module, Parameter, Sequential, load_npz, save_npz, teaching_path

__all__ = [
    "BatchNorm2d",
    "CHEAP_KINDS",
    "CheapConv2d",
    "Conv2d",
    "GatedConv2d",
    "GlobalAvgPool",
    "LCCLConv2d",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "load_npz",
    "save_npz",
    "set_sparse",
    "teaching_path",
]
