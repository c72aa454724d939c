"""``lccl-ref``: the command line, thin over the library.

Each subcommand is one ``cmd_<name>(args) -> int`` function plus one
``add_parser`` block in :func:`build_parser`. Heavy modules (models, data,
Numba kernels) are imported inside the command functions, so ``lccl-ref
--help`` stays fast. Errors a user can cause (unknown names, impossible
combinations, missing or foreign files) end in one line on stderr,
``lccl-ref: error: ...``, and exit code 2; set ``LCCL_DEBUG=1`` for the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ._cliutil import (
    bounded_int,
    density_or_none,
    float_pair,
    fraction,
    non_negative_float,
    positive_int,
)

# The names the parser offers. They repeat lccl_ref.data.DATASETS,
# lccl_ref.models.MODEL_NAMES / LCCL_KINDS / PLACEMENTS / SHORTCUTS so that `--help` does not
# import NumPy-heavy modules; tests/test_cli.py checks that the lists agree.
DATASETS = ("mnist5k", "mnist", "fashion-mnist", "cifar10", "cifar100")
MODEL_NAMES = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
               "wrn-16-4", "wrn-22-8", "wrn-28-2", "wrn-40-1", "wrn-40-2", "wrn-40-4",
               "wrn-52-1", "mnist-resnet")
LCCL_KINDS = ("none", "1x1xCxT", "kxkxCx1", "1x1xCx1")
PLACEMENTS = ("aft-aft", "aft-bef", "bef-bef", "bef-aft")
SHORTCUTS = ("identity", "projection")  # == lccl_ref.models.SHORTCUTS
SCHEDULES = ("cosine", "step", "constant")  # == lccl_ref.train.SCHEDULES
GATES = ("relu", "clip")  # == lccl_ref.functional.GATES
BUDGET_SCOPES = ("network", "layer")  # == lccl_ref.train.budget.SCOPES
#: Largest ``flops --input-size``: the table comes from one forward pass of a zero image,
#: whose time and memory grow as S^2 (S = 100000 asked for 37 GiB).
MAX_FLOPS_INPUT = 256


class UsageError(Exception):
    """A command line argparse refused; carries the one-line message."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gives one line (no usage dump) and exit 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def _print_json(obj) -> None:
    print(json.dumps(obj, sort_keys=True))


