"""The low-cost collaborative layer (LCCL): a convolution gated by a cheap one.

A batch's way through :class:`LCCLConv2d`::

    training:  V = conv_W(x)                       expensive, dense
               V' = ReLU(BN(conv_W'(u)))           cheap, u = cheap_input or x
               O = V * V'                          V' broadcast over T when T' = 1

    eval:      V' = ReLU(conv_{W'_f, b'_f}(u))     BN folded into the cheap conv
               mask = V' > 0                       (N, Ho, Wo) or (N, T, Ho, Wo)
               V = kernels.gated_conv2d(x, W, mask) only at active cells
               O = V * V'                          + density and MACs recorded

    (shared masks, u = x: all four in one call, kernels.fused.lccl_shared_eval,
    when that is faster for the shape than the cheap kernel + the gated kernel)

Wherever ``V' = 0`` the product is 0 whatever ``V`` is, so skipping ``V`` there
is exact: the sparse eval path equals the dense eval path to float tolerance.
With the BN folded in, the mask is a thresholded linear predictor
``conv_{W'_f}(u) + b'_f > 0``.

NaN and infinities (eval mode)
------------------------------
Every ReLU keeps a NaN (``ReLU(NaN) = NaN``, as ``np.maximum`` and PyTorch), and
the mask is ``not V' <= 0``: a NaN cheap pre-activation opens the gate, so the
NaN reaches ``O`` on the sparse path as it does through ``V' = ReLU(NaN)`` on
the dense one.  A closed gate (``V' = 0``) gives exactly 0 on both paths,
whatever ``V`` is there: the sparse path never computes that ``V``, and the
dense path writes 0 rather than ``V * 0`` (NaN for a NaN or infinite ``V``).
So the two paths have NaN in the same cells.  Training mode keeps the plain
product ``V * V'``.

Cheap-branch kinds (``k`` the expensive kernel, ``T`` its output channels):

========== ======= ======= =========================================
kind       k'      T'      mask
========== ======= ======= =========================================
1x1xCxT    1       T       one per output channel and position
kxkxCx1    k       1       one per position, shared by all T channels
1x1xCx1    1       1       one per position (the authors' code default)
========== ======= ======= =========================================
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import functional as F
from ..checks import check_float_array, check_same_dtype, effective_stride
from ..fast.cheap import cheap_single_unchecked
from ..fast.fused import lccl_shared_eval_unchecked
from ..fast.tune import fastest
from ..functional.batchnorm import affine_relu_unchecked
from ..functional.gate import GATES
from ..kernels.gated import gated_conv2d_unchecked
from .layers import BatchNorm2d, Conv2d
from .module import Module

CHEAP_KINDS = ("1x1xCxT", "kxkxCx1", "1x1xCx1")
#: The eval path of each shared-mask shape, fused or two calls: ``{key: {"method", "ms"}}``.
FUSED_CHOICES: dict = {}


class LCCLConv2d(Module):
    """An expensive k x k x C x T convolution times a cheap k' x k' x C x T' branch.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C`` and ``T``.
    kernel_size, stride, padding : int or (int, int)
        Of the expensive convolution. The cheap branch uses the same stride and
        the padding that gives the same output size: ``padding`` for a k x k
        cheap kernel; ``padding - (k - 1) // 2`` for a 1x1 one (0 for the usual
        3x3 / padding 1), which centres the 1x1 tap on the k x k window; this
        needs an odd ``k`` and ``padding >= (k - 1) // 2``.
    cheap : {"1x1xCxT", "kxkxCx1", "1x1xCx1"}
        The cheap branch's kernel, see the module docstring.
    rng : None, int or numpy Generator
    dtype : float32 or float64
    gate : {"relu", "clip"}
        The gate on the cheap pre-activation, see Attributes.
    gate_init : (gamma, beta) or None
        Initial scale and shift of the cheap BN (None: 1 and 0, so about half of
        the cells start active).
    cheap_bn : bool
        False: no BN in the cheap branch (a biased cheap conv instead).

    Attributes
    ----------
    conv : Conv2d            expensive, weight (T, C, k, k), no bias
    cheap_conv : Conv2d      cheap, weight (T', C, k', k'), no bias
    cheap_bn : BatchNorm2d (T',), or None
        None with ``cheap_bn=False``: the cheap conv then has a bias and
        ``z = conv_W'(u) + b'`` (the paper's "Conv + ReLU" ablation, notebook 02).
    gate : {"relu", "clip"}
        ``V' = g(z)`` on ``z = BN(conv_W'(u))``: ``max(z, 0)`` (the paper's) or
        ``min(max(z, 0), 1)`` (bounded; :mod:`lccl_ref.functional.gate`).  Both are 0
        exactly where ``z <= 0``, so the skip is exact for both.
    last_train_density : float or None
        Set by every training forward: the fraction of cells with ``z > 0`` on the
        batch, the density the eval path would have with these statistics.
    last_train_macs : int or None
        The expensive conv's dense MACs per image at the last training forward.
    density_grad : float
        ``dL/dd`` of a loss on ``last_train_density`` (a density budget,
        :class:`lccl_ref.train.DensityBudget`), set between forward and backward;
        the backward adds it to ``dz`` through the straight-through surrogate
        :func:`lccl_ref.functional.density_backward`, then resets it to 0.
    last_gate_mean, gate_mean_grad : float
        Likewise for ``mean(V')`` over the batch (an L1 penalty on the gate,
        :class:`lccl_ref.train.GateL1`): ``dL/d mean(V')`` goes to every cell of
        ``dV'``.
    sparse : bool
        Eval mode only: True (default) computes V with ``kernels.gated_conv2d``
        at the active cells; False computes V densely (the reference the sparse
        path is tested against).  See also :func:`set_sparse`.
    fold_bn : bool
        Eval mode only: True (default) folds ``cheap_bn`` into ``cheap_conv``
        (``functional.fold_into_conv``); False runs them one after the other.
    fused : bool
        Eval mode, sparse path, shared mask, ``fold_bn``, cheap branch reading
        ``x``: True (default) may run the cheap branch, mask and gated conv as
        one kernel (:func:`kernels.fused.lccl_shared_eval`) when it is faster
        than the two calls for the shape (timed once, :data:`FUSED_CHOICES`);
        False always makes the two calls (``cheap_eval``, then the gated
        kernel), which :func:`lccl_ref.bench.calibrate` hooks into.
    last_stats : dict or None
        Set by every eval-mode forward: ``density`` (active cells of V over
        ``N*T*Ho*Wo``), ``active_cells``, ``macs_expensive`` (executed, as counted
        by the gated kernel; the dense count on the dense path), ``macs_cheap``
        (``N*Ho*Wo*T'*C*k'*k'``), ``macs_dense`` (``N*Ho*Wo*T*C*k*k``).
        Multiply-accumulates, not FLOPs.
    last_mask : bool ndarray or None
        The eval mask ``V' > 0`` (true for a NaN ``V'``, see "NaN and infinities" in the
        module docstring): (N, Ho, Wo) when T' = 1, (N, T, Ho, Wo) when T' = T.
    last_input_shape : tuple
        Shape of ``x`` at the last forward, as for :class:`Conv2d`.

    Notes
    -----
    The paper's layer (Dong et al. 2017, "the idea")::

        V  = conv_W(U),  V' = ReLU(BN(conv_W'(U))),  O = V ⊙ V'

    and its backward pass, used in training::

        dV  = dO ⊙ V'
        dV' = dO ⊙ V                (summed over the T channels when T' = 1)

    then ``dV'`` flows through the cheap ReLU, BN and conv.
    """

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
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding,
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
        self.cheap_conv = Conv2d(in_channels, cheap_out, cheap_kernel, stride, cheap_padding,
                                 bias=not cheap_bn, rng=rng, dtype=dtype)
        self.cheap_bn = BatchNorm2d(cheap_out, dtype=dtype) if cheap_bn else None
        self.gate = gate
        if gate_init is not None:
            if not cheap_bn:
                raise ValueError("gate_init sets the cheap BN's scale and shift; this layer "
                                 "has no cheap BN (cheap_bn=False)")
            gamma0, beta0 = _gate_init(gate_init)
            self.cheap_bn.weight.data[:] = gamma0
            self.cheap_bn.bias.data[:] = beta0
        self.last_train_density = None
        self.last_train_macs = None
        self.last_gate_mean = None
        self.density_grad = 0.0
        self.gate_mean_grad = 0.0
        self.sparse = True
        self.fold_bn = True
        self.fused = True
        self.last_stats = None
        self.last_mask = None
        self.last_input_shape = None
        self._cache = None

    @property
    def shared_mask(self) -> bool:
        """True when the cheap branch has one channel (mask shared by all T)."""
        return self.cheap_conv.out_channels == 1

    # ---- forward ---------------------------------------------------------
    def forward(self, x, cheap_input=None, pre=None):
        """Forward pass.

        Parameters
        ----------
        x : ndarray, (N, C, H, W), float32 or float64 (the module's dtype)
            Input of the expensive convolution.
        cheap_input : ndarray, (N, C, H, W), or None
            Input of the cheap branch when it differs from ``x`` (the "bef"
            placements of :mod:`lccl_ref.models`); None means ``x``.
        pre : (s, h) pair of (C,) arrays, or None; eval mode only
            The expensive conv (and a cheap branch without ``cheap_input``)
            reads ``max(x * s[c] + h[c], 0)`` instead of ``x``: the BN-ReLU
            before the conv, applied while the kernels copy the input
            (:class:`~lccl_ref.models.PreActBlock` passes ``BatchNorm2d.eval_affine``).

        Returns
        -------
        out : ndarray, (N, T, Ho, Wo), dtype of ``x``
        """
        check_float_array("x", x, ndim=4)
        if x.shape[1] != self.conv.in_channels:
            raise ValueError(f"x must have {self.conv.in_channels} channels (N, C, H, W), "
                             f"got shape {x.shape}")
        u = x if cheap_input is None else cheap_input
        if cheap_input is not None:
            check_float_array("cheap_input", cheap_input, ndim=4)
            if cheap_input.shape != x.shape:
                raise ValueError(f"cheap_input must have the shape of x {x.shape}, "
                                 f"got {cheap_input.shape}")
            check_same_dtype(x=x, cheap_input=cheap_input)
        self.last_input_shape = x.shape
        if self.training:
            if pre is not None:
                raise ValueError("pre (a BN-ReLU folded into the input copy) is for eval mode")
            return self._forward_train(x, u, separate=cheap_input is not None)
        self.conv._check_eval_input(x, pre)  # dtype, size, pre: as eval-mode Conv2d checks
        return self._forward_eval(x, cheap_input, pre)

    def _forward_train(self, x, u, separate):
        v = self.conv.forward(x)  # (N, T, Ho, Wo)
        z = self.cheap_conv.forward(u)  # (N, T', Ho, Wo)
        if self.cheap_bn is not None:
            z = self.cheap_bn.forward(z)
        v_cheap, gate_cache = F.gate_forward(z, self.gate)  # V' = g(z)
        self.last_train_density, density_cache = F.density_forward(z)  # d = mean(z > 0)
        self.last_gate_mean = float(v_cheap.mean()) if v_cheap.size else 0.0
        t, c, kh, kw = self.conv.weight.data.shape
        self.last_train_macs = v.shape[2] * v.shape[3] * t * c * kh * kw  # dense, per image
        self._cache = (v, v_cheap, gate_cache, density_cache, separate)
        return v * v_cheap

    def cheap_branch_eval(self, u):
        """Eval-mode cheap branch ``V' = ReLU(BN(conv_W'(u)))``, shape (N, T', Ho, Wo).

        With ``fold_bn`` the BN is folded into the conv, ``V' = ReLU(conv_{W'_f}(u) + b'_f)``.
        """
        if self.training:
            raise RuntimeError("cheap_branch_eval needs eval mode (call .eval())")
        return self.cheap_eval(u)[0]

    def cheap_eval(self, u):
        """``(V', mask, active)``: the eval-mode cheap branch (N, T', Ho, Wo), the mask
        ``V' > 0`` ((N, Ho, Wo) when T' = 1, else (N, T, Ho, Wo)) and its true cells.

        Shared masks with ``fold_bn``: one Numba call (:func:`kernels.cheap.cheap_single`);
        per-channel masks: :func:`cheap_conv2d`, then ReLU and mask.
        """
        if self.training:
            raise RuntimeError("cheap_eval needs eval mode (call .eval())")
        conv, bn = self.cheap_conv, self.cheap_bn
        if self.fold_bn:
            conv.last_input_shape = u.shape
            if self.shared_mask:  # one Numba call: conv, bias, ReLU, mask, count
                w_f, b_f = self._folded_cheap()
                v, mask, active = cheap_single_unchecked(u, w_f, b_f, conv.stride, conv.padding)
                return self._bound(v)[:, None], mask, active
            w_f, b_f = self._folded_cheap()
            pre = cheap_conv2d(u, w_f, b_f, conv.stride, conv.padding)
        else:
            b = None if conv.bias is None else conv.bias.data
            pre, _ = F.conv2d_forward(u, conv.weight.data, b, conv.stride, conv.padding)
            if bn is not None:
                pre, _ = F.batchnorm2d_forward(pre, bn.weight.data, bn.bias.data,
                                               bn.running_mean, bn.running_var, False,
                                               bn.momentum, bn.eps)
        conv.last_input_shape = u.shape
        v_cheap = self._bound(np.maximum(pre, pre.dtype.type(0)))  # NaN stays NaN
        shut = v_cheap[:, 0] <= 0 if self.shared_mask else v_cheap <= 0
        mask = ~shut  # (N, Ho, Wo) | (N, T, Ho, Wo); NaN opens the gate
        return v_cheap, mask, int(np.count_nonzero(mask))

    def _bound(self, v):
        """``V' = min(v, 1)`` in place for the clip gate (``v = ReLU(z)``); ``v`` otherwise."""
        if self.gate == "clip":
            np.minimum(v, v.dtype.type(1), out=v)
        return v

    def _folded_cheap(self):
        """``(w_f, b_f)``: the cheap conv with its eval BN folded in (``fold_into_conv``'s
        formula in one Numba call, without its argument checks: the module's own arrays;
        at batch 1 the checks and five NumPy calls cost as much as the cheap kernel)."""
        conv, bn = self.cheap_conv, self.cheap_bn
        w = np.ascontiguousarray(conv.weight.data)
        if bn is None:  # nothing to fold: the conv's own weight and bias
            return w.copy(), conv.bias.data.copy()
        w_f, b_f = np.empty_like(w), np.empty(w.shape[0], dtype=w.dtype)
        _fold(w, bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var,
              w.dtype.type(bn.eps), w_f, b_f)
        return w_f, b_f

    def _shared_sparse(self, x, pre):
        """``(O, V', mask, active, macs)`` of a shared-mask layer whose cheap branch reads
        the expensive conv's input (``x``, or ``max(x * s + h, 0)`` with ``pre``): the
        fused kernel or the two calls (cheap branch, gated conv), whichever is faster for
        this shape (timed at its first call; :data:`FUSED_CHOICES`)."""
        conv, cconv = self.conv, self.cheap_conv
        w, (w_f, b_f) = conv.weight.data, self._folded_cheap()
        cconv.last_input_shape = x.shape

        def two_calls():  # both read the BN-ReLU's output, made once here
            xe = x if pre is None else affine_relu_unchecked(x, *pre)
            v, mask, active = cheap_single_unchecked(xe, w_f, b_f, cconv.stride, cconv.padding)
            out, macs = gated_conv2d_unchecked(xe, w, mask, None, conv.stride, conv.padding,
                                               scale=v)
            return out, v, mask, active, macs

        def fused():
            return lccl_shared_eval_unchecked(x, w, w_f, b_f, conv.stride, conv.padding,
                                              cconv.padding, pre)

        key = (x.shape, w.shape, w_f.shape, conv.stride, conv.padding, cconv.padding,
               x.dtype.str, pre is not None)
        name = fastest(FUSED_CHOICES, key, {"fused": fused, "two calls": two_calls})
        return fused() if name == "fused" else two_calls()

    def _forward_eval(self, x, cheap_input, pre):
        conv = self.conv
        n = x.shape[0]
        t, c, kh, kw = conv.weight.data.shape
        shared_input = cheap_input is None or (cheap_input is x and pre is None)
        fusable = self.fused and self.shared_mask and self.fold_bn and self.gate == "relu"
        if self.sparse and fusable and shared_input:
            out, v, mask, active, macs_expensive = self._shared_sparse(x, pre)
            ho, wo = v.shape[1], v.shape[2]
        else:
            if pre is not None:  # the BN-ReLU as its own pass on these paths
                x = affine_relu_unchecked(x, *pre)
            u = x if cheap_input is None else cheap_input
            v_cheap, mask, active = self.cheap_eval(u)  # (N, T', Ho, Wo), mask, true cells
            ho, wo = v_cheap.shape[2], v_cheap.shape[3]
            if self.sparse:  # O = V * V' fused into the gated kernel's output write
                scale = v_cheap[:, 0] if self.shared_mask else v_cheap
                out, macs_expensive = gated_conv2d_unchecked(
                    x, conv.weight.data, mask, None, conv.stride, conv.padding, scale=scale)
            else:  # the reference: dense conv, then the product, 0 where the gate is shut
                v, _ = F.conv2d_forward(x, conv.weight.data, None, conv.stride, conv.padding)
                out = v * v_cheap
                on = mask[:, None] if self.shared_mask else mask  # (N, 1 or T, Ho, Wo)
                np.copyto(out, 0, where=~on)  # not V * 0: NaN for a NaN or infinite V
                macs_expensive = n * ho * wo * t * c * kh * kw
        active_cells = active * (t if self.shared_mask else 1)
        macs_dense = n * ho * wo * t * c * kh * kw
        conv.last_input_shape = x.shape
        _, c_cheap, kh_c, kw_c = self.cheap_conv.weight.data.shape
        self.last_mask = mask
        self.last_stats = dict(
            density=active_cells / (n * t * ho * wo) if n else 0.0,  # N = 0: nothing active
            active_cells=active_cells,
            macs_expensive=int(macs_expensive),
            macs_cheap=n * ho * wo * self.cheap_conv.out_channels * c_cheap * kh_c * kw_c,
            macs_dense=macs_dense,
        )
        self._cache = None
        return out  # (N, T, Ho, Wo)

    # ---- backward --------------------------------------------------------
    def backward(self, dy):
        """Backward pass of a training-mode :meth:`forward`.

        Parameters
        ----------
        dy : ndarray, (N, T, Ho, Wo), gradient of the output ``O``

        Returns
        -------
        dx : ndarray, (N, C, H, W)
            When ``forward`` had no ``cheap_input``: the gradient of ``x``
            through both branches.
        (dx, dx_cheap) : tuple of two (N, C, H, W) arrays
            When ``forward`` had a separate ``cheap_input``: the gradient of
            ``x`` (expensive branch) and of ``cheap_input`` (cheap branch).

        Parameter gradients are added into ``conv``, ``cheap_conv`` and ``cheap_bn``.
        """
        if self._cache is None:
            raise RuntimeError("LCCLConv2d.backward needs a training-mode forward first "
                               "(eval-mode forwards keep no cache)")
        v, v_cheap, gate_cache, density_cache, separate = self._cache
        check_float_array("dy", dy, ndim=4)
        if dy.shape != v.shape:
            raise ValueError(f"dy must have the output shape {v.shape}, got {dy.shape}")
        dv = dy * v_cheap  # dV = dO ⊙ V'                 (N, T, Ho, Wo)
        dv_cheap = dy * v  # dV' = dO ⊙ V                  (N, T, Ho, Wo)
        if self.shared_mask:
            dv_cheap = dv_cheap.sum(axis=1, keepdims=True)  # (N, 1, Ho, Wo)
        if self.gate_mean_grad:  # + dL/d mean(V') of a penalty on the gate (GateL1)
            dv_cheap += dv_cheap.dtype.type(self.gate_mean_grad / v_cheap.size)
            self.gate_mean_grad = 0.0
        dx = self.conv.backward(dv)
        dz = F.gate_backward(dv_cheap, gate_cache)  # dz = dV' * g'(z)
        if self.density_grad:  # + dL/dd * dd/dz of a density budget (straight-through)
            dz += F.density_backward(self.density_grad, density_cache)
            self.density_grad = 0.0
        if self.cheap_bn is not None:
            dz = self.cheap_bn.backward(dz)
        du = self.cheap_conv.backward(dz)
        self._cache = None
        if separate:
            return dx, du
        return dx + du

    def extra_repr(self):
        return (f"{self.conv.in_channels}, {self.conv.out_channels}, "
                f"kernel_size={self.conv.kernel_size}, stride={self.conv.stride}, "
                f"padding={self.conv.padding}, cheap={self.cheap!r}, sparse={self.sparse}")


