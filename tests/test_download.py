"""The download path of lccl_ref.data.sources, against a local HTTP server on 127.0.0.1.

No test here touches a real internet host: every download URL comes from
``LCCL_DATA_URL``, which points at the server this file starts (port 0), or at a
closed local port for the offline case.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest

from lccl_ref.data import (
    DownloadError,
    MissingDataError,
    ensure_files,
    load_cifar_batch,
    load_dataset,
    sources,
)

pytestmark = pytest.mark.network


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # path -> (body, mode); set per server
    hits: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, mode = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # announce the full length, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A local server; returns its (routes, hits) and sets LCCL_DATA_URL to it."""
    handler = type("H", (_Handler,), {"routes": {}, "hits": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv(sources.URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.setattr(sources, "MD5", dict(sources.MD5))  # tests register their own sums
    yield handler.routes, handler.hits
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def serve(routes, key: str, body: bytes, mode: str = "good", md5_of: bytes | None = None):
    """Serve ``body`` at ``/key`` and register the md5 of ``md5_of`` (default: ``body``)."""
    routes["/" + key] = (body, mode)
    sources.MD5[key] = hashlib.md5(body if md5_of is None else md5_of).hexdigest()


def idx_gz(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.tobytes(), mtime=0)


def mnist_files(n_train=20, n_test=10) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx_gz(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": idx_gz(np.arange(n_test) % 10),
    }


def cifar_pickle(n, label_key=b"labels", num_classes=10) -> bytes:
    d = {
        b"data": np.random.default_rng(n).integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: [int(v) for v in np.arange(n) % num_classes],
        b"batch_label": b"tiny",
    }
    return pickle.dumps(d, protocol=2)


def targz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def cifar10_members(n=6) -> dict[str, bytes]:
    m = {f"cifar-10-batches-py/data_batch_{i}": cifar_pickle(n + i) for i in range(1, 6)}
    m["cifar-10-batches-py/test_batch"] = cifar_pickle(n)
    m["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"a"] * 10}, 2)
    return m


def leftovers(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


# --------------------------------------------------------------------------------- MNIST


def test_good_download_loads_and_is_cached(server, tmp_path):
    routes, hits = server
    for name, body in mnist_files().items():
        serve(routes, f"mnist/{name}", body)
    root = tmp_path / "cache"
    d = load_dataset("mnist", data_dir=root)
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert len(hits) == 4
    assert leftovers(root) == ["mnist"] + [f"mnist/{n}" for n in sorted(mnist_files())]
    load_dataset("mnist", data_dir=root)  # second time: from disk, no request
    assert len(hits) == 4


def test_only_missing_files_are_fetched(server, tmp_path):
    routes, hits = server
    files = mnist_files()
    for name, body in files.items():
        serve(routes, f"fashion-mnist/{name}", body)
    (tmp_path / "fashion-mnist").mkdir()
    for name in list(files)[:3]:
        (tmp_path / "fashion-mnist" / name).write_bytes(files[name])
    ensure_files("fashion-mnist", tmp_path)
    assert hits == ["/fashion-mnist/t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("fault", ["cut", "short", "corrupt"])
def test_bad_download_leaves_nothing(server, tmp_path, fault):
    routes, hits = server
    files = mnist_files()
    for name, body in files.items():
        serve(routes, f"mnist/{name}", body)
    key = "mnist/t10k-images-idx3-ubyte.gz"  # the third of four: two are already fetched
    body = files["t10k-images-idx3-ubyte.gz"]
    if fault == "cut":  # connection closes before Content-Length bytes arrived
        serve(routes, key, body, mode="cut")
        match = "truncated"
    elif fault == "short":  # a complete response of a truncated file
        serve(routes, key, body[:-100], md5_of=body)
        match = "corrupt: md5"
    else:  # same length, one byte flipped
        bad = bytearray(body)
        bad[len(bad) // 2] ^= 0xFF
        serve(routes, key, bytes(bad), md5_of=body)
        match = "corrupt: md5"
    root = tmp_path / "cache"
    with pytest.raises(DownloadError, match=match) as e:
        load_dataset("mnist", data_dir=root)
    assert "127.0.0.1" in str(e.value)
    assert not root.exists()  # created for the download, removed with it
    root.mkdir()  # an existing root stays, and stays empty
    with pytest.raises(DownloadError):
        load_dataset("mnist", data_dir=root)
    assert root.exists() and leftovers(root) == []


def test_interrupted_download_leaves_nothing(server, tmp_path, monkeypatch):
    routes, _ = server
    for name, body in mnist_files().items():
        serve(routes, f"mnist/{name}", body)

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sources, "_verify_md5", interrupt)
    (tmp_path / "root").mkdir()
    with pytest.raises(KeyboardInterrupt):
        ensure_files("mnist", tmp_path / "root")
    assert leftovers(tmp_path / "root") == []


def test_missing_on_server_is_a_clear_error(server, tmp_path):
    with pytest.raises(MissingDataError, match="HTTP Error 404|Not Found"):
        ensure_files("mnist", tmp_path / "root")
    assert not (tmp_path / "root").exists()


def test_offline_error_names_folder_and_files(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(sources.URL_ENV, f"http://127.0.0.1:{port}/")
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(MissingDataError) as e:
        load_dataset("fashion-mnist", data_dir=root)
    msg = str(e.value)
    assert str(root / "fashion-mnist") in msg and "train-images-idx3-ubyte.gz" in msg
    assert "refused" in msg.lower() and "LCCL_DATA" in msg
    assert leftovers(root) == []


def test_download_false_makes_no_request(server, tmp_path):
    routes, hits = server
    with pytest.raises(MissingDataError, match="Downloading is off"):
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert hits == []


# --------------------------------------------------------------------------------- CIFAR


def test_cifar10_archive_download(server, tmp_path):
    routes, _ = server
    serve(routes, "cifar-10-python.tar.gz", targz(cifar10_members()))
    d = load_dataset("cifar10", data_dir=tmp_path / "c")
    assert d.x_train.shape == (6 * 5 + 15, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert leftovers(tmp_path / "c")[0] == "cifar-10-batches-py"
    assert not any(p.startswith(".lccl-download") for p in leftovers(tmp_path / "c"))


def test_cifar100_partial_folder_is_completed_not_overwritten(server, tmp_path):
    routes, _ = server
    members = {
        "cifar-100-python/train": cifar_pickle(8, b"fine_labels", 100),
        "cifar-100-python/test": cifar_pickle(5, b"fine_labels", 100),
        "cifar-100-python/meta": b"meta",
    }
    serve(routes, "cifar-100-python.tar.gz", targz(members))
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    own = cifar_pickle(3, b"fine_labels", 100)  # the user's own (smaller) test file
    (folder / "test").write_bytes(own)
    d = load_dataset("cifar100", data_dir=tmp_path)
    assert d.x_train.shape[0] == 8 and d.x_test.shape[0] == 3
    assert (folder / "test").read_bytes() == own
    assert load_cifar_batch(folder / "train", "fine_labels", 100)[0].shape == (8, 3, 32, 32)


@pytest.mark.parametrize(
    "evil",
    [
        {"../escaped": b"x"},
        {"/tmp/absolute_lccl_test": b"x"},
        {"cifar-10-batches-py/../../escaped": b"x"},
    ],
)
def test_unsafe_archive_refused(server, tmp_path, evil):
    routes, _ = server
    serve(routes, "cifar-10-python.tar.gz", targz({**cifar10_members(), **evil}))
    root = tmp_path / "a" / "root"
    with pytest.raises(DownloadError, match="unsafe archive member"):
        ensure_files("cifar10", root)
    assert leftovers(tmp_path) == []


def test_archive_with_symlink_refused(server, tmp_path):
    routes, _ = server
    body = targz(cifar10_members(), links={"cifar-10-batches-py/link": "/etc/passwd"})
    serve(routes, "cifar-10-python.tar.gz", body)
    with pytest.raises(DownloadError, match="link or device"):
        ensure_files("cifar10", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_archive_lacking_files_or_not_targz(server, tmp_path):
    routes, _ = server
    members = cifar10_members()
    del members["cifar-10-batches-py/test_batch"]
    serve(routes, "cifar-10-python.tar.gz", targz(members))
    with pytest.raises(DownloadError, match="lacks cifar-10-batches-py/test_batch"):
        ensure_files("cifar10", tmp_path / "r")
    serve(routes, "cifar-10-python.tar.gz", b"not a tar.gz at all")
    with pytest.raises(DownloadError, match="not a readable .tar.gz"):
        ensure_files("cifar10", tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_unwritable_root_is_a_clear_error(server, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")  # a file where the data root's parent should be a folder
    with pytest.raises(MissingDataError, match="Cannot download into it"):
        ensure_files("mnist", blocker / "root")
