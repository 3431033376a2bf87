"""The student's code runs in a child process: every way it can misbehave is a clear outcome.

``lstm-ag-gradcheck`` exits 0 only when the check ran to its end in the parent, which never
imports the student's file. Each misbehaviour below is run for real (a subprocess, a 2 s
``--timeout``): exit status, one line on stderr naming what happened, never a traceback, never a
hang, never a child left behind.
"""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from students.mutate import HERE

from lstm_ag.gradcheck import sandbox

STEP = (HERE / "cs231n_step.py").read_text()
LOOP = (HERE / "sequence_loop.py").read_text()
WRONG_BACKWARD = "\ndef lstm_step_backward(dnext_h, dnext_c, cache):\n    return (0,) * 6\n"


def student(tmp_path, name, extra, base=STEP):
    path = tmp_path / name
    path.write_text(base + "\n" + extra)
    return str(path)


def gradcheck(*argv, timeout=60):
    """``lstm-ag-gradcheck ARGV`` in a process of its own: (status, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "lstm_ag.gradcheck", *argv],
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def step(path, *more):
    return gradcheck("--step", path, "--gate-order", "ifog", "--timeout", "2", *more)


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def gone(pid, within=10.0):
    """Whether process ``pid`` is gone (or a zombie) within ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------- the child ends itself

@pytest.mark.parametrize(("where", "extra", "status", "phrase"), [
    ("at import", "import os\nos._exit(0)\n", 2, "while importing exits.py"),
    ("in the backward", "def lstm_step_backward(a, b, c):\n    import os\n    os._exit(0)\n",
     1, "in lstm_step_backward"),
])
def test_os_exit_0_is_never_a_pass(tmp_path, where, extra, status, phrase):
    code, out, err = step(student(tmp_path, "exits.py", extra))
    assert code == status
    line = one_line(err)
    assert f"exited with status 0 {phrase} before returning" in line, line
    assert "nothing was checked" in line and "OK" not in out


def test_os_exit_0_in_a_sequence_backward(tmp_path):
    path = student(tmp_path, "loop.py", "def backward_all(p, xs, dhs):\n    import os\n"
                   "    os._exit(0)\n", base=LOOP)
    code, out, err = gradcheck("--sequence", path, "--backward", "backward_all", "--upstream",
                               "all", "--timeout", "2")
    assert code == 1
    assert "exited with status 0 in backward_all before returning" in one_line(err)


@pytest.mark.parametrize("how", ["loop", "ignores SIGINT and SIGTERM"])
def test_a_hang_is_stopped_at_the_timeout(tmp_path, how):
    ignore = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n") if how != "loop" else ""
    path = student(tmp_path, "hangs.py", ignore + "def lstm_step_backward(a, b, c):\n"
                   "    while True:\n        pass\n")
    start = time.monotonic()
    code, out, err = step(path)
    assert code == 1
    assert one_line(err).startswith(f"lstm-ag-gradcheck: {path}: timed out after 2 s in "
                                    "lstm_step_backward")
    assert time.monotonic() - start < 50                  # stopped, not waited out


def test_a_hang_at_import_is_a_usage_outcome(tmp_path):
    code, _, err = step(student(tmp_path, "slow.py", "import time\ntime.sleep(100)\n"))
    assert code == 2
    assert "timed out after 2 s while importing slow.py" in one_line(err)


def test_memory_exhaustion_is_named(tmp_path):
    path = student(tmp_path, "greedy.py", "def lstm_step_backward(a, b, c):\n"
                   "    hoard = []\n    while True:\n        hoard.append(bytearray(10 ** 7))\n")
    code, _, err = step(path, "--memory", "400")
    assert code == 1
    line = one_line(err)
    assert "exhausted memory (limit 400 MB) in lstm_step_backward: MemoryError" in line, line
    assert "(greedy.py line" in line


def test_one_huge_array_is_named_too(tmp_path):
    path = student(tmp_path, "huge.py", "def lstm_step_backward(a, b, c):\n"
                   "    return np.ones(1 << 34)\n")
    code, _, err = step(path)
    assert code == 1
    assert "exhausted memory (limit 2048 MB) in lstm_step_backward" in one_line(err)


