"""The trainer never loses work and never prints a traceback (issue 10): exit statuses 0, 1, 2,
3 and 130 with one line naming the path or option; the run directory locked and protected;
memory checked before allocating; tampered checkpoints refused naming the file and the field;
metrics.json agreeing with the checkpoint; resumes that continue as an uninterrupted run."""
import errno
import fcntl
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
import train.loop
from train.__main__ import main
from train.config import TrainConfig
from train.loop import load_checkpoint
from train.rundir import RunError, check_memory, memory_estimate

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--hidden", "6", "--batch", "8", "--seq-len", "10", "--eval-every", "5",
         "--method", "autograd"]
PROG = "python -m train"


def _run(capsys, *argv, callback=None):
    code = main([str(a) for a in argv], callback=callback)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _error(err):
    """The one error line of stderr (the last), checked to be the only one of its kind."""
    lines = [line for line in err.splitlines() if line.startswith(f"{PROG}: ")]
    assert len(lines) == 1, err
    return lines[0]


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def _step(out):
    return load_checkpoint(out / "model.npz").progress.step


# ----------------------------------------------------------------------------- exit 3

def test_out_naming_a_file_exits_3(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    code, _, err = _run(capsys, "sine", "--steps", 2, *SMALL, "--out", tmp_path / "f")
    assert code == 3
    assert _error(err) == (f"{PROG}: error: --out {tmp_path / 'f'} is a file, not a directory "
                           "(give a directory for the run's files)")
    assert (tmp_path / "f").read_text() == "mine"
    code, _, err = _run(capsys, "sine", "--steps", 2, *SMALL, "--out", tmp_path / "f" / "run")
    assert code == 3 and f"cannot write the run's files in {tmp_path / 'f' / 'run'}" in err


def test_read_only_out_exits_3(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:                        # chmod does not stop root: say it is refused
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
            False if os.fspath(p) == str(out) else real(p, mode, **kw)))
    else:
        out.chmod(0o500)
    try:
        code, _, err = _run(capsys, "sine", "--steps", 2, *SMALL, "--out", out)
    finally:
        out.chmod(0o700)
    assert code == 3
    assert _error(err) == (f"{PROG}: error: cannot write the run's files in {out}: permission "
                           "denied (read-only directory)")
    assert os.listdir(out) == []


@pytest.mark.parametrize("target", ["model.npz", "metrics.json"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failing_write_exits_3_keeping_the_last_good_checkpoint(tmp_path, capsys, monkeypatch,
                                                                  code, target):
    out = tmp_path / "run"
    real = os.replace

    def replace(src, dst, *args, **kwargs):          # the write at step 10 fails
        if os.path.basename(dst) == target and _state["step"] >= 10:
            raise OSError(code, os.strerror(code), src)
        return real(src, dst, *args, **kwargs)
    _state = {"step": 0}
    monkeypatch.setattr(os, "replace", replace)
    status, _, err = _run(capsys, "sine", "--steps", 20, *SMALL, "--out", out,
                          callback=lambda step, p, info: _state.update(step=step))
    assert status == 3
    assert _error(err) == (f"{PROG}: error: cannot write the run's files in {out / target}: "
                           f"{os.strerror(code)}")
    monkeypatch.undo()
    expected = 5 if target == "model.npz" else 10
    assert _step(out) == expected                       # the last good checkpoint
    metrics = _metrics(out)
    if target == "model.npz":                           # told why, at the checkpoint's step
        assert (metrics["status"], metrics["step"]) == ("failed", 5)
        assert "No space" in metrics["message"] or os.strerror(code) in metrics["message"]
    else:                                               # metrics.json itself: one eval behind
        assert (metrics["status"], metrics["step"]) == ("running", 5)
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


# ----------------------------------------------------------------------------- exit 2

def test_a_model_is_never_replaced_without_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, "sine", "--steps", 10, *SMALL, "--out", out)[0] == 0
    before = (out / "model.npz").read_bytes()
    code, _, err = _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out)
    assert code == 2
    assert _error(err) == (f"{PROG}: error: {out} already holds a trained model "
                           f"({out / 'model.npz'}); continue it with --resume, replace it with "
                           "--overwrite, or choose another --out")
    assert (out / "model.npz").read_bytes() == before
    code, _, err = _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out, "--overwrite")
    assert code == 0, err
    assert _step(out) == 5 and _metrics(out)["step"] == 5
    code, _, err = _run(capsys, "--out", out, "--overwrite", "--resume")
    assert code == 2 and "give one of them" in _error(err)


