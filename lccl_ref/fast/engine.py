"""Whole-network inference in one compiled call: ``Engine(model)(x)``.

The module-by-module eval forward pays two costs per layer that do not shrink with
the mask, for the plain network and the LCCL network alike, and they cap the real
speed-up: Python and Numba dispatch (about 110 us per layer at batch 1, against
60-150 us of work in a ResNet-20 layer) and, at large batches, every activation
through DRAM (8 MB at 16@32x32, batch 128).  :class:`Engine` removes both: it
compiles the network once per input size into a program (:mod:`.program`: op rows
over packed weights and scratch) and runs the batch with one Numba call
(:func:`.run.run_program`), image by image.  Its kernels are the fast path's per-image
kernels, so it computes what the accelerated modules compute, up to float rounding,
and counts the same MACs.  A pre-activation block (``aft`` placements) becomes::

    h = CONV|LCCL(x, pre=BN1);  o = CONV|LCCL(h, pre=BN2, res=x)     (identity), or
    p = CONV_1x1(x, pre=BN1);   o = CONV|LCCL(h, pre=BN2, res=p)     (projection), or
    o = CONV|LCCL(h, pre=BN2);  ADD_SUB(o, x)                        (parameter-free)

It refuses (``ValueError``) other models, per-channel masks (``1x1xCxT``) and "bef"
placements; LCCL layers always take the sparse path with the cheap BN folded.
``Engine(model, sparse=False)`` runs each LCCL layer's expensive conv alone, densely
(the plain network).  The weights are read when a program is compiled: call
:meth:`Engine.refresh` after changing them.  Start at :meth:`Engine.__call__`.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_float_array
from ..functional.batchnorm import bn_affine
from ..models.blocks import PreActBlock, SubsamplePad
from ..models.resnet import PreActResNet
from ..nn import LCCLConv2d
from .program import (
    F_C,
    F_CODE,
    F_HO,
    F_KH,
    F_KW,
    F_MASK,
    F_T,
    F_WO,
    OP_LCCL,
    OP_NAMES,
    Builder,
    Program,
)
from .run import run_program


class Engine:
    """A :class:`~lccl_ref.models.PreActResNet`'s eval forward as one compiled call.

    Parameters
    ----------
    model : PreActResNet
        Plain, or with shared-mask LCCL layers (``kxkxCx1``, ``1x1xCx1``) in the
        ``aft-aft`` placement.  Its training/eval mode does not matter: the
        engine always computes the eval forward (BN running statistics).
    sparse : bool
        True: LCCL layers compute ``O = V * V'`` with the gated conv where the
        mask is on.  False: each LCCL layer's expensive conv alone, densely (the
        plain network of ``bench.plain_network``).

    ``engine(x)`` maps (N, C, H, W) of the model's dtype to logits (N, classes),
    the model's eval-mode ``forward(x)`` up to float rounding.  After a call:

    ``last_stats``
        One dict per conv layer in network order: ``name``, ``kind`` ("conv"
        or "lccl"), ``macs`` (executed by the kernels, cheap branch included
        for LCCL), ``macs_dense`` (the dense conv's), ``cycles`` (its op's CPU
        cycles, summed over the batch; see ``last_ops``), and for LCCL layers
        ``macs_cheap``, ``macs_expensive``, ``active`` (mask cells on, over
        the batch) and ``density``.
    ``last_masks``
        ``{name: (N, Ho, Wo) bool}`` of the LCCL layers.
    ``last_macs``
        ``{"executed": ..., "dense": ...}``: every conv and the classifier.
    ``last_ops``
        ``[(op name, cycles)]`` for every op of the program (``OP_NAMES``).
    """

    def __init__(self, model, sparse: bool = True):
        if not isinstance(model, PreActResNet):
            raise TypeError(f"model must be a PreActResNet (lccl_ref.models), got "
                            f"{type(model).__name__}")
        self.model, self.sparse = model, bool(sparse)
        self.dtype = model.fc.weight.data.dtype
        self._programs = {}
        self._last = None  # (program, N, masks, stats) of the last call
        for name, block in self._blocks():
            for i, conv in enumerate((block.conv1, block.conv2)):
                if isinstance(conv, LCCLConv2d):
                    if not conv.shared_mask:
                        raise ValueError(
                            f"{name}.conv{i + 1}: the engine runs shared-mask LCCL layers "
                            f"(kxkxCx1, 1x1xCx1), not {conv.cheap!r}; use the module forward")
                    if block.cheap_before[i]:
                        raise ValueError(
                            f"{name}.conv{i + 1}: a 'bef' placement (the cheap branch reads "
                            "another input than the conv) is not supported by the engine; "
                            "use the module forward")

    def _blocks(self):
        for stage in self.model.stage_names:
            for j, block in enumerate(getattr(self.model, stage)):
                if not isinstance(block, PreActBlock):
                    raise TypeError(f"{stage}.{j} is a {type(block).__name__}, not a "
                                    "PreActBlock")
                yield f"{stage}.{j}", block

    def refresh(self):
        """Forget the compiled programs: the next call reads the model's weights again."""
        self._programs.clear()

    def _compile(self, shape):
        m = self.model
        b = Builder(self.dtype)
        b.values[0] = shape
        v = b.conv(m.stem, 0)
        b.layers.append((len(b.rows) - 1, "stem", m.stem))
        for name, blk in self._blocks():
            x = v
            pre1, pre2 = _affine(blk.bn1), _affine(blk.bn2)
            if isinstance(blk.conv1, LCCLConv2d) and self.sparse:
                hv = b.lccl(blk.conv1, x, pre1)
            else:
                hv = b.conv(_expensive(blk.conv1), x, pre1)
            b.layers.append((len(b.rows) - 1, f"{name}.conv1", blk.conv1))
            res = None  # the shortcut, added by conv2 as it writes its output
            if blk.shortcut_kind == "projection":
                res = b.conv(blk.shortcut, x, pre1)
                b.layers.append((len(b.rows) - 1, f"{name}.shortcut", blk.shortcut))
            elif blk.shortcut_kind == "none":
                res = x
            if isinstance(blk.conv2, LCCLConv2d) and self.sparse:
                o = b.lccl(blk.conv2, hv, pre2, res)
            else:
                o = b.conv(_expensive(blk.conv2), hv, pre2, res)
            b.layers.append((len(b.rows) - 1, f"{name}.conv2", blk.conv2))
            if blk.shortcut_kind == "identity":  # subsampled, zero channels appended
                sc = blk.shortcut
                if not isinstance(sc, SubsamplePad):
                    raise TypeError(f"{name}.shortcut must be a SubsamplePad")
                b.add_subsampled(o, x, sc.stride)
            v = o
        b.head(v, _affine(m.bn), m.fc)
        b.assign_buffers()
        b.plan_prefetches()
        return Program(b)

    def __call__(self, x):
        """(N, C, H, W) -> logits (N, classes); then ``last_stats``, ``last_masks``,
        ``last_macs`` and ``last_ops`` describe this call."""
        check_float_array("x", x, ndim=4)
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model is {self.dtype}")
        c_in = self.model.stem.in_channels
        if x.shape[1] != c_in:
            raise ValueError(f"x must have {c_in} channels (N, C, H, W), got shape {x.shape}")
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"x must have a positive height and width, got shape {x.shape}")
        key = x.shape[1:]
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._compile(key)
        n = x.shape[0]
        out = np.empty((n, prog.n_out), dtype=self.dtype)
        masks = np.empty((n, max(prog.mask_cells, 1)), dtype=np.bool_)
        stats = np.zeros((prog.ops.shape[0], 3), dtype=np.int64)
        run_program(np.ascontiguousarray(x), out, prog.ops, *prog.arenas, masks, stats)
        self._last = (prog, n, masks, stats)  # the properties below read it when asked
        return out

    forward = __call__

    @property
    def last_ops(self):
        """``[(op name, CPU cycles)]`` of the last call, in program order (the cycle counter
        of ``llvm.readcyclecounter``: on x86 the TSC, which ticks at a constant rate)."""
        if self._last is None:
            return None
        prog, _, _, stats = self._last
        return [(OP_NAMES[int(op[F_CODE])], int(st[2])) for op, st in zip(prog.ops, stats)]

    @property
    def last_cycles(self):
        """``(cycles of every op, op index of each row of last_stats)`` of the last call, as
        int64 arrays: ``last_ops`` and ``last_stats`` without building their lists and
        dicts (what a timing loop reads between calls)."""
        if self._last is None:
            return None
        prog, _, _, stats = self._last
        return stats[:, 2].copy(), prog.layer_ops.copy()

    @property
    def last_masks(self):
        if self._last is None:
            return None
        prog, n, masks, _ = self._last
        out = {}
        for k, name, _ in prog.layers:
            op = prog.ops[k]
            if op[F_CODE] == OP_LCCL:
                col, ho, wo = int(op[F_MASK]), int(op[F_HO]), int(op[F_WO])
                out[name] = masks[:, col: col + ho * wo].reshape(n, ho, wo)
        return out

    @property
    def last_stats(self):
        if self._last is None:
            return None
        prog, n, _, stats = self._last
        rows = []
        for k, name, layer in prog.layers:
            op = prog.ops[k]
            ho, wo = int(op[F_HO]), int(op[F_WO])
            dense = n * ho * wo * int(op[F_T] * op[F_C] * op[F_KH] * op[F_KW])
            row = dict(name=name, kind="conv", macs=int(stats[k, 1]), macs_dense=dense,
                       cycles=int(stats[k, 2]))
            if op[F_CODE] == OP_LCCL:
                khc, kwc = layer.cheap_conv.kernel_size
                cheap = n * ho * wo * int(op[F_C]) * khc * kwc
                active = int(stats[k, 0])
                row.update(kind="lccl", macs_cheap=cheap, macs_expensive=int(stats[k, 1]),
                           macs=cheap + int(stats[k, 1]), active=active,
                           density=active / (n * ho * wo) if n else 0.0)
            rows.append(row)
        return rows

    @property
    def last_macs(self):
        rows = self.last_stats
        if rows is None:
            return None
        head = int(self._last[3][-1, 1])  # the classifier's
        return dict(executed=sum(r["macs"] for r in rows) + head,
                    dense=sum(r["macs_dense"] for r in rows) + head)


def _affine(bn):
    return bn_affine(bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var, bn.eps)


def _expensive(conv):
    """The dense conv of a layer: an LCCL layer's expensive conv alone, or ``conv``."""
    return conv.conv if isinstance(conv, LCCLConv2d) else conv


__all__ = ["Engine", "OP_NAMES"]