def _gate_init(pair):
    """``(gamma, beta)`` of the cheap BN at initialisation, checked."""
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
                       and np.isfinite(v) for v in pair)):
        raise ValueError(f"gate_init must be a pair (gamma, beta) of finite numbers, got {pair!r}")
    return float(pair[0]), float(pair[1])


@njit(cache=True)
def _fold(w, gamma, beta, mean, var, eps, w_f, b_f):
    """``w_f = w * s``, ``b_f = beta - mean * s`` with ``s = gamma / sqrt(var + eps)``, per
    output channel: ``F.fold_into_conv`` for a conv without bias."""
    src, dst = w.reshape(w.shape[0], -1), w_f.reshape(w.shape[0], -1)
    for t in range(w.shape[0]):
        s = gamma[t] / np.sqrt(var[t] + eps)
        b_f[t] = beta[t] - mean[t] * s
        for e in range(src.shape[1]):
            dst[t, e] = src[t, e] * s


def cheap_conv2d(u, w, b, stride, padding):
    """The cheap branch's convolution at inference: one GEMM over the taps, then shift-add.

    Parameters
    ----------
    u : ndarray, (N, C, H, W);  w : ndarray, (T', C, kh, kw);  b : ndarray, (T',)
    stride, padding : (int, int)

    Returns
    -------
    ndarray, (N, T', Ho, Wo), dtype of ``u``: ``F.conv2d_forward(u, w, b, ...)`` up to
    float rounding.

    Notes
    -----
    The cheap branch has one output (``kxkxCx1``, ``1x1xCx1``) or a 1x1 kernel
    (``1x1xCxT``).  im2col would copy the input ``kh*kw`` times into channel-last
    rows to feed a GEMM with one column -- as costly as the expensive conv's own
    im2col when C is small (ResNet-20's first stage), which would eat the saving.
    Here the input is read once, in place, by one GEMM per image::

        Z = W'[taps] @ u               (kh*kw*T', C) @ (C, H*W)
        y[n, t, i, j] = b[t] + sum_{p, q} Z[n, (p, q, t), i*sh + p - ph, j*sw + q - pw]

    where a tap that falls into the zero padding adds nothing (no padded copy).

    ``Z`` holds ``kh*kw*T'`` planes: small for the cheap kinds (9 for ``kxkxCx1``,
    T for ``1x1xCxT``, 1 for ``1x1xCx1``).  Added by the benchmark helper (issue 5).
    """
    n, c, h, wd = u.shape
    t, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = effective_stride(h, wd, stride, padding), padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    if kh == 1 and kw == 1 and ph == 0 and pw == 0:  # subsample first: every stride-th cell
        us = np.ascontiguousarray(u[:, :, ::sh, ::sw][:, :, :ho, :wo])  # (N, C, Ho, Wo)
        y = np.matmul(w.reshape(t, c), us.reshape(n, c, ho * wo))  # (N, T', Ho*Wo)
        y += b[:, None]
        return y.reshape(n, t, ho, wo)
    uc = np.ascontiguousarray(u)  # no padded copy: taps that fall into the padding are skipped
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw * t, c)
    z = np.matmul(taps, uc.reshape(n, c, h * wd)).reshape(n, kh, kw, t, h, wd)
    y = np.empty((n, t, ho, wo), dtype=u.dtype)
    y[...] = b[:, None, None]
    for p in range(kh):
        i0, i1 = _inside(p, ph, sh, h, ho)
        for q in range(kw):
            j0, j1 = _inside(q, pw, sw, wd, wo)
            if i0 >= i1 or j0 >= j1:
                continue
            r0, c0 = i0 * sh + p - ph, j0 * sw + q - pw  # first input row / column read
            y[:, :, i0:i1, j0:j1] += z[:, p, q, :, r0 : r0 + sh * (i1 - i0 - 1) + 1 : sh,
                                       c0 : c0 + sw * (j1 - j0 - 1) + 1 : sw]
    return y


def _inside(tap, pad, stride, size, out):
    """Output indices ``[i0, i1)`` whose input ``i*stride + tap - pad`` lies in ``[0, size)``."""
    i0 = max(0, -((tap - pad) // stride))  # ceil((pad - tap) / stride)
    i1 = min(out, (size - 1 + pad - tap) // stride + 1)
    return i0, i1


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
