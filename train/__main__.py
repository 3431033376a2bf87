"""``lstm-ag-train`` and ``python -m train``: the trainer's command line (:mod:`train.cli`),
or, with ``sweep`` first, many runs of it (:mod:`train.sweep`, which calls :mod:`train.cli`
for each run).

Standard library only at the top, as :mod:`train.cli`: Ctrl-C is handled from the first line
of :func:`main` on (a test checks that importing this loads no numpy).
"""
import sys

from .cli import _prog, build_parser
from .cli import main as _command_line

__all__ = ["main", "build_parser"]


def _sweep(argv, callback):
    from .sweep import main as sweep_main
    return sweep_main(argv, _prog())


def main(argv: list[str] | None = None, *, callback=None) -> int:
    """Entry point of ``lstm-ag-train`` and ``python -m train``.

    - argv: the arguments (default ``sys.argv[1:]``); callback: passed to :func:`train.fit`.
    Returns the exit status (0, 1, 2, 3 or 130; see :mod:`train.cli`).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sweep"]:                     # many runs: train/sweep.py
        return _command_line(argv[1:], command=_sweep)
    return _command_line(argv, callback=callback)


if __name__ == "__main__":
    sys.exit(main())
