"""Adversarial tests of the fast path, against the teaching path and independent references.

The geometries, layouts and references of ``tests/test_adversarial.py`` (``advhelp``),
through the fast kernels (the ``"vector"`` gated method and ``"auto"``'s timed choice,
the dense eval conv, the cheap branch and the fused LCCL kernel), the timed per-shape
choices met with other shapes in sequence or pinned either way, the BN-ReLU read
through the input copies (``pre``), and every layer and network with
``fast.accelerate`` against the same model on the teaching path.
"""

from __future__ import annotations

import numpy as np
import pytest
from advhelp import (
    GATED_CASE,
    GEOMS,
    LAYER_GEOMS,
    PRE_GEOMS,
    SEQUENCE,
    apply_pre,
    arrays,
    batch_statistics,
    cheap_windows,
    close,
    gated_case,
    ids,
    layouts,
    lccl_reference,
    masks,
    naive,
    random_pre,
    random_running_stats,
    reference_network,
)
from hypothesis import given, settings
from lcclhelp import randomise_bn

from lccl_ref import fast
from lccl_ref.fast import tune
from lccl_ref.fast.dense import conv2d_inference_unchecked
from lccl_ref.fast.lccl import shared_lccl_eval
from lccl_ref.models import build_model, set_sparse
from lccl_ref.nn import CHEAP_KINDS, Conv2d, LCCLConv2d

GATED = ("direct", "gather", "tiled", "vector", "auto")
DENSE = ("im2col", "vector", "auto")


@pytest.fixture
def fresh_choices(monkeypatch):
    """Empty autotune tables: what a test decides, nothing earlier."""
    table = {"dense": {}, "shared": {}, "fused": {}}
    monkeypatch.setattr(tune, "CHOICES", table)
    return table


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=ids(GEOMS))
def test_fast_kernels_on_odd_geometry(geom, dtype):
    rng, x, w, b = arrays(geom, dtype)
    n, c, _, _, t, (kh, kw), stride, padding = geom
    ref = naive(x, w, b, stride, padding)
    _, _, ho, wo = ref.shape
    scale = rng.standard_normal((n, ho, wo)).astype(dtype)
    for mname, mask in masks(rng, n, ho, wo).items():
        for method in ("vector", "auto"):
            for s in (None, scale):
                y, macs = fast.gated_conv2d(x, w, mask, b, stride, padding, method, scale=s)
                exp = ref if s is None else ref * s[:, None]
                close(y, np.where(mask[:, None], exp, 0), dtype, f"{method} {mname}")
                assert macs == int(mask.sum()) * t * c * kh * kw, (method, mname)
    for method in DENSE:
        close(fast.conv2d_inference(x, w, b, stride, padding, method), ref, dtype, method)
    wc = rng.standard_normal((1, c, kh, kw)).astype(dtype)
    for bias in (0.0, 0.5, -1e4, 1e4):  # mixed, mostly on, all off, all on
        bc = np.array([bias], dtype)
        v, mask, active = fast.cheap_single(x, wc, bc, stride, padding)
        close(v, np.maximum(naive(x, wc, bc, stride, padding)[:, 0], 0), dtype, f"{bias}")
        np.testing.assert_array_equal(mask, v > 0)
        assert active == int(mask.sum())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", GEOMS, ids=ids(GEOMS))
@pytest.mark.parametrize("gate", ["relu", "clip"])
def test_fused_on_odd_geometry(geom, dtype, gate):
    rng, x, w, _ = arrays(geom, dtype, seed=3)
    n, c, _, _, t, (kh, kw), stride, padding = geom
    dense = naive(x, w, None, stride, padding)
    for (khc, kwc), cpad in cheap_windows(geom):
        wc = rng.standard_normal((1, c, khc, kwc)).astype(dtype)
        for bias in (0.2, -1e4, 1e4):
            bc = np.array([bias], dtype)
            v_ref = np.maximum(naive(x, wc, bc, stride, cpad)[:, 0], 0)
            if gate == "clip":
                v_ref = np.minimum(v_ref, 1)
            y, v, mask, active, macs = fast.lccl_shared_eval(x, w, wc, bc, stride, padding,
                                                             cpad, gate)
            what = f"cheap {khc}x{kwc} bias {bias}"
            close(v, v_ref, dtype, what)
            np.testing.assert_array_equal(mask, v > 0)
            assert active == int(mask.sum()) and macs == active * t * c * kh * kw
            close(y, dense * v[:, None], dtype, what)


