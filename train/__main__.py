"""The command line: ``python -m train [sine|counting|adding] [options]`` (or ``lstm-ag-train``).

Writes ``DIR/model.npz`` (a checkpoint: parameters, config, step, momentum buffers) and
``DIR/metrics.json`` (task, step, train_loss, val_mse, baseline_mse, seconds, history), DIR being
``--out`` (default ``runs/TASK``). Progress lines go to stderr, the final summary to stdout.

Exit status: 0 done; 1 the loss became non-finite (the last good checkpoint is kept);
2 bad arguments or checkpoint; 130 interrupted by Ctrl-C (a checkpoint was saved).
"""
import argparse
import inspect
import os
import sys

import lstm_ag

from .data import DEFAULTS, TASKS, make_task
from .loop import OPTIMIZERS, fit, load_checkpoint

__all__ = ["main", "build_parser"]

PROG = "python -m train"
#: Settings that must match the checkpoint's on --resume (others may change).
FIXED_ON_RESUME = ("hidden", "batch", "seq_len", "lr", "momentum", "clip", "lr_decay", "seed",
                   "optimizer")
EXIT_DIVERGED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
PLOT_HINT = ("--plot needs matplotlib, which is not installed; install it with "
             "pip install 'lstm-ag[plot]' (or pip install matplotlib)")


class UsageError(Exception):
    """A problem with the arguments, reported as one line with exit status 2."""


