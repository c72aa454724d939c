"""Exceptions raised by :mod:`lccl_ref.data`.

Four kinds of failure, so a caller (and the CLI) can tell them apart:

* :class:`DataFormatError` -- a file exists but is not what its format promises
  (wrong magic number, wrong shape, label out of range, counts that disagree).
* :class:`UnsafePickleError` -- a CIFAR pickle asks for a global the format does not
  need; it is refused before anything from it runs.
* :class:`MissingDataError` -- files are absent and could not be downloaded; the
  message says which files to put in which folder.
* :class:`DownloadError` -- a download arrived but is truncated, corrupt (md5
  mismatch) or an unsafe archive; nothing of it is left on disk.
"""

from __future__ import annotations

import pickle


class DataFormatError(ValueError):
    """A data file exists but its structure is wrong."""


class UnsafePickleError(DataFormatError, pickle.UnpicklingError):
    """A pickle referenced a global outside the allowed set; nothing was executed."""


class MissingDataError(FileNotFoundError):
    """Required files are missing and could not be downloaded."""


class DownloadError(RuntimeError):
    """A download was truncated, corrupt or unsafe; it was removed."""