# ---------------------------------------------------------------- the report is the parent's

def test_closing_stdout_changes_nothing(tmp_path):
    path = student(tmp_path, "closes.py", "import sys\nsys.stdout.close()\n"
                   "_right = lstm_step_backward\n"
                   "def lstm_step_backward(a, b, c):\n    sys.stderr.close()\n"
                   "    return _right(a, b, c)\n")
    code, out, err = step(path)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("OK: worst")


def test_a_stray_thread_does_not_hold_the_command(tmp_path):
    path = student(tmp_path, "thread.py", "import threading, time\n"
                   "threading.Thread(target=time.sleep, args=(1000,)).start()\n")
    start = time.monotonic()
    code, out, _ = step(path)
    assert code == 0 and out.splitlines()[-1].startswith("OK: worst")
    assert time.monotonic() - start < 50


PATCHES = {
    "GradientReport": ("import lstm_ag.gradcheck.report as r\n"
                       "r.GradientReport.ok = property(lambda s: True, lambda s, v: None)\n"
                       "r.GradientReport.__str__ = lambda s: 'OK: all good'\n"),
    "check_step": ("import lstm_ag, lstm_ag.gradcheck.step as s, lstm_ag.gradcheck.__main__ as m\n"
                   "class Fake:\n    ok = True\n    def __str__(self):\n        return 'OK'\n"
                   "lstm_ag.check_step = s.check_step = m.check_step = lambda *a, **k: Fake()\n"),
    "compare_block": ("import lstm_ag.gradcheck.compare as c\n"
                      "c.errors = lambda given, expected: (0.0, 0.0)\n"),
}


@pytest.mark.parametrize("patched", list(PATCHES))
def test_a_file_patching_the_checker_cannot_pass_a_wrong_backward(tmp_path, patched):
    code, out, err = step(student(tmp_path, "cheat.py", PATCHES[patched] + WRONG_BACKWARD))
    assert code == 1 and err == ""
    assert out.splitlines()[-1].startswith("MISMATCH: worst")


def test_a_file_writing_on_the_checkers_channel_is_garbled(tmp_path):
    path = student(tmp_path, "scribbles.py", "import os\nfor fd in range(3, 64):\n"
                   "    try:\n        os.write(fd, b'OK\\n')\n    except OSError:\n"
                   "        pass\n")
    code, _, err = step(path)
    assert code == 2
    assert "garbled the checker's channel" in one_line(err)


def test_megabytes_printed_are_cut(tmp_path):
    path = student(tmp_path, "chatty.py", "print('x' * 3_000_000)\n"
                   "import sys\nsys.stderr.write('y\\n' * 1_000_000)\n")
    code, out, err = step(path)
    assert code == 0
    assert len(out) < 30_000 and len(err) < 30_000
    assert "[lstm-ag-gradcheck: your code printed 3,000,001 bytes here; the first 20,000" in out
    assert "printed 2,000,000 bytes here" in err
    assert out.splitlines()[-1].startswith("OK: worst")


# ---------------------------------------------------------------- signals

def wait_for_pid(path, proc):
    """The pid the student's code wrote into ``path`` (it is running by then)."""
    end = time.monotonic() + 60
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.05)
    return int(path.read_text())


