"""Engine: the whole-network eval forward in one compiled call, against the module path.

The module path (``model.eval(); model.forward(x)``) is the reference: logits to
float rounding (float32: within a tolerance derived from the network, against the float64
module path, see ``lcclhelp``), LCCL masks and expensive MACs exactly, dense MACs against the
layer shapes and ``flops.mac_table``; ``sparse=False`` against
``models.plain_network``; geometry (strides, odd and non-square sizes, projection
shortcuts, batch 0, several sizes per engine), ``refresh``, the argument checks,
and a hypothesis property test over random small networks.

The first engine call of each dtype compiles (or loads from Numba's disk cache)
``run.run_program``; the module-scoped fixtures below make that happen once per dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lcclhelp import assert_float32_close, eval_forward, floor_bn_variance, randomise_bn

from lccl_ref.bench import calibrate, walk
from lccl_ref.fast.engine import OP_NAMES, Engine
from lccl_ref.flops import mac_table
from lccl_ref.models import PreActResNet, build_model, lccl_layers, plain_network
from lccl_ref.nn import BatchNorm2d, Conv2d, LCCLConv2d, Sequential

SHARED_KINDS = ("kxkxCx1", "1x1xCx1")
#: float64 against float64: relative to the largest logit.  float32 is compared with the
#: float64 module path instead, within a tolerance derived from the network (lcclhelp).
TOL64 = 1e-10

# ---------------------------------------------------------------- helpers


def randomise_bns(model, rng, stats=True):
    """Non-trivial gamma, beta (and running statistics) for every BN outside the cheap
    branches, so that the BN-ReLU folded into the kernels' input copies is exercised."""
    for name, m in model.named_modules():
        if isinstance(m, BatchNorm2d) and not name.endswith("cheap_bn"):
            dt, k = m.weight.data.dtype, m.num_features
            m.weight.data = rng.uniform(0.5, 1.5, k).astype(dt)
            m.bias.data = rng.normal(0.0, 0.3, k).astype(dt)
            if stats:
                m.running_mean = rng.normal(0.0, 0.3, k).astype(dt)
                m.running_var = rng.uniform(0.5, 2.0, k).astype(dt)


def prepare(model, x, density=0.5, seed=0):
    """Random BN parameters; for an LCCL net, cheap BNs calibrated to ``density`` on ``x``."""
    rng = np.random.default_rng(seed)
    randomise_bns(model, rng)
    layers = lccl_layers(model)
    for _, layer in layers:
        randomise_bn(layer, rng)
    if layers:
        calibrate(model, x, density)  # BN statistics from x, cheap biases for density
    return model


module_forward = eval_forward


def images(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(got, want, dtype, model=None, x=None, forward=module_forward):
    """float64: relative to the largest logit (the logits of an untrained net can be tiny).
    float32: against the float64 ``forward`` of ``model`` on ``x``, within a tolerance derived
    from this network and input (``lcclhelp.float32_tolerance``; ``want`` is the float32
    ``forward``, one of the measures), as two float32 summation orders differ by more than
    any fixed tolerance on some machine."""
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    if np.dtype(dtype) == np.float32:
        assert_float32_close(got, model, x, forward, want32=want)
        return
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(got.astype(np.float64) - want).max()) / scale
    assert err <= TOL64, f"relative error {err:.3g} > {TOL64}"


