"""The low-cost collaborative layer (LCCL): a convolution gated by a cheap one.

A batch's way through :class:`LCCLConv2d`; start at :meth:`LCCLConv2d.forward`::

    training:  z  = BN(conv_W'(u))                  cheap, u = cheap_input or x
               V' = g(z),  mask = z > 0             the gate, F.gate_forward, F.gate_mask
               V  = conv_W(x) at the open cells     GatedConv2d: forward, dW and dX there only
               O  = V ⊙ V'                          F.product_forward (V' broadcast if T' = 1)

    eval:      z  = conv_{W'_f}(u) + b'_f           BN folded in: kernels.cheap_conv2d
               V' = g(z),  mask = V' > 0            F.gate_forward, F.gate_mask
               V  = kernels.gated_conv2d(x, W, mask)    only at the open cells, MACs counted
               O  = V ⊙ V'                          exactly 0 where the gate is shut

Skipping ``V`` where ``V' = 0`` is exact: the sparse eval path equals the dense one
(``sparse = False``), the sparse training step the dense one (``sparse_train = False``),
gradients included (docs/derivations.md, section 10).  A NaN ``z`` opens the gate, so
NaN lands in the same cells on every path; a shut gate gives exactly 0.  In eval mode
an ``accelerator`` (:func:`lccl_ref.fast.accelerate` sets one) may compute the layer.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..checks import check_float_array, check_same_dtype
from ..functional.gate import GATES
from ..kernels import cheap_conv2d
from .cheap import CheapConv2d
from .gated import GatedConv2d
from .layers import BatchNorm2d, Conv2d
from .module import Module

CHEAP_KINDS = ("1x1xCxT", "kxkxCx1", "1x1xCx1")


class LCCLConv2d(Module):
    """An expensive k x k x C x T convolution times a cheap k' x k' x C x T' branch.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``T``.
    kernel_size, stride, padding : int or (int, int)
        Of the expensive convolution.  The cheap branch has the same stride and the
        padding that gives the same output size: ``padding`` for a k x k cheap kernel,
        ``padding - (k - 1) // 2`` for a 1x1 one (centred on the k x k window; needs
        an odd ``k`` and ``padding >= (k - 1) // 2``).
    cheap : {"1x1xCxT", "kxkxCx1", "1x1xCx1"}
        ``(k', T')`` = ``(1, T)``: a mask per channel and position; ``(k, 1)`` and ``(1, 1)``
        (the authors' code default): one mask per position, shared by the T channels.
    rng : None, int or numpy Generator;  dtype : float32 or float64
    gate : {"relu", "clip"}
        ``V' = g(z)``: ``max(z, 0)`` (the paper's) or ``min(max(z, 0), 1)`` (bounded;
        :mod:`lccl_ref.functional.gate`).  Both are 0 exactly where ``z <= 0``.
    gate_init : (gamma, beta) or None
        Initial scale and shift of the cheap BN (None: 1 and 0, so about half of the
        cells start active).
    cheap_bn : bool
        False: no BN in the cheap branch, a biased cheap conv instead (the paper's
        "Conv + ReLU" ablation, notebook 02).

    Attributes
    ----------
    conv : GatedConv2d;  cheap_conv : CheapConv2d (T' = 1), Conv2d;  cheap_bn : BatchNorm2d|None
    sparse, fold_bn, sparse_train : bool
        All True by default.  Eval mode: V only at the open cells (False: densely, the
        reference); the cheap BN folded into the cheap conv (False: one after the
        other).  Training: V, dW and dX at the open cells only (False: densely).
    accelerator : None or callable
        Eval-mode hook: ``accelerator(layer, x, cheap_input)`` returns
        ``(O, mask, active, macs_expensive)``, or None to leave the call to the
        teaching path.  :func:`lccl_ref.fast.accelerate` sets it.
    last_stats : dict or None
        Set by every eval forward: ``density`` (active cells of V over ``N*T*Ho*Wo``),
        ``active_cells``, ``macs_expensive`` (executed, as counted by the gated kernel;
        the dense count on the dense path), ``macs_cheap`` (``N*Ho*Wo*T'*C*k'*k'``),
        ``macs_dense`` (``N*Ho*Wo*T*C*k*k``), ``macs_needed`` (``active_cells*C*k*k``:
        what a kernel that skips every shut cell runs), ``method`` (which kernel
        computed V; a dense fallback executes more than ``macs_needed``).
    last_mask : bool ndarray or None, the eval mask: (N, Ho, Wo) if T' = 1, else (N, T, Ho, Wo)
    last_train_density, last_train_macs, last_gate_mean
        Set by every training forward: ``mean(z > 0)`` on the batch, the expensive
        conv's dense MACs per image, ``mean(V')``.
    density_grad, gate_mean_grad : float
        ``dL/d last_train_density``, ``dL/d last_gate_mean`` of a penalty (``train.budget``)
        set before the backward, which takes them to ``z`` (``F.density_backward``, a
        straight-through surrogate, times T') and ``V'``, then resets them to 0.

    Notes
    -----
    PAPER.md, "The idea": ``V = conv_W(U)``, ``V' = ReLU(BN(conv_W'(U)))``,
    ``O = V ⊙ V'``; backward ``dV = dO ⊙ V'``, ``dV' = dO ⊙ V`` (summed over T when
    T' = 1), then through the gate, the cheap BN and conv.
    """

    accelerator = None

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1,
                 cheap="1x1xCx1", rng=None, dtype=np.float32, gate="relu", gate_init=None,
                 cheap_bn=True):
        super().__init__()
        if cheap not in CHEAP_KINDS:
            raise ValueError(f"cheap must be one of {CHEAP_KINDS}, got {cheap!r}")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        self.cheap = cheap
        self.conv = GatedConv2d(in_channels, out_channels, kernel_size, stride, padding,
                                rng=rng, dtype=dtype)
        (kh, kw), (ph, pw) = self.conv.kernel_size, self.conv.padding
        if cheap.startswith("1x1"):
            if kh % 2 == 0 or kw % 2 == 0 or ph < (kh - 1) // 2 or pw < (kw - 1) // 2:
                raise ValueError(
                    f"a 1x1 cheap branch needs an odd kernel_size and padding >= "
                    f"(kernel_size - 1) // 2 to give the expensive conv's output size, got "
                    f"kernel_size={self.conv.kernel_size}, padding={self.conv.padding}")
            cheap_kernel, cheap_padding = (1, 1), (ph - (kh - 1) // 2, pw - (kw - 1) // 2)
        else:
            cheap_kernel, cheap_padding = (kh, kw), (ph, pw)
        cheap_out = self.conv.out_channels if cheap.endswith("xT") else 1
        cheap_cls = CheapConv2d if cheap_out == 1 else Conv2d  # no im2col for one column
        self.cheap_conv = cheap_cls(in_channels, cheap_out, cheap_kernel, stride, cheap_padding,
                                    bias=not cheap_bn, rng=rng, dtype=dtype)
        self.cheap_bn = BatchNorm2d(cheap_out, dtype=dtype) if cheap_bn else None
        self.gate = gate
        if gate_init is not None:
            if not cheap_bn:
                raise ValueError("gate_init sets the cheap BN's scale and shift; this layer "
                                 "has no cheap BN (cheap_bn=False)")
            self.cheap_bn.weight.data[:], self.cheap_bn.bias.data[:] = F.check_gate_init(gate_init)
        self.last_train_density = self.last_train_macs = self.last_gate_mean = None
        self.density_grad = self.gate_mean_grad = 0.0
        self.sparse = self.fold_bn = self.sparse_train = True
        self.last_stats = self.last_mask = self.last_input_shape = self._cache = None

    @property
    def shared_mask(self) -> bool:
        """True when the cheap branch has one channel (mask shared by all T)."""
        return self.cheap_conv.out_channels == 1

    def forward(self, x, cheap_input=None):
        """(N, C, H, W) of the module's dtype -> O (N, T, Ho, Wo).

        ``cheap_input`` (N, C, H, W) or None: the cheap branch's input when it differs
        from ``x`` (the "bef" placements of :mod:`lccl_ref.models`); None means ``x``.
        """
        check_float_array("x", x, ndim=4)
        if x.shape[1] != self.conv.in_channels:
            raise ValueError(f"x must have {self.conv.in_channels} channels (N, C, H, W), "
                             f"got shape {x.shape}")
        if cheap_input is not None:
            check_float_array("cheap_input", cheap_input, ndim=4)
            if cheap_input.shape != x.shape:
                raise ValueError(f"cheap_input must have the shape of x {x.shape}, "
                                 f"got {cheap_input.shape}")
            check_same_dtype(x=x, cheap_input=cheap_input)
        self.last_input_shape = x.shape
        if self.training:
            return self._forward_train(x, x if cheap_input is None else cheap_input,
                                       separate=cheap_input is not None)
        self.conv.check_input(x)  # dtype and size, as an eval-mode Conv2d checks them
        result = None if self.accelerator is None else self.accelerator(self, x, cheap_input)
        out, mask, active, macs_expensive = result or self._forward_eval(x, cheap_input)
        method = "accelerator" if result else self.conv.last_method if self.sparse else "dense"
        self.record_eval(x.shape, mask, active, macs_expensive, method)
        return out

    def _forward_train(self, x, u, separate):
        z = self.cheap_conv.forward(u)  # (N, T', Ho, Wo), the cheap branch first
        if self.cheap_bn is not None:
            z = self.cheap_bn.forward(z)
        v_cheap, gate_cache = F.gate_forward(z, self.gate)  # V' = g(z)
        mask = F.gate_mask(z[:, 0] if self.shared_mask else z) if self.sparse_train else None
        v = self.conv.forward(x, mask)  # (N, T, Ho, Wo), 0 where the gate is shut
        self.last_train_density, density_cache = F.density_forward(z)  # d = mean(z > 0)
        self.last_gate_mean = float(v_cheap.mean()) if v_cheap.size else 0.0
        t, c, kh, kw = self.conv.weight.data.shape
        self.last_train_macs = v.shape[2] * v.shape[3] * t * c * kh * kw  # dense, per image
        out, product_cache = F.product_forward(v, v_cheap)  # O = V ⊙ V'
        self._cache = (product_cache, gate_cache, density_cache, separate)
        return out

    def _forward_eval(self, x, cheap_input):
        """The teaching path: cheap branch -> gate -> mask -> gated conv -> O = V ⊙ V'.
        Returns ``(O, mask, active positions or cells, MACs of the expensive conv)``."""
        conv = self.conv
        v_cheap, mask, active = self.cheap_eval(x if cheap_input is None else cheap_input)
        if self.sparse:  # V at the open cells only, 0 elsewhere; the kernel counts its MACs
            v, macs = conv.forward(x, mask), conv.last_macs
        else:  # the reference: V everywhere
            v, _ = F.conv2d_forward(x, conv.weight.data, None, conv.stride, conv.padding)
            t, c, kh, kw = conv.weight.data.shape
            macs = v.shape[0] * v.shape[2] * v.shape[3] * t * c * kh * kw
        # O = V ⊙ V', exactly 0 where the gate is shut: V and V' are both 0 there on the
        # sparse path; the dense V may be inf or NaN there, so the mask says where
        opened = None if self.sparse else mask[:, None] if self.shared_mask else mask
        out, _ = F.product_forward(v, v_cheap, opened)
        return out, mask, active, macs

    def cheap_preactivation(self, u):
        """Eval mode: the cheap branch before its gate, ``z = BN(conv_W'(u))`` with the
        running statistics, (N, T', Ho, Wo).  With ``fold_bn``, one convolution with the
        BN folded in (:meth:`folded_cheap`, ``kernels.cheap_conv2d``)."""
        if self.training:
            raise RuntimeError("cheap_preactivation needs eval mode (call .eval())")
        conv, bn = self.cheap_conv, self.cheap_bn
        conv.last_input_shape = u.shape
        if self.fold_bn:
            return cheap_conv2d(u, *self.folded_cheap(), conv.stride, conv.padding)
        b = None if conv.bias is None else conv.bias.data
        z, _ = F.conv2d_forward(u, conv.weight.data, b, conv.stride, conv.padding)
        if bn is not None:
            z, _ = F.batchnorm2d_forward(z, bn.weight.data, bn.bias.data, bn.running_mean,
                                         bn.running_var, False, bn.momentum, bn.eps)
        return z

    def folded_cheap(self):
        """``(w_f, b_f)``: the cheap conv with its eval BN folded in (``F.fold_into_conv``),
        (T', C, k', k') and (T',); without a cheap BN, the conv's own weight and bias."""
        conv, bn = self.cheap_conv, self.cheap_bn
        if bn is None:
            return conv.weight.data, conv.bias.data
        return F.fold_into_conv(conv.weight.data, None, bn.weight.data, bn.bias.data,
                                bn.running_mean, bn.running_var, bn.eps)

    def cheap_eval(self, u):
        """``(V', mask, active)`` in eval mode: the gate ``V' = g(z)`` (N, T', Ho, Wo), the
        mask ``V' > 0`` ((N, Ho, Wo) when T' = 1, else (N, T, Ho, Wo); true for a NaN
        ``z``) and its number of true cells."""
        z = self.cheap_preactivation(u)  # (N, T', Ho, Wo)
        v_cheap, _ = F.gate_forward(z, self.gate)  # V' = g(z)
        mask = F.gate_mask(z[:, 0] if self.shared_mask else z)  # V' > 0
        return v_cheap, mask, int(np.count_nonzero(mask))

    def record_eval(self, x_shape, mask, active, macs_expensive, method=None):
        """After an eval forward (the teaching path's or an accelerator's): ``last_stats``,
        ``last_mask``, the convs' input shapes; ``active``: the true cells of ``mask``;
        ``method``: the kernel that computed V (``kernels.choose_method``)."""
        n, ho, wo = x_shape[0], mask.shape[-2], mask.shape[-1]
        t, c, kh, kw = self.conv.weight.data.shape
        t_c, c_c, kh_c, kw_c = self.cheap_conv.weight.data.shape
        active_cells = active * (t if self.shared_mask else 1)
        self.conv.last_input_shape = self.cheap_conv.last_input_shape = x_shape
        self.last_mask = mask
        self.last_stats = dict(  # N = 0: nothing active, density 0
            density=active_cells / (n * t * ho * wo) if n else 0.0, active_cells=active_cells,
            macs_expensive=int(macs_expensive), macs_cheap=n * ho * wo * t_c * c_c * kh_c * kw_c,
            macs_dense=n * ho * wo * t * c * kh * kw, macs_needed=active_cells * c * kh * kw,
            method=method)
        self._cache = None

    def backward(self, dy):
        """Backward of a training-mode :meth:`forward`: ``dy`` (N, T, Ho, Wo) -> ``dx``,
        or ``(dx, dx_cheap)`` when the forward had a separate ``cheap_input`` (the
        expensive and the cheap branch's input gradients).  Parameter gradients are
        added into ``conv``, ``cheap_conv`` and ``cheap_bn``."""
        if self._cache is None:
            raise RuntimeError("LCCLConv2d.backward needs a training-mode forward first "
                               "(eval-mode forwards keep no cache)")
        product_cache, gate_cache, density_cache, separate = self._cache
        dv, dv_cheap = F.product_backward(dy, product_cache)  # dO ⊙ V', dO ⊙ V (sum over T)
        if self.gate_mean_grad:  # + dL/d mean(V') of a penalty on the gate (GateL1)
            dv_cheap += dv_cheap.dtype.type(self.gate_mean_grad / product_cache[1].size)
            self.gate_mean_grad = 0.0
        dx = self.conv.backward(dv)
        dz = F.gate_backward(dv_cheap, gate_cache)  # dz = dV' * g'(z)
        if self.density_grad:  # a budget's dL/dd, x T': per-channel gates as fast (§9)
            dz += F.density_backward(self.density_grad * dz.shape[1], density_cache)
            self.density_grad = 0.0
        if self.cheap_bn is not None:
            dz = self.cheap_bn.backward(dz)
        du = self.cheap_conv.backward(dz)
        self._cache = None
        if separate:
            return dx, du
        return dx + du

    def extra_repr(self):
        c = self.conv
        return (f"{c.in_channels}, {c.out_channels}, kernel_size={c.kernel_size}, stride="
                f"{c.stride}, padding={c.padding}, cheap={self.cheap!r}, sparse={self.sparse}")


def set_sparse(model: Module, flag: bool) -> Module:
    """Choose the sparse (True) or dense (False) eval path of every LCCL in ``model``."""
    if not isinstance(model, Module):
        raise TypeError(f"model must be a Module, got {type(model).__name__}")
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"flag must be a bool, got {type(flag).__name__}")
    for m in model.modules():
        if isinstance(m, LCCLConv2d):
            m.sparse = bool(flag)
    return model


__all__ = ["CHEAP_KINDS", "LCCLConv2d", "set_sparse"]
