"""LCCLConv2d: the training-mode product and its gradients, the eval mask, the
sparse eval path against the dense one, BN folding and the recorded MACs."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from lcclhelp import lccl_rounding_bound, randomise_bn

from lccl_ref import functional as F
from lccl_ref.nn import CHEAP_KINDS, Conv2d, LCCLConv2d, Sequential, set_sparse

# ---------------------------------------------------------------- helpers


def make_layer(c, t, kind, k=3, stride=1, padding=1, dtype=np.float64, seed=0, gate="relu"):
    return LCCLConv2d(c, t, k, stride, padding, cheap=kind, rng=seed, dtype=dtype, gate=gate)


def reference_output(layer, x, u=None, training=True):
    """O = conv(x) * g(BN(cheap_conv(u))) from the functional pieces (no module code):
    g = ReLU, or min(ReLU, 1) for the clip gate."""
    u = x if u is None else u
    v, _ = F.conv2d_forward(x, layer.conv.weight.data, None, layer.conv.stride,
                            layer.conv.padding)
    pre, _ = F.conv2d_forward(u, layer.cheap_conv.weight.data, None, layer.cheap_conv.stride,
                              layer.cheap_conv.padding)
    bn = layer.cheap_bn
    z, _ = F.batchnorm2d_forward(pre, bn.weight.data, bn.bias.data, bn.running_mean.copy(),
                                 bn.running_var.copy(), training, bn.momentum, bn.eps)
    g = np.maximum(z, 0)
    return v * (np.minimum(g, 1) if layer.gate == "clip" else g)


# ---------------------------------------------------------------- construction


def test_cheap_branch_shapes_per_kind():
    shapes = {"1x1xCxT": (6, 4, 1, 1), "kxkxCx1": (1, 4, 3, 3), "1x1xCx1": (1, 4, 1, 1)}
    for kind, shape in shapes.items():
        layer = make_layer(4, 6, kind)
        assert layer.conv.weight.data.shape == (6, 4, 3, 3)
        assert layer.cheap_conv.weight.data.shape == shape
        assert layer.cheap_bn.num_features == shape[0]
        assert layer.shared_mask == (shape[0] == 1)
        assert layer.cheap_conv.padding == ((0, 0) if shape[2] == 1 else (1, 1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="1x1xCxT.*kxkxCx1.*1x1xCx1"):
        LCCLConv2d(3, 4, cheap="3x3xCxT")
    with pytest.raises(ValueError, match="odd kernel_size"):
        LCCLConv2d(3, 4, kernel_size=2, padding=1, cheap="1x1xCx1")
    with pytest.raises(ValueError, match="padding"):
        LCCLConv2d(3, 4, kernel_size=5, padding=1, cheap="1x1xCxT")
    layer = make_layer(3, 4, "1x1xCx1")
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match="3 channels"):
        layer.forward(np.zeros((2, 4, 5, 5)))
    with pytest.raises(ValueError, match="cheap_input must have the shape"):
        layer.forward(x, cheap_input=np.zeros((2, 3, 4, 5)))
    with pytest.raises(TypeError, match="dtype"):
        layer.forward(x, cheap_input=np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.zeros((2, 4, 5, 5)))
    layer.eval().forward(x)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.backward(np.zeros((2, 4, 5, 5)))
    with pytest.raises(TypeError, match="bool"):
        set_sparse(layer, 1)


# ---------------------------------------------------------------- training mode


@pytest.mark.parametrize("gate", ["relu", "clip"])
@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("stride", [1, 2])
def test_train_forward_matches_reference(kind, stride, gate):
    rng = np.random.default_rng(1)
    layer = make_layer(3, 5, kind, stride=stride, gate=gate)
    x = rng.standard_normal((2, 3, 7, 6))
    u = rng.standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(layer.forward(x), reference_output(layer, x), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(layer.forward(x, cheap_input=u), reference_output(layer, x, u),
                               rtol=1e-12, atol=1e-12)
    assert layer.last_input_shape == x.shape


def _param_arrays(layer):
    return [(name, p) for name, p in layer.named_parameters()]


@pytest.mark.parametrize("gate", ["relu", "clip"])
@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("separate", [False, True])
def test_gradients_finite_differences(kind, stride, separate, gate):
    rng = np.random.default_rng(2 + stride + 10 * separate)
    layer = make_layer(3, 4, kind, stride=stride, gate=gate)
    x = rng.standard_normal((2, 3, 5, 5))
    u = rng.standard_normal((2, 3, 5, 5)) if separate else None
    y = layer.forward(x, cheap_input=u)
    dy = rng.standard_normal(y.shape)  # random upstream gradient, never all ones
    layer.zero_grad()
    grads = layer.backward(dy)
    if separate:
        dx, du = grads
    else:
        dx, du = grads, None

    def loss(_):
        return np.sum(layer.forward(x, cheap_input=u) * dy)

    def check(analytic, numeric, what):
        scale = max(1.0, float(np.max(np.abs(numeric))))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7 * scale,
                                   err_msg=what)

    check(dx, numerical_grad(loss, x), "dx")
    if separate:
        check(du, numerical_grad(loss, u), "dx_cheap")
    for name, p in _param_arrays(layer):
        check(p.grad, numerical_grad(loss, p.data), name)
    # the cheap branch really gets gradient (a product rule half-forgotten would leave it 0)
    assert np.abs(layer.cheap_conv.weight.grad).max() > 0
    assert np.abs(layer.cheap_bn.weight.grad).max() > 0


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_density_grad_reaches_the_cheap_branch_only(kind):
    """A density_grad set between forward and backward adds dd * dd/dz (the surrogate of
    F.density_backward) to the cheap pre-activation's gradient: the cheap BN's beta
    gradient, which is sum(dz) per channel, grows by exactly that sum; the expensive
    branch's gradients do not change; the grad is used once."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 6, 6))
    dy = rng.standard_normal((2, 4, 6, 6))
    grads = {}
    for dd in (0.0, 1.7, 0.0):
        layer = make_layer(3, 4, kind, gate="clip")
        layer.forward(x)
        layer.density_grad = dd
        layer.zero_grad()
        layer.backward(dy)
        assert layer.density_grad == 0.0
        grads[dd] = {name: p.grad.copy() for name, p in layer.named_parameters()}
    z, _ = F.batchnorm2d_forward(
        F.conv2d_forward(x, layer.cheap_conv.weight.data, None, layer.cheap_conv.stride,
                         layer.cheap_conv.padding)[0],
        layer.cheap_bn.weight.data, layer.cheap_bn.bias.data,
        np.zeros(layer.cheap_bn.num_features), np.ones(layer.cheap_bn.num_features), True, 0.1,
        layer.cheap_bn.eps)
    density, cache = F.density_forward(z)
    assert layer.last_train_density == density
    assert layer.last_train_macs == 6 * 6 * 4 * 3 * 9
    t_gate = layer.cheap_bn.num_features  # T': a per-channel gate's pull is scaled by T'
    extra = F.density_backward(1.7 * t_gate, cache).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(grads[1.7]["cheap_bn.bias"] - grads[0.0]["cheap_bn.bias"],
                               extra, rtol=1e-10, atol=1e-14)
    assert np.abs(extra).max() > 0
    np.testing.assert_array_equal(grads[1.7]["conv.weight"], grads[0.0]["conv.weight"])