def test_a_run_directory_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)      # another trainer holds it
        os.write(fd, b"4242\n")
        code, _, err = _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out)
        assert code == 2
        assert _error(err) == (f"{PROG}: error: {out} is in use by another trainer (pid 4242); "
                               "wait for it to finish, or choose another --out")
        assert not (out / "model.npz").exists()
    finally:
        os.close(fd)                                        # it ends: the lock goes with it
    assert _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out)[0] == 0


@pytest.mark.parametrize("argv, message", [
    (["--hidden", 10**7],
     "--hidden 10000000: the weights and the optimizer's copies would need about"),
    (["--train-size", 10**11],
     "--train-size 100000000000 with --seq-len 50: the training data would need about"),
    (["--seq-len", 10**9],
     "--batch 32 with --seq-len 1000000000 and --hidden 32: one training step would need"),
    (["--optimizer", "lbfgs", "--train-size", 10**6, "--hidden", 2000],
     ("--train-size 1000000 (L-BFGS uses every sequence at each step) with --seq-len 50 and "
      "--hidden 2000: one training step")),
    (["--seq-len", 3], "--seq-len must be > 5 for sine (its first 5 steps carry no loss), got 3"),
])
def test_sizes_are_checked_before_anything_is_allocated(argv, message, tmp_path, capsys):
    code, _, err = _run(capsys, "sine", *argv, "--out", tmp_path / "run")
    assert code == 2
    assert _error(err).startswith(f"{PROG}: error: {message}")
    assert not (tmp_path / "run").exists()


def test_the_memory_estimate_names_the_largest_part():
    config = TrainConfig(task="sine", hidden=64, batch=32, seq_len=50)
    parts = memory_estimate(config, 1, 1, 256)
    assert [what for _, what, _ in parts] == ["the training data", "one training step",
                                              "the weights and the optimizer's copies"]
    total = check_memory(config, 1, 1, 256, available=2**40)
    assert total == sum(n for n, _, _ in parts) < 2**30          # a small run: under 1 GiB
    with pytest.raises(RunError, match=r"^--batch 32 with --seq-len 50 and --hidden 64: one "
                                       r"training step would need") as err:
        check_memory(config, 1, 1, 256, available=total - 1)
    assert err.value.exit_status == 2


def _tamper(path, **changes):
    """Rewrite the checkpoint ``path`` with metadata ``changes`` (a callable: applied)."""
    params, meta = lstm_ag.load(path)
    for key, change in changes.items():
        if callable(change):
            change(meta)
        else:
            meta[key] = change
    lstm_ag.save(path, params, **meta)


def _config(**changes):
    return lambda meta: meta["config"].update(changes)


def _row(i, **changes):
    return lambda meta: meta["history"][i].update(changes)


def _pop(key, sub=None):
    return lambda meta: (meta[sub] if sub else meta).pop(key)


