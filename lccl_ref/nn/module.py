"""Module, Parameter and Sequential: the bookkeeping under every layer.

A :class:`Module` owns :class:`Parameter` objects (value + gradient), buffers
(arrays that are state but not learned, such as BatchNorm running statistics)
and child modules, all registered by plain attribute assignment::

    self.weight = Parameter(w)        # a learned array and its gradient
    self.register_buffer("running_mean", np.zeros(c))
    self.conv = Conv2d(...)           # a child module

``forward(x)`` keeps what ``backward`` needs on the module; ``backward(dy)``
adds parameter gradients into ``Parameter.grad`` and returns ``dx``.
``state_dict()`` flattens parameters and buffers into ``{"a.b.weight": array}``
which :func:`save_npz` / :func:`load_npz` store without pickles.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from ..checks import FLOAT_DTYPES


def _rng(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _positive_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)

class Parameter:
    """A learned array ``data`` with its gradient ``grad`` (same shape and dtype).

    ``decay`` says whether weight decay applies (False for BatchNorm's gamma/beta).
    """

    def __init__(self, data: np.ndarray, decay: bool = True):
        self.data = data
        self.grad = np.zeros_like(data)
        self.decay = decay

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: registration, train/eval, parameters, state dicts, dtype."""

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        """Register Parameters and Modules; an array assigned to a buffer's name stays a
        buffer (``bn.running_mean = new_array`` keeps it in the state dict)."""
        d = self.__dict__
        if "_params" not in d:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__()")
        params, modules, buffers = d["_params"], d["_modules"], d["_buffers"]
        if isinstance(value, Parameter):
            modules.pop(name, None)
            buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params or name in modules or name in buffers:  # plain attributes
            params.pop(name, None)  # (the per-forward ones: caches, last_stats) skip this
            modules.pop(name, None)
            if not isinstance(value, np.ndarray):
                buffers.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Register a non-learned array that belongs in the state dict."""
        self._buffers[name] = True
        object.__setattr__(self, name, value)

    # ---- forward / backward -------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # ---- traversal ----------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """Yield ``(qualified_name, module)`` for this module and all below it."""
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_children(self):
        """Yield ``(name, module)`` for the modules registered directly on this one."""
        yield from self._modules.items()

    def copy_with(self, **children):
        """A shallow copy of this module -- the same parameters, buffers and attributes --
        with the named child modules replaced; this module is not changed."""
        twin = copy.copy(self)
        for name in ("_params", "_buffers", "_modules"):
            object.__setattr__(twin, name, OrderedDict(self.__dict__[name]))
        for name, child in children.items():
            setattr(twin, name, child)
        return twin

    def named_parameters(self):
        for mname, m in self.named_modules():
            for pname, p in m._params.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad[...] = 0

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    @property
    def dtype(self) -> np.dtype:
        ps = self.parameters()
        return ps[0].data.dtype if ps else np.dtype(np.float32)

    def astype(self, dtype):
        """Cast every parameter, gradient and float buffer to ``dtype`` in place."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        for m in self.modules():
            for p in m._params.values():
                p.data = p.data.astype(dtype)
                p.grad = p.grad.astype(dtype)
            for b in m._buffers:
                v = getattr(m, b)
                if v.dtype.kind == "f":
                    object.__setattr__(m, b, v.astype(dtype))
        return self

    # ---- state --------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat ``{qualified_name: array copy}`` of all parameters and buffers."""
        out = {}
        for mname, m in self.named_modules():
            pre = f"{mname}." if mname else ""
            for pname, p in m._params.items():
                out[pre + pname] = p.data.copy()
            for bname in m._buffers:
                out[pre + bname] = np.array(getattr(m, bname), copy=True)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays from ``state`` into this module; names and shapes must match."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"state dict does not match the module: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        for mname, m in self.named_modules():
            pre = f"{mname}." if mname else ""
            for pname, p in m._params.items():
                p.data = _checked_copy(pre + pname, state[pre + pname], p.data)
            for bname in m._buffers:
                key = pre + bname
                object.__setattr__(m, bname, _checked_copy(key, state[key], getattr(m, bname)))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


def _checked_copy(name: str, value, like: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != like.shape:
        raise ValueError(f"state entry {name!r} has shape {value.shape}, expected {like.shape}")
    return value.astype(like.dtype, copy=True)


class Sequential(Module):
    """Apply child modules in order; backward runs them in reverse."""

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} must be a Module, got {type(layer).__name__}")
            setattr(self, str(i), layer)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def forward(self, x):
        for layer in self._modules.values():
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self._modules.values()):
            dy = layer.backward(dy)
        return dy


@contextmanager
def teaching_path(model: Module):
    """Within the block every module of ``model`` computes its eval forward on the teaching
    path: each ``accelerator`` hook that is set is cleared, and put back afterwards."""
    saved = [(m, m.__dict__["accelerator"]) for m in model.modules()
             if m.__dict__.get("accelerator") is not None]
    for m, _ in saved:
        m.accelerator = None
    try:
        yield model
    finally:
        for m, hook in saved:
            m.accelerator = hook


def save_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Write a flat dict of arrays to ``.npz`` (no pickled objects)."""
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"entry {k!r} is an object array; only plain arrays can be saved")
    np.savez(path, **arrays)


def load_npz(path) -> dict[str, np.ndarray]:
    """Read a ``.npz`` written by :func:`save_npz`, refusing pickled content."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