def test_gate_arguments():
    with pytest.raises(ValueError, match="gate must be one of"):
        LCCLConv2d(3, 4, gate="sigmoid")
    with pytest.raises(ValueError, match="gate_init"):
        LCCLConv2d(3, 4, gate_init=(1.0,))
    layer = LCCLConv2d(3, 4, cheap="kxkxCx1", gate_init=(0.5, 1.0), rng=0)
    assert layer.cheap_bn.weight.data.tolist() == [0.5]
    assert layer.cheap_bn.bias.data.tolist() == [1.0]


def test_separate_cheap_input_splits_the_gradient():
    """With cheap_input = x, dx + dx_cheap equals the gradient of the shared-input call."""
    rng = np.random.default_rng(3)
    layer = make_layer(3, 4, "kxkxCx1")
    x = rng.standard_normal((2, 3, 6, 6))
    dy = rng.standard_normal((2, 4, 6, 6))
    layer.forward(x)
    together = layer.backward(dy)
    layer.forward(x, cheap_input=x.copy())
    dx, du = layer.backward(dy)
    np.testing.assert_allclose(dx + du, together, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- eval mode


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(CHEAP_KINDS),
    geometry=st.sampled_from([(3, 1), (3, 2), (1, 0), (5, 2)]),
    stride=st.integers(1, 3),
    n=st.integers(1, 3),
    c=st.integers(1, 5),
    t=st.integers(1, 6),
    h=st.integers(5, 9),
    w=st.integers(5, 9),
    shift=st.sampled_from([-1e3, -1.0, 0.0, 0.5, 1e3]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
    gate=st.sampled_from(["relu", "clip"]),
)
def test_sparse_eval_equals_dense_eval(kind, geometry, stride, n, c, t, h, w, shift, dtype,
                                       seed, gate):
    k, padding = geometry
    rng = np.random.default_rng(seed)
    layer = make_layer(c, t, kind, k, stride, padding, dtype=dtype, seed=seed, gate=gate).eval()
    randomise_bn(layer, rng, shift)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    dense = set_sparse(layer, False).forward(x)
    dense_stats, dense_mask = layer.last_stats, layer.last_mask
    sparse = set_sparse(layer, True).forward(x)
    stats, mask = layer.last_stats, layer.last_mask
    # both paths within the rounding bound of the exact output, whatever their order of
    # summation (a fixed float32 tolerance failed where V' ~ 1e3 multiplies a cancelling V)
    bound = lccl_rounding_bound(layer, x)
    assert np.all(np.abs(sparse.astype(np.float64) - dense) <= 2 * bound + 1e-300)
    assert sparse.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mask, dense_mask)
    ho, wo = sparse.shape[2:]
    assert mask.shape == ((n, ho, wo) if layer.shared_mask else (n, t, ho, wo))
    # the counted MACs: executed = active cells * C*k*k, exactly
    active = int(mask.sum()) * (t if layer.shared_mask else 1)
    assert stats["active_cells"] == dense_stats["active_cells"] == active
    # a per-channel mask at or above kernels.TILED_BELOW runs the dense conv, then the mask
    computed = stats["macs_dense"] // (c * k * k) if stats["method"] == "dense" else active
    assert stats["macs_expensive"] == computed * c * k * k
    assert stats["macs_dense"] == n * ho * wo * t * c * k * k
    assert stats["density"] == active / (n * t * ho * wo)
    assert stats["macs_expensive"] * (n * t * ho * wo) == computed * stats["macs_dense"]
    assert dense_stats["macs_expensive"] == stats["macs_dense"]
    from lccl_ref.kernels import TILED_BELOW
    want = "gather" if layer.shared_mask else "tiled" if stats["density"] < TILED_BELOW else "dense"
    assert stats["method"] == want and dense_stats["method"] == "dense"
    # outside the mask the output is exactly zero
    full_mask = mask[:, None] if layer.shared_mask else mask
    assert np.all(sparse[~np.broadcast_to(full_mask, sparse.shape)] == 0)


