"""The command line: ``lstm-ag-train [sine|counting|adding] [options]``,
``lstm-ag-train series --data FILE [options]`` (your own series: :mod:`train.series`) and
``lstm-ag-train forecast --out DIR [--horizon K] [--from-end | --on-test] [--plot]``.

``python -m train`` runs the same from the repository's root (anywhere else a ``train.py`` or
``train/`` in the working directory would be run instead; the console script is immune).
The options, their defaults and ``--help`` come from :class:`train.config.TrainConfig`.

Writes ``DIR/model.npz`` (a checkpoint: parameters, config, step, momentum buffers) and
``DIR/metrics.json`` (task, status, step, train_loss, val_mse, baseline_mse, seconds, history),
DIR being ``--out`` (default ``runs/TASK``). Progress lines go to stderr, the final summary to
stdout. A directory holding a model is replaced only with ``--overwrite`` (or continued with
``--resume``); one in use by another trainer is refused (:mod:`train.rundir`).

Exit status: 0 done; 1 the loss became non-finite (the last good checkpoint is kept);
2 bad arguments or checkpoint, a run directory holding a model or in use, sizes too large for
the memory; 3 the run's files cannot be written (disk full, read-only, not a directory: the
last good checkpoint is kept); 130 interrupted by Ctrl-C, 143 by SIGTERM (a checkpoint was
saved either way). Every failure is one line, never a traceback.

Ctrl-C is handled from the first line of :func:`main` on: this module imports only the
standard library at the top, the trainer (numpy, autograd) inside the functions, after the
handler is installed. Keep it so (a test checks it).
"""
import argparse
import contextlib
import os
import signal
import sys
import threading

from .options import _option, _prog, build_parser

__all__ = ["main", "build_parser"]

EXIT_DIVERGED, EXIT_USAGE, EXIT_UNWRITABLE, EXIT_INTERRUPTED = 1, 2, 3, 130
#: The exit status after a SIGTERM (128 + 15, as a shell reports a process it ended).
EXIT_TERMINATED = 143
PLOT_HINT = ("--plot needs matplotlib, which is not installed; install it with "
             "pip install 'lstm-ag[plot]' (or pip install matplotlib)")


class UsageError(Exception):
    """A problem with the arguments, reported as one line with exit status 2."""


def _check_plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(PLOT_HINT) from None


def _summary(task, result):
    config = result.config
    last = result.best if config.patience else result.last
    lines = [(f"{task.name}: {result.step} steps in {result.progress.seconds:.2f} s, "
              f"method {config.method}, optimizer {config.optimizer}")]
    if config.patience and last is not None:
        stopped = "stopped early, " if result.step < config.steps else ""
        lines[0] += f" ({stopped}best step {last['step']}, --patience {config.patience})"
    if last is not None and task.name == "series":
        lines.append(f"progress figure: validation MSE {last['val_mse']:.3e} (scaled units) vs "
                     f"naive {last['baseline_mse']:.3e}; the verdict is on the test part, "
                     "below")
    elif last is not None:
        ratio = last["baseline_mse"] / last["val_mse"] if last["val_mse"] > 0 else float("inf")
        verdict = (f"{ratio:.1f}x lower" if ratio >= 1 else
                   f"{1 / ratio:.1f}x higher: worse than the baseline so far")
        lines.append(f"validation MSE {last['val_mse']:.3e} vs baseline ({task.baseline}) "
                     f"{last['baseline_mse']:.3e}: {verdict}")
    return "\n".join(lines)


def _check_memory(config, n_val=None):
    """Refuse sizes that need more memory than is available, before generating the task.

    - n_val: the task's validation sequences (default: its generator's default).
    Only for the toy tasks, whose D and O come from a tiny instance.
    """
    import inspect

    from .data import TASKS, make_task
    from .rundir import check_memory
    if config.task not in TASKS:
        _check_layers_memory(config, 1, 1)
        return
    tiny = make_task(config.task, 8, n_train=1, n_val=1)
    if n_val is None:
        n_val = inspect.signature(TASKS[config.task]).parameters["n_val"].default
    check_memory(config, tiny.input_size, tiny.output_size, n_val)
    _check_layers_memory(config, tiny.input_size, tiny.output_size)


