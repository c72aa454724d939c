"""``lccl-ref reproduce``: train what the paper's tables need, measure, write the report.

The experiment driver. :func:`run_reproduce` does, on one data set:

1. **sparsity**: a small net whose first convolution is followed by ReLU,
   L1-penalised ReLU, or BN + ReLU, trained with the functional ops; the
   fraction of zeros after that ReLU is recorded at every step
   (:func:`sparsity_experiment`);
2. **runs**: the baseline and the LCCL networks (cheap kernels ``1x1xCxT``,
   ``kxkxCx1``, ``1x1xCx1`` at ``aft-aft``; the four placements with
   ``kxkxCx1``), trained with :func:`lccl_ref.train.fit` and evaluated on the
   sparse path: accuracy, per-layer density, MACs per image;
3. **formula**: one layer of the trained networks put into the paper's closed
   forms (:mod:`lccl_ref.flops`) next to the MACs the kernels counted;
4. **bench**: dense vs sparse eval time of the ``kxkxCx1`` network at batch 1
   and a larger batch (:mod:`lccl_ref.bench`);

and :func:`lccl_ref.report.write_report` turns the results into
``report.md``, ``results.json`` and the figures.

Modes (``MODES``): ``quick`` finishes in under a minute on 2 cores (CI runs
it; 24-55 s measured on mnist5k); ``full`` uses each data set's training
recipe (mnist5k: 7 networks x 10 epochs on 4,000 digits, about 10 minutes on
2 cores; ``--epochs 5`` measured 308 s); ``tiny`` (hidden, for the tests) is
smaller still.  Explicit
``--epochs`` / ``--subset`` / ``--test-subset`` override the mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import functional as F
from ._cliutil import positive_int

# The runs the tables need: (run name, cheap kind, placement).
RUNS = (
    ("baseline", "none", "aft-aft"),
    ("1x1xCxT/aft-aft", "1x1xCxT", "aft-aft"),
    ("kxkxCx1/aft-aft", "kxkxCx1", "aft-aft"),
    ("1x1xCx1/aft-aft", "1x1xCx1", "aft-aft"),
    ("kxkxCx1/aft-bef", "kxkxCx1", "aft-bef"),
    ("kxkxCx1/bef-bef", "kxkxCx1", "bef-bef"),
    ("kxkxCx1/bef-aft", "kxkxCx1", "bef-aft"),
)
BENCH_RUN = "kxkxCx1/aft-aft"

# Per mode: training subset / test subset (None = all), epochs and batch size (None = the
# data set's recipe), the sparsity experiment's subset and epochs, the batch of the formula
# table, the benchmark's batch sizes and repeats, and the input size of the ResNet-18 layers.
MODES = {
    "tiny": dict(subset=64, test_subset=50, epochs=1, batch_size=32, sparsity_subset=64,
                 sparsity_epochs=1, formula_batch=8, bench_batches=(1, 8), bench_repeats=2,
                 resnet18_size=32),
    "quick": dict(subset=800, test_subset=300, epochs=1, batch_size=32, sparsity_subset=500,
                  sparsity_epochs=2, formula_batch=32, bench_batches=(1, 32), bench_repeats=3,
                  resnet18_size=112),
    "full": dict(subset=None, test_subset=None, epochs=None, batch_size=None,
                 sparsity_subset=None, sparsity_epochs=3, formula_batch=100,
                 bench_batches=(1, 128), bench_repeats=5, resnet18_size=224),
}


@dataclass
class ReproduceConfig:
    """Everything a reproduce run depends on (stored in ``results.json`` under ``config``)."""

    dataset: str = "mnist5k"
    data_dir: str | None = None
    model: str | None = None
    mode: str = "full"
    epochs: int | None = None
    subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    out: str = "lccl_reproduce"
    progress: bool = True
    runs: tuple = field(default_factory=lambda: tuple(r[0] for r in RUNS))

    def settings(self) -> dict:
        """The mode's settings with the explicit overrides applied."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {self.mode!r}")
        s = dict(MODES[self.mode])
        for key in ("epochs", "subset", "test_subset"):
            if getattr(self, key) is not None:
                s[key] = getattr(self, key)
        if self.subset is not None:
            s["sparsity_subset"] = self.subset
        return s


