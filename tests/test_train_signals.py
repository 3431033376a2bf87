"""Every signal a clean stop, and no two files that disagree (issue 22, items 4 and 7):
SIGTERM handled as Ctrl-C (checkpoint saved, exit 143, metrics.json "interrupted"); signals
during start-up held by the entry point (exit 130/143 in one line, never a traceback); an
evaluation interrupted mid-way redone on resume (its history row kept); a metrics.json left
behind its checkpoint by a kill between the two writes, said and repaired; a checkpoint of
another lstm_ag version said on resume, refused where its fields differ; an ETA on each
progress line (issue 18, item 5)."""
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstm_ag
import train.loop
from train.__main__ import main
from train.bookkeeping import clock as _clock
from train.config import TrainConfig
from train.loop import fit, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--hidden", "6", "--batch", "8", "--seq-len", "10", "--eval-every", "5",
         "--method", "autograd"]
PROG = "python -m train"


def _run(capsys, *argv, callback=None):
    code = main([str(a) for a in argv], callback=callback)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def _step(out):
    return load_checkpoint(out / "model.npz").progress.step


def _sigterm_at(step):
    def callback(done, params, info):
        if done == step:
            os.kill(os.getpid(), signal.SIGTERM)      # a real SIGTERM, through the handler
    return callback


def test_sigterm_saves_the_checkpoint_and_exits_143(tmp_path, capsys):
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = _run(capsys, "sine", "--steps", 20, *SMALL, "--out", out,
                        callback=_sigterm_at(7))
    assert code == 143, err
    assert (f"interrupted at step 7; checkpoint saved to {out / 'model.npz'}; continue with: "
            f"{PROG} sine --out {out} --resume") in err
    assert _step(out) == 7
    assert (_metrics(out)["status"], _metrics(out)["step"]) == ("interrupted", 7)
    assert signal.getsignal(signal.SIGTERM) == before                      # restored
    code, _, err = _run(capsys, "--out", out, "--resume")
    assert code == 0, err
    assert _metrics(out)["status"] == "done" and _step(out) == 20


def test_fit_itself_takes_sigterm_as_ctrl_c(tmp_path):
    config = TrainConfig(task="sine", steps=20, hidden=4, batch=8, seq_len=8, eval_every=5,
                         train_size=32)
    task = config.make_task()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    result = fit(config.init_params(task), task, config, checkpoint=tmp_path / "m.npz",
                 metrics=tmp_path / "m.json", callback=_sigterm_at(3), log=io.StringIO())
    assert (result.status, result.step) == ("interrupted", 3)
    assert load_checkpoint(tmp_path / "m.npz").progress.step == 3
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL              # restored


