"""Readers for the IDX format of MNIST and Fashion-MNIST (gzip-compressed).

An IDX file is a big-endian header followed by a uint8 payload::

    bytes 0-1  zero
    byte  2    type code, 0x08 = unsigned byte
    byte  3    number of dimensions d
    then d big-endian uint32 sizes, then the payload (prod(sizes) bytes)

so the first four bytes read as one big-endian integer give the magic number
2051 (``0x00000803``: uint8, 3-D) for images and 2049 (``0x00000801``: uint8,
1-D) for labels. Every check here is structural (magic, sizes, payload length,
counts, label range), not an md5, so any faithful copy loads.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import DataFormatError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

#: File names inside ``mnist/`` and ``fashion-mnist/`` (the official ones).
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
#: Sub-folder of the data root for each IDX dataset.
IDX_FOLDERS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist"}


class RawSplits(NamedTuple):
    """Undecoded train/test arrays: images uint8 ``(N, C, H, W)``, labels int64 ``(N,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _read_bytes(path: Path) -> bytes:
    """Whole decompressed content of ``path`` (gzip if it ends in ``.gz``)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        if isinstance(e, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: not a readable gzip file ({e})") from e


def _read_idx(path, magic: int, ndim: int) -> np.ndarray:
    path = Path(path)
    raw = _read_bytes(path)
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes is shorter than the {header_len}-byte IDX header"
        )
    (got_magic,) = struct.unpack(">I", raw[:4])
    if got_magic != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataFormatError(
            f"{path}: IDX magic number is {got_magic}, but {kind} need {magic}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header_len
    if payload != expected:
        raise DataFormatError(
            f"{path}: header announces sizes {dims} = {expected} bytes of data, "
            f"but the file holds {payload}"
        )
    if ndim == 3 and (dims[1] == 0 or dims[2] == 0):
        raise DataFormatError(f"{path}: image size {dims[1]}x{dims[2]} is empty")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def read_idx_images(path) -> np.ndarray:
    """Read an IDX image file (magic 2051).

    Returns
    -------
    ndarray, uint8, shape (N, rows, cols)
        Read-only view of the decompressed payload.

    Raises
    ------
    DataFormatError
        Not gzip, wrong magic number, or payload length not ``N * rows * cols``.
    """
    return _read_idx(path, IMAGES_MAGIC, 3)


def read_idx_labels(path) -> np.ndarray:
    """Read an IDX label file (magic 2049).

    Returns
    -------
    ndarray, int64, shape (N,)
    """
    return _read_idx(path, LABELS_MAGIC, 1).astype(np.int64)


def _check_pair(x: np.ndarray, y: np.ndarray, xp: Path, yp: Path, num_classes: int) -> None:
    if x.shape[0] != y.shape[0]:
        raise DataFormatError(
            f"{xp} holds {x.shape[0]} images but {yp} holds {y.shape[0]} labels; "
            "the counts must agree"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataFormatError(
            f"{yp}: labels must lie in [0, {num_classes}), got range "
            f"[{y.min()}, {y.max()}]"
        )


def load_mnist_like(root, name: str, num_classes: int = 10) -> RawSplits:
    """Load MNIST or Fashion-MNIST from ``root/<name>/`` (the four official IDX gz files).

    Parameters
    ----------
    root : path-like
        Data root holding the ``mnist/`` or ``fashion-mnist/`` sub-folder.
    name : {"mnist", "fashion-mnist"}

    Returns
    -------
    RawSplits
        Images uint8 ``(N, 1, H, W)``, labels int64 ``(N,)``.
    """
    if name not in IDX_FOLDERS:
        raise ValueError(f"name must be one of {sorted(IDX_FOLDERS)}, got {name!r}")
    folder = Path(root) / IDX_FOLDERS[name]
    paths = {k: folder / v for k, v in IDX_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}")
    out = {}
    for split in ("train", "test"):
        xp, yp = paths[f"x_{split}"], paths[f"y_{split}"]
        x, y = read_idx_images(xp), read_idx_labels(yp)
        _check_pair(x, y, xp, yp, num_classes)
        out[f"x_{split}"] = x[:, None]  # (N, 1, H, W)
        out[f"y_{split}"] = y
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        raise DataFormatError(
            f"{folder}: train images are {out['x_train'].shape[2:]} but test images are "
            f"{out['x_test'].shape[2:]}"
        )
    return RawSplits(**out)
