"""Where the data files come from: a data root, and official downloads when files are missing.

The data root holds the official sub-folders (``mnist/``, ``fashion-mnist/``,
``cifar-10-batches-py/``, ``cifar-100-python/``). It is, in order of precedence:

1. the ``data_dir`` argument (the CLI's ``--data-dir``),
2. the environment variable ``LCCL_DATA``,
3. a per-user cache folder, ``$XDG_CACHE_HOME/lccl_ref`` (default ``~/.cache/lccl_ref``).

Files found there are trusted after a *structural* check by the readers, not an
md5, so any faithful copy loads. Files that are missing are downloaded, when
``download=True``, from the official locations (or from ``LCCL_DATA_URL`` if set,
which the tests point at a local server): each download is streamed into a
staging folder inside the root with a progress bar, its md5 compared with the
published sum, archives are unpacked member by member after checking every
member name, and only then is each file moved into place with ``os.replace``.
Any failure -- truncated or corrupt download, unsafe archive, Ctrl-C -- removes
the staging folder, so nothing partial is ever left behind.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .cifar import (
    CIFAR10_FOLDER,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    CIFAR100_FOLDER,
    CIFAR100_TEST,
    CIFAR100_TRAIN,
)
from .download import fetch, md5, unpack
from .errors import DownloadError, MissingDataError
from .idx import IDX_FILES

DATA_ENV = "LCCL_DATA"
URL_ENV = "LCCL_DATA_URL"

@dataclass(frozen=True)
class Source:
    """How one dataset is laid out in the data root and where it is published.

    ``files`` are the files ``folder`` must hold. With ``archive=None`` each file is
    downloaded on its own as ``mirror + file``; otherwise ``mirror + archive`` is a
    ``.tar.gz`` whose members ``folder/<file>`` are unpacked.
    """

    folder: str
    files: tuple[str, ...]
    mirrors: tuple[str, ...]
    archive: str | None = None


SOURCES = {
    "mnist": Source(
        "mnist",
        tuple(IDX_FILES.values()),
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    "fashion-mnist": Source(
        "fashion-mnist",
        tuple(IDX_FILES.values()),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
    "cifar10": Source(
        CIFAR10_FOLDER,
        (*CIFAR10_TRAIN, CIFAR10_TEST),
        ("https://www.cs.toronto.edu/~kriz/",),
        archive="cifar-10-python.tar.gz",
    ),
    "cifar100": Source(
        CIFAR100_FOLDER,
        (CIFAR100_TRAIN, CIFAR100_TEST),
        ("https://www.cs.toronto.edu/~kriz/",),
        archive="cifar-100-python.tar.gz",
    ),
}

#: Published md5 of every download, keyed by its path under ``LCCL_DATA_URL``.
MD5 = {
    "mnist/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "mnist/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "mnist/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "mnist/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "fashion-mnist/train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
}


def default_cache_dir() -> Path:
    """Per-user cache folder: ``$XDG_CACHE_HOME/lccl_ref``, else ``~/.cache/lccl_ref``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lccl_ref"


def resolve_data_root(data_dir=None) -> Path:
    """The data root: ``data_dir`` if given, else ``$LCCL_DATA``, else :func:`default_cache_dir`.

    The folder need not exist yet (it is created when something is downloaded).
    """
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path or None, got {type(data_dir).__name__}")
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def missing_files(name: str, root) -> list[str]:
    """Required files of dataset ``name`` absent from ``root``, as ``folder/file`` strings."""
    src = SOURCES[name]
    folder = Path(root) / src.folder
    return [f"{src.folder}/{f}" for f in src.files if not (folder / f).is_file()]


def _download_keys(src: Source, missing: list[str]) -> list[str]:
    """Download paths (keys of :data:`MD5`) that provide the ``missing`` files."""
    if src.archive is not None:
        return [src.archive]
    return missing  # "mnist/train-images-idx3-ubyte.gz" etc.


def _urls(src: Source, key: str) -> list[str]:
    override = os.environ.get(URL_ENV)
    if override:
        return [override.rstrip("/") + "/" + key]
    filename = key.rsplit("/", 1)[-1]
    return [m + filename for m in src.mirrors]


def _verify_md5(path: Path, key: str, url: str) -> None:
    got, want = md5(path), MD5[key]
    if got != want:
        raise DownloadError(
            f"download of {url} is corrupt: md5 {got}, expected {want}; it was removed, "
            "try again"
        )


def _offline_message(name: str, root: Path, missing: list[str], reason: str) -> str:
    src = SOURCES[name]
    folder = root / src.folder
    if src.archive is not None:
        origin = f"they are in the official archive {src.mirrors[0]}{src.archive}"
    else:
        origin = f"they are published at {src.mirrors[0]}"
    lacking = ", ".join(m.rsplit("/", 1)[-1] for m in missing)
    return (
        f"{name}: {folder} lacks {lacking}. {reason}\n"
        f"Put the files {', '.join(src.files)} into {folder} ({origin}), "
        f"or point --data-dir / {DATA_ENV} at a data folder that holds {src.folder}/."
    )


def ensure_files(name: str, root, download: bool = True, progress: bool = True) -> Path:
    """Make sure dataset ``name`` is complete under ``root``; download what is missing.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "cifar10", "cifar100"}
    root : path-like
        Data root (see :func:`resolve_data_root`).
    download : bool
        Fetch missing files from the official mirrors (or ``$LCCL_DATA_URL``).
    progress : bool
        Show a tqdm progress bar (only on a terminal).

    Returns
    -------
    Path
        ``root``, now holding every required file of ``name``.

    Raises
    ------
    MissingDataError
        Files are missing and ``download`` is False or no mirror could be reached;
        the message lists the files and the folder to put them in.
    DownloadError
        A download was truncated, failed its md5 check, or was an unsafe archive;
        nothing of it is left behind.
    """
    if name not in SOURCES:
        raise ValueError(f"name must be one of {sorted(SOURCES)}, got {name!r}")
    root = Path(root)
    missing = missing_files(name, root)
    if not missing:
        return root
    if not download:
        raise MissingDataError(_offline_message(name, root, missing, "Downloading is off."))
    src = SOURCES[name]
    created = [d for d in (root, *root.parents) if not d.exists()]  # deepest first
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".lccl-download-", dir=root))
    except OSError as e:
        reason = f"Cannot download into it ({e})."
        raise MissingDataError(_offline_message(name, root, missing, reason)) from e
    try:
        fetched = []
        for key in _download_keys(src, missing):
            dest = staging / key.rsplit("/", 1)[-1]
            errors = []
            for url in _urls(src, key):
                try:
                    fetch(url, dest, progress)
                except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                    errors.append(f"{url}: {getattr(e, 'reason', e)}")
                    continue
                _verify_md5(dest, key, url)
                break
            else:
                raise MissingDataError(
                    _offline_message(
                        name, root, missing, "Could not download: " + "; ".join(errors) + "."
                    )
                )
            fetched.append((key, url, dest))
        if src.archive is not None:
            (_, url, archive), = fetched
            files = unpack(archive, src, staging, url)
        else:
            files = [dest for _, _, dest in fetched]
        folder = root / src.folder
        folder.mkdir(exist_ok=True)
        for f in files:
            if not (folder / f.name).exists():  # never overwrite a user's own file
                os.replace(f, folder / f.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for d in created:  # the folders made for this download, if still empty
            try:
                d.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return root