@pytest.mark.parametrize("gate", ["relu", "clip"])
@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("sparse", [False, True])
def test_bn_folding_changes_nothing(kind, sparse, gate):
    rng = np.random.default_rng(4)
    layer = make_layer(4, 5, kind, stride=2, gate=gate).eval()
    randomise_bn(layer, rng)
    layer.sparse = sparse
    x = rng.standard_normal((3, 4, 9, 8))
    layer.fold_bn = True
    folded, mask_folded = layer.forward(x), layer.last_mask
    layer.fold_bn = False
    unfolded, mask_unfolded = layer.forward(x), layer.last_mask
    np.testing.assert_allclose(folded, unfolded, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(mask_folded, mask_unfolded)
    np.testing.assert_allclose(folded, reference_output(layer, x, training=False), rtol=1e-12,
                               atol=1e-12)
    assert 0 < layer.last_stats["density"] < 1


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_eval_stats_per_kind(kind):
    rng = np.random.default_rng(5)
    c, t, n, h = 4, 6, 2, 8
    layer = make_layer(c, t, kind).eval()
    randomise_bn(layer, rng)
    x = rng.standard_normal((n, c, h, h))
    layer.forward(x)
    s = layer.last_stats
    kc = 1 if kind.startswith("1x1") else 3
    tc = t if kind.endswith("xT") else 1
    assert s["macs_cheap"] == n * h * h * tc * c * kc * kc
    assert s["macs_dense"] == n * h * h * t * c * 9
    assert layer.last_input_shape == x.shape
    assert layer.conv.last_input_shape == x.shape


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_all_zero_and_all_active_cheap_branch(kind):
    rng = np.random.default_rng(6)
    layer = make_layer(3, 4, kind).eval()
    x = rng.standard_normal((2, 3, 6, 6))
    randomise_bn(layer, rng, shift=-1e6)  # V' = 0 everywhere
    y = layer.forward(x)
    assert np.all(y == 0)
    assert layer.last_stats["macs_expensive"] == 0
    assert layer.last_stats["density"] == 0.0
    assert not layer.last_mask.any()
    randomise_bn(layer, rng, shift=1e6)  # V' > 0 everywhere: the dense cost, no saving
    y = layer.forward(x)
    assert layer.last_stats["density"] == 1.0
    assert layer.last_stats["macs_expensive"] == layer.last_stats["macs_dense"]
    assert layer.last_mask.all()


def test_set_sparse_reaches_nested_layers():
    net = Sequential(make_layer(2, 3, "1x1xCxT"), Conv2d(3, 3, 3, padding=1),
                     Sequential(make_layer(3, 3, "kxkxCx1")))
    set_sparse(net, False)
    assert [m.sparse for m in net.modules() if isinstance(m, LCCLConv2d)] == [False, False]
    set_sparse(net, True)
    assert [m.sparse for m in net.modules() if isinstance(m, LCCLConv2d)] == [True, True]


def test_eval_with_separate_cheap_input():
    """The eval mask comes from cheap_input, not x."""
    rng = np.random.default_rng(7)
    layer = make_layer(3, 4, "1x1xCxT").eval()
    randomise_bn(layer, rng)
    x, u = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 3, 6, 6))
    y = layer.forward(x, cheap_input=u)
    np.testing.assert_allclose(y, reference_output(layer, x, u, training=False), rtol=1e-12,
                               atol=1e-12)
    mask_u, mask_x = layer.cheap_eval(u)[1], layer.cheap_eval(x)[1]
    np.testing.assert_array_equal(layer.last_mask, mask_u)
    assert not np.array_equal(mask_u, mask_x)


