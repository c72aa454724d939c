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


# ---- runs on disk: nothing lost, nothing half-done, one line for every bad argument -------
SMALL = ["train", "--subset", "50", "--test-subset", "20", "--batch-size", "25",
         "--no-progress"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A one-epoch run: its folder and checkpoint."""
    out = tmp_path_factory.mktemp("run")
    assert main(SMALL + ["--epochs", "1", "--out", str(out), "--json"]) == 0
    return out, out / "last.npz"


def test_train_out_must_be_a_folder(capsys, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    line = _one_error_line(capsys, SMALL + ["--epochs", "1", "--out", str(f)])
    assert "exists and is not a folder" in line and f.read_text() == "keep me"


def test_train_over_a_finished_run_needs_force(capsys, finished_run, tmp_path):
    run, ck = finished_run
    out = tmp_path / "copy"
    out.mkdir()
    (out / "last.npz").write_bytes(ck.read_bytes())
    (out / "history.json").write_text("{}")
    line = _one_error_line(capsys, SMALL + ["--epochs", "1", "--out", str(out)])
    assert "already holds a run" in line and "--force" in line and "--resume" in line
    assert (out / "history.json").read_text() == "{}"  # untouched
    # another run's checkpoint resumed into it: refused too
    line = _one_error_line(capsys, SMALL + ["--epochs", "2", "--out", str(out), "--resume",
                                            str(ck)])
    assert "already holds a run" in line
    # continuing the run it holds is what --resume is for
    assert main(SMALL + ["--epochs", "2", "--out", str(out), "--resume",
                         str(out / "last.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trained_epochs"] == 1
    assert main(SMALL + ["--epochs", "1", "--out", str(out), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["final"]["epoch"] == 1


@pytest.mark.parametrize("epochs", ["1", "0"])
def test_resume_with_nothing_left_to_train_says_so_and_writes_nothing(capsys, finished_run,
                                                                      tmp_path, epochs):
    _, ck = finished_run
    out = tmp_path / "fresh"
    argv = SMALL + ["--epochs", epochs, "--out", str(out), "--resume", str(ck)]
    if epochs == "0":  # --epochs must still be positive
        _one_error_line(capsys, argv)
        return
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "nothing to train" in text and "nothing written" in text and str(out) not in text
    assert main(argv + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["checkpoint"] == str(ck) and res["out"] is None and res["trained_epochs"] == 0
    assert not out.exists()


@pytest.mark.parametrize("change, field", [
    (["--dataset", "mnist"], "data.name"),
    (["--subset", "60"], "data.subset"),
    (["--test-subset", "30"], "data.test_subset"),
    (["--placement", "bef-bef"], "model.placement"),
    (["--lccl", "kxkxCx1"], "model.lccl"),
    (["--shortcut", "projection"], "model.shortcut"),
])
def test_resume_refuses_another_model_or_data_naming_the_field(capsys, finished_run, tmp_path,
                                                               change, field):
    _, ck = finished_run
    argv = SMALL + ["--epochs", "2", "--out", str(tmp_path / "o"), "--resume", str(ck)]
    if change[0] == "--subset":
        argv = [a if a != "50" else change[1] for a in argv]
    elif change[0] == "--test-subset":
        argv = [a if a != "20" else change[1] for a in argv]
    else:
        argv += change
    if change[0] == "--dataset" and not _mnist_available():
        pytest.skip("full MNIST not in LCCL_DATA")
    line = _one_error_line(capsys, argv)
    assert "cannot resume" in line and field in line
    assert not (tmp_path / "o").exists()


def _mnist_available():
    import os
    from pathlib import Path

    root = os.environ.get("LCCL_DATA")
    return bool(root) and (Path(root) / "mnist").is_dir()


def _rewrite(src, dst, extra_member=None, **entries):
    arrays = dict(np.load(src, allow_pickle=False))
    arrays.update({k: np.array(v) for k, v in entries.items()})
    np.savez(dst, **arrays)
    if extra_member is not None:
        import zipfile

        with zipfile.ZipFile(dst, "a") as z:
            z.writestr(*extra_member)
    return dst


@pytest.mark.parametrize("change, words", [
    (dict(config="[1]"), "config must be a JSON object"),
    (dict(history="[1]"), "history must be a JSON object"),
    (dict(extra_member=("notes.txt", "x")), "is not an array"),
    (dict(epoch=np.int64(-5)), "epoch must be a non-negative int, got -5"),
    (dict(config='{"model": "resnet20", "data": {"name": "mnist5k"}}'),
     "config.model must be a JSON object"),
])
@pytest.mark.parametrize("command", ["eval", "train"])
def test_damaged_checkpoints_give_one_line(capsys, finished_run, tmp_path, change, words,
                                           command):
    _, ck = finished_run
    bad = _rewrite(ck, tmp_path / "bad.npz", **change)
    argv = (["eval", str(bad)] if command == "eval" else
            SMALL + ["--epochs", "2", "--out", str(tmp_path / "o"), "--resume", str(bad)])
    assert words in _one_error_line(capsys, argv)


def test_flops_input_size_is_bounded(capsys):
    line = _one_error_line(capsys, ["flops", "--model", "resnet20", "--input-size", "100000"])
    assert "--input-size" in line and str(cli.MAX_FLOPS_INPUT) in line
    assert main(["flops", "--model", "resnet20", "--input-size",
                 str(cli.MAX_FLOPS_INPUT), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_shape"][1] == cli.MAX_FLOPS_INPUT


def test_bench_out_is_never_overwritten_unasked(capsys, tmp_path):
    old = tmp_path / "results.json"
    old.write_text("earlier results")
    argv = ["bench", "--model", "mnist-resnet", "--quick", "--no-resnet18", "--kinds",
            "1x1xCx1", "--batch", "1", "--repeats", "1", "--json"]
    line = _one_error_line(capsys, argv + ["--out", str(old)])
    assert "exists" in line and "--force" in line and old.read_text() == "earlier results"
    assert "is a folder" in _one_error_line(capsys, argv + ["--out", str(tmp_path)])
    assert main(argv + ["--out", str(old), "--force"]) == 0
    capsys.readouterr()
    assert json.loads(old.read_text())["settings"]["model"] == "mnist-resnet"
    assert not list(tmp_path.glob("*.tmp"))
