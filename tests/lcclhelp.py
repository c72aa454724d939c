"""Helpers shared by the LCCL test modules (import as ``from lcclhelp import ...``;
pytest puts ``tests/`` on ``sys.path``, as for ``gradcheck``).

Float32 through a whole network
-------------------------------
Two float32 implementations of one network (the engine and the module path, a
plain network and its LCCL twin with the product switched off, one batch and
another) add the same products in different orders, so they round differently,
and a network amplifies rounding layer by layer: in ``resnet8`` with BN
statistics taken from the batch itself the module path's relative error grows
from 3e-7 after the first LCCL layer to 1.6e-5 at the logits (measured).  A fixed
tolerance such as 1e-5 relative to the largest logit sits inside that spread and
passes or fails with the machine's BLAS and the autotuner's choices.

:func:`float32_tolerance` derives the tolerance from the computation instead,
against a float64 reference ``ref`` (the same network cast with
``Module.astype(np.float64)``, the same input; its own rounding, ~1e-16, is
negligible).  It takes the largest of three measures of how far float32
rounding moves *this* network on *this* input:

``module``
    ``max|forward(model, x) - ref|``: the float32 forward's own error, depth and
    magnitudes included.
``perturbed``
    ``max|ref - forward(model64 perturbed, x perturbed)|`` over ``DRAWS`` draws
    where every parameter, buffer and input value is multiplied by
    ``1 + u32 * g``, ``g ~ N(0, 1)``, ``u32 = 2**-24`` (a rounding-sized error
    on every operand; computed in float64, so it does not depend on any
    summation order).  It catches a ``module`` error that is small by luck.
``floor``
    ``depth * u32 * max|ref|``, ``depth`` the convolutions and linear layers:
    one rounding of the output per layer, for an output that the two
    measures above happen to leave exact.

and multiplies it by ``MARGIN``: ``tol = MARGIN * max(module, perturbed, floor)``.
Over 260 float32 networks (the engine tests' random networks and their fixed
cases) the engine's error against ``ref`` was at most 4.4 times (99 % of them
below 1.5 times, median 0.24) that maximum, so ``MARGIN = 16`` leaves a factor
of 3.7 over the worst case seen and about 70 over a typical one.

The LCCL gate ``V' = ReLU(z)`` is continuous, so a cell whose cheap
pre-activation ``z`` lies within rounding of 0 and whose mask comes out
differently in float32 and float64 changes the output by ``|V| * |z|`` only, a
rounding-sized amount the tolerance covers.  Masks are therefore compared for
exact equality only between two float32 paths (which compute ``z`` alike),
never against the float64 reference.

A network whose BN statistics come from a single cell (variance 0, scale
``1/sqrt(eps)`` ~ 316 per layer) turns float32 rounding into noise of the size of
the logits; every measure above then says so and the tolerance is vacuous.
:func:`floor_bn_variance` keeps random test networks away from that.
"""

from __future__ import annotations

import copy

import numpy as np

from lccl_ref import functional as F
from lccl_ref.nn import BatchNorm2d, Conv2d, Linear

#: Unit roundoff of float32.
U32 = 2.0**-24
#: The tolerance over the largest measured float32 error, see the module docstring.
MARGIN = 16
#: Perturbed float64 forwards per tolerance.
DRAWS = 3


def randomise_bn(layer, rng, shift=0.0, spread=0.5):
    """Give an LCCL layer's cheap BN non-trivial affine parameters and running statistics.

    gamma ~ U(0.5, 1.5), beta ~ N(shift, spread), running mean ~ N(0, spread),
    running var ~ U(0.5, 2), in the layer's dtype.
    """
    bn = layer.cheap_bn
    dt = bn.weight.data.dtype
    k = bn.num_features
    bn.weight.data = rng.uniform(0.5, 1.5, k).astype(dt)
    bn.bias.data = (rng.normal(0, spread, k) + shift).astype(dt)
    bn.running_mean = rng.normal(0, spread, k).astype(dt)
    bn.running_var = rng.uniform(0.5, 2.0, k).astype(dt)


def floor_bn_variance(model, floor=1e-2):
    """Raise every BN running variance below ``floor`` to ``floor``.

    Statistics measured on a batch with one cell per channel (batch 1, a 1x1 map)
    have variance 0; see the module docstring.
    """
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            m.running_var = np.maximum(m.running_var, m.running_var.dtype.type(floor))


def eval_forward(model, x):
    """``model.eval(); model.forward(x)``: the module path."""
    model.eval()
    return model.forward(x)


def depth(model) -> int:
    """Convolutions and linear layers of ``model`` (cheap branches included)."""
    return sum(isinstance(m, (Conv2d, Linear)) for m in model.modules())


def _perturbed(model64, rng):
    """A copy of a float64 model with every parameter and float buffer times ``1 + u32*g``."""
    m = copy.deepcopy(model64)
    for mod in m.modules():
        for p in mod._params.values():
            p.data = p.data * (1 + U32 * rng.standard_normal(p.data.shape))
        for name in mod._buffers:
            v = getattr(mod, name)
            if v.dtype.kind == "f":
                setattr(mod, name, v * (1 + U32 * rng.standard_normal(v.shape)))
    return m