# ---- train ---------------------------------------------------------------
def cmd_train(args) -> int:
    """Train a model on a dataset; write last.npz and history.json to --out."""
    from .data import load_dataset
    from .models import build_model
    from .train import DensityBudget, fit, recipe_for

    recipe = recipe_for(args.dataset)
    for key in ("model", "epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule"):
        if getattr(args, key) is None:
            setattr(args, key, recipe[key])
    out = Path(args.out) if args.out else Path("runs") / (
        f"{args.dataset}_{args.model}_{args.lccl}_{args.placement}_s{args.seed}")
    _check_train_out(out, args.resume, args.force)
    start = 0
    if args.resume:
        from .train import load_checkpoint

        start = load_checkpoint(args.resume).epoch  # a damaged file fails here, in one line
    ds = load_dataset(args.dataset, data_dir=args.data_dir, subset=args.subset,
                      test_subset=args.test_subset, seed=args.seed)
    model_cfg = {"name": args.model, "num_classes": int(ds.num_classes),
                 "in_channels": int(ds.image_shape[0]), "lccl": args.lccl,
                 "placement": args.placement, "shortcut": args.shortcut, "dtype": "float32"}
    budget = None
    if args.lccl != "none":  # the LCCL settings: the recipe's, unless given
        lccl = recipe["lccl"]
        gate = args.gate or lccl["gate"]
        gate_init = args.gate_init if args.gate_init is not None else lccl["gate_init"]
        model_cfg.update(gate=gate, gate_init=None if gate_init is None else list(gate_init))
        b = dict(lccl["budget"] or {})
        for key in ("target", "weight", "scope", "ramp", "floor"):
            given = getattr(args, f"budget_{key}" if key != "target" else "density_target")
            if given is not None:
                b[key] = given
        if b.get("target") is not None and args.density_target != "none":
            budget = DensityBudget(**b)
    model = build_model(**{k: v for k, v in model_cfg.items() if k != "dtype"}, rng=args.seed)
    config = {"model": model_cfg,
              "data": {"name": args.dataset, "subset": args.subset,
                       "test_subset": args.test_subset, "seed": args.seed,
                       "data_dir": args.data_dir, "source": str(getattr(ds, "source", ""))}}

    def report(rec):
        dens = rec["lccl_density"]
        mean = f"  density {sum(dens.values()) / len(dens):.3f}" if dens else ""
        print(f"epoch {rec['epoch']:3d}/{args.epochs}  lr {rec['lr']:.4f}  "
              f"train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.4f}  "
              f"test loss {rec['test_loss']:.4f} acc {rec['test_acc']:.4f}{mean}  "
              f"{rec['time_s']:.1f}s", flush=True)
        if rec.get("low_density"):
            print("  warning: layers that compute almost nothing (a dead gate; a density "
                  "budget's floor prevents it): " + ", ".join(
                      f"{k} {v:.3f}" for k, v in rec["low_density"].items()), flush=True)

    history = fit(model, ds, args.epochs, batch_size=args.batch_size, lr=args.lr,
                  momentum=args.momentum, weight_decay=args.weight_decay,
                  schedule=args.schedule, seed=args.seed, out_dir=out,
                  progress=not args.no_progress, resume=args.resume,
                  callback=None if args.json else report, config=config, budget=budget)
    last = history.last
    trained = len(history.epochs) - start
    if trained == 0:  # the checkpoint already holds --epochs epochs: fit wrote nothing
        if args.json:
            _print_json({"out": None, "checkpoint": str(args.resume), "history": None,
                         "config": history.config, "final": last, "trained_epochs": 0,
                         "total_time_s": 0.0})
        else:
            print(f"nothing to train: {args.resume} already holds {start} epochs "
                  f"(--epochs {args.epochs}); nothing written. Raise --epochs to continue it.")
        return 0
    if args.json:
        _print_json({"out": str(out), "checkpoint": str(out / "last.npz"),
                     "history": str(out / "history.json"), "config": history.config,
                     "final": last, "trained_epochs": trained,
                     "total_time_s": sum(r["time_s"] for r in history.epochs)})
    else:
        print(f"test accuracy {last['test_acc']:.4f} after {last['epoch']} epochs; "
              f"checkpoint {out / 'last.npz'}")
    return 0


def _check_train_out(out: Path, resume, force: bool) -> None:
    """``--out`` must be a folder (or not exist) and hold no earlier run, unless ``--force``
    or ``--resume`` continues the run it holds."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    held = [out / name for name in ("last.npz", "history.json") if (out / name).exists()]
    if not held or force:
        return
    last = out / "last.npz"
    if resume is not None and last.exists() and Path(resume).resolve() == last.resolve():
        return
    raise ValueError(f"--out {str(out)!r} already holds a run ({held[0]}); "
                     f"--resume {last} continues it, --force overwrites it, "
                     f"or choose another --out")


# ---- eval ----------------------------------------------------------------
def cmd_eval(args) -> int:
    """Evaluate a checkpoint on its dataset's test set: accuracy, densities, MACs."""
    import time

    from .data import load_dataset
    from .nn.lccl import set_sparse
    from .train import evaluate, model_from_checkpoint

    model, ck = model_from_checkpoint(args.checkpoint)
    data = ck.config.get("data") or {}
    if "name" not in data:
        raise ValueError(f"checkpoint {args.checkpoint!r} does not say which dataset it was "
                         "trained on (no config.data.name)")
    test_subset = args.test_subset if args.test_subset is not None else data.get("test_subset")
    data_dir = args.data_dir if args.data_dir is not None else data.get("data_dir")
    ds = load_dataset(data["name"], data_dir=data_dir, subset=data.get("subset"),
                      test_subset=test_subset, seed=data.get("seed", 0))
    set_sparse(model, not args.dense)
    t0 = time.perf_counter()
    ev = evaluate(model, ds.x_test, ds.y_test, args.batch_size)
    elapsed = time.perf_counter() - t0
    m = ck.config["model"]
    result = {"checkpoint": str(args.checkpoint), "epoch": ck.epoch, "dataset": data["name"],
              "model": m["name"], "lccl": m.get("lccl", "none"),
              "placement": m.get("placement"), "path": "dense" if args.dense else "sparse",
              "n": ev["n"], "accuracy": ev["accuracy"], "loss": ev["loss"],
              "lccl_density": ev["lccl"], "macs": ev["macs"], "time_s": elapsed}
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['model']} ({result['lccl']}, {result['placement']}) on {data['name']}, "
          f"epoch {ck.epoch}, {ev['n']} test images, {result['path']} path, {elapsed:.1f}s")
    print(f"accuracy {ev['accuracy']:.4f}  loss {ev['loss']:.4f}")
    if ev["lccl"]:
        print("LCCL layer                      density")
        for name, d in ev["lccl"].items():
            print(f"  {name:30s} {d:.4f}")
    mc = ev["macs"]
    print(f"MACs per image: dense {mc['dense']:,.0f}  executed {mc['executed']:,.0f}  "
          f"speed-up ratio {mc['speedup']:.3f}")
    return 0


