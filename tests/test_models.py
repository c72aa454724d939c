"""Networks: MAC totals and parameter counts against published figures, shapes,
float64 gradient checks of a tiny LCCL ResNet for every placement, the sparse
eval path, the placement wiring, state dicts and bad names."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_grad_at

from lccl_ref.models import (
    LCCL_KINDS,
    MODEL_NAMES,
    PLACEMENTS,
    PreActBlock,
    PreActResNet,
    build_model,
    lccl_layers,
    set_sparse,
)
from lccl_ref.nn import Conv2d, LCCLConv2d, Linear, load_npz, save_npz


def dense_macs(model):
    """Multiply-accumulates of every Conv2d and Linear from their last input shapes."""
    total = 0
    for _, m in model.named_modules():
        if isinstance(m, Conv2d):
            n, c, h, w = m.last_input_shape
            ho, wo = m.output_shape(h, w)
            total += n * ho * wo * m.out_channels * c * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, Linear):
            total += m.last_input_shape[0] * m.in_features * m.out_features
    return total


@pytest.mark.parametrize("name, macs", [("resnet20", 40_551_040), ("resnet32", 68_862_592),
                                        ("resnet44", 97_174_144)])
def test_resnet_dense_macs_match_the_paper(name, macs):
    model = build_model(name, rng=0).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    assert model.forward(x).shape == (1, 10)
    assert dense_macs(model) == macs
    # only 3x3 convs and the classifier: parameter-free shortcuts
    assert all(m.kernel_size == (3, 3) for _, m in model.named_modules() if isinstance(m, Conv2d))


@pytest.mark.parametrize("name, millions", [
    ("resnet20", "0.27"), ("resnet32", "0.46"), ("resnet44", "0.66"), ("resnet56", "0.85"),
    ("resnet110", "1.7"), ("wrn-16-4", "2.7"), ("wrn-22-8", "17.2"), ("wrn-40-1", "0.6"),
    ("wrn-40-2", "2.2"), ("wrn-40-4", "8.9")])
def test_parameter_counts_match_published(name, millions):
    """He et al. 2016 (ResNet, option A) and Zagoruyko & Komodakis 2016 (WRN) tables,
    compared to the number of decimals published."""
    model = build_model(name, rng=0)
    count = sum(p.data.size for p in model.parameters())
    digits = len(millions.split(".")[1])
    assert f"{count / 1e6:.{digits}f}" == millions


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shapes(name):
    model = build_model(name, num_classes=7, rng=0, lccl="1x1xCx1").eval()
    c = 1 if name == "mnist-resnet" else 3
    size = 28 if name == "mnist-resnet" else 8
    y = model.forward(np.zeros((2, c, size, size), np.float32))
    assert y.shape == (2, 7) and y.dtype == np.float32
    blocks = [m for _, m in model.named_modules() if isinstance(m, PreActBlock)]
    assert len(lccl_layers(model)) == 2 * len(blocks)
    assert all(isinstance(b.conv1, LCCLConv2d) and isinstance(b.conv2, LCCLConv2d)
               for b in blocks)


def test_structure_resnet20_and_wrn():
    r20 = build_model("resnet20", lccl="kxkxCx1")
    names = [n for n, _ in lccl_layers(r20)]
    assert len(names) == 18 and names[:2] == ["layer1.0.conv1", "layer1.0.conv2"]
    assert isinstance(r20.stem, Conv2d) and not isinstance(r20.stem, LCCLConv2d)
    assert r20.layer2[0].conv1.conv.stride == (2, 2)
    wrn = build_model("wrn-16-4")
    assert [b.shortcut_kind for b in wrn.layer1] == ["projection", "none"]
    assert wrn.layer3[0].shortcut.weight.data.shape == (256, 128, 1, 1)
    assert build_model("wrn-16-4", shortcut="identity").layer1[0].shortcut_kind == "identity"
    mnist = build_model("mnist-resnet")
    assert mnist.stem.in_channels == 1 and mnist.widths == (16, 32, 64)
    mnist.forward(np.zeros((1, 1, 28, 28), np.float32))
    assert mnist.layer3[0].conv2.last_input_shape == (1, 64, 4, 4)
    assert dense_macs(mnist) == 2_578_816  # by hand: 112,896 + 2*451,584 + 225,792 + ... + 640
    with pytest.raises(ValueError, match="one entry per stage"):
        PreActResNet(1, (4, 8), strides=(1, 2, 2))


def test_bad_names_and_combinations():
    with pytest.raises(ValueError, match="resnet20.*mnist-resnet"):
        build_model("vgg16")
    with pytest.raises(ValueError, match="6n\\+2"):
        build_model("resnet21")
    with pytest.raises(ValueError, match="6n\\+4"):
        build_model("wrn-17-2")
    with pytest.raises(ValueError, match="widening"):
        build_model("wrn-16-0")
    with pytest.raises(ValueError, match="1x1xCxT"):
        build_model("resnet20", lccl="3x3")
    with pytest.raises(ValueError, match="aft-aft"):
        build_model("resnet20", placement="aft")
    with pytest.raises(ValueError, match="projection"):
        build_model("resnet20", shortcut="B")
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet20", num_classes=0)
    with pytest.raises(TypeError, match="name"):
        build_model(20)


# ---------------------------------------------------------------- gradients


def tiny(lccl, placement, shortcut="identity", seed=0):
    """Depth-8 pre-activation ResNet, widths 3/4/6, float64."""
    return PreActResNet(1, (3, 4, 6), stem_channels=3, num_classes=3, in_channels=2,
                        lccl=lccl, placement=placement, shortcut=shortcut,
                        rng=np.random.default_rng(seed), dtype=np.float64)


CASES = [(kind, placement, shortcut)
         for kind, shortcut in (("1x1xCxT", "identity"), ("kxkxCx1", "projection"),
                                ("1x1xCx1", "identity"))
         for placement in PLACEMENTS] + [("none", "aft-aft", "identity")]


@pytest.mark.parametrize("kind, placement, shortcut", CASES)
def test_tiny_resnet_gradients(kind, placement, shortcut):
    rng = np.random.default_rng(CASES.index((kind, placement, shortcut)))
    model = tiny(kind, placement, shortcut)
    x = rng.standard_normal((2, 2, 8, 8))
    y = model.forward(x)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)

    def loss():
        return float(np.sum(model.forward(x) * dy))

    def check(analytic, arr, what, k=6):
        idx = rng.choice(arr.size, size=min(k, arr.size), replace=False)
        numeric = numerical_grad_at(lambda _: loss(), arr, idx)
        np.testing.assert_allclose(analytic.reshape(-1)[idx], numeric, rtol=1e-5,
                                   atol=1e-7 * max(1.0, np.abs(numeric).max()), err_msg=what)

    check(dx, x, "input", k=24)
    for name, p in model.named_parameters():
        check(p.grad, p.data, name, k=2)
        if "cheap" in name:
            assert np.abs(p.grad).max() > 0, name


@pytest.mark.parametrize("shortcut", ["identity", "projection"])
def test_eval_block_fuses_bn_relu_and_frozen_bn_gradients_stay_exact(shortcut):
    # eval forward: each BN-ReLU is one pass (BatchNorm2d.inference); it must equal the
    # unfused reference, and a backward pass in eval mode (frozen BN statistics, as in
    # fine-tuning) must still give the exact gradient of that eval forward
    from lccl_ref import functional as F

    rng = np.random.default_rng(5)
    model = tiny("none", "aft-aft", shortcut, seed=5)
    for m in model.modules():
        if hasattr(m, "running_var"):
            m.running_mean[...] = rng.standard_normal(m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
    model.eval()
    block = next(m for m in model.modules() if isinstance(m, PreActBlock)
                 and m.shortcut_kind != "none")
    x = rng.standard_normal((2, block.bn1.num_features, 8, 8))

    def bn_relu(bn, z):
        y, _ = F.batchnorm2d_forward(z, bn.weight.data, bn.bias.data, bn.running_mean,
                                     bn.running_var, False, bn.momentum, bn.eps)
        return np.maximum(y, 0)

    def conv(c, z):
        return F.conv2d_forward(z, c.weight.data, None, c.stride, c.padding)[0]

    a = bn_relu(block.bn1, x)
    o = conv(block.conv2, bn_relu(block.bn2, conv(block.conv1, a)))
    ref = o + (conv(block.shortcut, a) if shortcut == "projection" else block.shortcut.forward(x))
    np.testing.assert_allclose(block.forward(x), ref, rtol=1e-12, atol=1e-12)

    xi = rng.standard_normal((2, 2, 8, 8))
    y = model.forward(xi)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)
    idx = rng.choice(xi.size, size=24, replace=False)
    numeric = numerical_grad_at(lambda _: np.sum(model.forward(xi) * dy), xi, idx)
    np.testing.assert_allclose(dx.reshape(-1)[idx], numeric, rtol=1e-5, atol=1e-9)
    for name, p in model.named_parameters():
        j = rng.choice(p.data.size, size=min(2, p.data.size), replace=False)
        num = numerical_grad_at(lambda _: np.sum(model.forward(xi) * dy), p.data, j)
        np.testing.assert_allclose(p.grad.reshape(-1)[j], num, rtol=1e-5, atol=1e-9,
                                   err_msg=name)


def test_bef_placement_changes_the_cheap_input():
    """"bef" feeds the cheap branch the raw block input / conv1 output, "aft" the BN-ReLU output."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 6, 6))
    outs = {}
    for placement in PLACEMENTS:
        block = PreActBlock(3, 3, 1, "1x1xCxT", placement, rng=np.random.default_rng(0),
                            dtype=np.float64).eval()
        for bn in (block.bn1, block.bn2):
            bn.running_mean = rng.normal(0, 1, 3)
        a = block.relu1.forward(block.bn1.forward(x))
        first, second = placement.split("-")
        h = block.conv1.forward(a, cheap_input=x if first == "bef" else a)
        b = block.relu2.forward(block.bn2.forward(h))
        o = block.conv2.forward(b, cheap_input=h if second == "bef" else b)
        outs[placement] = block.forward(x)
        np.testing.assert_allclose(outs[placement], o + x, rtol=1e-12, atol=1e-12)
    assert not np.allclose(outs["aft-aft"], outs["bef-bef"])


