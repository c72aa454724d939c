"""The notebooks follow the project's rules (docs/notebooks.md); executing them is nbmake's job.

Each notebook in ``notebooks/``:

- is named ``NN_snake_case.ipynb``, numbered 01, 02, ... without gaps, and is the one
  issue 6 asks for under that number;
- is nbformat v4 with a ``python3`` kernelspec;
- opens with a markdown cell saying what the reader will learn and how long a full
  run takes;
- is committed with the outputs of its quick-mode run (``docs/execute_notebooks.py``):
  every code cell executed, in order, none with an error, the file small enough to diff;
- defines no library code (no ``def`` / ``class`` in its cells) and imports only
  ``lccl_ref`` and a few general-purpose modules;
- reads quick mode from ``LCCL_QUICK`` and hard-codes no data path.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = {
    "01": "conv_cost",
    "02": "relu_sparsity",
    "03": "lccl_layer",
    "04": "speedup_formulas",
    "05": "training_lccl_resnets",
    "06": "real_vs_theoretical",
    "07": "sparse_training",
}
ALLOWED_IMPORTS = {"lccl_ref", "numpy", "matplotlib", "os", "time"}
QUICK_LINE = 'QUICK = os.environ.get("LCCL_QUICK") == "1"'
MAX_PNG_BASE64 = 150_000  # a figure at a modest dpi; the whole file stays diffable
DURATION = re.compile(r"\b\d+(\.\d+)?\s*(–\s*\d+\s*)?(s|seconds?|minutes?|min|hours?)\b")


def notebook_paths():
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def problems(nb) -> list[str]:
    """Every rule ``nb`` (an nbformat NotebookNode) breaks, as readable sentences."""
    out = []
    if nb.get("nbformat") != 4:
        out.append(f"nbformat is {nb.get('nbformat')}, not 4")
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        out.append("kernelspec is not python3")
    cells = nb.get("cells", [])
    if not cells or cells[0].cell_type != "markdown":
        out.append("the first cell is not markdown")
    else:
        first = cells[0].source
        if "learn" not in first.lower():
            out.append("the first cell does not say what the reader will learn")
        if "full" not in first.lower() or not DURATION.search(first):
            out.append("the first cell does not say how long a full run takes")
    code = [c for c in cells if c.cell_type == "code"]
    imports: set[str] = set()
    for i, c in enumerate(code):
        if c.get("execution_count") != i + 1:
            out.append(f"code cell {i} was not executed in order (docs/execute_notebooks.py)")
        for o in c.get("outputs", []):
            if o.get("output_type") == "error" or o.get("name") == "stderr" and (
                    "Traceback" in "".join(o.get("text", ""))):
                out.append(f"code cell {i} has an error output")
            png = o.get("data", {}).get("image/png", "")
            if len(png) > MAX_PNG_BASE64:
                out.append(f"code cell {i} has a PNG of {len(png) // 1024} KB (base64)")
        try:
            tree = ast.parse(c.source)
        except SyntaxError as e:
            out.append(f"code cell {i} is not valid Python: {e.msg}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.append(f"code cell {i} defines {type(node).__name__} {node.name!r}")
            elif isinstance(node, ast.Import):
                imports.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imports.add((node.module or "").split(".")[0])
    if "lccl_ref" not in imports:
        out.append("no cell imports lccl_ref")
    extra = imports - ALLOWED_IMPORTS
    if extra:
        out.append(f"imports outside {sorted(ALLOWED_IMPORTS)}: {sorted(extra)}")
    source = "\n".join(c.source for c in code)
    if QUICK_LINE not in source:
        out.append(f"quick mode is not read with `{QUICK_LINE}`")
    if "/work/" in source or "shared/data" in source:
        out.append("a data path is hard-coded (use load_dataset and LCCL_DATA)")
    return out


def test_the_notebooks_are_there_numbered_without_gaps():
    names = [p.name for p in notebook_paths()]
    assert names == [f"{k}_{v}.ipynb" for k, v in sorted(EXPECTED.items())], names


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_follows_the_rules(path):
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert problems(nb) == []


def test_the_checker_catches_each_broken_rule():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    good = new_notebook(
        cells=[
            new_markdown_cell("You will learn X. A full run takes about 2 minutes."),
            new_code_cell(f"import os\nimport lccl_ref\n{QUICK_LINE}", execution_count=1),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )
    assert problems(good) == []

    def broken(edit):
        nb = nbformat.reads(nbformat.writes(good), as_version=4)
        edit(nb)
        return problems(nb)

    assert any("first cell" in p for p in broken(lambda nb: nb.cells.reverse()))
    assert any("learn" in p for p in broken(
        lambda nb: setattr(nb.cells[0], "source", "A full run takes 2 minutes.")))
    assert any("how long" in p for p in broken(
        lambda nb: setattr(nb.cells[0], "source", "You will learn X.")))
    assert any("error output" in p for p in broken(
        lambda nb: nb.cells[1].outputs.append(new_output("error", ename="E", evalue="x",
                                                         traceback=[]))))
    assert any("not executed in order" in p for p in broken(
        lambda nb: setattr(nb.cells[1], "execution_count", None)))
    assert any("PNG" in p for p in broken(
        lambda nb: nb.cells[1].outputs.append(new_output(
            "display_data", data={"image/png": "A" * (MAX_PNG_BASE64 + 1)}))))
    assert any("FunctionDef" in p for p in broken(
        lambda nb: nb.cells.append(new_code_cell("def helper():\n    return 1"))))
    assert any("ClassDef" in p for p in broken(
        lambda nb: nb.cells.append(new_code_cell("class Layer:\n    pass"))))
    assert any("imports outside" in p for p in broken(
        lambda nb: nb.cells.append(new_code_cell("import torch"))))
    assert any("imports lccl_ref" in p for p in broken(
        lambda nb: setattr(nb.cells[1], "source", f"import os\n{QUICK_LINE}")))
    assert any("quick mode" in p for p in broken(
        lambda nb: setattr(nb.cells[1], "source", "import lccl_ref")))
    assert any("hard-coded" in p for p in broken(
        lambda nb: nb.cells.append(new_code_cell("p = '/work/shared/data/mnist'"))))
    assert any("kernelspec" in p for p in broken(
        lambda nb: nb.metadata.__setitem__("kernelspec", {"name": "julia"})))
