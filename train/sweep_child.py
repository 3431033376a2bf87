"""``python -m train.sweep_child PARENT ARGV``: one run of a sweep on a Dask worker, in a
process of its own (:func:`train.sweep_worker.run_one` starts it there), so that the run's
working directory, streams and signal handlers are this process's and not the worker's.

- PARENT: the worker's pid; when the worker is gone (closed, killed), this process is sent
  SIGTERM, which the trainer handles as a stop: the run saves its checkpoint.
- ARGV: the trainer's arguments (``lstm-ag-train ARGV``).
The exit status is the trainer's; after an exception (a bug), ``EXIT_BUG`` with its one-line
report last on stderr.
"""
import sys

from .sweep_plan import EXIT_USAGE
from .sweep_worker import EXIT_BUG, ParentWatch, exception_line


def main(argv: list) -> int:
    """Run ``lstm-ag-train ARGV[1:]`` watched for the end of process ``ARGV[0]``; returns the
    exit status."""
    from .cli import main as train_main
    watch = ParentWatch(int(argv[0]))
    watch.start()
    try:
        return train_main(argv[1:])
    except SystemExit as exc:                              # argparse: a bad option
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:                               # a bug: say where, in one line
        print(exception_line(exc), file=sys.stderr)
        return EXIT_BUG
    finally:
        watch.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
