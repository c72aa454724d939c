"""A convolution computed only where a mask is on, in training and in eval: the LCCL's V.

:class:`GatedConv2d` is a :class:`~lccl_ref.nn.Conv2d` whose forward takes the
gate's mask.  Where the mask is off the output is 0 and nothing is computed: in
eval mode by :func:`lccl_ref.kernels.gated_conv2d`, in training by
:func:`lccl_ref.kernels.gated_conv2d_forward`, whose backward runs ``dW`` and
``dX`` over the active cells only.  That is the dense training step, exactly,
because the LCCL's product makes ``dV = dO ⊙ V'`` zero wherever ``V'`` is
(docs/derivations.md, section 10).  Without a mask it is the plain conv.
"""

from __future__ import annotations

from .. import kernels
from .layers import Conv2d


class GatedConv2d(Conv2d):
    """``Conv2d`` with ``forward(x, mask)``: the output only where ``mask`` is true.

    ``mask`` is bool (N, Ho, Wo) (shared by the T output channels) or (N, T, Ho, Wo).
    ``last_macs`` and ``last_method`` hold the MACs the kernels executed in the last
    eval call and the kernel that ran (:func:`lccl_ref.kernels.choose_method`), and
    :attr:`train_macs` accumulates training passes, as for ``Conv2d``, ``executed``
    counted by the kernels against the ``dense`` conv's.
    """

    #: Eval kernel (``kernels.METHODS``): "auto" lets ``kernels.choose_method`` pick by the
    #: mask's kind and density; "tiled" forces the per-cell kernel on a per-channel mask.
    method = "auto"
    last_macs = last_method = None
    _gated = None  # the training cache of a masked forward, for backward

    def forward(self, x, mask=None):
        """(N, C, H, W) -> (N, T, Ho, Wo), 0 where ``mask`` is false; the plain conv when
        ``mask`` is None."""
        self._gated = None
        if mask is None:
            return super().forward(x)
        w, b = self.weight.data, None if self.bias is None else self.bias.data
        if b is not None:
            raise ValueError("a GatedConv2d with a mask has no bias (its output is 0 where "
                             "the mask is off)")
        self.last_input_shape = x.shape
        if not self.training:  # eval: the teaching kernels, MACs counted as they run
            self.check_input(x)
            self.last_method = kernels.choose_method(mask, self.method)  # kind and density
            y, self.last_macs = kernels.gated_conv2d(x, w, mask, None, self.stride,
                                                     self.padding, self.last_method)
            self._cache = ("eval input", x)
            return y
        y, cache = kernels.gated_conv2d_forward(x, w, mask, self.stride, self.padding)
        self._cache, self._gated = None, cache
        self.count_macs(cache.macs["dense_forward"], cache.macs["forward"])
        return y

    def backward(self, dy):
        if self._gated is None:
            return super().backward(dy)
        cache, self._gated = self._gated, None
        dx, dw = kernels.gated_conv2d_backward(dy, cache)  # dW, dX over the active cells
        self.count_macs(cache.macs["dense_backward"], cache.macs["backward"])
        self.weight.grad += dw
        return dx