def _check_layers_memory(config, D, O):
    """Refuse ``--layers`` whose weights alone (with the optimizer's copies, as
    :mod:`train.rundir` counts them) exceed the memory available, before any is drawn."""
    from .rundir import WEIGHT_COPIES, RunError, available_memory
    H, dirs, layers = config.hidden, config.directions, config.layers
    count = dirs * (D + H + 1) * 4 * H + (layers - 1) * dirs * (dirs * H + H + 1) * 4 * H \
        + (dirs * H + 1) * O                             # Python ints: no overflow
    nbytes, available = count * WEIGHT_COPIES * 8, available_memory()
    if available is not None and nbytes > available:
        raise RunError(f"--layers {layers} with --hidden {H}: the weights and the optimizer's "
                       f"copies would need about {nbytes / 2**30:.3g} GiB of memory, more than "
                       f"the {available / 2**30:.3g} GiB available; choose smaller sizes")


def _resume(run_dir, given):
    """The checkpoint of ``run_dir``: ``(params, config, start, task)``, validated."""
    import lstm_ag

    from .config import FIXED_ON_RESUME, ConfigError
    from .data import make_task
    from .loop import check_carry, load_checkpoint
    checkpoint = run_dir.checkpoint
    try:
        params, saved, start, task_spec = load_checkpoint(checkpoint)
    except OSError as err:
        raise UsageError(f"--resume: cannot read {checkpoint}: {err.strerror or err}") from None
    try:
        config = saved.resumed(**given)
    except ConfigError as err:
        if err.name not in FIXED_ON_RESUME:
            raise                                        # a bad value of steps, method, ...
        raise UsageError(f"{_option(err.name)} {err.problem} in {checkpoint}; leave it "
                         "out to resume, or start a new run (another --out, or no "
                         "--resume)") from None
    n_val = task_spec.get("n_val")
    _check_memory(config, n_val if isinstance(n_val, int) else None)
    try:
        task = make_task(**task_spec)
    except (TypeError, ValueError) as err:
        raise lstm_ag.CheckpointError(f"{checkpoint}: task_spec: {err}") from None
    D, _, O = lstm_ag.check_params(params, readout=True)
    if (task.input_size, task.output_size) != (D, O):
        raise lstm_ag.CheckpointError(f"{checkpoint}: params: D={D}, O={O}, the task "
                                      f"{task.name!r} has D={task.input_size}, "
                                      f"O={task.output_size}")
    try:
        check_carry(start, task, config)
    except ValueError as err:
        raise lstm_ag.CheckpointError(f"{checkpoint}: {err} (a checkpoint of this trainer "
                                      "never has that; the file was altered)") from None
    from .report import say_if_data_changed
    say_if_data_changed(config, task_spec)
    return params, config, start, task


