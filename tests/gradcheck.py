"""Finite-difference gradient checks shared by the test suite.

Import it from any test module (pytest puts ``tests/`` on ``sys.path``)::

    from gradcheck import check_grad, numerical_grad

Two helpers:

``numerical_grad(f, x, eps=1e-6)``
    Centred differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` of a
    scalar function, one element of ``x`` at a time.  ``x`` is perturbed **in
    place** (and restored), so ``f`` may also read ``x`` through a closure.

``check_grad(forward_fn, backward_fn, *inputs, wrt=None, rng=0, ...)``
    Checks a ``forward -> (y, cache)`` / ``backward(dy, cache) -> grads`` pair.
    It draws a *random* upstream gradient ``dy`` (an all-ones ``dy`` lets a
    wrong BatchNorm backward pass, because ``sum(dx)`` is 0 either way),
    forms the scalar ``L = sum(forward(*inputs)[0] * dy)``, whose gradient
    with respect to ``inputs[i]`` is the ``i``-th output of
    ``backward(dy, cache)``, and compares the two by centred differences.

Both work in float64: call them with float64 inputs (``check_grad`` refuses
anything else), since float32 round-off swamps a step of 1e-6.
"""

from __future__ import annotations

import numpy as np


def numerical_grad_at(f, x: np.ndarray, idx, eps: float = 1e-6) -> np.ndarray:
    """Centred differences of the scalar ``f(x)`` at the flat indices ``idx`` of ``x``.

    For arrays too large to difference whole (a network's input or weights):
    ``numerical_grad(f, x).reshape(-1)[idx]``, computed for ``idx`` only, ``x``
    perturbed in place and restored.
    """
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous (numerical_grad_at perturbs it in place)")
    out = []
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        f_plus = float(f(x))
        flat[i] = old - eps
        f_minus = float(f(x))
        flat[i] = old
        out.append((f_plus - f_minus) / (2 * eps))
    return np.array(out)


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Centred finite-difference gradient of the scalar ``f(x)`` with respect to ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.  Called ``2 * x.size`` times with ``x`` perturbed in place.
    x : ndarray, float64, any shape
    eps : float
        Step; the truncation error is ``O(eps**2)``.

    Returns
    -------
    grad : ndarray, shape of ``x``, float64
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(f"x must be a float64 ndarray, got {getattr(x, 'dtype', type(x))}")
    grad = np.zeros_like(x)
    flat = x.reshape(-1)  # a view: x must be contiguous so that writes reach it
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous (numerical_grad perturbs it in place)")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = float(f(x))
        flat[i] = old - eps
        f_minus = float(f(x))
        flat[i] = old
        grad.reshape(-1)[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def check_grad(forward_fn, backward_fn, *inputs, wrt=None, rng=0, eps=1e-6, rtol=1e-5,
               atol=1e-7):
    """Compare an analytic backward pass with centred finite differences.

    Parameters
    ----------
    forward_fn : callable
        ``forward_fn(*inputs) -> (y, cache)`` (e.g. ``conv2d_forward``).
    backward_fn : callable
        ``backward_fn(dy, cache) -> grads``: one array, or a tuple whose
        ``i``-th entry is the gradient for ``inputs[i]`` (e.g. ``(dx, dw, db)``).
    *inputs
        Positional arguments of ``forward_fn``.  Those checked must be float64
        ndarrays; others (ints, bools, None) are passed through unchanged.
    wrt : sequence of int, optional
        Indices of ``inputs`` to check.  Default: every float64 ndarray input
        whose gradient ``backward_fn`` returns (not None).
    rng : int or numpy Generator
        Source of the random upstream gradient ``dy ~ N(0, 1)``.
    eps, rtol, atol : float
        Finite-difference step and tolerances; ``atol`` is scaled by the
        largest numerical gradient entry (at least 1).

    Returns
    -------
    grads : dict ``{index: (analytic, numerical)}`` of the checked inputs.

    Raises
    ------
    AssertionError
        When an analytic gradient differs from the numerical one.
    """
    rng = np.random.default_rng(rng)
    inputs = list(inputs)
    y, cache = forward_fn(*inputs)
    dy = rng.standard_normal(y.shape).astype(y.dtype)
    analytic = backward_fn(dy.copy(), cache)
    if not isinstance(analytic, tuple):
        analytic = (analytic,)
    if wrt is None:
        wrt = [i for i, v in enumerate(inputs)
               if isinstance(v, np.ndarray) and v.dtype == np.float64
               and i < len(analytic) and analytic[i] is not None]
    if not wrt:
        raise ValueError("nothing to check: no float64 input has a gradient")
    out = {}
    for i in wrt:
        x = inputs[i]
        if not isinstance(x, np.ndarray) or x.dtype != np.float64:
            raise TypeError(f"input {i} must be a float64 ndarray to be checked")
        ga = analytic[i]
        if ga is None or ga.shape != x.shape:
            raise AssertionError(
                f"input {i}: backward returned {None if ga is None else ga.shape}, "
                f"expected a gradient of shape {x.shape}")

        def loss(_x, _i=i):
            return np.sum(forward_fn(*inputs)[0] * dy)

        gn = numerical_grad(loss, x, eps)
        scale = max(1.0, float(np.max(np.abs(gn))))
        np.testing.assert_allclose(ga, gn, rtol=rtol, atol=atol * scale,
                                   err_msg=f"gradient of input {i}")
        out[i] = (ga, gn)
    return out
