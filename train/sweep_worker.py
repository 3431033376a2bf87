"""One run of a sweep, in whichever process runs it (:func:`run_one`, a plain dict in and out).

A run in a process of its own (a loky worker, or this process with ``--jobs 1``) is the
trainer called here, on the sweep's filesystem. A run on a Dask worker, which may share
neither the filesystem nor anything else with the sweep and may run several tasks at once,
runs in a child process of its own (:mod:`train.sweep_child`): the run's directory, the
working directory its relative ``--data`` is found from, and the environment are given to
that process, so the worker's own directory, streams and memory settings stay as they were.
"""
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from .sweep_plan import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    RUN_FILES,
    read_metrics,
)

#: What a child process of a Dask worker exits with when the trainer raised an exception (its
#: last line on stderr is then the one-line report of it, :func:`exception_line`).
EXIT_BUG = 70


#: The trainer's statuses after which a run's files are worth reading (it wrote them).
WROTE_FILES = (0, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED)


def exception_line(exc: BaseException) -> str:
    """An exception of the trainer (a bug) in one line, with where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    where = f" ({os.path.basename(frame.filename)}:{frame.lineno})"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}{where}"


def _error_line(code, err):
    """The one-line message of a trainer that exited with ``code``: its last line on stderr
    (text ``err``), without the ``PROG: error:`` in front (None for status 0)."""
    if code == 0:
        return None
    lines = [line for line in err.splitlines() if line.strip()]
    line = lines[-1] if lines else f"exit status {code}"
    return re.sub(r"^\S+(?: -m train)?: error: ", "", line)


def _call_trainer(argv):
    """``lstm-ag-train ARGV`` in this process: ``(exit status or None, error line or None)``.

    :func:`train.cli.main` prints to ``sys.stdout`` and ``sys.stderr`` and takes no stream,
    so its output is captured by swapping them for the call: this runs only in a process that
    runs one run at a time (a loky worker, or the sweep itself with ``--jobs 1``, whose own
    lines go to streams it holds, :class:`train.sweep_rounds.Progress`)."""
    from .cli import main as train_main
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = train_main(argv)
    except SystemExit as exc:                              # argparse: a bad option
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:                               # a bug: say where, in one line
        return None, exception_line(exc)
    return code, _error_line(code, err.getvalue())


def _trainer_argv(job, out):
    return job["argv"] + ["--out", out] + (["--resume"] if job["resume"] else [])


def _run_here(job, out):
    code, error = _call_trainer(_trainer_argv(job, out))
    metrics = read_metrics(out) if code in WROTE_FILES else None
    return {"code": code, "error": error, "metrics": metrics, "files": None}


def _call_in_child(argv, cwd):
    """``lstm-ag-train ARGV`` in a child process working in directory ``cwd`` (the trainer's
    output its own, on pipes): ``(exit status or None, error line or None)``.

    Its environment is this one without ``MALLOC_TRIM_THRESHOLD_``: Dask's nanny starts a
    worker with it (``distributed.nanny.pre-spawn-environ``), and a set trim threshold also
    fixes glibc's mmap threshold at 128 KiB, so that every array of a training step is a
    fresh mmap and a run takes about twice as long. The sweep's own LocalCluster starts its
    workers without it too (:func:`train.sweep_engines.engine_for`)."""
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_TRIM_THRESHOLD_"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds this package
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-m", f"{__package__}.sweep_child", str(os.getpid()), *argv]
    child = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace")
    if child.returncode < 0:
        return None, f"its process was killed by signal {-child.returncode}"
    if child.returncode == EXIT_BUG:
        return None, _error_line(EXIT_BUG, child.stderr)
    return child.returncode, _error_line(child.returncode, child.stderr)


def write_files(directory: str, files: dict) -> None:
    """Write ``files`` (``{relative path: bytes}``) under ``directory``, made if need be."""
    os.makedirs(directory, exist_ok=True)
    for relative, content in files.items():
        path = os.path.join(directory, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(content)


def read_run_files(path: str) -> dict:
    """The files of :data:`RUN_FILES` that the run directory ``path`` holds: ``{name: bytes}``."""
    files = {}
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError), \
                open(os.path.join(path, name), "rb") as file:
            files[name] = file.read()
    return files


def _run_elsewhere(job):
    """The run in a temporary directory, its checkpoint and data file written there first;
    returns its files too (a Dask worker need not share the filesystem of the sweep)."""
    with tempfile.TemporaryDirectory(prefix="lstm-ag-sweep-") as tmp:
        run_dir, work = os.path.join(tmp, "run"), os.path.join(tmp, "work")
        write_files(run_dir, job["files"] or {})
        write_files(work, job["data"] or {})       # --data is relative: the same config there
        code, error = _call_in_child(_trainer_argv(job, run_dir), cwd=work)
        result = {"code": code, "error": error, "metrics": None, "files": None}
        if code in WROTE_FILES:
            result.update(metrics=read_metrics(run_dir), files=read_run_files(run_dir))
        # Messages name the run's files where they will be, not in this temporary directory.
        if result["error"]:
            result["error"] = result["error"].replace(run_dir, job["out"])
        metrics = result["metrics"]
        if metrics is not None and isinstance(metrics.get("message"), str):
            metrics["message"] = metrics["message"].replace(run_dir, job["out"])
            result["files"]["metrics.json"] = (json.dumps(metrics, indent=1) + "\n").encode()
    return result


def _run_in_worker(job):
    """The run in a loky worker process of this machine, watching for the sweep's death."""
    watch = ParentWatch(job["parent"])
    watch.start()
    try:
        result = _run_here(job, job["out"])
    finally:
        watch.stop()
    if watch.orphaned or result["code"] in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # Stopped (a Ctrl-C at the terminal, the sweep's SIGTERM when it stops its workers,
        # or the sweep's death noticed): the run saved its checkpoint; end the process now,
        # before it takes a queued run. The sweep learns it from the process's end.
        os._exit(result["code"] if result["code"] in (EXIT_INTERRUPTED, EXIT_TERMINATED)
                 else EXIT_TERMINATED)
    return result


