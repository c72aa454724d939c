"""Switching the fast path on and off: ``fast.accelerate(model)``, ``fast.plain(model)``.

The teaching modules have one documented hook each, an ``accelerator`` attribute that
is None by default and that their eval-mode forward calls when it is set (it may
answer None: "not mine, run the teaching path").  :func:`accelerate` fills it:

``Conv2d``        :func:`conv_eval`: ``fast.dense.conv2d_inference`` (im2col or the
                  vector kernel, the faster for the shape);
``LCCLConv2d``    :func:`lccl_eval`: on the sparse path, shared masks through
                  :mod:`.lccl` (fused kernel or two calls), per-channel ones through
                  :mod:`.percell`; the dense reference path: None;
``PreActBlock``   :func:`block_eval`: each BN-ReLU folded into the next convolution's
                  input copy (``pre``), so that none is a pass of its own.

Nothing else changes: training is untouched, and :func:`plain` (or
``accelerate(model, False)``) puts every hook back to None.  The modules keep what a
backward after an eval forward needs (frozen-BN fine-tuning) and record the stats the
teaching path records (``LCCLConv2d.record_eval``, ``Conv2d.keep_eval_input``).
"""

from __future__ import annotations

from ..functional.batchnorm import affine_relu_unchecked
from ..models.blocks import PreActBlock
from ..nn import Conv2d, LCCLConv2d, Module
from .dense import conv2d_inference_unchecked
from .lccl import can_run, shared_lccl_eval
from .percell import per_channel_eval


def accelerate(model: Module, on: bool = True) -> Module:
    """Set (``on``) or clear every accelerator hook in ``model``; returns ``model``."""
    if not isinstance(model, Module):
        raise TypeError(f"model must be a Module, got {type(model).__name__}")
    for m in model.modules():
        if isinstance(m, PreActBlock):
            m.accelerator = block_eval if on else None
        elif isinstance(m, LCCLConv2d):
            m.accelerator = lccl_eval if on else None
        elif isinstance(m, Conv2d):
            m.accelerator = conv_eval if on else None
    return model


def plain(model: Module) -> Module:
    """Every module of ``model`` back on the teaching path (``accelerate(model, False)``)."""
    return accelerate(model, False)


def is_accelerated(model: Module) -> bool:
    """Whether some module of ``model`` has an accelerator set."""
    return any(getattr(m, "accelerator", None) is not None for m in model.modules())


def conv_eval(conv: Conv2d, x):
    """Eval forward of a plain conv by the faster dense kernel (``x`` checked by the module)."""
    b = None if conv.bias is None else conv.bias.data
    return conv2d_inference_unchecked(x, conv.weight.data, b, conv.stride, conv.padding)


def lccl_eval(layer: LCCLConv2d, x, cheap_input):
    """``(O, mask, active, macs)`` of a layer on the sparse path with its cheap BN folded
    (shared masks: :mod:`.lccl`; per-channel ones: :mod:`.percell`), else None."""
    if not (layer.sparse and layer.fold_bn):
        return None
    if not layer.shared_mask:
        return per_channel_eval(layer, x, cheap_input)
    out, _, mask, active, macs = shared_lccl_eval(layer, x, cheap_input)
    return out, mask, active, macs


def block_eval(block: PreActBlock, x):
    """A pre-activation block with each BN-ReLU applied in the next convs' input copies."""
    pre1 = _pre(block.bn1, block.relu1, x)  # a = max(x * s1 + h1, 0), not made
    h = _conv(block.conv1, x, pre1, block.cheap_before[0])  # (N, C_out, Ho, Wo)
    pre2 = _pre(block.bn2, block.relu2, h)  # b = max(h * s2 + h2, 0), not made
    o = _conv(block.conv2, h, pre2, block.cheap_before[1])
    return block.add_shortcut(o, x, lambda: _conv(block.shortcut, x, pre1, False))  # reads a


def _pre(bn, relu, z):
    """``(s, h)`` of ``bn`` in eval mode; the caches of a backward through the frozen BN."""
    s, h = bn.eval_affine(z)
    relu.keep_output(lambda: affine_relu_unchecked(z, s, h))
    return s, h


def _conv(conv, z, pre, cheap_before):
    """``conv`` on ``max(z * s + h, 0)``; a "bef" cheap branch reads ``z`` itself."""
    if isinstance(conv, LCCLConv2d):
        conv.conv.check_input(z)
        if can_run(conv):
            out, _, mask, active, macs = shared_lccl_eval(conv, z, z if cheap_before else None,
                                                          pre)
            conv.last_input_shape = z.shape
            conv.record_eval(z.shape, mask, active, macs)
            return out
        a = affine_relu_unchecked(z, *pre)  # the BN-ReLU as a pass of its own
        return conv.forward(a, cheap_input=z if cheap_before else None)
    conv.check_input(z)
    b = None if conv.bias is None else conv.bias.data
    y = conv2d_inference_unchecked(z, conv.weight.data, b, conv.stride, conv.padding, "auto",
                                   pre)
    conv.keep_eval_input(lambda: affine_relu_unchecked(z, *pre), z.shape)
    return y
