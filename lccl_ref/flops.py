"""Multiply-accumulate (MAC) accounting: closed-form costs and per-layer tables.

What is counted: **multiply-accumulates, not FLOPs** (the paper calls them
FLOPs; one MAC is one multiply and one add).  A convolution computing ``X x Y``
output positions with ``T`` output channels from ``C`` input channels with a
``k x k`` kernel costs ``XYTk^2C`` MACs; every tap counts, zero-padding taps
included, which is the convention of the paper and of the gated kernels'
own counters.  Biases, BatchNorm, ReLU, pooling and the element-wise product
of an LCCL are not counted (they are O(XYT), not O(XYTk^2C)).

Three parts:

* closed forms, one function per row of PAPER.md's "Cost and speed-up" table
  (:func:`conv_macs`, :func:`lccl_macs`, :func:`lccl_kind_macs`,
  :func:`speedup_ratio`), plus the two variants the paper's material uses and
  that differ from the derivation: the slide deck's shared-kernel row with C
  and T swapped (:func:`slides_kxkxCx1_macs`) and the authors' code's
  overhead convention for the ``1x1xCx1`` cheap branch
  (:func:`authors_code_overhead_1x1xCx1`);
* :func:`mac_table`: the per-layer MAC table of any model for an input shape,
  dense and with its LCCL layers at a given density or at the densities
  measured on a batch (:func:`format_table` prints it);
* :func:`counted_vs_table`: after an eval pass of an LCCL network, the MACs
  the gated kernels counted as they ran next to the count the recorded masks
  imply, layer by layer;
* :func:`flops_main`, the ``lccl-ref flops`` command.

``X, Y`` are the *output* spatial size of the convolution (equal to the input
size for the stride-1, "same"-padded convolutions the paper's formulas are
written for).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from .nn import Conv2d, Linear, Module
from .nn.lccl import CHEAP_KINDS, LCCLConv2d

# ---------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------


def _pos_int(name, v):
    if not isinstance(v, Integral) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def _density(name, r):
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
    r = _density("r", r)
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
    r = _density("r", r)
    return X * Y * T * k * k * (1 + C * r)


def slides_kxkxCx1_speedup(C, r):
    """The slide deck's speed-up of ``kxkxCx1``: ``1 - (1/C + r)`` (the true one has 1/T)."""
    C = _pos_int("C", C)
    return 1.0 - (1.0 / C + _density("r", r))


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


# ---------------------------------------------------------------------------
# per-layer tables of a model
# ---------------------------------------------------------------------------


def _conv_row(name, kind, conv: Conv2d, in_shape):
    n, c, h, w = in_shape
    ho, wo = conv.output_shape(h, w)
    (kh, kw), t = conv.kernel_size, conv.out_channels
    return dict(name=name, kind=kind, in_shape=(c, h, w), out_shape=(t, ho, wo),
                kernel=(kh, kw), stride=tuple(conv.stride),
                macs=ho * wo * t * c * kh * kw)  # per image


def _layer_density(name, density, lccl: LCCLConv2d, measured_ok):
    if isinstance(density, dict):
        if name not in density:
            raise ValueError(f"density has no entry for LCCL layer {name!r} "
                             f"(keys: {sorted(density)[:5]}...)")
        return _density(f"density[{name!r}]", density[name])
    if density is not None:
        return _density("density", density)
    if measured_ok:
        return float(lccl.last_stats["density"])
    return 1.0