def assert_matches_module(engine, model, x):
    """Logits, masks, active counts, expensive and cheap MACs of every LCCL layer, and the
    dense MACs of every conv layer, against the module path on the same ``x``."""
    dtype = x.dtype.type
    got = engine(x)
    want = module_forward(model, x)
    assert_close(got, want, dtype, model, x)
    modules = dict(model.named_modules())
    lccl_names = [name for name, _ in lccl_layers(model)]
    assert set(engine.last_masks) == set(lccl_names)
    assert [r["name"] for r in engine.last_stats if r["kind"] == "lccl"] == lccl_names
    for row in engine.last_stats:
        m = modules[row["name"]]
        conv = m.conv if isinstance(m, LCCLConv2d) else m
        n, c, h, w = conv.last_input_shape
        ho, wo = conv.output_shape(h, w)
        t, _, kh, kw = conv.weight.data.shape
        assert row["macs_dense"] == n * ho * wo * t * c * kh * kw, row["name"]
        if isinstance(m, LCCLConv2d):
            assert row["kind"] == "lccl"
            mask = engine.last_masks[row["name"]]
            assert mask.shape == (n, ho, wo) and mask.dtype == np.bool_
            np.testing.assert_array_equal(mask, m.last_mask, err_msg=row["name"])
            assert row["active"] == int(np.count_nonzero(mask))
            assert row["macs_expensive"] == m.last_stats["macs_expensive"], row["name"]
            assert row["macs_expensive"] == row["active"] * t * c * kh * kw
            assert row["macs_cheap"] == m.last_stats["macs_cheap"]
            assert row["macs"] == row["macs_cheap"] + row["macs_expensive"]
            assert row["density"] == pytest.approx(m.last_stats["density"], abs=1e-12)
        else:
            assert row["kind"] == "conv" and row["macs"] == row["macs_dense"]
    head = x.shape[0] * model.fc.in_features * model.fc.out_features
    assert engine.last_macs["dense"] == sum(r["macs_dense"] for r in engine.last_stats) + head
    assert engine.last_macs["executed"] == sum(r["macs"] for r in engine.last_stats) + head
    return got


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    """Compiles (or loads) ``run.run_program`` for the dtype once, on a tiny plain net."""
    model = build_model("resnet8", rng=0, dtype=request.param)
    Engine(model)(images((1, 3, 4, 4), request.param))
    return request.param


# ---------------------------------------------------------------- 1-2. output and MACs


@pytest.mark.parametrize("kind, density", [("none", None)] + [(k, r) for k in SHARED_KINDS
                                                                for r in (0.0, 0.5, 1.0)])
def test_resnet8_equals_module_forward(dtype, kind, density):
    x = images((3, 3, 8, 8), dtype, seed=1)
    model = prepare(build_model("resnet8", lccl=kind, rng=2, dtype=dtype), x, density)
    engine = Engine(model)
    got = assert_matches_module(engine, model, x)
    assert np.all(np.isfinite(got))
    if kind != "none":
        want_active = {0.0: 0, 1.0: None}.get(density, -1)
        for row in engine.last_stats:
            if row["kind"] != "lccl":
                continue
            cells = int(np.prod(engine.last_masks[row["name"]].shape))
            if want_active == 0:
                assert row["active"] == 0 and row["macs_expensive"] == 0
            elif want_active is None:
                assert row["active"] == cells
            else:
                assert 0 < row["active"] < cells  # calibrated to about half


