"""The command line: ``lstm-ag-train [sine|counting|adding] [options]``.

``python -m train`` runs the same from the repository's root (anywhere else a ``train.py`` or
``train/`` in the working directory would be run instead; the console script is immune).
The options, their defaults and ``--help`` come from :class:`train.config.TrainConfig`.

Writes ``DIR/model.npz`` (a checkpoint: parameters, config, step, momentum buffers) and
``DIR/metrics.json`` (task, step, train_loss, val_mse, baseline_mse, seconds, history), DIR being
``--out`` (default ``runs/TASK``). Progress lines go to stderr, the final summary to stdout.

Exit status: 0 done; 1 the loss became non-finite (the last good checkpoint is kept);
2 bad arguments or checkpoint; 130 interrupted by Ctrl-C (a checkpoint was saved).
"""
import argparse
import contextlib
import os
import sys
import textwrap
from dataclasses import fields

import lstm_ag

from .config import FIXED_ON_RESUME, PER_TASK, SETTING_TYPES, ConfigError, TrainConfig
from .data import TASKS, make_task
from .loop import fit, load_checkpoint

__all__ = ["main", "build_parser"]

EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
PLOT_HINT = ("--plot needs matplotlib, which is not installed; install it with "
             "pip install 'lstm-ag[plot]' (or pip install matplotlib)")


class UsageError(Exception):
    """A problem with the arguments, reported as one line with exit status 2."""


def _prog():
    """How the user runs the trainer: the console script, or ``python -m train``."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return name if name == "lstm-ag-train" else "python -m train"


def _option(name):
    """The command-line spelling of a TrainConfig setting: seq_len -> --seq-len."""
    return name if name == "task" else "--" + name.replace("_", "-")


def _defaults_table():
    """One line per task: the per-task defaults, read from TrainConfig."""
    configs = [TrainConfig(task=task) for task in TASKS]
    return "\n".join(f"  {config.task:9s}" + "  ".join(
        f"{_option(name)[2:]} {getattr(config, name)}" for name in PER_TASK)
        for config in configs)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. Every field of TrainConfig is an option (the task a positional);
    a setting not given is absent from the parsed namespace (the task: None), so that
    TrainConfig's default applies, or on --resume the checkpoint's value."""
    parser = argparse.ArgumentParser(
        prog=prog or _prog(), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the lstm_ag LSTM on a toy next-value task and compare it with a "
                    "naive baseline.",
        epilog="Defaults per task (an option given on the command line wins):\n"
               + _defaults_table() + "\n\nWrites DIR/model.npz and DIR/metrics.json "
               "(DIR: --out, default runs/TASK).\n" + textwrap.fill(
                   "--resume continues DIR/model.npz to --steps in total, exactly as an "
                   "uninterrupted run, with the checkpoint's settings; these may not change: "
                   + ", ".join(_option(name) for name in FIXED_ON_RESUME) + ".", 79)
               + "\nExit status: 0 done, 1 non-finite loss, 2 usage error, 130 interrupted "
               "(Ctrl-C saves a checkpoint).")
    for f in fields(TrainConfig):
        meta = f.metadata
        default = "per task, below" if f.name in PER_TASK else f.default
        text = f"{meta['doc']} (default: {default})"
        if f.name == "task":
            parser.add_argument("task", nargs="?", choices=meta["choices"], help=text)
        else:
            parser.add_argument(_option(f.name), type=SETTING_TYPES[f.name],
                                choices=meta["choices"], metavar=meta["metavar"],
                                default=argparse.SUPPRESS, help=text)
    parser.add_argument("--out", metavar="DIR", help="output directory (default: runs/TASK)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from DIR/model.npz up to --steps in total")
    parser.add_argument("--plot", action="store_true",
                        help="write DIR/plot.png (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def _check_plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(PLOT_HINT) from None


def _summary(task, result):
    last, config = result.last, result.config
    lines = [f"{task.name}: {result.step} steps in {result.progress.seconds:.2f} s, "
             f"method {config.method}, optimizer {config.optimizer}"]
    if last is not None:
        ratio = last["baseline_mse"] / last["val_mse"] if last["val_mse"] > 0 else float("inf")
        verdict = (f"{ratio:.1f}x lower" if ratio >= 1 else
                   f"{1 / ratio:.1f}x higher: worse than the baseline so far")
        lines.append(f"validation MSE {last['val_mse']:.3e} vs baseline ({task.baseline}) "
                     f"{last['baseline_mse']:.3e}: {verdict}")
    return "\n".join(lines)


def run(args: argparse.Namespace, prog: str, *, callback=None) -> int:
    """Run the command line's job for parsed ``args``. Returns the exit status."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if args.plot:
        _check_plot_available()
    out = args.out or os.path.join("runs", given.get("task", TrainConfig.task))
    checkpoint, metrics = os.path.join(out, "model.npz"), os.path.join(out, "metrics.json")
    if args.resume:
        if not os.path.exists(checkpoint):
            raise UsageError(f"--resume: no checkpoint at {checkpoint} (run without --resume "
                             "first, or give the run's --out)")
        params, saved, start, task_spec = load_checkpoint(checkpoint)
        try:
            config = saved.resumed(**given)
        except ConfigError as err:
            if err.name not in FIXED_ON_RESUME:
                raise                                    # a bad value of steps, method, ...
            raise UsageError(f"{_option(err.name)} {err.problem} in {checkpoint}; leave it "
                             "out to resume, or start a new run (another --out, or no "
                             "--resume)") from None
        task = make_task(**task_spec)
    else:
        config = TrainConfig(**given)
        task = config.make_task()
        params, start = config.init_params(task), None
    os.makedirs(out, exist_ok=True)
    with open(os.devnull, "w") if args.quiet else contextlib.nullcontext(sys.stderr) as log:
        result = fit(params, task, config, start=start, checkpoint=checkpoint, metrics=metrics,
                     callback=callback, log=log)
    if result.status == "interrupted":
        print(f"{result.message}; continue with: {prog} {config.task} --out {out} --resume "
              f"--steps {config.steps}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.status == "diverged":
        print(f"error: {result.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if start is not None and result.message.startswith("already"):
        print(f"{checkpoint}: {result.message}", file=sys.stderr)
    print(_summary(task, result))
    written = [checkpoint, metrics]
    if args.plot:
        from .plot import plot_run
        written.append(plot_run(result.params, task, result.history, os.path.join(out, "plot.png")))
    print("wrote " + ", ".join(written))
    return 0


def main(argv: list[str] | None = None, *, callback=None) -> int:
    """Entry point of ``lstm-ag-train`` and ``python -m train``.

    - argv: the arguments (default ``sys.argv[1:]``); callback: passed to :func:`train.fit`
      (``callback(step, params, info)`` after every step; tests raise KeyboardInterrupt there).
    Returns the exit status (0, 1, 2 or 130; see the module docstring).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, parser.prog, callback=callback)
    except (UsageError, ConfigError) as err:
        message = (f"{_option(err.name)} {err.problem}" if isinstance(err, ConfigError)
                   else str(err))
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (lstm_ag.CheckpointError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:             # outside the training loop (setup, plot, a save)
        print("interrupted; any checkpoint on disk is the last complete one", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