def _start_up_script(signum, module):
    """The console script's start-up, with a real ``signum`` sent when ``module`` is first
    imported (the entry point's imports: after its first lines, before main())."""
    return (
        "import builtins, os, signal, sys\n"
        "real = builtins.__import__\n"
        "def imp(name, globals=None, locals=None, fromlist=(), level=0):\n"
        f"    if name in ({module!r}, 'cli') and 'train.cli' not in sys.modules:\n"
        f"        os.kill(os.getpid(), {int(signum)})\n"
        "    return real(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = imp\n"
        "sys.argv[0] = os.path.join(os.path.dirname(sys.executable), 'lstm-ag-train')\n"
        "from train.__main__ import main\n"
        "sys.exit(main())\n")


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_entry_point_imports_is_one_line(tmp_path, signum, status):
    done = subprocess.run([sys.executable, "-c", _start_up_script(signum, "train.cli"), "sine",
                           "--out", str(tmp_path / "r")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == status, done.stderr
    assert done.stderr.splitlines() == [
        "lstm-ag-train: interrupted; any checkpoint on disk is the last complete one"]
    assert not (tmp_path / "r").exists()


def test_sigterm_while_numpy_is_imported_exits_143(tmp_path):
    script = _start_up_script(signal.SIGTERM, "numpy").replace(
        "'train.cli' not in sys.modules", "'numpy' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", script, "sine", "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert done.stderr.splitlines() == [
        "lstm-ag-train: interrupted; any checkpoint on disk is the last complete one"]


def test_importing_the_entry_point_installs_nothing():
    # Imported (not run as the program), train.__main__ leaves the handlers alone.
    code = ("import signal, train.__main__; "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
            "signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout == "True True\n", done.stderr


def _rows(history):
    """The history without its timings (they differ from run to run)."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "steps_per_second")}
            for row in history]


def test_a_ctrl_c_during_an_evaluation_keeps_its_row_on_resume(tmp_path, capsys, monkeypatch):
    reference = tmp_path / "reference"
    assert _run(capsys, "sine", "--steps", 20, *SMALL, "--out", reference)[0] == 0
    out = tmp_path / "run"
    real, calls = train.loop.evaluate, []

    def evaluate_interrupted(params, task):          # the second evaluation: step 10
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(params, task)
    monkeypatch.setattr(train.loop, "evaluate", evaluate_interrupted)
    code, _, err = _run(capsys, "sine", "--steps", 20, *SMALL, "--out", out)
    assert code == 130, err
    assert _step(out) == 10
    assert [row["step"] for row in load_checkpoint(out / "model.npz").progress.history] == [5]
    monkeypatch.setattr(train.loop, "evaluate", real)
    code, _, err = _run(capsys, "--out", out, "--resume")
    assert code == 0, err
    assert re.search(r"^step 10/20 .*eta \?$", err, re.M)    # redone first: no step timed
    history = _metrics(out)["history"]
    assert [row["step"] for row in history] == [5, 10, 15, 20]
    assert _rows(history) == _rows(_metrics(reference)["history"])     # as if never stopped
    assert [row["step"] for row in load_checkpoint(out / "model.npz").progress.history] == \
        [5, 10, 15, 20]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (no except clause of the trainer sees it)."""


def test_metrics_left_behind_the_checkpoint_is_said_and_rewritten(tmp_path, capsys,
                                                                  monkeypatch):
    out = tmp_path / "run"
    real = train.loop._Run.write_metrics

    def killed_at_10(self, progress, status, message=None):
        if progress.step == 10:
            raise _Killed                 # after model.npz of step 10, before metrics.json
        return real(self, progress, status, message)
    monkeypatch.setattr(train.loop._Run, "write_metrics", killed_at_10)
    with pytest.raises(_Killed):
        main(["sine", "--steps", "20", *SMALL, "--out", str(out)])
    capsys.readouterr()
    assert _step(out) == 10 and _metrics(out)["step"] == 5      # the lag a SIGKILL leaves
    monkeypatch.setattr(train.loop._Run, "write_metrics", real)
    code, _, err = _run(capsys, "--out", out, "--resume")
    assert code == 0, err
    assert (f"note: {out / 'metrics.json'} described step 5, the checkpoint holds step 10 (the "
            "trainer was stopped between the two writes); it is rewritten from the "
            "checkpoint") in err
    assert _metrics(out)["step"] == _step(out) == 20


def _rewrite(path, **changes):
    params, meta = lstm_ag.load(path)
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    lstm_ag.save(path, params, **meta)


@pytest.mark.parametrize("version, who", [
    ("0.0.1", "lstm_ag 0.0.1"), ("99.0.0", "lstm_ag 99.0.0"),
    ("", "an lstm_ag that did not record its version"),
    (None, "an lstm_ag that did not record its version")])
def test_a_checkpoint_of_another_version_is_said_on_resume(tmp_path, capsys, version, who):
    out = tmp_path / "run"
    assert _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out)[0] == 0
    _rewrite(out / "model.npz", lstm_ag_version=version)
    code, _, err = _run(capsys, "--out", out, "--resume", "--steps", 10)
    assert code == 0, err
    assert (f"note: {out / 'model.npz'} was written by {who}; this is lstm_ag "
            f"{lstm_ag.__version__} (its fields were checked") in err
    assert lstm_ag.load(out / "model.npz")[1]["lstm_ag_version"] == lstm_ag.__version__
    code, _, err = _run(capsys, "--out", out, "--resume", "--steps", 15)   # now ours: silent
    assert code == 0 and "note:" not in err


def test_a_checkpoint_of_another_version_whose_format_differs_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, "sine", "--steps", 5, *SMALL, "--out", out)[0] == 0
    _rewrite(out / "model.npz", lstm_ag_version="99.0.0", optimizer_state={"beta": 0.9})
    code, _, err = _run(capsys, "--out", out, "--resume", "--steps", 10)
    assert code == 2
    assert err.splitlines()[-1] == (
        f"{PROG}: error: {out / 'model.npz'}: not a checkpoint of this trainer (unknown "
        f"metadata ['optimizer_state']) (written by lstm_ag 99.0.0; this is lstm_ag "
        f"{lstm_ag.__version__}, whose checkpoints differ there: resume it with that version, "
        "or start a new run)")
    _rewrite(out / "model.npz", optimizer_state=None, history=[{"step": 5}])
    code, _, err = _run(capsys, "--out", out, "--resume", "--steps", 10)
    assert code == 2 and "history[0] must be a dict with the keys" in err
    assert "(written by lstm_ag 99.0.0; this is lstm_ag" in err and "altered" not in err


def test_each_progress_line_ends_with_an_eta():
    config = TrainConfig(task="sine", steps=30, hidden=4, batch=8, seq_len=8, eval_every=10,
                         train_size=32)
    task = config.make_task()
    log = io.StringIO()
    fit(config.init_params(task), task, config, log=log)
    lines = log.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"step +\d+/30 .*  eta \d+:\d\d", line), line
    assert lines[-1].endswith("eta 0:00")                       # nothing left at the end


def test_the_eta_is_the_median_step_time_times_the_steps_left(monkeypatch):
    config = TrainConfig(task="sine", steps=1000, hidden=4, batch=8, seq_len=8, train_size=32)
    run = train.loop._Run(config.make_task(), config, None, None, None, io.StringIO())
    assert run.eta(0) is None                                   # no window measured yet
    run.step_seconds = [0.5, 0.1, 0.2]
    assert run.eta(400) == pytest.approx(0.2 * 600)
    assert [_clock(s) for s in (0, 12, 59.6, 61, 3599, 3600, 3725)] == \
        ["0:00", "0:12", "1:00", "1:01", "59:59", "1:00:00", "1:02:05"]


def test_a_resumed_run_started_at_an_evaluated_step_is_not_evaluated_twice(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, "sine", "--steps", 10, *SMALL, "--out", out)[0] == 0
    code, _, err = _run(capsys, "--out", out, "--resume", "--steps", 20)
    assert code == 0, err
    assert [row["step"] for row in _metrics(out)["history"]] == [5, 10, 15, 20]
    assert np.isfinite(_metrics(out)["val_mse"])
