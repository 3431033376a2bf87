"""``lstm-ag-train sweep``: many runs on joblib's loky processes and on a Dask cluster, against
the same runs made one by one with the trainer; a failing setting; Ctrl-C and the rerun that
continues; usage errors. Tiny runs (40 steps, H <= 5): the file takes seconds."""
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lstm_ag
from train import sweep
from train.__main__ import main as train_main

ROOT = Path(__file__).resolve().parent.parent
TASK = ["sine", "--steps", "40", "--seq-len", "8", "--train-size", "32", "--batch", "8",
        "--eval-every", "20"]
GRID = ["--grid", "hidden=3,5"]
SETTINGS = {"hidden=3": ["--hidden", "3"], "hidden=5": ["--hidden", "5"]}
SEEDS = 2
RUN_FILES = ("model.npz", "best.npz", "metrics.json")

def _sweep(capsys, *argv, callback=None):
    code = sweep.main([str(a) for a in argv], "lstm-ag-train", callback=callback)
    out, err = capsys.readouterr()
    return code, out, err


def _interrupted_run(path, *trainer_args, at=13):
    """A run stopped by Ctrl-C at step ``at`` (its checkpoint and metrics say so), as a sweep
    interrupted in the middle of that run leaves it."""
    def stop(step, params, info):
        if step == at:
            raise KeyboardInterrupt
    assert train_main([*trainer_args, "--quiet", "--out", str(path)], callback=stop) == 130
    assert json.loads((path / "metrics.json").read_text())["status"] == "interrupted"


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    """The sweep's runs made one by one by the trainer: ``{label: (metrics, params)}``."""
    root = tmp_path_factory.mktemp("one_by_one")
    runs = {}
    for name, option in SETTINGS.items():
        for seed in range(SEEDS):
            out = root / name / f"seed={seed}"
            assert train_main([*TASK, *option, "--seed", str(seed), "--quiet",
                               "--out", str(out)]) == 0
            runs[f"{name}/seed={seed}"] = (json.loads((out / "metrics.json").read_text()),
                                           lstm_ag.load(out / "model.npz")[0])
    return runs