# ---- flops / bench -------------------------------------------------------
def cmd_flops(args) -> int:
    """Per-layer MAC table of a model (lccl_ref.flops)."""
    from .flops import flops_main

    return flops_main(args)


def cmd_bench(args) -> int:
    """End-to-end dense vs sparse benchmark (lccl_ref.bench); one thread via threadpoolctl."""
    from .bench import bench_main

    return bench_main(args)


# ---- parser ----------------------------------------------------------------
# ---- reproduce -----------------------------------------------------------
def cmd_reproduce(args) -> int:
    """Train and measure what the paper's tables need; write the report."""
    import time

    from .reproduce import ReproduceConfig, run_reproduce

    if args.quick and args.tiny:
        raise ValueError("--quick and --tiny exclude each other")
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    cfg = ReproduceConfig(dataset=args.dataset, data_dir=args.data_dir, model=args.model,
                          mode=mode, epochs=args.epochs, subset=args.subset,
                          test_subset=args.test_subset, seed=args.seed, out=args.out,
                          progress=not args.no_progress, curve=not args.no_curve)
    t0 = time.perf_counter()
    results = run_reproduce(cfg)
    out = Path(cfg.out)
    runs = results["runs"]
    print(f"reproduce ({mode}, {cfg.dataset}, {results['meta']['model']}) finished in "
          f"{time.perf_counter() - t0:.1f}s; wrote {out / 'report.md'}, "
          f"{out / 'results.json'} and figures")
    plain = runs.get("baseline", {}).get("test_accuracy")
    for name, r in runs.items():
        dens = "" if r["mean_density"] is None else f"  density {r['mean_density']:.2f}"
        delta = "" if plain is None or name == "baseline" else \
            f" ({100 * (r['test_accuracy'] - plain):+.1f} pt vs plain)"
        print(f"  {name:32s} accuracy {100 * r['test_accuracy']:5.1f}%{delta}{dens}  "
              f"speed-up {100 * r['speedup']:5.1f}%")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``lccl-ref`` parser. A new subcommand: one block here + one ``cmd_*``."""
    parser = _Parser(prog="lccl-ref", description=(
        "Reference implementation of 'More is Less' (Dong et al., CVPR 2017): train and "
        "evaluate networks with low-cost collaborative layers (LCCL)."))
    from . import __version__

    parser.add_argument("--version", action="version", version=f"lccl-ref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (baseline or with LCCL)", description=(
        "Train with SGD (momentum, weight decay, cosine schedule by default), evaluate on the "
        "test set every epoch, and write OUT/last.npz and OUT/history.json. Settings left "
        "out take the dataset's default recipe (lccl_ref.train.RECIPES)."))
    p.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                   help="default: mnist5k (5,000 real MNIST digits that work offline)")
    p.add_argument("--model", choices=MODEL_NAMES, metavar="MODEL",
                   help=f"one of {', '.join(MODEL_NAMES)}; default: mnist-resnet for "
                        "MNIST-like data, resnet20 for CIFAR")
    p.add_argument("--lccl", choices=LCCL_KINDS, default="none",
                   help="cheap-branch kernel of every 3x3 conv in the residual blocks")
    p.add_argument("--placement", choices=PLACEMENTS, default="aft-aft")
    p.add_argument("--shortcut", choices=SHORTCUTS,
                   help="where width or resolution changes; default: projection for WRN, "
                        "identity (parameter-free) otherwise")
    g = p.add_argument_group(
        "LCCL training (with --lccl; defaults from the recipe, lccl_ref.train.RECIPES)")
    g.add_argument("--gate", choices=GATES,
                   help="V' = relu(z) (the paper's) or clip(z, 0, 1) (bounded)")
    g.add_argument("--gate-init", type=float_pair, metavar="GAMMA,BETA",
                   help="initial scale and shift of the cheap BN (1,0: half the cells active)")
    g.add_argument("--density-target", type=density_or_none, metavar="R",
                   help="train toward density R in [0, 1] (a density budget); 'none': no budget")
    g.add_argument("--budget-weight", type=non_negative_float, metavar="W")
    g.add_argument("--budget-scope", choices=BUDGET_SCOPES,
                   help="one MAC-weighted density for the network, or every layer at R")
    g.add_argument("--budget-ramp", type=fraction, metavar="F",
                   help="the target falls from 1 to R over the first fraction F of training")
    g.add_argument("--budget-floor", type=fraction, metavar="F",
                   help="penalise any layer below density F (no dead layers)")
    p.add_argument("--subset", type=positive_int, metavar="N",
                   help="class-balanced subset of N training images")
    p.add_argument("--test-subset", type=positive_int, metavar="N",
                   help="class-balanced subset of N test images")
    p.add_argument("--epochs", type=positive_int, metavar="E")
    p.add_argument("--batch-size", type=positive_int, metavar="B")
    p.add_argument("--lr", type=non_negative_float, metavar="LR")
    p.add_argument("--momentum", type=non_negative_float)
    p.add_argument("--weight-decay", type=non_negative_float, metavar="WD")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seeds the model's initialisation, the subsets and the shuffling")
    p.add_argument("--data-dir", metavar="DIR", help="data root (else $LCCL_DATA, else cache)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder; default runs/<dataset>_<model>_<lccl>_<placement>_s<seed>")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run from its last.npz (same model, data and settings; "
                        "--epochs may grow)")
    p.add_argument("--force", action="store_true",
                   help="overwrite the run already in --out (refused otherwise, unless "
                        "--resume continues it)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: accuracy, LCCL density, MACs",
                       description="Rebuild the model saved in CHECKPOINT, evaluate it on its "
                                   "dataset's test set in eval mode, and report accuracy, the "
                                   "density of every LCCL layer and the MACs per image.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a last.npz written by train")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data root; default: the --data-dir of the training run, else "
                        "$LCCL_DATA, else the cache")
    p.add_argument("--test-subset", type=positive_int, metavar="N",
                   help="default: the subset the run was evaluated on")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="B")
    p.add_argument("--dense", action="store_true",
                   help="compute the expensive convolutions densely (the reference path)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "reproduce", help="train the plain net and its LCCL variants; write the paper's "
                          "tables next to ours",
        description=(
            "Train the plain network and the LCCL networks the paper's tables need (same "
            "recipe, seed and minibatches), the density curve and the sparsity experiment; "
            "measure accuracy, density, MACs and dense vs sparse time; write OUT/report.md, "
            "OUT/results.json and PNG figures. Default data: mnist5k (offline). --quick "
            "takes about a minute on 2 cores with mnist5k; the full mode follows the data "
            "set's training recipe (mnist5k: 16 networks x 10 epochs, about 15 minutes)."))
    p.add_argument("--dataset", default="mnist5k", choices=DATASETS)
    p.add_argument("--data-dir", metavar="DIR", help="data root (else $LCCL_DATA, else cache)")
    p.add_argument("--model", choices=MODEL_NAMES, metavar="MODEL",
                   help="default: mnist-resnet for MNIST-like data, resnet20 for CIFAR")
    p.add_argument("--quick", action="store_true",
                   help="small subsets and 1 epoch: shows that the pipeline runs")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=positive_int, metavar="E")
    p.add_argument("--subset", type=positive_int, metavar="N",
                   help="class-balanced subset of N training images")
    p.add_argument("--test-subset", type=positive_int, metavar="N")
    p.add_argument("--no-curve", action="store_true",
                   help="skip the accuracy-vs-density curve (its extra trainings)")
    p.add_argument("--out", default="lccl_reproduce", metavar="DIR",
                   help="output folder (default ./lccl_reproduce)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reproduce)

    # New subcommands (flops, bench, reproduce) go here: sub.add_parser(...) + cmd_<name>.
    p = sub.add_parser("flops", help="per-layer multiply-accumulates of a model, dense and LCCL",
                       description="Print every conv / LCCL (expensive and cheap branch) / "
                                   "linear layer of MODEL with its input and output shape and "
                                   "its multiply-accumulates per image, dense and with LCCL at "
                                   "density R (lccl_ref.flops.mac_table), and the totals.")
    p.add_argument("--model", choices=MODEL_NAMES, required=True, metavar="MODEL",
                   help=f"one of {', '.join(MODEL_NAMES)}")
    p.add_argument("--lccl", choices=LCCL_KINDS, default="none")
    p.add_argument("--input-size", type=bounded_int(MAX_FLOPS_INPUT), metavar="S",
                   help=f"input height = width, 1 to {MAX_FLOPS_INPUT}; default 28 for "
                        "mnist-resnet, else 32 (the table runs one forward pass of a zero "
                        "image, whose time and memory grow as S^2)")
    p.add_argument("--density", type=non_negative_float, metavar="R",
                   help="fraction of the expensive convs' output cells computed (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("bench", help="end-to-end inference benchmark: theoretical vs real "
                                     "speed-up, dense vs sparse",
                       description="Time an LCCL network's eval forward, plain (dense) vs "
                                   "sparse, one thread, float32, per layer and whole network, "
                                   "against the speed-up its MAC counts promise; then "
                                   "ResNet-18's ImageNet-shaped layers (lccl_ref.bench).")
    p.add_argument("--model", choices=MODEL_NAMES, default="resnet20", metavar="MODEL")
    p.add_argument("--kinds", default="kxkxCx1,1x1xCx1,1x1xCxT", metavar="K1,K2",
                   help="comma-separated cheap kinds (default: all three)")
    p.add_argument("--batch", metavar="B1,B2", help="batch sizes (default 1,128; quick 1,16)")
    p.add_argument("--density", type=non_negative_float, metavar="R",
                   help="calibrate the masks to this density (default 0.65 for untrained "
                        "networks; with --checkpoint the trained masks)")
    p.add_argument("--checkpoint", metavar="CHECKPOINT", help="a last.npz written by train")
    p.add_argument("--repeats", type=positive_int, metavar="N")
    p.add_argument("--no-resnet18", action="store_true", help="skip the ResNet-18 layers")
    p.add_argument("--quick", action="store_true", help="small batches, 2 repeats")
    p.add_argument("--out", metavar="FILE", help="also write the results as JSON to FILE "
                                                 "(an existing FILE only with --force)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_bench)

    return parser


def _one_line(e: BaseException) -> str:
    text = str(e) if not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
    return " ".join(text.split()) or type(e).__name__


def main(argv=None) -> int:
    """Entry point of the ``lccl-ref`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("lccl-ref: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("LCCL_DEBUG") or not _is_user_error(e):
            raise
        print(f"lccl-ref: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _is_user_error(e: Exception) -> bool:
    if isinstance(e, (ValueError, TypeError, FileNotFoundError)):
        return True
    from .data.errors import DownloadError

    return isinstance(e, DownloadError)
