"""MAC accounting: closed forms vs the kernels' own counters, per-layer tables, ResNet totals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccl_ref import flops
from lccl_ref.kernels import gated_conv2d
from lccl_ref.models import build_model
from lccl_ref.nn import Conv2d, LCCLConv2d, Sequential

KINDS = ("1x1xCxT", "kxkxCx1", "1x1xCx1")


# ---- closed forms --------------------------------------------------------------------------
def test_conv_macs_is_XYTk2C():
    assert flops.conv_macs(32, 32, 16, 16, 3) == 2_359_296
    assert flops.conv_macs(7, 5, 3, 2, 1) == 7 * 5 * 2 * 3


@pytest.mark.parametrize("X,Y,C,T,k,r", [(32, 32, 16, 16, 3, 0.4), (16, 16, 16, 32, 3, 0.7),
                                         (8, 6, 64, 64, 5, 0.0), (4, 4, 3, 8, 3, 1.0)])
def test_named_kinds_match_the_paper_rows(X, Y, C, T, k, r):
    # PAPER.md "Cost and speed-up", written out independently of lccl_macs
    assert flops.lccl_kind_macs("1x1xCxT", X, Y, C, T, k, r) == pytest.approx(
        X * Y * T * C * (1 + k * k * r), rel=1e-12)
    assert flops.lccl_kind_macs("kxkxCx1", X, Y, C, T, k, r) == pytest.approx(
        X * Y * k * k * C * (1 + T * r), rel=1e-12)
    assert flops.lccl_kind_macs("1x1xCx1", X, Y, C, T, k, r) == pytest.approx(
        X * Y * C * (1 + T * k * k * r), rel=1e-12)
    # general k', T' row: XYTC(k'^2 + k^2 r) when T' = T
    assert flops.lccl_macs(X, Y, C, T, k, 3, T, r) == pytest.approx(
        X * Y * T * C * (9 + k * k * r), rel=1e-12)
    assert flops.kind_speedup_ratio("1x1xCxT", T, k, r) == pytest.approx(1 - (1 / k**2 + r))
    assert flops.kind_speedup_ratio("kxkxCx1", T, k, r) == pytest.approx(1 - (1 / T + r))
    assert flops.speedup_ratio(X, Y, C, T, k, k, 1, r) == pytest.approx(1 - (1 / T + r))
    assert flops.speedup_ratio(X, Y, C, T, k, 1, T, r) == pytest.approx(1 - (1 / k**2 + r))


def test_slides_formula_agrees_when_C_equals_T():
    for C, r in ((16, 0.3), (64, 0.65), (7, 1.0)):
        assert flops.slides_kxkxCx1_macs(32, 32, C, C, 3, r) == pytest.approx(
            flops.lccl_kind_macs("kxkxCx1", 32, 32, C, C, 3, r), rel=1e-12)
        assert flops.slides_kxkxCx1_speedup(C, r) == pytest.approx(
            flops.kind_speedup_ratio("kxkxCx1", C, 3, r))


def test_slides_formula_differs_at_a_stage_transition():
    # ResNet-20 layer2.0.conv1: C = 16 -> T = 32 at 16x16; the deck swaps C and T
    X = Y = 16
    C, T, k, r = 16, 32, 3, 0.5
    true = flops.lccl_kind_macs("kxkxCx1", X, Y, C, T, k, r)
    slides = flops.slides_kxkxCx1_macs(X, Y, C, T, k, r)
    assert true == X * Y * k * k * C * (1 + T * r) == 626_688
    assert slides == X * Y * T * k * k * (1 + C * r) == 663_552
    # XYk^2C(1 + Tr) - XYTk^2(1 + Cr) = XYk^2(C - T): the deck's cheap branch is T/C too big
    assert true - slides == X * Y * k * k * (C - T)
    assert flops.slides_kxkxCx1_speedup(C, r) == pytest.approx(1 - (1 / 16 + 0.5))
    assert flops.kind_speedup_ratio("kxkxCx1", T, k, r) == pytest.approx(1 - (1 / 32 + 0.5))
    assert flops.slides_kxkxCx1_speedup(C, r) != pytest.approx(
        flops.kind_speedup_ratio("kxkxCx1", T, k, r))


def test_authors_code_overhead_is_T_XY_true_is_C_XY():
    X = Y = 16
    true = flops.lccl_kind_macs("1x1xCx1", X, Y, 16, 32, 3, 0.0)  # r = 0: the cheap branch only
    assert true == 16 * X * Y
    assert flops.authors_code_overhead_1x1xCx1(X, Y, 16, 32) == 32 * X * Y == 2 * true
    assert flops.authors_code_overhead_1x1xCx1(X, Y, 32, 32) == flops.lccl_kind_macs(
        "1x1xCx1", X, Y, 32, 32, 3, 0.0)
    # the cheap conv itself counts C*XY: a 1x1, C -> 1 conv at 16x16
    conv = LCCLConv2d(16, 32, 3, 1, 1, cheap="1x1xCx1", rng=0).eval()
    conv.forward(np.zeros((1, 16, X, Y), np.float32))
    assert conv.last_stats["macs_cheap"] == true


@pytest.mark.parametrize("bad", [dict(X=0), dict(C=-1), dict(k=1.5), dict(T=True)])
def test_closed_forms_reject_bad_sizes(bad):
    args = dict(X=4, Y=4, C=3, T=5, k=3) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        flops.conv_macs(**args)


@pytest.mark.parametrize("r", [-0.1, 1.5, float("nan"), "0.5"])
def test_density_must_be_a_fraction(r):
    with pytest.raises(ValueError, match="r must be"):
        flops.lccl_macs(4, 4, 3, 5, 3, 1, 1, r)


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        flops.lccl_kind_macs("3x3xCxT", 4, 4, 3, 5, 3, 0.5)


# ---- closed forms vs what the kernels count ------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(KINDS), n=st.integers(1, 2), c=st.integers(1, 6),
       t=st.integers(1, 6), hw=st.integers(3, 9), stride=st.integers(1, 2),
       p=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_closed_form_equals_counted_macs_of_gated_conv(kind, n, c, t, hw, stride, p, seed):
    """Random masks of each kind's shape: the table row at the measured density r equals
    the MACs counted by gated_conv2d (expensive) plus a dense cheap conv (k', T')."""
    g = np.random.default_rng(seed)
    k = 3
    k_cheap, t_cheap = flops.cheap_shape(kind, t, k)
    x = g.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = g.standard_normal((t, c, k, k)).astype(np.float32)
    ho = (hw + 2 - k) // stride + 1
    mask_shape = (n, ho, ho) if t_cheap == 1 else (n, t, ho, ho)
    mask = g.random(mask_shape) < p
    # the kernels that compute the open cells only ("auto" may run a per-channel mask
    # densely, kernels.choose_method; then it counts the dense MACs)
    _, counted = gated_conv2d(x, w, mask, None, stride, 1, "tiled" if mask.ndim == 4 else "auto")
    cells = mask.size if t_cheap == t else mask.size * t  # output cells of V
    active = np.count_nonzero(mask) * (1 if t_cheap == t else t)
    r = active / cells  # measured density
    cheap_counted = n * ho * ho * t_cheap * c * k_cheap * k_cheap  # a dense cheap conv
    closed = n * flops.lccl_macs(ho, ho, c, t, k, k_cheap, t_cheap, r)
    assert round(closed) == cheap_counted + counted
    assert round(n * flops.lccl_kind_macs(kind, ho, ho, c, t, k, r)) == cheap_counted + counted


@pytest.mark.parametrize("kind", KINDS)
def test_closed_form_equals_lccl_layer_counters(kind):
    g = np.random.default_rng(1)
    layer = LCCLConv2d(8, 16, 3, 1, 1, cheap=kind, rng=2).eval()
    # a density strictly between 0 and 1, below kernels.TILED_BELOW for a per-channel mask
    layer.cheap_bn.bias.data[:] = 0.1 if layer.shared_mask else -1.5
    layer.forward(g.standard_normal((3, 8, 10, 10)).astype(np.float32))
    s = layer.last_stats
    assert 0 < s["density"] < 1 and s["method"] in ("gather", "tiled")
    closed = 3 * flops.lccl_kind_macs(kind, 10, 10, 8, 16, 3, s["density"])
    assert round(closed) == s["macs_cheap"] + s["macs_expensive"]
    assert s["macs_dense"] == 3 * flops.conv_macs(10, 10, 8, 16, 3)


# ---- per-layer tables ----------------------------------------------------------------------
@pytest.mark.parametrize("name,total", [("resnet20", 40_551_040), ("resnet32", 68_862_592),
                                        ("resnet44", 97_174_144)])
def test_resnet_dense_totals(name, total):
    """3x3 convs incl. the stem plus the final linear layer, parameter-free shortcuts:
    the paper's 4.1E7 / 6.9E7 / 9.7E7."""
    table = flops.mac_table(build_model(name, rng=0), input_shape=(3, 32, 32))
    assert table["total_dense"] == total
    assert table["total_lccl"] == total and table["speedup"] == 0.0
    kinds = {r["kind"] for r in table["rows"]}
    assert kinds == {"conv", "linear"}
    assert table["rows"][0]["macs_dense"] == 32 * 32 * 16 * 27  # stem 3 -> 16


