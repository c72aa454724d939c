"""DensityBudget: the ramp, the penalty and its gradient (float64 finite differences),
what apply() hands the layers, and training toward a target on a small net."""

from __future__ import annotations

import types

import numpy as np
import pytest
from gradcheck import numerical_grad

from lccl_ref.models import build_model, lccl_layers
from lccl_ref.train import DensityBudget, fit


def test_target_ramps_from_one():
    b = DensityBudget(0.6, ramp=0.5)
    assert [b.target_at(p) for p in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([1.0, 0.8, 0.6, 0.6])
    assert DensityBudget(0.3, ramp=0.0).target_at(0.0) == 0.3


@pytest.mark.parametrize("scope", ["network", "layer"])
def test_loss_gradient_finite_differences(scope):
    rng = np.random.default_rng(0)
    d = rng.uniform(0.0, 1.0, 5)
    d[0] = 0.01  # under the floor: the floor term is on
    macs = rng.integers(1, 1000, 5).astype(float)
    b = DensityBudget(0.55, weight=1.3, scope=scope, ramp=0.5, floor=0.05, floor_weight=4.0)
    loss, grad = b.loss(d, macs, 0.3)
    num = numerical_grad(lambda dd: b.loss(dd, macs, 0.3)[0], d.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)
    rho = b.target_at(0.3)
    if scope == "network":
        dbar = macs @ d / macs.sum()
        want = 1.3 * 5 * (dbar - rho) ** 2
    else:
        want = 1.3 * np.sum((d - rho) ** 2)
    assert loss == pytest.approx(want + 4.0 * np.sum(np.maximum(0.05 - d, 0) ** 2))
    assert np.sum(d < 0.05) >= 1


def test_apply_writes_each_layers_density_grad():
    model = build_model("mnist-resnet", lccl="kxkxCx1", gate="clip", rng=0)
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    model.train()
    model.forward(x)
    layers = [m for _, m in lccl_layers(model)]
    b = DensityBudget(0.2, ramp=0.0)
    out = b.apply(layers, 0.5)
    d = [m.last_train_density for m in layers]
    macs = [m.last_train_macs for m in layers]
    loss, grad = b.loss(d, macs, 0.5)
    mean = np.dot(macs, d) / sum(macs)
    assert out == {"loss": loss, "target": 0.2, "density": pytest.approx(mean)}
    assert [m.density_grad for m in layers] == pytest.approx(list(grad))
    assert all(g > 0 for g in grad)  # denser than 0.2 at initialisation: every layer pushed down
    with pytest.raises(RuntimeError, match="training-mode forward"):
        b.apply(layers[:1] + [build_model("mnist-resnet", lccl="kxkxCx1").layer1[0].conv1], 0.5)


@pytest.mark.parametrize("kw, err", [({"target": 1.5}, ValueError), ({"target": "0.5"}, TypeError),
                                     ({"target": 0.5, "scope": "block"}, ValueError),
                                     ({"target": 0.5, "ramp": 2.0}, ValueError),
                                     ({"target": 0.5, "weight": -1.0}, ValueError),
                                     ({"target": 0.5, "floor": True}, TypeError)])
def test_bad_arguments(kw, err):
    with pytest.raises(err):
        DensityBudget(**kw)


def test_config_round_trip():
    b = DensityBudget(0.4, weight=2.0, scope="layer", ramp=0.25, floor=0.1, floor_weight=1.0)
    assert DensityBudget(**b.config()).config() == b.config()


def _data(n=192, seed=0):
    """Digits-like toy data: class = the quadrant holding a bright blob, on 28x28."""
    g = np.random.default_rng(seed)
    y = g.integers(0, 4, n)
    x = g.normal(0, 0.3, (n, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(y):
        r, s = 4 + 14 * (c // 2), 4 + 14 * (c % 2)
        x[i, 0, r:r + 8, s:s + 8] += 2.0
    return types.SimpleNamespace(x_train=x[:128], y_train=y[:128], x_test=x[128:],
                                 y_test=y[128:], augment=False)


def test_training_follows_the_target():
    """Two epochs on a toy task: with a budget at 0.2 the measured densities end near
    0.2 (well below those of the same run without a budget), and the history says so."""
    ends = {}
    for target in (None, 0.2):
        model = build_model("mnist-resnet", num_classes=4, lccl="kxkxCx1", gate="clip", rng=0)
        budget = None if target is None else DensityBudget(target, weight=4.0, ramp=0.0)
        h = fit(model, _data(), epochs=3, batch_size=32, lr=0.05, seed=0, progress=False,
                budget=budget)
        ends[target] = np.mean(list(h.last["train_density"].values()))
        assert (h.last["budget_loss"] > 0) == (target is not None)
        assert h.config["train"]["budget"] == (None if budget is None else budget.config())
    assert ends[0.2] < 0.35 < ends[None]


def test_gate_l1_adds_its_gradient_to_every_gate_value():
    """GateL1: loss weight * sum_l mean(V'_l), and dL/dV' = weight / size on every cell,
    which for the clip gate reaches the cheap BN's beta as weight * mean(g'(z))."""
    from lccl_ref.nn import LCCLConv2d
    from lccl_ref.train import GateL1

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6))
    dy = rng.standard_normal((2, 4, 6, 6))
    beta_grad = {}
    for w in (0.0, 0.5):
        layer = LCCLConv2d(3, 4, cheap="kxkxCx1", gate="clip", rng=0, dtype=np.float64)
        v = layer.forward(x)
        out = GateL1(w).apply([layer], 0.0)
        assert out["loss"] == pytest.approx(w * layer.last_gate_mean)
        layer.zero_grad()
        layer.backward(dy)
        beta_grad[w] = layer.cheap_bn.bias.grad.copy()
        assert layer.gate_mean_grad == 0.0
    assert v.shape == dy.shape
    assert beta_grad[0.5] != pytest.approx(beta_grad[0.0])
    with pytest.raises(ValueError):
        GateL1(-1.0)