TAMPERED = [
    # (changes, the field the message names)
    (dict(config=_config(lr="x")), "lr must be a number, got 'x'"),
    (dict(config=_config(seed=-5)), "seed must be >= 0, got -5"),
    (dict(config=_config(hidden=7)), "params have H=6, its config hidden=7"),
    (dict(config=_config(steps=3)), "step 7 exceeds its config's steps=3"),
    (dict(config=_config(extra=1)), "unknown ['extra']"),
    (dict(config="c"), "a config must be a dict of settings, got str"),
    (dict(step="abc"), "step must be an integer, got 'abc'"),
    (dict(step=10**30), f"step {10**30} exceeds its config's steps=20"),
    (dict(step=1.5), "step must be an integer, got 1.5"),
    (dict(step=-1), "step must be a finite number >= 0.0, got -1"),
    (dict(step=True), "step must be an integer, got True"),
    (dict(step=None), "step must be an integer, got None"),
    (dict(seconds="s"), "seconds must be a number, got 's'"),
    (dict(seconds=-1.0), "seconds must be a finite number >= 0.0, got -1.0"),
    (dict(history="h"), "history must be a list of rows, got str"),
    (dict(history=[1]), "history[0] must be a dict with the keys"),
    (dict(history=_row(0, val_mse="v")), "history[0].val_mse must be a number, got 'v'"),
    (dict(history=_row(0, step=9)), "history[0].step 9 exceeds the checkpoint's step 7"),
    (dict(history=_row(0, step=0)), "history[0].step must be a finite number >= 1, got 0"),
    (dict(history=_row(0, lr=-1.0)), "history[0].lr must be a finite number >= 0.0"),
    (dict(history=_row(0, extra=1)), "history[0] must be a dict with the keys"),
    (dict(velocity=None), "velocity must hold "),
    (dict(velocity=_pop("Wx", "velocity")), "velocity must hold "),
    (dict(velocity=lambda m: m["velocity"].update(Wx=np.zeros(3))), "velocity['Wx'] must be "),
    (dict(window=lambda m: m["window"].update(losses=np.zeros(9))),
     "window.losses must be a float64 vector of at most 2 values"),
    (dict(window=lambda m: m["window"].update(norms=np.array([1.0]))),
     "window must hold as many losses as norms"),
    (dict(window="w"), "window must be a dict of 'losses' and 'norms'"),
    (dict(task_spec="t"), "task_spec must be a dict, got str"),
    (dict(task_spec=lambda m: m["task_spec"].update(name="adding")),
     "task_spec.name must be its config's 'sine', got 'adding'"),
    (dict(task_spec=lambda m: m["task_spec"].update(n_train=5)),
     "task_spec.n_train must be its config's 64, got 5"),
    (dict(task_spec=lambda m: m["task_spec"].update(colour=1)),
     "task_spec has arguments ['colour'] that task 'sine' does not take"),
    (dict(task_spec=lambda m: m["task_spec"].update(n_val=0)),
     "task_spec.n_val must be a finite number >= 1, got 0"),
    (dict(task_spec=lambda m: m["task_spec"].update(noise=-1.0)),
     "task_spec: noise must be a number in [0, 1000], got -1.0"),
    (dict(task_spec=lambda m: m["task_spec"].update(noise=2.2669935478879085e+153)),
     "task_spec: noise must be a number in [0, 1000], got 2.2669935478879085e+153"),
    (dict(task_spec=lambda m: m["task_spec"].update(burn_in="x")), "task_spec: burn_in"),
    (dict(lstm_ag_version=5), "lstm_ag_version must be a string, got 5"),
    (dict(surprise=1), "unknown metadata ['surprise']"),
    (dict(step=_pop("step")), "its metadata lacks ['step']"),
]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """The files of a run stopped at step 7 of 20 (made once for the module)."""
    out = tmp_path_factory.mktemp("stopped") / "run"

    def stop_at_7(step, params, info):
        if step == 7:
            raise KeyboardInterrupt
    assert main([str(a) for a in ("sine", "--steps", 20, *SMALL, "--train-size", 64, "--out",
                                  out, "--quiet")], callback=stop_at_7) == 130
    return {name: (out / name).read_bytes() for name in ("model.npz", "metrics.json")}


@pytest.mark.parametrize("changes, message", TAMPERED)
def test_a_tampered_checkpoint_exits_2_naming_file_and_field(changes, message, tmp_path, capsys,
                                                             stopped_run):
    out = tmp_path / "run"
    out.mkdir()
    for name, content in stopped_run.items():
        (out / name).write_bytes(content)
    _tamper(out / "model.npz", **changes)
    before = (out / "model.npz").read_bytes()
    code, _, err = _run(capsys, "--out", out, "--resume")
    assert code == 2
    line = _error(err)
    assert line.startswith(f"{PROG}: error: {out / 'model.npz'}: ") and message in line
    assert (out / "model.npz").read_bytes() == before


# ----------------------------------------------------------------------------- resume

