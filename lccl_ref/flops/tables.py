"""Per-layer MAC tables of a model, dense and with its LCCL layers, and counted-vs-table checks.

:func:`mac_table` runs one eval forward on the teaching path (to record each layer's
input shape; no timing, no autotune) and gives every ``Conv2d``, ``Linear`` and
``LCCLConv2d`` a row of multiply-accumulates per image, dense and at a density
(given, or measured on a batch); :func:`format_table` prints it.
:func:`counted_vs_table` puts the MACs the gated kernels counted as they ran next to
what their recorded masks imply, layer by layer.  Biases, BatchNorm, ReLU, pooling and
the element-wise product of an LCCL are not counted (they are O(XYT), not O(XYTk^2C)).
"""

from __future__ import annotations

import numpy as np

from ..models import lccl_layers
from ..nn import Conv2d, LCCLConv2d, Linear, Module, teaching_path
from .formulas import check_density, train_macs


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
        return check_density(f"density[{name!r}]", density[name])
    if density is not None:
        return check_density("density", density)
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
        densities), ``speedup`` (``1 - total_lccl / total_dense``), ``train_dense``
        and ``train_lccl`` (a training step, forward + dX + dW: :func:`train_macs`),
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
        with teaching_path(model):  # the shapes; no fast kernel timed for its autotune
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
                train_dense=int(train_macs(total_dense)), train_lccl=train_macs(total_lccl),
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
    lines.append(f"training (forward + dX + dW) per image: dense {table['train_dense']:,}, "
                 f"LCCL {table['train_lccl']:,.0f} (the expensive convs at their open cells "
                 "only: the same speed-up)")
    return "\n".join(lines)


def counted_vs_table(model: Module, x: np.ndarray):
    """Run ``model`` in eval mode on ``x`` and compare counted MACs with mask-implied MACs.

    For every ``LCCLConv2d`` (on its sparse path): ``counted`` is
    ``last_stats["macs_expensive"]``, the MACs the gated kernel counted while it
    ran; ``table`` is what the recorded mask ``last_mask`` implies:
    ``active positions * T*C*k*k`` for a shared mask ``(N, Ho, Wo)``,
    ``active cells * C*k*k`` for a per-channel one ``(N, T, Ho, Wo)`` -- or all cells,
    where ``kernels.choose_method`` ran the dense conv (``method == "dense"``).
    Likewise the cheap branch: ``last_stats["macs_cheap"]`` against
    ``N*Ho*Wo*T'*C*k'*k'``.

    Returns
    -------
    list of dict
        ``name, shared, density, method, counted, table, cheap_counted, cheap_table``
        for each LCCL layer (whole batch, not per image).
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"x must be an (N, C, H, W) ndarray, got {getattr(x, 'shape', x)!r}")
    layers = lccl_layers(model)
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
        n, ho, wo = mask.shape[0], mask.shape[-2], mask.shape[-1]
        active = int(np.count_nonzero(mask))
        table = active * (t * c * kh * kw if shared else c * kh * kw)
        if m.last_stats["method"] == "dense":  # a per-channel mask run densely on purpose
            table = n * ho * wo * t * c * kh * kw
        out.append(dict(name=name, shared=shared, density=float(m.last_stats["density"]),
                        method=m.last_stats["method"],
                        counted=int(m.last_stats["macs_expensive"]), table=int(table),
                        cheap_counted=int(m.last_stats["macs_cheap"]),
                        cheap_table=n * ho * wo * tc * cc * khc * kwc))
    return out