def float32_tolerance(model, x, forward=eval_forward, want32=None, seed=0):
    """The float64 reference of ``forward(model, x)`` and the float32 tolerance around it.

    Parameters
    ----------
    model : Module, float32 (left unchanged: the float64 model is a deep copy)
    x : ndarray, float32, the input ``forward`` takes
    forward : callable ``(model, x) -> ndarray``
        The float32 path whose rounding is measured (default: the module path).
    want32 : ndarray or None
        ``forward(model, x)`` if already computed.
    seed : int
        Of the perturbations.

    Returns
    -------
    ref : ndarray, float64, ``forward`` of the float64 copy on ``x`` in float64
    tol : float
        Absolute: ``MARGIN * max(module, perturbed, floor)`` (module docstring).
    parts : dict
        The three measures, for error messages.
    """
    if want32 is None:
        want32 = forward(model, x)
    model64 = copy.deepcopy(model).astype(np.float64)
    x64 = x.astype(np.float64)
    ref = forward(model64, x64)
    rng = np.random.default_rng(seed)
    perturbed = 0.0
    for _ in range(DRAWS):
        x_p = x64 * (1 + U32 * rng.standard_normal(x64.shape))
        y_p = forward(_perturbed(model64, rng), x_p)
        perturbed = max(perturbed, float(np.abs(y_p - ref).max(initial=0.0)))
    parts = dict(module=float(np.abs(want32.astype(np.float64) - ref).max(initial=0.0)),
                 perturbed=perturbed,
                 floor=depth(model) * U32 * float(np.abs(ref).max(initial=0.0)))
    return ref, MARGIN * max(parts.values()), parts


def assert_float32_close(got, model, x, forward=eval_forward, want32=None, what="output"):
    """Assert the float32 ``got`` is within :func:`float32_tolerance` of the float64
    reference of ``forward(model, x)``; return ``(error, tol)``."""
    ref, tol, parts = float32_tolerance(model, x, forward, want32)
    assert got.dtype == np.float32 and got.shape == ref.shape, (got.dtype, got.shape, ref.shape)
    err = float(np.abs(got.astype(np.float64) - ref).max(initial=0.0))
    detail = ", ".join(f"{k} {v:.3g}" for k, v in parts.items())
    assert err <= tol, (f"{what}: float32 error {err:.3g} against the float64 reference > "
                        f"tolerance {tol:.3g} = {MARGIN} x max({detail})")
    return err, tol


def lccl_rounding_bound(layer, x):
    """Cell by cell, a bound on how far one eval forward of an LCCL layer in float32 can
    lie from the exact result, whatever the summation order: (N, T, Ho, Wo), float64.

    A dot product of length K computed in floating point, in any order, is within
    ``gamma_K * sum |a_i b_i|`` of the exact one, ``gamma_K = K u / (1 - K u)``
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1).  With
    ``A = conv(|x|, |W|)`` and ``A' = conv(|x|, |W'_f|) + |beta| + |mean * s|`` (the
    cheap conv with its BN folded in, which adds a few roundings per weight; the
    unfolded path subtracts the running mean after the conv, so the two parts of the
    folded bias are rounded before they cancel), and ``V``, ``V'`` the
    exact branches, ``O = V * V'`` is off by at most about::

        u * ((K + 2) * A * |V'|  +  (K' + 4) * A' * |V|)

    ``K = C*kh*kw``, ``K' = C*kh'*kw'``.  A cell whose ``z`` lies within that of 0
    may have its mask flipped; ``ReLU`` is continuous, so that moves ``O`` by
    ``|V| * |z|``, inside the second term.  A wrong tap or a wrong mask moves a cell
    by about ``|V| * |V'|``, far outside it.
    """
    x64 = x.astype(np.float64)
    conv, cconv, bn = layer.conv, layer.cheap_conv, layer.cheap_bn
    w = conv.weight.data.astype(np.float64)
    s = bn.weight.data.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    w_f = cconv.weight.data.astype(np.float64) * s[:, None, None, None]
    b_f = bn.bias.data.astype(np.float64) - bn.running_mean.astype(np.float64) * s
    v, _ = F.conv2d_forward(x64, w, None, conv.stride, conv.padding)
    z, _ = F.conv2d_forward(x64, w_f, b_f, cconv.stride, cconv.padding)
    a, _ = F.conv2d_forward(np.abs(x64), np.abs(w), None, conv.stride, conv.padding)
    # |b'_f| = |beta - mean * s| may be far smaller than the two terms it is the
    # difference of: the unfolded path (conv, then BN) rounds each of them
    b_abs = np.abs(bn.bias.data.astype(np.float64)) + np.abs(
        bn.running_mean.astype(np.float64) * s)
    a_c, _ = F.conv2d_forward(np.abs(x64), np.abs(w_f), b_abs, cconv.stride, cconv.padding)
    k, k_c = w[0].size, w_f[0].size
    u = float(np.finfo(x.dtype).eps) / 2
    return u * ((k + 2) * a * np.maximum(z, 0) + (k_c + 4) * a_c * np.abs(v))