# ---------------------------------------------------------------------- sparsity
def sparsity_experiment(dataset, variant: str, epochs: int, batch_size: int = 32,
                        lr: float = 0.1, l1_lambda: float = 1e-4, width: int = 8,
                        seed: int = 0, progress: bool = False) -> dict:
    """Train a small net and record the fraction of zeros after its first ReLU.

    The net: ``conv3x3(C -> width) -> [BN] -> ReLU -> a -> conv3x3 stride 2
    (width -> 2 width) -> ReLU -> global average pool -> linear``, SGD with
    momentum 0.9, built from :mod:`lccl_ref.functional` pairs.

    Parameters
    ----------
    dataset : lccl_ref.data.Dataset (``x_train``, ``y_train``, ``x_test``, ``y_test``,
        ``num_classes``)
    variant : {"conv+relu", "conv+l1+relu", "conv+bn+relu"}
        What follows the first convolution.  ``conv+l1+relu`` adds
        ``l1_lambda * sum|a| / N`` to the loss (``a`` the ReLU output, ``N`` the
        batch), whose gradient ``l1_lambda * sign(a) / N`` is added to ``da``.
    epochs, batch_size, lr, l1_lambda, width, seed : training settings
    progress : bool, a tqdm bar over the steps

    Returns
    -------
    dict
        ``zero_fraction``: per training step, the fraction of zeros of ``a`` on
        that minibatch; ``test_accuracy``; ``test_zero_fraction`` (eval mode,
        whole test set).
    """
    if variant not in ("conv+relu", "conv+l1+relu", "conv+bn+relu"):
        raise ValueError(f"variant must be conv+relu, conv+l1+relu or conv+bn+relu, "
                         f"got {variant!r}")
    rng = np.random.default_rng(seed)
    c, k = dataset.x_train.shape[1], dataset.num_classes
    dt = np.float32
    use_bn = variant == "conv+bn+relu"
    p = {
        "w1": rng.normal(0, np.sqrt(2 / (9 * c)), (width, c, 3, 3)).astype(dt),
        "b1": np.zeros(width, dt),
        "w2": rng.normal(0, np.sqrt(2 / (9 * width)), (2 * width, width, 3, 3)).astype(dt),
        "b2": np.zeros(2 * width, dt),
        "wf": rng.uniform(-1, 1, (k, 2 * width)).astype(dt) / np.sqrt(2 * width, dtype=dt),
        "bf": np.zeros(k, dt),
        "gamma": np.ones(width, dt), "beta": np.zeros(width, dt),
    }
    stats = {"mean": np.zeros(width, dt), "var": np.ones(width, dt)}
    vel = {name: np.zeros_like(v) for name, v in p.items()}

    def first_layer(x, training):
        h, c1 = F.conv2d_forward(x, p["w1"], None if use_bn else p["b1"], 1, 1)
        cbn = None
        if use_bn:
            h, cbn = F.batchnorm2d_forward(h, p["gamma"], p["beta"], stats["mean"],
                                           stats["var"], training)
        a, cr = F.relu_forward(h)
        return a, (c1, cbn, cr)

    n = len(dataset.x_train)
    steps = epochs * -(-n // batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"sparsity {variant}", unit="batch", dynamic_ncols=True)
    zeros, step = [], 0
    for _ in range(epochs):
        perm = rng.permutation(n)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            x = np.asarray(dataset.x_train[idx], dt)
            y = dataset.y_train[idx]
            a, (c1, cbn, cr) = first_layer(x, True)  # (N, width, H, W)
            zeros.append(float(np.mean(a == 0)))
            h2, c2 = F.conv2d_forward(a, p["w2"], p["b2"], 2, 1)
            a2, cr2 = F.relu_forward(h2)
            g, cg = F.global_avg_pool_forward(a2)
            logits, cf = F.linear_forward(g, p["wf"], p["bf"])
            _, dlogits = F.softmax_cross_entropy(logits, y)
            grads = {}
            dg, grads["wf"], grads["bf"] = F.linear_backward(dlogits, cf)
            da2 = F.global_avg_pool_backward(dg, cg)
            da, grads["w2"], grads["b2"] = F.conv2d_backward(F.relu_backward(da2, cr2), c2)
            if variant == "conv+l1+relu":
                da = da + dt(l1_lambda / len(idx)) * np.sign(a)  # d/da of lambda*sum|a|/N
            dh = F.relu_backward(da, cr)
            if use_bn:
                dh, grads["gamma"], grads["beta"] = F.batchnorm2d_backward(dh, cbn)
            _, grads["w1"], db1 = F.conv2d_backward(dh, c1)
            if db1 is not None:
                grads["b1"] = db1
            lr_t = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
            for name, gr in grads.items():
                vel[name] = 0.9 * vel[name] + gr
                p[name] -= dt(lr_t) * vel[name]
            step += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    correct, test_zeros = 0, 0.0
    nt = len(dataset.x_test)
    for s in range(0, nt, 256):
        x = np.asarray(dataset.x_test[s:s + 256], dt)
        a, _ = first_layer(x, False)
        test_zeros += float(np.mean(a == 0)) * len(x)
        h2, _ = F.conv2d_forward(a, p["w2"], p["b2"], 2, 1)
        logits, _ = F.linear_forward(F.global_avg_pool_forward(F.relu_forward(h2)[0])[0],
                                     p["wf"], p["bf"])
        correct += int((logits.argmax(1) == dataset.y_test[s:s + 256]).sum())
    return {"zero_fraction": zeros, "test_accuracy": correct / nt,
            "test_zero_fraction": test_zeros / nt}


STABLE_RANGE = 0.10
STABILITY_RULE = (f"stable if the zero fraction over the second half of training stays "
                  f"within a band of {int(100 * STABLE_RANGE)} percentage points "
                  "(max − min), unstable otherwise")


def summarise_zeros(zero_fraction: list[float], test_accuracy: float,
                    max_points: int = 60) -> dict:
    """Mean, min, max, std over the second half of the steps; ``final`` = mean of the last 10%."""
    z = np.asarray(zero_fraction, dtype=np.float64)
    half = z[len(z) // 2:]
    last = z[-max(1, len(z) // 10):]
    keep = np.unique(np.linspace(0, len(z) - 1, min(max_points, len(z))).astype(int))
    return {"zero_fraction": z[keep].tolist(), "steps": keep.tolist(),
            "mean": float(half.mean()), "min": float(half.min()), "max": float(half.max()),
            "std": float(half.std()), "final": float(last.mean()),
            "stable": bool(half.max() - half.min() < STABLE_RANGE),
            "test_accuracy": float(test_accuracy)}


# ---------------------------------------------------------------------- runs
def _train_run(name, kind, placement, ds, model_name, recipe, epochs, seed, progress):
    from .models import build_model, lccl_layers
    from .train import evaluate, fit

    model = build_model(model_name, num_classes=int(ds.num_classes),
                        in_channels=int(ds.x_train.shape[1]), lccl=kind, placement=placement,
                        rng=seed)
    t0 = time.perf_counter()
    history = fit(model, ds, epochs, batch_size=recipe["batch_size"], lr=recipe["lr"],
        momentum=recipe["momentum"], weight_decay=recipe["weight_decay"],
        schedule=recipe["schedule"], seed=seed, progress=progress)
    train_s = time.perf_counter() - t0
    ev = evaluate(model, ds.x_test, ds.y_test)
    layers = _layer_rows(model, ds, ev["lccl"])
    dens = list(ev["lccl"].values())
    run = {
        "lccl": kind, "placement": placement, "test_accuracy": ev["accuracy"],
        "test_error_pct": 100.0 * (1.0 - ev["accuracy"]), "test_loss": ev["loss"],
        "macs_dense": ev["macs"]["dense"], "macs_lccl": ev["macs"]["executed"],
        "speedup": ev["macs"]["speedup"],
        "mean_density": float(np.mean(dens)) if dens else None,
        "train_seconds": train_s, "layers": layers, "lccl_layer_names": [
            n for n, _ in lccl_layers(model)],
        "history": [{k: rec[k] for k in ("epoch", "lr", "train_loss", "train_acc", "test_loss",
                                         "test_acc", "time_s")} for rec in history.epochs],
    }
    return model, run


def _layer_rows(model, ds, density: dict) -> list[dict]:
    """Per LCCL layer: density (mean over the test set) and MACs per image (flops table)."""
    if not density:
        return []
    from .flops import mac_table

    table = mac_table(model, input_shape=ds.x_train.shape[1:], density=density)
    by_name = {r["name"]: r for r in table["rows"]}
    rows = []
    for name, d in density.items():
        exp, cheap = by_name[f"{name}.conv"], by_name[f"{name}.cheap_conv"]
        rows.append({"name": name, "density": float(d), "macs_dense": exp["macs_dense"],
                     "macs_lccl": float(exp["macs_lccl"] + cheap["macs_lccl"])})
    return rows


# ---------------------------------------------------------------------- formula table
def _pick_layer(model) -> str:
    """The first LCCL layer with C != T (where the slides' formula differs), else the first."""
    from .models import lccl_layers

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
    from . import flops
    from .kernels import gated_conv2d
    from .models import lccl_layers

    first = next(iter(models.values()))
    name = _pick_layer(first)
    n = len(x)
    layer = dict(lccl_layers(first))[name]
    t, c, k, _ = layer.conv.weight.data.shape
    rows, shape = [], None
    for kind, model in models.items():
        model.eval()
        model.forward(np.asarray(x, model.dtype))
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


# ---------------------------------------------------------------------- masks
def mask_examples(models: dict, x: np.ndarray, layers: int = 2) -> dict:
    """Images and the eval masks of the first ``layers`` LCCL layers of each model."""
    from .models import lccl_layers

    masks = {}
    for label, model in models.items():
        model.eval()
        model.forward(np.asarray(x, model.dtype))
        for name, lay in lccl_layers(model)[:layers]:
            masks[f"{label}\n{name}"] = lay.last_mask.copy()
    return {"images": np.asarray(x), "masks": masks}


# ---------------------------------------------------------------------- driver
def _load_average() -> float | None:
    """The 1-minute load average (other processes sharing the CPU make timings noisy)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return None


def machine_info() -> dict:
    import numba

    try:
        from threadpoolctl import threadpool_info

        blas = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with the test extra
        blas = None
    return {"threads": int(numba.get_num_threads()), "blas_threads": blas,
            "cpu_count": os.cpu_count(), "load_average": _load_average(),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(), "numpy": np.__version__}


def run_reproduce(cfg: ReproduceConfig) -> dict:
    """Run every experiment of the report and write it to ``cfg.out``; return the results.

    Raises
    ------
    ValueError
        Unknown data set, model, mode or run name.
    """
    from . import __version__
    from .data import load_dataset
    from .report import write_report
    from .train import recipe_for

    t_start = time.perf_counter()
    s = cfg.settings()
    recipe = recipe_for(cfg.dataset)
    model_name = cfg.model or recipe["model"]
    known = {r[0] for r in RUNS}
    bad = [r for r in cfg.runs if r not in known]
    if bad:
        raise ValueError(f"unknown run(s) {bad}; choose from {sorted(known)}")
    from .models import build_model

    build_model(model_name)  # fails early, with the model registry's message, on a bad name
    _prepare_out(cfg.out)  # an unusable --out fails now, not after the training
    epochs = s["epochs"] or recipe["epochs"]
    recipe["batch_size"] = s["batch_size"] or recipe["batch_size"]
    ds = load_dataset(cfg.dataset, data_dir=cfg.data_dir, subset=s["subset"],
                      test_subset=s["test_subset"], seed=cfg.seed)
    info = machine_info()
    meta = {"dataset": cfg.dataset, "source": str(getattr(ds, "source", "")),
            "model": model_name, "train_size": int(len(ds.x_train)),
            "test_size": int(len(ds.x_test)), "epochs": int(epochs),
            "batch_size": int(recipe["batch_size"]), "lr": recipe["lr"], "seed": cfg.seed,
            "mode": cfg.mode, **info, "lccl_ref": __version__,
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}

    phases = {}
    t_phase = time.perf_counter()

    # 1. sparsity of a cheap branch
    sp_ds = ds
    if s["sparsity_subset"] is not None and s["sparsity_subset"] < len(ds.x_train):
        sp_ds = _take(ds, s["sparsity_subset"], cfg.seed)
    l1_lambda = 1e-4
    variants = {}
    for variant in ("conv+relu", "conv+l1+relu", "conv+bn+relu"):
        out = sparsity_experiment(sp_ds, variant, s["sparsity_epochs"], l1_lambda=l1_lambda,
                                  seed=cfg.seed, progress=cfg.progress)
        variants[variant] = summarise_zeros(out["zero_fraction"], out["test_accuracy"])
        variants[variant]["test_zero_fraction"] = out["test_zero_fraction"]
    sparsity = {"layer": f"conv1 (3x3, {ds.x_train.shape[1]} -> 8)",
                "epochs": s["sparsity_epochs"], "train_size": int(len(sp_ds.x_train)),
                "l1_lambda": l1_lambda, "stability_rule": STABILITY_RULE, "variants": variants}

    phases["sparsity"] = time.perf_counter() - t_phase

    # 2. the baseline and the LCCL networks
    runs, models = {}, {}
    for name, kind, placement in RUNS:
        if name not in cfg.runs:
            continue
        if cfg.progress:
            print(f"[reproduce] training {name} ({model_name}, {epochs} epoch(s))", flush=True)
        models[name], runs[name] = _train_run(name, kind, placement, ds, model_name, recipe,
                                              epochs, cfg.seed, cfg.progress)

    phases["training"] = time.perf_counter() - t_phase - phases["sparsity"]

    # 3. the formula table on one layer
    cheap = {k: models[f"{k}/aft-aft"] for k in ("1x1xCxT", "kxkxCx1", "1x1xCx1")
             if f"{k}/aft-aft" in models}
    results = {"config": asdict(cfg), "meta": meta, "sparsity": sparsity, "runs": runs}
    # Test images in a fixed random order (the balanced subsets come sorted by class).
    x_shuffled = ds.x_test[np.random.default_rng(cfg.seed).permutation(len(ds.x_test))]
    x_formula = x_shuffled[:s["formula_batch"]]
    results["formula"] = formula_table(cheap, x_formula) if cheap else _no_formula()

    # 4. theoretical vs real speed-up
    t_bench = time.perf_counter()
    if BENCH_RUN in models:
        results["bench"] = run_bench(models[BENCH_RUN], x_shuffled, s["bench_batches"],
                                     s["bench_repeats"])
        results["bench"]["run"] = BENCH_RUN
        if cfg.progress:
            print(f"[reproduce] ResNet-18 layers at {s['resnet18_size']}x{s['resnet18_size']}",
                  flush=True)
        results["bench"]["resnet18"] = run_bench_resnet18(
            runs[BENCH_RUN]["mean_density"], s["resnet18_size"], s["bench_repeats"], cfg.seed)

    phases["bench"] = time.perf_counter() - t_bench
    examples = mask_examples(cheap, x_shuffled[:4]) if cheap else None
    meta["phase_seconds"] = phases
    meta["elapsed_s"] = time.perf_counter() - t_start
    write_report(results, cfg.out, mask_examples=examples)
    return results


def _prepare_out(out) -> None:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {str(out)!r}: cannot create the folder ({e.strerror})") from e
    if not os.access(path, os.W_OK):
        raise ValueError(f"--out {str(out)!r}: the folder is not writable")


def _no_formula() -> dict:
    return {"layer": "n/a (no LCCL run)", "X": 0, "Y": 0, "C": 0, "T": 0, "k": 0, "batch": 0,
            "rows": []}


def _take(ds, n, seed):
    """``ds`` with a class-balanced random subset of ``n`` of its training images."""
    from .data import balanced_subset

    idx = balanced_subset(ds.y_train, n, seed)
    return dataclasses.replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx])


@contextmanager
def one_thread():
    """Within the block BLAS (threadpoolctl, when installed) and Numba use one thread.

    Scoped, unlike :func:`lccl_ref.bench.single_thread`, so that a reproduce run inside
    a longer process (the tests) leaves the thread counts as it found them.
    """
    import numba

    before = numba.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn/mlxtend
        limiter = None
    else:
        limiter = threadpool_limits(limits=1)
    numba.set_num_threads(1)
    try:
        yield 1
    finally:
        numba.set_num_threads(before)
        if limiter is not None:
            limiter.restore_original_limits()


def run_bench(model, x_test, batches, repeats) -> dict:
    """Dense vs sparse eval time of ``model`` on test images, one thread (:mod:`lccl_ref.bench`).

    Returns the ``bench`` section of the results: per batch size the network's MACs per
    image (plain network vs LCCL as executed), median times in ms of the plain network
    and of the sparse LCCL network, theoretical and real speed-ups, and the same per layer;
    ``engine``: the same comparison with :mod:`lccl_ref.engine` (whole network, one call).
    """
    from .bench import bench_network

    out = {"threads": 1, "repeats": int(repeats), "load_average": _load_average(),
           "batches": []}
    for b in batches:
        x = np.asarray(x_test[:b], model.dtype)
        with one_thread():
            res = bench_network(model, x, repeats=repeats)
        net, n = res["network"], len(x)
        out["batches"].append({
            "batch": n, "macs_dense": net["macs_dense"] / n, "macs_sparse": net["macs_lccl"] / n,
            "dense_ms": 1e3 * net["t_plain"], "sparse_ms": 1e3 * net["t_sparse"],
            "dense_lccl_ms": 1e3 * net["t_dense_lccl"], "theoretical": net["theoretical"],
            "real": net["real"], "real_over_theoretical": net["ratio"],
            "mean_density": net["mean_density"],
            "layers": [{"name": r["name"], "density": r["density"],
                        "theoretical": r["theoretical"], "real": r["real"],
                        "plain_ms": 1e3 * r["t_plain"], "sparse_ms": 1e3 * r["t_sparse"]}
                       for r in res["layers"]],
            "engine": _engine_row(res.get("engine")),
        })
    return out


def _engine_row(e):
    """The :func:`lccl_ref.bench.bench_engine` figures for ``results.json`` (None if not run)."""
    if not e or "skipped" in e:
        return None
    return {"dense_ms": 1e3 * e["t_plain"], "sparse_ms": 1e3 * e["t_sparse"],
            "theoretical": e["theoretical"], "real": e["real"],
            "real_over_theoretical": e["ratio"],
            "real_over_theoretical_ops": e.get("ratio_cycles"),
            "real_over_theoretical_alternating": e.get("ratio_alternating"),
            "layers": [{"name": r["name"], "theoretical": r["theoretical"], "real": r["real"]}
                       for r in e["layers"] if r["kind"] == "lccl"]}


def run_bench_resnet18(density: float, input_size: int, repeats: int, seed: int) -> dict:
    """ResNet-18's ImageNet layers with ``kxkxCx1`` masks at our network's mean density."""
    from .bench import bench_resnet18

    with one_thread():
        res = bench_resnet18(float(density), "kxkxCx1", repeats, 1, int(input_size), seed)
    net = res["network"]
    return {"input_size": int(input_size), "density": float(density), "batch": 1,
            "macs_dense": net["macs_dense"], "macs_sparse": net["macs_lccl"],
            "dense_ms": net["ms_dense"], "sparse_ms": net["ms_lccl"],
            "theoretical": net["theoretical"], "real": net["real"],
            "real_over_theoretical": net["ratio"]}


# ---------------------------------------------------------------------- command line

def add_reproduce_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``reproduce`` to an ``argparse`` sub-parser collection; return its parser."""
    p = subparsers.add_parser(
        "reproduce", help="train the baseline and LCCL variants; write the paper's tables "
                          "next to ours",
        description=(
            "Train the baseline and the LCCL networks the paper's tables need, measure "
            "sparsity, MACs and dense vs sparse time, and write OUT/report.md, "
            "OUT/results.json and PNG figures. Default data: mnist5k (offline). "
            "--quick takes under a minute on 2 cores with mnist5k (CIFAR's resnet20 is "
            "17x costlier per image); the full mode follows the data set's "
            "training recipe (mnist5k: 7 networks x 10 epochs on 4,000 digits, about 10 "
            "minutes on 2 cores)."))
    p.add_argument("--dataset", default="mnist5k",
                   choices=("mnist5k", "mnist", "fashion-mnist", "cifar10", "cifar100"))
    p.add_argument("--data-dir", metavar="DIR", help="data root (else $LCCL_DATA, else cache)")
    p.add_argument("--model", metavar="MODEL",
                   help="default: mnist-resnet for MNIST-like data, resnet20 for CIFAR")
    p.add_argument("--quick", action="store_true",
                   help=f"small subsets and 1 epoch (subset {MODES['quick']['subset']}, "
                        f"test {MODES['quick']['test_subset']}); a few minutes")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=positive_int, metavar="E")
    p.add_argument("--subset", type=positive_int, metavar="N",
                   help="class-balanced subset of N training images")
    p.add_argument("--test-subset", type=positive_int, metavar="N")
    p.add_argument("--out", default="lccl_reproduce", metavar="DIR",
                   help="output folder (default ./lccl_reproduce)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reproduce)
    return p


def cmd_reproduce(args) -> int:
    """Entry point of ``lccl-ref reproduce``."""
    if args.quick and args.tiny:
        raise ValueError("--quick and --tiny exclude each other")
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    cfg = ReproduceConfig(dataset=args.dataset, data_dir=args.data_dir, model=args.model,
                          mode=mode, epochs=args.epochs, subset=args.subset,
                          test_subset=args.test_subset, seed=args.seed, out=args.out,
                          progress=not args.no_progress)
    t0 = time.perf_counter()
    results = run_reproduce(cfg)
    out = Path(cfg.out)
    runs = results["runs"]
    print(f"reproduce ({mode}, {cfg.dataset}, {results['meta']['model']}) finished in "
          f"{time.perf_counter() - t0:.1f}s; wrote {out / 'report.md'}, "
          f"{out / 'results.json'} and figures")
    for name, r in runs.items():
        print(f"  {name:18s} error {r['test_error_pct']:6.2f}%  speed-up "
              f"{100 * r['speedup']:5.1f}%")
    return 0
