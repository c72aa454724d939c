"""End-to-end inference benchmark: theoretical vs real speed-up of an LCCL network.

The paper's own weak spot was the gap between the speed-up its MAC count
promised and the one the clock showed (ResNet-18: 34.6% theoretical, 20.5%
real, a ratio of 0.59).  This module measures both for our networks, on one
thread, in float32:

``theoretical``
    ``1 - (MACs_cheap + MACs_expensive_executed) / MACs_dense``, from the MACs
    the gated kernels counted as they ran (``LCCLConv2d.last_stats``), per layer
    and for the whole network (plain layers -- stem, shortcuts, classifier --
    count the same in both).
``real``
    ``1 - t_sparse / t_dense``, medians of repeats, dense and sparse calls
    interleaved so that a noisy neighbour on the CPU slows both alike (the
    engine's in alternating runs of consecutive calls, see :func:`bench_engine`).
    ``t_dense`` is the **plain network**: every LCCL layer replaced by its
    expensive conv alone (no cheap branch), i.e. the original network the
    paper compares against.  ``t_sparse`` is the LCCL network's sparse eval
    path (cheap branch, mask, gated conv, product).  Per layer, each LCCL
    layer is timed in isolation on the input it saw in the network pass.

Two ways to run both networks are timed:

* the **module path** (``model.forward`` in eval mode), layer by layer, the
  reference implementation; its fixed costs per layer (Python dispatch,
  whole-batch activations through DRAM) are paid by both networks and cap
  the ratio, at batch 1 most of all;
* the **engine** (:mod:`lccl_ref.engine`, :func:`bench_engine`): the same
  kernels with the whole network compiled into one call that takes the batch
  image by image; per-layer times from its cycle counts.

Also reported: the LCCL network's dense eval path (both branches dense) and,
per layer, the gated kernel alone against the dense conv (its ideal saving is
``1 - r``), and two more dense references for the LCCL layers: the gated
kernel on an all-true mask (the same code at r = 1) and PyTorch's dense conv
on one thread (when torch is installed).  The plain network's convs are the
faster of im2col + GEMM and the vector kernel at every position
(:func:`lccl_ref.kernels.conv2d_inference`), so a saving cannot come from a
faster kernel rather than from the mask.

Masks.  Trained weights give realistic masks (pass a checkpoint).  An
untrained network has BN running statistics that do not fit its activations
and cheap branches at about 50% density; :func:`calibrate` runs one eval pass
in which every BN's running statistics are set to the statistics of the input
it receives and each cheap branch's BN bias is set so that a target fraction
of ``V'`` is positive on the batch (layer by layer, in forward order).

Sections: calibration; timing of one layer (:func:`bench_layer`) and of a
network (:func:`bench_network`); ResNet-18's ImageNet-shaped layers
(:func:`bench_resnet18`); the whole benchmark (:func:`run_benchmark`) and the
``lccl-ref bench`` entry (:func:`bench_main`).

Threads: :func:`single_thread` limits BLAS (threadpoolctl) and Numba to one
thread; scripts should also set ``OMP_NUM_THREADS=1`` etc. before importing
numpy (``benchmarks/bench_e2e.py`` does).
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager

import numpy as np

from . import __version__
from . import functional as F
from ._cliutil import check_out_file, jsonable
from .flops import mac_table
from .nn import BatchNorm2d, Conv2d, Linear, Module
from .nn.lccl import LCCLConv2d

_THREAD_LIMITERS = []  # keeps threadpoolctl's limiter alive for the process


def single_thread() -> dict:
    """Limit BLAS/OpenMP pools (threadpoolctl, when installed) and Numba to one thread.

    Returns
    -------
    dict
        ``threads`` (1), ``threadpoolctl`` (bool: whether BLAS pools could be
        limited in-process) and ``blas`` (the libraries threadpoolctl found).
    """
    info = dict(threads=1, threadpoolctl=False, blas=[])
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:  # env vars set before numpy import are then the only limit
        pass
    else:
        _THREAD_LIMITERS.append(threadpool_limits(limits=1))
        info["threadpoolctl"] = True
        info["blas"] = [dict(api=d.get("internal_api"), version=d.get("version"),
                             threads=d.get("num_threads")) for d in threadpool_info()]
    try:
        import numba
        numba.set_num_threads(1)
        info["numba_threads"] = numba.get_num_threads()
    except (ImportError, ValueError):
        pass
    return info


def environment() -> dict:
    """Versions and machine facts for a results file."""
    import numba
    return dict(lccl_ref=__version__, numpy=np.__version__, numba=numba.__version__,
                python=platform.python_version(), machine=platform.machine(),
                processor=platform.processor() or platform.machine())


#: The note of a kernel benchmark's results file.
TIMING_NOTE = "single-threaded, medians of interleaved calls; other processes may share the CPU"


def results_header(note: str = TIMING_NOTE) -> dict:
    """``versions`` and ``machine`` of a kernel benchmark's results file."""
    import os

    import numba
    return dict(versions=dict(python=platform.python_version(), numpy=np.__version__,
                              numba=numba.__version__, lccl_ref=__version__),
                machine=dict(processor=platform.processor() or platform.machine(),
                             cpu_count=os.cpu_count(), note=note))


def timed(fn, *args, **kwargs) -> float:
    """Wall time (s) of one call ``fn(*args, **kwargs)``."""
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def blob_mask(rng, n: int, h: int, w: int, density: float, sigma: float = 2.0) -> np.ndarray:
    """(N, H, W) bool masks in blobs, as trained cheap branches give: Gaussian-smoothed
    noise thresholded at each image's ``1 - density`` quantile."""
    if density >= 1.0:
        return np.ones((n, h, w), bool)
    noise = rng.standard_normal((n, h, w))
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    smooth = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)))
    smooth = smooth.real.reshape(n, -1)
    cut = np.quantile(smooth, 1.0 - density, axis=1, keepdims=True)
    return (smooth > cut).reshape(n, h, w)


