"""``lstm-ag-train sweep``: seeds x settings, many runs of the trainer, locally with joblib's
loky processes or on a Dask cluster, and one summary of them::

    lstm-ag-train sweep [TASK] [TRAINER OPTIONS] --grid lr=0.03,0.1 hidden=16,32 --seeds 5
                        [--jobs N | --scheduler ADDRESS | --dask-local N] --out DIR [--plot]

* Every (setting, seed) is one run of the trainer, exactly ``lstm-ag-train TASK OPTIONS
  --KEY VALUE ... --seed S --quiet --out DIR/SETTING/seed=S`` (with ``--resume`` when it is
  continued): the same code (:func:`train.cli.main`), the same files (``model.npz``,
  ``best.npz``, ``metrics.json``), the same lock. SETTING names the grid's values in the
  grid's order (``lr=0.03,hidden=16``); without ``--grid`` the runs are ``DIR/seed=S``.
* The plan, before anything runs (:func:`plan`): a run whose ``metrics.json`` says ``done``
  (or ``diverged``: it would diverge again, bit for bit) for the same config is finished and
  skipped; a run with a checkpoint is resumed; the others start. So a sweep stopped by Ctrl-C
  (exit 130) continues where it stopped when the same command is given again, and redoes
  nothing. ``DIR`` holding runs of other fixed settings (another ``--batch``, say) is refused.
* Engines. Locally joblib's loky processes (``--jobs N``, default: every core; ``--jobs 1``
  runs in this process), one BLAS thread each: the trainer's ``--threads 1`` and joblib's
  ``inner_max_num_threads=1``. With ``--scheduler ADDRESS`` (a running Dask scheduler) or
  ``--dask-local N`` (a Dask ``LocalCluster`` of N one-thread worker processes started here),
  the same ``joblib.Parallel`` call under ``joblib.parallel_config(backend="dask")``.
* Files. Loky workers share this machine's filesystem and write their run directories
  themselves. Dask workers need not: a run goes to its worker with its checkpoint (when it is
  resumed) and its ``--data`` file, runs in a temporary directory there, and comes back with
  its files and metrics, which this process writes into ``DIR`` (:func:`run_one`).
  Workers need lstm-ag installed, the same version (checked when the sweep starts).
* The summary (:func:`summarize`): per setting the mean, std (n - 1), min and max over its
  seeds of the validation MSE (the best evaluation's with ``--patience``, as the trainer
  reports; for ``series``, the validation and test MSE in data units), the baseline, how many
  seeds beat it (toy tasks: a validation MSE 10x lower than the baseline's; series: a lower
  test MSE than AR(p)) and the training time; on stdout, in ``DIR/summary.json`` and
  ``DIR/summary.csv``, and with ``--plot`` in ``DIR/summary.png``. Apart from its
  ``"session"`` and ``"seconds"`` entries it depends only on the runs' results.
* One progress line on stderr (runs done, running, failed, ETA). A failed run (the trainer's
  exit 1, 2 or 3, or an exception) is recorded with its error and the others go on; the sweep
  then exits 1. Exit 2: usage (one line); 3: ``DIR`` cannot be written; 130: Ctrl-C; 143:
  SIGTERM.
* Stops. A Ctrl-C or SIGTERM stops the sweep and its loky workers: each is sent SIGTERM, the
  run it trains saves its checkpoint (as the trainer does on Ctrl-C), queued runs never start,
  and the sweep says how many it stopped. A sweep killed outright (SIGKILL) cannot: its
  workers notice within a quarter of a second that their parent is gone and stop the same
  way (:class:`_ParentWatch`); the next sweep waits for them to let go of their run
  directories. A worker killed while it trains (SIGKILL, the out-of-memory killer) breaks
  loky's pool, which kills the other workers: that run is failed (its last checkpoint kept,
  resumed by the next sweep), the others are planned again and go on in a new pool.
* Limits. More than ``RUN_LIMIT`` (100) runs are refused without ``--yes`` (counted before
  the plan is built: a grid of 10^6 combinations is refused at once). ``--scheduler`` is
  probed before distributed connects (a peer that says nothing within ``--timeout``, or
  something other than a Dask handshake, is refused), and distributed's own handshake is
  bounded by ``--timeout`` too.
"""
import argparse
import contextlib
import csv
import difflib
import io
import itertools
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, fields

from .datasets import resolve
from .options import _option
from .options import build_parser as build_train_parser

__all__ = ["main", "build_parser", "parse_grid", "Run", "plan", "run_one", "summarize",
           "format_table", "write_summary", "plot_summary", "SweepError", "RUN_FILES"]

EXIT_FAILED, EXIT_USAGE, EXIT_UNWRITABLE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 3, 130, 143
#: The files of a run that travel back from a Dask worker, in the order they are written
#: (the checkpoint first: metrics.json describes the checkpoint on disk).
RUN_FILES = ("model.npz", "best.npz", "metrics.json")
#: Seconds to wait for a Dask scheduler's first worker.
WORKER_WAIT = 60
#: Default of --timeout: seconds to connect to a Dask scheduler and complete its handshake.
CONNECT_TIMEOUT = 20.0
#: The most runs a sweep starts without --yes (a grid of every combination grows fast).
RUN_LIMIT = 100
#: The largest first message a Dask scheduler's handshake may announce (bytes; it sends a
#: few hundred): anything larger is not a Dask scheduler (an HTTP server's "HTTP/1.1" read
#: as a length is 3.5e18 bytes, which distributed would try to allocate).
HANDSHAKE_MAX = 16 << 20
PLOT_HINT = ("--plot needs matplotlib, which is not installed (pip install 'lstm-ag[plot]'); "
             "the sweep runs, without summary.png")
DASK_HINT = ("needs Dask's distributed, which is not installed; install it with "
             "pip install 'lstm-ag[sweep]' (or pip install 'dask[distributed]')")