def run_forecast(args: argparse.Namespace, given: dict) -> int:
    """``forecast --out DIR``: the model of a series run (DIR/best.npz, else DIR/model.npz)
    forecasts ``--horizon`` values; writes DIR/forecast.csv (and DIR/forecast.png)."""
    import lstm_ag

    from .data import make_task
    from .loop import BEST_NAME, load_checkpoint
    from .report import LEVEL, forecast_rows
    from .series import forecast_levels
    if not args.out:
        raise UsageError("forecast needs --out DIR, the directory of a series run")
    unknown = sorted(set(given) - {"horizon", "threads", "task"})
    if unknown or args.resume or args.overwrite:
        extra = [_option(name) for name in unknown] + \
            [f"--{name}" for name in ("resume", "overwrite") if getattr(args, name)]
        raise UsageError(f"forecast takes --out, --horizon, --from-end or --on-test and "
                         f"--plot, not {', '.join(extra)}")
    path = os.path.join(args.out, BEST_NAME)
    if not os.path.exists(path):
        path = os.path.join(args.out, "model.npz")
    if not os.path.exists(path):
        raise UsageError(f"forecast: no model in {args.out} (neither {BEST_NAME} nor "
                         "model.npz); train one with: series --data FILE --out DIR")
    if args.plot:
        _check_plot_available()
    params, config, progress, spec = load_checkpoint(path)
    if config.bidirectional:
        raise UsageError(f"forecast: {path} holds a bidirectional model ({config.task} task), "
                         "which reads each sequence backwards too: it is not causal and "
                         "cannot forecast")
    if config.task != "series":
        raise UsageError(f"forecast: {path} is a model of the {config.task!r} task; forecast "
                         "needs a series run")
    horizon = given.get("horizon", config.horizon)
    if horizon < 1:
        raise UsageError(f"--horizon must be >= 1 for forecast, got {horizon}")
    try:
        task = make_task(**spec)
    except (TypeError, ValueError) as err:
        raise lstm_ag.CheckpointError(f"{path}: task_spec: {err}") from None
    n, n2 = len(task.values), task.bounds[1]
    origin = n2 if args.on_test else n
    values = forecast_levels(params, task, horizon, origin=origin)
    lines, interval = forecast_rows(params, task, values, origin, args.on_test)
    out = os.path.join(args.out, "forecast.csv")
    text = "\n".join(lines) + "\n"
    lstm_ag.atomic_write(out, lambda file: file.write(text), mode="w")
    where = (f"from the first test value (index {origin})" if args.on_test
             else f"after the last value (index {n - 1})")
    print(f"forecast of {horizon} values {where} of {spec['source']} with "
          f"{os.path.basename(path)} (step {progress.step}): "
          + ", ".join(f"{v:.4g}" for v in values[:10]) + (" ..." if horizon > 10 else ""))
    print(f"low, high: a {LEVEL:.0%} interval per step ahead, from the model's errors on the "
          "validation part (split conformal)")
    written, picture = [out], os.path.join(args.out, "forecast.png")
    if args.plot:
        from .plot import plot_forecast
        written.append(plot_forecast(params, task, values, origin, picture, interval=interval))
    elif os.path.exists(picture):            # an older forecast's, beside a new forecast.csv
        os.unlink(picture)
        written.append(f"(removed {picture}, an older forecast's picture)")
    print("wrote " + ", ".join(written))
    return 0


def _check_tbptt_options(args, given):
    """--tbptt K takes K >= 1 (leaving it out is whole sequences); a series trained whole has
    no window."""
    if "tbptt" not in given:
        return
    if given["tbptt"] < 1:
        raise UsageError(f"--tbptt must be >= 1, the time steps per chunk (leave it out to "
                         f"backpropagate through whole sequences), got {given['tbptt']}")
    if given.get("task") == "series" and not args.resume and "seq_len" in given:
        raise UsageError("--window (--seq-len) cuts a series into windows; with --tbptt the "
                         "series is trained whole, in --batch streams: leave it out")


def _check_plot_of(config):
    """--plot draws validation windows (a series trained whole, --tbptt, has none), with
    matplotlib, which must be installed."""
    if config.task == "series" and config.tbptt:
        raise UsageError("--plot draws validation windows, and series --tbptt has none; plot "
                         "its forecast instead: forecast --out DIR --on-test --plot")
    _check_plot_available()


