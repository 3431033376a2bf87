"""The command line, in-process through main(argv) and once as ``python -m train --help``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstm_ag
from train.__main__ import main
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
    assert sorted(os.listdir(out)) == ["metrics.json", "model.npz"]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("task", "step", "train_loss", "val_mse", "baseline_mse", "seconds"):
        assert key in metrics, key
    assert metrics["task"] == "sine" and metrics["step"] == 12
    assert metrics["val_mse"] > 0 and metrics["seconds"] > 0
    params, config, progress = load_checkpoint(out / "model.npz")
    assert progress.step == 12 and params["Wh"].shape == (6, 24)
    assert config["hidden"] == 6 and config["method"] == "autograd"
    assert [line.split("/")[0] for line in stderr.splitlines()] == \
        ["step  5", "step 10", "step 12"]                    # one progress line per evaluation
    assert "validation MSE" in stdout and "baseline (repeat the last value)" in stdout
    assert "x lower" in stdout or "x higher: worse than the baseline so far" in stdout


def test_resume_continues_to_the_total_exactly(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(capsys, "counting", "--steps", 20, *SMALL, "--out", straight)[0] == 0
    assert _run(capsys, "counting", "--steps", 10, *SMALL, "--out", split)[0] == 0
    code, _, err = _run(capsys, "counting", "--steps", 20, "--out", split, "--resume",
                        "--method", "autograd")
    assert code == 0, err
    a, config, progress = load_checkpoint(straight / "model.npz")
    b, _, resumed = load_checkpoint(split / "model.npz")
    assert resumed.step == 20 and config["seq_len"] == 10          # settings came from the file
    for key in a:
        assert np.array_equal(a[key], b[key]), key
        assert np.array_equal(progress.velocity[key], resumed.velocity[key]), key


def test_resume_refuses_changed_settings_and_a_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, "sine", "--steps", 5, "--out", out, "--resume")
    assert code == 2 and "no checkpoint at" in err and "model.npz" in err
    assert _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out)[0] == 0
    code, _, err = _run(capsys, "sine", "--steps", 8, "--hidden", 7, "--out", out, "--resume")
    assert code == 2 and "--hidden 7 differs from the checkpoint's hidden=6" in err
    code, _, err = _run(capsys, "adding", "--steps", 8, "--out", out, "--resume")
    assert code == 2 and "is a 'sine' run, not 'adding'" in err


def test_ctrl_c_saves_exits_130_without_traceback(tmp_path, capsys):
    out = tmp_path / "run"

    def ctrl_c(step, params, info):
        if step == 7:
            raise KeyboardInterrupt
    code, stdout, stderr = _run(capsys, "sine", "--steps", 20, *SMALL, "--out", out,
                                callback=ctrl_c)
    assert code == 130
    assert "Traceback" not in stderr + stdout
    message = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(message) == 1 and "step 7" in message[0] and "--resume" in message[0]
    _, _, progress = load_checkpoint(out / "model.npz")
    assert progress.step == 7
    assert sorted(os.listdir(out)) == ["metrics.json", "model.npz"]    # no temporary left


def test_non_finite_loss_exits_non_zero_keeping_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = _run(capsys, "sine", "--steps", 50, *SMALL, "--lr", "1e12",
                           "--momentum", 0, "--clip", 0, "--out", out)
    assert code == 1
    assert "error: training stopped at step" in stderr and "is not finite" in stderr
    assert "Traceback" not in stderr
    params, _, progress = load_checkpoint(out / "model.npz")
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
    assert metrics["config"]["task_spec"]["n_train"] == 16
    assert metrics["history"][-1]["val_mse"] < metrics["history"][0]["val_mse"]


@pytest.mark.parametrize("argv, match", [
    (["music"], "invalid choice: 'music'"),
    (["--steps", "0"], "expected a positive integer, got 0"),
    (["--method", "magic"], "invalid choice: 'magic'"),
])
def test_bad_arguments_exit_2_with_a_message(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert match in capsys.readouterr().err


def test_bad_values_return_2_with_a_message(tmp_path, capsys):
    code, _, err = _run(capsys, "--momentum", "1.5", "--out", tmp_path)
    assert code == 2 and "--momentum must be in [0, 1), got 1.5" in err
    code, _, err = _run(capsys, "--batch", "5000", "--out", tmp_path)
    assert code == 2 and "--batch 5000 exceeds the training set (2000 sequences)" in err


def test_default_method_is_the_contracts():
    from train.__main__ import build_parser, _settings
    args = build_parser().parse_args([])
    settings = _settings(args)
    assert args.task == "sine" and settings["method"] == "fast" == lstm_ag.METHODS[0]
    assert settings["optimizer"] == "sgd" and settings["clip"] > 0


def test_plotted_states_are_the_forward_states():
    from train.plot import states
    params = lstm_ag.init_params(2, 5, 1, seed=3)
    xs = np.random.default_rng(0).standard_normal((7, 2))
    hs, cs = states(params, xs)
    ref_hs, (h, c) = lstm_ag.lstm_forward(params, xs)
    assert hs.shape == cs.shape == (7, 5)
    np.testing.assert_array_equal(hs, ref_hs)
    np.testing.assert_array_equal(cs[-1], c)