def mac_table(model: Module, input_shape=None, x=None, density=None):
    """Per-layer multiply-accumulates of ``model`` for one image, dense and with LCCL.

    One eval-mode forward pass runs on ``x`` (or on zeros of shape
    ``(1, *input_shape)``) to record every layer's input shape; then every
    ``Conv2d``, ``Linear`` and ``LCCLConv2d`` of ``model.named_modules()`` gets a
    row.  An LCCL layer gives two rows: its expensive conv (``lccl.expensive``)
    and its cheap conv (``lccl.cheap``).

    Parameters
    ----------
    model : Module
    input_shape : (C, H, W), optional
        Shape of one image; used when ``x`` is None.
    x : ndarray, (N, C, H, W), optional
        A batch to run; its LCCL densities are the "measured" ones.
    density : None, float in [0, 1], or dict {LCCL layer name: float}
        The density r of each LCCL layer's expensive conv.  None: the density
        measured on ``x`` when ``x`` is given, else 1 (every cell computed, the
        upper bound).

    Returns
    -------
    dict
        ``rows``: list of dicts ``name, kind ("conv" | "linear" | "lccl.expensive"
        | "lccl.cheap"), in_shape, out_shape, kernel, stride, macs_dense, density,
        macs_lccl``; ``total_dense`` (int, the network without cheap branches),
        ``total_lccl`` (float, cheap branches plus expensive convs at their
        densities), ``speedup`` (``1 - total_lccl / total_dense``),
        ``input_shape``.  All MACs are per image.

    Notes
    -----
    ``macs_dense`` is the dense network's count: a cheap conv's row has
    ``macs_dense = 0`` because the dense network has no cheap branch; its cost
    is in ``macs_lccl``.  An expensive conv's ``macs_lccl`` is ``r XYTk^2C``
    (the second term of :func:`lccl_macs`), its cheap conv's the first term.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be an lccl_ref.nn.Module, got {type(model).__name__}")
    measured_ok = x is not None
    if x is None:
        if input_shape is None:
            raise ValueError("give input_shape (C, H, W) or a batch x (N, C, H, W)")
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
        x = np.zeros((1, *shape), dtype=model.dtype)
    elif not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"x must be an (N, C, H, W) ndarray, got {getattr(x, 'shape', x)!r}")

    modules = list(model.named_modules())
    for _, m in modules:
        if hasattr(m, "last_input_shape"):
            m.last_input_shape = None
    was_training = model.training
    model.eval()
    try:
        model.forward(x)
    finally:
        model.train(was_training)

    lccl_names = {name for name, m in modules if isinstance(m, LCCLConv2d)}
    rows = []
    for name, m in modules:
        parent = name.rpartition(".")[0]
        pre = f"{name}." if name else ""
        if isinstance(m, LCCLConv2d):
            r = _layer_density(name, density, m, measured_ok)
            if m.conv.last_input_shape is None:
                raise RuntimeError(f"LCCL layer {name!r} did not run in the forward pass")
            row = _conv_row(f"{pre}conv", "lccl.expensive", m.conv, m.conv.last_input_shape)
            row.update(macs_dense=row.pop("macs"), density=r)
            row["macs_lccl"] = row["macs_dense"] * r
            cheap = _conv_row(f"{pre}cheap_conv", "lccl.cheap", m.cheap_conv,
                              m.cheap_conv.last_input_shape)
            cheap.update(macs_dense=0, density=None, macs_lccl=cheap.pop("macs"))
            rows += [row, cheap]
        elif isinstance(m, Conv2d) and parent not in lccl_names:
            if m.last_input_shape is None:
                continue  # a module the forward pass never reached costs nothing
            row = _conv_row(name, "conv", m, m.last_input_shape)
            macs = row.pop("macs")
            row.update(macs_dense=macs, density=None, macs_lccl=macs)
            rows.append(row)
        elif isinstance(m, Linear):
            if m.last_input_shape is None:
                continue
            macs = m.in_features * m.out_features
            rows.append(dict(name=name, kind="linear", in_shape=(m.in_features,),
                             out_shape=(m.out_features,), kernel=None, stride=None,
                             macs_dense=macs, density=None, macs_lccl=macs))
    total_dense = sum(r["macs_dense"] for r in rows)
    total_lccl = float(sum(r["macs_lccl"] for r in rows))
    return dict(rows=rows, total_dense=int(total_dense), total_lccl=total_lccl,
                speedup=1.0 - total_lccl / total_dense if total_dense else 0.0,
                input_shape=tuple(x.shape[1:]))


def format_table(table) -> str:
    """A plain-text rendering of :func:`mac_table`'s result, one line per row."""
    head = (f"{'layer':<34} {'kind':<15} {'in':>14} {'out':>14} {'k':>5} {'s':>3} "
            f"{'MACs dense':>13} {'r':>6} {'MACs LCCL':>13}")
    lines = [head, "-" * len(head)]

    def shp(s):
        return "x".join(str(v) for v in s)

    for r in table["rows"]:
        k = "" if r["kernel"] is None else f"{r['kernel'][0]}x{r['kernel'][1]}"
        s = "" if r["stride"] is None else str(r["stride"][0])
        dens = "" if r["density"] is None else f"{r['density']:.3f}"
        lines.append(f"{r['name']:<34} {r['kind']:<15} {shp(r['in_shape']):>14} "
                     f"{shp(r['out_shape']):>14} {k:>5} {s:>3} {r['macs_dense']:>13,} "
                     f"{dens:>6} {r['macs_lccl']:>13,.0f}")
    lines.append("-" * len(head))
    lines.append(f"total MACs per image, input {shp(table['input_shape'])}: dense "
                 f"{table['total_dense']:,} ({table['total_dense']:.2e}), LCCL "
                 f"{table['total_lccl']:,.0f} ({table['total_lccl']:.2e}), speed-up "
                 f"{100 * table['speedup']:.1f}%")
    return "\n".join(lines)