@pytest.mark.parametrize("kind", KINDS)
def test_lccl_resnet20_table_matches_closed_forms(kind):
    model = build_model("resnet20", lccl=kind, rng=0)
    r = 0.37
    table = flops.mac_table(model, input_shape=(3, 32, 32), density=r)
    assert table["total_dense"] == 40_551_040  # cheap branches are not part of the dense net
    # independent closed form: per stage (C, T, X) of each LCCL conv, stem and fc plain
    layers = []
    for c_in, width, x in ((16, 16, 32), (16, 32, 16), (32, 64, 8)):
        layers.append((c_in, width, x))  # first conv of the stage
        layers += [(width, width, x)] * 5
    closed = 32 * 32 * 16 * 27 + 64 * 10
    closed += sum(flops.lccl_kind_macs(kind, x, x, c, t, 3, r) for c, t, x in layers)
    assert table["total_lccl"] == pytest.approx(closed, rel=1e-12)
    assert table["speedup"] == pytest.approx(1 - closed / 40_551_040)
    cheap = [row for row in table["rows"] if row["kind"] == "lccl.cheap"]
    assert len(cheap) == 18 and all(row["macs_dense"] == 0 for row in cheap)
    text = flops.format_table(table)
    assert "layer1.0.conv1.cheap_conv" in text and "40,551,040" in text


