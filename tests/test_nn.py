"""Modules: gradient flow through Sequential, train/eval, state dicts, dtype casts."""

import numpy as np
import pytest
from gradcheck import numerical_grad

from lccl_ref import functional as F
from lccl_ref.nn import (
    BatchNorm2d,
    Conv2d,
    GlobalAvgPool,
    Linear,
    ReLU,
    Sequential,
    load_npz,
    save_npz,
)


def small_net(dtype=np.float64, seed=0):
    return Sequential(
        Conv2d(2, 3, 3, padding=1, bias=True, rng=seed, dtype=dtype),
        BatchNorm2d(3, dtype=dtype),
        ReLU(),
        Conv2d(3, 4, (2, 3), stride=2, rng=seed + 1, dtype=dtype),
        BatchNorm2d(4, dtype=dtype),
        ReLU(),
        GlobalAvgPool(),
        Linear(4, 3, rng=seed + 2, dtype=dtype),
    )


def _data(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 2, 6, 5)).astype(dtype), rng.integers(0, 3, 4)


def _loss(net, x, labels):
    loss, dlogits = F.softmax_cross_entropy(net.forward(x), labels)
    return loss, dlogits


@pytest.mark.parametrize("training", [True, False])
def test_gradients_flow_through_sequential(training):
    net = small_net()
    x, labels = _data()
    net.train()
    _loss(net, x, labels)  # one training step moves the running stats off (0, 1)
    net.train(training)
    net.zero_grad()
    loss, dlogits = _loss(net, x, labels)
    dx = net.backward(dlogits)
    assert dx.shape == x.shape

    def f(_):
        saved = [(m.running_mean.copy(), m.running_var.copy())
                 for m in net.modules() if isinstance(m, BatchNorm2d)]
        val = _loss(net, x, labels)[0]
        for m, (rm, rv) in zip([m for m in net.modules() if isinstance(m, BatchNorm2d)], saved):
            m.running_mean[...], m.running_var[...] = rm, rv
        return val

    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, numerical_grad(f, p.data), rtol=1e-5, atol=1e-8,
                                   err_msg=name)
    np.testing.assert_allclose(dx, numerical_grad(f, x), rtol=1e-5, atol=1e-8)


def test_backward_accumulates_and_zero_grad_clears():
    net = small_net()
    x, labels = _data()
    _, d = _loss(net, x, labels)
    net.backward(d)
    first = {k: p.grad.copy() for k, p in net.named_parameters()}
    _, d = _loss(net, x, labels)
    net.backward(d)
    for k, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[k], rtol=1e-12, atol=1e-15)
    assert any(np.any(g != 0) for g in first.values())
    net.zero_grad()
    assert all(np.all(p.grad == 0) for p in net.parameters())


def test_train_eval_for_batchnorm():
    bn = BatchNorm2d(3, dtype=np.float64)
    x = np.random.default_rng(1).normal(2.0, 3.0, (5, 3, 4, 4))
    assert bn.training
    y_train = bn.forward(x)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    np.testing.assert_allclose(rm, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    net = Sequential(bn)
    net.eval()
    assert not bn.training
    y_eval = bn.forward(x)
    np.testing.assert_array_equal(bn.running_mean, rm)  # eval leaves the stats alone
    np.testing.assert_allclose(y_eval, (x - rm[:, None, None]) / np.sqrt(rv + 1e-5)[:, None, None],
                               rtol=1e-12)
    assert not np.allclose(y_train, y_eval)
    net.train()
    assert bn.training


def test_state_dict_round_trip_through_npz(tmp_path):
    net = small_net(np.float32)
    x, labels = _data(np.float32)
    for _ in range(2):  # move parameters and running stats away from their initial values
        _, d = _loss(net, x, labels)
        net.backward(d)
        for p in net.parameters():
            p.data -= np.float32(0.1) * p.grad
    state = net.state_dict()
    assert "1.running_mean" in state and "4.running_var" in state
    assert np.any(state["1.running_mean"] != 0)
    path = tmp_path / "net.npz"
    save_npz(path, state)
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(state)
    loaded = load_npz(path)
    other = small_net(np.float32, seed=9)
    other.load_state_dict(loaded)
    for k, v in other.state_dict().items():
        assert v.dtype == state[k].dtype
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    net.eval()
    other.eval()
    np.testing.assert_array_equal(net.forward(x), other.forward(x))
    # the state dict holds copies, not views of the live arrays
    state["0.weight"][...] = 0
    assert np.any(net.state_dict()["0.weight"] != 0)


def test_load_state_dict_rejects_mismatch():
    net = small_net()
    state = net.state_dict()
    with pytest.raises(ValueError, match="missing"):
        net.load_state_dict({k: v for k, v in state.items() if k != "0.weight"})
    with pytest.raises(ValueError, match="unexpected"):
        net.load_state_dict({**state, "extra": np.zeros(1)})
    bad = dict(state)
    bad["7.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="7.weight"):
        net.load_state_dict(bad)


def test_save_npz_refuses_objects(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_npz(tmp_path / "x.npz", {"a": np.array([{}, None], dtype=object)})


@pytest.mark.parametrize("src, dst", [(np.float32, np.float64), (np.float64, np.float32)])
def test_astype_casts_parameters_grads_and_buffers(src, dst):
    net = small_net(src)
    x, labels = _data(src)
    _, d = _loss(net, x, labels)
    net.backward(d)
    before = net.state_dict()
    net.astype(dst)
    assert net.dtype == dst
    for p in net.parameters():
        assert p.data.dtype == dst and p.grad.dtype == dst
    for k, v in net.state_dict().items():
        assert v.dtype == dst, k
        np.testing.assert_allclose(v, before[k], rtol=1e-6)
    y = net.forward(x.astype(dst))
    assert y.dtype == dst
    with pytest.raises(TypeError, match="dtype"):
        net.astype(np.int32)


def test_mixed_dtypes_between_module_and_input_are_refused():
    net = small_net(np.float32)
    x, _ = _data(np.float64)
    with pytest.raises(TypeError, match="dtype"):
        net.forward(x)


def test_conv_records_input_shape_and_output_shape():
    conv = Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), rng=0)
    x = np.zeros((1, 2, 7, 5), np.float32)
    y = conv.forward(x)
    assert conv.last_input_shape == x.shape
    assert y.shape[2:] == conv.output_shape(7, 5)


def test_assigning_attributes_keeps_registration_right():
    # an array assigned to a buffer's name stays a buffer (calibration sets running stats
    # this way); a Parameter or Module replaced by a plain value leaves its registry
    bn = BatchNorm2d(3)
    bn.running_mean = np.full(3, 2.0, np.float32)
    assert "running_mean" in bn.state_dict()
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], 2.0)
    bn.running_var = None  # not an array: no longer a buffer
    assert "running_var" not in bn.state_dict()
    seq = Sequential(Conv2d(1, 2, 3), ReLU())
    seq.extra = Conv2d(2, 2, 1)
    assert any(n.startswith("extra.") for n in seq.state_dict())
    seq.extra = "gone"
    assert not any(n.startswith("extra.") for n in seq.state_dict())
    conv = Conv2d(1, 2, 3)
    conv.weight = None
    assert "weight" not in conv.state_dict()


def test_eval_batchnorm_refuses_wrong_channels_and_dtype():
    bn = BatchNorm2d(3).eval()
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        bn.forward(np.ones((1, 4, 2, 2), np.float32))
    with pytest.raises(TypeError, match="dtype float64 but the module is float32"):
        bn.forward(np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="4-D"):
        bn.inference(np.ones((3, 2, 2), np.float32))
