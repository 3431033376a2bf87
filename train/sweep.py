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
  resumed) and its ``--data`` file, runs in a temporary directory there (in a process of its
  own, :mod:`train.sweep_child`), and comes back with its files and metrics, which this
  process writes into ``DIR`` (:func:`run_one`).
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
  way (:class:`train.sweep_worker.ParentWatch`); the next sweep waits for them to let go of
  their run directories. A worker killed while it trains (SIGKILL, the out-of-memory killer) breaks
  loky's pool, which kills the other workers: that run is failed (its last checkpoint kept,
  resumed by the next sweep), the others are planned again and go on in a new pool.
* Limits. More than ``RUN_LIMIT`` (100) runs are refused without ``--yes`` (counted before
  the plan is built: a grid of 10^6 combinations is refused at once). ``--scheduler`` is
  probed before distributed connects (a peer that says nothing within ``--timeout``, or
  something other than a Dask handshake, is refused), and distributed's own handshake is
  bounded by ``--timeout`` too.
"""
import argparse
import itertools
import math
import os
import sys
import time
from dataclasses import fields

from .options import _option
from .options import build_parser as build_train_parser
from .sweep_engines import CONNECT_TIMEOUT
from .sweep_plan import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNWRITABLE,
    EXIT_USAGE,
    RUN_FILES,
    RUN_LIMIT,
    Run,
    SweepError,
    count,
    parse_grid,
    plan,
    setting_args,
    value_text,
)
from .sweep_plan import setting_name as setting_name
from .sweep_rounds import STOP_GRACE as STOP_GRACE
from .sweep_rounds import execute
from .sweep_summary import format_table, plot_summary, record, summarize, write_summary
from .sweep_worker import run_one

# The command line of a sweep; its parts: sweep_plan (the grid and the plan), sweep_worker and
# sweep_child (one run), sweep_engines (loky, Dask), sweep_rounds (running the plan),
# sweep_summary (the table, CSV, JSON and plot).

__all__ = ["main", "build_parser", "parse_grid", "Run", "plan", "run_one", "summarize",
           "format_table", "write_summary", "plot_summary", "SweepError", "RUN_FILES"]


PLOT_HINT = ("--plot needs matplotlib, which is not installed (pip install 'lstm-ag[plot]'); "
             "the sweep runs, without summary.png")


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
                    raise SweepError(f"--grid {err.name}={value_text(setting[err.name])}: "
                                     f"{err.name} {err.problem}") from None
                raise SweepError(f"{_option(err.name)} {err.problem}") from None
            runs.append(Run(setting, name, seed, os.path.join(args.out, name, f"seed={seed}"),
                            config, [*rest, *setting_args(setting), "--seed", str(seed),
                                     "--quiet"]))
    return runs, grid, fixed


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


#: Seconds a sweep waits for the runs of a stopped sweep (killed: its workers notice and save
#: their runs' checkpoints, :class:`train.sweep_worker.ParentWatch`) to let go of their
#: directories.
STOPPED_WAIT = 60


def _wait_for_stopped_runs(runs, stream, wait=STOPPED_WAIT):
    """Before planning: a run directory still locked is a run of a sweep that was just
    stopped (its sweep directory is ours now), saving its checkpoint; wait for it (saying so)
    rather than failing the run as "in use by another trainer". Returns the seconds waited."""
    from .rundir import lock_holder
    started = time.monotonic()
    held = [run for run in runs if lock_holder(run.path) is not None]
    if held:
        stream.write(f"sweep: waiting up to {wait} s for {count(len(held), 'run')} of a stopped "
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
        rows = {run.label: record(run, run.metrics) for run in runs if run.action == "skip"}
        session = execute(runs, args, rows, sys.stderr, callback)
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
    print(f"sweep {summary['task']}: {count(settings, 'setting')} x "
          f"{count(args.seeds, 'seed')}, {count(len(runs), 'run')}: {summary['done']} done, "
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