def test_table_takes_per_layer_densities_and_checks_them():
    model = build_model("mnist-resnet", lccl="kxkxCx1", rng=0)
    names = [n for n, m in model.named_modules() if isinstance(m, LCCLConv2d)]
    dens = {n: 0.1 * (i + 1) for i, n in enumerate(names)}
    table = flops.mac_table(model, input_shape=(1, 28, 28), density=dens)
    got = {row["name"][: -len(".conv")]: row["density"] for row in table["rows"]
           if row["kind"] == "lccl.expensive"}
    assert got == pytest.approx(dens)
    with pytest.raises(ValueError, match="no entry for LCCL layer"):
        flops.mac_table(model, input_shape=(1, 28, 28), density={names[0]: 0.5})
    with pytest.raises(ValueError, match="density"):
        flops.mac_table(model, input_shape=(1, 28, 28), density=2.0)
    with pytest.raises(ValueError, match="input_shape"):
        flops.mac_table(model)


def test_table_with_measured_densities_equals_counted_macs():
    """x given, density None: the per-image LCCL total times N is what the layers counted."""
    model = build_model("mnist-resnet", lccl="1x1xCxT", rng=0)
    layers = [m for m in model.modules() if isinstance(m, LCCLConv2d)]
    for m in layers:  # the kernel that computes the open cells only, at any density
        m.conv.method = "tiled"
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    table = flops.mac_table(model, x=x)
    counted = sum(m.last_stats["macs_cheap"] + m.last_stats["macs_expensive"] for m in layers)
    plain = sum(row["macs_dense"] for row in table["rows"] if row["kind"] in ("conv", "linear"))
    assert 0 < np.mean([m.last_stats["density"] for m in layers]) < 1
    assert table["total_lccl"] * 3 == pytest.approx(plain * 3 + counted, rel=1e-12)


def test_table_of_a_plain_sequential_and_strided_conv():
    model = Sequential(Conv2d(3, 8, 3, 2, 1, rng=0), Conv2d(8, 4, 1, rng=0))
    table = flops.mac_table(model, input_shape=(3, 9, 9))
    assert [r["out_shape"] for r in table["rows"]] == [(8, 5, 5), (4, 5, 5)]
    assert table["total_dense"] == 5 * 5 * 8 * 27 + 5 * 5 * 4 * 8


# ---- counted == table after an eval pass ---------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("placement", ["aft-aft", "bef-aft"])
def test_counted_equals_table_layer_by_layer(kind, placement):
    model = build_model("mnist-resnet", lccl=kind, placement=placement, rng=3)
    for m in model.modules():
        if isinstance(m, LCCLConv2d):
            m.sparse = False  # counted_vs_table must switch on the sparse path itself
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    rows = flops.counted_vs_table(model, x)
    assert len(rows) == 6
    for row in rows:
        assert row["shared"] == (kind != "1x1xCxT")
        assert row["counted"] == row["table"], row
        assert row["cheap_counted"] == row["cheap_table"], row
    assert any(0 < row["density"] < 1 for row in rows)
    assert all(not m.sparse for m in model.modules() if isinstance(m, LCCLConv2d))
    assert model.training  # the mode is restored


# ---- command line ---------------------------------------------------------------------------
def test_cli_flops_prints_the_resnet20_total(capsys):
    import json

    from lccl_ref.cli import main

    assert main(["flops", "--model", "resnet20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_dense"] == 40_551_040
    assert main(["flops", "--model", "resnet20", "--lccl", "kxkxCx1", "--density", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "layer3.2.conv2.cheap_conv" in out and "40,551,040" in out
    assert main(["flops", "--model", "resnet20", "--density", "1.5"]) == 2


def test_training_cost_is_three_passes():
    """Forward, dX and dW each cost the forward's MACs (eq. 12); the table's training
    totals are 3x its inference totals, and a plain net's counted training MACs match."""
    from lccl_ref.flops import mac_table, train_macs
    from lccl_ref.functional import softmax_cross_entropy
    from lccl_ref.train import take_train_macs

    assert train_macs(1234) == 3702
    with pytest.raises(ValueError, match="inference_macs"):
        train_macs(-1)
    model = build_model("resnet8", rng=0)
    table = mac_table(model, input_shape=(3, 8, 8))
    assert table["train_dense"] == 3 * table["total_dense"]
    assert table["train_lccl"] == pytest.approx(3 * table["total_lccl"])
    model.train()
    take_train_macs(model)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    _, dlogits = softmax_cross_entropy(model.forward(x), np.array([0, 1]))
    model.backward(dlogits)
    counted = take_train_macs(model)
    assert counted == {"dense": 2 * table["train_dense"], "executed": 2 * table["train_dense"]}
