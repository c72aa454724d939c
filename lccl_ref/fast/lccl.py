"""The fast path's shared-mask LCCL layer at inference: the fused kernel or two calls.

For a layer with one cheap output channel (``kxkxCx1``, ``1x1xCx1``) on the sparse
path with its cheap BN folded, :func:`shared_lccl_eval` computes what the teaching
path computes (``LCCLConv2d``'s cheap branch, gate, mask, gated conv and product) in
one of two ways, whichever is faster for the shape (timed at its first call,
:mod:`.tune`, question ``"fused"``): the fused kernel of :mod:`.fused` (one call: one
padded copy serves both convolutions), or two calls -- the cheap branch of
:mod:`.cheap`, then the gated conv of :mod:`.gated` with the product ``V * V'`` in
its output write.  A cheap branch that reads another input than the expensive conv
(a "bef" placement) always takes the two calls.  Both gates: the clip gate bounds
``V'`` by 1 (inside the fused kernel, or after the cheap call).
"""

from __future__ import annotations

import numpy as np

from ..functional.batchnorm import affine_relu_unchecked
from .cheap import cheap_single_unchecked
from .fused import lccl_shared_eval_unchecked
from .gated import gated_conv2d_unchecked
from .tune import fastest


def can_run(layer) -> bool:
    """Whether :func:`shared_lccl_eval` computes ``layer``'s eval forward: a shared mask,
    the sparse path, the cheap BN folded."""
    return layer.shared_mask and layer.sparse and layer.fold_bn


def shared_lccl_eval(layer, x, u=None, pre=None):
    """``(O, V', mask, active, macs_expensive)`` of an LCCL layer that :func:`can_run`.

    ``x`` (N, C, H, W) the expensive conv's input, read as ``max(x * s + h, 0)`` when
    ``pre = (s, h)``; ``u`` the cheap branch's own input (a "bef" placement), or None:
    the cheap branch reads what the expensive conv reads.  ``V'`` and ``mask`` are
    (N, Ho, Wo), ``active`` counts the open positions.
    """
    conv, cconv = layer.conv, layer.cheap_conv
    w = conv.weight.data
    w_f, b_f = layer.folded_cheap()  # (1, C, k', k'), (1,)
    clip = layer.gate == "clip"

    def two_calls():
        xe = x if pre is None else affine_relu_unchecked(x, *pre)  # made once, read twice
        v, mask, active = cheap_single_unchecked(xe if u is None else u, w_f, b_f,
                                                 cconv.stride, cconv.padding)
        if clip:
            np.minimum(v, v.dtype.type(1), out=v)  # V' = min(max(z, 0), 1); NaN stays NaN
        out, macs = gated_conv2d_unchecked(xe, w, mask, None, conv.stride, conv.padding,
                                           scale=v)
        return out, v, mask, active, macs

    if u is not None:
        return two_calls()

    def fused():
        return lccl_shared_eval_unchecked(x, w, w_f, b_f, conv.stride, conv.padding,
                                          cconv.padding, pre, clip)

    key = (x.shape, w.shape, w_f.shape, conv.stride, conv.padding, cconv.padding,
           x.dtype.str, pre is not None, clip)
    name = fastest("fused", key, {"fused": fused, "two calls": two_calls})
    return fused() if name == "fused" else two_calls()
