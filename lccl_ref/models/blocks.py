"""The pre-activation residual block, with or without LCCL, and its shortcuts.

One block (He et al. 2016, "Identity mappings in deep residual networks")::

    x ─┬─ BN1 ─ ReLU ─(a)─ conv1 ─(h)─ BN2 ─ ReLU ─(b)─ conv2 ─(o)─ + ─ out
       └──────────────────── shortcut ─────────────────────────────┘

With ``lccl`` set, conv1 and conv2 are :class:`~lccl_ref.nn.LCCLConv2d`.  Placement
(this project's reading of the paper's Aft-Aft, Aft-Bef, Bef-Bef, Bef-Aft, which the
slides do not define): the first word is for conv1, the second for conv2.  "aft" = the
cheap branch reads its input **after** the BN-ReLU that precedes the convolution, the
same input as the expensive conv (``a`` for conv1, ``b`` for conv2; what the authors'
code does).  "bef" = it reads the input **before** that BN-ReLU: the raw block input
``x`` for conv1, the conv1 output ``h`` for conv2.

Shortcuts, used when the block changes the width or the resolution:

- ``"identity"`` (option A, parameter-free): ``x`` subsampled by the stride
  (``x[:, :, ::s, ::s]``) with zero channels appended; it reads the raw ``x``
  so that the identity path carries no BN-ReLU.
- ``"projection"``: a 1x1 conv with the block's stride; it reads the
  pre-activation ``a`` (as in the WRN code and He et al.'s pre-activation code).

Otherwise the shortcut is ``x``.  Start at :meth:`PreActBlock.forward`.
"""

from __future__ import annotations

import numpy as np

from ..nn import BatchNorm2d, Conv2d, LCCLConv2d, Module, ReLU

SHORTCUTS = ("identity", "projection")


class SubsamplePad(Module):
    """Parameter-free shortcut: ``x[:, :, ::s, ::s]`` then zero channels up to ``out_channels``.

    Shapes: (N, C_in, H, W) -> (N, C_out, ceil(H / s), ceil(W / s)), which is
    the output size of a 3x3 / padding 1 / stride s convolution.
    """

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"the identity shortcut cannot drop channels: in_channels="
                             f"{in_channels} > out_channels={out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self._x_shape = None

    def forward(self, x):
        s = self.stride
        self._x_shape = x.shape
        sub = x[:, :, ::s, ::s]  # (N, C_in, Ho, Wo)
        y = np.empty((x.shape[0], self.out_channels) + sub.shape[2:], dtype=x.dtype)
        y[:, : self.in_channels] = sub  # (N, C_out, Ho, Wo)
        y[:, self.in_channels :] = 0  # only the appended channels need zeros
        return y

    def backward(self, dy):
        s = self.stride
        dx = np.zeros(self._x_shape, dtype=dy.dtype)  # (N, C_in, H, W)
        dx[:, :, ::s, ::s] = dy[:, : self.in_channels]
        return dx

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def conv3x3(in_channels, out_channels, stride, lccl, rng, dtype, lccl_options=None):
    """A 3x3 / padding 1 conv: plain :class:`Conv2d` when ``lccl == "none"``, else LCCL
    (``lccl_options``: more keyword arguments of :class:`~lccl_ref.nn.LCCLConv2d`)."""
    if lccl == "none":
        return Conv2d(in_channels, out_channels, 3, stride, 1, rng=rng, dtype=dtype)
    return LCCLConv2d(in_channels, out_channels, 3, stride, 1, cheap=lccl, rng=rng, dtype=dtype,
                      **(lccl_options or {}))


