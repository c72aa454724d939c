"""Checkpoints: one ``.npz`` that holds everything needed to resume or evaluate.

Layout (every entry a plain array, read back with ``allow_pickle=False``)::

    format          0-d str    "lccl_ref.checkpoint/1"
    epoch           0-d int64  epochs completed
    rng_state       0-d str    JSON of numpy's ``Generator.bit_generator.state``
    config          0-d str    JSON: {"model": {...build_model kwargs}, "data": {...},
                               "train": {...}}, enough to rebuild the model
    history         0-d str    JSON of :class:`~lccl_ref.train.loop.History`
    model/<name>    the model's state dict: weights and BN running statistics
    optim/<name>    the SGD momentum buffer of parameter <name>

Writes are atomic (:func:`write_atomic`: a temporary file in the same folder,
then ``os.replace``), so an interrupted save never leaves a half-written
checkpoint behind, and the next save removes the temporary file it left.
:func:`load_checkpoint` checks every entry's type (a list where the config
should be, a negative epoch, a member that is not an array: a ValueError naming
the entry).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "lccl_ref.checkpoint/1"
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


@dataclass
class Checkpoint:
    """The content of a checkpoint file, decoded."""

    epoch: int
    model_state: dict[str, np.ndarray]
    optim_state: dict[str, np.ndarray]
    rng_state: dict
    config: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)


def _json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, sort_keys=True))  # 0-d unicode array, no pickle


def write_atomic(path, write) -> Path:
    """Write ``path`` through ``write(binary file)`` into a temporary file in the same
    folder, then ``os.replace``: readers see the old file or the new one, never half.

    The temporary files an interrupted earlier write left (``<name>*.tmp``, killed
    between the two steps) are removed first, so they do not pile up (51 MB after
    8 kills of a checkpoint save).  One writer per path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(glob.escape(str(path)) + "*.tmp"):
        Path(stale).unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path, model, optimizer, epoch: int, rng: np.random.Generator,
                    config: dict | None = None, history: dict | None = None) -> Path:
    """Write model, optimiser, epoch, RNG state, config and history to ``path`` (.npz)."""
    path = Path(path)
    arrays = {
        "format": np.array(FORMAT),
        "epoch": np.array(int(epoch), dtype=np.int64),
        "rng_state": _json_array(rng.bit_generator.state),
        "config": _json_array(config or {}),
        "history": _json_array(history or {}),
    }
    arrays.update({f"model/{k}": v for k, v in model.state_dict().items()})
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    return write_atomic(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not an ``.npz``, holds pickled objects or a member that is not
        an array, is not an lccl_ref checkpoint (no ``format`` entry, or another
        format), or an entry has the wrong type: ``epoch`` not a non-negative int,
        ``rng_state``, ``config`` or ``history`` not a JSON object, ``config.model``,
        ``config.data`` or ``config.train`` not an object, ``history.epochs`` not a
        list of objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # an .npz is a zip archive
        raise ValueError(f"{str(path)!r} is not an lccl_ref checkpoint (not an .npz file)")
    try:
        with zipfile.ZipFile(path) as z:
            foreign = [m for m in z.namelist() if not m.endswith(".npy")]
        if foreign:
            raise ValueError(f"{str(path)!r} is not an lccl_ref checkpoint: member "
                             f"{foreign[0]!r} is not an array (.npy)")
        with np.load(path, allow_pickle=False) as f:
            entries = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{str(path)!r} is not an lccl_ref checkpoint (.npz): {e}") from None
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise ValueError(f"{str(path)!r} holds pickled objects; refused") from None
        raise
    fmt = entries.get("format")
    if fmt is None or fmt.shape != () or str(fmt) != FORMAT:
        raise ValueError(f"{str(path)!r} is not an lccl_ref checkpoint "
                         f"(format entry {None if fmt is None else str(fmt)!r}, "
                         f"expected {FORMAT!r})")
    try:
        decoded = {k: json.loads(str(entries[k])) for k in ("rng_state", "config", "history")}
        epoch = entries["epoch"]
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint {str(path)!r} is incomplete or damaged: {e}") from None
    if epoch.shape != () or epoch.dtype.kind not in "iu" or int(epoch) < 0:
        raise ValueError(f"checkpoint {str(path)!r}: epoch must be a non-negative int, got "
                         f"{epoch.tolist()!r} ({epoch.dtype})")
    _check_json_types(path, **decoded)
    return Checkpoint(
        epoch=int(epoch),
        model_state={k[6:]: v for k, v in entries.items() if k.startswith("model/")},
        optim_state={k[6:]: v for k, v in entries.items() if k.startswith("optim/")},
        **decoded,
    )


def _check_json_types(path, rng_state, config, history) -> None:
    """The JSON entries of a checkpoint are objects of the layout the module header gives."""
    def need(name, value, kind, what):
        if not isinstance(value, kind):
            raise ValueError(f"checkpoint {str(path)!r}: {name} must be {what}, got "
                             f"{type(value).__name__} {value!r:.60}")

    need("rng_state", rng_state, dict, "a JSON object")
    need("config", config, dict, "a JSON object")
    need("history", history, dict, "a JSON object")
    for key in ("model", "data", "train"):
        if config.get(key) is not None:
            need(f"config.{key}", config[key], dict, "a JSON object")
    if "epochs" in history:
        need("history.epochs", history["epochs"], list, "a list")
        for i, rec in enumerate(history["epochs"]):
            need(f"history.epochs[{i}]", rec, dict, "a JSON object")
    if "config" in history:
        need("history.config", history["config"], dict, "a JSON object")


def restore_rng(state: dict) -> np.random.Generator:
    """A numpy ``Generator`` in exactly the state ``Generator.bit_generator.state`` gave."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"rng_state names bit generator {name!r}, expected one of "
                         f"{_BIT_GENERATORS}")
    bg = getattr(np.random, name)()
    bg.state = state
    return np.random.Generator(bg)


def model_from_checkpoint(path):
    """Rebuild the model a checkpoint was trained with and load its weights.

    Returns ``(model, checkpoint)``; the model is in eval mode. Needs the
    ``config["model"]`` entry that :func:`lccl_ref.train.fit` writes (the
    keyword arguments of :func:`lccl_ref.models.build_model`).
    """
    from ..models import build_model

    ck = load_checkpoint(path)
    kwargs = dict(ck.config.get("model") or {})
    if "name" not in kwargs:
        raise ValueError(f"checkpoint {str(path)!r} does not say which model it holds "
                         "(no config.model.name); rebuild the model yourself and call "
                         "model.load_state_dict(load_checkpoint(path).model_state)")
    dtype = np.dtype(kwargs.pop("dtype", "float32"))
    model = build_model(kwargs.pop("name"), dtype=dtype, rng=0, **kwargs)
    model.load_state_dict(ck.model_state)
    return model.eval(), ck
