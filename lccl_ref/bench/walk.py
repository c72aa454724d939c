"""An eval forward, block by block, that stops at every BN and LCCL layer: for calibration.

:func:`walk` computes what ``model.forward(x)`` computes in eval mode, for the models
of :mod:`lccl_ref.models` (a ``PreActResNet``, its stages and blocks, a ``Sequential``
of them, or one ``LCCLConv2d``), but spells out each pre-activation block so that it
can call, as the pass reaches them and before they run:

* ``on_bn(bn, z)`` for every BN outside a cheap branch, with the input it normalises;
* ``on_lccl(name, layer, x, u)`` for every LCCL layer, with the expensive conv's input
  ``x`` and the cheap branch's ``u`` (``x`` itself, or the input before the BN-ReLU
  for a "bef" placement).

A visitor may change the module's statistics or parameters; the pass then goes on
with them, so each layer is set on what the layers already set before it produce.
:func:`lccl_ref.bench.calibrate` and the per-layer benchmark use it.
"""

from __future__ import annotations

from ..models.blocks import PreActBlock
from ..models.resnet import PreActResNet
from ..nn import BatchNorm2d, LCCLConv2d, Module, Sequential


def walk(model: Module, x, on_bn=None, on_lccl=None):
    """``model``'s eval-mode output on ``x``, calling the visitors on the way (see above).

    ``model`` must be in eval mode.
    """
    names = {id(m): name for name, m in model.named_modules()}
    return _walk(model, x, names, on_bn or (lambda bn, z: None),
                 on_lccl or (lambda name, layer, x, u: None))


def _walk(m, x, names, on_bn, on_lccl):
    if isinstance(m, LCCLConv2d):
        on_lccl(names[id(m)], m, x, x)
        return m.forward(x)
    if isinstance(m, BatchNorm2d):
        on_bn(m, x)
        return m.forward(x)
    if isinstance(m, PreActBlock):
        return _block(m, x, names, on_bn, on_lccl)
    if isinstance(m, (PreActResNet, Sequential)):
        for layer in (m.layers() if isinstance(m, PreActResNet) else m):
            x = _walk(layer, x, names, on_bn, on_lccl)
        return x
    return m.forward(x)


def _block(blk, x, names, on_bn, on_lccl):
    """``blk.forward(x)`` in eval mode, the visitors called at its BNs and LCCL layers."""
    a = _bn_relu(blk.bn1, x, on_bn)
    h = _conv(blk.conv1, a, x, blk.cheap_before[0], names, on_lccl)
    o = _conv(blk.conv2, _bn_relu(blk.bn2, h, on_bn), h, blk.cheap_before[1], names, on_lccl)
    return blk.add_shortcut(o, x, lambda: blk.shortcut.forward(a))


def _bn_relu(bn, z, on_bn):
    on_bn(bn, z)
    return bn.inference(z, relu=True)


def _conv(conv, a, before, cheap_before, names, on_lccl):
    """``conv`` on ``a``; an LCCL's cheap branch reads ``before`` when ``cheap_before``."""
    if not isinstance(conv, LCCLConv2d):
        return conv.forward(a)
    u = before if cheap_before else a
    on_lccl(names[id(conv)], conv, a, u)
    return conv.forward(a, cheap_input=u if cheap_before else None)