def run(args: argparse.Namespace, prog: str, *, callback=None) -> int:
    """Run the command line's job for parsed ``args``. Returns the exit status."""
    from dataclasses import fields

    from .config import TrainConfig
    from .loop import BEST_NAME, fit
    from .rundir import open_run_dir
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if isinstance(given.get("diff"), tuple):          # --diff 1|M|1,M
        given["diff"], seasonal = given["diff"]
        if seasonal:
            given["seasonal_diff"] = seasonal
    if args.task == "forecast":
        return run_forecast(args, given)
    if args.from_end or args.on_test:
        raise UsageError("--from-end and --on-test are options of forecast")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the model in --out, --overwrite replaces it: "
                         "give one of them")
    _check_tbptt_options(args, given)
    out = args.out or os.path.join("runs", given.get("task", TrainConfig.task))
    if not args.resume:
        config = TrainConfig(**given)
        _check_memory(config)
        if args.plot:
            _check_plot_of(config)
    with open_run_dir(out, resume=args.resume, overwrite=args.overwrite) as run_dir, \
            contextlib.ExitStack() as limits:
        if args.resume:
            params, config, start, task = _resume(run_dir, given)
            if args.plot:
                _check_plot_of(config)
        elif config.task == "series":
            task, fitted = config.series_task(batch_given="batch" in given,
                                              window_given="seq_len" in given)
            if fitted.seq_len != config.seq_len:
                print(f"--window {fitted.seq_len}: the default {config.seq_len} is too long for "
                      f"the training part of the series", file=sys.stderr)
            if fitted.batch != config.batch:
                print(f"--batch {fitted.batch}: the default {config.batch} exceeds the "
                      f"{fitted.batch} training windows of the series", file=sys.stderr)
            config = fitted
            params, start = config.init_params(task), None
        else:
            task = config.make_task()
            params, start = config.init_params(task), None
        if config.threads:                    # evaluation and baselines too, not only fit
            from threadpoolctl import threadpool_limits
            limits.enter_context(threadpool_limits(limits=config.threads, user_api="blas"))
        if not args.resume:
            for old in (run_dir.plot, os.path.join(run_dir.path, BEST_NAME)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old)                      # the replaced run's picture and best
        _raise_if_stopped()
        with open(os.devnull, "w") if args.quiet else contextlib.nullcontext(sys.stderr) as log:
            result = fit(params, task, config, start=start, checkpoint=run_dir.checkpoint,
                         metrics=run_dir.metrics, callback=callback, log=log)
        if result.status == "interrupted":
            print(f"{result.message}; continue with: {prog} {config.task} --out {out} "
                  "--resume", file=sys.stderr)
            return EXIT_INTERRUPTED
        if result.status == "diverged":
            print(f"{prog}: error: {result.message}", file=sys.stderr)
            return EXIT_DIVERGED
        if start is not None and result.message.startswith("already"):
            print(f"{run_dir.checkpoint}: {result.message}", file=sys.stderr)
        print(_summary(task, result))
        written = [run_dir.checkpoint, run_dir.metrics]
        if os.path.exists(os.path.join(run_dir.path, BEST_NAME)):
            written.insert(1, os.path.join(run_dir.path, BEST_NAME))
        if task.name == "series":
            from .report import series_report
            print(series_report(result, task, run_dir.metrics,
                                None if args.quiet else sys.stderr))
        if args.plot:
            from .plot import plot_run
            written.append(plot_run(result.params, task, result.history, run_dir.plot))
    print("wrote " + ", ".join(written))
    return 0


#: The :class:`_CtrlC` of the command line running in this process, if any.
_ACTIVE: list = []


def _raise_if_stopped():
    """Raise KeyboardInterrupt if a signal already came. Called after the heavy imports: the
    KeyboardInterrupt its handler raised may have been swallowed by a library's start-up code
    (measured: 2 of 80 SIGINTs sent during start-up, inside autograd's import, were lost
    and the run went on to exit 0)."""
    if _ACTIVE and _ACTIVE[-1].count:
        raise KeyboardInterrupt


