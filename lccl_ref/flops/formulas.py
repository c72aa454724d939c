"""The paper's cost table in closed form: one function per row, MACs not FLOPs.

A convolution computing ``X x Y`` output positions with ``T`` output channels from
``C`` input channels with a ``k x k`` kernel costs ``XYTk^2C`` multiply-accumulates
(:func:`conv_macs`); an LCCL layer with a ``k' x k' x C x T'`` cheap branch and
density ``r`` costs ``XYT'k'^2C + r XYTk^2C`` (:func:`lccl_macs`,
:func:`lccl_kind_macs`), a speed-up ratio of ``1 - (T'k'^2 / (Tk^2) + r)``
(:func:`speedup_ratio`).  Also the two variants the paper's material uses and that
differ from the derivation: the slides' shared-kernel row with C and T swapped
(:func:`slides_kxkxCx1_macs`) and the authors' code's overhead of ``1x1xCx1``
(:func:`authors_code_overhead_1x1xCx1`).  ``X, Y`` are the *output* size.
docs/derivations.md derives each row.
"""

from __future__ import annotations

from numbers import Integral, Real

from ..nn.lccl import CHEAP_KINDS


def _pos_int(name, v):
    if not isinstance(v, Integral) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def check_density(name, r):
    if not isinstance(r, Real) or isinstance(r, bool) or not 0.0 <= float(r) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1] (fraction of cells computed), "
                         f"got {r!r}")
    return float(r)


def conv_macs(X, Y, C, T, k):
    """MACs of a plain k x k convolution, ``XYTk^2C``.

    Parameters
    ----------
    X, Y : int, output height and width
    C, T : int, input and output channels
    k : int, kernel size

    Returns
    -------
    int

    Notes
    -----
    PAPER.md, "Cost and speed-up", row "plain conv": each of the ``XYT``
    output cells is an inner product of length ``k^2 C``.
    """
    X, Y, C, T, k = (_pos_int(n, v) for n, v in zip("XYCTk", (X, Y, C, T, k)))
    return X * Y * T * k * k * C


def lccl_macs(X, Y, C, T, k, k_cheap, T_cheap, r):
    """MACs of an LCCL layer with a general ``k' x k' x C x T'`` cheap branch.

    Parameters
    ----------
    X, Y, C, T, k : int, as in :func:`conv_macs` (of the expensive conv)
    k_cheap : int, ``k'``, the cheap kernel size (1 or k in the paper)
    T_cheap : int, ``T'``, the cheap branch's output channels (T or 1)
    r : float in [0, 1]
        The density: the fraction of the expensive conv's ``XYT`` output cells
        that are computed (``1 - sparsity``).

    Returns
    -------
    float
        ``XY T' k'^2 C  +  XYTk^2C r``.

    Notes
    -----
    The cheap branch is a dense ``k' x k' x C x T'`` convolution (its BN and
    ReLU are not MACs); the expensive branch is computed only at the fraction
    ``r`` of its cells where the cheap branch is positive.  With ``T' = T``
    this is the paper's ``XYTC(k'^2 + k^2 r)``.
    """
    k_cheap = _pos_int("k_cheap", k_cheap)
    T_cheap = _pos_int("T_cheap", T_cheap)
    r = check_density("r", r)
    dense = conv_macs(X, Y, C, T, k)
    return X * Y * T_cheap * k_cheap * k_cheap * C + dense * r


def cheap_shape(kind, T, k):
    """``(k', T')`` of a named cheap-branch kind for an expensive ``k x k`` conv with T outputs.

    ``"1x1xCxT" -> (1, T)``, ``"kxkxCx1" -> (k, 1)``, ``"1x1xCx1" -> (1, 1)``.
    """
    if kind not in CHEAP_KINDS:
        raise ValueError(f"kind must be one of {CHEAP_KINDS}, got {kind!r}")
    k_cheap = 1 if kind.startswith("1x1") else k
    t_cheap = T if kind.endswith("xT") else 1
    return k_cheap, t_cheap