def _number(kind, minimum, what):
    """An argparse ``type`` parsing ``kind`` (int or float) that is at least ``minimum``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value >= minimum:                  # (also refuses a float NaN)
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    return parse


_positive_int = _number(int, 1, "a positive integer")
_nonneg_int = _number(int, 0, "an integer >= 0")
_nonneg_float = _number(float, 0, "a number >= 0")


def _train_sizes():
    sizes = {name: inspect.signature(make).parameters["n_train"].default
             for name, make in TASKS.items()}
    return ", ".join(f"{name} {size}" for name, size in sizes.items())


def _defaults_table():
    keys = ("steps", "hidden", "batch", "seq_len", "lr")
    return "\n".join(f"  {task:9s}" + "  ".join(f"{k.replace('_', '-')} {DEFAULTS[task][k]}"
                                                 for k in keys) for task in TASKS)


def build_parser():
    """The argument parser of the command line (options default to None: task defaults)."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the lstm_ag LSTM by SGD on a toy next-value task and compare it "
                    "with a naive baseline.",
        epilog="Defaults per task (an option given on the command line wins):\n"
               + _defaults_table() + "\n\nWrites DIR/model.npz and DIR/metrics.json "
               "(DIR: --out, default runs/TASK).\n--resume continues DIR/model.npz to --steps "
               "in total, exactly as an uninterrupted run.\nExit status: 0 done, 1 non-finite "
               "loss, 2 usage error, 130 interrupted (Ctrl-C saves a checkpoint).")
    parser.add_argument("task", nargs="?", default="sine", choices=list(TASKS),
                        help="the task (default: sine)")
    parser.add_argument("--steps", type=_positive_int, metavar="N",
                        help="total training steps (with --resume: the total to reach)")
    parser.add_argument("--hidden", type=_positive_int, metavar="H", help="hidden units")
    parser.add_argument("--batch", type=_positive_int, metavar="B",
                        help="sequences per minibatch")
    parser.add_argument("--seq-len", type=_positive_int, metavar="T",
                        help="sequence length (steps per sequence)")
    parser.add_argument("--train-size", type=_positive_int, metavar="N",
                        help=f"sequences in the training set ({_train_sizes()}); with "
                             "--optimizer lbfgs every step uses all of them")
    parser.add_argument("--lr", type=_nonneg_float, metavar="LR", help="learning rate")
    parser.add_argument("--lr-decay", type=_nonneg_float, metavar="D",
                        help="learning-rate decay: lr / (1 + D * step) (default 0: constant)")
    parser.add_argument("--momentum", type=_nonneg_float, metavar="M",
                        help="momentum in [0, 1) (default 0.9)")
    parser.add_argument("--clip", type=_nonneg_float, metavar="C",
                        help="clip the global gradient norm to C (default 1.0; 0: off)")
    parser.add_argument("--method", choices=list(lstm_ag.METHODS), default=None,
                        help="gradient method (default: fast)")
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None,
                        help="sgd (default) or lbfgs: full-batch scipy L-BFGS-B over the "
                             "whole training set, --steps iterations")
    parser.add_argument("--seed", type=_nonneg_int, metavar="S",
                        help="seed of the data, the initial weights and the minibatches "
                             "(default 0)")
    parser.add_argument("--eval-every", type=_positive_int, metavar="N",
                        help="steps between evaluations, progress lines and checkpoints")
    parser.add_argument("--out", metavar="DIR", help="output directory (default runs/TASK)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from DIR/model.npz up to --steps in total")
    parser.add_argument("--plot", action="store_true",
                        help="write DIR/plot.png (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def _settings(args):
    """Task defaults, overridden by the options given. Returns a dict."""
    settings = dict(DEFAULTS[args.task], lr_decay=0.0, method="fast", optimizer="sgd", seed=0)
    for key in (*settings, "eval_every"):
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    if not 0 <= settings["momentum"] < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {settings['momentum']}")
    if not settings["lr"] > 0:
        raise UsageError(f"--lr must be > 0, got {settings['lr']}")
    if settings["seq_len"] < 2:
        raise UsageError(f"--seq-len must be at least 2, got {settings['seq_len']}")
    return settings


def _resume_settings(args, settings, config, path):
    """Settings for a resumed run: the checkpoint's, checked against the options given."""
    if config.get("task") != args.task:
        raise UsageError(f"{path} is a {config.get('task')!r} run, not {args.task!r}; "
                         f"run: {PROG} {config.get('task')} --resume ...")
    flags = {"seq_len": "--seq-len", "lr_decay": "--lr-decay"}
    for key in FIXED_ON_RESUME:
        given = getattr(args, key, None)
        if given is not None and key in config and given != config[key]:
            flag = flags.get(key, f"--{key}")
            raise UsageError(f"{flag} {given} differs from the checkpoint's {key}={config[key]} "
                             f"in {path}; leave it out to resume, or start a new run "
                             f"(another --out, or no --resume)")
    merged = dict(settings)
    merged.update({k: config[k] for k in FIXED_ON_RESUME if k in config})
    if args.method is None and "method" in config:
        merged["method"] = config["method"]
    return merged


def _check_plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(PLOT_HINT) from None


def _summary(task, result, settings):
    last = result.last
    lines = [f"{task.name}: {result.step} steps in {result.progress.seconds:.2f} s, "
             f"method {settings['method']}, optimizer {settings['optimizer']}"]
    if last is not None:
        ratio = last["baseline_mse"] / last["val_mse"] if last["val_mse"] > 0 else float("inf")
        verdict = (f"{ratio:.1f}x lower" if ratio >= 1 else
                   f"{1 / ratio:.1f}x higher: worse than the baseline so far")
        lines.append(f"validation MSE {last['val_mse']:.3e} vs baseline ({task.baseline}) "
                     f"{last['baseline_mse']:.3e}: {verdict}")
    return "\n".join(lines)


def run(args, *, callback=None):
    """Run the command line's job for parsed ``args``. Returns the exit status."""
    settings = _settings(args)
    if args.plot:
        _check_plot_available()
    out = args.out if args.out is not None else os.path.join("runs", args.task)
    checkpoint = os.path.join(out, "model.npz")
    metrics = os.path.join(out, "metrics.json")
    start = None
    if args.resume:
        if not os.path.exists(checkpoint):
            raise UsageError(f"--resume: no checkpoint at {checkpoint} (run without --resume "
                             "first, or give the run's --out)")
        params, config, start = load_checkpoint(checkpoint)
        settings = _resume_settings(args, settings, config, checkpoint)
        spec = dict(config.get("task_spec") or {})
        for key in ("name", "seq_len", "seed"):
            spec.pop(key, None)
        if args.train_size is not None and args.train_size != spec.get("n_train"):
            raise UsageError(f"--train-size {args.train_size} differs from the checkpoint's "
                             f"n_train={spec.get('n_train')} in {checkpoint}")
        task = make_task(args.task, settings["seq_len"], seed=settings["seed"], **spec)
    else:
        sizes = {} if args.train_size is None else {"n_train": args.train_size}
        task = make_task(args.task, settings["seq_len"], seed=settings["seed"], **sizes)
        params = lstm_ag.init_params(task.input_size, settings["hidden"], task.output_size,
                                     seed=settings["seed"])
    if settings["optimizer"] == "sgd" and settings["batch"] > task.train_x.shape[1]:
        raise UsageError(f"--batch {settings['batch']} exceeds the training set "
                         f"({task.train_x.shape[1]} sequences)")
    os.makedirs(out, exist_ok=True)
    log = open(os.devnull, "w") if args.quiet else sys.stderr
    try:
        result = fit(params, task, steps=settings["steps"], batch=settings["batch"],
                     lr=settings["lr"], momentum=settings["momentum"],
                     clip=settings["clip"], lr_decay=settings["lr_decay"],
                     method=settings["method"], seed=settings["seed"],
                     eval_every=settings["eval_every"], optimizer=settings["optimizer"],
                     start=start, checkpoint=checkpoint, metrics=metrics, callback=callback,
                     log=log)
    finally:
        if args.quiet:
            log.close()
    if result.status == "interrupted":
        print(f"{result.message}; continue with: {PROG} {args.task} --out {out} --resume "
              f"--steps {settings['steps']}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.status == "diverged":
        print(f"error: {result.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if start is not None and result.message.startswith("already"):
        print(f"{checkpoint}: {result.message}", file=sys.stderr)
    print(_summary(task, result, settings))
    written = [checkpoint, metrics]
    if args.plot:
        from .plot import plot_run
        written.append(plot_run(result.params, task, result.history, os.path.join(out, "plot.png")))
    print("wrote " + ", ".join(written))
    return 0


def main(argv=None, *, callback=None):
    """Entry point of ``python -m train`` and ``lstm-ag-train``.

    - argv: the arguments (default ``sys.argv[1:]``); callback: passed to :func:`train.fit`
      (``callback(step, params, info)`` after every step; tests raise KeyboardInterrupt there).
    Returns the exit status (0, 1, 2 or 130; see the module docstring).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, callback=callback)
    except UsageError as err:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (lstm_ag.CheckpointError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except NotImplementedError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:             # outside the training loop (setup, plot, a save)
        print("interrupted; any checkpoint on disk is the last complete one", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