def test_density_zero_reduces_to_the_shortcut_path():
    """With every mask off each block adds nothing, so the logits come from the stem and
    the parameter-free shortcuts alone: an oracle that does not use the module path."""
    x = images((2, 3, 8, 8), np.float64, seed=3)
    model = prepare(build_model("resnet8", lccl="kxkxCx1", rng=4, dtype=np.float64), x, 0.0)
    got = Engine(model)(x)
    w = model.stem.weight.data  # (16, 3, 3, 3), padding 1
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    z = np.zeros((2, 16, 8, 8))
    for a in range(3):
        for b in range(3):
            z += np.einsum("nchw,tc->nthw", xp[:, :, a:a + 8, b:b + 8], w[:, :, a, b])
    z = z[:, :, ::2, ::2][:, :, ::2, ::2]  # layer2 and layer3 subsample, pad channels
    z = np.concatenate([z, np.zeros((2, 48, 2, 2))], axis=1)
    bn = model.bn
    s = bn.weight.data / np.sqrt(bn.running_var + bn.eps)
    a = np.maximum(z * s[:, None, None] + (bn.bias.data - bn.running_mean * s)[:, None, None], 0)
    want = a.mean(axis=(2, 3)) @ model.fc.weight.data.T + model.fc.bias.data
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["none", "kxkxCx1"])
def test_resnet20_dense_macs_match_the_paper_and_mac_table(kind):
    """ResNet-20 at 32x32: 40,551,040 MACs per image, every 3x3 conv plus the classifier."""
    x = images((2, 3, 32, 32), np.float32, seed=5)
    model = build_model("resnet20", lccl=kind, rng=0)
    if kind != "none":
        calibrate(model, x, 0.4)
    engine = Engine(model)
    engine(x)
    assert engine.last_macs["dense"] == 2 * 40_551_040
    assert engine.last_macs["dense"] == 2 * mac_table(model, x=x[:1])["total_dense"]
    if kind == "none":
        assert engine.last_macs["executed"] == engine.last_macs["dense"]
    else:
        assert engine.last_macs["executed"] < engine.last_macs["dense"]
        table = mac_table(model, x=x)  # measured densities of the same batch
        # total_lccl = cheap + dense * (measured r), per image: the engine's count, exactly
        assert engine.last_macs["executed"] == pytest.approx(2 * table["total_lccl"], rel=1e-12)


def test_last_ops_lists_every_op():
    x = images((2, 3, 8, 8), np.float64, seed=6)
    model = prepare(build_model("resnet8", lccl="1x1xCx1", rng=7, dtype=np.float64), x)
    for sparse in (True, False):
        engine = Engine(model, sparse=sparse)
        engine(x)
        names = [name for name, _ in engine.last_ops]
        assert set(names) <= set(OP_NAMES) and names[-1] == "HEAD"
        assert all(isinstance(c, int) and c >= 0 for _, c in engine.last_ops)
        assert names.count("CONV") + names.count("LCCL") == len(engine.last_stats) == 7
        assert names.count("LCCL") == (6 if sparse else 0)
        cycles, layer_ops = engine.last_cycles  # the same counts, as arrays
        assert cycles.tolist() == [c for _, c in engine.last_ops]
        assert cycles[layer_ops].tolist() == [r["cycles"] for r in engine.last_stats]
        assert [names[k] for k in layer_ops] == [
            "LCCL" if r["kind"] == "lccl" else "CONV" for r in engine.last_stats]
    assert Engine(model).last_cycles is None  # before any call


# ---------------------------------------------------------------- 3. sparse=False


def plain_forward(model, x):
    """The module path with every LCCL layer's expensive conv alone."""
    return module_forward(plain_network(model), x)


@pytest.mark.parametrize("name, shape", [("resnet8", (2, 3, 8, 8)), ("wrn-10-1", (2, 3, 9, 7))])
def test_dense_engine_equals_plain_network(dtype, name, shape):
    x = images(shape, dtype, seed=8)
    model = prepare(build_model(name, lccl="kxkxCx1", rng=9, dtype=dtype), x, 0.3)
    engine = Engine(model, sparse=False)
    got = engine(x)
    want = plain_forward(model, x)
    assert_close(got, want, dtype, model, x, plain_forward)
    assert engine.last_masks == {}
    assert all(r["kind"] == "conv" and r["macs"] == r["macs_dense"] for r in engine.last_stats)
    assert engine.last_macs["executed"] == engine.last_macs["dense"]
    assert engine.last_macs["dense"] == 2 * mac_table(model, x=x[:1])["total_dense"]
    # the sparse engine on the same model differs (masks at 0.3 are not all on)
    assert not np.allclose(Engine(model)(x), got)


# ---------------------------------------------------------------- 4. geometry


