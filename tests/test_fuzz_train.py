"""Fuzzing the trainer's command line as a hostile user (and a hostile machine) would.

Each example draws options (valid small values, out-of-range ones, non-numbers, sizes far
beyond any memory), what the run directory is (fresh, a file, under a file, read-only, holding
a model, in use) and what happens meanwhile (Ctrl-C from a callback or a real SIGINT, a write
failing with ENOSPC); or it tampers one field of a real checkpoint and resumes it. The only
acceptable outcomes: exit status 0, 1 (non-finite loss), 2, 3 or 130 with one line saying so,
never a traceback and never a warning (pytest turns warnings into errors); an example whose
options are invalid must not exit 0 (a silent result), and a tampered field of another type
than the trainer writes must exit 2 naming the file.

The default run is bounded to a few seconds; ``pytest -m slow`` runs many more examples.
"""
import contextlib
import errno
import fcntl
import io
import os
import signal
import tempfile
from collections import Counter
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lstm_ag
from train.__main__ import main

PROG = "python -m train"
#: Outcomes by kind, over every example of the session (read by hand: ``-s`` and a print).
OUTCOMES = Counter()

HUGE = [10**7, 10**11, 10**15, 10**30]
#: Per option: (valid values, invalid values). Valid ones keep a run to a fraction of a second.
OPTIONS = {
    "--steps": (["1", "2", "3"], ["0", "-1", "x", "1.5", ""]),
    "--hidden": (["1", "3", "8"], ["0", "-3", "x", "2.0", *map(str, HUGE)]),
    "--seq-len": (["6", "8", "12"], ["0", "1", "-2", "x", *map(str, HUGE[1:])]),
    "--batch": (["1", "4", "8"], ["0", "-1", "x", *map(str, HUGE[2:])]),
    "--train-size": (["8", "16", "40"], ["0", "-5", "x", *map(str, HUGE[1:])]),
    "--lr": (["0.1", "0.5", "1e12"], ["0", "-1", "nan", "inf", "-inf", "x", ""]),
    "--lr-decay": (["0", "0.5"], ["-1", "nan", "inf", "x"]),
    "--momentum": (["0", "0.5", "0.99"], ["1", "1.5", "-0.1", "nan"]),
    "--clip": (["0", "1", "100"], ["-1", "nan", "inf", "x"]),
    "--optimizer": (["sgd", "lbfgs"], ["magic"]),
    "--method": (["fast", "bptt", "autograd"], ["magic"]),
    "--seed": (["0", "1", str(10**30)], ["-5", "x", "0.5"]),
    "--eval-every": (["1", "2", str(10**30)], ["0", "-1", "x"]),
}
TASKS = ["sine", "counting", "adding"]
INCIDENTS = ["none", "ctrl-c", "sigint", "enospc", "file", "under-file", "read-only",
             "model", "model-overwrite", "in-use"]


@st.composite
def command_lines(draw):
    """(argv, incident, k, expected_valid)."""
    task = draw(st.sampled_from([None, *TASKS, "music"]))
    argv, valid = ([] if task is None else [task]), task != "music"
    chosen, refused = {}, set()
    for option in draw(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=6, unique=True)):
        good, bad = OPTIONS[option]
        ok = draw(st.booleans())
        value = draw(st.sampled_from(good if ok else bad))
        argv += [option, value]
        chosen[option] = value
        if not ok:
            refused.add(option)
    if chosen.get("--optimizer") == "lbfgs" and chosen.get("--batch", "").isdigit() \
            and int(chosen["--batch"]) > 0:
        refused.discard("--batch")                  # full batch: L-BFGS ignores --batch
    valid &= not refused
    if chosen.get("--optimizer") == "lbfgs" and "--train-size" not in chosen:
        argv += ["--train-size", "16"]              # full batch: keep it small
        chosen["--train-size"] = "16"
    for option, value in (("--steps", "3"), ("--hidden", "4"), ("--seq-len", "8")):
        if option not in chosen:                     # keep valid runs short
            argv += [option, value]
            chosen[option] = value
    valid &= _combination_valid(task, chosen)
    incident = draw(st.sampled_from(INCIDENTS))
    return argv, incident, draw(st.integers(0, 3)), valid