def test_resume_continues_to_the_runs_total_with_the_same_progress_lines(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    code, _, whole = _run(capsys, "counting", "--steps", 20, *SMALL, "--out", straight)
    assert code == 0

    def stop_at_7(step, params, info):
        if step == 7:
            raise KeyboardInterrupt
    code, _, first = _run(capsys, "counting", "--steps", 20, *SMALL, "--out", split,
                          callback=stop_at_7)
    assert code == 130
    metrics = _metrics(split)                        # the truth: step 7, like the checkpoint
    assert (metrics["status"], metrics["step"], metrics["evaluated_at"]) == ("interrupted", 7, 5)
    assert _step(split) == 7
    code, _, second = _run(capsys, "--out", split, "--resume")      # no --steps: to 20
    assert code == 0, second
    assert _step(split) == 20 and (_metrics(split)["status"], _metrics(split)["step"]) == \
        ("done", 20)

    def lines(text):                                 # without steps/s: the one timing
        return [line.split("steps/s")[1] for line in text.splitlines() if line.startswith("step")]
    assert lines(first) + lines(second) == lines(whole)
    assert len(lines(whole)) == 4                    # steps 5, 10, 15, 20
    a, b = load_checkpoint(straight / "model.npz"), load_checkpoint(split / "model.npz")
    for key in a.params:
        assert np.array_equal(a.params[key], b.params[key]), key
    assert [dict(r, seconds=0, steps_per_second=0) for r in a.progress.history] == \
        [dict(r, seconds=0, steps_per_second=0) for r in b.progress.history]


def test_metrics_say_diverged_at_the_checkpoints_step(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, "sine", "--steps", 50, *SMALL, "--lr", "1e12", "--momentum", 0,
                        "--clip", 0, "--eval-every", 1, "--out", out)
    assert code == 1 and "is not finite" in _error(err)
    metrics = _metrics(out)
    assert metrics["status"] == "diverged" and metrics["step"] == _step(out)
    assert "is not finite" in metrics["message"]


# ----------------------------------------------------------------------------- Ctrl-C

def _kill_self(step, params, info):
    if step == 7:
        os.kill(os.getpid(), signal.SIGINT)          # a real Ctrl-C, through the handler


def test_a_real_ctrl_c_and_a_second_one_while_saving(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real, saves = train.loop.save_checkpoint, []

    def save_with_ctrl_c(path, params, progress, *args):     # Ctrl-C inside every save
        if os.path.basename(path) == "model.npz":
            saves.append(progress.step)
            if progress.step >= 5:
                os.kill(os.getpid(), signal.SIGINT)
        return real(path, params, progress, *args)
    monkeypatch.setattr(train.loop, "save_checkpoint", save_with_ctrl_c)
    code, _, err = _run(capsys, "sine", "--steps", 20, *SMALL, "--out", out)
    assert code == 130
    # The evaluation save at step 5 completed, then its Ctrl-C stopped the run; the save
    # for the interruption was not needed (step 5 is on disk already).
    assert saves == [0, 5]
    expected = (f"interrupted at step 5; checkpoint saved to {out / 'model.npz'}; continue "
                f"with: {PROG} sine --out {out} --resume")
    assert [line for line in err.splitlines() if "interrupted" in line] == [expected]
    assert _step(out) == 5 and (_metrics(out)["status"], _metrics(out)["step"]) == \
        ("interrupted", 5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored

    monkeypatch.setattr(train.loop, "save_checkpoint", save_with_ctrl_c)
    saves.clear()
    code, _, err = _run(capsys, "--out", out, "--resume", callback=_kill_self)
    assert code == 130                  # first Ctrl-C at step 7, the second inside its save
    assert saves == [7] and _step(out) == 7 and _metrics(out)["step"] == 7
    assert len([line for line in err.splitlines() if "interrupted" in line]) == 1


def test_ctrl_c_during_start_up_exits_130_in_one_line(tmp_path):
    # A real SIGINT while numpy is being imported (the slowest part of start-up).
    script = (
        "import builtins, os, signal, sys\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'numpy' and 'numpy' not in sys.modules:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "from train.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", script, "sine", "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    expected = "python -m train: interrupted; any checkpoint on disk is the last complete one"
    assert done.stderr.splitlines() == [expected]
    assert not (tmp_path / "r").exists()


def test_the_cli_module_imports_no_numpy_before_its_ctrl_c_handler():
    code = ("import sys, train.__main__; "
            "print(sorted({'numpy', 'autograd', 'lstm_ag'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout == "[]\n", done.stderr


def test_two_trainers_on_one_directory(tmp_path):
    """A second trainer is refused while the first runs; the first, stopped by a real
    Ctrl-C, exits 130 with metrics.json agreeing with its checkpoint."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "train", "sine", "--steps", "1000000", *SMALL, "--out",
            str(out)]
    first = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        for _ in range(1200):                       # until it has evaluated once
            if out.joinpath("metrics.json").exists() and _metrics(out)["evaluated_at"]:
                break
            time.sleep(0.1)
        second = subprocess.run([*argv[:-2], "--out", str(out), "--overwrite"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.splitlines()[-1] == (
            f"python -m train: error: {out} is in use by another trainer (pid {first.pid}); "
            "wait for it to finish, or choose another --out")
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130 and "Traceback" not in err
    assert _metrics(out)["status"] == "interrupted"
    assert _metrics(out)["step"] == _step(out) >= 5