def lccl_modules(model: Module) -> list[tuple[str, LCCLConv2d]]:
    """``(name, layer)`` of every LCCLConv2d in ``model``, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LCCLConv2d)]


# ---------------------------------------------------------------------------
# calibration of untrained networks
# ---------------------------------------------------------------------------


def _threshold(values: np.ndarray, density: float) -> float:
    """A threshold with about ``round(density * n)`` of ``values`` strictly above it.

    The threshold lies halfway between two distinct values, never on a value:
    where ties straddle the exact count (e.g. positions whose cheap input is
    all zero after a ReLU give equal values), the cut goes to the nearer side
    of the tied group, so float rounding in the eval pass cannot flip it.
    """
    v = np.sort(values.ravel().astype(np.float64))
    n = v.size
    k = int(round(density * n))  # how many should end up above the threshold
    if k >= n:
        return v[0] - 1.0 - abs(v[0])
    if k <= 0:
        return v[-1] + 1.0 + abs(v[-1])
    lo = np.searchsorted(v, v[n - k], side="left")  # the tied group holding v[n - k]
    hi = np.searchsorted(v, v[n - k], side="right")
    cut = lo if (n - lo) - k <= k - (n - hi) else hi  # above the cut: n - cut values
    if cut <= 0:
        return v[0] - 1.0 - abs(v[0])
    if cut >= n:
        return v[-1] + 1.0 + abs(v[-1])
    return 0.5 * (v[cut - 1] + v[cut])


def _set_batch_stats(bn: BatchNorm2d, z: np.ndarray) -> None:
    """``running_mean, running_var <- `` the mean and variance of ``z`` over (N, H, W)."""
    z64 = z.astype(np.float64)
    bn.running_mean = z64.mean(axis=(0, 2, 3)).astype(bn.running_mean.dtype)
    bn.running_var = z64.var(axis=(0, 2, 3)).astype(bn.running_var.dtype)


def calibrate(model: Module, x: np.ndarray, density=None, bn_stats: bool = True) -> dict:
    """Prepare an (untrained) LCCL network for benchmarking on the batch ``x``.

    One eval-mode pass in which, as the pass reaches them:

    * (``bn_stats``) every BatchNorm's running statistics become the mean and
      variance of the input it receives, so an untrained network keeps its
      activations on a sane scale in eval mode;
    * (``density`` not None) each LCCL's cheap-branch BN bias ``beta`` is set
      so that a fraction ``density`` of ``V'`` is positive on ``x``.

    Doing both in the same pass keeps them consistent: every layer is set on
    the input the already-set layers before it produce.

    Parameters
    ----------
    model : Module with LCCLConv2d layers
    x : ndarray, (N, C, H, W)
    density : None, float in [0, 1], or dict {LCCL layer name: float}
    bn_stats : bool
        False for trained networks (keep their statistics).

    Returns
    -------
    dict {LCCL layer name: density measured on ``x`` afterwards}

    Notes
    -----
    In eval mode the cheap branch is ``V' = ReLU(z + beta)`` with
    ``z = gamma (conv_W'(u) - mean) / sqrt(var + eps)``; setting ``beta_c`` to
    minus the ``(1 - density)`` quantile of ``z_c`` over the batch makes that
    fraction of channel ``c`` positive.
    """
    layers = lccl_modules(model)
    if not layers:
        raise ValueError("model has no LCCLConv2d layer to calibrate")
    for name, m in layers:
        if m.cheap_bn is None:
            raise ValueError(f"{name} has no cheap BN (cheap_bn=False) to calibrate")
    targets = {}
    if density is not None:
        for name, _ in layers:
            r = density[name] if isinstance(density, dict) else density
            if not isinstance(r, (int, float)) or not 0.0 <= float(r) <= 1.0:
                raise ValueError(f"density for {name!r} must be in [0, 1], got {r!r}")
            targets[name] = float(r)

    def bn_hook(bn, original):  # wraps BatchNorm2d.inference, which eval forwards go through
        def inference(z, relu=False):
            _set_batch_stats(bn, z)
            return original(z, relu)
        return inference

    def cheap_hook(layer, target, original):  # wraps LCCLConv2d.cheap_eval
        def cheap_eval(u):
            conv, bn = layer.cheap_conv, layer.cheap_bn
            if bn_stats:
                raw, _ = F.conv2d_forward(u, conv.weight.data, None, conv.stride, conv.padding)
                _set_batch_stats(bn, raw)
            if target is not None:
                z = _normalised_cheap(layer, u)  # (N, T', Ho, Wo), BN without its bias
                beta = [-_threshold(z[:, c], target) for c in range(z.shape[1])]
                bn.bias.data = np.asarray(beta, dtype=bn.bias.data.dtype)
            return original(u)
        return cheap_eval

    cheap_bns = {id(m.cheap_bn) for _, m in layers}
    hooked = []
    fused_flags = [m.fused for _, m in layers]
    blocks = [m for m in model.modules() if getattr(m, "fuse_bn_relu", False)]
    try:
        for m in blocks:  # the BN hooks need each BN-ReLU to run as a pass of its own
            m.fuse_bn_relu = False
        if bn_stats:
            for m in model.modules():
                if isinstance(m, BatchNorm2d) and id(m) not in cheap_bns:
                    object.__setattr__(m, "inference", bn_hook(m, m.inference))
                    hooked.append((m, "inference"))
        for name, m in layers:
            object.__setattr__(m, "cheap_eval", cheap_hook(m, targets.get(name), m.cheap_eval))
            hooked.append((m, "cheap_eval"))
            m.fused = False  # the fused kernel would not go through cheap_eval
        with _eval(model):
            model.forward(x)
    finally:
        for m, attr in hooked:
            m.__dict__.pop(attr, None)
        for (_, m), flag in zip(layers, fused_flags):
            m.fused = flag
        for m in blocks:
            m.fuse_bn_relu = True
    return {name: float(m.last_stats["density"]) for name, m in layers}


def _normalised_cheap(layer: LCCLConv2d, u: np.ndarray) -> np.ndarray:
    """``gamma (conv_W'(u) - mean) / sqrt(var + eps)``: the cheap branch before BN's bias."""
    conv, bn = layer.cheap_conv, layer.cheap_bn
    w_f, b_f = F.fold_into_conv(conv.weight.data, None, bn.weight.data,
                                np.zeros_like(bn.bias.data), bn.running_mean, bn.running_var,
                                bn.eps)
    pre, _ = F.conv2d_forward(u, w_f, b_f, conv.stride, conv.padding)
    return pre


def measure_densities(model: Module, x: np.ndarray) -> dict[str, float]:
    """Eval pass on ``x``; the density of each LCCL layer."""
    with _eval(model):
        model.forward(x)
    return {n: float(m.last_stats["density"]) for n, m in lccl_modules(model)}


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


@contextmanager
def _eval(model: Module):
    was_training = model.training
    model.eval()
    try:
        with np.errstate(all="ignore"):
            yield model
    finally:
        model.train(was_training)


@contextmanager
def plain_network(model: Module):
    """Inside the block every LCCL layer of ``model`` runs its expensive conv alone.

    That is the original network the LCCL network is compared with: same
    weights, same shapes, no cheap branch, no mask.
    """
    layers = lccl_modules(model)
    try:
        for _, m in layers:
            object.__setattr__(m, "forward", _plain_forward(m.conv))
        yield model
    finally:
        for _, m in layers:
            m.__dict__.pop("forward", None)


def _plain_forward(conv: Conv2d):
    def forward(x, cheap_input=None, pre=None):
        return conv.forward(x, pre=pre)
    return forward


def _set_sparse(layers, flag):
    for _, m in layers:
        m.sparse = flag


def time_interleaved(fns: dict, repeats: int, warmup: int = 1, minima: dict | None = None,
                     after=None, run: int = 1) -> dict:
    """Median wall time (s) of each zero-argument callable, calls interleaved.

    Each of the ``repeats`` rounds calls every function ``run`` times in a row
    (every call timed), the functions in the same order; a warm-up round
    (Numba compilation, first-touch allocation) is not timed.  With ``run =
    1`` every call follows a call of another function, which may have evicted
    its data from the caches; with longer runs most calls follow a call of
    their own, as when one network serves request after request.  If
    ``minima`` is a dict it receives the minimum of each function's times as
    well (on a shared machine the noise only adds time, so the minimum is the
    steadier estimate; the medians are the reported figures).
    ``after(name)``, if given, runs after each timed call, outside the timing.
    """
    if run < 1:
        raise ValueError(f"run must be at least 1, got {run}")
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, f in fns.items():
            for _ in range(run):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
                if after is not None:
                    after(k)
    if minima is not None:
        minima.update({k: float(np.min(v)) for k, v in times.items()})
    return {k: float(np.median(v)) for k, v in times.items()}


def _ratio(real, theoretical):
    return real / theoretical if theoretical > 0 else None


def capture_inputs(model: Module, x: np.ndarray) -> dict:
    """Eval pass on ``x``; each LCCL layer's ``(x, cheap_input)`` as it saw them."""
    layers = lccl_modules(model)
    seen = {}

    def make(name, original):
        def forward(xi, cheap_input=None, pre=None):
            # the expensive conv's actual input: with pre (a BN-ReLU folded into the
            # input copy) that is max(xi * s + h, 0), made here for the record
            seen[name] = (xi if pre is None else F.batchnorm.affine_relu_unchecked(xi, *pre),
                          cheap_input)
            return original(xi, cheap_input, pre)
        return forward

    try:
        for name, m in layers:
            object.__setattr__(m, "forward", make(name, m.forward))
        with _eval(model):
            model.forward(x)
    finally:
        for _, m in layers:
            m.__dict__.pop("forward", None)
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


def bench_layer(layer: LCCLConv2d, x: np.ndarray, cheap_input=None, repeats: int = 5,
                name: str = "", torch_ref: bool = True) -> dict:
    """Time one LCCL layer in isolation: plain conv vs sparse LCCL (and more).

    Times (s, medians of interleaved calls):

    ``t_plain``       the expensive conv alone, dense (``Conv2d.forward``: im2col + GEMM),
                      the layer of the original network;
    ``t_sparse``      the LCCL eval path (cheap branch, mask, gated conv, product);
    ``t_dense_lccl``  the LCCL eval path with the expensive conv dense;
    ``t_gated``       the gated kernel alone on the layer's mask;
    ``t_gated_full``  the gated kernel on an all-true mask (the same code at r = 1,
                      a dense reference free of im2col's overheads);
    ``t_torch``       PyTorch's dense conv, one thread (None without torch).

    Speed-ups: ``theoretical = 1 - (MACs_cheap + MACs_executed) / MACs_dense``,
    ``real = 1 - t_sparse / t_plain``, ``ratio = real / theoretical``;
    ``real_vs_gated_full`` and ``real_vs_torch`` against the other dense
    references; ``kernel_ideal = 1 - r`` against ``kernel_real = 1 - t_gated / t_plain``.
    """
    from .kernels import gated_conv2d

    sparse_flag = layer.sparse
    conv = layer.conv
    w = conv.weight.data
    with _eval(layer):
        layer.sparse = True
        layer.forward(x, cheap_input)
        stats, mask = dict(layer.last_stats), layer.last_mask
        full = np.ones_like(mask)

        def run_sparse():
            layer.sparse = True
            layer.forward(x, cheap_input)

        def run_dense_lccl():
            layer.sparse = False
            layer.forward(x, cheap_input)

        fns = dict(
            plain=lambda: conv.forward(x),
            sparse=run_sparse,
            dense_lccl=run_dense_lccl,
            gated=lambda: gated_conv2d(x, w, mask, None, conv.stride, conv.padding),
            gated_full=lambda: gated_conv2d(x, w, full, None, conv.stride, conv.padding),
        )
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
        name=name, cheap=layer.cheap, shared_mask=layer.shared_mask, batch=n,
        in_shape=(c, h, wd), out_channels=conv.out_channels, stride=conv.stride[0],
        density=stats["density"], macs_dense=stats["macs_dense"],
        macs_cheap=stats["macs_cheap"], macs_expensive=stats["macs_expensive"],
        t_plain=t["plain"], t_sparse=t["sparse"], t_dense_lccl=t["dense_lccl"],
        t_gated=t["gated"], t_gated_full=t["gated_full"], t_torch=t.get("torch"),
        theoretical=theo, real=real, ratio=_ratio(real, theo),
        real_vs_gated_full=1.0 - t["sparse"] / t["gated_full"],
        t_plain_min=tmin["plain"], t_sparse_min=tmin["sparse"],
        real_min=1.0 - tmin["sparse"] / tmin["plain"],
        real_vs_torch=1.0 - t["sparse"] / t["torch"] if "torch" in t else None,
        kernel_ideal=1.0 - stats["density"], kernel_real=1.0 - t["gated"] / t["plain"],
        kernel_ratio=_ratio(1.0 - t["gated"] / t["plain"], 1.0 - stats["density"]),
    )


def bench_network(model: Module, x: np.ndarray, repeats: int = 5, layers: bool = True,
                  torch_ref: bool = True, engine: bool = True) -> dict:
    """Whole-network and per-layer theoretical vs real speed-up on batch ``x``.

    Returns
    -------
    dict
        ``network``: MACs (dense total, LCCL total: plain layers + cheap +
        executed), times (s) ``plain`` / ``sparse`` / ``dense_lccl``, speed-ups
        ``theoretical``, ``real``, ``ratio``; ``layers``: :func:`bench_layer`
        rows (when ``layers``; ``torch_ref`` adds PyTorch's dense conv to them);
        ``engine``: :func:`bench_engine`'s result (when ``engine``), the same
        comparison with the whole network compiled into one call.
    """
    lay = lccl_modules(model)
    if not lay:
        raise ValueError("model has no LCCLConv2d layer; build it with lccl=<kind>")
    sparse_flags = [m.sparse for _, m in lay]
    n = x.shape[0]
    table = mac_table(model, x=x)  # runs one eval pass (sparse flags as they are)
    plain_macs = n * sum(r["macs_dense"] for r in table["rows"] if r["kind"] in ("conv",
                                                                                  "linear"))
    try:
        with _eval(model):
            _set_sparse(lay, True)
            model.forward(x)
            lccl_dense = sum(m.last_stats["macs_dense"] for _, m in lay)
            lccl_exec = sum(m.last_stats["macs_cheap"] + m.last_stats["macs_expensive"]
                            for _, m in lay)
            densities = {name: m.last_stats["density"] for name, m in lay}

            def run_plain():
                with plain_network(model):
                    model.forward(x)

            def run_sparse():
                _set_sparse(lay, True)
                model.forward(x)

            def run_dense_lccl():
                _set_sparse(lay, False)
                model.forward(x)

            tmin = {}
            t = time_interleaved(dict(plain=run_plain, sparse=run_sparse,
                                      dense_lccl=run_dense_lccl), repeats, minima=tmin)
        rows = []
        if layers:
            inputs = capture_inputs(model, x)
            for name, m in lay:
                xi, ci = inputs[name]
                rows.append(bench_layer(m, xi, ci, repeats, name, torch_ref))
    finally:
        for (_, m), f in zip(lay, sparse_flags):
            m.sparse = f
    dense_total = plain_macs + lccl_dense
    lccl_total = plain_macs + lccl_exec
    theo = 1.0 - lccl_total / dense_total
    real = 1.0 - t["sparse"] / t["plain"]
    net = dict(batch=n, macs_dense=int(dense_total), macs_lccl=int(lccl_total),
               macs_plain_layers=int(plain_macs),
               mean_density=float(np.mean(list(densities.values()))),
               t_plain=t["plain"], t_sparse=t["sparse"], t_dense_lccl=t["dense_lccl"],
               theoretical=theo, real=real, ratio=_ratio(real, theo),
               t_plain_min=tmin["plain"], t_sparse_min=tmin["sparse"],
               real_min=1.0 - tmin["sparse"] / tmin["plain"],
               ratio_min=_ratio(1.0 - tmin["sparse"] / tmin["plain"], theo))
    lccl_only = None
    if rows:
        tp = sum(r["t_plain"] for r in rows)
        ts = sum(r["t_sparse"] for r in rows)
        th = 1.0 - lccl_exec / lccl_dense
        tf = sum(r["t_gated_full"] for r in rows)
        lccl_only = dict(t_plain=tp, t_sparse=ts, t_gated_full=tf, theoretical=th,
                         real=1.0 - ts / tp, ratio=_ratio(1.0 - ts / tp, th),
                         real_vs_gated_full=1.0 - ts / tf,
                         ratio_vs_gated_full=_ratio(1.0 - ts / tf, th))
        if all(r["t_torch"] is not None for r in rows):
            tt = sum(r["t_torch"] for r in rows)
            lccl_only.update(t_torch=tt, real_vs_torch=1.0 - ts / tt)
    eng = bench_engine(model, x, repeats) if engine else None
    return dict(network=net, lccl_layers_sum=lccl_only, densities=densities, layers=rows,
                engine=eng)


#: Most consecutive calls of one network in :func:`bench_engine`'s timing runs.
ENGINE_RUN = 10


def bench_engine(model: Module, x: np.ndarray, repeats: int = 5,
                 min_time: float = 0.5) -> dict | None:
    """Theoretical vs real speed-up with :class:`lccl_ref.engine.Engine`, whole network and
    per conv layer; None (with the reason logged in ``"skipped"``) for a model the engine
    does not run.

    The plain network is ``Engine(model, sparse=False)`` (every LCCL layer's
    expensive conv alone), the LCCL network ``Engine(model)``; both compile
    the whole eval forward into one Numba call that takes the batch image by
    image, so neither pays per-layer Python dispatch nor a DRAM round trip
    per activation.  Whole network: wall medians (and minima) of at least
    ``repeats`` calls per network and as many as fill about ``min_time``
    seconds (at batch 1 a call takes 2-3 ms, and a median of 5 moved by 0.05
    in real/theoretical from run to run), in alternating runs of ``run`` =
    up to :data:`ENGINE_RUN` consecutive calls of one network (at least 10
    runs each; single calls when there are fewer than 20), so that a noisy
    neighbour slows both networks alike and most calls find their network
    where its last call left it in the caches, as when one network serves
    request after request.  With strictly alternating calls (``*_alternating``,
    timed too when ``run > 1``) each call of one network follows a call of
    the other, which has evicted its weights and buffers from L2: at batch 1
    ResNet-20's ratio was 0.02-0.03 lower that way (paired in one process,
    15 pairs: 0.82-0.88 against 0.85-0.89 in runs of 10).  Per layer: the cycles the
    engine counted in each op (``Engine.last_ops``), the minimum over the
    calls in runs, so per-layer times come from the same calls as the
    network's.

    Returns
    -------
    dict with ``t_plain``, ``t_sparse`` (s, medians), ``t_plain_min``,
    ``t_sparse_min``, ``rounds`` (calls per network), ``run``, ``macs_dense``,
    ``macs_lccl``, ``theoretical``, ``real``, ``ratio``, ``real_min``, ``ratio_min``,
    ``t_plain_alternating``, ``t_sparse_alternating``, ``real_alternating``,
    ``ratio_alternating`` (the same as the run figures when ``run`` is 1),
    ``real_cycles`` and ``ratio_cycles`` (from
    the sums over all ops of each op's minimum cycle count: what the network
    computes, without the call and the interruptions of a shared machine), and
    ``layers``: per conv layer
    ``name``, ``kind``, ``density`` (LCCL), ``macs_dense``, ``macs``,
    ``theoretical``, ``cycles_plain``, ``cycles_sparse``, ``real``, ``ratio``.
    """
    from .fast.engine import Engine
    from .models import PreActResNet

    if not isinstance(model, PreActResNet):
        return dict(skipped=f"the engine runs PreActResNets, not {type(model).__name__}")
    try:
        sparse, plain = Engine(model), Engine(model, sparse=False)
    except ValueError as e:
        return dict(skipped=str(e))
    sparse(x)
    plain(x)  # the first call of each is cold: time the second
    t0 = time.perf_counter()
    plain(x)
    rounds = max(repeats, min(1000, int(min_time / max(time.perf_counter() - t0, 1e-9))))
    macs_dense, macs_lccl = plain.last_macs["executed"], sparse.last_macs["executed"]
    engines = dict(plain=plain, sparse=sparse)
    cyc = {}

    every = {}  # every op's (ADD_SUB and HEAD too) minimum cycles

    def cycles(name):  # read outside the timed call, as arrays (last_stats builds dicts)
        c, layer_ops = engines[name].last_cycles
        every[name] = np.minimum(every[name], c) if name in every else c
        cyc[name] = every[name][layer_ops]

    tmin = {}
    calls = {k: (lambda e=e: e(x)) for k, e in engines.items()}
    run = max(1, min(ENGINE_RUN, rounds // 10))
    t = time_interleaved(calls, rounds // run, warmup=0, minima=tmin, after=cycles,
                         run=run)  # warmed up above
    t_alt = t if run == 1 else time_interleaved(calls, rounds, warmup=0)
    theo = 1.0 - macs_lccl / macs_dense
    real, real_min = 1.0 - t["sparse"] / t["plain"], 1.0 - tmin["sparse"] / tmin["plain"]
    real_alt = 1.0 - t_alt["sparse"] / t_alt["plain"]
    real_cycles = 1.0 - every["sparse"].sum() / every["plain"].sum()
    layers = []
    for k, (p, q) in enumerate(zip(plain.last_stats, sparse.last_stats)):
        th = 1.0 - q["macs"] / p["macs_dense"] if p["macs_dense"] else 0.0
        re = 1.0 - cyc["sparse"][k] / cyc["plain"][k] if cyc["plain"][k] else 0.0
        layers.append(dict(name=q["name"], kind=q["kind"], density=q.get("density"),
                           macs_dense=p["macs_dense"], macs=q["macs"], theoretical=th,
                           cycles_plain=int(cyc["plain"][k]), cycles_sparse=int(cyc["sparse"][k]),
                           real=re, ratio=_ratio(re, th) if q["kind"] == "lccl" else None))
    return dict(t_plain=t["plain"], t_sparse=t["sparse"], t_plain_min=tmin["plain"],
                t_sparse_min=tmin["sparse"], rounds=rounds // run * run, run=run,
                macs_dense=int(macs_dense), macs_lccl=int(macs_lccl), theoretical=theo,
                real=real, ratio=_ratio(real, theo), real_min=real_min,
                ratio_min=_ratio(real_min, theo), t_plain_alternating=t_alt["plain"],
                t_sparse_alternating=t_alt["sparse"], real_alternating=real_alt,
                ratio_alternating=_ratio(real_alt, theo),
                real_cycles=real_cycles, ratio_cycles=_ratio(real_cycles, theo), layers=layers)


# ---------------------------------------------------------------------------
# ResNet-18, ImageNet-shaped (224 x 224 input, batch 1)
# ---------------------------------------------------------------------------

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
                   batch: int = 1, input_size: int = 224, rng=0, dtype=np.float32) -> dict:
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
            row = bench_layer(layer, x, None, repeats, name)
            row["count"] = count
            rows.append(row)
        else:
            conv = Conv2d(c, t, k, s, p, rng=g, dtype=dtype)
            ho, _ = conv.output_shape(h, h)
            tt = time_interleaved(dict(plain=lambda conv=conv, x=x: conv.forward(x)), repeats)
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
                   theoretical=theo, real=real, ratio=_ratio(real, theo),
                   ms_dense_gated_full=1e3 * t_full, real_vs_gated_full=1.0 - t_lccl / t_full,
                   ratio_vs_gated_full=_ratio(1.0 - t_lccl / t_full, theo))
    if all(r["t_torch"] is not None for r in rows):
        # PyTorch as the dense reference of the LCCL layers (plain layers: ours, both sides)
        t_torch = plain_t + sum(r["count"] * r["t_torch"] for r in rows)
        network.update(ms_dense_torch=1e3 * t_torch, real_vs_torch=1.0 - t_lccl / t_torch)
    return dict(
        cheap=cheap, target_density=density, batch=batch, input_size=input_size, layers=rows,
        plain_layers=plain_rows, network=network,
        paper=dict(macs_dense=1.8e9, macs_lccl=1.2e9, ms_dense=97.1, ms_lccl=77.1,
                   theoretical=0.346, real=0.205, ratio=0.205 / 0.346),
    )


# ---------------------------------------------------------------------------
# the whole benchmark (benchmarks/bench_e2e.py and ``lccl-ref bench``)
# ---------------------------------------------------------------------------

SHARED_KINDS = ("kxkxCx1", "1x1xCx1")


def _image_shape(model) -> tuple:
    """(C, H, W) of one input image: 1x28x28 for the MNIST net, else 3x32x32 (CIFAR)."""
    stem = next(m for m in model.modules() if isinstance(m, (Conv2d, LCCLConv2d)))
    c = stem.in_channels if isinstance(stem, Conv2d) else stem.conv.in_channels
    return (c, 28, 28) if c == 1 else (c, 32, 32)


def run_benchmark(model: str = "resnet20", kinds=("kxkxCx1", "1x1xCx1", "1x1xCxT"),
                  batches=(1, 128), density=0.65, checkpoint=None, quick: bool = False,
                  repeats=None, layers: bool = True, resnet18: bool = True,
                  resnet18_density: float = 0.65, seed: int = 0, log=None) -> dict:
    """Theoretical vs real speed-up of LCCL networks, whole network and per layer.

    Parameters
    ----------
    model : str
        A :func:`lccl_ref.models.build_model` name; one network per cheap kind.
    kinds : sequence of {"kxkxCx1", "1x1xCx1", "1x1xCxT"}
    batches : sequence of int
    density : float in [0, 1] or None
        Untrained networks: the cheap branches are calibrated to this density
        on each batch (:func:`calibrate`, BN statistics included).  With a
        checkpoint: None keeps the trained masks, a number re-calibrates the
        cheap-branch biases only.
    checkpoint : path or None
        A checkpoint of ``lccl-ref train`` (``lccl_ref.train.model_from_checkpoint``);
        replaces ``model`` and ``kinds``.  Its test images are the batches.
    quick : bool
        Fewer repeats (default 2 instead of 5), ResNet-18 layers at 112x112.
    repeats : int or None
    layers : bool
        Also time every LCCL layer in isolation.
    resnet18 : bool
        Also run :func:`bench_resnet18` (``kxkxCx1`` at ``resnet18_density``).
    log : callable or None
        Called with one line of progress text at a time.

    Returns
    -------
    dict, JSON-serialisable: ``environment``, ``threads``, ``settings``, ``runs``
    (one per kind and batch: :func:`bench_network`'s result plus ``kind``,
    ``densities``), ``summary`` rows and ``resnet18``.
    """
    from .models import build_model

    log = log or (lambda text: None)
    threads = single_thread()
    repeats = repeats or (2 if quick else 5)
    g = np.random.default_rng(seed)
    nets = []
    if checkpoint is not None:
        from .train import model_from_checkpoint

        net, ck = model_from_checkpoint(checkpoint)
        cfg = ck.config.get("model", {})
        nets.append((cfg.get("lccl", "?"), net, ck))
    else:
        for kind in kinds:
            nets.append((kind, build_model(model, lccl=kind, rng=seed), None))
    runs = []
    for kind, net, ck in nets:
        shape = _image_shape(net)
        test_images = None
        if ck is not None:
            test_images = _checkpoint_images(ck, max(batches))
        for b in batches:
            if test_images is not None:
                x = np.ascontiguousarray(test_images[:b], dtype=net.dtype)
                measured = calibrate(net, x, density, bn_stats=False) if density is not None \
                    else measure_densities(net, x)
            else:
                x = g.standard_normal((b, *shape)).astype(net.dtype)
                measured = calibrate(net, x, density, bn_stats=True)
            log(f"{kind:8s} batch {b:4d}: mean density {np.mean(list(measured.values())):.3f}, "
                f"timing ({repeats} repeats)...")
            res = bench_network(net, x, repeats=repeats, layers=layers)
            res.update(kind=kind, shared_mask=kind in SHARED_KINDS,
                       model=(ck.config["model"]["name"] if ck else model),
                       input="checkpoint test images" if ck else "N(0, 1) noise")
            n = res["network"]
            log(f"{'':8s} theoretical {100 * n['theoretical']:5.1f}%  real "
                f"{100 * n['real']:5.1f}%  real/theoretical {_fmt(n['ratio'])}")
            e = res.get("engine")
            if e and "skipped" not in e:
                log(f"{'':8s} engine: real {100 * e['real']:5.1f}%  real/theoretical "
                    f"{_fmt(e['ratio'])}")
            runs.append(res)
    out = dict(environment=environment(), threads=threads,
               settings=dict(model=model, kinds=list(kinds), batches=list(batches),
                             density=density, checkpoint=None if checkpoint is None
                             else str(checkpoint), quick=quick, repeats=repeats, seed=seed,
                             dtype="float32"),
               runs=runs, summary=summarise(runs))
    if resnet18:
        size = 112 if quick else 224
        log(f"ResNet-18 layers at {size}x{size}, kxkxCx1, density {resnet18_density}...")
        out["resnet18"] = bench_resnet18(resnet18_density, "kxkxCx1", repeats, 1, size, seed)
        n = out["resnet18"]["network"]
        log(f"ResNet-18: {n['macs_dense']:.2e} -> {n['macs_lccl']:.2e} MACs, "
            f"{n['ms_dense']:.1f} -> {n['ms_lccl']:.1f} ms, theoretical "
            f"{100 * n['theoretical']:.1f}% real {100 * n['real']:.1f}%")
    return jsonable(out)


def _checkpoint_images(ck, n):
    from .data import load_dataset

    data = ck.config.get("data") or {}
    if "name" not in data:
        raise ValueError("the checkpoint does not say which dataset it was trained on "
                         "(no config.data.name); cannot take test images for the masks")
    ds = load_dataset(data["name"], subset=data.get("subset"),
                      test_subset=data.get("test_subset"), seed=data.get("seed", 0))
    return ds.x_test[:n]


def summarise(runs) -> list[dict]:
    """One row per run: kind, batch, density, theoretical / real speed-up and ratio,
    whole network and the sum over the LCCL layers timed in isolation."""
    rows = []
    for r in runs:
        n, s = r["network"], r.get("lccl_layers_sum")
        rows.append(dict(kind=r["kind"], shared_mask=r["shared_mask"], batch=n["batch"],
                         mean_density=n["mean_density"], theoretical=n["theoretical"],
                         real=n["real"], ratio=n["ratio"], real_min=n["real_min"],
                         ratio_min=n["ratio_min"], ms_plain=1e3 * n["t_plain"],
                         ms_sparse=1e3 * n["t_sparse"],
                         layers_theoretical=s["theoretical"] if s else None,
                         layers_real=s["real"] if s else None,
                         layers_ratio=s["ratio"] if s else None,
                         layers_ratio_vs_gated_full=s["ratio_vs_gated_full"] if s else None,
                         layers_real_vs_torch=s.get("real_vs_torch") if s else None,
                         **_engine_summary(r.get("engine"))))
    return rows


def _engine_summary(e) -> dict:
    """The :func:`bench_engine` figures of a summary row (None when not run)."""
    keys = ("theoretical", "real", "ratio", "real_min", "ratio_min", "ratio_cycles",
            "ratio_alternating")
    if not e or "skipped" in e:
        return dict(engine_ms_plain=None, engine_ms_sparse=None,
                    **{f"engine_{k}": None for k in keys})
    return dict(engine_ms_plain=1e3 * e["t_plain"], engine_ms_sparse=1e3 * e["t_sparse"],
                **{f"engine_{k}": e.get(k) for k in keys})


def format_summary(result) -> str:
    """The benchmark's result as a plain-text table.

    ``real`` and ``ratio`` are against the plain network (the faster dense conv), from
    medians; ``r(min)`` is the ratio from the minimum times; the engine's ``r(ops)``
    the ratio from each op's minimum cycle count, summed over the ops, and ``r(alt)``
    the ratio from strictly alternating calls (see :func:`bench_engine`);
    ``ratio/full`` is the LCCL layers' real / theoretical against the gated kernel
    at r = 1, ``vs torch`` their real speed-up against PyTorch's dense conv.
    """
    def pct(v, width=6):
        return f"{'':>{width}s}" if v is None else f"{100 * v:{width - 1}.1f}%"

    lines = [f"{'kind':8s} {'batch':>5s} {'r':>6s} {'plain ms':>9s} {'sparse ms':>9s} "
             f"{'theor.':>7s} {'real':>7s} {'ratio':>6s} {'r(min)':>6s} | LCCL layers: "
             f"{'theor.':>7s} {'real':>7s} {'ratio':>6s} {'ratio/full':>10s} {'vs torch':>8s}"]
    for r in result["summary"]:
        lines.append(f"{r['kind']:8s} {r['batch']:5d} {r['mean_density']:6.3f} "
                     f"{r['ms_plain']:9.2f} {r['ms_sparse']:9.2f} {pct(r['theoretical'], 7)} "
                     f"{pct(r['real'], 7)} {_fmt(r['ratio']):>6s} {_fmt(r['ratio_min']):>6s} | "
                     f"{'':12s} "
                     f"{pct(r['layers_theoretical'], 7)} {pct(r['layers_real'], 7)} "
                     f"{_fmt(r['layers_ratio']):>6s} {_fmt(r['layers_ratio_vs_gated_full']):>10s} "
                     f"{pct(r['layers_real_vs_torch'], 8)}")
    eng = [r for r in result["summary"] if r.get("engine_real") is not None]
    if eng:
        lines.append("")
        lines.append("engine (lccl_ref.engine: the whole network in one compiled call, image by "
                     "image):")
        lines.append(f"{'kind':8s} {'batch':>5s} {'plain ms':>9s} {'sparse ms':>9s} "
                     f"{'theor.':>7s} {'real':>7s} {'ratio':>6s} {'r(min)':>6s} {'r(ops)':>6s} "
                     f"{'r(alt)':>6s}")
        for r in eng:
            lines.append(f"{r['kind']:8s} {r['batch']:5d} {r['engine_ms_plain']:9.2f} "
                         f"{r['engine_ms_sparse']:9.2f} {pct(r['engine_theoretical'], 7)} "
                         f"{pct(r['engine_real'], 7)} {_fmt(r['engine_ratio']):>6s} "
                         f"{_fmt(r['engine_ratio_min']):>6s} "
                         f"{_fmt(r.get('engine_ratio_cycles')):>6s} "
                         f"{_fmt(r.get('engine_ratio_alternating')):>6s}")
    if "resnet18" in result:
        n, p = result["resnet18"]["network"], result["resnet18"]["paper"]
        lines.append("")
        lines.append(f"ResNet-18 layers, {result['resnet18']['input_size']}x"
                     f"{result['resnet18']['input_size']}, batch 1, kxkxCx1 at r = "
                     f"{result['resnet18']['target_density']}:")
        lines.append(f"  ours : {n['macs_dense']:.2e} -> {n['macs_lccl']:.2e} MACs, "
                     f"{n['ms_dense']:.1f} -> {n['ms_lccl']:.1f} ms, theoretical "
                     f"{100 * n['theoretical']:.1f}%, real {100 * n['real']:.1f}%, ratio "
                     f"{_fmt(n['ratio'])}")
        if "ms_dense_torch" in n:
            lines.append(f"  dense references of the LCCL layers: gated kernel at r = 1 "
                         f"{n['ms_dense_gated_full']:.1f} ms (ratio "
                         f"{_fmt(n['ratio_vs_gated_full'])}), PyTorch {n['ms_dense_torch']:.1f} "
                         f"ms (real {100 * n['real_vs_torch']:.1f}%)")
        lines.append(f"  paper: {p['macs_dense']:.1e} -> {p['macs_lccl']:.1e} FLOPs, "
                     f"{p['ms_dense']} -> {p['ms_lccl']} ms, theoretical "
                     f"{100 * p['theoretical']:.1f}%, real {100 * p['real']:.1f}%, ratio "
                     f"{p['ratio']:.2f}")
    return "\n".join(lines)


def _fmt(ratio):
    return "n/a" if ratio is None else f"{ratio:.2f}"


def bench_main(args) -> int:
    """``lccl-ref bench``: run :func:`run_benchmark`, print the summary (or JSON).

    ``args``: ``model``, ``kinds`` (comma-separated), ``batch`` (comma-separated),
    ``quick``, ``density`` (default 0.65 for untrained networks, the trained masks
    with ``checkpoint``), ``checkpoint``, ``repeats``, ``no_resnet18``, ``out`` (a
    JSON file to write; refused if it exists, unless ``force``), ``json``.  Threads:
    BLAS pools are limited to one thread in-process with threadpoolctl (installed with
    lccl_ref's dependencies); without it set ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``
    before running.
    """
    import json

    from .train.checkpoint import write_atomic

    def ints(text, name):
        try:
            vals = tuple(int(v) for v in str(text).split(","))
        except ValueError:
            raise ValueError(f"{name} must be comma-separated positive ints, got {text!r}") \
                from None
        if not vals or min(vals) < 1:
            raise ValueError(f"{name} must be comma-separated positive ints, got {text!r}")
        return vals

    out = getattr(args, "out", None)
    if out:  # before the benchmark, not after minutes of it
        check_out_file(out, bool(getattr(args, "force", False)))
    quick = bool(getattr(args, "quick", False))
    batches = ints(getattr(args, "batch", None) or ("1,16" if quick else "1,128"), "--batch")
    kinds = tuple((getattr(args, "kinds", None) or "kxkxCx1,1x1xCx1,1x1xCxT").split(","))
    as_json = bool(getattr(args, "json", False))
    checkpoint = getattr(args, "checkpoint", None)
    density = getattr(args, "density", None)
    if density is None and checkpoint is None:
        density = 0.65  # untrained networks need a target; trained ones keep their masks
    res = run_benchmark(model=getattr(args, "model", None) or "resnet20", kinds=kinds,
                        batches=batches, density=density, checkpoint=checkpoint, quick=quick,
                        repeats=getattr(args, "repeats", None),
                        resnet18=not getattr(args, "no_resnet18", False),
                        log=None if as_json else (lambda s: print(s, flush=True)))
    if out:
        text = json.dumps(res, indent=1, sort_keys=True)
        write_atomic(out, lambda f: f.write(text.encode()))
    if as_json:
        print(json.dumps(res, sort_keys=True))
    else:
        print()
        print(format_summary(res))
        if out:
            print(f"wrote {out}")
    return 0