@pytest.mark.parametrize("kind", ["none", *SHARED_KINDS])
@pytest.mark.parametrize("hw", [(28, 28), (13, 13), (7, 9)])
def test_mnist_resnet_stride_two_everywhere(kind, hw):
    """Stride 2 in every stage, odd sizes (13 -> 7 -> 4 -> 2, 7x9 -> 4x5 -> 2x3 -> 1x2)."""
    x = images((2, 1, *hw), np.float64, seed=10)
    model = prepare(build_model("mnist-resnet", lccl=kind, rng=11, dtype=np.float64), x, 0.6)
    assert_matches_module(Engine(model), model, x)


@pytest.mark.parametrize("kind", ["none", *SHARED_KINDS])
def test_wrn_projection_shortcuts(dtype, kind):
    x = images((2, 3, 10, 14), dtype, seed=12)
    model = prepare(build_model("wrn-10-1", lccl=kind, rng=13, dtype=dtype), x, 0.5)
    assert any(b.shortcut_kind == "projection" for b in (*model.layer2, *model.layer3))
    engine = Engine(model)
    assert_matches_module(engine, model, x)
    names = [r["name"] for r in engine.last_stats]
    assert "layer2.0.shortcut" in names and "layer3.0.shortcut" in names


def test_projection_shortcut_at_stride_one_reads_the_pre_activation():
    """A width change without a stride: the projection reads BN1-ReLU(x) through ``pre``."""
    x = images((2, 3, 6, 7), np.float64, seed=14)
    model = PreActResNet(1, (4, 8), stem_channels=2, in_channels=3, lccl="kxkxCx1",
                         shortcut="projection", rng=15, dtype=np.float64, strides=(1, 1))
    prepare(model, x, 0.5)
    assert_matches_module(Engine(model), model, x)


def test_several_sizes_and_batches_with_one_engine():
    model = build_model("resnet8", lccl="kxkxCx1", rng=16, dtype=np.float64)
    x0 = images((3, 3, 10, 14), np.float64, seed=17)
    prepare(model, x0, 0.5)
    engine = Engine(model)
    first = assert_matches_module(engine, model, x0)
    for shape in [(2, 3, 12, 12), (1, 3, 5, 11), (4, 3, 10, 14)]:
        assert_matches_module(engine, model, images(shape, np.float64, seed=sum(shape)))
    # back to the first size: its program (and its padded buffers) still give the same result
    np.testing.assert_array_equal(engine(x0), first)


def test_images_are_independent_and_input_is_untouched():
    x = images((4, 3, 8, 8), np.float64, seed=18)
    model = prepare(build_model("resnet8", lccl="1x1xCx1", rng=19, dtype=np.float64), x, 0.5)
    engine = Engine(model)
    keep = x.copy()
    batch = engine(x)
    masks = {k: v.copy() for k, v in engine.last_masks.items()}
    np.testing.assert_array_equal(x, keep)
    for i in (3, 0):  # one image at a time, in another order: the same numbers, bit for bit
        np.testing.assert_array_equal(engine(x[i:i + 1])[0], batch[i])
        for name, m in engine.last_masks.items():
            np.testing.assert_array_equal(m[0], masks[name][i])
    # non-contiguous views give the contiguous result
    np.testing.assert_array_equal(engine(np.asfortranarray(x)), batch)
    wide = np.zeros((4, 3, 8, 16))
    wide[..., ::2] = x
    np.testing.assert_array_equal(engine(wide[..., ::2]), batch)


