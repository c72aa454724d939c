"""Execute the notebooks in quick mode and write them back with their outputs.

Run from the repository root after changing a notebook or the code it calls::

    LCCL_DATA=/path/to/data python docs/execute_notebooks.py [notebooks/NN_name.ipynb ...]

Every notebook runs top to bottom in a fresh ``python3`` kernel with ``LCCL_QUICK=1`` and
one thread, as CI runs them (``pytest --nbmake``, which executes them again and fails
on an error); the outputs -- printed tables and PNG figures -- are stored in the file so
that GitHub shows them.  Volatile metadata (execution times) is dropped so that a
re-run changes only what the code printed.  ``tests/test_notebooks_meta.py`` checks
that every code cell was executed, in order, without an error, and that the files stay
small.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ.update(LCCL_QUICK="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                      OPENBLAS_NUM_THREADS="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} KB")


def main(argv):
    paths = [Path(p) for p in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for p in paths:
        execute(p)


if __name__ == "__main__":
    main(sys.argv[1:])
