"""Adversarial tests of the teaching kernels and the eval paths built on them.

Shapes, layouts and call sequences a user can hit that the per-kernel tests do not:
non-square and large kernels (ResNet-18's 7x7 / stride 2 / padding 3 stem), strides
larger than the kernel, paddings larger than ``k // 2``, images smaller than the
kernel, 1x1 images, empty batches, ``C = 1`` and ``C = 300``; Fortran, strided,
reversed, read-only and channel-last-backed inputs (never written); extreme masks and
scales; every switch of the LCCL eval path; whole networks sparse vs dense and against
the defining formulas; eval-mode backward against finite differences.  Every result is
compared with an independent reference (``advhelp``).  The fast path's twin of this
file is ``tests/fast/test_adversarial.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from advhelp import (
    GATED_CASE,
    GEOMS,
    LAYER_GEOMS,
    TS,
    arrays,
    batch_statistics,
    close,
    gated_case,
    ids,
    layouts,
    lccl_reference,
    masks,
    naive,
    random_running_stats,
    reference_network,
)
from gradcheck import numerical_grad_at
from hypothesis import given, settings
from hypothesis import strategies as st
from lcclhelp import randomise_bn

from lccl_ref import functional as F
from lccl_ref.kernels import cheap_conv2d, choose_method, gated_conv2d
from lccl_ref.models import build_model, lccl_layers, set_sparse
from lccl_ref.nn import CHEAP_KINDS, Conv2d, LCCLConv2d

GATED = ("direct", "gather", "tiled", "auto")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=ids(GEOMS))
def test_gated_every_method_every_mask_on_odd_geometry(geom, dtype):
    rng, x, w, b = arrays(geom, dtype)
    n, c, _, _, t, (kh, kw), stride, padding = geom
    ref = naive(x, w, b, stride, padding)  # (N, T, Ho, Wo)
    _, _, ho, wo = ref.shape
    scale = rng.standard_normal((n, ho, wo)).astype(dtype)
    scale[rng.random((n, ho, wo)) < 0.3] = 0  # zeros and negatives in the product
    for mname, mask in masks(rng, n, ho, wo).items():
        for method in GATED:
            for s in (None, scale):
                y, macs = gated_conv2d(x, w, mask, b, stride, padding, method, scale=s)
                exp = ref if s is None else ref * s[:, None]
                close(y, np.where(mask[:, None], exp, 0), dtype, f"{method} {mname}")
                assert np.all(y[~np.broadcast_to(mask[:, None], y.shape)] == 0)
                assert macs == int(mask.sum()) * t * c * kh * kw, (method, mname)
    pc = rng.random((n, t, ho, wo)) < 0.5  # per-channel masks on the same geometry
    for method in ("direct", "tiled", "auto", "dense"):
        y, macs = gated_conv2d(x, w, pc, b, stride, padding, method)
        close(y, np.where(pc, ref, 0), dtype, method)
        computed = pc.size if choose_method(pc, method) == "dense" else int(pc.sum())
        assert macs == computed * c * kh * kw, method


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=ids(GEOMS))
def test_cheap_conv_on_odd_geometry(geom, dtype):
    rng, x, w, b = arrays(geom, dtype, seed=2)
    *_, stride, padding = geom
    close(cheap_conv2d(x, w, b, stride, padding), naive(x, w, b, stride, padding), dtype)


@settings(max_examples=30, deadline=None)
@given(**GATED_CASE)
def test_property_gather_and_tiled_equal_direct_for_any_t(t, c, n, h, wd, kh, kw, sh, sw,
                                                          ph, pw, dtype, density, seed):
    case = gated_case(t, c, n, h, wd, kh, kw, sh, sw, ph, pw, dtype, density, seed)
    if case is None:
        return
    rng, x, w, b, mask, scale = case
    y_ref, m_ref = gated_conv2d(x, w, mask, b, (sh, sw), (ph, pw), "direct", scale=scale)
    for method in ("gather", "tiled"):
        y, m = gated_conv2d(x, w, mask, b, (sh, sw), (ph, pw), method, scale=scale)
        close(y, y_ref, dtype, method)
        assert m == m_ref


@pytest.mark.parametrize("dtype", [np.float64])  # each layout is a Numba compile per dtype
def test_every_layout_gives_the_same_result_and_is_never_written(dtype):
    geom = (2, 3, 7, 6, 17, (3, 3), 2, 1)
    rng, x0, w, b = arrays(geom, dtype, seed=4)
    ref = naive(x0, w, b, 2, 1)
    mask = rng.random(ref.shape[:1] + ref.shape[2:]) < 0.5
    scale = rng.standard_normal(mask.shape).astype(dtype)
    mask_f, scale_f = np.asfortranarray(mask), scale.T.copy().T  # non-C-contiguous too
    wc, bc = rng.standard_normal((1, 3, 3, 3)).astype(dtype), np.array([0.1], dtype)
    for name, x in layouts(x0).items():
        before = x.copy()
        for method in GATED:
            y, _ = gated_conv2d(x, w, mask_f, b, 2, 1, method, scale=scale_f)
            close(y, np.where(mask[:, None], ref * scale[:, None], 0), dtype, f"{name} {method}")
        close(cheap_conv2d(x, wc, bc, 2, 1), naive(x0, wc, bc, 2, 1), dtype, name)
        np.testing.assert_array_equal(x, before, err_msg=name)
        np.testing.assert_array_equal(mask_f, mask)
    ro = [a.copy() for a in (w, b, mask, scale)]  # read-only (e.g. memory-mapped) arrays
    for a in ro:
        a.setflags(write=False)
    for method in GATED:
        y, _ = gated_conv2d(x0, ro[0], ro[2], ro[1], 2, 1, method, scale=ro[3])
        close(y, np.where(mask[:, None], ref * scale[:, None], 0), dtype, method)


def test_empty_batch_and_empty_image_through_every_kernel():
    x, w, b = np.zeros((0, 3, 5, 4)), np.ones((17, 3, 3, 3)), np.ones(17)
    for method in GATED:
        y, macs = gated_conv2d(x, w, np.zeros((0, 5, 4), bool), b, 1, 1, method)
        assert y.shape == (0, 17, 5, 4) and macs == 0
    assert cheap_conv2d(x, w[:1], b[:1], 1, 1).shape == (0, 1, 5, 4)
    rng = np.random.default_rng(20)  # H = 0 or W = 0 inside padding: every output is padding
    for shape in [(2, 3, 0, 4), (1, 3, 3, 0)]:
        x = np.zeros(shape)
        w, b = rng.standard_normal((17, 3, 3, 3)), rng.standard_normal(17)
        ref = naive(x, w, b, 1, 2)
        mask = np.ones((shape[0],) + ref.shape[2:], bool)
        for method in GATED:
            close(gated_conv2d(x, w, mask, b, 1, 2, method)[0], ref, np.float64, method)
        close(cheap_conv2d(x, w, b, 1, 2), ref, np.float64, "cheap")


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_weights_changed_in_place_and_astype_between_eval_calls(kind):
    # evaluating between training steps: nothing derived from the weights (the folded
    # cheap BN) may outlive an in-place update or a dtype change
    rng = np.random.default_rng(19)
    layer = LCCLConv2d(3, 17, 3, 1, 1, cheap=kind, rng=6, dtype=np.float32).eval()
    randomise_bn(layer, rng, spread=0.3)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    close(layer.forward(x), lccl_reference(layer, x), np.float32, "first")
    layer.conv.weight.data *= np.float32(-1.5)  # in place, as an optimiser step does
    layer.cheap_conv.weight.data += np.float32(0.1)
    layer.cheap_bn.running_mean += np.float32(0.2)
    layer.cheap_bn.weight.data *= np.float32(0.5)
    close(layer.forward(x), lccl_reference(layer, x), np.float32, "after the update")
    layer.train()
    y = layer.forward(x)  # a training step still works after eval forwards
    layer.backward(np.ones_like(y))
    layer.eval().astype(np.float64)
    x64 = x.astype(np.float64)
    close(layer.forward(x64), lccl_reference(layer, x64), np.float64, "float64 after astype")
    with pytest.raises(TypeError, match="dtype"):
        layer.forward(x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", LAYER_GEOMS)
@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_every_eval_switch_agrees_with_the_reference(kind, geom, dtype):
    c, t, k, stride, padding = geom
    layer = LCCLConv2d(c, t, k, stride, padding, cheap=kind, rng=7, dtype=dtype).eval()
    rng = np.random.default_rng(8)
    randomise_bn(layer, rng, 0.2, 0.3)
    x = rng.standard_normal((2, c, 9, 8)).astype(dtype)
    x_before = x.copy()
    ref = lccl_reference(layer, x)
    seen = []
    for sparse in (True, False):
        for fold in (True, False):
            for sep in (False, True):  # a separate cheap_input holding the same values
                layer.sparse, layer.fold_bn = sparse, fold
                out = layer.forward(x, cheap_input=x.copy() if sep else None)
                what = f"sparse={sparse} fold={fold} separate={sep}"
                close(out, ref, dtype, what)
                st_ = layer.last_stats
                seen.append(st_["density"])
                per_cell = layer.conv.weight.data[0].size  # C*kh*kw
                computed = sparse and st_["method"] != "dense"  # kernels.choose_method
                assert st_["macs_expensive"] == (
                    st_["active_cells"] * per_cell if computed else st_["macs_dense"]), what
    np.testing.assert_array_equal(x, x_before)
    assert 0 < seen[0] < 1  # the test exercises a partial mask
    if dtype == np.float64:  # the mask is the same on every path (no near-zero V' here)
        assert max(seen) - min(seen) < 0.05


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(CHEAP_KINDS), t=st.sampled_from(TS), c=st.integers(1, 5),
       n=st.integers(1, 3), h=st.integers(1, 9), wd=st.integers(1, 9),
       kh=st.sampled_from([1, 3, 5]), kw=st.sampled_from([1, 3]), sh=st.integers(1, 3),
       sw=st.integers(1, 3), extra=st.integers(0, 2),
       dtype=st.sampled_from([np.float32, np.float64]), shift=st.floats(-1, 1),
       seed=st.integers(0, 2**31 - 1))
def test_property_lccl_eval_paths_equal_the_reference(kind, t, c, n, h, wd, kh, kw, sh, sw,
                                                      extra, dtype, shift, seed):
    padding = (kh // 2 + extra, kw // 2 + extra)  # valid for the 1x1 cheap kinds too
    layer = LCCLConv2d(c, t, (kh, kw), (sh, sw), padding, cheap=kind, rng=seed, dtype=dtype)
    layer.eval()
    rng = np.random.default_rng(seed)
    randomise_bn(layer, rng, shift, 0.3)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype)
    ref = lccl_reference(layer, x)
    for sparse, fold in [(True, True), (True, False), (False, True)]:
        layer.sparse, layer.fold_bn = sparse, fold
        close(layer.forward(x), ref, dtype, f"sparse={sparse} fold={fold}")
    close(layer.forward(x, cheap_input=x.copy()), ref, dtype, "separate cheap_input")


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_eval_layer_on_odd_inputs_and_empty_batches(kind):
    rng = np.random.default_rng(9)
    layer = LCCLConv2d(3, 16, 3, 1, 1, cheap=kind, rng=5, dtype=np.float64).eval()
    randomise_bn(layer, rng, 0.2, 0.3)
    x0 = rng.standard_normal((2, 3, 6, 5))
    ref = lccl_reference(layer, x0)
    for name, x in layouts(x0).items():
        close(layer.forward(x), ref, np.float64, name)
        close(layer.forward(x, cheap_input=x), ref, np.float64, name + " cheap_input=x")
    one = rng.standard_normal((1, 3, 1, 1))  # a 1x1 image
    close(layer.forward(one), lccl_reference(layer, one), np.float64, "1x1 image")
    for sparse in (True, False):  # N = 0, as eval Conv2d and a plain network accept it
        layer.sparse = sparse
        assert layer.forward(np.zeros((0, 3, 6, 5))).shape == (0, 16, 6, 5)
        st_ = layer.last_stats
        assert st_["active_cells"] == st_["macs_expensive"] == 0 and st_["density"] == 0.0


@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("sparse", [True, False])
def test_eval_layer_refuses_what_eval_conv_refuses(kind, sparse):
    # a float64 x into a float32 layer, and an input smaller than the kernel: a named
    # error, never mixed dtypes or a failure inside a kernel
    layer = LCCLConv2d(3, 16, 3, 1, 0 if kind == "kxkxCx1" else 1, cheap=kind, rng=5).eval()
    layer.sparse = sparse
    with pytest.raises(TypeError, match="dtype"):
        layer.forward(np.ones((1, 3, 6, 6), np.float64))
    small = np.ones((1, 3, 2, 2) if kind == "kxkxCx1" else (1, 3, 0, 3), np.float32)
    with pytest.raises(ValueError, match="kernel"):
        layer.forward(small)


@pytest.mark.parametrize("name, hw", [("resnet20", 16), ("wrn-16-4", 8)])
@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network_sparse_eval_equals_dense_eval(name, hw, kind, dtype):
    rng = np.random.default_rng(10)
    model = build_model(name, lccl=kind, rng=11, dtype=dtype)
    random_running_stats(model, rng)  # random gamma and beta, then real statistics
    batch_statistics(model, rng.standard_normal((4, 3, hw, hw + 1)).astype(dtype))
    for _, layer in lccl_layers(model):  # halve V' (same mask): a stable eval network
        layer.cheap_bn.weight.data *= dtype(0.5)
        layer.cheap_bn.bias.data *= dtype(0.5)
    for n in (1, 3):
        x = rng.standard_normal((n, 3, hw, hw + 1)).astype(dtype)  # odd W: ceil at stride 2
        dense = set_sparse(model, False).forward(x)
        d_dense = np.array([m.last_stats["density"] for _, m in lccl_layers(model)])
        sparse = set_sparse(model, True).forward(x)
        d_sparse = np.array([m.last_stats["density"] for _, m in lccl_layers(model)])
        assert np.isfinite(dense).all() and np.sum((d_sparse > 0) & (d_sparse < 1)) > 5
        np.testing.assert_allclose(d_sparse, d_dense, atol=1e-3 if dtype == np.float64 else 2e-2)
        rtol = 1e-9 if dtype == np.float64 else 2e-3
        scale = float(np.abs(dense).max())
        np.testing.assert_allclose(sparse, dense, rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{name} {kind} batch {n}")
        one = model.forward(x[:1])  # batch 1 after batch n: the same first logits
        np.testing.assert_allclose(one, dense[:1], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("kind, placement, shortcut", [
    ("none", "aft-aft", "identity"), ("none", "aft-aft", "projection"),
    ("kxkxCx1", "aft-bef", "identity"), ("1x1xCx1", "bef-aft", "projection"),
    ("1x1xCxT", "bef-bef", "identity")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network_eval_equals_a_functional_reference(kind, placement, shortcut, dtype):
    # the whole eval forward (sparse LCCL) against the defining formulas, on a small net
    # with odd image sizes (ceil at every stride 2)
    rng = np.random.default_rng(17)
    model = build_model("resnet8", in_channels=2, lccl=kind, placement=placement,
                        shortcut=shortcut, rng=18, dtype=dtype)
    random_running_stats(model, rng)
    batch_statistics(model, rng.standard_normal((4, 2, 7, 9)).astype(dtype))
    for n in (1, 3):
        x = rng.standard_normal((n, 2, 7, 9)).astype(dtype)
        ref = reference_network(model, x)
        close(model.forward(x), ref, dtype, f"batch {n}")
        if kind != "none":
            close(set_sparse(model, False).forward(x), ref, dtype, f"dense, batch {n}")
            set_sparse(model, True)
    assert model.forward(np.zeros((0, 2, 7, 9), dtype)).shape == (0, 10)


def test_eval_backward_of_a_plain_network_is_the_gradient_of_its_eval_forward():
    # LCCL-free WRN (projection shortcuts) with odd image sizes: an eval forward, then
    # backward through frozen BN, vs finite differences
    rng = np.random.default_rng(12)
    model = build_model("wrn-10-1", in_channels=2, num_classes=3, rng=13, dtype=np.float64)
    random_running_stats(model, rng)
    model.eval()
    x = rng.standard_normal((2, 2, 5, 7))
    y = model.forward(x)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)

    def fd(arr, idx):
        return numerical_grad_at(lambda _: float(np.sum(model.forward(x) * dy)), arr, idx)

    idx = rng.choice(x.size, 20, replace=False)
    np.testing.assert_allclose(dx.reshape(-1)[idx], fd(x, idx), rtol=1e-5, atol=1e-8)
    for pname, p in model.named_parameters():
        j = rng.choice(p.data.size, min(2, p.data.size), replace=False)
        np.testing.assert_allclose(p.grad.reshape(-1)[j], fd(p.data, j), rtol=1e-5, atol=1e-8,
                                   err_msg=pname)
    before = model.bn.running_mean.copy()  # running statistics untouched
    model.forward(x)
    model.backward(dy)
    np.testing.assert_array_equal(model.bn.running_mean, before)


@pytest.mark.parametrize("k, stride, padding", [((1, 3), 1, (0, 1)), (7, 2, 3), (3, 3, 2)])
def test_eval_conv_backward_on_odd_geometry_equals_training_backward(k, stride, padding):
    rng = np.random.default_rng(14)
    conv = Conv2d(3, 5, k, stride, padding, bias=True, rng=15, dtype=np.float64)
    x = rng.standard_normal((2, 3, 9, 8))
    y_train = conv.forward(x)
    dy = rng.standard_normal(y_train.shape)
    conv.zero_grad()
    dx_train = conv.backward(dy)
    dw_train = conv.weight.grad.copy()
    conv.eval()
    close(conv.forward(x), y_train, np.float64)
    conv.zero_grad()
    close(conv.backward(dy), dx_train, np.float64)
    close(conv.weight.grad, dw_train, np.float64)


def test_batchnorm_inference_on_odd_layouts():
    rng = np.random.default_rng(16)
    c = 5
    g, bta = rng.uniform(-1, 2, c), rng.normal(0, 1, c)  # negative gamma too
    mu, var = rng.normal(0, 1, c), rng.uniform(0.1, 2, c)
    x0 = rng.standard_normal((3, c, 4, 7))
    ref, _ = F.batchnorm2d_forward(x0, g, bta, mu.copy(), var.copy(), False)
    for name, x in layouts(x0).items():
        for relu in (False, True):
            y = F.batchnorm2d_inference(x, g, bta, mu, var, relu=relu)
            close(y, np.maximum(ref, 0) if relu else ref, np.float64, f"{name} relu={relu}")
    assert F.batchnorm2d_inference(x0[:0], g, bta, mu, var).shape == (0, c, 4, 7)