def test_training_mode_model_gives_the_eval_forward():
    x = images((2, 3, 8, 8), np.float64, seed=20)
    model = prepare(build_model("resnet8", lccl="kxkxCx1", rng=21, dtype=np.float64), x)
    want = module_forward(model, x)
    model.train()
    got = Engine(model)(x)
    assert model.training
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_batch_zero():
    """N = 0: empty logits, empty masks of the right spatial shape, no MACs, density 0."""
    x = images((2, 3, 8, 8), np.float64, seed=22)
    model = prepare(build_model("resnet8", lccl="kxkxCx1", rng=23, dtype=np.float64), x)
    engine = Engine(model)
    out = engine(x[:0])
    assert out.shape == (0, 10) and out.dtype == np.float64
    assert module_forward(model, x[:0]).shape == (0, 10)
    assert engine.last_macs["executed"] == engine.last_macs["dense"] == 0
    assert engine.last_masks["layer1.0.conv1"].shape == (0, 8, 8)
    assert engine.last_masks["layer3.0.conv2"].shape == (0, 2, 2)
    assert all(r["macs"] == 0 for r in engine.last_stats)
    assert all(r["density"] == 0.0 for r in engine.last_stats if r["kind"] == "lccl")
    assert_matches_module(engine, model, x)  # and the engine still works afterwards


def test_more_classes_than_any_activation():
    """resnet8 with 100 classes on 2x2 images: every activation has at most 64 cells
    (the HEAD op once took a (classes, 1) view of an activation buffer: ValueError)."""
    model = build_model("resnet8", num_classes=100, rng=24, dtype=np.float64)
    x = images((1, 3, 2, 2), np.float64, seed=25)
    np.testing.assert_allclose(Engine(model)(x), module_forward(model, x), rtol=1e-10)


# ---------------------------------------------------------------- 5. refresh


def test_refresh_reads_changed_weights_and_statistics():
    x = images((2, 3, 8, 8), np.float64, seed=26)
    model = prepare(build_model("resnet8", lccl="kxkxCx1", rng=27, dtype=np.float64), x)
    engine = Engine(model)
    old = engine(x)
    changes = [
        lambda: model.layer2[0].conv1.conv.weight.data.__imul__(-1.5),  # in place
        lambda: model.stem.weight.data.__iadd__(0.1),
        lambda: model.layer1[0].bn2.running_mean.__iadd__(0.5),
        lambda: model.layer3[0].conv2.cheap_conv.weight.data.__imul__(0.5),
        lambda: model.fc.weight.data.__imul__(2.0),
        lambda: model.bn.bias.data.__iadd__(0.25),
    ]
    for change in changes:
        change()
        want = module_forward(model, x)
        assert not np.allclose(want, old)
        np.testing.assert_array_equal(engine(x), old)  # the compiled program's weights
        engine.refresh()
        new = assert_matches_module(engine, model, x)
        old = new


# ---------------------------------------------------------------- 6. errors


@pytest.fixture(scope="module")
def small_engine():
    return Engine(build_model("resnet8", rng=30))  # float32


@pytest.mark.parametrize("bad", [[[[[0.0]]]], 3.0, None])
def test_x_must_be_an_ndarray(small_engine, bad):
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        small_engine(bad)


@pytest.mark.parametrize("dt", [np.int64, np.float16])
def test_x_must_be_float32_or_float64(small_engine, dt):
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        small_engine(np.zeros((1, 3, 4, 4), dtype=dt))


def test_x_must_have_the_model_dtype(small_engine):
    with pytest.raises(TypeError, match="x has dtype float64 but the model is float32"):
        small_engine(np.zeros((1, 3, 4, 4)))


@pytest.mark.parametrize("shape, words", [((1, 2, 4, 4), "x must have 3 channels"),
                                          ((3, 4, 4), "x must be 4-D"),
                                          ((1, 1, 3, 4, 4), "x must be 4-D"),
                                          ((1, 3, 0, 4), "positive height and width")])
def test_x_shape(small_engine, shape, words):
    with pytest.raises(ValueError, match=words):
        small_engine(np.zeros(shape, dtype=np.float32))


def test_model_must_be_a_preact_resnet():
    with pytest.raises(TypeError, match="model must be a PreActResNet.*got Conv2d"):
        Engine(Conv2d(3, 4, 3))
    with pytest.raises(TypeError, match="model must be a PreActResNet.*got Sequential"):
        Engine(Sequential(Conv2d(3, 4, 3)))
    model = build_model("resnet8", rng=0)
    model.layer2 = Sequential(Conv2d(16, 32, 3, 2, 1))
    with pytest.raises(TypeError, match="layer2.0 is a Conv2d, not a PreActBlock"):
        Engine(model)


