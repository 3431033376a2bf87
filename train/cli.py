"""The command line: ``lstm-ag-train [sine|counting|adding] [options]``,
``lstm-ag-train series --data FILE [options]`` (your own series: :mod:`train.series`) and
``lstm-ag-train forecast --out DIR [--horizon K] [--from-end | --on-test] [--plot]``.

``python -m train`` runs the same from the repository's root (anywhere else a ``train.py`` or
``train/`` in the working directory would be run instead; the console script is immune).
The options, their defaults and ``--help`` come from :class:`train.config.TrainConfig`
(:mod:`train.options`); this module only parses and dispatches: a training run or a forecast
to :mod:`train.commands`, under the signal handling of :mod:`train.signals`, every expected
failure reported in one line with its status (:mod:`train.errors`).

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
import sys

from .errors import EXIT_UNWRITABLE, EXIT_USAGE, UsageError, report
from .options import _option, build_parser
from .signals import CtrlC, raise_if_stopped

__all__ = ["main", "build_parser"]


def _main(argv, callback):
    """Parse and run; every expected failure becomes one line and an exit status."""
    import lstm_ag

    from .commands import run
    from .config import ConfigError
    from .rundir import RunError, unwritable
    from .series import SeriesError
    raise_if_stopped()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        return run(args, prog, callback=callback)
    except (UsageError, ConfigError) as err:
        message = (f"{_option(err.name)} {err.problem}" if isinstance(err, ConfigError)
                   else str(err))
        return report(prog, message, EXIT_USAGE, usage=parser)
    except RunError as err:
        return report(prog, str(err), err.exit_status)
    except SeriesError as err:
        return report(prog, f"--data {err}", EXIT_USAGE)
    except (lstm_ag.CheckpointError, FileNotFoundError) as err:
        return report(prog, str(err), EXIT_USAGE)
    except MemoryError:
        return report(prog, "out of memory: the run's sizes (--hidden, --train-size, "
                            "--seq-len, --batch) need more than this machine has; choose "
                            "smaller ones", EXIT_USAGE)
    except OSError as err:                              # writing the run's files
        where = err.filename or args.out or "the run directory"
        return report(prog, str(unwritable(where, err)), EXIT_UNWRITABLE)


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
    with CtrlC(held) as ctrl_c:
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
