"""Pre-activation ResNet: stem, stages of :class:`PreActBlock`, BN-ReLU, pool, linear.

One class serves the CIFAR ResNets (depth 6n+2, widths 16/32/64), the wide
ResNets WRN-d-k (widths 16k/32k/64k) and the small MNIST net.  With the
default strides (1, 2, 2)::

    x (N, C, H, W)
    stem     3x3 conv, stem_channels                    (N, stem, H, W)
    layer1   n blocks, widths[0], stride 1              (N, w0, H, W)
    layer2   n blocks, widths[1], stride 2 at block 0   (N, w1, H/2, W/2)
    layer3   n blocks, widths[2], stride 2 at block 0   (N, w2, H/4, W/4)
    bn, relu                                            (N, w2, H/4, W/4)
    pool     global average                             (N, w2)
    fc       linear                                     (N, num_classes)

(``H/2`` means ``ceil(H/2)``.)

Depth = 2 * (blocks per stage) * (number of stages) + 2 (stem and fc).
"""

from __future__ import annotations

import numpy as np

from ..nn import BatchNorm2d, Conv2d, GlobalAvgPool, Linear, Module, ReLU, Sequential
from .blocks import PreActBlock


class PreActResNet(Module):
    """Pre-activation ResNet with ``blocks_per_stage`` blocks in each of ``len(widths)`` stages.

    Parameters
    ----------
    blocks_per_stage : int >= 1
    widths : tuple of int
        Output channels of each stage; stage ``i > 0`` halves the resolution.
    stem_channels : int
    strides : tuple of int or None
        Stride of each stage's first block; None: 1 for the first stage, 2 after.
    num_classes, in_channels : int
    lccl, placement, shortcut, lccl_options
        Passed to every :class:`PreActBlock` (see :mod:`lccl_ref.models.blocks`).
    rng : numpy Generator
    dtype : float32 or float64

    ``forward(x)`` maps (N, in_channels, H, W) to logits (N, num_classes);
    ``backward(dlogits)`` returns the gradient of ``x``.
    """

    def __init__(self, blocks_per_stage, widths, stem_channels=16, num_classes=10,
                 in_channels=3, lccl="none", placement="aft-aft", shortcut="identity",
                 rng=None, dtype=np.float32, strides=None, lccl_options=None):
        super().__init__()
        self.blocks_per_stage, self.widths = blocks_per_stage, tuple(widths)
        if strides is None:
            strides = (1,) + (2,) * (len(self.widths) - 1)
        if len(strides) != len(self.widths):
            raise ValueError(f"strides must have one entry per stage ({len(self.widths)}), "
                             f"got {strides!r}")
        self.strides = tuple(strides)
        self.stem = Conv2d(in_channels, stem_channels, 3, 1, 1, rng=rng, dtype=dtype)
        c = stem_channels
        self.stage_names = []
        for i, width in enumerate(self.widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = self.strides[i] if j == 0 else 1
                blocks.append(PreActBlock(c, width, stride, lccl, placement, shortcut, rng=rng,
                                          dtype=dtype, lccl_options=lccl_options))
                c = width
            name = f"layer{i + 1}"
            setattr(self, name, Sequential(*blocks))
            self.stage_names.append(name)
        self.bn = BatchNorm2d(c, dtype=dtype)
        self.relu = ReLU()
        self.pool = GlobalAvgPool()
        self.fc = Linear(c, num_classes, rng=rng, dtype=dtype)

    def layers(self):
        """The top-level layers in forward order: stem, stages, BN, ReLU, pool, fc."""
        return [self.stem, *(getattr(self, s) for s in self.stage_names), self.bn, self.relu,
                self.pool, self.fc]

    def forward(self, x):
        for layer in self.layers():
            x = layer.forward(x)
        return x  # (N, num_classes)

    def backward(self, dy):
        for layer in reversed(self.layers()):
            dy = layer.backward(dy)
        return dy  # (N, in_channels, H, W)