class SweepError(Exception):
    """The sweep cannot go ahead: one line, and the exit status (2 usage, 3 unwritable)."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


def build_parser(prog: str = "lstm-ag-train sweep") -> argparse.ArgumentParser:
    """The sweep's own options; every other argument is the trainer's (the task first)."""
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"{prog} [TASK] [TRAINER OPTIONS] [--grid KEY=V1,V2 ...] [--seeds N] "
              "[--jobs N | --scheduler ADDRESS | --dask-local N] --out DIR [--plot] [--quiet]",
        description="Run the trainer for every setting of a grid and every seed, in parallel, "
                    "and summarize the results across seeds. TASK and TRAINER OPTIONS are "
                    "lstm-ag-train's (see its --help); they hold for every run.",
        epilog="Each run is lstm-ag-train TASK OPTIONS --KEY VALUE ... --seed S --quiet\n"
               "--out DIR/SETTING/seed=S (--resume when continued): its own checkpoint, lock "
               "and\nmetrics.json. Finished runs are skipped and interrupted ones resumed: "
               "give the same\ncommand again after a Ctrl-C. Writes DIR/summary.json, "
               "DIR/summary.csv (and DIR/summary.png).\nExit status: 0 every run done, 1 a "
               "run failed (see the summary), 2 usage error,\n3 DIR cannot be written, 130 "
               "interrupted, 143 SIGTERM (the workers stopped, each run saved).")
    parser.add_argument("--grid", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                        help="settings to vary: a TrainConfig field (hidden, lr, seq_len, "
                             "...) and its comma-separated values; several keys make every "
                             "combination")
    parser.add_argument("--seeds", type=int, default=3, metavar="N",
                        help="runs per setting, with --seed 0 .. N-1 (default: 3)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=int, metavar="N",
                       help="local worker processes (joblib, loky; default: every core; 1: "
                            "one run after the other in this process)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask cluster of this scheduler (tcp://HOST:8786); "
                            "needs the sweep extra")
    where.add_argument("--dask-local", type=int, metavar="N",
                       help="start a Dask LocalCluster of N worker processes and run there")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the sweep's directory: one subdirectory per run, and the summary")
    parser.add_argument("--plot", action="store_true",
                        help="write DIR/summary.png: the metric of every seed per setting "
                             "(needs matplotlib)")
    parser.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                        help="with --scheduler: the most seconds to connect to the scheduler "
                             f"and complete its handshake (default: {CONNECT_TIMEOUT:g})")
    parser.add_argument("--yes", action="store_true",
                        help=f"start a sweep of more than {RUN_LIMIT} runs (refused without "
                             "it)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


# ----------------------------------------------------------------------------- the grid

def _parse_value(name, text, kind):
    """``text`` as a value of the setting ``name`` of type ``kind``."""
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise SweepError(f"--grid {name}={text}: not true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise SweepError(f"--grid {name}={text}: not an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise SweepError(f"--grid {name}={text}: not a number") from None
    return text


def parse_grid(items: list, fixed: dict | None = None) -> dict:
    """The grid of ``--grid`` items (``"lr=0.03,0.1"``): ``{setting: [values]}`` in the order
    given, each value of the setting's type in :class:`train.config.TrainConfig`.

    - fixed: the settings given as trainer options (a grid key may not repeat one).
    Keys are TrainConfig's field names; ``seq-len`` and the alias ``window`` are accepted too.
    Raises :class:`SweepError` naming the item for an unknown or repeated key, a value that is
    not of the setting's type, or a value given twice.
    """
    from .config import ALIASES, SETTING_TYPES, TrainConfig
    names = [f.name for f in fields(TrainConfig)]
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise SweepError(f"--grid {item}: not KEY=V1,V2,... (a setting and its values; "
                             "give the task and the trainer's options before --grid)")
        name = key.replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in names:
            close = difflib.get_close_matches(name, names, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SweepError(f"--grid {key}: not a setting of TrainConfig{hint}; the "
                             f"settings: {', '.join(n for n in names if n != 'task')}")
        if name == "task":
            raise SweepError("--grid task: a sweep trains one task; give it first "
                             "(lstm-ag-train sweep TASK ...), one sweep per task")
        if name == "seed":
            raise SweepError("--grid seed: the seeds are --seeds N (0 .. N-1 for every setting)")
        if name in grid:
            raise SweepError(f"--grid {key}: given twice; list its values once, "
                             f"{key}=V1,V2,...")
        if fixed and name in fixed:
            raise SweepError(f"--grid {key}: also given as {_option(name)} {fixed[name]}; "
                             "give it in one place")
        texts = [text.strip() for text in values.split(",")]
        if not all(texts):
            raise SweepError(f"--grid {item}: an empty value; give {key}=V1,V2,...")
        parsed = [_parse_value(name, text, SETTING_TYPES[name]) for text in texts]
        for i, value in enumerate(parsed):
            if value in parsed[:i]:
                raise SweepError(f"--grid {item}: the value {texts[i]} is given twice")
        grid[name] = parsed
    return grid


def _value_text(value):
    """A value as the command line and a directory name spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def setting_name(setting: dict) -> str:
    """The directory name of a setting: ``lr=0.03,hidden=16`` ("" for no grid)."""
    return ",".join(f"{key}={re.sub(r'[^A-Za-z0-9._+-]', '_', _value_text(value))}"
                    for key, value in setting.items())


def _setting_args(setting):
    args = []
    for key, value in setting.items():
        option = _option(key)
        if isinstance(value, bool):
            args += [option] if value else []
        else:
            args += [option, _value_text(value)]
    return args


# ----------------------------------------------------------------------------- the plan

@dataclass
class Run:
    """One (setting, seed) of a sweep.

    - setting: the grid's values; name: its directory name; seed; path: the run directory.
    - config: the run's :class:`train.config.TrainConfig`; argv: the trainer's arguments
      (without ``--out`` and ``--resume``).
    - action: ``"new"``, ``"resume"`` or ``"skip"`` (finished); metrics: what the finished
      run's metrics.json holds.
    """
    setting: dict
    name: str
    seed: int
    path: str
    config: object
    argv: list
    action: str = "new"
    metrics: dict | None = None

    @property
    def label(self):
        return os.path.join(self.name, f"seed={self.seed}") if self.name else f"seed={self.seed}"


