"""A sweep stopped any way stops its workers and leaves runs that the same command continues
(issue 22, item 5): SIGTERM or SIGINT to the sweep alone, SIGKILL of the sweep, SIGKILL of a
worker; a scheduler address where no Dask scheduler speaks, refused within --timeout; grids
over RUN_LIMIT runs refused without --yes, before the plan is built."""
import contextlib
import glob
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from train import sweep
from train.loop import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# Runs of a few seconds each, evaluated every 20 steps: in flight when the signal comes.
LONG = ["sine", "--steps", "1500", "--seq-len", "8", "--train-size", "32", "--batch", "8",
        "--eval-every", "20", "--method", "autograd", "--grid", "hidden=3,5", "--seeds", "2",
        "--jobs", "2"]


def _start(out):
    command = [sys.executable, "-m", "train", "sweep", *LONG, "--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(glob.glob(str(out / "*" / "seed=*" / "metrics.json"))) < 2:  # both in flight
        assert process.poll() is None and time.monotonic() < deadline, "no run started"
        time.sleep(0.05)
    time.sleep(0.3)
    return process


def _group_gone(pgid, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _runs(out):
    """{label: (metrics status, metrics step, checkpoint step)} of the run directories."""
    found = {}
    for path in sorted(out.glob("*/seed=*")):
        metrics = json.loads((path / "metrics.json").read_text())
        found[f"{path.parent.name}/{path.name}"] = (
            metrics["status"], metrics["step"], load_checkpoint(path / "model.npz").progress.step)
    return found


def _rerun(capsys, out):
    code = sweep.main([*LONG, "--out", str(out)], "lstm-ag-train")
    out_text, err = capsys.readouterr()
    return code, out_text, err


def _kill_group(process):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize("signum, status, group", [
    (signal.SIGTERM, 143, False), (signal.SIGINT, 130, False), (signal.SIGINT, 130, True)])
def test_a_signal_stops_the_sweep_and_its_workers(tmp_path, signum, status, group):
    out = tmp_path / "sweep"
    process = _start(out)
    try:
        if group:                                  # a Ctrl-C at the terminal: every process
            os.killpg(process.pid, signum)
        else:                                      # the sweep only (kill, a scheduler)
            process.send_signal(signum)
        started = time.monotonic()
        _, err = process.communicate(timeout=120)
        assert time.monotonic() - started < sweep.STOP_GRACE      # none waited for, killed
        assert process.returncode == status, err
        assert "Traceback" not in err
        assert ("sweep: stopped 2 worker processes; the runs in progress saved their "
                "checkpoints, the queued runs were not started") in err
        assert _group_gone(process.pid), "worker processes left behind"
    finally:
        _kill_group(process)
    runs = _runs(out)
    assert sorted(runs) == ["hidden=3/seed=0", "hidden=3/seed=1"]     # queued: not started
    for status_, metrics_step, checkpoint_step in runs.values():
        assert status_ == "interrupted" and metrics_step == checkpoint_step < 1500


@pytest.mark.slow
def test_a_killed_sweep_s_workers_stop_and_the_rerun_continues(tmp_path, capsys):
    out = tmp_path / "sweep"
    process = _start(out)
    try:
        process.kill()                             # SIGKILL: the sweep can do nothing
        process.communicate(timeout=60)
        assert _group_gone(process.pid), "the workers went on without their sweep"
    finally:
        _kill_group(process)
    for status, metrics_step, checkpoint_step in _runs(out).values():
        assert status == "interrupted" and metrics_step == checkpoint_step
    code, stdout, err = _rerun(capsys, out)        # at once: never "in use by another"
    assert code == 0, err
    assert "in use" not in err and "4 runs: 4 done, 0 failed" in stdout
    assert "this time 2 new, 2 resumed" in stdout


@pytest.mark.slow
def test_a_worker_killed_fails_its_run_and_the_others_go_on(tmp_path):
    out = tmp_path / "sweep"
    process = _start(out)
    try:
        lock = sorted(out.glob("*/seed=*/.lock"))[0]
        victim = lock.parent
        os.kill(int(lock.read_text()), signal.SIGKILL)
        stdout, err = process.communicate(timeout=300)
    finally:
        _kill_group(process)
    assert process.returncode == 1, err
    assert "Traceback" not in err and "TerminatedWorkerError" not in err
    label = f"{victim.parent.name}/{victim.name}"
    assert f"failed: {label}: its worker process was killed while it ran" in stdout
    assert "4 runs: 3 done, 1 failed" in stdout
    summary = json.loads((out / "summary.json").read_text())
    statuses = {row["dir"]: row["status"] for entry in summary["settings"]
                for row in entry["seeds"]}
    assert statuses.pop(label) == "failed" and set(statuses.values()) == {"done"}


# ----------------------------------------------------------------------------- schedulers

@contextlib.contextmanager
def _server(reply):
    """A TCP server on 127.0.0.1 that accepts and then sends ``reply`` (b"": nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                held.append(conn)
                if reply:
                    conn.sendall(reply)
    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


@contextlib.contextmanager
def _http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _scheduler_error(capsys, tmp_path, address):
    code = sweep.main(["sine", "--steps", "4", "--seeds", "1", "--scheduler", address,
                       "--timeout", "1", "--out", str(tmp_path / "s")], "lstm-ag-train")
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert "Traceback" not in err and "MemoryError" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize("kind", ["silent", "http", "talks first", "length then silence"])
def test_a_scheduler_address_where_no_dask_speaks_is_refused_within_the_timeout(
        tmp_path, capsys, kind):
    pytest.importorskip("distributed")
    server = (_server(b"") if kind == "silent" else _http_server() if kind == "http"
              else _server(b"HTTP/1.1 400 Bad Request\r\n\r\n") if kind == "talks first"
              else _server((40).to_bytes(8, sys.byteorder)))
    with server as address:
        line = _scheduler_error(capsys, tmp_path, address)
    assert line.startswith(f"lstm-ag-train sweep: error: --scheduler {address}: ")
    if kind == "talks first":
        assert "is not a Dask scheduler (it began with 'HTTP/1.1'" in line
    else:
        assert "no Dask handshake within --timeout 1 s" in line


def test_a_closed_port_is_refused_in_one_line(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]              # bound, not listening: refused
        pytest.importorskip("distributed")
        line = _scheduler_error(capsys, tmp_path, f"tcp://127.0.0.1:{port}")
    assert "cannot connect" in line


# ----------------------------------------------------------------------------- limits

def test_a_grid_over_the_limit_is_refused_without_yes(tmp_path, capsys):
    grid = ["--grid", "hidden=" + ",".join(map(str, range(2, 102))), "lr=0.1,0.2,0.3",
            "--seeds", "3"]
    code = sweep.main(["sine", *grid, "--out", str(tmp_path / "s")], "lstm-ag-train")
    _, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines()[-1] == (
        "lstm-ag-train sweep: error: --grid makes 900 runs (300 settings x 3 seeds), more "
        f"than {sweep.RUN_LIMIT}: give --yes to start them all, or fewer values or seeds")
    assert not (tmp_path / "s").exists()


def test_a_million_combinations_are_refused_before_any_plan_is_built(tmp_path, capsys):
    values = ",".join(str(n) for n in range(2, 12))                      # 10 values
    keys = ["hidden", "batch", "seq_len", "eval_every", "train_size", "steps"]
    argv = ["sine", "--grid", *(f"{key}={values}" for key in keys), "--seeds", "1",
            "--out", str(tmp_path / "s")]
    tracemalloc.start()
    try:
        code = sweep.main(argv, "lstm-ag-train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _, err = capsys.readouterr()
    assert code == 2 and "--grid makes 1000000 runs (1000000 settings x 1 seed)" in err
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MiB allocated before refusing"


def test_with_yes_the_runs_are_planned_and_stdin_is_never_read(tmp_path):
    args, rest = sweep.build_parser().parse_known_args(
        ["sine", "--grid", "hidden=" + ",".join(map(str, range(2, 36))), "--seeds", "3",
         "--yes", "--out", str(tmp_path / "s")])
    runs, _, _ = sweep._runs(args, rest, "lstm-ag-train sweep")
    assert len(runs) == 102
    # Without --yes, refused at once even with a stdin that would block a prompt forever.
    command = [sys.executable, "-m", "train", "sweep", "sine", "--grid",
               "hidden=" + ",".join(map(str, range(2, 36))), "--seeds", "3", "--out",
               str(tmp_path / "s")]
    with subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        _, err = process.communicate(timeout=120)           # stdin left open, never closed
    assert process.returncode == 2 and "give --yes" in err


def test_the_next_sweep_waits_for_a_stopped_sweep_s_runs_to_let_go(tmp_path):
    from train.rundir import lock_holder, open_run_dir
    run_dir = tmp_path / "sweep" / "seed=0"
    holder = subprocess.Popen(                   # a stopped sweep's worker, still saving
        [sys.executable, "-c", ("import sys, time\nfrom train.rundir import open_run_dir\n"
                                f"d = open_run_dir({str(run_dir)!r}, resume=False, "
                                "overwrite=True)\nprint('locked', flush=True)\n"
                                "time.sleep(0.5)\n")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert lock_holder(run_dir) == holder.pid
        runs = [sweep.Run({}, "", 0, str(run_dir), None, [])]
        stream = io.StringIO()
        waited = sweep._wait_for_stopped_runs(runs, stream, wait=60)
    finally:
        holder.kill()
        holder.communicate()
    assert stream.getvalue() == ("sweep: waiting up to 60 s for 1 run of a stopped sweep to "
                                 "save and let go of their directories\n")
    assert 0 < waited < 60 and lock_holder(run_dir) is None
    with open_run_dir(run_dir, resume=False, overwrite=True):
        assert lock_holder(run_dir) == os.getpid()           # ours now
