"""``fast.accelerate``: the hooks it fills, and the fast LCCL path against the teaching one.

The fused kernel and the two calls (forced in turn), NaN and infinities through every
fast path (the BN-ReLU folded into the copies too), the hook switched on and off, and
a backward pass after an accelerated eval forward (frozen-BN fine-tuning).
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_grad_at
from hypothesis import given, settings
from hypothesis import strategies as st
from lcclhelp import randomise_bn
from test_lccl import assert_same_nan_cells, make_layer
from test_models import CASES, tiny

from lccl_ref import fast
from lccl_ref import functional as F
from lccl_ref.fast import lccl as fast_lccl
from lccl_ref.fast.dense import conv2d_inference_unchecked
from lccl_ref.models import PreActBlock, build_model, set_sparse
from lccl_ref.nn import Conv2d, LCCLConv2d


@pytest.mark.parametrize("kind", ["kxkxCx1", "1x1xCx1"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gate", ["relu", "clip"])
def test_fused_and_two_call_eval_paths_agree(kind, stride, dtype, gate, monkeypatch):
    # the shared-mask sparse path runs whichever of the fused kernel and the two calls was
    # faster for the shape; force each in turn: same output, mask, density and MACs, and
    # both equal the teaching path
    rng = np.random.default_rng(3)
    layer = make_layer(5, 17, kind, stride=stride, dtype=dtype, seed=3, gate=gate).eval()
    layer.cheap_bn.bias.data[...] = 0.2
    x = rng.standard_normal((2, 5, 9, 8)).astype(dtype)
    teaching = layer.forward(x)
    results = {}
    fast.accelerate(layer)
    for name in ("fused", "two calls"):
        monkeypatch.setattr(fast_lccl, "fastest", lambda q, key, cands, name=name: name)
        out = layer.forward(x)
        results[name] = (out, layer.last_mask.copy(), dict(layer.last_stats))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    (o1, m1, s1), (o2, m2, s2) = results["fused"], results["two calls"]
    np.testing.assert_allclose(o1, o2, **tol)
    np.testing.assert_allclose(o1, teaching, **tol)
    assert np.array_equal(m1, m2) and s1 == s2
    assert 0 < s1["density"] < 1
    assert s1["macs_expensive"] == int(m1.sum()) * 17 * 5 * 9


def test_the_fused_kernel_is_skipped_for_a_separate_cheap_input(monkeypatch):
    calls = []
    real = fast_lccl.lccl_shared_eval_unchecked
    monkeypatch.setattr(fast_lccl, "fastest", lambda q, key, cands: "fused")
    monkeypatch.setattr(fast_lccl, "lccl_shared_eval_unchecked",
                        lambda *a: calls.append("fused") or real(*a))
    layer = fast.accelerate(make_layer(3, 4, "kxkxCx1", dtype=np.float32).eval())
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    layer.forward(x)
    assert calls == ["fused"]
    layer.forward(x, cheap_input=x + 1)  # the cheap branch reads another input: two calls
    assert calls == ["fused"]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["kxkxCx1", "1x1xCx1"]),
       geometry=st.sampled_from([(3, 1), (3, 2), (1, 0), (5, 2)]), stride=st.integers(1, 2),
       c=st.integers(1, 4), t=st.integers(1, 5),
       bad=st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=3),
       pre=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_nan_reaches_the_same_cells_on_every_fast_path(kind, geometry, stride, c, t, bad, pre,
                                                       dtype, seed):
    k, padding = geometry
    rng = np.random.default_rng(seed)
    layer = make_layer(c, t, kind, k, stride, padding, dtype=dtype, seed=seed).eval()
    randomise_bn(layer, rng)
    x = rng.standard_normal((2, c, 7, 6)).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, len(bad), replace=False)] = bad
    affine = (np.full(c, 1.5, dtype), np.full(c, -0.25, dtype)) if pre else None
    xe = x if affine is None else F.batchnorm.affine_relu_unchecked(x, *affine)
    layer.sparse = False
    outs = {"dense": (layer.forward(xe), layer.last_mask.copy())}
    layer.sparse = True
    real = fast_lccl.fastest
    try:
        for name in ("fused", "two calls"):
            fast_lccl.fastest = lambda q, key, cands, trials=3, name=name: name
            out, _, mask, _, _ = fast_lccl.shared_lccl_eval(layer, x, None, affine)
            outs[name] = (out, mask)
    finally:
        fast_lccl.fastest = real
    assert_same_nan_cells(layer, xe, outs)


def test_relu_keeps_nan_in_the_fast_copies():
    x = np.array([[[[np.nan, -1.0, 2.0, np.inf, -np.inf, 0.0, 3.0, -2.0]]]], np.float32)
    s, h = np.ones(1, np.float32), np.zeros(1, np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    for method in ("vector", "im2col"):
        got = conv2d_inference_unchecked(x, w, None, (1, 1), (0, 0), method, (s, h))
        np.testing.assert_array_equal(got, np.maximum(x, 0), err_msg=method)


def test_accelerate_sets_and_plain_clears_every_hook():
    model = build_model("resnet8", lccl="kxkxCx1", rng=0)
    hooked = [m for m in model.modules() if isinstance(m, (Conv2d, LCCLConv2d, PreActBlock))]
    assert not fast.is_accelerated(model)
    assert fast.accelerate(model) is model
    assert all(m.accelerator is not None for m in hooked)
    assert fast.plain(model) is model and not fast.is_accelerated(model)
    assert all(m.accelerator is None for m in hooked)
    with pytest.raises(TypeError, match="model must be a Module"):
        fast.accelerate("resnet8")


@pytest.mark.parametrize("shortcut", ["identity", "projection"])
def test_backward_after_an_accelerated_eval_forward_is_exact(shortcut):
    # frozen-BN fine-tuning: the accelerated block folds each BN-ReLU into the next
    # convolution's copy, and must still leave what a backward pass needs
    rng = np.random.default_rng(5)
    model = build_model("wrn-10-1", in_channels=2, num_classes=3, shortcut=shortcut, rng=13,
                        dtype=np.float64)
    for m in model.modules():
        if hasattr(m, "running_var"):
            m.running_mean[...] = rng.standard_normal(m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
    fast.accelerate(model.eval())
    x = rng.standard_normal((2, 2, 6, 7))
    y = model.forward(x)
    np.testing.assert_allclose(y, fast.plain(model).forward(x), rtol=1e-10, atol=1e-12)
    fast.accelerate(model)
    y = model.forward(x)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)
    idx = rng.choice(x.size, size=16, replace=False)
    numeric = numerical_grad_at(lambda _: np.sum(model.forward(x) * dy), x, idx)
    np.testing.assert_allclose(dx.reshape(-1)[idx], numeric, rtol=1e-5, atol=1e-9)
    for name, p in model.named_parameters():
        j = rng.choice(p.data.size, size=min(2, p.data.size), replace=False)
        num = numerical_grad_at(lambda _: np.sum(model.forward(x) * dy), p.data, j)
        np.testing.assert_allclose(p.grad.reshape(-1)[j], num, rtol=1e-5, atol=1e-9,
                                   err_msg=name)


@pytest.mark.parametrize("kind, placement, shortcut", CASES)
def test_eval_bn_relu_folded_into_the_convs_equals_the_teaching_forward(kind, placement,
                                                                        shortcut):
    # accelerated blocks put each BN-ReLU into the next convs' input copy (pre); they
    # must give the teaching path's eval output (one pass per BN-ReLU), sparse and dense
    rng = np.random.default_rng(CASES.index((kind, placement, shortcut)))
    model = tiny(kind, placement, shortcut)
    for m in model.modules():
        if hasattr(m, "running_var"):
            m.running_mean[...] = rng.standard_normal(m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
    model.eval()
    x = rng.standard_normal((2, 2, 8, 8))
    for sparse in (True, False):
        set_sparse(model, sparse) if kind != "none" else None
        folded = fast.accelerate(model).forward(x)
        unfolded = fast.plain(model).forward(x)
        np.testing.assert_allclose(folded, unfolded, rtol=1e-10, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 5), t=st.sampled_from([1, 4]),
       k=st.sampled_from([1, 3]), h=st.integers(3, 9), w=st.integers(3, 9),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dtype=st.sampled_from(["f4", "f8"]),
       transposed=st.booleans(), seed=st.integers(0, 2**16))
def test_cheap_gemm_equals_the_naive_conv(n, c, t, k, h, w, stride, pad, dtype, transposed,
                                          seed):
    from lccl_ref.fast.percell import cheap_gemm

    g = np.random.default_rng(seed)
    u = g.standard_normal((n, c, w, h) if transposed else (n, c, h, w)).astype(dtype)
    if transposed:
        u = u.transpose(0, 1, 3, 2)  # non-contiguous input
    wt = g.standard_normal((t, c, k, k)).astype(dtype)
    b = g.standard_normal(t).astype(dtype)
    got = cheap_gemm(u, wt, b, (stride, stride), (pad, pad))
    ref = F.conv2d_naive(u.astype("f8"), wt.astype("f8"), b.astype("f8"), stride, pad)
    assert got.dtype == np.dtype(dtype) and got.shape == ref.shape
    tol = 1e-4 if dtype == "f4" else 1e-11
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
