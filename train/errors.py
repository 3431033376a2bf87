"""How the trainer's command line fails: its exit statuses, the errors that carry one, and the
one line that reports each. Every module of ``train/`` takes its status from here.

Exit status: 0 done; 1 the loss became non-finite (the last good checkpoint is kept); 2 bad
arguments or checkpoint, a run directory holding a model or in use, sizes too large for the
memory; 3 the run's files cannot be written; 130 interrupted by Ctrl-C, 143 by SIGTERM.

Standard library only: :mod:`train.cli` imports this before its Ctrl-C handler is installed.
"""
import errno
import os
import sys

__all__ = ["EXIT_DIVERGED", "EXIT_USAGE", "EXIT_UNWRITABLE", "EXIT_INTERRUPTED",
           "EXIT_TERMINATED", "UsageError", "RunError", "unwritable", "report", "prog",
           "check_plot_available", "PLOT_HINT"]

EXIT_DIVERGED, EXIT_USAGE, EXIT_UNWRITABLE, EXIT_INTERRUPTED = 1, 2, 3, 130
#: The exit status after a SIGTERM (128 + 15, as a shell reports a process it ended).
EXIT_TERMINATED = 143
PLOT_HINT = ("--plot needs matplotlib, which is not installed; install it with "
             "pip install 'lstm-ag[plot]' (or pip install matplotlib)")


class UsageError(Exception):
    """A problem with the arguments, reported as one line with exit status 2."""


class RunError(Exception):
    """The run cannot go ahead: ``str(err)`` is one line; ``exit_status`` 2 or 3."""

    def __init__(self, message: str, exit_status: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_status = exit_status


def unwritable(path, err: OSError) -> RunError:
    """The exit-3 error for ``err`` raised while writing ``path``."""
    reason = err.strerror or str(err)
    if err.errno == errno.EEXIST or err.errno == errno.ENOTDIR:
        reason = "a file is in the way (a run directory must be a directory)"
    return RunError(f"cannot write the run's files in {os.fspath(path)}: {reason}",
                    EXIT_UNWRITABLE)


def prog() -> str:
    """How the user runs the trainer: the console script, or ``python -m train`` (from the
    repository's root; ``python -m lstm_ag_train`` where it is installed)."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    return name if name == "lstm-ag-train" else f"python -m {__package__}"


def report(prog: str, message: str, status: int, usage=None) -> int:
    """Print the error in one line (a value's repr may span lines: joined, and shortened when
    long) after the usage of the parser ``usage`` if given; return ``status``."""
    if usage is not None:
        usage.print_usage(sys.stderr)
    message = " ".join(message.split())
    if len(message) > 500:
        message = f"{message[:380]} ... {message[-100:]}"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def check_plot_available() -> None:
    """Raise :class:`UsageError` (with the hint to install it) unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(PLOT_HINT) from None