class _CtrlC:
    """SIGINT or SIGTERM while the command line runs: the first raises KeyboardInterrupt (the
    run stops, saving its checkpoint); later ones are ignored, the program being on its way
    out (:func:`train.fit` also defers them until a checkpoint being written is complete).
    ``signum`` is the first one's; one ``held`` at start-up (before this was installed,
    :mod:`train.__main__`) is raised on entry. Installed only in the main thread; the previous
    handlers are restored on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, held=()):
        self.held = held                  # read once installed: none slips in between

    def __enter__(self):
        self.count, self.previous, self.signum = 0, {}, None
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self.handle)
        _ACTIVE.append(self)
        return self

    def raise_held(self):
        if self.held:
            signum = self.held[0]
            del self.held[:]
            self.handle(signum, None)

    #: Seconds after which a signal that came inside the import machinery is sent again.
    RETRY = 0.05

    def handle(self, signum, frame):
        if self.count == 0 and frame is not None \
                and frame.f_code.co_filename.startswith("<frozen importlib"):
            # Raised in there, KeyboardInterrupt can land in a weakref callback of the module
            # locks, which Python prints as "Exception ignored ... Traceback" and swallows:
            # send the signal again in a moment, out of the import machinery.
            timer = threading.Timer(self.RETRY, os.kill, (os.getpid(), signum))
            timer.daemon = True
            timer.start()
            return
        self.count += 1
        if self.count == 1:
            self.signum = signum
            raise KeyboardInterrupt

    def interrupted(self):
        """Stopped outside the training loop: one line, exit 130 (143 for SIGTERM)."""
        self.count += 1                   # from now on signals are ignored: we are leaving
        print(f"{_prog()}: interrupted; any checkpoint on disk is the last complete one",
              file=sys.stderr)
        return self.status(EXIT_INTERRUPTED)

    def status(self, code):
        """The exit status: 143 for a run interrupted by SIGTERM, else ``code``."""
        if code == EXIT_INTERRUPTED and self.signum == signal.SIGTERM:
            return EXIT_TERMINATED
        return code

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        if self.signum is not None and _ACTIVE and _ACTIVE[-1].signum is None:
            _ACTIVE[-1].signum = self.signum     # a run inside a sweep (--jobs 1): its signal
        for signum, previous in self.previous.items():
            if previous is not None:
                signal.signal(signum, previous)


def _report(prog, message, status, usage=None):
    """Print the error in one line (a value's repr may span lines: joined, and shortened when
    long) after the usage if given; return ``status``."""
    if usage is not None:
        usage.print_usage(sys.stderr)
    message = " ".join(message.split())
    if len(message) > 500:
        message = f"{message[:380]} ... {message[-100:]}"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def _main(argv, callback):
    """Parse and run; every expected failure becomes one line and an exit status."""
    import lstm_ag

    from .config import ConfigError
    from .rundir import RunError, unwritable
    from .series import SeriesError
    _raise_if_stopped()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        return run(args, prog, callback=callback)
    except (UsageError, ConfigError) as err:
        message = (f"{_option(err.name)} {err.problem}" if isinstance(err, ConfigError)
                   else str(err))
        return _report(prog, message, EXIT_USAGE, usage=parser)
    except RunError as err:
        return _report(prog, str(err), err.exit_status)
    except SeriesError as err:
        return _report(prog, f"--data {err}", EXIT_USAGE)
    except (lstm_ag.CheckpointError, FileNotFoundError) as err:
        return _report(prog, str(err), EXIT_USAGE)
    except MemoryError:
        return _report(prog, "out of memory: the run's sizes (--hidden, --train-size, "
                             "--seq-len, --batch) need more than this machine has; choose "
                             "smaller ones", EXIT_USAGE)
    except OSError as err:                              # writing the run's files
        where = err.filename or args.out or "the run directory"
        return _report(prog, str(unwritable(where, err)), EXIT_UNWRITABLE)


def main(argv: list[str] | None = None, *, callback=None, command=None, held=()) -> int:
    """The trainer's command line (``lstm-ag-train`` and ``python -m train`` call it through
    :mod:`train.__main__`).

    - argv: the arguments (default ``sys.argv[1:]``); callback: passed to :func:`train.fit`
      (``callback(step, params, info)`` after every step; tests raise KeyboardInterrupt there).
    - command: ``command(argv, callback) -> status`` to run instead of the trainer, under the
      same Ctrl-C handling (the ``sweep`` subcommand).
    - held: signals that came during start-up, before this ran (:mod:`train.__main__` holds
      them): the first stops the program at once, as it would have.
    Returns the exit status (0, 1, 2, 3, 130 or 143; see the module docstring).
    """
    with _CtrlC(held) as ctrl_c:
        try:
            ctrl_c.raise_held()
            return ctrl_c.status((command or _main)(argv, callback))
        except KeyboardInterrupt:         # outside the training loop: start-up, plot, ...
            return ctrl_c.interrupted()
        except Exception:
            if ctrl_c.signum is None:
                raise
            # The signal's KeyboardInterrupt inside an import that turned it into another
            # error (numpy's __init__ reraises anything as ImportError): still a stop.
            return ctrl_c.interrupted()