# ---------------------------------------------------------------- NaN and infinities


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(CHEAP_KINDS),
    geometry=st.sampled_from([(3, 1), (3, 2), (1, 0), (5, 2)]),
    stride=st.integers(1, 2),
    c=st.integers(1, 4),
    t=st.integers(1, 5),
    bad=st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=3),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_nan_reaches_the_same_cells_on_every_eval_path(kind, geometry, stride, c, t, bad, dtype,
                                                       seed):
    """NaN and infinities in x: the dense path, the sparse path and the unfolded cheap
    branch give NaN in the same cells, and the mask is on wherever V' is NaN (NaN opens
    the gate; see LCCLConv2d).  ``tests/fast`` holds the fast paths to the same."""
    k, padding = geometry
    rng = np.random.default_rng(seed)
    layer = make_layer(c, t, kind, k, stride, padding, dtype=dtype, seed=seed).eval()
    randomise_bn(layer, rng)
    x = rng.standard_normal((2, c, 7, 6)).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, len(bad), replace=False)] = bad
    outs = {}
    for name, sparse, fold in [("dense", False, True), ("sparse", True, True),
                               ("unfolded", True, False)]:
        layer.sparse, layer.fold_bn = sparse, fold
        out = layer.forward(x)
        outs[name] = (out, layer.last_mask.copy())
    assert_same_nan_cells(layer, x, outs)


def assert_same_nan_cells(layer, x, outs):
    """Every output of ``outs`` ({name: (O, mask)}) has NaN where the dense one has, the
    same mask, and the other cells within the layer's rounding bound; the gate is shut
    only where V' <= 0 (a NaN V' is on), and a shut gate gives exactly 0."""
    dense, mask = outs["dense"]
    with np.errstate(invalid="ignore"):
        bound = 2 * lccl_rounding_bound(layer, x)
    for name, (out, m) in outs.items():
        np.testing.assert_array_equal(np.isnan(out), np.isnan(dense), err_msg=name)
        np.testing.assert_array_equal(m, mask, err_msg=name)
        finite = np.isfinite(out) & np.isfinite(dense) & np.isfinite(bound)
        assert np.all(np.abs(out[finite] - dense[finite].astype(np.float64))
                      <= bound[finite] + 1e-300), name
    layer.sparse = False
    v_cheap, gate, _ = layer.cheap_eval(x)
    shared = v_cheap[:, 0] if layer.shared_mask else v_cheap
    np.testing.assert_array_equal(gate, ~(shared <= 0))
    assert np.all(gate[np.isnan(shared)])
    on = gate[:, None] if layer.shared_mask else gate
    assert np.all(np.broadcast_to(~on, dense.shape) <= (dense == 0))  # shut: exactly 0


def test_relu_keeps_nan_in_every_kernel():
    """ReLU(NaN) = NaN wherever a BN-ReLU is applied: np.maximum and the one-pass BN-ReLU
    (the fast path's copies that fold it in: tests/fast)."""
    x = np.array([[[[np.nan, -1.0, 2.0, np.inf, -np.inf, 0.0, 3.0, -2.0]]]], np.float32)
    s, h = np.ones(1, np.float32), np.zeros(1, np.float32)
    want = np.maximum(x, 0)
    np.testing.assert_array_equal(F.batchnorm.affine_relu_unchecked(x, s, h), want)
    np.testing.assert_array_equal(F.batchnorm2d_inference(x, np.ones(1, np.float32),
                                                          np.zeros(1, np.float32),
                                                          np.zeros(1, np.float32),
                                                          np.ones(1, np.float32) - 1e-5,
                                                          relu=True), want)
