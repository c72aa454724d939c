"""Downloading and unpacking a data file safely: streamed, checked, never left half-written.

:func:`fetch` streams a URL into a file with a progress bar and refuses a truncated
download; :func:`unpack` opens a ``.tar.gz``, checks *every* member name (absolute
names, ``..``, links and devices are refused: the archive as a whole, not partly) and
copies out the files a source needs; :func:`md5` hashes a file.  :mod:`.sources`
decides what to fetch and where it goes.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .errors import DownloadError

#: Seconds before a stalled connection gives up.
TIMEOUT_S = 60.0
_CHUNK = 1 << 16

def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def fetch(url: str, dest: Path, progress: bool) -> None:
    """Stream ``url`` into ``dest``; network failures raise ``OSError`` (URLError)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(dest, "wb") as out:
        length = resp.headers.get("Content-Length")
        total = int(length) if length is not None else None
        done = 0
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress or None,
        )
        with bar:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except http.client.IncompleteRead as e:
                    raise DownloadError(
                        f"download of {url} was truncated: the connection closed after "
                        f"{done + len(e.partial)} of {total} bytes; it was removed, try again"
                    ) from None
                if not block:
                    break
                out.write(block)
                done += len(block)
                bar.update(len(block))
    if total is not None and done != total:
        raise DownloadError(
            f"download of {url} was truncated: {done} of {total} bytes; it was removed, "
            "try again"
        )

def _safe_members(tar: tarfile.TarFile, folder: str, url: str) -> dict[str, tarfile.TarInfo]:
    """Regular-file members ``folder/<name>`` by name, after checking *every* member.

    Absolute names, ``..`` components, links and device files are refused: the
    archive is rejected as a whole rather than partially unpacked.
    """
    files = {}
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or m.name.startswith(("/", "\\")):
            raise DownloadError(f"{url}: unsafe archive member name {m.name!r}; refused")
        if not (m.isfile() or m.isdir()):
            raise DownloadError(f"{url}: archive member {m.name!r} is a link or device; refused")
        if m.isfile() and len(p.parts) == 2 and p.parts[0] == folder:
            files[p.parts[1]] = m
    return files

def unpack(archive: Path, src, staging: Path, url: str) -> list[Path]:
    """Unpack ``src.files`` from the ``src.folder`` of ``archive`` into ``staging/unpacked``."""
    try:
        tar = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DownloadError(f"{url}: not a readable .tar.gz ({e})") from e
    with tar:
        members = _safe_members(tar, src.folder, url)
        absent = [f for f in src.files if f not in members]
        if absent:
            raise DownloadError(f"{url}: archive lacks {src.folder}/{', '.join(absent)}")
        out = staging / "unpacked"
        out.mkdir()
        paths = []
        for fname, m in members.items():
            dest = out / fname
            with tar.extractfile(m) as fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            paths.append(dest)
    return paths