def counted_vs_table(model: Module, x: np.ndarray):
    """Run ``model`` in eval mode on ``x`` and compare counted MACs with mask-implied MACs.

    For every ``LCCLConv2d`` (on its sparse path): ``counted`` is
    ``last_stats["macs_expensive"]``, the MACs the gated kernel counted while it
    ran; ``table`` is what the recorded mask ``last_mask`` implies:
    ``active positions * T*C*k*k`` for a shared mask ``(N, Ho, Wo)``,
    ``active cells * C*k*k`` for a per-channel one ``(N, T, Ho, Wo)``.
    Likewise the cheap branch: ``last_stats["macs_cheap"]`` against
    ``N*Ho*Wo*T'*C*k'*k'``.

    Returns
    -------
    list of dict
        ``name, shared, density, counted, table, cheap_counted, cheap_table``
        for each LCCL layer (whole batch, not per image).
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"x must be an (N, C, H, W) ndarray, got {getattr(x, 'shape', x)!r}")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LCCLConv2d)]
    was_training = model.training
    sparse = {n: m.sparse for n, m in layers}
    model.eval()
    try:
        for _, m in layers:
            m.sparse = True
        model.forward(x)
    finally:
        model.train(was_training)
        for n, m in layers:
            m.sparse = sparse[n]
    out = []
    for name, m in layers:
        t, c, kh, kw = m.conv.weight.data.shape
        tc, cc, khc, kwc = m.cheap_conv.weight.data.shape
        mask = m.last_mask
        shared = mask.ndim == 3
        active = int(np.count_nonzero(mask))
        table = active * (t * c * kh * kw if shared else c * kh * kw)
        n, ho, wo = mask.shape[0], mask.shape[-2], mask.shape[-1]
        out.append(dict(name=name, shared=shared, density=float(m.last_stats["density"]),
                        counted=int(m.last_stats["macs_expensive"]), table=int(table),
                        cheap_counted=int(m.last_stats["macs_cheap"]),
                        cheap_table=n * ho * wo * tc * cc * khc * kwc))
    return out


__all__ = [
    "authors_code_overhead_1x1xCx1",
    "cheap_shape",
    "conv_macs",
    "counted_vs_table",
    "flops_main",
    "format_table",
    "kind_speedup_ratio",
    "lccl_kind_macs",
    "lccl_macs",
    "mac_table",
    "slides_kxkxCx1_macs",
    "slides_kxkxCx1_speedup",
    "speedup_ratio",
]


def flops_main(args) -> int:
    """``lccl-ref flops``: print the per-layer MAC table of a model (or JSON with ``--json``).

    ``args``: ``model``, ``lccl`` (default "none"), ``input_size`` (default 28 for
    ``mnist-resnet``, else 32), ``density`` (default: 1, every cell computed),
    ``json``.
    """
    import json

    from .models import build_model

    lccl = getattr(args, "lccl", None) or "none"
    model = build_model(args.model, lccl=lccl, rng=0)
    in_c = next(m for m in model.modules() if isinstance(m, (Conv2d, LCCLConv2d)))
    in_c = in_c.in_channels if isinstance(in_c, Conv2d) else in_c.conv.in_channels
    size = getattr(args, "input_size", None) or (28 if args.model == "mnist-resnet" else 32)
    density = getattr(args, "density", None)
    if density is not None:
        density = _density("--density", density)
    table = mac_table(model, input_shape=(in_c, size, size),
                      density=1.0 if density is None else density)
    if getattr(args, "json", False):
        print(json.dumps(dict(table, model=args.model, lccl=lccl), sort_keys=True))
        return 0
    print(f"{args.model}, lccl={lccl}, input {in_c}x{size}x{size}; multiply-accumulates "
          "per image (not FLOPs)" + ("" if lccl == "none" else
                                     f"; r = {1.0 if density is None else density}"
                                     + (" (upper bound; pass --density)" if density is None
                                        else "")))
    print(format_table(table))
    return 0