def _read_metrics(path):
    try:
        with open(os.path.join(path, "metrics.json"), encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and isinstance(content.get("config"), dict) \
        else None


def _finished(metrics, config):
    """True when ``metrics`` (a run's metrics.json) is a finished run of ``config``."""
    if metrics.get("config") != config.to_dict():
        return False
    if metrics.get("status") == "diverged":
        return True
    return metrics.get("status") == "done" and (config.task != "series" or "test" in metrics)


def plan(runs: list) -> list:
    """Set each run's ``action`` from its directory: ``"skip"`` when its metrics.json is a
    finished run (done, or diverged) of the same config, ``"resume"`` when it holds a
    checkpoint, else ``"new"``. Returns ``runs``.

    Raises :class:`SweepError` when a run directory holds a run of another value of a setting
    that a resumed run may not change (the sweep would mix two experiments).
    """
    from .config import FIXED_ON_RESUME
    for run in runs:
        metrics = _read_metrics(run.path)
        expected = run.config.to_dict()
        if metrics is not None:
            for name in FIXED_ON_RESUME:
                old, new = metrics["config"].get(name), expected[name]
                if old != new:
                    raise SweepError(f"{run.path} holds a run with {_option(name)} {old}, this "
                                     f"sweep's run has {new}: a sweep continues its own runs "
                                     "only; give another --out")
        if metrics is not None and _finished(metrics, run.config):
            run.action, run.metrics = "skip", metrics
        elif os.path.exists(os.path.join(run.path, "model.npz")):
            run.action = "resume"
        else:
            run.action = "new"
    return runs


# ----------------------------------------------------------------------------- one run

#: One run at a time in a worker process (a Dask worker may have several threads): the
#: trainer's output is captured through sys.stdout, and a run may change the directory.
_RUN_LOCK = threading.Lock()


def _call_trainer(argv):
    """``lstm-ag-train ARGV`` in this process: ``(exit status or None, error line or None)``.
    Its output is captured; the error line is its last line on stderr."""
    from .cli import main as train_main
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = train_main(argv)
    except SystemExit as exc:                              # argparse: a bad option
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:                               # a bug: say where, in one line
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" ({os.path.basename(frame.filename)}:{frame.lineno})"
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())}{where}"
    if code == 0:
        return 0, None
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    line = lines[-1] if lines else f"exit status {code}"
    return code, re.sub(r"^\S+(?: -m train)?: error: ", "", line)


def _run_here(job, out):
    argv = job["argv"] + ["--out", out] + (["--resume"] if job["resume"] else [])
    code, error = _call_trainer(argv)
    metrics = _read_metrics(out) if code in (0, EXIT_FAILED, EXIT_INTERRUPTED,
                                              EXIT_TERMINATED) else None
    return {"code": code, "error": error, "metrics": metrics, "files": None}


def _run_elsewhere(job):
    """The run in a temporary directory, its checkpoint and data file written there first;
    returns its files too (a Dask worker need not share the filesystem of the sweep)."""
    with tempfile.TemporaryDirectory(prefix="lstm-ag-sweep-") as tmp:
        run_dir = os.path.join(tmp, "run")
        os.makedirs(run_dir)
        for name, content in (job["files"] or {}).items():
            with open(os.path.join(run_dir, name), "wb") as file:
                file.write(content)
        previous = None
        if job["data"]:
            work = os.path.join(tmp, "work")
            for relative, content in job["data"].items():
                path = os.path.join(work, relative)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as file:
                    file.write(content)
            previous = os.getcwd()
            os.chdir(work)                     # --data is relative: the same config here
        try:
            result = _run_here(job, run_dir)
        finally:
            if previous is not None:
                os.chdir(previous)
        if result["code"] in (0, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED):
            files = {}
            for name in RUN_FILES:
                with contextlib.suppress(FileNotFoundError), \
                        open(os.path.join(run_dir, name), "rb") as file:
                    files[name] = file.read()
            result["files"] = files
        # Messages name the run's files where they will be, not in this temporary directory.
        if result["error"]:
            result["error"] = result["error"].replace(run_dir, job["out"])
        metrics = result["metrics"]
        if metrics is not None and isinstance(metrics.get("message"), str):
            metrics["message"] = metrics["message"].replace(run_dir, job["out"])
            result["files"]["metrics.json"] = (json.dumps(metrics, indent=1) + "\n").encode()
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
    if job["parent"] != os.getpid():
        _ignore_ctrl_c()
    if job["transfer"]:
        _undo_malloc_trim()
    watch = None
    if not job["transfer"] and job["parent"] != os.getpid():
        watch = _ParentWatch(job["parent"])        # a loky worker: the sweep may be killed
        watch.start()
    try:
        with _RUN_LOCK:
            result = _run_elsewhere(job) if job["transfer"] else _run_here(job, job["out"])
    finally:
        if watch is not None:
            watch.stop()
    if watch is not None and (watch.orphaned
                              or result["code"] in (EXIT_INTERRUPTED, EXIT_TERMINATED)):
        # Stopped (a Ctrl-C at the terminal, the sweep's SIGTERM when it stops its workers,
        # or the sweep's death noticed): the run saved its checkpoint; end the process now,
        # before it takes a queued run. The sweep learns it from the process's end.
        os._exit(result["code"] if result["code"] in (EXIT_INTERRUPTED, EXIT_TERMINATED)
                 else EXIT_TERMINATED)
    result.update(label=job["label"], wall=time.perf_counter() - start)
    return result


class _ParentWatch(threading.Thread):
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


def _ignore_ctrl_c():
    """In a worker process that this sweep started: a Ctrl-C at the terminal reaches every
    process of its group, and the sweep stops the workers itself. Between runs the worker
    ignores it, as it was born to (:func:`_ctrl_c_ignored`; this holds it for a process
    started otherwise); during a run the trainer's own handling saves the run's checkpoint.
    Only the main thread may set a handler: elsewhere nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


#: glibc's mallopt parameters, and the values given back to a Dask worker: arrays up to
#: 32 MiB from the heap (glibc's own dynamic ceiling), freed memory kept up to 64 MiB.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_THRESHOLDS = {M_MMAP_THRESHOLD: 32 * 2**20, M_TRIM_THRESHOLD: 64 * 2**20}
_malloc_restored = False


def _undo_malloc_trim():
    """Dask's nanny starts a worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (its config
    ``distributed.nanny.pre-spawn-environ``), and a set trim threshold also fixes glibc's mmap
    threshold at 128 KiB: then every array of a training step is a fresh mmap, page faults
    and all, and a run takes nearly twice as long (benchmarks/README.md). Where that variable is
    set, give glibc large thresholds, once per process (Linux with glibc; elsewhere nothing).
    The sweep's own LocalCluster starts its workers without it."""
    global _malloc_restored
    if _malloc_restored or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _malloc_restored = True
    try:
        import ctypes
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    for parameter, value in MALLOC_THRESHOLDS.items():
        mallopt(parameter, value)


def _worker_version(ignore_ctrl_c=False):
    """What a Dask worker has: lstm_ag's version (imported from there, as the runs will).
    ignore_ctrl_c: a worker of the LocalCluster started here (:func:`_ignore_ctrl_c`)."""
    import lstm_ag
    if ignore_ctrl_c:
        _ignore_ctrl_c()
    return lstm_ag.__version__


# ----------------------------------------------------------------------------- results

