"""The jobs the command line (:mod:`train.cli`) dispatches to: :func:`run`, a training run
(new, or resumed from its directory's checkpoint), and :func:`run_forecast`, the forecast of
a series run. Each returns the exit status (:mod:`train.errors`); a user's mistake raises an
error the command line reports in one line."""
import argparse
import contextlib
import inspect
import os
import sys
from dataclasses import fields

import lstm_ag

from .bookkeeping import BEST_NAME
from .checkpoint import load_checkpoint, task_of
from .config import FIXED_ON_RESUME, ConfigError, TrainConfig
from .data import TASKS, make_task
from .errors import EXIT_DIVERGED, EXIT_INTERRUPTED, UsageError, check_plot_available
from .loop import fit
from .options import _option
from .rundir import WEIGHT_COPIES, RunError, available_memory, check_memory, open_run_dir
from .signals import raise_if_stopped

__all__ = ["run", "run_forecast", "check_run_memory"]


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



def _resume(run_dir, given):
    """The checkpoint of ``run_dir``: ``(params, config, start, task)``, validated."""
    checkpoint = run_dir.checkpoint
    try:
        saved = load_checkpoint(checkpoint)
    except OSError as err:
        raise UsageError(f"--resume: cannot read {checkpoint}: {err.strerror or err}") from None
    try:
        config = saved.config.resumed(**given)
    except ConfigError as err:
        if err.name not in FIXED_ON_RESUME:
            raise                                        # a bad value of steps, method, ...
        raise UsageError(f"{_option(err.name)} {err.problem} in {checkpoint}; leave it "
                         "out to resume, or start a new run (another --out, or no "
                         "--resume)") from None
    n_val = saved.task_spec.get("n_val")
    check_run_memory(config, n_val if isinstance(n_val, int) else None)
    task = task_of(checkpoint, saved, config)
    from .report import say_if_data_changed
    say_if_data_changed(config, saved.task_spec)
    return saved.params, config, saved.progress, task


def run_forecast(args: argparse.Namespace, given: dict) -> int:
    """``forecast --out DIR``: the model of a series run (DIR/best.npz, else DIR/model.npz)
    forecasts ``--horizon`` values; writes DIR/forecast.csv (and DIR/forecast.png)."""
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
        check_plot_available()
    saved = load_checkpoint(path)
    params, config, progress, spec = saved
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
    task = task_of(path, saved)
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
    check_plot_available()




def run(args: argparse.Namespace, prog: str, *, callback=None) -> int:
    """Run the command line's job for parsed ``args``. Returns the exit status."""
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
        check_run_memory(config)
        if args.plot:
            _check_plot_of(config)
    with open_run_dir(out, resume=args.resume, overwrite=args.overwrite) as run_dir, \
            contextlib.ExitStack() as limits:
        if args.resume:
            params, config, start, task = _resume(run_dir, given)
            if args.plot:
                _check_plot_of(config)
        else:
            params, config, task = _new_run(config, given, run_dir)
            start = None
        if config.threads:                    # evaluation and baselines too, not only fit
            from threadpoolctl import threadpool_limits
            limits.enter_context(threadpool_limits(limits=config.threads, user_api="blas"))
        raise_if_stopped()
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
        written = _report_run(args, task, result, run_dir)
    print("wrote " + ", ".join(written))
    return 0


def _new_run(config, given, run_dir):
    """``(params, config, task)`` of a new run (a series' config fitted to its data, with a
    line for each default changed), the replaced run's picture and best removed."""
    if config.task == "series":
        task, fitted = config.series_task(batch_given="batch" in given,
                                          window_given="seq_len" in given)
        if fitted.seq_len != config.seq_len:
            print(f"--window {fitted.seq_len}: the default {config.seq_len} is too long for "
                  f"the training part of the series", file=sys.stderr)
        if fitted.batch != config.batch:
            print(f"--batch {fitted.batch}: the default {config.batch} exceeds the "
                  f"{fitted.batch} training windows of the series", file=sys.stderr)
        config = fitted
    else:
        task = config.make_task()
    params = config.init_params(task)
    for old in (run_dir.plot, os.path.join(run_dir.path, BEST_NAME)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)                      # the replaced run's picture and best
    return params, config, task


def _report_run(args, task, result, run_dir):
    """Print the summary of a finished run (and a series' report), draw its plot if asked;
    returns the files written."""
    print(_summary(task, result))
    written = [run_dir.checkpoint, run_dir.metrics]
    if os.path.exists(os.path.join(run_dir.path, BEST_NAME)):
        written.insert(1, os.path.join(run_dir.path, BEST_NAME))
    if task.name == "series":
        from .report import series_report
        print(series_report(result, task, run_dir.metrics, None if args.quiet else sys.stderr))
    if args.plot:
        from .plot import plot_run
        written.append(plot_run(result.params, task, result.history, run_dir.plot))
    return written


def check_run_memory(config, n_val: int | None = None) -> None:
    """Refuse sizes of ``config`` that need more memory than is available, before the task is
    generated (:func:`check_memory`) or any weight drawn.

    - n_val: the task's validation sequences (default: its generator's default).
    Only the toy tasks' arrays are estimated (their D and O come from a tiny instance).
    """
    if config.task not in TASKS:
        _check_weights_memory(config, 1, 1)
        return
    tiny = make_task(config.task, 8, n_train=1, n_val=1)
    if n_val is None:
        n_val = inspect.signature(TASKS[config.task]).parameters["n_val"].default
    check_memory(config, tiny.input_size, tiny.output_size, n_val)
    _check_weights_memory(config, tiny.input_size, tiny.output_size)


def _check_weights_memory(config, D, O):
    """Refuse ``--layers`` whose weights alone (with the optimizer's copies) exceed the memory
    available, before any is drawn."""
    H, dirs, layers = config.hidden, config.directions, config.layers
    count = dirs * (D + H + 1) * 4 * H + (layers - 1) * dirs * (dirs * H + H + 1) * 4 * H \
        + (dirs * H + 1) * O                             # Python ints: no overflow
    nbytes, available = count * WEIGHT_COPIES * 8, available_memory()
    if available is not None and nbytes > available:
        raise RunError(f"--layers {layers} with --hidden {H}: the weights and the optimizer's "
                       f"copies would need about {nbytes / 2**30:.3g} GiB of memory, more than "
                       f"the {available / 2**30:.3g} GiB available; choose smaller sizes")