def _combination_valid(task, chosen):
    """The cross-option rules: batch within the training set (SGD), sine's burn-in."""
    try:
        numbers = {k: int(v) for k, v in chosen.items()
                   if k in ("--batch", "--train-size", "--seq-len")}
    except ValueError:
        return True                                  # an invalid value already says so
    defaults = {"sine": (32, 2000), "counting": (32, 2000), "adding": (64, 10000)}
    batch, size = defaults.get(task or "sine", (32, 2000))
    batch, size = numbers.get("--batch", batch), numbers.get("--train-size", size)
    if chosen.get("--optimizer", "sgd") == "sgd" and 0 < size < batch:
        return False
    return not ((task or "sine") == "sine" and 2 <= numbers.get("--seq-len", 50) <= 5)


def _call(argv, callback=None):
    """main(argv): (status, stdout, stderr); argparse's SystemExit is a status too."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv, callback=callback)
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def _check_clean(status, stdout, stderr):
    """The outcome is one of the exit statuses with one line saying so; tallied."""
    if "Traceback" in stdout + stderr:
        OUTCOMES["traceback"] += 1
    assert "Traceback" not in stdout + stderr, stderr
    assert status in (0, 1, 2, 3, 130), (status, stderr)
    lines = stderr.splitlines()
    if status in (1, 2, 3):
        assert lines and lines[-1].startswith(f"{PROG}: error: ") and lines[-1].strip(), stderr
        assert len([line for line in lines if ": error: " in line]) == 1, stderr
    elif status == 130:
        assert len([line for line in lines if "interrupted" in line]) == 1, stderr
    OUTCOMES[f"exit {status}"] += 1


def _incident(incident, k, out):
    """(context manager, callback, extra argv) that bring about ``incident`` on ``out``."""
    stack = contextlib.ExitStack()
    callback, extra = None, []
    if incident == "ctrl-c":
        def callback(step, params, info):
            if step == k:
                raise KeyboardInterrupt
    elif incident == "sigint":
        def callback(step, params, info):
            if step == k:
                os.kill(os.getpid(), signal.SIGINT)
    elif incident == "enospc":
        real, calls = os.replace, []

        def replace(src, dst, *args, **kwargs):
            calls.append(dst)
            if len(calls) > k:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)
            return real(src, dst, *args, **kwargs)
        stack.enter_context(mock.patch.object(os, "replace", replace))
    elif incident == "file":
        with open(out, "w") as file:
            file.write("x")
    elif incident == "under-file":
        with open(out, "w") as file:
            file.write("x")
        out = os.path.join(out, "run")
    elif incident == "read-only":
        os.mkdir(out)
        real_access = os.access
        stack.enter_context(mock.patch.object(os, "access", lambda p, mode, **kw: (
            False if os.fspath(p) == out else real_access(p, mode, **kw))))
    elif incident in ("model", "model-overwrite"):
        os.mkdir(out)
        lstm_ag.save(os.path.join(out, "model.npz"), lstm_ag.init_params(1, 2, 1))
        if incident == "model-overwrite":
            extra = ["--overwrite"]
    elif incident == "in-use":
        os.mkdir(out)
        fd = os.open(os.path.join(out, ".lock"), os.O_RDWR | os.O_CREAT)
        stack.callback(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return stack, callback, extra, out


def _fuzz_options(case):
    argv, incident, k, valid = case
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        stack, callback, extra, out = _incident(incident, k, out)
        with stack:
            status, stdout, stderr = _call([*argv, *extra, "--out", out, "--quiet"], callback)
    _check_clean(status, stdout, stderr)
    refused = incident in ("file", "under-file", "read-only", "model", "in-use")
    if not valid or refused:
        if status == 0:
            OUTCOMES["silent"] += 1
        assert status != 0, (argv, incident, stderr)
    if valid and status == 2:
        assert incident in ("model", "in-use"), (argv, incident, stderr)
    if valid and incident in ("file", "under-file", "read-only"):
        assert status == 3, (argv, incident, stderr)


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.filter_too_much])


@settings(max_examples=40, **_SETTINGS)
@given(command_lines())
def test_fuzz_options(case):
    _fuzz_options(case)


@pytest.mark.slow
@settings(max_examples=3000, **_SETTINGS)
@given(command_lines())
def test_fuzz_options_long(case):
    _fuzz_options(case)


# ----------------------------------------------------------------------------- checkpoints

_BASE = {}


def _base_checkpoint():
    """The bytes of a real checkpoint, interrupted at step 3 of 6 (made once)."""
    if not _BASE:
        with tempfile.TemporaryDirectory() as tmp:
            def stop(step, params, info):
                if step == 3:
                    raise KeyboardInterrupt
            status, _, err = _call(["sine", "--steps", "6", "--hidden", "3", "--seq-len", "8",
                                    "--batch", "4", "--train-size", "16", "--eval-every", "2",
                                    "--out", tmp, "--quiet"], stop)
            assert status == 130, err
            with open(os.path.join(tmp, "model.npz"), "rb") as file:
                _BASE["bytes"] = file.read()
    return _BASE["bytes"]


#: Where a tampered value goes: a path of keys into the checkpoint's metadata.
FIELDS = [("config", name) for name in (
    "task", "steps", "hidden", "seq_len", "batch", "train_size", "lr", "lr_decay", "momentum",
    "clip", "optimizer", "method", "seed", "eval_every", "layers", "bidirectional",
    "tbptt")] + [
    ("step",), ("seconds",), ("history",), ("history", 0), ("history", 0, "step"),
    ("history", 0, "val_mse"), ("history", 0, "train_loss"), ("history", 0, "lr"),
    ("velocity",), ("velocity", "Wx"), ("window",), ("window", "losses"), ("carry",),
    ("task_spec",),
    ("task_spec", "name"), ("task_spec", "seq_len"), ("task_spec", "n_val"),
    ("task_spec", "noise"), ("task_spec", "burn_in"), ("task_spec", "seed"),
    ("lstm_ag_version",), ("config",), ("new_field",)]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**40, 10**40) | st.text(max_size=4)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6)


#: Fields the trainer writes as a number or null (a history row before any training step).
NULLABLE = {("history", 0, "train_loss"), ("history", 0, "grad_norm"), ("history", 0, "lr")}


def _changes_type(where, old, new):
    """True when ``new`` is of another kind than the trainer writes at ``where`` (an int for a
    float is the same kind; anything for a null may be a value the field takes)."""
    if old is None or (new is None and where in NULLABLE):
        return False
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return False
    return type(old) is not type(new)


def _fuzz_checkpoint(where, value):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        with open(path, "wb") as file:
            file.write(_base_checkpoint())
        params, meta = lstm_ag.load(path)
        container = meta
        for key in where[:-1]:
            container = container[key]
        old = container.get(where[-1]) if isinstance(container, dict) else container[where[-1]]
        container[where[-1]] = value
        try:
            lstm_ag.save(path, params, **meta)
        except (ValueError, TypeError):
            assume(False)                           # not storable: no checkpoint to resume
        status, stdout, stderr = _call(["--out", tmp, "--resume", "--steps", "5", "--quiet"])
    _check_clean(status, stdout, stderr)
    assert status in (0, 1, 2), stderr
    if status == 2:
        assert f"error: {path}" in stderr.splitlines()[-1], stderr
    if _changes_type(where, old, value) or where == ("new_field",):
        if status == 0:
            OUTCOMES["silent"] += 1
        assert status == 2, (where, value, stderr)


@settings(max_examples=40, **_SETTINGS)
@given(st.sampled_from(FIELDS), json_values)
def test_fuzz_tampered_checkpoints(where, value):
    _fuzz_checkpoint(where, value)


@pytest.mark.slow
@settings(max_examples=3000, **_SETTINGS)
@given(st.sampled_from(FIELDS), json_values | st.builds(np.zeros, st.integers(0, 30)))
def test_fuzz_tampered_checkpoints_long(where, value):
    _fuzz_checkpoint(where, value)