@pytest.mark.parametrize(("sig", "status", "message"), [
    (signal.SIGTERM, 143, "lstm-ag-gradcheck: stopped (SIGTERM)"),
    (signal.SIGINT, 130, "lstm-ag-gradcheck: interrupted"),
])
def test_a_signal_stops_the_check_and_the_child(tmp_path, sig, status, message):
    pid_file = tmp_path / "pid"
    path = student(tmp_path, "hangs.py", "def lstm_step_backward(a, b, c):\n    import os\n"
                   f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                   "    while True:\n        pass\n")
    proc = subprocess.Popen([sys.executable, "-m", "lstm_ag.gradcheck", "--step", path,
                             "--gate-order", "ifog", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = wait_for_pid(pid_file, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status
    assert err.strip() == message and "Traceback" not in err
    assert gone(child)


def test_the_child_dies_with_a_killed_parent(tmp_path):
    pid_file = tmp_path / "pid"
    path = student(tmp_path, "hangs.py", "import os\n"
                   f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                   "while True:\n    pass\n")
    proc = subprocess.Popen([sys.executable, "-m", "lstm_ag.gradcheck", "--step", path,
                             "--timeout", "60"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    child = wait_for_pid(pid_file, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert gone(child)


# ---------------------------------------------------------------- the sandbox as an API

def test_arrays_changed_in_place_come_back(tmp_path):
    path = student(tmp_path, "inplace.py", "def bump(a, d):\n    a += 1\n    d['x'][0] = 7\n"
                   "    return a.sum()\n", base="")
    a, d = np.zeros(3), {"x": np.zeros(2, dtype=np.float32)}
    with sandbox.Sandbox(timeout=10) as box:
        module = box.load(path)
        assert "bump" in vars(module) and callable(module.bump)
        assert module.bump(a, d) == 3.0
    assert a.tolist() == [1, 1, 1] and d["x"].tolist() == [7, 0]
    assert d["x"].dtype == np.float32


def test_objects_that_are_not_data_stay_in_the_child_as_handles(tmp_path):
    path = student(tmp_path, "objects.py", "class Cache:\n    def __init__(self, v):\n"
                   "        self.v = v\n"
                   "def forward(x):\n    return x * 2, Cache(x)\n"
                   "def backward(cache):\n    return cache.v + 1\n", base="")
    with sandbox.Sandbox(timeout=10) as box:
        module = box.load(path)
        assert isinstance(module.Cache, type)                 # a class, as _function expects
        y, cache = module.forward(np.arange(3.0))
        assert y.tolist() == [0, 2, 4] and cache.v.tolist() == [0, 1, 2]
        assert module.backward(cache).tolist() == [1, 2, 3]
        cache.v = np.ones(2)
        assert module.backward(cache).tolist() == [2, 2]
        with pytest.raises(AttributeError):
            module.nothing_here   # noqa: B018


@pytest.mark.parametrize("bad", [
    {"__nd__": "AAAA", "dtype": "|O8", "shape": [1]},               # objects: never
    {"__nd__": "AAAA", "dtype": "<f8", "shape": [2]},               # 3 bytes for 16
    {"__nd__": "!!!!", "dtype": "<f8", "shape": [0]},               # not base64
    {"__nd__": "", "dtype": "<f8", "shape": [-1]},
    {"__dict__": [[["unhashable"], 1]]},
    {"something": "else"},
])
def test_what_arrives_is_validated(bad):
    with pytest.raises(sandbox.Garbled):
        sandbox.decode(bad, lambda obj: obj)


def test_values_go_and_come_back_as_they_were():
    value = {"a": (np.arange(6.0).reshape(2, 3), np.float32(1.5), [1, None, "s"]),
             ("k", 2): np.asfortranarray(np.ones((2, 2), dtype=np.complex64)), "nan": float("nan")}
    arrays = []
    text = json.dumps(sandbox.encode(value, lambda v: pytest.fail(f"{v!r} is data"), arrays))
    back = sandbox.decode(json.loads(text), lambda obj: obj)
    assert len(arrays) == 2
    np.testing.assert_array_equal(back["a"][0], value["a"][0])
    assert back["a"][1] == np.float32(1.5) and back["a"][1].dtype == np.float32
    assert back["a"][2] == [1, None, "s"] and back[("k", 2)].dtype == np.complex64
    assert np.isnan(back["nan"])


@pytest.mark.parametrize(("kwargs", "name"), [({"timeout": 0}, "timeout"),
                                              ({"timeout": 1, "memory_mb": 10}, "memory_mb")])
def test_bad_limits_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sandbox.Sandbox(**kwargs)


def test_in_process_runs_the_file_here(tmp_path):
    code, out, err = step(str(HERE / "cs231n_step.py"), "--in-process")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("OK: worst")


def test_default_timeout_grows_with_the_problem():
    assert sandbox.default_timeout(1, 2, 3, 8) == pytest.approx(5.0, abs=0.01)
    assert 10 < sandbox.default_timeout(100, 32, 256, 256) < 30