def _record(run, metrics, code=0, error=None):
    """A run's row of the summary, from its metrics.json (None when it has none)."""
    row = {"seed": run.seed, "dir": run.label, "status": "failed", "error": error,
           "val_mse": None, "test_mse": None, "baseline": None, "beat": None, "seconds": None}
    if metrics is not None:
        row["seconds"] = metrics.get("seconds")
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        row["status"] = "interrupted"
    elif metrics is not None and metrics.get("status") == "diverged":
        row["error"] = metrics.get("message") or error
    elif code == 0 and metrics is not None and metrics.get("status") == "done":
        row["status"], row["error"] = "done", None
        if run.config.task == "series":
            test = metrics["test"]
            row.update(val_mse=metrics["validation"]["mse"], test_mse=test["mse"],
                       baseline=test["ar"]["mse"])
            row["beat"] = row["test_mse"] < row["baseline"]
        else:
            patience = metrics["config"].get("patience")
            row.update(val_mse=metrics["best_val_mse"] if patience else metrics["val_mse"],
                       baseline=metrics["baseline_mse"])
            row["beat"] = row["baseline"] >= 10 * row["val_mse"]
    elif row["error"] is None:
        row["error"] = f"exit status {code}" if code is not None else "no result"
    return row


def _stats(values):
    import numpy as np
    if not values:
        return None
    array = np.array(values, dtype=np.float64)
    return {"mean": float(np.mean(array)),
            "std": float(np.std(array, ddof=1)) if len(array) > 1 else None,
            "min": float(np.min(array)), "max": float(np.max(array))}


def summarize(runs: list, rows: dict, *, grid: dict, fixed: dict, seeds: int) -> dict:
    """The sweep's summary: a JSON-ready dict.

    - runs: the :class:`Run` list in the sweep's order; rows: ``{label: row}`` (each run's
      result, :func:`_record`); grid, fixed: the grid and the fixed trainer settings;
      seeds: seeds per setting.
    Per setting (in the grid's order): ``setting``, ``name``, ``runs``, ``done``, ``failed``,
    ``val_mse`` (and for series ``test_mse``) as ``{"mean", "std", "min", "max"}`` over the
    seeds done (std with n - 1; None for one seed), ``baseline`` (the mean of the seeds' own),
    ``beat`` (seeds that beat it, see ``beat_rule``), ``seconds`` (mean training time of a
    run), and ``seeds``: each run's row (seed, dir, status, error, val_mse, test_mse, baseline,
    beat, seconds).
    """
    task = runs[0].config.task
    series = task == "series"
    settings = []
    for name, group in itertools.groupby(runs, key=lambda run: run.name):
        group = list(group)
        table = [rows[run.label] for run in group]
        done = [row for row in table if row["status"] == "done"]
        seconds = [row["seconds"] for row in table if row["seconds"] is not None]
        entry = {"setting": group[0].setting, "name": name, "runs": len(table),
                 "done": len(done), "failed": len(table) - len(done),
                 "val_mse": _stats([row["val_mse"] for row in done])}
        if series:
            entry["test_mse"] = _stats([row["test_mse"] for row in done])
        baselines = [row["baseline"] for row in done]
        entry["baseline"] = sum(baselines) / len(baselines) if baselines else None
        entry["beat"] = sum(bool(row["beat"]) for row in done)
        entry["seconds"] = sum(seconds) / len(seconds) if seconds else None
        entry["seeds"] = table
        settings.append(entry)
    return {"task": task,
            "metric": "validation MSE in data units" if series else
                      "validation MSE (the best evaluation's with --patience)",
            "baseline": "AR(p), test MSE" if series else
                        "the task's naive baseline, validation MSE",
            "beat_rule": "test MSE < AR(p)'s" if series else "baseline MSE >= 10 x validation MSE",
            "grid": grid, "fixed": fixed, "seeds": list(range(seeds)),
            "runs": sum(entry["runs"] for entry in settings),
            "done": sum(entry["done"] for entry in settings),
            "failed": sum(entry["failed"] for entry in settings),
            "settings": settings}


def _number(value, spec=".3e"):
    return "-" if value is None else format(value, spec)


def format_table(summary: dict) -> str:
    """The summary as a text table, one line per setting (and one per failed run)."""
    series = summary["task"] == "series"
    names = [entry["name"] or "(defaults)" for entry in summary["settings"]]
    width = max([len("setting")] + [len(name) for name in names])
    head = (f"{'setting':{width}s}  {'done':>5s}  {'val mean':>9s}  {'val std':>9s}  "
            f"{'val min':>9s}  {'val max':>9s}")
    head += (f"  {'test mean':>9s}  {'test std':>9s}  {'AR(p)':>9s}  {'<AR':>4s}" if series
             else f"  {'baseline':>9s}  {'10x':>4s}")
    head += f"  {'s/run':>6s}"
    lines = [head]
    for name, entry in zip(names, summary["settings"], strict=True):
        val = entry["val_mse"] or {}
        line = (f"{name:{width}s}  {entry['done']:>2d}/{entry['runs']:<2d}  "
                + "  ".join(f"{_number(val.get(key)):>9s}" for key in
                            ("mean", "std", "min", "max")))
        if series:
            test = entry["test_mse"] or {}
            line += (f"  {_number(test.get('mean')):>9s}  {_number(test.get('std')):>9s}"
                     f"  {_number(entry['baseline']):>9s}  {entry['beat']:>4d}")
        else:
            line += f"  {_number(entry['baseline']):>9s}  {entry['beat']:>4d}"
        line += f"  {_number(entry['seconds'], '.2f'):>6s}"
        lines.append(line)
    for entry in summary["settings"]:
        for row in entry["seeds"]:
            if row["status"] != "done":
                lines.append(f"failed: {row['dir']}: {row['error']}")
    return "\n".join(lines)