@settings(max_examples=30, deadline=None)
@given(**GATED_CASE)
def test_property_vector_and_fused_equal_the_teaching_kernels(t, c, n, h, wd, kh, kw, sh, sw,
                                                              ph, pw, dtype, density, seed):
    from lccl_ref.kernels import gated_conv2d

    case = gated_case(t, c, n, h, wd, kh, kw, sh, sw, ph, pw, dtype, density, seed)
    if case is None:
        return
    rng, x, w, b, mask, scale = case
    y_ref, m_ref = gated_conv2d(x, w, mask, b, (sh, sw), (ph, pw), "direct", scale=scale)
    y, m = fast.gated_conv2d(x, w, mask, b, (sh, sw), (ph, pw), "vector", scale=scale)
    close(y, y_ref, dtype, "vector")
    assert m == m_ref
    wc = rng.standard_normal((1, c, kh, kw)).astype(dtype)
    bc = np.array([rng.normal()], dtype)
    y, v, _, _, _ = fast.lccl_shared_eval(x, w, wc, bc, (sh, sw), (ph, pw), (ph, pw))
    close(v, np.maximum(naive(x, wc, bc, (sh, sw), (ph, pw))[:, 0], 0), dtype, "fused V'")
    close(y, naive(x, w, None, (sh, sw), (ph, pw)) * v[:, None], dtype, "fused y")


def test_every_layout_through_the_fast_kernels_is_never_written():
    dtype = np.float64
    geom = (2, 3, 7, 6, 17, (3, 3), 2, 1)
    rng, x0, w, b = arrays(geom, dtype, seed=4)
    ref = naive(x0, w, b, 2, 1)
    wc, bc = rng.standard_normal((1, 3, 3, 3)).astype(dtype), np.array([0.1], dtype)
    v_ref = np.maximum(naive(x0, wc, bc, 2, 1)[:, 0], 0)
    mask = rng.random(v_ref.shape) < 0.5
    for name, x in layouts(x0).items():
        before = x.copy()
        y, _ = fast.gated_conv2d(x, w, np.asfortranarray(mask), b, 2, 1, "vector")
        close(y, np.where(mask[:, None], ref, 0), dtype, name)
        for method in DENSE:
            close(fast.conv2d_inference(x, w, b, 2, 1, method), ref, dtype, f"{name} {method}")
        close(fast.cheap_single(x, wc, bc, 2, 1)[0], v_ref, dtype, name)
        y, v, *_ = fast.lccl_shared_eval(x, w, wc, bc, 2, 1, 1)
        close(y, (ref - b[:, None, None]) * v[:, None], dtype, name)
        np.testing.assert_array_equal(x, before, err_msg=name)
    x = np.zeros((0, 3, 5, 4))  # an empty batch
    for method in DENSE:
        assert fast.conv2d_inference(x, w, b, 1, 1, method).shape == (0, 17, 5, 4)
    y, v, mask, active, macs = fast.lccl_shared_eval(x, w, w[:1], b[:1], 1, 1, 1)
    assert y.shape == (0, 17, 5, 4) and v.shape == (0, 5, 4) and active == macs == 0


@pytest.mark.parametrize("kind", CHEAP_KINDS)
def test_one_layer_called_with_many_shapes_in_sequence(kind, fresh_choices):
    # the timed choices are cached per shape: interleaving shapes must never apply one
    # shape's cached kernel to another (a wrong Ho / Wo or batch would show here)
    rng = np.random.default_rng(5)
    layer = fast.accelerate(LCCLConv2d(3, 17, 3, 2, 1, cheap=kind, rng=1).eval())
    randomise_bn(layer, rng, spread=0.3)
    conv = fast.accelerate(Conv2d(3, 17, 3, 2, 1, rng=2).eval())
    seen = set()
    for n, h, wd in SEQUENCE + SEQUENCE[::-1]:
        x = rng.standard_normal((n, 3, h, wd)).astype(np.float32)
        out = layer.forward(x)
        close(out, lccl_reference(layer, x), np.float32, f"{kind} {(n, h, wd)}")
        assert layer.last_mask.shape[0] == n and out.shape[0] == n
        close(conv.forward(x), naive(x, conv.weight.data, None, 2, 1), np.float32, "conv")
        seen.add(x.shape)
    for table in fresh_choices.values():  # one decision per shape met, keyed by the shape
        assert {k[0] for k in table} <= seen
    assert {k[0] for k in fresh_choices["dense"]} == seen
    if kind != "1x1xCxT":
        assert {k[0] for k in fresh_choices["fused"]} == seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forcing_either_cached_choice_gives_the_same_output(dtype, fresh_choices):
    # whatever the timing decides on a given machine, both candidates must be right
    rng = np.random.default_rng(6)
    layer = fast.accelerate(LCCLConv2d(4, 25, 3, 1, 1, cheap="kxkxCx1", rng=3,
                                       dtype=dtype).eval())
    randomise_bn(layer, rng, spread=0.3)
    conv = fast.accelerate(Conv2d(4, 25, 3, 1, 1, rng=4, dtype=dtype).eval())
    for n, h, wd in [(1, 6, 6), (3, 7, 5)]:
        x = rng.standard_normal((n, 4, h, wd)).astype(dtype)
        ref = lccl_reference(layer, x)
        for fused in ("fused", "two calls"):
            for gm in ("vector", "gather"):
                for table in fresh_choices.values():
                    table.clear()
                layer.forward(x)  # fills the tables for this shape, then pin them
                for key in fresh_choices["fused"]:
                    fresh_choices["fused"][key] = dict(method=fused, ms={})
                for key in fresh_choices["shared"]:
                    fresh_choices["shared"][key] = dict(method=gm, ms={})
                close(layer.forward(x), ref, dtype, f"{fused} {gm}")
        for dm in ("im2col", "vector"):
            conv.forward(x)
            for key in fresh_choices["dense"]:
                fresh_choices["dense"][key] = dict(method=dm, ms={})
            close(conv.forward(x), naive(x, conv.weight.data, None, 1, 1), dtype, dm)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", PRE_GEOMS)
