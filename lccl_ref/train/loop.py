"""The training loop: minibatch SGD, evaluation each epoch, history, checkpoints.

One epoch of :func:`fit`::

    model.train()
    for each shuffled minibatch (last one may be smaller):
        x <- random crop + flip          (only if dataset.augment, e.g. CIFAR)
        loss, dlogits = softmax_cross_entropy(model.forward(x), y)
        model.zero_grad(); model.backward(dlogits); sgd.step(lr(t))
    model.eval(); evaluate on the test set       (loss, accuracy, LCCL densities, MACs)
    write out_dir/last.npz and out_dir/history.json; callback(record)

All randomness of the loop (shuffling, augmentation) comes from one
``np.random.Generator(seed)`` whose state is checkpointed after every epoch,
so stopping after epoch k and resuming from ``last.npz`` replays exactly the
minibatches an uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..functional import softmax_cross_entropy
from ..models import lccl_layers
from ..nn import Module
from .budget import LOW_DENSITY
from .checkpoint import load_checkpoint, restore_rng, save_checkpoint, write_atomic
from .evaluate import evaluate, take_train_macs
from .optim import SGD
from .schedules import SCHEDULES, learning_rate

# Hyper-parameters that must agree between a checkpoint and the run resuming it
# (``epochs`` may change: a run can be extended).
_RESUME_KEYS = ("batch_size", "lr", "momentum", "weight_decay", "schedule", "milestones",
                "seed", "budget")
# Sections of ``config`` that must agree in every field but these: where the data files
# were found may change between the runs, what they hold may not.
_RESUME_SECTIONS = {"model": (), "data": ("data_dir", "source")}


@dataclass
class History:
    """Per-epoch records of a run, JSON-serialisable.

    Each record holds ``epoch`` (1-based), ``lr`` (at the epoch's first
    iteration), ``train_loss``, ``train_acc`` (running over the epoch, train
    mode), ``test_loss``, ``test_acc`` (eval mode), ``time_s``, ``images_per_s``
    (training only), ``lccl_density`` ({layer: mean density over the test set}),
    ``macs`` (per test image; see :func:`evaluate`), ``low_density`` ({layer: test
    density} of the layers below :data:`LOW_DENSITY`), ``train_density`` ({layer:
    mean density over the epoch's batches, train mode}), ``budget_loss`` (the
    LCCL density budgets' mean penalty, not part of ``train_loss``) and ``train_macs``
    (per training image, forward and backward: ``{"dense", "executed"}``, see
    :func:`~lccl_ref.train.evaluate.take_train_macs`).
    """

    config: dict = field(default_factory=dict)
    epochs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"config": self.config, "epochs": self.epochs}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(config=dict(d.get("config", {})), epochs=list(d.get("epochs", [])))

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}

    def save(self, path) -> None:
        """Write the JSON atomically (:func:`~lccl_ref.train.checkpoint.write_atomic`)."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        write_atomic(path, lambda f: f.write(text.encode()))


def _check_positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def fit(model: Module, dataset, epochs: int, batch_size: int = 128, lr: float = 0.1,
        momentum: float = 0.9, weight_decay: float = 5e-4, schedule: str = "cosine",
        milestones=None, seed: int = 0, out_dir=None, progress: bool = True, resume=None,
        callback=None, config: dict | None = None, eval_batch_size: int = 256,
        budget=None) -> History:
    """Train ``model`` on ``dataset`` with SGD; evaluate and checkpoint every epoch.

    Parameters
    ----------
    model : Module
        Any classifier ``(N, C, H, W) -> (N, K)`` logits; trained in place.
    dataset : lccl_ref.data.Dataset (or any object with the same fields)
        ``x_train``, ``y_train``, ``x_test``, ``y_test`` and ``augment``.
    epochs : int
        Total epochs of the run (also the length of the LR schedule).
    batch_size, lr, momentum, weight_decay
        SGD settings, see :class:`~lccl_ref.train.optim.SGD`.
    schedule : {"cosine", "step", "constant"}
        See :mod:`lccl_ref.train.schedules`; ``milestones`` for ``"step"``.
    seed : int
        Seeds the generator for shuffling and augmentation (not the model's
        initialisation, which the caller did).
    out_dir : path, optional
        If given, ``last.npz`` (checkpoint) and ``history.json`` are written
        there after every epoch.
    progress : bool
        Show a tqdm bar per epoch with the running loss and accuracy.
    resume : path, optional
        A checkpoint of the same run: restores weights, BN statistics, momentum
        buffers, RNG state and history, and continues at the next epoch.  Refused
        (ValueError naming the fields) when its training settings other than
        ``epochs``, or, for the sections ``config`` gives, its ``model`` or ``data``
        (all fields but ``data_dir`` and ``source``) differ from this run's.  A
        checkpoint that already holds ``epochs`` epochs trains nothing and writes
        nothing: the returned history ends at its epoch.
    callback : callable, optional
        ``callback(record)`` after each epoch (after the checkpoint is
        written); returning True stops training.
    config : dict, optional
        ``{"model": build_model kwargs with "name", "data": {...}}`` stored in
        checkpoints so that ``lccl-ref eval`` can rebuild the model; the
        training settings are added under ``"train"``.
    eval_batch_size : int
    budget : DensityBudget, GateL1 or None
        A penalty on the model's LCCL layers (:mod:`.budget`), e.g. one that trains
        them toward a density; reported as ``budget_loss``, apart from ``train_loss``.

    Returns
    -------
    History
    """
    epochs = _check_positive_int("epochs", epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    x_train, y_train = dataset.x_train, dataset.y_train
    n = len(x_train)
    if n == 0:
        raise ValueError("dataset has no training images")
    train_cfg = {"epochs": epochs, "batch_size": batch_size, "lr": float(lr),
                 "momentum": float(momentum), "weight_decay": float(weight_decay),
                 "schedule": schedule, "seed": int(seed),
                 "milestones": None if milestones is None else [int(m) for m in milestones],
                 "budget": None if budget is None else budget.config()}
    config = {**(config or {}), "train": train_cfg}
    opt = SGD(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    history = History(config=config)
    start = 0
    if resume is not None:
        ck = load_checkpoint(resume)
        diff = _resume_conflicts(ck.config, config)
        if diff:
            raise ValueError(f"cannot resume from {str(resume)!r}: " + "; ".join(diff))
        model.load_state_dict(ck.model_state)
        opt.load_state_dict(ck.optim_state)
        rng = restore_rng(ck.rng_state)
        history = History(config=config, epochs=list(ck.history.get("epochs", [])))
        start = ck.epoch
    if start >= epochs:  # nothing to train, so nothing to write
        return history
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    crop_flip = None
    if getattr(dataset, "augment", False):
        from ..data import random_crop_flip as crop_flip
    iters = -(-n // batch_size)
    dtype = model.dtype
    lccl = lccl_layers(model)
    layers = [layer for _, layer in lccl]
    for epoch in range(start, epochs):
        bar = _bar(iters, f"epoch {epoch + 1}/{epochs}", progress)
        model.train()
        perm = rng.permutation(n)
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        budget_sum, train_density = 0.0, {name: 0.0 for name, _ in lccl}
        take_train_macs(model)  # from zero: this epoch's training passes
        lr0 = learning_rate(schedule, lr, epoch, epochs, milestones)
        for i in range(iters):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb = x_train[idx]
            if crop_flip is not None:
                xb = crop_flip(xb, rng)
            xb = np.asarray(xb, dtype=dtype)
            yb = y_train[idx]
            model.zero_grad()
            logits = model.forward(xb)
            loss, dlogits = softmax_cross_entropy(logits, yb)
            if budget is not None:  # sets each layer's density_grad for the backward
                budget_sum += budget.apply(layers, (epoch + i / iters) / epochs)["loss"] * len(idx)
            model.backward(dlogits)
            opt.step(learning_rate(schedule, lr, epoch + i / iters, epochs, milestones))
            loss_sum += loss * len(idx)
            for name, layer in lccl:
                train_density[name] += layer.last_train_density * len(idx)
            correct += int((logits.argmax(axis=1) == yb).sum())
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                                refresh=False)
        train_time = time.perf_counter() - t0
        train_macs = take_train_macs(model)  # per epoch, before evaluate's forwards
        ev = evaluate(model, dataset.x_test, dataset.y_test, eval_batch_size)
        record = {
            "epoch": epoch + 1, "lr": lr0,
            "train_loss": loss_sum / seen, "train_acc": correct / seen,
            "test_loss": ev["loss"], "test_acc": ev["accuracy"],
            "time_s": time.perf_counter() - t0, "images_per_s": seen / train_time,
            "lccl_density": ev["lccl"], "macs": ev["macs"],
            "low_density": {k: v for k, v in ev["lccl"].items() if v < LOW_DENSITY},
            "budget_loss": budget_sum / seen,
            "train_density": {k: v / seen for k, v in train_density.items()},
            "train_macs": {k: v / seen for k, v in train_macs.items()},
        }
        history.epochs.append(record)
        if bar is not None:
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['train_acc']:.3f}",
                            test_acc=f"{ev['accuracy']:.4f}")
            bar.close()
        if out is not None:
            save_checkpoint(out / "last.npz", model, opt, epoch + 1, rng, config,
                            history.to_dict())
            history.save(out / "history.json")
        if callback is not None and callback(record):
            break
    return history


def _resume_conflicts(old: dict, new: dict) -> list[str]:
    """Where a checkpoint's config ``old`` and a resuming run's ``new`` disagree, one
    "field: checkpoint value, this run value" per field (see ``fit``'s ``resume``)."""
    new = json.loads(json.dumps(new))  # as the checkpoint stores it: lists, not tuples
    diff = []
    for section, free in _RESUME_SECTIONS.items():
        if section not in new:  # the caller built the model or data without saying how
            continue
        a, b = old.get(section), new[section] or {}
        if a is None:
            diff.append(f"the checkpoint does not record its {section} (no config.{section})")
            continue
        diff += [f"{section}.{k} is {a.get(k)!r} in the checkpoint but {b.get(k)!r} here"
                 for k in sorted(set(a) | set(b)) if k not in free and a.get(k) != b.get(k)]
    a, b = old.get("train") or {}, new["train"]
    diff += [f"train.{k} is {a[k]!r} in the checkpoint but {b[k]!r} here"
             for k in _RESUME_KEYS if k in a and a[k] != b[k]]
    return diff


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True)
