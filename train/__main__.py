"""``lstm-ag-train`` and ``python -m train``: the trainer's command line (:mod:`train.cli`),
or, with ``sweep`` first, many runs of it (:mod:`train.sweep`, which calls :mod:`train.cli`
for each run).

Standard library only at the top, as :mod:`train.cli`: Ctrl-C is handled from the first line
of :func:`main` on (a test checks that importing this loads no numpy).
"""
import os
import sys

#: True when this module runs as the program (``python -m train`` or the console script).
_AS_PROGRAM = __name__ == "__main__" or os.path.basename(sys.argv[0]).startswith("lstm-ag-train")

from .signals import hold_start_up  # noqa: E402  (standard library only: a few microseconds)

#: Signals (SIGINT, SIGTERM) that came during start-up, before :func:`main` took over: held
#: from this module's first lines on when it runs as the program, so that a Ctrl-C or a
#: ``kill`` in the first instants ends it with its exit status and one line, never a
#: traceback (an interrupted import) or a bare -2.
_held: list = hold_start_up() if _AS_PROGRAM else []

from .cli import build_parser  # noqa: E402  (after the handlers: imports take time)
from .cli import main as _command_line  # noqa: E402
from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED  # noqa: E402
from .errors import prog as _prog  # noqa: E402

__all__ = ["main", "build_parser"]


def _sweep(argv, callback):
    from .sweep import main as sweep_main
    return sweep_main(argv, _prog())


def main(argv: list[str] | None = None, *, callback=None) -> int:
    """Entry point of ``lstm-ag-train`` and ``python -m train``.

    - argv: the arguments (default ``sys.argv[1:]``); callback: passed to :func:`train.fit`.
    Returns the exit status (0, 1, 2, 3, 130 or 143; see :mod:`train.cli`).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sweep"]:                     # many runs: train/sweep.py
        status = _command_line(argv[1:], command=_sweep, held=_held)
    else:
        status = _command_line(argv, callback=callback, held=_held)
    if _AS_PROGRAM and (status in (EXIT_INTERRUPTED, EXIT_TERMINATED) or argv[:1] != ["sweep"]):
        # A KeyboardInterrupt raised inside an import that C code ran (numpy's, say) leaves
        # CPython's "unhandled KeyboardInterrupt" flag set even though it was handled, and
        # the interpreter would then end itself with SIGINT (-2) after our status and line;
        # and a SIGTERM during the interpreter's finalization, once it has restored the
        # default handlers, would end a finished run with -15. The run's files are closed
        # and its lines printed: leave with the status, without finalization (a sweep that
        # finished does finalize: joblib shuts its pool down at exit).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