def test_per_channel_masks_are_refused():
    with pytest.raises(ValueError, match="layer1.0.conv1: .*shared-mask LCCL layers.*1x1xCxT"):
        Engine(build_model("resnet8", lccl="1x1xCxT", rng=0))


@pytest.mark.parametrize("placement, layer", [("aft-bef", "conv2"), ("bef-aft", "conv1"),
                                              ("bef-bef", "conv1")])
def test_bef_placements_are_refused(placement, layer):
    model = build_model("resnet8", lccl="kxkxCx1", placement=placement, rng=0)
    with pytest.raises(ValueError, match=f"layer1.0.{layer}: a 'bef' placement"):
        Engine(model)
    # a plain net ignores the placement
    Engine(build_model("resnet8", placement=placement, rng=0))


# ---------------------------------------------------------------- 7. property test


@st.composite
def networks(draw):
    n_stages = draw(st.integers(2, 3))
    widths = draw(st.lists(st.sampled_from([2, 3, 5, 8, 17]), min_size=n_stages,
                          max_size=n_stages))  # 17: two channel blocks
    shortcut = draw(st.sampled_from(["identity", "projection"]))
    stem = draw(st.sampled_from([2, 4]))
    if shortcut == "identity":  # SubsamplePad cannot drop channels
        widths = sorted(widths)
        stem = min(stem, widths[0])
    return dict(
        blocks_per_stage=1, widths=tuple(widths), stem_channels=stem,
        strides=tuple(draw(st.lists(st.sampled_from([1, 2, 2, 3]), min_size=n_stages,
                                    max_size=n_stages))),
        in_channels=draw(st.integers(1, 3)), num_classes=draw(st.integers(2, 6)),
        lccl=draw(st.sampled_from(SHARED_KINDS)), shortcut=shortcut,
        rng=draw(st.integers(0, 2**16)), dtype=draw(st.sampled_from([np.float64, np.float32])))


def lccl_outputs(model, x):
    """Each LCCL layer's output in the module path's eval forward on ``x``: the inputs the
    layer saw (:func:`lccl_ref.bench.walk`), then the layer on them once more."""
    seen = {}
    model.eval()
    walk(model, x, on_lccl=lambda name, m, xi, u: seen.update({name: (m, xi, u)}))
    return {name: m.forward(xi, cheap_input=None if u is xi else u).copy()
            for name, (m, xi, u) in seen.items()}


