"""One LCCL layer timed in isolation: the plain conv against the sparse layer, and more.

:func:`bench_layer` times, on the input the layer saw in its network
(:func:`layer_inputs`), the plain conv (the layer of the original network) against
the LCCL layer's sparse eval path, plus the references that explain the gap: the
layer's dense eval path, the gated kernel alone on the layer's mask (its ideal saving
is ``1 - r``), the gated kernel on an all-true mask (the same code at r = 1), and
PyTorch's dense conv on one thread (when torch is installed).  ``path`` says whose
kernels: the teaching path's (the modules' default) or the fast path's.
"""

from __future__ import annotations

import numpy as np

from .timing import eval_mode, fast_path, on_path, ratio, time_interleaved
from .walk import walk


def layer_inputs(model, x) -> dict:
    """Eval pass on ``x``; each LCCL layer's ``(x, cheap_input)`` as it saw them
    (``cheap_input`` None where the cheap branch reads ``x``)."""
    seen = {}

    def on_lccl(name, layer, x_in, u):
        seen[name] = (x_in, None if u is x_in else u)

    with eval_mode(model), on_path(model, "teaching"):
        walk(model, x, on_lccl=on_lccl)
    return seen


def _torch_conv(x, w, stride, padding):
    """A zero-argument callable running PyTorch's dense conv on (x, w), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    xt, wt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(w))

    def run():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, wt, None, stride, padding)
    return run


def bench_layer(layer, x, cheap_input=None, repeats: int = 5, name: str = "",
                torch_ref: bool = True, path: str = "teaching") -> dict:
    """Time one LCCL layer in isolation (medians of interleaved calls, seconds).

    ``t_plain`` the expensive conv alone, dense (``Conv2d.forward``); ``t_sparse`` the
    LCCL eval path; ``t_dense_lccl`` that path with the expensive conv dense;
    ``t_gated`` the gated kernel alone on the layer's mask; ``t_gated_full`` on an
    all-true mask; ``t_torch`` PyTorch's dense conv (None without torch).  Speed-ups:
    ``theoretical = 1 - (MACs_cheap + MACs_executed) / MACs_dense``, ``real = 1 -
    t_sparse / t_plain``, ``ratio = real / theoretical``; ``kernel_real = 1 - t_gated /
    t_plain`` against ``kernel_ideal = 1 - r``.
    """
    if path == "fast":
        gated_conv2d = fast_path().gated_conv2d
    else:
        from ..kernels import gated_conv2d
    sparse_flag, conv = layer.sparse, layer.conv
    w = conv.weight.data
    with eval_mode(layer), on_path(layer, path):
        layer.sparse = True
        layer.forward(x, cheap_input)
        stats, mask = dict(layer.last_stats), layer.last_mask
        full = np.ones_like(mask)

        def run(sparse):
            layer.sparse = sparse
            layer.forward(x, cheap_input)

        fns = dict(plain=lambda: conv.forward(x), sparse=lambda: run(True),
                   dense_lccl=lambda: run(False),
                   gated=lambda: gated_conv2d(x, w, mask, None, conv.stride, conv.padding),
                   gated_full=lambda: gated_conv2d(x, w, full, None, conv.stride, conv.padding))
        tc = _torch_conv(x, w, conv.stride, conv.padding) if torch_ref else None
        if tc is not None:
            fns["torch"] = tc
        tmin = {}
        t = time_interleaved(fns, repeats, minima=tmin)
    layer.sparse = sparse_flag
    theo = 1.0 - (stats["macs_cheap"] + stats["macs_expensive"]) / stats["macs_dense"]
    real = 1.0 - t["sparse"] / t["plain"]
    n, c, h, wd = x.shape
    return dict(
        name=name, path=path, cheap=layer.cheap, shared_mask=layer.shared_mask, batch=n,
        in_shape=(c, h, wd), out_channels=conv.out_channels, stride=conv.stride[0],
        density=stats["density"], macs_dense=stats["macs_dense"],
        macs_cheap=stats["macs_cheap"], macs_expensive=stats["macs_expensive"],
        t_plain=t["plain"], t_sparse=t["sparse"], t_dense_lccl=t["dense_lccl"],
        t_gated=t["gated"], t_gated_full=t["gated_full"], t_torch=t.get("torch"),
        theoretical=theo, real=real, ratio=ratio(real, theo),
        real_vs_gated_full=1.0 - t["sparse"] / t["gated_full"],
        t_plain_min=tmin["plain"], t_sparse_min=tmin["sparse"],
        real_min=1.0 - tmin["sparse"] / tmin["plain"],
        real_vs_torch=1.0 - t["sparse"] / t["torch"] if "torch" in t else None,
        kernel_ideal=1.0 - stats["density"], kernel_real=1.0 - t["gated"] / t["plain"],
        kernel_ratio=ratio(1.0 - t["gated"] / t["plain"], 1.0 - stats["density"]),
    )
