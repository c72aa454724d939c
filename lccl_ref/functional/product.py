"""The LCCL product ``O = V ⊙ V'`` and its backward: the paper's layer as a forward/backward pair.

PAPER.md, "The idea"::

    O   = V ⊙ V'        V (N, T, Ho, Wo) the expensive conv, V' (N, T', Ho, Wo) the gate;
                        T' = T, or T' = 1 and V' broadcast over the T channels
    dV  = dO ⊙ V'
    dV' = dO ⊙ V        summed over the T channels when T' = 1

Start at :func:`product_forward`; :class:`lccl_ref.nn.LCCLConv2d` calls the pair in
training mode and the forward in eval mode, where ``V`` was computed only at the
open cells of the gate (``mask``) and is 0 elsewhere.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_float_array, check_same_dtype, check_shape


def product_forward(v, v_cheap, mask=None):
    """``O = V * V'``.

    Parameters
    ----------
    v : ndarray, (N, T, Ho, Wo), float32 or float64
    v_cheap : ndarray, (N, T', Ho, Wo), dtype of ``v``, ``T'`` = T or 1
    mask : bool ndarray of the shape of ``v_cheap``, or None
        Where the gate is open.  Given, ``O`` is exactly 0 where it is false, whatever
        ``V`` is there (``V * 0`` would be NaN for an infinite or NaN ``V``, which the
        sparse path never computes): so the dense and the sparse eval paths agree.

    Returns
    -------
    o : ndarray, (N, T, Ho, Wo), dtype of ``v``
    cache : ``(v, v_cheap)``, by reference, for :func:`product_backward`
    """
    check_float_array("v", v, ndim=4)
    check_float_array("v_cheap", v_cheap, ndim=4)
    check_same_dtype(v=v, v_cheap=v_cheap)
    n, t, ho, wo = v.shape
    if v_cheap.shape not in ((n, t, ho, wo), (n, 1, ho, wo)):
        raise ValueError(f"v_cheap must have shape {(n, t, ho, wo)} or {(n, 1, ho, wo)} for v "
                         f"of shape {v.shape}, got {v_cheap.shape}")
    if mask is None:
        return v * v_cheap, (v, v_cheap)  # (N, T, Ho, Wo), V' broadcast over T when T' = 1
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(f"mask must be a bool ndarray, got {getattr(mask, 'dtype', mask)!r}")
    check_shape("mask", mask, v_cheap.shape)
    with np.errstate(invalid="ignore"):  # inf * 0 = NaN where the gate is shut: set to 0 below
        o = v * v_cheap  # already 0 where shut (V' = 0) unless V is inf or NaN there
    if not np.isfinite(o).all():
        np.copyto(o, 0, where=~mask)
    return o, (v, v_cheap)


def product_backward(do, cache):
    """``(dV, dV')`` of :func:`product_forward`.

    Returns
    -------
    dv : ndarray, (N, T, Ho, Wo), ``dO * V'``
    dv_cheap : ndarray, (N, T', Ho, Wo), ``dO * V``, summed over T when ``T' = 1``
    """
    v, v_cheap = cache
    check_float_array("do", do, ndim=4)
    check_shape("do", do, v.shape)
    check_same_dtype(do=do, v=v)
    dv = do * v_cheap  # dV = dO ⊙ V'
    dv_cheap = do * v  # dV' = dO ⊙ V
    if v_cheap.shape[1] == 1 and v.shape[1] != 1:
        dv_cheap = dv_cheap.sum(axis=1, keepdims=True)  # (N, 1, Ho, Wo)
    return dv, dv_cheap
