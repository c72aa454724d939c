"""Networks: pre-activation ResNet, WRN and a small MNIST net, each optionally with LCCL.

``build_model(name, lccl=..., placement=...)`` builds one by name;
``lccl_layers(model)`` lists its LCCL layers (for per-layer density and MACs);
``plain_network(model)`` is the same network without them (the speed-up's baseline).
"""

from ..nn.lccl import set_sparse
from .blocks import SHORTCUTS, PreActBlock, SubsamplePad
from .registry import (
    LCCL_KINDS,
    MODEL_NAMES,
    PLACEMENTS,
    build_model,
    lccl_layers,
    plain_network,
)
from .resnet import PreActResNet

__all__ = [
    "LCCL_KINDS",
    "MODEL_NAMES",
    "PLACEMENTS",
    "SHORTCUTS",
    "PreActBlock",
    "PreActResNet",
    "SubsamplePad",
    "build_model",
    "lccl_layers",
    "plain_network",
    "set_sparse",
]
