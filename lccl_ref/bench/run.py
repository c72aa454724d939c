"""``lccl-ref bench``: every cheap kind and batch size, every path, and ResNet-18's layers.

:func:`run_benchmark` builds one network per cheap kind (or loads a checkpoint),
calibrates its masks on each batch (:func:`.calibrate.calibrate`; trained networks
keep theirs), runs :func:`.network.bench_network` -- the teaching modules, the fast
modules, the engine, and each LCCL layer in isolation -- and
:func:`.resnet18.bench_resnet18` on both paths, one thread throughout
(:func:`.threads.one_thread`).  :func:`summarise` makes one row per figure, each
naming the path it comes from; :func:`lccl_ref.bench.summary.format_summary` prints them.
"""

from __future__ import annotations

import numpy as np

from ..report.results import jsonable
from .calibrate import calibrate, measure_densities
from .network import bench_network
from .resnet18 import bench_resnet18
from .threads import environment, one_thread
from .timing import PATHS, fast_path

SHARED_KINDS = ("kxkxCx1", "1x1xCx1")


def run_benchmark(model: str = "resnet20", kinds=("kxkxCx1", "1x1xCx1", "1x1xCxT"),
                  batches=(1, 128), density=0.65, checkpoint=None, quick: bool = False,
                  repeats=None, layers: bool = True, resnet18: bool = True,
                  resnet18_density: float = 0.65, seed: int = 0, log=None) -> dict:
    """Theoretical vs real speed-up of LCCL networks, whole network and per layer.

    Parameters
    ----------
    model : str, a :func:`lccl_ref.models.build_model` name; one network per kind
    kinds : sequence of {"kxkxCx1", "1x1xCx1", "1x1xCxT"}
    batches : sequence of int
    density : float in [0, 1] or None
        Untrained networks: the masks are calibrated to it on each batch (BN statistics
        included).  With a checkpoint: None keeps the trained masks, a number
        re-calibrates the cheap-branch shifts only.
    checkpoint : path or None
        A checkpoint of ``lccl-ref train``; replaces ``model`` and ``kinds``.  Its test
        images are the batches.
    quick : bool
        Fewer repeats (default 2 instead of 5), ResNet-18 layers at 112x112.
    repeats : int or None;  layers : bool (time every LCCL layer in isolation)
    resnet18 : bool (also :func:`.resnet18.bench_resnet18`, ``kxkxCx1``)
    log : callable or None, called with one line of progress text at a time

    Returns
    -------
    dict, JSON-serialisable: ``environment``, ``threads``, ``settings``, ``runs`` (one
    per kind and batch: :func:`.network.bench_network`'s result plus ``kind`` and
    ``densities``), ``summary`` rows and ``resnet18`` (per path).
    """
    from ..models import build_model

    log = log or (lambda text: None)
    repeats = repeats or (2 if quick else 5)
    g = np.random.default_rng(seed)
    nets = []
    if checkpoint is not None:
        from ..train import model_from_checkpoint

        net, ck = model_from_checkpoint(checkpoint)
        nets.append((ck.config.get("model", {}).get("lccl", "?"), net, ck))
    else:
        nets = [(kind, build_model(model, lccl=kind, rng=seed), None) for kind in kinds]
    paths = [p for p in PATHS if p == "teaching" or fast_path() is not None]
    runs, out = [], {}
    with one_thread() as threads:
        for kind, net, ck in nets:
            images = _checkpoint_images(ck, max(batches)) if ck is not None else None
            for b in batches:
                if images is not None:
                    x = np.ascontiguousarray(images[:b], dtype=net.dtype)
                    measured = calibrate(net, x, density, bn_stats=False) \
                        if density is not None else measure_densities(net, x)
                else:
                    x = g.standard_normal((b, *_image_shape(net))).astype(net.dtype)
                    measured = calibrate(net, x, density, bn_stats=True)
                log(f"{kind:8s} batch {b:4d}: mean density "
                    f"{np.mean(list(measured.values())):.3f}, timing ({repeats} repeats)...")
                res = bench_network(net, x, repeats=repeats, layers=layers, paths=paths)
                res.update(kind=kind, shared_mask=kind in SHARED_KINDS,
                           model=(ck.config["model"]["name"] if ck else model),
                           input="checkpoint test images" if ck else "N(0, 1) noise")
                runs.append(res)
        if resnet18:
            size = 112 if quick else 224
            for path in paths:
                log(f"ResNet-18 layers at {size}x{size}, kxkxCx1, density {resnet18_density}, "
                    f"{path} path...")
                out[path] = bench_resnet18(resnet18_density, "kxkxCx1", repeats, 1, size, seed,
                                           path=path)
    result = dict(environment=environment(), threads=threads,
                  settings=dict(model=model, kinds=list(kinds), batches=list(batches),
                                density=density, checkpoint=None if checkpoint is None
                                else str(checkpoint), quick=quick, repeats=repeats, seed=seed,
                                dtype="float32", paths=paths),
                  runs=runs, summary=summarise(runs))
    if resnet18:
        result["resnet18"] = out
    return jsonable(result)


def _image_shape(model) -> tuple:
    """(C, H, W) of one input image: 1x28x28 for the MNIST net, else 3x32x32 (CIFAR)."""
    c = model.stem.in_channels
    return (c, 28, 28) if c == 1 else (c, 32, 32)


def _checkpoint_images(ck, n):
    from ..data import load_dataset

    data = ck.config.get("data") or {}
    if "name" not in data:
        raise ValueError("the checkpoint does not say which dataset it was trained on "
                         "(no config.data.name); cannot take test images for the masks")
    ds = load_dataset(data["name"], subset=data.get("subset"),
                      test_subset=data.get("test_subset"), seed=data.get("seed", 0))
    return ds.x_test[:n]


def summarise(runs) -> list[dict]:
    """One row per run and path ("teaching", "fast", "engine"): kind, batch, density,
    times and the theoretical / real speed-up and their ratio (the teaching row also
    the sums over its LCCL layers timed in isolation)."""
    rows = []
    for r in runs:
        n = r["network"]
        base = dict(kind=r["kind"], shared_mask=r["shared_mask"], batch=n["batch"],
                    mean_density=n["mean_density"])
        for path, p in r["paths"].items():
            rows.append(dict(base, path=path, ms_plain=1e3 * p["t_plain"],
                             ms_sparse=1e3 * p["t_sparse"], theoretical=n["theoretical"],
                             real=p["real"], ratio=p["ratio"], ratio_min=p["ratio_min"],
                             layers=r["lccl_layers_sum"] if path == "teaching" else None))
        e = r.get("engine")
        if e and "skipped" not in e:
            rows.append(dict(base, path="engine", ms_plain=1e3 * e["t_plain"],
                             ms_sparse=1e3 * e["t_sparse"], theoretical=e["theoretical"],
                             real=e["real"], ratio=e["ratio"], ratio_min=e["ratio_min"],
                             ratio_cycles=e["ratio_cycles"],
                             ratio_alternating=e["ratio_alternating"], layers=None))
        elif e:
            rows.append(dict(base, path="engine", skipped=e["skipped"]))
    return rows
