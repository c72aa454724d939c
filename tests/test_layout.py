"""The package's layout, held by tests: two houses and one direction of dependency.

* The teaching path (functional/, kernels/, nn/, models/, train/, data/, flops/) never
  imports ``lccl_ref.fast``, llvmlite or an autotune (static: every import statement,
  inside functions too).
* With ``lccl_ref.fast`` unimportable (``sys.modules["lccl_ref.fast"] = None`` before
  ``lccl_ref`` is imported, in a fresh process), every model kind trains a step and
  evaluates, and its sparse eval equals its dense eval.
* No private name, and no private module, is imported from another package.
* Every module has at most 300 lines, and its header (the module docstring) at most 25.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lccl_ref"
TEACHING = ("functional", "kernels", "nn", "models", "train", "data", "flops")
FORBIDDEN = ("lccl_ref.fast", "llvmlite", "lccl_ref.fast.tune")


def modules():
    """``(dotted name, path)`` of every module of the package."""
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def imports(name, path):
    """The absolute module names a module imports (``from X import y`` gives ``X`` and
    ``X.y``), with the names it takes from each."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            names = tuple(a.name for a in node.names)
            yield base, names
            for n in names:
                yield f"{base}.{n}", ()


def top_package(name):
    """``lccl_ref.nn`` for ``lccl_ref.nn.lccl``; the module itself at the package root."""
    parts = name.split(".")
    return ".".join(parts[:2])


@pytest.mark.parametrize("name, path", [(n, p) for n, p in modules()
                                        if n.split(".")[1:2] and n.split(".")[1] in TEACHING])
def test_the_teaching_path_never_imports_the_fast_path(name, path):
    for module, names in imports(name, path):
        assert not any(module == f or module.startswith(f + ".") for f in FORBIDDEN), \
            f"{name} imports {module}"
        assert "fastest" not in names and not module.endswith(".tune"), \
            f"{name} imports an autotune ({module})"


@pytest.mark.parametrize("name, path", list(modules()))
def test_no_private_name_is_imported_from_another_package(name, path):
    for module, names in imports(name, path):
        if not module.startswith("lccl_ref.") or top_package(module) == top_package(name):
            continue
        private = [p for p in module.split(".") + list(names)
                   if p.startswith("_") and not p.endswith("__")]  # dunders are public
        assert not private, f"{name} imports {private} from {module}"


@pytest.mark.parametrize("name, path", list(modules()))
def test_modules_are_short_and_say_what_they_are_for(name, path):
    text = path.read_text()
    assert len(text.splitlines()) <= 300, f"{name}: {len(text.splitlines())} lines"
    doc = ast.get_docstring(ast.parse(text), clean=False)
    assert doc, f"{name} has no header"
    assert len(doc.splitlines()) <= 25, f"{name}: a header of {len(doc.splitlines())} lines"


SCRIPT = r"""
import sys
sys.modules["lccl_ref.fast"] = None  # before anything imports lccl_ref
import numpy as np
from lccl_ref import functional as F
from lccl_ref.models import build_model, lccl_layers
from lccl_ref.nn import set_sparse
from lccl_ref.train import SGD

rng = np.random.default_rng(0)
x = rng.standard_normal((4, 1, 12, 12)).astype(np.float64)
y = rng.integers(0, 10, 4)
for kind in ("none", "1x1xCxT", "kxkxCx1", "1x1xCx1"):
    for gate in ("relu", "clip"):
        model = build_model("mnist-resnet", lccl=kind, gate=gate, rng=1, dtype=np.float64)
        opt = SGD(model, lr=0.05)
        model.train()
        loss, dlogits = F.softmax_cross_entropy(model.forward(x), y)
        model.zero_grad()
        model.backward(dlogits)
        opt.step(0.05)
        model.eval()
        sparse = set_sparse(model, True).forward(x)
        dense = set_sparse(model, False).forward(x)
        assert np.isfinite(loss) and np.isfinite(sparse).all(), (kind, gate)
        err = float(np.abs(sparse - dense).max() / max(np.abs(dense).max(), 1e-30))
        assert err < 1e-10, (kind, gate, err)
        if kind != "none":
            d = [m.last_stats["density"] for _, m in lccl_layers(model)]
            assert 0 < min(d) and max(d) < 1, (kind, gate, d)
        print(kind, gate, "ok")
assert sys.modules["lccl_ref.fast"] is None
"""


def test_every_model_trains_and_evaluates_without_the_fast_path():
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, cwd=ROOT.parent, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(" ok") == 8
