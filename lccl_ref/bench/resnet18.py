"""ResNet-18's ImageNet-shaped layers (224 x 224 input, batch 1), next to the paper's timing.

The paper's own weak spot was ResNet-18: 1.8E9 -> 1.2E9 FLOPs promised a 34.6%
speed-up, the clock showed 20.5% (a ratio of 0.59).  :func:`bench_resnet18` builds
each distinct ResNet-18 convolution at its ImageNet shape, calibrates a cheap branch
to a density, times plain vs LCCL layer by layer (:func:`.layer.bench_layer`, on
the teaching or the fast path) and sums over the network.
"""

from __future__ import annotations

import numpy as np

from ..nn import Conv2d, LCCLConv2d, Linear
from .calibrate import calibrate
from .layer import bench_layer
from .timing import on_path, ratio, time_interleaved

#: ``(name, C, T, H_in, kernel, stride, padding, count, lccl)`` of ResNet-18's
#: convolutions and classifier at 224x224 (He et al. 2016), the max-pool
#: taking 112 -> 56.  LCCL replaces every 3x3 conv of the residual blocks.
RESNET18_LAYERS = (
    ("conv1 7x7/2", 3, 64, 224, 7, 2, 3, 1, False),
    ("layer1 64@56", 64, 64, 56, 3, 1, 1, 4, True),
    ("layer2.0.conv1 64->128/2", 64, 128, 56, 3, 2, 1, 1, True),
    ("layer2 128@28", 128, 128, 28, 3, 1, 1, 3, True),
    ("layer2 shortcut 1x1/2", 64, 128, 56, 1, 2, 0, 1, False),
    ("layer3.0.conv1 128->256/2", 128, 256, 28, 3, 2, 1, 1, True),
    ("layer3 256@14", 256, 256, 14, 3, 1, 1, 3, True),
    ("layer3 shortcut 1x1/2", 128, 256, 28, 1, 2, 0, 1, False),
    ("layer4.0.conv1 256->512/2", 256, 512, 14, 3, 2, 1, 1, True),
    ("layer4 512@7", 512, 512, 7, 3, 1, 1, 3, True),
    ("layer4 shortcut 1x1/2", 256, 512, 14, 1, 2, 0, 1, False),
)


def bench_resnet18(density: float = 0.65, cheap: str = "kxkxCx1", repeats: int = 5,
                   batch: int = 1, input_size: int = 224, rng=0, dtype=np.float32,
                   path: str = "teaching") -> dict:
    """ResNet-18's ImageNet layers at 224x224: dense conv vs LCCL at a given density.

    ``input_size`` other than 224 scales every feature map by ``input_size / 224``
    (for quick tests; the paper's table is for 224).

    Each distinct layer is built once (random weights, an input ``ReLU(N(0,1))``
    of its ImageNet shape), its cheap branch calibrated to ``density``, and
    timed; the whole-network estimate sums ``count x time`` over the layers
    (plain layers -- stem, shortcuts, the 512x1000 classifier -- cost the same
    in both networks and are timed once, dense).  Pooling, BN and ReLU are
    left out of both times.

    Returns
    -------
    dict
        ``layers``: rows like :func:`bench_layer` plus ``count``; ``plain_layers``;
        ``network``: MACs dense / LCCL, estimated ms dense / LCCL, theoretical
        and real speed-up and their ratio; ``paper``: the paper's figures.
    """
    g = np.random.default_rng(rng)
    rows, plain_rows = [], []
    if not isinstance(input_size, int) or input_size < 32:
        raise ValueError(f"input_size must be an int >= 32, got {input_size!r}")
    for name, c, t, h, k, s, p, count, is_lccl in RESNET18_LAYERS:
        h = max(1, h * input_size // 224)
        x = np.maximum(g.standard_normal((batch, c, h, h)), 0).astype(dtype)
        if is_lccl:
            layer = LCCLConv2d(c, t, k, s, p, cheap=cheap, rng=g, dtype=dtype)
            calibrate(layer, x, density, bn_stats=False)
            row = bench_layer(layer, x, None, repeats, name, path=path)
            row["count"] = count
            rows.append(row)
        else:
            conv = Conv2d(c, t, k, s, p, rng=g, dtype=dtype)
            ho, _ = conv.output_shape(h, h)
            with on_path(conv.eval(), path):
                tt = time_interleaved(dict(plain=lambda conv=conv, x=x: conv.forward(x)),
                                      repeats)
            plain_rows.append(dict(name=name, count=count, t_plain=tt["plain"],
                                   macs_dense=batch * ho * ho * t * c * k * k))
    fc = Linear(512, 1000, rng=g, dtype=dtype)
    xf = g.standard_normal((batch, 512)).astype(dtype)
    tt = time_interleaved(dict(plain=lambda: fc.forward(xf)), repeats)
    plain_rows.append(dict(name="fc 512x1000", count=1, macs_dense=batch * 512 * 1000,
                           t_plain=tt["plain"]))

    plain_macs = sum(r["count"] * r["macs_dense"] for r in plain_rows)
    plain_t = sum(r["count"] * r["t_plain"] for r in plain_rows)
    macs_dense = plain_macs + sum(r["count"] * r["macs_dense"] for r in rows)
    macs_lccl = plain_macs + sum(r["count"] * (r["macs_cheap"] + r["macs_expensive"])
                                 for r in rows)
    t_dense = plain_t + sum(r["count"] * r["t_plain"] for r in rows)
    t_lccl = plain_t + sum(r["count"] * r["t_sparse"] for r in rows)
    t_full = plain_t + sum(r["count"] * r["t_gated_full"] for r in rows)
    theo = 1.0 - macs_lccl / macs_dense
    real = 1.0 - t_lccl / t_dense
    network = dict(macs_dense=int(macs_dense), macs_lccl=int(macs_lccl),
                   ms_dense=1e3 * t_dense, ms_lccl=1e3 * t_lccl,
                   theoretical=theo, real=real, ratio=ratio(real, theo),
                   ms_dense_gated_full=1e3 * t_full, real_vs_gated_full=1.0 - t_lccl / t_full,
                   ratio_vs_gated_full=ratio(1.0 - t_lccl / t_full, theo))
    if all(r["t_torch"] is not None for r in rows):
        # PyTorch as the dense reference of the LCCL layers (plain layers: ours, both sides)
        t_torch = plain_t + sum(r["count"] * r["t_torch"] for r in rows)
        network.update(ms_dense_torch=1e3 * t_torch, real_vs_torch=1.0 - t_lccl / t_torch)
    return dict(
        path=path, cheap=cheap, target_density=density, batch=batch, input_size=input_size,
        layers=rows, plain_layers=plain_rows, network=network,
        paper=dict(macs_dense=1.8e9, macs_lccl=1.2e9, ms_dense=97.1, ms_lccl=77.1,
                   theoretical=0.346, real=0.205, ratio=0.205 / 0.346),
    )
