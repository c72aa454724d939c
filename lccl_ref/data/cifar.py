"""Readers for the CIFAR-10 / CIFAR-100 python format, through a restricted unpickler.

Each CIFAR file is a pickle (protocol 2) of a dict with byte-string keys::

    data          uint8 ndarray (N, 3072): R, G, B planes of a 32x32 image, row-major
    labels        list of N ints in [0, 10)            (CIFAR-10)
    fine_labels   list of N ints in [0, 100)           (CIFAR-100)
    coarse_labels list of N ints in [0, 20)            (CIFAR-100)
    filenames, batch_label

A pickle is a program: ``pickle.load`` calls whatever global the file names.
:class:`RestrictedUnpickler` resolves only the few globals this format needs and
refuses every other one in ``find_class``, i.e. before the global is fetched, so
a hostile file cannot run anything.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .errors import DataFormatError, UnsafePickleError
from .idx import RawSplits

try:  # numpy >= 2 keeps the reconstruction function in numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

#: The only globals a CIFAR pickle may reference, and what they resolve to.
#: ``_reconstruct``/``ndarray``/``dtype`` rebuild the ``data`` array (the official
#: files were written by numpy 1.x under the ``numpy.core`` name); ``_codecs.encode``
#: is how Python 3 writes a ``bytes`` object at protocol 2, for copies re-saved by it.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
}

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_TRAIN = "train"
CIFAR100_TEST = "test"


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that admits only :data:`ALLOWED_GLOBALS`.

    Raises
    ------
    UnsafePickleError
        (a ``pickle.UnpicklingError`` and a ``ValueError``) naming the refused
        global; it is raised while the global is looked up, so it never runs.
    """

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"refused global {module}.{name}: a CIFAR file may reference only "
                f"{allowed}"
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refused persistent id {pid!r}: CIFAR files use none")


def load_pickle(path) -> dict:
    """Unpickle a CIFAR file with :class:`RestrictedUnpickler`; keys come back as ``str``.

    Raises
    ------
    UnsafePickleError
        The file references a global outside :data:`ALLOWED_GLOBALS`.
    DataFormatError
        The file is not a (complete) pickle of a dict.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            obj = RestrictedUnpickler(f, encoding="bytes").load()
        except UnsafePickleError as e:
            raise UnsafePickleError(f"{path}: {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
            raise DataFormatError(f"{path}: not a readable CIFAR pickle ({e})") from e
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: a CIFAR file holds a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _labels(d: dict, key: str, n: int, num_classes: int, path: Path) -> np.ndarray:
    if key not in d:
        raise DataFormatError(f"{path}: missing key {key!r} (keys: {sorted(d)})")
    raw = d[key]
    if isinstance(raw, np.ndarray):
        ok = raw.ndim == 1 and np.issubdtype(raw.dtype, np.integer)
    else:
        ok = isinstance(raw, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw
        )
    if not ok:
        raise DataFormatError(f"{path}: {key!r} must be a list of ints")
    y = np.asarray(raw, dtype=np.int64).reshape(-1)
    if y.shape[0] != n:
        raise DataFormatError(f"{path}: {n} images but {y.shape[0]} entries in {key!r}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise DataFormatError(
            f"{path}: {key!r} must lie in [0, {num_classes}), got range [{y.min()}, {y.max()}]"
        )
    return y


def load_cifar_batch(
    path, label_key: str = "labels", num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file.

    Parameters
    ----------
    path : path-like
    label_key : str
        ``"labels"`` for CIFAR-10, ``"fine_labels"`` for CIFAR-100.
    num_classes : int
        Labels must lie in ``[0, num_classes)``.

    Returns
    -------
    x : ndarray, uint8, shape (N, 3, 32, 32)
    y : ndarray, int64, shape (N,)
    """
    path = Path(path)
    d = load_pickle(path)
    if "data" not in d:
        raise DataFormatError(f"{path}: missing key 'data' (keys: {sorted(d)})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(f"{path}: 'data' must be a uint8 ndarray, got {got}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataFormatError(f"{path}: 'data' must have shape (N, 3072), got {data.shape}")
    n = data.shape[0]
    y = _labels(d, label_key, n, num_classes, path)
    if label_key == "fine_labels" and "coarse_labels" in d:
        _labels(d, "coarse_labels", n, 20, path)
    return data.reshape(n, 3, 32, 32), y


def _require(folder: Path, names) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}")


def load_cifar10(root) -> RawSplits:
    """Load CIFAR-10 from ``root/cifar-10-batches-py/``.

    Any consistent number of images per batch is accepted (the copy in
    ``../shared/data`` has 5 x 2,000 training images, not 5 x 10,000).

    Returns
    -------
    RawSplits
        Images uint8 ``(N, 3, 32, 32)``, labels int64 ``(N,)`` in ``[0, 10)``.
    """
    folder = Path(root) / CIFAR10_FOLDER
    _require(folder, (*CIFAR10_TRAIN, CIFAR10_TEST))
    parts = [load_cifar_batch(folder / f) for f in CIFAR10_TRAIN]
    x_test, y_test = load_cifar_batch(folder / CIFAR10_TEST)
    return RawSplits(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
    )


def load_cifar100(root) -> RawSplits:
    """Load CIFAR-100 (fine labels) from ``root/cifar-100-python/``.

    Returns
    -------
    RawSplits
        Images uint8 ``(N, 3, 32, 32)``, labels int64 ``(N,)`` in ``[0, 100)``.
    """
    folder = Path(root) / CIFAR100_FOLDER
    _require(folder, (CIFAR100_TRAIN, CIFAR100_TEST))
    x_train, y_train = load_cifar_batch(folder / CIFAR100_TRAIN, "fine_labels", 100)
    x_test, y_test = load_cifar_batch(folder / CIFAR100_TEST, "fine_labels", 100)
    return RawSplits(x_train, y_train, x_test, y_test)