def _check_against_one_by_one(out, one_by_one):
    """summary.json holds exactly the one-by-one runs' numbers and their statistics, bit for
    bit; every run's trained parameters are those of its one-by-one twin."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "sine" and summary["grid"] == {"hidden": [3, 5]}
    assert summary["seeds"] == list(range(SEEDS))
    assert (summary["runs"], summary["done"], summary["failed"]) == (4, 4, 0)
    assert [entry["name"] for entry in summary["settings"]] == list(SETTINGS)
    for entry in summary["settings"]:
        metrics = [one_by_one[f"{entry['name']}/seed={seed}"][0] for seed in range(SEEDS)]
        vals = [m["val_mse"] for m in metrics]
        baselines = [m["baseline_mse"] for m in metrics]
        assert [row["val_mse"] for row in entry["seeds"]] == vals
        assert [row["baseline"] for row in entry["seeds"]] == baselines
        assert [row["status"] for row in entry["seeds"]] == ["done"] * SEEDS
        assert entry["val_mse"] == {"mean": float(np.mean(vals)),
                                    "std": float(np.std(vals, ddof=1)),
                                    "min": min(vals), "max": max(vals)}
        assert entry["baseline"] == sum(baselines) / SEEDS
        assert entry["beat"] == sum(b >= 10 * v for b, v in zip(baselines, vals, strict=True))
        for seed in range(SEEDS):
            label = f"{entry['name']}/seed={seed}"
            params = lstm_ag.load(out / label / "model.npz")[0]
            for key, value in one_by_one[label][1].items():
                np.testing.assert_array_equal(params[key], value, err_msg=f"{label} {key}")
    return summary


def _without_times(summary):
    """The summary less what depends on the session or the clock."""
    if isinstance(summary, dict):
        return {k: _without_times(v) for k, v in summary.items()
                if k not in ("session", "seconds")}
    if isinstance(summary, list):
        return [_without_times(v) for v in summary]
    return summary


def _stamps(path):
    """``{file: (mtime_ns, bytes)}`` of every file under ``path`` but the lock files."""
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_joblib_sweep_equals_the_runs_made_one_by_one(tmp_path, capsys, one_by_one):
    out = tmp_path / "sweep"
    _interrupted_run(out / "hidden=5" / "seed=1", *TASK, "--hidden", "5", "--seed", "1")
    rows = []
    plot = ["--plot"]
    code, stdout, err = _sweep(capsys, *TASK, *GRID, "--seeds", SEEDS, "--jobs", 2,
                               "--out", out, *plot, callback=lambda run, row: rows.append(row))
    assert code == 0, err
    summary = _check_against_one_by_one(out, one_by_one)
    assert summary["session"]["engine"] == "joblib (loky), 2 processes"
    assert (summary["session"]["new"], summary["session"]["resumed"]) == (3, 1)
    assert sorted(row["dir"] for row in rows) == sorted(one_by_one)      # each run, once
    assert "3 new, 1 resumed, 0 finished before" in stdout
    for name in SETTINGS:
        assert f"\n{name} " in stdout                                    # its table row
    assert "sweep: 4/4 runs done, 0 running, 0 failed" in err           # the progress line
    csv = (out / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("hidden,runs,done,failed,val_mse_mean,val_mse_std")
    first = dict(zip(csv[0].split(","), csv[1].split(","), strict=True))
    assert float(first["val_mse_mean"]) == summary["settings"][0]["val_mse"]["mean"]
    if importlib.util.find_spec("matplotlib") is not None:      # CI installs the plot extra
        assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:                  # here the run says why there is no picture (tested on its own below)
        assert "--plot needs matplotlib" in err and not (out / "summary.png").exists()

    # The same command again: nothing is redone, the summary is the same.
    before = _stamps(out)
    code, stdout, err = _sweep(capsys, *TASK, *GRID, "--seeds", SEEDS, "--out", out)
    assert code == 0, err
    assert "0 new, 0 resumed, 4 finished before (skipped)" in stdout
    after = _stamps(out)
    assert {k: v for k, v in after.items() if not k.startswith("summary")} == \
        {k: v for k, v in before.items() if not k.startswith("summary")}
    assert _without_times(json.loads((out / "summary.json").read_text())) == \
        _without_times(summary)


def test_dask_sweep_equals_the_runs_made_one_by_one(tmp_path, capsys, one_by_one):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "sweep"
    # Stopped in the middle of a run: its checkpoint goes to the worker and the run resumes
    # there (the workers are treated as not sharing this filesystem).
    _interrupted_run(out / "hidden=3" / "seed=0", *TASK, "--hidden", "3", "--seed", "0")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        code, stdout, err = _sweep(capsys, *TASK, *GRID, "--seeds", SEEDS,
                                   "--scheduler", cluster.scheduler_address, "--out", out)
    assert code == 0, err
    summary = _check_against_one_by_one(out, one_by_one)
    assert summary["session"]["engine"].startswith("Dask scheduler tcp://")
    assert summary["session"]["workers"] == 2
    assert "3 new, 1 resumed, 0 finished before" in stdout
    assert not list(out.rglob("*.tmp"))


def test_a_failing_setting_is_reported_and_the_others_go_on(tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "sweep"
    # lr 1e200: the loss is not finite at the first step, the trainer's exit status 1.
    argv = [*TASK, "--hidden", "3", "--grid", "lr=1e200,0.1", "--seeds", SEEDS,
            "--dask-local", 2, "--out", out]
    code, stdout, err = _sweep(capsys, *argv)
    assert code == 1, err
    summary = json.loads((out / "summary.json").read_text())
    bad, good = summary["settings"]
    assert (bad["name"], bad["done"], bad["failed"], bad["val_mse"]) == \
        ("lr=1e+200", 0, 2, None)
    assert (good["name"], good["done"], good["failed"]) == ("lr=0.1", 2, 0)
    assert good["val_mse"]["max"] > good["val_mse"]["min"] > 0
    for seed, row in enumerate(bad["seeds"]):
        run = out / f"lr=1e+200/seed={seed}"
        assert row["status"] == "failed"
        assert row["error"].startswith("training stopped at step 1: the loss is not finite")
        assert str(run / "model.npz") in row["error"]     # not the worker's temporary dir
        assert f"failed: lr=1e+200/seed={seed}: training stopped" in stdout
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "diverged" and metrics["message"] == row["error"]
    assert "sweep: 2/4 runs done, 0 running, 2 failed" in err

    # Diverged runs are finished: run again, they would diverge again; nothing is redone.
    before = _stamps(out)
    code, stdout, err = _sweep(capsys, *argv)
    assert code == 1, err
    assert "0 new, 0 resumed, 4 finished before (skipped)" in stdout
    assert {k: v for k, v in _stamps(out).items() if not k.startswith("summary")} == \
        {k: v for k, v in before.items() if not k.startswith("summary")}


def _statuses(out):
    found = {}
    for path in out.glob("*/seed=*/metrics.json"):
        with contextlib.suppress(OSError, ValueError):    # being replaced: read it next time
            found[str(path.parent.relative_to(out))] = json.loads(path.read_text())["status"]
    return found


def test_ctrl_c_stops_the_sweep_and_the_same_command_continues(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [*TASK, *GRID, "--seeds", 6, "--jobs", 2]      # 12 runs: the Ctrl-C comes midway
    command = [sys.executable, "-m", "train", "sweep", *map(str, argv), "--out", str(out)]
    # A session of its own: the Ctrl-C goes to its whole process group, as at a terminal.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "done" not in _statuses(out).values() and process.poll() is None:
            assert time.monotonic() < deadline, "no run finished"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        stdout, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    # (loky's resource tracker may add a warning after it, rarely: a semaphore of a worker
    # killed while it was unlinking it)
    assert ("interrupted; finished runs are kept and the runs in progress keep their last "
            "checkpoint: give the same command again to continue") in err
    assert not (out / "summary.json").exists()
    deadline = time.monotonic() + 60
    while True:                              # the workers are gone with the sweep
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "worker processes left behind"
        time.sleep(0.1)

    statuses = _statuses(out)
    done = sorted(label for label, status in statuses.items() if status == "done")
    assert 1 <= len(done) < 12
    before = _stamps(out)
    code, stdout, err = _sweep(capsys, *argv, "--out", out)
    assert code == 0, err
    assert f"{len(done)} finished before (skipped)" in stdout
    after = _stamps(out)
    for label in done:                       # no finished run redone
        for name in RUN_FILES:
            key = f"{label}/{name}"
            assert after[key] == before[key], key

    reference = tmp_path / "reference"
    code, _, err = _sweep(capsys, *argv, "--out", reference)
    assert code == 0, err
    assert _without_times(json.loads((out / "summary.json").read_text())) == \
        _without_times(json.loads((reference / "summary.json").read_text()))


@pytest.mark.parametrize("argv, message", [
    (["--grid", "hiden=3,4"], "--grid hiden: not a setting of TrainConfig (did you mean hi"),
    (["--grid", "hidden=3,x"], "--grid hidden=x: not an integer"),
    (["--grid", "lr=0.1,fast"], "--grid lr=fast: not a number"),
    (["--grid", "lr=0.1,-1"], "--grid lr=-1.0: lr must be > 0, got -1.0"),
    (["--grid", "method=fast,slow"], "--grid method=slow: method must be one of"),
    (["--grid", "lr=0.1,0.10"], "the value 0.10 is given twice"),
    (["--grid", "seed=1,2"], "--grid seed: the seeds are --seeds N"),
    (["--grid", "task=sine"], "--grid task: a sweep trains one task"),
    (["--grid", "steps=5", "steps=6"], "--grid steps: given twice"),
    (["--steps", "5", "--grid", "steps=5,6"], "--grid steps: also given as --steps 5"),
    (["--grid", "lr=0.1", "counting"], "--grid counting: not KEY=V1,V2"),
    (["--seed", "3"], "--seed: the seeds are --seeds N"),
    (["--resume"], "--resume: a sweep resumes its unfinished runs by itself"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
])
def test_usage_errors_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "sweep"
    code, stdout, err = _sweep(capsys, "sine", *argv, "--out", out)
    assert code == 2
    lines = err.splitlines()
    assert lines[0].startswith("usage: lstm-ag-train sweep")
    assert lines[-1].startswith("lstm-ag-train sweep: error: ") and message in lines[-1], err
    assert stdout == "" and not out.exists()


def test_a_directory_of_other_runs_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, _, err = _sweep(capsys, *TASK, "--seeds", 1, "--jobs", 1, "--out", out)
    assert code == 0, err
    code, _, err = _sweep(capsys, *TASK, "--batch", 4, "--seeds", 1, "--jobs", 1, "--out", out)
    assert code == 2
    assert err.splitlines()[-1].endswith(f"{out / 'seed=0'} holds a run with --batch 8, this "
                                         "sweep's run has 4: a sweep continues its own runs "
                                         "only; give another --out")
    code, _, err = _sweep(capsys, *TASK, "--seeds", 1, "--out", out / "seed=0")
    assert code == 2 and "holds a single run (model.npz)" in err


def test_a_sweep_without_matplotlib_runs_and_says_it_skipped_the_picture(tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib fails
    out = tmp_path / "sweep"
    code, _, err = _sweep(capsys, *TASK, "--grid", "hidden=4", "--seeds", 1, "--jobs", 1,
                          "--out", out, "--plot")
    assert code == 0, err
    assert "--plot needs matplotlib" in err and not (out / "summary.png").exists()
    assert (out / "summary.csv").exists()
