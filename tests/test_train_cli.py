"""The command line, in-process through main(argv), and as ``python -m train --help`` and
``lstm-ag-train --help`` in subprocesses."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstm_ag
import train.config
from train.__main__ import build_parser, main
from train.config import FIXED_ON_RESUME, PER_TASK, TrainConfig
from train.data import TASKS
from train.loop import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--hidden", "6", "--batch", "8", "--seq-len", "10", "--eval-every", "5",
         "--method", "autograd"]


def _run(capsys, *argv, callback=None):
    code = main([str(a) for a in argv], callback=callback)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_as_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for option in ("sine", "counting", "adding", "--steps", "--hidden", "--batch", "--seq-len",
                   "--lr", "--momentum", "--clip", "--method", "--seed", "--out", "--resume",
                   "--plot", "--optimizer", "lbfgs", "runs/TASK"):
        assert option in done.stdout, option
    assert done.stderr == ""


def test_a_short_run_writes_model_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = _run(capsys, "sine", "--steps", 12, *SMALL, "--out", out)
    assert code == 0, stderr
    assert sorted(os.listdir(out)) == [".lock", "best.npz", "metrics.json", "model.npz"]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("task", "step", "train_loss", "val_mse", "baseline_mse", "seconds"):
        assert key in metrics, key
    assert metrics["task"] == "sine" and metrics["step"] == 12
    assert metrics["val_mse"] > 0 and metrics["seconds"] > 0
    params, config, progress, _ = load_checkpoint(out / "model.npz")
    assert progress.step == 12 and params["Wh"].shape == (6, 24)
    assert config == TrainConfig(steps=12, hidden=6, batch=8, seq_len=10, eval_every=5,
                                 method="autograd")
    assert metrics["config"] == dataclasses.asdict(config)
    assert [line.split("/")[0] for line in stderr.splitlines()] == \
        ["step  5", "step 10", "step 12"]                    # one progress line per evaluation
    assert "validation MSE" in stdout and "baseline (repeat the last value)" in stdout
    assert "x lower" in stdout or "x higher: worse than the baseline so far" in stdout


def test_resume_continues_to_the_total_exactly(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(capsys, "counting", "--steps", 20, *SMALL, "--out", straight)[0] == 0
    assert _run(capsys, "counting", "--steps", 10, *SMALL, "--out", split)[0] == 0
    code, _, err = _run(capsys, "--steps", 20, "--out", split, "--resume")  # task from the file
    assert code == 0, err
    a, _, progress, _ = load_checkpoint(straight / "model.npz")
    b, config, resumed, _ = load_checkpoint(split / "model.npz")
    assert resumed.step == 20 and config.seq_len == 10 and config.task == "counting"
    assert config.method == "autograd"                              # settings came from the file
    for key in a:
        assert np.array_equal(a[key], b[key]), key
        assert np.array_equal(progress.velocity[key], resumed.velocity[key]), key


def test_resume_refuses_changed_settings_and_a_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, "sine", "--steps", 5, "--out", out, "--resume")
    assert code == 2 and "no checkpoint at" in err and "model.npz" in err
    assert _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out)[0] == 0
    code, _, err = _run(capsys, "sine", "--steps", 8, "--hidden", 7, "--out", out, "--resume")
    assert code == 2 and "--hidden 7 differs from the checkpoint's hidden=6 in" in err
    code, _, err = _run(capsys, "adding", "--steps", 8, "--out", out, "--resume")
    assert code == 2 and "task adding differs from the checkpoint's task=sine in" in err
    assert "Traceback" not in err


def test_ctrl_c_saves_exits_130_without_traceback(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", [os.path.join("bin", "lstm-ag-train")])  # as the script

    def ctrl_c(step, params, info):
        if step == 7:
            raise KeyboardInterrupt
    code, stdout, stderr = _run(capsys, "sine", "--steps", 20, *SMALL, "--out", out,
                                callback=ctrl_c)
    assert code == 130
    assert "Traceback" not in stderr + stdout
    message = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(message) == 1 and "step 7" in message[0]
    assert f"continue with: lstm-ag-train sine --out {out} --resume" in message[0]
    _, _, progress, _ = load_checkpoint(out / "model.npz")
    assert progress.step == 7
    assert sorted(os.listdir(out)) == [".lock", "best.npz", "metrics.json",
                                       "model.npz"]                          # no temporary


def test_non_finite_loss_exits_non_zero_keeping_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = _run(capsys, "sine", "--steps", 50, *SMALL, "--lr", "1e12",
                           "--momentum", 0, "--clip", 0, "--out", out)
    assert code == 1
    assert "error: training stopped at step" in stderr and "is not finite" in stderr
    assert "Traceback" not in stderr
    params, _, progress, _ = load_checkpoint(out / "model.npz")
    assert all(np.isfinite(p).all() for p in params.values())
    assert f"last good checkpoint (step {progress.step}, validation MSE" in stderr


def test_plot_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib fails
    code, _, err = _run(capsys, "sine", "--steps", 5, *SMALL, "--out", tmp_path, "--plot")
    assert code == 2 and "pip install" in err and "matplotlib" in err
    assert not os.listdir(tmp_path)                             # failed before training


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, stdout, _ = _run(capsys, "adding", "--steps", 5, *SMALL, "--out", tmp_path, "--plot")
    assert code == 0
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot.png" in stdout


def test_lbfgs_full_batch_from_the_command_line(tmp_path, capsys):
    code, stdout, err = _run(capsys, "sine", "--optimizer", "lbfgs", "--train-size", 16,
                             "--steps", 6, *SMALL, "--out", tmp_path)
    assert code == 0, err
    assert "optimizer lbfgs" in stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["optimizer"] == "lbfgs" and metrics["step"] == 6
    assert metrics["config"]["train_size"] == 16 == metrics["task_spec"]["n_train"]
    assert metrics["history"][-1]["val_mse"] < metrics["history"][0]["val_mse"]


@pytest.mark.parametrize("argv, match", [
    (["music"], "invalid choice: 'music'"),
    (["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
    (["--method", "magic"], "invalid choice: 'magic'"),
])
def test_unparsable_arguments_exit_2_with_a_message(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--momentum", "1.5"], "--momentum must be in [0, 1), got 1.5"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--seq-len", "1"], "--seq-len must be >= 2, got 1"),
    (["--lr", "nan"], "--lr must be a finite number, got nan"),
    (["--batch", "5000"], "--batch 5000 exceeds the training set (2000 sequences)"),
    (["adding", "--train-size", "63"], "--batch 64 exceeds the training set (63 sequences)"),
])
def test_bad_values_return_2_with_one_line_naming_the_option(argv, message, tmp_path, capsys):
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "run")
    assert code == 2
    assert err.splitlines()[-1] == f"python -m train: error: {message}"
    assert not (tmp_path / "run").exists()                       # refused before anything


def test_help_shows_each_tasks_defaults_from_trainconfig(monkeypatch):
    help_text = build_parser().format_help()
    for name in TASKS:
        config = TrainConfig(task=name)
        line = next(row for row in help_text.splitlines() if row.split()[:1] == [name])
        for setting in PER_TASK:
            assert f"{setting.replace('_', '-')} {getattr(config, setting)}" in line, setting
    # Changing the one table changes the help: nothing else spells the values.
    monkeypatch.setitem(train.config.TASK_DEFAULTS, "counting",
                        {**train.config.TASK_DEFAULTS["counting"], "lr": 0.125})
    line = next(row for row in build_parser().format_help().splitlines()
                if row.startswith("  counting"))
    assert "lr 0.125" in line and "lr 0.5" not in line


#: A valid value differing from the first run's below, for every setting of TrainConfig.
OTHER_VALUE = dict(task="counting", steps=9, hidden=7, layers=2, bidirectional=True, seq_len=11,
                   tbptt=5, batch=9, train_size=1999,
                   lr=0.2, lr_decay=0.5, momentum=0.5, clip=2.0, optimizer="lbfgs",
                   method="bptt", seed=1, eval_every=3,
                   patience=3, threads=2, data="x.csv", column="x", diff=True, val_frac=0.1,
                   test_frac=0.1, horizon=5, season=12, seasonal_diff=12)


def test_every_setting_has_an_other_value_to_try():
    assert list(OTHER_VALUE) == [f.name for f in dataclasses.fields(TrainConfig)]


@pytest.mark.parametrize("name", list(OTHER_VALUE))
def test_resume_refuses_exactly_the_fixed_settings(name, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, "sine", "--steps", 6, *SMALL, "--out", out)[0] == 0
    option = name if name == "task" else "--" + name.replace("_", "-")
    value = OTHER_VALUE[name]
    argv = [value] if name == "task" else [option] if value is True else [option, value]
    code, _, err = _run(capsys, *argv, "--out", out, "--resume", "--steps", 9)
    if name in FIXED_ON_RESUME:
        assert code == 2
        assert f"{option} {value} differs from the checkpoint's {name}=" in err
    else:
        assert code == 0, err
        _, config, progress, _ = load_checkpoint(out / "model.npz")
        assert getattr(config, name) == value and progress.step == 9


def test_console_script_is_immune_to_a_train_py_in_the_working_directory(tmp_path):
    script = shutil.which("lstm-ag-train")
    if script is None:
        pytest.skip("the console script lstm-ag-train is not installed")
    (tmp_path / "train.py").write_text('print("a user\'s own train.py")\n')
    done = subprocess.run([script, "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "Defaults per task" in done.stdout
    assert "usage: lstm-ag-train" in done.stdout
    shadowed = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert shadowed.stdout == "a user's own train.py\n"     # why the README recommends it


def test_plotted_states_are_the_forward_states():
    from train.plot import states
    params = lstm_ag.init_params(2, 5, 1, seed=3)
    xs = np.random.default_rng(0).standard_normal((7, 2))
    hs, cs = states(params, xs)
    ref_hs, (h, c) = lstm_ag.lstm_forward(params, xs)
    assert hs.shape == cs.shape == (7, 5)
    np.testing.assert_array_equal(hs, ref_hs)
    np.testing.assert_array_equal(cs[-1], c)