def lccl_kind_macs(kind, X, Y, C, T, k, r):
    """MACs of an LCCL layer with a named cheap kernel.

    Parameters
    ----------
    kind : {"1x1xCxT", "kxkxCx1", "1x1xCx1"}
    X, Y, C, T, k : int;  r : float in [0, 1], as in :func:`lccl_macs`

    Returns
    -------
    float

    Notes
    -----
    PAPER.md, "Cost and speed-up"::

        1x1xCxT   XYTC(1 + k^2 r)       (k' = 1, T' = T)
        kxkxCx1   XYk^2C(1 + T r)       (k' = k, T' = 1; mask shared over T)
        1x1xCx1   XYC(1 + T k^2 r)      (k' = 1, T' = 1; the authors' code)

    All three are :func:`lccl_macs` with the ``(k', T')`` of the kind.
    """
    k_cheap, t_cheap = cheap_shape(kind, T, k)
    return lccl_macs(X, Y, C, T, k, k_cheap, t_cheap, r)


def speedup_ratio(X, Y, C, T, k, k_cheap, T_cheap, r):
    """Theoretical speed-up of an LCCL layer over the plain conv, ``1 - cost/plain``.

    Returns
    -------
    float
        ``1 - (T' k'^2 / (T k^2) + r)``; negative when the layer costs more than
        the plain conv.

    Notes
    -----
    PAPER.md, "Cost and speed-up", last column::

        1x1xCxT   1 - (1/k^2 + r)
        kxkxCx1   1 - (1/T + r)
        1x1xCx1   1 - (1/(T k^2) + r)

    Independent of X, Y and C (they cancel); they are taken for symmetry with
    :func:`lccl_macs`.
    """
    return 1.0 - lccl_macs(X, Y, C, T, k, k_cheap, T_cheap, r) / conv_macs(X, Y, C, T, k)


def kind_speedup_ratio(kind, T, k, r):
    """:func:`speedup_ratio` of a named cheap kernel (X, Y, C cancel)."""
    k_cheap, t_cheap = cheap_shape(kind, T, k)
    return speedup_ratio(1, 1, 1, T, k, k_cheap, t_cheap, r)


def slides_kxkxCx1_macs(X, Y, C, T, k, r):
    """The slide deck's cost of the shared ``kxkxCx1`` LCCL: ``XYTk^2(1 + Cr)``.

    Notes
    -----
    The deck swaps C and T against the derivation :func:`lccl_kind_macs`
    (``XYk^2C(1 + Tr)``): the cheap branch is one ``k x k x C`` filter, so its
    cost is ``XYk^2C``, not ``XYk^2T``.  The two agree exactly when ``C = T``
    (most ResNet layers) and differ at stage transitions, where ``C = T/2``:
    there the deck counts the cheap branch twice too expensive.
    """
    X, Y, C, T, k = (_pos_int(n, v) for n, v in zip("XYCTk", (X, Y, C, T, k)))
    r = check_density("r", r)
    return X * Y * T * k * k * (1 + C * r)


def slides_kxkxCx1_speedup(C, r):
    """The slide deck's speed-up of ``kxkxCx1``: ``1 - (1/C + r)`` (the true one has 1/T)."""
    C = _pos_int("C", C)
    return 1.0 - (1.0 / C + check_density("r", r))


def authors_code_overhead_1x1xCx1(X, Y, C, T):
    """Cheap-branch MACs of ``1x1xCx1`` as the authors' code counts them: ``T * XY``.

    Notes
    -----
    The cheap branch of ``1x1xCx1`` is one 1x1 filter over C input channels:
    each of its ``XY`` outputs is an inner product of length C, so it really
    costs ``C * XY`` MACs (the first term of :func:`lccl_kind_macs`).  The
    authors' public code counts ``T * XY``, the number of *output* cells of a
    plane per channel, which equals ``C * XY`` only when ``C = T``.  ``C`` is
    taken (and checked) only so that both conventions have one signature.
    """
    X, Y, C, T = (_pos_int(n, v) for n, v in zip("XYCT", (X, Y, C, T)))
    return T * X * Y


#: A training step's passes of a conv (or linear) layer: forward, dX and dW, each as
#: many MACs as the forward (docs/derivations.md, eq. 12).
TRAIN_PASSES = 3


def train_macs(inference_macs):
    """The MACs of one training step (forward + dX + dW) of a layer whose forward costs
    ``inference_macs``: ``3 x``, for a plain conv (eq. 12) and for an LCCL layer alike
    (eq. 13: the cheap branch's three passes, and the expensive conv's at the open
    cells only, since ``dV = 0`` where the gate is shut), so the training speed-up
    ratio equals the inference one (eq. 14)."""
    if not isinstance(inference_macs, Real) or isinstance(inference_macs, bool) \
            or inference_macs < 0:
        raise ValueError(f"inference_macs must be a number >= 0, got {inference_macs!r}")
    return TRAIN_PASSES * inference_macs
