"""The paper's closed-form costs put next to the MACs the kernels counted, and mask pictures.

:func:`formula_table` takes one layer of the trained LCCL networks and evaluates
the paper's formulas (:mod:`lccl_ref.flops`) at the density measured on a batch,
beside what the gated kernels counted on that batch; :func:`mask_examples`
collects the masks that ``masks.png`` draws.
"""

from __future__ import annotations

import numpy as np


def pick_layer(model) -> str:
    """The first LCCL layer with C != T (where the slides' formula differs), else the first."""
    from ..models import lccl_layers

    layers = lccl_layers(model)
    for name, m in layers:
        if m.conv.in_channels != m.conv.out_channels:
            return name
    return layers[0][0]


def formula_table(models: dict, x: np.ndarray) -> dict:
    """One layer of the trained LCCL networks put into the paper's closed forms.

    Parameters
    ----------
    models : dict kind -> trained model with that cheap kind at aft-aft (any subset of
        ``1x1xCxT``, ``kxkxCx1``, ``1x1xCx1``; at least one)
    x : ndarray, (N, C, H, W), a batch of test images

    Returns
    -------
    dict ``layer, X, Y, C, T, k, batch, rows`` (see :mod:`lccl_ref.report`); in each
    row ``macs_closed`` is the closed form at the measured density times N and
    ``macs_counted`` what the kernels counted on the batch.
    """
    from .. import flops
    from ..kernels import gated_conv2d
    from ..models import lccl_layers

    first = next(iter(models.values()))
    name = pick_layer(first)
    n = len(x)
    layer = dict(lccl_layers(first))[name]
    t, c, k, _ = layer.conv.weight.data.shape
    rows, shape = [], None
    for kind, model in models.items():
        model.eval()
        layers = [m for _, m in lccl_layers(model)]
        for m in layers:  # the kernels that compute the open cells only, as the formula does
            m.conv.method = "tiled" if not m.shared_mask else "auto"
        try:
            model.forward(np.asarray(x, model.dtype))
        finally:
            for m in layers:
                m.conv.method = "auto"
        lay = dict(lccl_layers(model))[name]
        st = lay.last_stats
        ho, wo = lay.last_mask.shape[-2:]
        shape = (lay.conv.last_input_shape, ho, wo)
        r = float(st["density"])
        dense = n * flops.conv_macs(ho, wo, c, t, k)
        counted = int(st["macs_expensive"] + st["macs_cheap"])
        rows.append({"structure": kind, "r": r,
                     "macs_closed": n * flops.lccl_kind_macs(kind, ho, wo, c, t, k, r),
                     "macs_counted": counted,
                     "speedup_closed": flops.kind_speedup_ratio(kind, t, k, r),
                     "speedup_counted": 1.0 - counted / dense})
        if kind == "kxkxCx1":
            rows.append({"structure": "slides' kxkxCx1", "r": r,
                         "macs_closed": n * flops.slides_kxkxCx1_macs(ho, wo, c, t, k, r),
                         "macs_counted": counted,
                         "speedup_closed": flops.slides_kxkxCx1_speedup(c, r),
                         "speedup_counted": 1.0 - counted / dense})
    in_shape, ho, wo = shape
    # The plain conv, counted by the gated kernel itself with every cell active.
    _, plain_counted = gated_conv2d(np.zeros(in_shape, layer.conv.weight.data.dtype),
                                    layer.conv.weight.data, np.ones((n, ho, wo), bool),
                                    None, layer.conv.stride, layer.conv.padding)
    plain = {"structure": "plain conv", "r": None,
             "macs_closed": n * flops.conv_macs(ho, wo, c, t, k),
             "macs_counted": int(plain_counted), "speedup_closed": 0.0,
             "speedup_counted": 1.0 - plain_counted / (n * flops.conv_macs(ho, wo, c, t, k))}
    return {"layer": name, "X": int(ho), "Y": int(wo), "C": int(c), "T": int(t), "k": int(k),
            "batch": int(n), "rows": [plain, *rows]}


def mask_examples(models: dict, x: np.ndarray, layers: int = 2) -> dict:
    """Images and the eval masks of the first ``layers`` LCCL layers of each model."""
    from ..models import lccl_layers

    masks = {}
    for label, model in models.items():
        model.eval()
        model.forward(np.asarray(x, model.dtype))
        for name, lay in lccl_layers(model)[:layers]:
            masks[f"{label}\n{name}"] = lay.last_mask.copy()
    return {"images": np.asarray(x), "masks": masks}