@settings(max_examples=25, deadline=None, derandomize=True)
@given(spec=networks(), n=st.integers(1, 3), h=st.integers(5, 12), w=st.integers(5, 12),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_random_networks_equal_the_module_path(spec, n, h, w, density, seed):
    """Random small nets (2-3 stages, strides 1-3, widths up to two channel blocks, both
    shortcuts, both dtypes): logits, masks and counts as the module path; each LCCL layer's
    output is exactly zero where its mask is off; an image alone gives its batch row."""
    model = PreActResNet(**spec)
    x = images((n, spec["in_channels"], h, w), spec["dtype"], seed=seed)
    prepare(model, x, density, seed)
    floor_bn_variance(model)  # statistics of one cell (batch 1, 1x1 maps): variance 0
    engine = Engine(model)
    got = engine(x)
    outputs = lccl_outputs(model, x)
    want = module_forward(model, x)
    assert_close(got, want, spec["dtype"], model, x)
    assert len(outputs) == 2 * len(spec["widths"])
    for name, m in lccl_layers(model):
        mask = engine.last_masks[name]
        np.testing.assert_array_equal(mask, m.last_mask, err_msg=name)
        out = outputs[name]  # (N, T, Ho, Wo): the gated conv is zero wherever the mask is off
        assert out.shape[2:] == mask.shape[1:]
        assert np.all(out.transpose(1, 0, 2, 3)[:, ~mask] == 0), name
    # and the counts, on a second call of the same engine
    assert_matches_module(engine, model, x)
    i = n - 1
    np.testing.assert_array_equal(engine(x[i:i + 1])[0], got[i])


@pytest.mark.parametrize("sparse", [True, False])
def test_prefetch_goes_to_the_op_before_a_change_of_padded_image(sparse, monkeypatch):
    """The op before each op whose padded image the previous user of one did not use
    (cyclically: the head before the stem) prefetches it; no other op does; and the
    prefetch changes no result."""
    from lccl_ref.fast import program as eng

    net = build_model("resnet20", lccl="kxkxCx1", rng=0)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    calibrate(net, x, 0.65)
    e = Engine(net, sparse=sparse)
    y = e(x)
    ops = e._programs[x.shape[1:]].ops
    users = [k for k in range(len(ops)) if ops[k, eng.F_PAD] >= 0]
    want = {users[j] - 1 if users[j] else len(ops) - 1: ops[users[j], eng.F_PAD]
            for j in range(len(users)) if ops[users[j - 1], eng.F_PAD] != ops[users[j], eng.F_PAD]}
    got = {k: ops[k, eng.F_PREFETCH] for k in range(len(ops)) if ops[k, eng.F_PREFETCH] >= 0}
    assert got == want and len(want) >= 4  # stem, each stage's first plain op, the head
    if sparse:  # the stride-2 LCCL ops' phase buffers, used by no other op
        for k in range(len(ops)):
            if ops[k, eng.F_CODE] == eng.OP_LCCL and ops[k, eng.F_SH] == 2:
                assert ops[k - 1, eng.F_PREFETCH] == ops[k, eng.F_PAD]
    monkeypatch.setattr(eng.Builder, "plan_prefetches", lambda self: None)
    assert np.array_equal(Engine(net, sparse=sparse)(x), y)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("kind", ["none", *SHARED_KINDS])
def test_nan_reaches_the_same_logits_and_masks_as_the_module_path(dtype, kind):
    """NaN (and infinities) in x: NaN in the same logits and the same masks as the module
    path (ReLU keeps NaN and a NaN cheap pre-activation opens the gate; see LCCLConv2d)."""
    x = images((3, 3, 8, 8), dtype, seed=40)
    model = prepare(build_model("resnet8", lccl=kind, rng=41, dtype=dtype), x, 0.5)
    x[0, 1, 2, 5] = np.nan
    x[1, 0, 6, 1] = np.inf
    engine = Engine(model)
    got, want = engine(x), module_forward(model, x)
    assert np.isnan(want[:2]).any() and not np.isnan(want[2]).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    for name, m in lccl_layers(model):
        np.testing.assert_array_equal(engine.last_masks[name], m.last_mask, err_msg=name)
    np.testing.assert_array_equal(got[2], engine(x[2:])[0])  # image 2 is untouched


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_the_clip_gate_runs_in_the_engine(dtype, kind):
    """V' = min(max(z, 0), 1), the gate of the trained recipes: the engine's logits and
    masks as the module path's, and it differs from the ReLU gate on the same weights."""
    x = images((2, 3, 8, 8), dtype, seed=50)
    model = prepare(build_model("resnet8", lccl=kind, rng=51, dtype=dtype, gate="clip"), x, 0.5)
    for _, m in lccl_layers(model):  # V' above 1 on part of the cells, so the clip shows
        m.cheap_bn.weight.data *= dtype(4)
    engine = Engine(model)
    assert_matches_module(engine, model, x)
    got = engine(x)
    for _, m in lccl_layers(model):
        m.gate = "relu"
    assert not np.allclose(Engine(model)(x), got)
