"""One run of a sweep as a Dask worker makes it (``transfer``: the worker need not share the
sweep's filesystem): in a child process given its directory and environment, so that the
worker's working directory, streams and environment are as they were, and the run matches
the same run made by the trainer here."""
import json
import os
import sys

import numpy as np

import lstm_ag
from train.__main__ import main as train_main
from train.sweep_worker import run_one

SERIES = ["series", "--data", "wave.csv", "--steps", "20", "--hidden", "3", "--seed", "0",
          "--quiet"]


def _job(argv, out, data):
    return {"label": "seed=0", "argv": argv, "out": str(out), "resume": False,
            "transfer": True, "files": None, "data": data, "parent": os.getpid()}


def _wave_csv():
    values = np.sin(0.3 * np.arange(120)) + 0.01 * np.arange(120)
    return ("y\n" + "".join(f"{value:.6f}\n" for value in values)).encode()


def test_a_transferred_run_finds_its_relative_data_and_leaves_the_worker_as_it_was(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # no wave.csv here: only the job carries it
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")        # as Dask's nanny sets it
    stdout, stderr, cwd = sys.stdout, sys.stderr, os.getcwd()
    result = run_one(_job(SERIES, tmp_path / "sweep" / "seed=0", {"wave.csv": _wave_csv()}))
    assert (sys.stdout, sys.stderr, os.getcwd()) == (stdout, stderr, cwd)
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
    assert not os.listdir(tmp_path)              # nothing written in the worker's directory
    assert (result["code"], result["error"], result["label"]) == (0, None, "seed=0")
    assert sorted(result["files"]) == ["best.npz", "metrics.json", "model.npz"]
    metrics = result["metrics"]
    assert metrics["status"] == "done" and metrics["config"]["data"] == "wave.csv"

    # The same run made by the trainer in a directory holding the file: the same weights.
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    (here / "wave.csv").write_bytes(_wave_csv())
    assert train_main([*SERIES, "--out", "run"]) == 0
    (here / "sent.npz").write_bytes(result["files"]["model.npz"])
    sent, made = lstm_ag.load(here / "sent.npz")[0], lstm_ag.load(here / "run" / "model.npz")[0]
    assert sent.keys() == made.keys()
    for name in made:
        np.testing.assert_array_equal(sent[name], made[name], err_msg=name)
    mine = json.loads((here / "run" / "metrics.json").read_text())
    assert mine["test"]["mse"] == metrics["test"]["mse"]


def test_a_transferred_run_s_error_names_its_directory_in_the_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep" / "lr=1e+200" / "seed=0"
    argv = ["sine", "--steps", "10", "--hidden", "3", "--lr", "1e200", "--quiet"]
    result = run_one(_job(argv, out, None))
    assert result["code"] == 1                              # the loss is not finite
    assert result["error"].startswith("training stopped at step 1: the loss is not finite")
    assert str(out / "model.npz") in result["error"]
    assert result["metrics"]["status"] == "diverged"
    assert str(out) in result["metrics"]["message"]
    assert str(out).encode() in result["files"]["metrics.json"]