def test_dense_conv_with_pre_is_bn_relu_then_conv(geom, dtype):
    c, t, k, stride, padding = geom
    rng = np.random.default_rng(21)
    conv = Conv2d(c, t, k, stride, padding, bias=True, rng=22, dtype=dtype)
    b = rng.standard_normal(t).astype(dtype)
    pre = random_pre(rng, c, dtype)
    x0 = rng.standard_normal((2, c, 7, 8)).astype(dtype)
    ref = naive(apply_pre(x0, pre), conv.weight.data, b, stride, padding)
    for method in DENSE:
        for name, x in layouts(x0).items():
            if name in ("C", "strided", "read-only"):
                got = conv2d_inference_unchecked(x, conv.weight.data, b, conv.stride,
                                                 conv.padding, method, pre)
                close(got, ref, dtype, f"{method} {name}")
                np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", PRE_GEOMS)
@pytest.mark.parametrize("kind", ["kxkxCx1", "1x1xCx1"])
@pytest.mark.parametrize("gate", ["relu", "clip"])
def test_shared_lccl_eval_with_pre(kind, geom, dtype, gate):
    c, t, k, stride, padding = geom
    if kind.startswith("1x1") and isinstance(k, int) and padding < k // 2:
        return
    rng = np.random.default_rng(23)
    layer = LCCLConv2d(c, t, k, stride, padding, cheap=kind, rng=24, dtype=dtype,
                       gate=gate).eval()
    randomise_bn(layer, rng, 0.3, 0.3)
    pre = random_pre(rng, c, dtype)
    x = rng.standard_normal((2, c, 7, 8)).astype(dtype)
    a = apply_pre(x, pre)
    for u, ref in ((None, lccl_reference(layer, a)), (x, lccl_reference(layer, a, x))):
        for xin in (x, layouts(x)["strided"]):
            out, *_ = shared_lccl_eval(layer, xin, u, pre)
            close(out, ref, dtype, f"cheap input {'x' if u is not None else 'a'}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geom", LAYER_GEOMS)
@pytest.mark.parametrize("kind", CHEAP_KINDS)
@pytest.mark.parametrize("gate", ["relu", "clip"])
def test_accelerated_layer_equals_the_teaching_layer(kind, geom, dtype, gate):
    c, t, k, stride, padding = geom
    layer = LCCLConv2d(c, t, k, stride, padding, cheap=kind, rng=7, dtype=dtype,
                       gate=gate).eval()
    rng = np.random.default_rng(8)
    randomise_bn(layer, rng, 0.2, 0.3)
    x = rng.standard_normal((2, c, 9, 8)).astype(dtype)
    for sparse in (True, False):
        for sep in (False, True):
            layer.sparse = sparse
            u = x.copy() if sep else None
            want = fast.plain(layer).forward(x, cheap_input=u)
            stats = dict(layer.last_stats)
            got = fast.accelerate(layer).forward(x, cheap_input=u)
            close(got, want, dtype, f"sparse={sparse} separate={sep}")
            assert layer.last_stats["macs_cheap"] == stats["macs_cheap"]
            if dtype == np.float64:
                assert ({**layer.last_stats, "method": None} == {**stats, "method": None}
                        and layer.last_stats["method"] == ("accelerator" if sparse else
                                                           "dense"))


@pytest.mark.parametrize("kind, placement, shortcut", [
    ("none", "aft-aft", "identity"), ("none", "aft-aft", "projection"),
    ("kxkxCx1", "aft-aft", "identity"), ("kxkxCx1", "aft-bef", "identity"),
    ("1x1xCx1", "bef-aft", "projection"), ("1x1xCxT", "bef-bef", "identity")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gate", ["relu", "clip"])
def test_accelerated_network_equals_a_functional_reference(kind, placement, shortcut, dtype,
                                                           gate):
    rng = np.random.default_rng(17)
    model = build_model("resnet8", in_channels=2, lccl=kind, placement=placement,
                        shortcut=shortcut, rng=18, dtype=dtype, gate=gate)
    random_running_stats(model, rng)
    batch_statistics(model, rng.standard_normal((4, 2, 7, 9)).astype(dtype))
    fast.accelerate(model)
    for n in (1, 3):
        x = rng.standard_normal((n, 2, 7, 9)).astype(dtype)
        ref = reference_network(model, x)
        close(model.forward(x), ref, dtype, f"batch {n}")
        if kind != "none":
            close(set_sparse(model, False).forward(x), ref, dtype, f"dense, batch {n}")
            set_sparse(model, True)
    assert fast.is_accelerated(model) and not fast.is_accelerated(fast.plain(model))
