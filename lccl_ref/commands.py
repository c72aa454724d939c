"""The ``lccl-ref`` commands: one ``cmd_<name>(args) -> int`` each, thin over the library.

:mod:`lccl_ref.cli` parses the command line (all of argparse is there) and calls one
of these with the parsed ``args``.  Heavy modules (models, data, Numba kernels) are
imported inside the functions, so that ``lccl-ref --help`` stays fast.  Errors a user
can cause are ``ValueError``/``TypeError``/``FileNotFoundError``, which the command
line turns into one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path


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
        mc = last["macs"]
        speed = "" if not last["lccl_density"] else (
            f"; speed-up {100 * mc.get('speedup_mask', mc['speedup']):.1f}% from the masks, "
            f"{100 * mc['speedup']:.1f}% run")
        print(f"test accuracy {last['test_acc']:.4f} after {last['epoch']} epochs{speed}; "
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
    from .nn import set_sparse
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
    print(f"MACs per image: dense {mc['dense']:,.0f}  needed {mc['needed']:,.0f}  "
          f"executed {mc['executed']:,.0f}")
    print(f"speed-up ratio {mc['speedup_mask']:.3f} (the masks' zeros, the paper's), "
          f"{mc['speedup']:.3f} (what the kernels ran)")
    return 0


def cmd_flops(args) -> int:
    """Per-layer MAC table of a model (lccl_ref.flops): text, or JSON with ``--json``."""
    from .flops import format_table, mac_table
    from .models import build_model

    model = build_model(args.model, lccl=args.lccl, rng=0)
    in_c = model.stem.in_channels
    size = args.input_size or (28 if args.model == "mnist-resnet" else 32)
    density = 1.0 if args.density is None else args.density
    table = mac_table(model, input_shape=(in_c, size, size), density=density)
    if args.json:
        _print_json(dict(table, model=args.model, lccl=args.lccl))
        return 0
    note = "" if args.lccl == "none" else f"; r = {density}" + (
        " (upper bound; pass --density)" if args.density is None else "")
    print(f"{args.model}, lccl={args.lccl}, input {in_c}x{size}x{size}; multiply-accumulates "
          f"per image (not FLOPs){note}")
    print(format_table(table))
    return 0


def cmd_bench(args) -> int:
    """End-to-end dense vs sparse benchmark (lccl_ref.bench), every path, one thread."""
    from .bench import format_summary, run_benchmark
    from .train.checkpoint import write_atomic

    if args.out:  # before the benchmark, not after minutes of it
        check_out_file(args.out, args.force)
    batches = args.batch or ((1, 16) if args.quick else (1, 128))
    density = args.density
    if density is None and args.checkpoint is None:
        density = 0.65  # untrained networks need a target; trained ones keep their masks
    res = run_benchmark(model=args.model, kinds=tuple(args.kinds), batches=batches,
                        density=density, checkpoint=args.checkpoint, quick=args.quick,
                        repeats=args.repeats, resnet18=not args.no_resnet18,
                        log=None if args.json else (lambda s: print(s, flush=True)))
    if args.out:
        text = json.dumps(res, indent=1, sort_keys=True)
        write_atomic(args.out, lambda f: f.write(text.encode()))
    if args.json:
        _print_json(res)
    else:
        print()
        print(format_summary(res))
        if args.out:
            print(f"wrote {args.out}")
    return 0


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
              f"speed-up {100 * r.get('speedup_mask', r['speedup']):5.1f}% "
              f"(ran {100 * r['speedup']:.1f}%)")
    return 0


def check_out_file(out, force: bool, flag: str = "--out") -> Path:
    """``out``, a file to write: refused (ValueError, one line) when it is a folder, or
    exists and ``force`` is false, so that no earlier result is overwritten unasked."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"{flag} {str(out)!r} is a folder; give a file name")
    if path.exists() and not force:
        raise ValueError(f"{flag} {str(out)!r} exists; pass --force to overwrite it or "
                         f"choose another file")
    return path
