"""Tests of the ``lccl-ref`` command line (in process, through ``main``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lccl_ref import cli
from lccl_ref.cli import main


def _one_error_line(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("lccl-ref") and "error" in lines[0], err
    assert "Traceback" not in err and out == ""
    return lines[0]


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"]])
def test_help_exits_zero(capsys, argv):
    assert main(argv) == 0
    assert "usage: lccl-ref" in capsys.readouterr().out


def test_help_through_python_m():
    r = subprocess.run([sys.executable, "-m", "lccl_ref", "train", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--dataset" in r.stdout and "--lccl" in r.stdout


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_name_lists_agree_with_the_library():
    from lccl_ref import data, functional, models, train

    assert cli.DATASETS == data.DATASETS
    assert cli.MODEL_NAMES == models.MODEL_NAMES
    assert cli.LCCL_KINDS == models.LCCL_KINDS
    assert cli.PLACEMENTS == models.PLACEMENTS
    assert cli.SHORTCUTS == models.SHORTCUTS
    assert cli.SCHEDULES == train.SCHEDULES
    assert cli.GATES == functional.GATES
    assert cli.BUDGET_SCOPES == train.budget.SCOPES
    assert set(train.RECIPES) == set(cli.DATASETS)
    assert all(r["model"] in cli.MODEL_NAMES for r in train.RECIPES.values())


@pytest.mark.parametrize("argv, word", [
    (["train", "--dataset", "imagenet"], "--dataset"),
    (["train", "--model", "resnet19"], "--model"),
    (["train", "--lccl", "3x3xCxT"], "--lccl"),
    (["train", "--placement", "middle"], "--placement"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "fast"], "--lr"),
    (["train", "--bogus"], "--bogus"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_names_give_one_line_and_exit_2(capsys, argv, word):
    assert word in _one_error_line(capsys, argv)


def test_subset_larger_than_dataset(capsys, tmp_path):
    line = _one_error_line(capsys, ["train", "--subset", "999999", "--out", str(tmp_path),
                                    "--no-progress"])
    assert "subset" in line
    assert not (tmp_path / "last.npz").exists()


def test_eval_of_missing_or_foreign_checkpoint(capsys, tmp_path):
    assert "does not exist" in _one_error_line(capsys, ["eval", str(tmp_path / "nope.npz")])
    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    line = _one_error_line(capsys, ["eval", str(tmp_path / "weights.npz")])
    assert "not an lccl_ref checkpoint" in line


def test_train_then_eval_end_to_end(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "mnist5k", "--model", "mnist-resnet", "--lccl", "kxkxCx1",
            "--subset", "200", "--test-subset", "50", "--epochs", "1", "--out", str(out),
            "--json", "--no-progress"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    res = json.loads(stdout)  # one JSON object and nothing else
    assert res["checkpoint"] == str(out / "last.npz")
    assert (out / "last.npz").is_file() and (out / "history.json").is_file()
    final = res["final"]
    assert final["epoch"] == 1 and 0.0 <= final["test_acc"] <= 1.0
    assert res["config"]["model"]["lccl"] == "kxkxCx1"
    assert res["config"]["data"] == {**res["config"]["data"], "name": "mnist5k", "subset": 200}
    assert len(final["lccl_density"]) == 6  # two LCCL convs in each of 3 blocks

    assert main(["eval", str(out / "last.npz"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    # the rebuilt model on the same test subset reproduces the run's last evaluation
    assert ev["n"] == 50 and ev["path"] == "sparse"
    assert ev["accuracy"] == final["test_acc"]
    assert ev["loss"] == pytest.approx(final["test_loss"], rel=1e-6)
    assert ev["lccl_density"] == pytest.approx(final["lccl_density"])
    assert ev["macs"]["executed"] < ev["macs"]["dense"]

    # the dense path computes every cell: same predictions, no MACs saved
    assert main(["eval", str(out / "last.npz"), "--json", "--dense"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert dense["accuracy"] == ev["accuracy"]
    assert dense["macs"]["lccl_expensive"] == dense["macs"]["lccl_dense"]

    assert main(["eval", str(out / "last.npz")]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "layer1.0.conv1" in text and "MACs per image" in text


def test_train_text_output_and_resume(capsys, tmp_path):
    base = ["train", "--subset", "50", "--test-subset", "20", "--batch-size", "25",
            "--out", str(tmp_path), "--no-progress"]
    assert main(base + ["--epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert "epoch   1/1" in text and "test accuracy" in text
    # extend the run by one epoch from its checkpoint
    assert main(base + ["--epochs", "2", "--resume", str(tmp_path / "last.npz"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["final"]["epoch"] == 2
    assert [r["epoch"] for r in json.loads((tmp_path / "history.json").read_text())["epochs"]] \
        == [1, 2]
    # a resume with other settings is refused in one line
    line = _one_error_line(capsys, base + ["--epochs", "3", "--lr", "0.5", "--resume",
                                           str(tmp_path / "last.npz")])
    assert "cannot resume" in line
