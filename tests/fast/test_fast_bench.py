"""The benchmark's fast-path rows: the accelerated modules, the engine, ``lccl-ref bench``
(no timing asserts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bench import _x

from lccl_ref import bench
from lccl_ref.models import build_model, lccl_layers


def test_bench_network_times_every_path_and_the_engine_counts_what_the_modules_count():
    model = build_model("mnist-resnet", lccl="kxkxCx1", rng=0)
    x = _x(2)
    bench.calibrate(model, x, 0.5)
    res = bench.bench_network(model, x, repeats=1, layers=False, torch_ref=False)
    net, eng = res["network"], res["engine"]
    assert list(res["paths"]) == ["teaching", "fast"]
    for path, p in res["paths"].items():
        assert p["path"] == path and p["real"] == pytest.approx(1 - p["t_sparse"] / p["t_plain"])
    # same MACs as the module path, so the same theoretical speed-up
    assert (eng["macs_dense"], eng["macs_lccl"]) == (net["macs_dense"], net["macs_lccl"])
    assert eng["theoretical"] == pytest.approx(net["theoretical"])
    assert eng["real"] == pytest.approx(1 - eng["t_sparse"] / eng["t_plain"])
    assert eng["ratio"] == pytest.approx(eng["real"] / eng["theoretical"])
    assert eng["ratio_cycles"] == pytest.approx(eng["real_cycles"] / eng["theoretical"])
    assert 0 < eng["real_cycles"] < 1
    names = [r["name"] for r in eng["layers"] if r["kind"] == "lccl"]
    assert names == [n for n, _ in lccl_layers(model)]
    for r in eng["layers"]:
        assert r["cycles_plain"] > 0 and r["cycles_sparse"] > 0
        assert r["real"] == pytest.approx(1 - r["cycles_sparse"] / r["cycles_plain"])
        if r["kind"] == "lccl":
            assert abs(r["density"] - 0.5) < 0.02 and r["macs"] < r["macs_dense"]
        else:  # stem, shortcuts: dense in both networks
            assert r["macs"] == r["macs_dense"] and r["theoretical"] == 0 and r["ratio"] is None
    short = bench.bench_engine(model, x, repeats=3, min_time=0.0)
    assert short["rounds"] == 3 and short["run"] == 1  # too few calls for runs
    assert short["ratio_alternating"] == short["ratio"]  # the same calls
    longer = bench.bench_engine(model, x, repeats=3, min_time=0.5)  # calls of ~1 ms
    assert 3 < longer["rounds"] <= 1000
    assert 1 < longer["run"] <= bench.ENGINE_RUN and longer["rounds"] // longer["run"] >= 10
    assert longer["rounds"] % longer["run"] == 0
    assert longer["ratio_alternating"] == pytest.approx(
        longer["real_alternating"] / longer["theoretical"])
    rows = bench.summarise([dict(res, kind="kxkxCx1", shared_mask=True)])
    assert [r["path"] for r in rows] == ["teaching", "fast", "engine"]
    assert rows[-1]["ratio"] == eng["ratio"]
    text = bench.format_summary(dict(summary=rows))
    assert "engine" in text and f"{100 * eng['real']:.1f}%" in text and "Legend" in text
    per_channel = build_model("mnist-resnet", lccl="1x1xCxT", rng=0)
    skipped = bench.bench_engine(per_channel, x, repeats=1)
    assert "shared-mask" in skipped["skipped"]
    rows = bench.summarise([dict(res, engine=skipped, kind="1x1xCxT", shared_mask=False)])
    assert rows[-1]["path"] == "engine" and "skipped" in rows[-1]


def test_bench_resnet18_on_the_fast_path():
    res = bench.bench_resnet18(density=0.5, repeats=1, input_size=32, path="fast")
    assert res["path"] == "fast" and all(r["path"] == "fast" for r in res["layers"])
    assert res["network"]["macs_lccl"] < res["network"]["macs_dense"]


def test_run_benchmark_quick_is_json_serialisable_and_names_its_paths():
    lines = []
    res = bench.run_benchmark("mnist-resnet", kinds=("1x1xCx1",), batches=(1, 2), quick=True,
                              repeats=1, layers=False, resnet18=False, log=lines.append)
    json.dumps(res)
    assert [(r["batch"], r["path"]) for r in res["summary"]] == [
        (1, "teaching"), (1, "fast"), (1, "engine"), (2, "teaching"), (2, "fast"), (2, "engine")]
    assert res["threads"]["threads"] == 1 and res["environment"]["numpy"] == np.__version__
    assert res["settings"]["paths"] == ["teaching", "fast"] and lines
    text = bench.format_summary(res)
    assert "1x1xCx1" in text and "teaching =" in text


def test_cli_bench_quick_json(capsys):
    from lccl_ref.cli import main

    assert main(["bench", "--model", "mnist-resnet", "--quick", "--no-resnet18", "--kinds",
                 "1x1xCx1", "--batch", "2", "--repeats", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["summary"][0]["kind"] == "1x1xCx1" and res["summary"][0]["batch"] == 2
    assert main(["bench", "--batch", "0", "--quick"]) == 2
    assert main(["bench", "--kinds", "3x3xCx1", "--quick"]) == 2
