"""Evaluation in eval mode: loss, accuracy, each LCCL layer's density, MACs per image;
and the MACs that training executed.

:func:`evaluate` runs the test set through the model batch by batch (the sparse
path: LCCL layers skip the expensive convolution where the gate is shut) and sums
what each layer recorded (``LCCLConv2d.last_stats``) into the densities and the
paper's speed-up ratio ``1 - executed MACs / dense MACs``.  :func:`take_train_macs`
sums the training passes' MACs the layers counted (``Conv2d.train_macs``).
"""

from __future__ import annotations

import numpy as np

from ..functional import softmax_cross_entropy
from ..models import lccl_layers
from ..nn import Conv2d, Linear, Module


def _dense_macs(m: Module) -> int:
    """MACs of the last forward of a plain Conv2d or Linear (0 if it never ran)."""
    shape = m.last_input_shape
    if shape is None:
        return 0
    if isinstance(m, Linear):
        return shape[0] * m.in_features * m.out_features
    ho, wo = m.output_shape(shape[2], shape[3])
    kh, kw = m.kernel_size
    return shape[0] * ho * wo * m.out_channels * m.in_channels * kh * kw


def evaluate(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict:
    """Loss, accuracy, LCCL densities and MACs of ``model`` on ``(x, y)``, eval mode.

    Parameters
    ----------
    model : Module
        Put in eval mode (BN uses running statistics; LCCL layers skip the
        expensive convolution where the cheap branch is 0) and left there.
    x : ndarray, (N, C, H, W)
        Cast to the model's dtype batch by batch.
    y : ndarray, (N,), integer
    batch_size : int

    Returns
    -------
    dict with
        ``loss`` (mean cross-entropy), ``accuracy`` (fraction correct), ``n``;
        ``lccl``: ``{layer name: density}``, the fraction of the expensive
        convolution's output cells computed, averaged over the N images;
        ``macs``: multiply-accumulates **per image** of convolutions and
        linear layers (BN, ReLU and pooling are not counted):
        ``dense`` (the network with every LCCL replaced by its plain conv),
        ``executed`` (what ran: other layers + LCCL cheap + LCCL expensive),
        ``lccl_dense``, ``lccl_cheap``, ``lccl_expensive`` (LCCL layers only)
        ``lccl_needed`` (the expensive convs' MACs at their open cells only),
        ``needed`` (``executed`` with ``lccl_needed`` for ``lccl_expensive``),
        ``speedup`` ``= 1 - executed / dense`` (what ran) and ``speedup_mask``
        ``= 1 - needed / dense``, the paper's ratio, which counts the mask's zeros.
        The two differ only where a layer ran a dense fallback (a per-channel
        mask denser than ``kernels.TILED_BELOW``).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(x)
    if n == 0 or len(y) != n:
        raise ValueError(f"x and y must hold the same, non-zero number of images, got "
                         f"{len(x)} and {len(y)}")
    model.eval()
    dtype = model.dtype
    lccl = lccl_layers(model)
    lccl_prefixes = tuple(name + "." for name, _ in lccl)
    plain = [m for name, m in model.named_modules()
             if isinstance(m, (Conv2d, Linear)) and not name.startswith(lccl_prefixes)]
    density = {name: 0.0 for name, _ in lccl}
    macs = dict.fromkeys(("other", "lccl_dense", "lccl_cheap", "lccl_expensive",
                          "lccl_needed"), 0)
    loss_sum, correct = 0.0, 0
    for s in range(0, n, batch_size):
        xb = np.asarray(x[s:s + batch_size], dtype=dtype)
        yb = y[s:s + batch_size]
        logits = model.forward(xb)
        loss, _ = softmax_cross_entropy(logits, yb)
        loss_sum += loss * len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
        for name, layer in lccl:
            st = layer.last_stats
            density[name] += st["density"] * len(yb)
            macs["lccl_dense"] += int(st["macs_dense"])
            macs["lccl_cheap"] += int(st["macs_cheap"])
            macs["lccl_expensive"] += int(st["macs_expensive"])
            macs["lccl_needed"] += int(st["macs_needed"])
        macs["other"] += sum(_dense_macs(m) for m in plain)
    per_image = {k: v / n for k, v in macs.items()}
    dense = per_image["other"] + per_image["lccl_dense"]
    executed = per_image["other"] + per_image["lccl_cheap"] + per_image["lccl_expensive"]
    needed = per_image["other"] + per_image["lccl_cheap"] + per_image["lccl_needed"]
    return {
        "loss": loss_sum / n,
        "accuracy": correct / n,
        "n": n,
        "lccl": {k: v / n for k, v in density.items()},
        "macs": {"dense": dense, "executed": executed,
                 "lccl_dense": per_image["lccl_dense"],
                 "lccl_cheap": per_image["lccl_cheap"],
                 "lccl_expensive": per_image["lccl_expensive"],
                 "lccl_needed": per_image["lccl_needed"], "needed": needed,
                 "speedup": 1.0 - executed / dense if dense else 0.0,
                 "speedup_mask": 1.0 - needed / dense if dense else 0.0},
    }


def take_train_macs(model: Module) -> dict:
    """The MACs of the training passes (forward, dX, dW) since the last call, and reset.

    ``{"dense": ..., "executed": ...}``: ``executed`` is what ran, as the layers and
    kernels counted it (every conv and linear layer, the LCCL cheap branches, the
    expensive convs at their open cells); ``dense`` is what the plain network --
    every LCCL replaced by its expensive conv alone, computed everywhere -- would run
    on the same batches.  BN, ReLU, the gate and the product are not counted.
    """
    lccl = lccl_layers(model)
    cheap = {id(layer.cheap_conv) for _, layer in lccl}
    total = {"dense": 0, "executed": 0}
    for m in model.modules():
        if isinstance(m, (Conv2d, Linear)):
            total["executed"] += m.train_macs["executed"]
            total["dense"] += 0 if id(m) in cheap else m.train_macs["dense"]
            m.train_macs = {"dense": 0, "executed": 0}
    return total
