"""``lccl-ref``: the command line -- all of its argparse -- thin over :mod:`lccl_ref.commands`.

:func:`build_parser` declares every subcommand and option (one ``add_parser`` block
each) and :func:`main` runs the chosen ``commands.cmd_<name>``.  Errors a user can
cause (unknown names, impossible combinations, missing or foreign files) end in one
line on stderr, ``lccl-ref: error: ...``, and exit code 2; set ``LCCL_DEBUG=1`` for
the traceback instead.  Nothing imports this module.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

# The names the parser offers repeat lccl_ref.data, .models, .train, so that `--help` does not
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
#: Largest ``flops --input-size`` (one forward pass, time and memory as S^2: 100000 asked 37 GiB)
MAX_FLOPS_INPUT = 256


class UsageError(Exception):
    """A command line argparse refused; carries the one-line message."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gives one line (no usage dump) and exit 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def bounded_int(maximum: int):
    """argparse type: an int in ``[1, maximum]``."""
    def parse(text: str) -> int:
        v = positive_int(text)
        if v > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum}, got {text!r}")
        return v
    return parse


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    v = non_negative_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def density_or_none(text: str):
    """argparse type: a density in [0, 1], or the word ``none``."""
    return "none" if text.strip().lower() == "none" else fraction(text)


def float_pair(text: str) -> tuple[float, float]:
    """argparse type: two finite floats ``A,B``."""
    try:
        vals = tuple(float(p) for p in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 2 or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected two numbers A,B, got {text!r}")
    return vals


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive ints ``1,128``."""
    try:
        vals = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        vals = ()
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return vals


def kind_list(text: str) -> list[str]:
    """argparse type: comma-separated cheap kinds ``kxkxCx1,1x1xCx1``."""
    kinds = [k.strip() for k in text.split(",")]
    if not set(kinds) <= set(LCCL_KINDS[1:]):
        raise argparse.ArgumentTypeError(f"expected kinds of {LCCL_KINDS[1:]}, got {text!r}")
    return kinds


def _flags(p, *flags) -> None:
    """The on/off options that several commands share."""
    helps = {"--json": "print one JSON object on stdout", "--no-progress": "no progress bars"}
    for flag in flags:
        p.add_argument(flag, action="store_true", help=helps[flag])


def build_parser() -> argparse.ArgumentParser:
    """The ``lccl-ref`` parser. A new subcommand: one block here + one ``cmd_*``."""
    from . import __version__, commands

    parser = _Parser(prog="lccl-ref", description=(
        "Reference implementation of 'More is Less' (Dong et al., CVPR 2017): train and "
        "evaluate networks with low-cost collaborative layers (LCCL)."))
    parser.add_argument("--version", action="version", version=f"lccl-ref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (baseline or with LCCL)", description=(
        "Train with SGD, evaluate on the test set every epoch, write OUT/last.npz and "
        "OUT/history.json. Settings left out take the dataset's recipe (train.RECIPES)."))
    p.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                   help="default: mnist5k (5,000 real MNIST digits that work offline)")
    p.add_argument("--model", choices=MODEL_NAMES, metavar="MODEL",
                   help=f"one of {', '.join(MODEL_NAMES)}; default: mnist-resnet for "
                        "MNIST-like data, resnet20 for CIFAR")
    p.add_argument("--lccl", choices=LCCL_KINDS, default="none",
                   help="cheap-branch kernel of every 3x3 conv in the residual blocks")
    p.add_argument("--placement", choices=PLACEMENTS, default="aft-aft")
    p.add_argument("--shortcut", choices=SHORTCUTS, help="where width or resolution changes; "
                   "default: projection for WRN, identity (parameter-free) otherwise")
    g = p.add_argument_group("LCCL training (defaults from the recipe, train.RECIPES)")
    g.add_argument("--gate", choices=GATES, help="V' = relu(z) (the paper's) or clip(z, 0, 1)")
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
    p.add_argument("--subset", type=positive_int, metavar="N", help="class-balanced subset "
                   "of N training images")
    p.add_argument("--test-subset", type=positive_int, metavar="N", help="the same, test images")
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
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue a run from its last.npz "
                   "(same model, data and settings; --epochs may grow)")
    p.add_argument("--force", action="store_true", help="overwrite the run already in --out "
                   "(refused otherwise, unless --resume continues it)")
    _flags(p, "--json", "--no-progress")
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint: accuracy, LCCL density, MACs",
                       description="Evaluate the model saved in CHECKPOINT on its dataset's "
                                   "test set: accuracy, each LCCL layer's density, MACs.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a last.npz written by train")
    p.add_argument("--data-dir", metavar="DIR", help="data root; default: the training "
                   "run's --data-dir, else $LCCL_DATA, else the cache")
    p.add_argument("--test-subset", type=positive_int, metavar="N", help="default: the "
                   "subset the run was evaluated on")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="B")
    p.add_argument("--dense", action="store_true",
                   help="compute the expensive convolutions densely (the reference path)")
    _flags(p, "--json")
    p.set_defaults(func=commands.cmd_eval)

    p = sub.add_parser(
        "reproduce", help="train the plain net and its LCCL variants; write the paper's "
                          "tables next to ours",
        description=(
            "Train the plain network and the LCCL networks the paper's tables need, the "
            "density curve and the sparsity experiment; measure accuracy, density, MACs and "
            "time (teaching and fast path); write OUT/report.md, OUT/results.json and PNGs. "
            "--quick: about a minute on 2 cores; full: the data set's recipe (mnist5k: 16 "
            "networks x 10 epochs, about 15 minutes)."))
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
    _flags(p, "--no-progress")
    p.set_defaults(func=commands.cmd_reproduce)

    p = sub.add_parser("flops", help="per-layer multiply-accumulates of a model, dense and LCCL",
                       description="Every conv / LCCL (both branches) / linear layer of MODEL: "
                                   "shapes and MACs per image, dense and at density R.")
    p.add_argument("--model", choices=MODEL_NAMES, required=True, metavar="MODEL",
                   help=f"one of {', '.join(MODEL_NAMES)}")
    p.add_argument("--lccl", choices=LCCL_KINDS, default="none")
    p.add_argument("--input-size", type=bounded_int(MAX_FLOPS_INPUT), metavar="S",
                   help=f"input height = width, 1 to {MAX_FLOPS_INPUT} (one forward pass of a "
                        "zero image); default 28 for mnist-resnet, else 32")
    p.add_argument("--density", type=fraction, metavar="R",
                   help="fraction of the expensive convs' output cells computed (default 1)")
    _flags(p, "--json")
    p.set_defaults(func=commands.cmd_flops)

    p = sub.add_parser("bench", help="theoretical vs real speed-up, plain vs LCCL network",
                       description="An LCCL network against its plain twin, one thread, on "
                                   "the teaching path, the fast path and the engine; then "
                                   "ResNet-18's ImageNet-shaped layers (lccl_ref.bench).")
    p.add_argument("--model", choices=MODEL_NAMES, default="resnet20", metavar="MODEL")
    p.add_argument("--kinds", type=kind_list, default=["kxkxCx1", "1x1xCx1", "1x1xCxT"],
                   metavar="K1,K2", help="comma-separated cheap kinds (default: all three)")
    p.add_argument("--batch", type=int_list, metavar="B1,B2",
                   help="batch sizes (default 1,128; quick 1,16)")
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
    _flags(p, "--json")
    p.set_defaults(func=commands.cmd_bench)

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
