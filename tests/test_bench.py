"""The benchmark's machinery on the teaching path: calibration, the plain twin, timing, results
(no timing asserts).  The fast path's and the engine's rows: ``tests/fast/test_bench.py``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lcclhelp import assert_float32_close

from lccl_ref import bench, flops
from lccl_ref.bench.calibrate import _threshold
from lccl_ref.functional import conv2d_naive
from lccl_ref.kernels import cheap_conv2d
from lccl_ref.models import build_model, lccl_layers, plain_network


def _x(n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


@pytest.mark.parametrize("kind", ["kxkxCx1", "1x1xCxT"])
@pytest.mark.parametrize("target", [0.2, 0.65])
def test_calibrate_reaches_the_target_density(kind, target):
    model = build_model("mnist-resnet", lccl=kind, rng=0)
    x = _x(3)
    got = bench.calibrate(model, x, target)
    assert len(got) == 6
    for name, m in lccl_layers(model):  # round(target * cells) cells of a channel
        cells = m.last_mask.shape[0] * m.last_mask.shape[-1] * m.last_mask.shape[-2]
        assert abs(got[name] - target) <= 0.5 / cells + 1e-9, (name, got[name], cells)
    assert got == bench.measure_densities(model, x)  # the calibration holds on re-run
    model.eval()
    y = model.forward(x)
    assert np.isfinite(y).all()
    assert model.eval() is model and not model.training


def test_threshold_never_lands_on_a_tied_value():
    # 8 equal values straddle the exact count: the cut goes to the nearer side of the group
    v = np.array([0.0, 1.0, 2.0] + [5.0] * 8 + [6.0, 7.0])  # 13 values
    for density in np.linspace(0, 1, 27):
        thr = _threshold(v, density)
        assert thr not in v
        above = int((v > thr).sum())
        k = round(density * v.size)
        achievable = {0, 1, 2, 10, 11, 12, 13}  # counts a threshold between values can give
        assert above in achievable
        assert abs(above - k) == min(abs(a - k) for a in achievable), (density, above)


def test_calibrate_per_layer_targets_and_bad_targets():
    model = build_model("mnist-resnet", lccl="kxkxCx1", rng=0)
    names = [n for n, _ in lccl_layers(model)]
    targets = {n: 0.1 + 0.15 * i for i, n in enumerate(names)}
    got = bench.calibrate(model, _x(2), targets)
    assert got == pytest.approx(targets, abs=0.5 / 32 + 1e-9)  # >= 2 x 4 x 4 cells a channel
    with pytest.raises(ValueError, match="must be in"):
        bench.calibrate(model, _x(2), 1.5)
    with pytest.raises(ValueError, match="no LCCLConv2d"):
        bench.calibrate(build_model("mnist-resnet", rng=0), _x(2), 0.5)


def test_calibrate_without_bn_stats_changes_only_cheap_biases():
    model = build_model("mnist-resnet", lccl="1x1xCx1", rng=0)
    before = model.state_dict()
    bench.calibrate(model, _x(2), 0.5, bn_stats=False)
    after = model.state_dict()
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.endswith("cheap_bn.bias") for k in changed)


def test_plain_network_runs_expensive_convs_alone_and_shares_the_weights():
    model = build_model("mnist-resnet", lccl="kxkxCx1", rng=0).eval()
    x = _x(2)
    ref_model = build_model("mnist-resnet", lccl="none", rng=0).eval()
    state = {k: v for k, v in model.state_dict().items() if "cheap" not in k}
    ref_model.load_state_dict({k.replace(".conv.weight", ".weight"): v for k, v in state.items()})
    plain = plain_network(model)
    y_plain = plain.forward(x)
    # two float32 networks: within the tolerance derived from the network (lcclhelp)
    assert_float32_close(y_plain, ref_model, x)
    assert not lccl_layers(plain) and len(lccl_layers(model)) == 6  # the model is unchanged
    assert not np.allclose(model.forward(x), y_plain)  # the LCCL product is still there
    name, layer = lccl_layers(model)[0]
    assert dict(plain.named_modules())[name] is layer.conv  # the same conv: shared weights
    assert plain.state_dict().keys() == ref_model.state_dict().keys()


def test_time_interleaved_returns_medians():
    calls = []
    t = bench.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               repeats=3, warmup=1)
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())
    assert calls == ["a", "b"] * 4  # interleaved, warm-up round included
    calls.clear()
    t = bench.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               repeats=2, warmup=1, run=3)
    assert calls == ["a", "b"] + (["a"] * 3 + ["b"] * 3) * 2  # runs of 3 calls each
    with pytest.raises(ValueError, match="run"):
        bench.time_interleaved({"a": lambda: None}, repeats=1, run=0)


@pytest.mark.parametrize("kind", ["kxkxCx1", "1x1xCxT"])
def test_bench_network_is_well_formed(kind):
    model = build_model("mnist-resnet", lccl=kind, rng=0)
    x = _x(2)
    bench.calibrate(model, x, 0.5)
    res = bench.bench_network(model, x, repeats=1, torch_ref=False, engine=False,
                              paths=("teaching",))
    net, teaching = res["network"], res["paths"]["teaching"]
    rows = flops.counted_vs_table(model, x)
    executed = sum(r["counted"] + r["cheap_counted"] for r in rows)
    table = flops.mac_table(model, input_shape=(1, 28, 28))
    assert net["macs_dense"] == 2 * table["total_dense"]
    assert net["macs_lccl"] == net["macs_plain_layers"] + executed
    assert net["theoretical"] == pytest.approx(1 - net["macs_lccl"] / net["macs_dense"])
    assert teaching["real"] == pytest.approx(1 - teaching["t_sparse"] / teaching["t_plain"])
    assert min(teaching["t_plain"], teaching["t_sparse"], teaching["t_dense_lccl"]) > 0
    assert list(res["paths"]) == ["teaching"] and res["engine"] is None
    assert [r["name"] for r in res["layers"]] == [n for n, _ in lccl_layers(model)]
    for r in res["layers"]:
        assert r["path"] == "teaching"
        assert r["theoretical"] == pytest.approx(
            1 - (r["macs_cheap"] + r["macs_expensive"]) / r["macs_dense"])
        assert r["shared_mask"] == (kind == "kxkxCx1")
        assert abs(r["density"] - 0.5) < 0.02
    assert all(m.sparse for _, m in lccl_layers(model))  # flags restored


def test_bench_network_needs_lccl():
    with pytest.raises(ValueError, match="no LCCLConv2d"):
        bench.bench_network(build_model("mnist-resnet", rng=0), _x(1), repeats=1)


def test_bench_resnet18_small_input():
    res = bench.bench_resnet18(density=0.5, repeats=1, input_size=32)
    assert res["path"] == "teaching"
    net = res["network"]
    assert len(res["layers"]) == 7 and len(res["plain_layers"]) == 5
    assert sum(r["count"] for r in res["layers"]) == 16  # the 16 3x3 convs of the blocks
    assert net["macs_lccl"] < net["macs_dense"]
    assert net["theoretical"] == pytest.approx(1 - net["macs_lccl"] / net["macs_dense"])
    assert res["paper"]["theoretical"] == 0.346
    pytest.importorskip("torch")
    assert all(r["t_torch"] > 0 for r in res["layers"]) and "real_vs_torch" in net


def test_resnet18_layer_list_gives_the_papers_1_8e9():
    total = 0
    for _, c, t, h, k, s, p, count, _ in bench.RESNET18_LAYERS:
        ho = (h + 2 * p - k) // s + 1
        total += count * ho * ho * t * c * k * k
    total += 512 * 1000
    assert total == 1_814_073_344 and round(total / 1e8) == 18


def test_one_thread_limits_and_restores():
    import numba

    before = numba.get_num_threads()
    with bench.one_thread() as info:
        assert info["threads"] == 1 and numba.get_num_threads() == 1
        if info["threadpoolctl"]:
            assert info["blas_threads"] == 1
    assert numba.get_num_threads() == before
    env = bench.environment()
    assert env["numpy"] == np.__version__ and env["cpu_count"] >= 1


# ---- the cheap branch's conv on the teaching path (kernels.cheap_conv2d) -------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 5), t=st.sampled_from([1, 4]),
       k=st.sampled_from([1, 3]), h=st.integers(3, 9), w=st.integers(3, 9),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dtype=st.sampled_from(["f4", "f8"]),
       transposed=st.booleans(), seed=st.integers(0, 2**16))
def test_cheap_conv2d_equals_naive_conv(n, c, t, k, h, w, stride, pad, dtype, transposed, seed):
    g = np.random.default_rng(seed)
    u = g.standard_normal((n, c, w, h) if transposed else (n, c, h, w)).astype(dtype)
    if transposed:
        u = u.transpose(0, 1, 3, 2)  # non-contiguous input
    wt = g.standard_normal((t, c, k, k)).astype(dtype)
    b = g.standard_normal(t).astype(dtype)
    got = cheap_conv2d(u, wt, b, (stride, stride), (pad, pad))
    ref = conv2d_naive(u.astype("f8"), wt.astype("f8"), b.astype("f8"), stride, pad)
    assert got.dtype == np.dtype(dtype) and got.shape == ref.shape
    tol = 1e-4 if dtype == "f4" else 1e-11
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_blob_mask_has_the_density_in_every_image_and_forms_blobs():
    rng = np.random.default_rng(0)
    m = bench.blob_mask(rng, 3, 32, 32, 0.3)
    assert m.shape == (3, 32, 32) and m.dtype == bool
    np.testing.assert_allclose(m.mean(axis=(1, 2)), 0.3, atol=1 / 1024)
    # blobs: a true cell's right neighbour is true far more often than the density
    same = (m[:, :, 1:] & m[:, :, :-1]).sum() / m[:, :, :-1].sum()
    assert same > 0.6
    assert bench.blob_mask(rng, 2, 4, 5, 1.0).all()
    assert isinstance(bench.timed(sum, [1, 2]), float)