def run_one(job: dict) -> dict:
    """Run one trainer run: the task a worker executes (a plain dict in, a plain dict out).

    - job: ``label``, ``argv`` (the trainer's arguments without ``--out``), ``out`` (the run
      directory), ``resume``; ``transfer``: True when the worker may not share the sweep's
      filesystem, with ``files`` (the run's files to resume from, or None) and ``data``
      (``{relative path: bytes}`` of the --data file); ``parent``: the sweep's pid.
    Returns ``label``, ``code`` (the trainer's exit status, None after an exception),
    ``error`` (its one-line message), ``metrics`` (the run's metrics.json), ``files``
    (``{name: bytes}`` when transferred) and ``wall`` (seconds in the worker).
    """
    start = time.perf_counter()
    in_worker = job["parent"] != os.getpid()
    if in_worker:
        ignore_ctrl_c()
    if job["transfer"]:
        result = _run_elsewhere(job)
    else:
        result = _run_in_worker(job) if in_worker else _run_here(job, job["out"])
    result.update(label=job["label"], wall=time.perf_counter() - start)
    return result


class ParentWatch(threading.Thread):
    """In a worker process of this machine: when the sweep that started it is gone (killed,
    SIGKILL included: the worker is then another process's child), send this process SIGTERM,
    which the trainer handles as Ctrl-C (the run saves its checkpoint and stops), and mark it
    ``orphaned`` so that :func:`run_one` then ends the process instead of taking a queued run."""

    POLL = 0.25

    def __init__(self, parent):
        super().__init__(daemon=True, name="lstm-ag-parent-watch")
        self.parent, self.orphaned = parent, False
        self.child = os.getppid() == parent        # else: the sweep is further up
        self._stop_event = threading.Event()

    def gone(self):
        if self.child:
            return os.getppid() != self.parent
        try:
            os.kill(self.parent, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def run(self):
        while not self._stop_event.wait(self.POLL):
            if self.gone():
                self.orphaned = True
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def stop(self):
        self._stop_event.set()


def ignore_ctrl_c():
    """In a worker process that this sweep started: a Ctrl-C at the terminal reaches every
    process of its group, and the sweep stops the workers itself. Between runs the worker
    ignores it, as it was born to (:func:`train.sweep_engines.ctrl_c_ignored`; this holds it
    for a process started otherwise); during a run the trainer's own handling saves the run's
    checkpoint. Only the main thread may set a handler: elsewhere nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_version(local=False):
    """What a Dask worker has: lstm_ag's version (imported from there, as the runs will).
    local: a worker of the LocalCluster started here, which ignores Ctrl-C
    (:func:`ignore_ctrl_c`)."""
    import lstm_ag
    if local:
        ignore_ctrl_c()
    return lstm_ag.__version__
