"""Model names -> networks: ``build_model("resnet20", lccl="kxkxCx1", placement="aft-aft")``.

Names
-----
``resnet<D>``
    CIFAR pre-activation ResNet, depth ``D = 6n + 2`` (n blocks per stage),
    stem 16, stages 16/32/64; parameter-free ("identity") shortcuts by default.
``wrn-<d>-<k>``
    Wide ResNet, ``(d - 4) / 6`` blocks per stage, stem 16, stages
    16k/32k/64k; 1x1 projection shortcuts where the width changes, as in the
    WRN paper (no dropout).
``mnist-resnet``
    A small pre-activation ResNet for 28x28 single-channel images: a 3x3 stem
    of 16 channels at 28x28, then one block in each of three stages of
    16/32/64 channels, each starting with stride 2 (14x14, 7x7, 4x4); about
    2.6M multiply-accumulates per image.  Measured on ``mnist5k`` (3 epochs,
    batch 64, one thread): it learns faster per epoch than the 16/32/64 net at
    full 28x28 resolution and costs less than a 8/16/32 one at 28x28.

``MODEL_NAMES`` lists the canonical ones; any ``resnet<6n+2>`` and
``wrn-<6n+4>-<k>`` is accepted.
"""

from __future__ import annotations

import re

import numpy as np

from ..nn import LCCLConv2d, Module
from ..nn.lccl import CHEAP_KINDS
from .blocks import SHORTCUTS
from .resnet import PreActResNet

MODEL_NAMES = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
               "wrn-16-4", "wrn-22-8", "wrn-28-2", "wrn-40-1", "wrn-40-2", "wrn-40-4",
               "wrn-52-1", "mnist-resnet")
LCCL_KINDS = ("none",) + CHEAP_KINDS
PLACEMENTS = ("aft-aft", "aft-bef", "bef-bef", "bef-aft")


def _spec(name):
    """``name`` -> (blocks, widths, strides, stem, default in_channels, default shortcut)."""
    if name == "mnist-resnet":
        return 1, (16, 32, 64), (2, 2, 2), 16, 1, "identity"
    m = re.fullmatch(r"resnet(\d+)", name)
    if m:
        depth = int(m.group(1))
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, "
                             f"110, ...), got {depth} in {name!r}")
        return (depth - 2) // 6, (16, 32, 64), (1, 2, 2), 16, 3, "identity"
    m = re.fullmatch(r"wrn-(\d+)-(\d+)", name)
    if m:
        depth, k = int(m.group(1)), int(m.group(2))
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, 52, ...), "
                             f"got {depth} in {name!r}")
        if k < 1:
            raise ValueError(f"WRN widening factor must be >= 1, got {k} in {name!r}")
        return (depth - 4) // 6, (16 * k, 32 * k, 64 * k), (1, 2, 2), 16, 3, "projection"
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)} "
                     "(or any resnet<6n+2>, wrn-<6n+4>-<k>)")


def build_model(name, num_classes=10, in_channels=None, lccl="none", placement="aft-aft",
                shortcut=None, rng=None, dtype=np.float32, gate="relu",
                gate_init=None, cheap_bn=True) -> PreActResNet:
    """Build a network by name.

    Parameters
    ----------
    name : str
        See the module docstring and ``MODEL_NAMES``.
    num_classes : int
    in_channels : int or None
        None: 1 for ``mnist-resnet``, 3 otherwise.
    lccl : {"none", "1x1xCxT", "kxkxCx1", "1x1xCx1"}
        "none" keeps plain convolutions; otherwise every 3x3 convolution inside
        the residual blocks becomes an :class:`~lccl_ref.nn.LCCLConv2d` with
        this cheap kernel (the stem, the shortcuts and the classifier stay plain).
    placement : {"aft-aft", "aft-bef", "bef-bef", "bef-aft"}
        Where each block's two cheap branches read their input; this project's
        reading, see :mod:`lccl_ref.models.blocks`.
    shortcut : {"identity", "projection"} or None
        For blocks that change width or resolution.  None: "projection" for
        WRN, "identity" (parameter-free) otherwise.
    rng : None, int or numpy Generator
        Initialisation seed.
    dtype : float32 or float64
    gate, gate_init, cheap_bn
        Of every LCCL layer (see :class:`~lccl_ref.nn.LCCLConv2d`); ignored by a
        plain net.

    Returns
    -------
    PreActResNet

    Raises
    ------
    ValueError
        Unknown name, kind, placement or shortcut; impossible depth.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    blocks, widths, strides, stem, default_in, default_shortcut = _spec(name)
    if lccl not in LCCL_KINDS:
        raise ValueError(f"unknown lccl kind {lccl!r}; choose one of {', '.join(LCCL_KINDS)}")
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    shortcut = default_shortcut if shortcut is None else shortcut
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {', '.join(SHORTCUTS)}")
    in_channels = default_in if in_channels is None else in_channels
    for arg, v in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{arg} must be a positive int, got {v!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    options = {"gate": gate, "gate_init": gate_init, "cheap_bn": bool(cheap_bn)}
    return PreActResNet(blocks, widths, stem, int(num_classes), int(in_channels), lccl,
                        placement, shortcut, rng=rng, dtype=dtype, strides=strides,
                        lccl_options=options)


def lccl_layers(model: Module) -> list[tuple[str, LCCLConv2d]]:
    """Every :class:`~lccl_ref.nn.LCCLConv2d` in ``model`` with its qualified name, in order.

    The one place that lists a model's LCCL layers (training, evaluation, MAC tables,
    benchmarks and the engine all use it)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LCCLConv2d)]


def plain_network(model: Module) -> Module:
    """The network an LCCL network is measured against: ``model`` with every LCCL layer
    replaced by its expensive conv alone -- the same ``Conv2d`` object, so the weights
    are shared -- and no cheap branch, no mask.  ``model`` is not changed.
    (:meth:`Module.copy_with` copies the modules on the way, not their arrays.)"""
    if isinstance(model, LCCLConv2d):
        return model.conv
    return model.copy_with(**{name: plain_network(child)
                              for name, child in model.named_children()})