class PreActBlock(Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut (see the module docstring).

    Parameters
    ----------
    in_channels, out_channels : int
    stride : int
        Of conv1 (and of the shortcut).
    lccl : {"none", "1x1xCxT", "kxkxCx1", "1x1xCx1"}
    placement : {"aft-aft", "aft-bef", "bef-bef", "bef-aft"}
        Only used when ``lccl != "none"``.
    shortcut : {"identity", "projection"}
        Only used when the block changes width or resolution.
    lccl_options : dict or None
        More keyword arguments of both :class:`~lccl_ref.nn.LCCLConv2d` (``gate``,
        ``gate_init``, ``cheap_bn``).
    rng : numpy Generator
    dtype : float32 or float64

    Shapes: (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels, out_channels, stride=1, lccl="none", placement="aft-aft",
                 shortcut="identity", rng=None, dtype=np.float32, lccl_options=None):
        super().__init__()
        self.bn1 = BatchNorm2d(in_channels, dtype=dtype)
        self.relu1 = ReLU()
        self.conv1 = conv3x3(in_channels, out_channels, stride, lccl, rng, dtype, lccl_options)
        self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        self.relu2 = ReLU()
        self.conv2 = conv3x3(out_channels, out_channels, 1, lccl, rng, dtype, lccl_options)
        self.placement = tuple(placement.split("-"))  # ("aft" | "bef", "aft" | "bef")
        self.shortcut_kind = "none"
        if stride != 1 or in_channels != out_channels:
            self.shortcut_kind = shortcut
            if shortcut == "projection":
                self.shortcut = Conv2d(in_channels, out_channels, 1, stride, 0, rng=rng,
                                       dtype=dtype)
            else:
                self.shortcut = SubsamplePad(in_channels, out_channels, stride)

    @property
    def cheap_before(self) -> tuple[bool, bool]:
        """Per conv: whether it is an LCCL whose cheap branch reads the input before the
        BN-ReLU ("bef"), i.e. ``x`` for conv1 and ``h`` for conv2."""
        return tuple(isinstance(c, LCCLConv2d) and p == "bef"
                     for c, p in zip((self.conv1, self.conv2), self.placement))

    #: Eval-mode hook: None (the teaching path), or a callable ``accelerator(block, x)``
    #: returning the block's output (or None: "not mine").  :func:`lccl_ref.fast.accelerate`
    #: sets one that folds each BN-ReLU into the next convolution's input copy.
    accelerator = None

    def forward(self, x):
        """(N, C_in, H, W) -> (N, C_out, Ho, Wo): BN-ReLU, conv, BN-ReLU, conv, + shortcut.

        In eval mode each BN-ReLU is one pass of its own (``BatchNorm2d.inference``),
        then the convolution reads its output, unless an :attr:`accelerator` computes
        the block.
        """
        if not self.training and self.accelerator is not None:
            out = self.accelerator(self, x)
            if out is not None:
                return out
        a = self._bn_relu(self.bn1, self.relu1, x)  # (N, C_in, H, W)
        if self.cheap_before[0]:
            h = self.conv1.forward(a, cheap_input=x)  # (N, C_out, Ho, Wo)
        else:
            h = self.conv1.forward(a)
        b = self._bn_relu(self.bn2, self.relu2, h)
        if self.cheap_before[1]:
            o = self.conv2.forward(b, cheap_input=h)
        else:
            o = self.conv2.forward(b)
        return self.add_shortcut(o, x, lambda: self.shortcut.forward(a))

    def add_shortcut(self, o, x, projection):
        """``o + shortcut(x)``, in place (``o`` is conv2's fresh output, no cache keeps it):
        ``x`` itself, ``SubsamplePad(x)``, or ``projection()`` -- the 1x1 conv of the
        pre-activation ``a``, computed by the caller's function, only for that kind."""
        if self.shortcut_kind == "projection":
            o += projection()
        elif self.shortcut_kind == "identity":
            o += self.shortcut.forward(x)
        else:
            o += x
        return o

    def _bn_relu(self, bn, relu, z):
        if self.training:
            return relu.forward(bn.forward(z))
        a = bn.inference(z, relu=True)
        relu.keep_output(a)  # for a backward pass through the frozen BN (fine-tuning)
        return a

    def backward(self, dy):
        """Gradient of the block input; the cheap branches' gradients of a "bef"
        placement join the main path at ``h`` and ``x``."""
        if self.cheap_before[1]:
            db, dh_cheap = self.conv2.backward(dy)
        else:
            db, dh_cheap = self.conv2.backward(dy), 0
        dh = self.bn2.backward(self.relu2.backward(db)) + dh_cheap
        if self.cheap_before[0]:
            da, dx_cheap = self.conv1.backward(dh)
        else:
            da, dx_cheap = self.conv1.backward(dh), 0
        if self.shortcut_kind == "projection":
            da = da + self.shortcut.backward(dy)
        dx = self.bn1.backward(self.relu1.backward(da)) + dx_cheap
        if self.shortcut_kind == "identity":
            return dx + self.shortcut.backward(dy)
        if self.shortcut_kind == "none":
            return dx + dy
        return dx