# ---------------------------------------------------------------- eval, state


@pytest.mark.parametrize("kind", LCCL_KINDS[1:])
def test_tiny_resnet_sparse_eval_equals_dense_eval(kind):
    rng = np.random.default_rng(9)
    model = tiny(kind, "aft-bef")
    for _ in range(3):  # running statistics from a few batches
        model.forward(rng.standard_normal((4, 2, 8, 8)))
    model.eval()
    x = rng.standard_normal((3, 2, 8, 8))
    dense = set_sparse(model, False).forward(x)
    dense_density = [m.last_stats["density"] for _, m in lccl_layers(model)]
    sparse = set_sparse(model, True).forward(x)
    np.testing.assert_allclose(sparse, dense, rtol=1e-10, atol=1e-10)
    stats = [m.last_stats for _, m in lccl_layers(model)]
    assert [s["density"] for s in stats] == dense_density
    assert all(0 < s["density"] < 1 for s in stats)
    # fewer MACs, except where a per-channel mask was dense enough to run densely
    computed = [s for s in stats if s["method"] != "dense"]
    assert computed or kind == "1x1xCxT"
    assert all(s["macs_expensive"] < s["macs_dense"] for s in computed)


def test_state_dict_round_trip(tmp_path):
    a = build_model("resnet20", lccl="kxkxCx1", rng=1)
    b = build_model("resnet20", lccl="kxkxCx1", rng=2)
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    a.forward(x)  # moves the running statistics away from their initial values
    save_npz(tmp_path / "a.npz", a.state_dict())
    b.load_state_dict(load_npz(tmp_path / "a.npz"))
    assert "layer1.0.conv1.cheap_bn.running_mean" in a.state_dict()
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a.forward(x), b.forward(x))