def _csv(summary):
    series = summary["task"] == "series"
    keys = list(summary["grid"])
    columns = [*keys, "runs", "done", "failed"]
    metrics = ["val_mse", "test_mse"] if series else ["val_mse"]
    for metric in metrics:
        columns += [f"{metric}_{stat}" for stat in ("mean", "std", "min", "max")]
    columns += ["baseline", "beat", "seconds"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for entry in summary["settings"]:
        row = [_value_text(entry["setting"][key]) for key in keys]
        row += [entry["runs"], entry["done"], entry["failed"]]
        for metric in metrics:
            stats = entry[metric] or {}
            row += [stats.get(stat) for stat in ("mean", "std", "min", "max")]
        row += [entry["baseline"], entry["beat"], entry["seconds"]]
        writer.writerow(["" if value is None else repr(value) if isinstance(value, float)
                         else value for value in row])
    return text.getvalue()


def write_summary(summary: dict, out: str) -> list:
    """Write ``out/summary.json`` and ``out/summary.csv``, each atomically. Returns the paths."""
    import lstm_ag
    paths = []
    for name, text in (("summary.json", json.dumps(summary, indent=1) + "\n"),
                       ("summary.csv", _csv(summary))):
        path = os.path.join(out, name)
        lstm_ag.atomic_write(path, lambda file, text=text: file.write(text), mode="w")
        paths.append(path)
    return paths


def plot_summary(summary: dict, path: str) -> str:
    """Draw each setting's metric, one point per seed, its mean and the baseline; save it to
    ``path`` (a ``.png``, atomically). Series: validation and test side by side (the test
    beside AR(p)). Returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import lstm_ag
    series = summary["task"] == "series"
    panels = [("val_mse", "validation MSE (data units)" if series else "validation MSE")]
    if series:
        panels.append(("test_mse", "test MSE (data units)"))
    settings = summary["settings"]
    names = [entry["name"] or "(defaults)" for entry in settings]
    fig, axes = plt.subplots(1, len(panels), squeeze=False, constrained_layout=True,
                             figsize=(len(panels) * max(5.0, 1.1 * len(settings) + 2.5), 4.8))
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        with_baseline = key == ("test_mse" if series else "val_mse")
        for i, entry in enumerate(settings):
            rows = [row for row in entry["seeds"] if row["status"] == "done"]
            offsets = np.linspace(-0.2, 0.2, len(rows)) if len(rows) > 1 else np.zeros(len(rows))
            first = i == 0
            ax.plot(i + offsets, [row[key] for row in rows], "o", color="C0", alpha=0.75,
                    label="one seed" if first else None)
            if entry[key] is not None:
                ax.hlines(entry[key]["mean"], i - 0.3, i + 0.3, color="C3",
                          label="mean over seeds" if first else None)
            if with_baseline and rows:
                ax.plot(i + offsets, [row["baseline"] for row in rows], "_", color="k",
                        markersize=12, label=("AR(p)" if series else "baseline")
                        if first else None)
            failed = entry["failed"]
            if failed:
                ax.annotate(f"{failed} failed", (i, 0.02), xycoords=("data", "axes fraction"),
                            ha="center", color="C3", fontsize="small")
        ax.set_yscale("log")
        ax.set_xticks(range(len(settings)), names, rotation=25, ha="right")
        ax.set_xlim(-0.6, len(settings) - 0.4)
        ax.set(ylabel="MSE", title=f"{summary['task']}: {title}, {len(summary['seeds'])} seeds")
        ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    lstm_ag.atomic_write(path, lambda file: file.write(buffer.getvalue()))
    return path


# ----------------------------------------------------------------------------- running

class _Progress:
    """The sweep's one progress line on a stream (rewritten in place on a terminal)."""

    def __init__(self, total, skipped, workers, stream, enabled):
        self.total, self.skipped, self.workers = total, skipped, workers
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.started = time.perf_counter()
        self.done = self.failed = 0
        self.width = 0

    def show(self, final=False):
        if not self.enabled:
            return
        made = self.done + self.failed
        remaining = self.total - self.skipped - made
        running = min(self.workers, remaining)
        elapsed = time.perf_counter() - self.started
        eta = _duration(elapsed / made * remaining) if made else "?"
        line = (f"sweep: {self.skipped + self.done}/{self.total} runs done"
                + (f" ({self.skipped} skipped)" if self.skipped else "")
                + f", {running} running, {self.failed} failed, {_duration(elapsed)} elapsed"
                + (f", ETA {eta}" if remaining else ""))
        if self.tty:
            pad = " " * max(self.width - len(line), 0)
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _count(n, word):
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def _duration(seconds):
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


@dataclass
class _Engine:
    n_jobs: int
    workers: int
    transfer: bool
    name: str


@contextlib.contextmanager
def _engine(args, pending):
    """joblib's configuration for the runs: loky processes here, or Dask."""
    import joblib
    if args.scheduler is None and args.dask_local is None:
        jobs = args.jobs or joblib.cpu_count()
        jobs = max(1, min(jobs, pending))
        name = "this process, one run at a time" if jobs == 1 else \
            f"joblib (loky), {jobs} processes"
        with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
            yield _Engine(jobs, jobs, False, name)
        return
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError:
        option = "--scheduler" if args.scheduler is not None else "--dask-local"
        raise SweepError(f"{option} {DASK_HINT}") from None
    import dask
    cluster = client = None
    try:
        if args.dask_local is not None:
            environ = {key: value for key, value in
                       dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                       if key != "MALLOC_TRIM_THRESHOLD_"}         # see _undo_malloc_trim
            with _ctrl_c_ignored(), \
                    dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                cluster = LocalCluster(n_workers=args.dask_local, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
                client = Client(cluster)
                _check_workers(client, local=True)
            where = f"Dask LocalCluster, {_count(args.dask_local, 'process')}"
        else:
            client = _connect(Client, args.scheduler, args.timeout)
            where = f"Dask scheduler {args.scheduler}"
        workers = sum(client.nthreads().values())
        with joblib.parallel_config(backend="dask"):
            yield _Engine(-1, workers, True, f"{where}, {_count(workers, 'worker thread')}")
    finally:
        with _ctrl_c_ignored():
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()


def _connect(Client, address, timeout=CONNECT_TIMEOUT):
    """A client of the scheduler at ``address`` with at least one worker, checked. Every step
    of the handshake is bounded by ``timeout`` seconds: first a probe of a ``tcp://`` address
    (:func:`_probe_scheduler`: a peer that says nothing, or something other than Dask's
    protocol, is refused before distributed reads it), then distributed's own connection,
    in a thread given ``timeout`` and a little more."""
    _probe_scheduler(address, timeout)
    found, done = {}, threading.Event()

    def connect():
        try:
            found["client"] = Client(address, timeout=f"{timeout}s")
        except BaseException as err:              # reported by the caller's thread
            found["error"] = err
        finally:
            done.set()
    threading.Thread(target=connect, daemon=True, name="lstm-ag-connect").start()
    if not done.wait(2 * timeout + 1):
        raise SweepError(f"--scheduler {address}: no Dask handshake within --timeout "
                         f"{timeout:g} s; is a Dask scheduler listening there?")
    err = found.get("error")
    if isinstance(err, (OSError, ValueError, TimeoutError, MemoryError, EOFError)):
        raise SweepError(f"--scheduler {address}: cannot connect: "
                         f"{' '.join(str(err).split())[:300]}") from None
    if err is not None:
        raise err
    client = found["client"]
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
        _check_workers(client, local=False)
    except TimeoutError:
        client.close()
        raise SweepError(f"--scheduler {address}: no worker connected within {WORKER_WAIT} s"
                         ) from None
    except BaseException:
        client.close()
        raise
    return client


def _probe_scheduler(address, timeout):
    """Refuse a ``tcp://HOST:PORT`` (or ``HOST:PORT``) address where no Dask scheduler
    speaks, within ``timeout`` seconds: one that refuses the connection, says nothing (a
    scheduler sends its handshake first, unasked), or starts with a length no handshake has.
    Other schemes (tls://, ...) are left to distributed."""
    import socket
    import struct
    scheme, sep, rest = address.rpartition("://")
    if sep and scheme != "tcp":
        return
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        return                                    # distributed says what is wrong with it
    host = host.strip("[]") or "127.0.0.1"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            head = b""
            while len(head) < 8:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    raise SweepError(f"--scheduler {address}: the server there closed the "
                                     "connection without a Dask handshake: not a Dask "
                                     "scheduler")
                head += chunk
    except TimeoutError:
        raise SweepError(f"--scheduler {address}: no Dask handshake within --timeout "
                         f"{timeout:g} s (a server accepted the connection but said nothing: "
                         "not a Dask scheduler, or one too busy to answer)") from None
    except OSError as err:
        raise SweepError(f"--scheduler {address}: cannot connect: "
                         f"{err.strerror or err}") from None
    (length,) = struct.unpack("Q", head)           # distributed's framing: native order
    if not 0 < length <= HANDSHAKE_MAX:
        text = head.decode("ascii", "replace")
        raise SweepError(f"--scheduler {address}: the server there is not a Dask scheduler (it "
                         f"began with {text!r}; a scheduler begins with the length of its "
                         "handshake)")


@contextlib.contextmanager
def _ctrl_c_ignored():
    """Ignore Ctrl-C while worker processes start (or Dask's stop): they inherit SIGINT
    ignored, so that a Ctrl-C at the terminal, which reaches every process of its group,
    never interrupts one half started (each printing a traceback); the sweep stops them
    itself, and during a run the trainer's own handling saves the run's checkpoint. A
    KeyboardInterrupt inside LocalCluster would also leave it half made. A Ctrl-C in this
    window (loky: moments; a LocalCluster: its start, a few seconds) is lost. Main thread
    only (elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_workers(client, local):
    import lstm_ag
    try:
        versions = client.run(_worker_version, local)
    except Exception as err:                     # whatever the worker raised
        raise SweepError(f"the Dask workers cannot run the sweep ({type(err).__name__}: "
                         f"{' '.join(str(err).split())}); install lstm-ag on every worker, "
                         f"version {lstm_ag.__version__} as here") from None
    for worker, version in sorted(versions.items()):
        if version != lstm_ag.__version__:
            raise SweepError(f"the Dask worker {worker} has lstm-ag {version}, this machine "
                             f"{lstm_ag.__version__}: install the same version everywhere")


def _job(run, transfer, data_cache):
    job = {"label": run.label, "argv": run.argv, "out": run.path,
           "resume": run.action == "resume", "transfer": transfer, "files": None, "data": None,
           "parent": os.getpid()}
    if not transfer:
        return job
    if run.action == "resume":
        files = {}
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError), \
                    open(os.path.join(run.path, name), "rb") as file:
                files[name] = file.read()
        job["files"] = files
    if run.config.task == "series":
        data = run.config.data
        if data not in data_cache:
            with open(resolve(data), "rb") as file:
                data_cache[data] = file.read()
        job["data"] = {data: data_cache[data]}
    return job


def _store(run, files):
    """Write a transferred run's files into its directory (under the run's lock), the
    checkpoint first; a best.npz of an earlier run that did not come back is removed."""
    import lstm_ag

    from .rundir import open_run_dir
    with open_run_dir(run.path, resume=False, overwrite=True):
        for name in RUN_FILES:
            path = os.path.join(run.path, name)
            if name in files:
                lstm_ag.atomic_write(path, lambda file, content=files[name]: file.write(content))
            elif name == "best.npz":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _check_data(runs, transfer):
    """Series: load each distinct data file once here, so that a bad --data is one usage
    error and not a failure of every run; for Dask, --data must be relative (it is sent)."""
    from .config import ConfigError
    from .series import SeriesError
    seen = set()
    for run in runs:
        config = run.config
        if config.task != "series":
            continue
        key = (config.data, config.column, config.diff, config.val_frac, config.test_frac,
               config.seq_len, config.batch, config.train_size, config.optimizer)
        if key in seen:
            continue
        seen.add(key)
        if transfer:
            normal = os.path.normpath(config.data)
            if os.path.isabs(normal) or normal.split(os.sep)[0] == "..":
                raise SweepError(f"--data {config.data}: with Dask give a path inside the "
                                 "current directory (the file is sent to the workers, where "
                                 "the run finds it at that relative path)")
        try:
            config.make_task()
        except SeriesError as err:
            raise SweepError(f"--data {err}") from None
        except ConfigError as err:
            raise SweepError(f"{_option(err.name)} {err.problem}") from None


def _runs(args, rest, prog):
    """The trainer's options (validated by its own parser), the grid, and every run."""
    from .config import ConfigError, TrainConfig
    targs = build_train_parser(f"{prog} [TASK]").parse_args(rest)
    if targs.task == "forecast":
        raise SweepError("forecast is not a training task; sweep TASK is sine, counting, "
                         "adding or series")
    for name in ("resume", "overwrite", "from_end", "on_test"):
        if getattr(targs, name):
            why = ("a sweep resumes its unfinished runs by itself: give the same command "
                   "again" if name == "resume" else "a sweep continues its runs, it never "
                   "replaces them: give another --out" if name == "overwrite" else
                   "it is an option of forecast")
            raise SweepError(f"--{name.replace('_', '-')}: {why}")
    fixed = {f.name: getattr(targs, f.name) for f in fields(TrainConfig)
             if getattr(targs, f.name, None) is not None}
    if "seed" in fixed:
        raise SweepError("--seed: the seeds are --seeds N (0 .. N-1 for every setting)")
    if args.seeds < 1:
        raise SweepError(f"--seeds must be >= 1, got {args.seeds}")
    for option, value in (("--jobs", args.jobs), ("--dask-local", args.dask_local)):
        if value is not None and value < 1:
            raise SweepError(f"{option} must be >= 1, got {value}")
    grid = parse_grid(args.grid, fixed)
    combinations = math.prod(len(values) for values in grid.values())
    if combinations * args.seeds > RUN_LIMIT and not args.yes:    # before building the plan
        raise SweepError(f"--grid makes {combinations * args.seeds} runs ({combinations} "
                         f"setting{'s' if combinations > 1 else ''} x {args.seeds} seed"
                         f"{'s' if args.seeds > 1 else ''}), more than {RUN_LIMIT}: give --yes "
                         "to start them all, or fewer values or seeds")
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise SweepError(f"--timeout must be a number of seconds > 0, got {args.timeout:g}")
    settings = [dict(zip(grid, values, strict=True))
                for values in itertools.product(*grid.values())]
    names = [setting_name(setting) for setting in settings]
    if len(set(names)) < len(names):
        raise SweepError("--grid: two settings have the same directory name; give values "
                         "that differ in letters or digits")
    runs = []
    for setting, name in zip(settings, names, strict=True):
        for seed in range(args.seeds):
            try:
                config = TrainConfig(**fixed, **setting, seed=seed)
            except ConfigError as err:
                if err.name in setting:
                    raise SweepError(f"--grid {err.name}={_value_text(setting[err.name])}: "
                                     f"{err.name} {err.problem}") from None
                raise SweepError(f"{_option(err.name)} {err.problem}") from None
            runs.append(Run(setting, name, seed, os.path.join(args.out, name, f"seed={seed}"),
                            config, [*rest, *_setting_args(setting), "--seed", str(seed),
                                     "--quiet"]))
    return runs, grid, fixed


#: Seconds a sweep waits for the runs of a stopped sweep (killed: its workers notice and
#: save their runs' checkpoints, :class:`_ParentWatch`) to let go of their directories.
STOPPED_WAIT = 60


def _wait_for_stopped_runs(runs, stream, wait=STOPPED_WAIT):
    """Before planning: a run directory still locked is a run of a sweep that was just
    stopped (its sweep directory is ours now), saving its checkpoint; wait for it (saying so)
    rather than failing the run as "in use by another trainer". Returns the seconds waited."""
    from .rundir import lock_holder
    started = time.monotonic()
    held = [run for run in runs if lock_holder(run.path) is not None]
    if held:
        stream.write(f"sweep: waiting up to {wait} s for {_count(len(held), 'run')} of a stopped "
                     "sweep to save and let go of their directories\n")
        stream.flush()
    while held and time.monotonic() - started < wait:
        time.sleep(0.1)
        held = [run for run in held if lock_holder(run.path) is not None]
    return time.monotonic() - started


def _lock_sweep_dir(out):
    from .rundir import RunError, open_run_dir
    if os.path.exists(os.path.join(out, "model.npz")):
        raise SweepError(f"--out {out} holds a single run (model.npz); give the sweep a "
                         "directory of its own")
    try:
        return open_run_dir(out, resume=False, overwrite=True)
    except RunError as err:
        raise SweepError(str(err).replace("another trainer", "another trainer or sweep"),
                         err.exit_status) from None


def _execute(runs, args, rows, progress_stream, callback):
    """Run the pending runs; fill ``rows``. Returns the session's figures."""
    pending = [run for run in runs if run.action != "skip"]
    session = {"engine": None, "workers": 0, "skipped": len(runs) - len(pending),
               "resumed": sum(run.action == "resume" for run in pending),
               "new": sum(run.action == "new" for run in pending), "run_wall_seconds": 0.0}
    if not pending:
        return session
    with _engine(args, len(pending)) as engine:
        session.update(engine=engine.name, workers=engine.workers)
        progress = _Progress(len(runs), session["skipped"], engine.workers, progress_stream,
                             not args.quiet)
        progress.show()
        data_cache, todo = {}, pending
        while todo:                 # more than one round only after a worker was killed
            todo = _round(todo, engine, rows, progress, session, callback, data_cache,
                          len(pending))
    return session


def _round(todo, engine, rows, progress, session, callback, data_cache, total):
    """Run ``todo`` on the engine, recording each result in ``rows``. Returns the runs to run
    again: none, unless a loky worker process died (killed: SIGKILL, the out-of-memory
    killer), which breaks loky's pool and kills its other workers; then the run that the
    dead worker held is failed, and the others are planned again (resumed from their
    checkpoints, as after a Ctrl-C), in a new pool."""
    import joblib
    from joblib.externals.loky.process_executor import TerminatedWorkerError
    by_label = {run.label: run for run in todo}
    local = engine.n_jobs > 1 and not engine.transfer          # loky processes here
    watch = _WorkerWatch() if local else None
    jobs = (joblib.delayed(run_one)(_job(run, engine.transfer, data_cache)) for run in todo)
    parallel = joblib.Parallel(n_jobs=engine.n_jobs, return_as="generator_unordered")
    returned, results = set(), None
    try:
        # loky starts its processes here: they are born ignoring Ctrl-C (see _ctrl_c_ignored)
        with _ctrl_c_ignored() if engine.n_jobs > 1 else contextlib.nullcontext():
            results = parallel(jobs)
        if watch is not None:
            watch.start()
        with _stop_workers_on_signal(progress.stream) if local else contextlib.nullcontext():
            _collect(results, by_label, returned, rows, progress, session, callback, total)
    except TerminatedWorkerError:
        lost = [run for run in todo if run.label not in returned]
        return _after_a_killed_worker(lost, watch, rows, progress, callback, total)
    except KeyboardInterrupt:
        if local:
            _stop_workers(progress.stream)
        raise
    finally:
        if watch is not None:
            watch.stop()
        if results is not None:
            with contextlib.suppress(Exception), _quiet_warnings():
                results.close()
    return []


def _collect(results, by_label, returned, rows, progress, session, callback, total):
    """Record each result as it comes; a run interrupted in its worker stops the sweep."""
    for result in results:
        run = by_label[result["label"]]
        returned.add(run.label)
        session["run_wall_seconds"] += result["wall"]
        code, error = result["code"], result["error"]
        if result["files"]:
            try:
                _store(run, result["files"])
            except Exception as err:          # the run failed here, not the sweep
                code, error = None, f"cannot store the run's files: {err}"
        row = _record(run, result["metrics"], code, error)
        if row["status"] == "interrupted":
            raise KeyboardInterrupt
        _count_row(run, row, rows, progress, callback, total)


def _count_row(run, row, rows, progress, callback, total):
    rows[run.label] = row
    progress.done += row["status"] == "done"
    progress.failed += row["status"] != "done"
    progress.show(final=progress.done + progress.failed == total)
    if callback is not None:
        callback(run, row)


def _after_a_killed_worker(lost, watch, rows, progress, callback, total):
    """The runs without a result when loky's pool broke: the one a killed worker held (its
    lock file names the worker) failed; the others are planned again."""
    from .rundir import LOCK_NAME
    first, seen = (watch.first_dead, watch.seen) if watch is not None else (set(), set())
    holders = {}
    for run in lost:
        with contextlib.suppress(OSError, ValueError), \
                open(os.path.join(run.path, LOCK_NAME), encoding="ascii") as file:
            holders[run.label] = int(file.read().strip() or 0)
    killed = [run for run in lost if holders.get(run.label) in first]
    if not killed:                 # the first to die not seen: every run a worker held
        killed = [run for run in lost if holders.get(run.label) in seen] or lost
    for run in killed:             # its worker was interrupted, and ended after saving it
        if (_read_metrics(run.path) or {}).get("status") == "interrupted":
            raise KeyboardInterrupt                     # a stop, as a Ctrl-C of the sweep
    for run in killed:
        row = _record(run, None, None, "its worker process was killed while it ran (SIGKILL, "
                                       "or the out-of-memory killer); its last checkpoint is "
                                       "kept, and the next sweep resumes it")
        _count_row(run, row, rows, progress, callback, total)
    again = plan([run for run in lost if run not in killed])
    for run in again:
        if run.action == "skip":                   # done, its result lost with the pool
            _count_row(run, _record(run, run.metrics), rows, progress, callback, total)
    return [run for run in again if run.action != "skip"]


class _WorkerWatch(threading.Thread):
    """Watches this process's worker processes (loky's, children of this one): ``seen``, the
    pids of every worker seen, and ``first_dead``, those found dead at the first death (loky
    kills the others right after it: the killed worker is told from them by being first)."""

    POLL = 0.05

    def __init__(self):
        super().__init__(daemon=True, name="lstm-ag-sweep-watch")
        self.first_dead, self.seen = set(), set()
        self._stop_event = threading.Event()

    def run(self):
        import multiprocessing
        from multiprocessing import connection
        while not self._stop_event.is_set() and not self.first_dead:
            workers = {p.sentinel: p.pid for p in multiprocessing.active_children()}
            self.seen.update(workers.values())
            if not workers:
                self._stop_event.wait(self.POLL)
                continue
            ready = connection.wait(list(workers), timeout=self.POLL)
            if ready:
                self.first_dead = {workers[sentinel] for sentinel in ready}

    def stop(self):
        self._stop_event.set()
        if self.is_alive():
            self.join(1.0)


@contextlib.contextmanager
def _stop_workers_on_signal(stream):
    """While results are awaited: a Ctrl-C or SIGTERM first stops the workers (their runs
    saving their checkpoints, :func:`_stop_workers`), then goes to the handler before (the
    command line's, which raises KeyboardInterrupt). Raised straight away, it would reach
    joblib first, which kills its workers at once (SIGKILL: the runs' progress since their
    last evaluation lost). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signums}
    stopped = []

    def handle(signum, frame):
        if not stopped:
            stopped.append(signum)
            _stop_workers(stream)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        raise KeyboardInterrupt
    for signum in signums:
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


#: Seconds that stopped workers have to save their runs' checkpoints before they are killed.
STOP_GRACE = 60


def _stop_workers(stream, grace=STOP_GRACE):
    """A stopped sweep stops its loky workers: each is sent SIGTERM, so that the run it is
    training saves its checkpoint and exits (a worker between runs just ends, and queued runs
    never start); those still alive after ``grace`` seconds are killed. Says so on ``stream``."""
    import multiprocessing
    workers = multiprocessing.active_children()
    for worker in workers:
        with contextlib.suppress(OSError):
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0))
    killed = [worker for worker in workers if worker.is_alive()]
    for worker in killed:
        with contextlib.suppress(OSError):
            os.kill(worker.pid, signal.SIGKILL)
        worker.join(5)
    if workers:
        newline = "\n" if getattr(stream, "isatty", lambda: False)() else ""
        stream.write(f"{newline}sweep: stopped {_count(len(workers), 'worker process')}; the "
                     "runs in progress saved their checkpoints"
                     + (f" ({len(killed)} killed after {grace} s)" if killed else "")
                     + ", the queued runs were not started\n")
        stream.flush()


@contextlib.contextmanager
def _quiet_warnings():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_sweep(args: argparse.Namespace, rest: list, prog: str, *, callback=None) -> int:
    """The sweep of parsed ``args`` and the trainer's arguments ``rest``. Returns the exit
    status; raises :class:`SweepError` for usage (2) and unwritable (3) problems."""
    started = time.perf_counter()
    runs, grid, fixed = _runs(args, rest, prog)
    _check_data(runs, transfer=args.scheduler is not None or args.dask_local is not None)
    plot = args.plot
    if plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"{prog}: {PLOT_HINT}", file=sys.stderr)
            plot = False
    with _lock_sweep_dir(args.out):
        _wait_for_stopped_runs(runs, sys.stderr)
        plan(runs)
        rows = {run.label: _record(run, run.metrics) for run in runs if run.action == "skip"}
        session = _execute(runs, args, rows, sys.stderr, callback)
        summary = summarize(runs, rows, grid=grid, fixed=fixed, seeds=args.seeds)
        session["wall_seconds"] = time.perf_counter() - started
        summary["session"] = session
        try:
            written = write_summary(summary, args.out)
            if plot:
                written.append(plot_summary(summary, os.path.join(args.out, "summary.png")))
        except OSError as err:
            raise SweepError(f"cannot write the summary in {args.out}: "
                             f"{err.strerror or err}", EXIT_UNWRITABLE) from None
    settings = len(runs) // args.seeds
    print(f"sweep {summary['task']}: {_count(settings, 'setting')} x "
          f"{_count(args.seeds, 'seed')}, {_count(len(runs), 'run')}: {summary['done']} done, "
          f"{summary['failed']} failed; this time {session['new']} new, {session['resumed']} "
          f"resumed, {session['skipped']} finished before (skipped)"
          + (f", on {session['engine']}" if session["engine"] else "")
          + f", {session['wall_seconds']:.1f} s")
    print(f"{summary['metric']} over the seeds; beat: {summary['beat_rule']}")
    print(format_table(summary))
    print("wrote " + ", ".join(written))
    return EXIT_FAILED if summary["failed"] else 0


def main(argv: list, prog: str = "lstm-ag-train", *, callback=None) -> int:
    """``lstm-ag-train sweep ARGV``: returns the exit status (0, 1, 2, 3 or 130; 143 after a
    SIGTERM, through :func:`train.cli.main`).

    - prog: how the trainer was called (for messages); callback: ``callback(run, row)`` after
      each run's result is recorded (a :class:`Run` and its summary row); a KeyboardInterrupt
      raised there stops the sweep as a Ctrl-C does.
    Every expected failure is one line on stderr, never a traceback.
    """
    prog = f"{prog} sweep"
    parser = build_parser(prog)
    args, rest = parser.parse_known_args(argv)
    try:
        return run_sweep(args, rest, prog, callback=callback)
    except SweepError as err:
        if err.status == EXIT_USAGE:
            parser.print_usage(sys.stderr)
        message = " ".join(str(err).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        newline = "\n" if sys.stderr.isatty() else ""        # after the progress line
        print(f"{newline}{prog}: interrupted; finished runs are kept and the runs in progress keep "
              "their last checkpoint: give the same command again to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
