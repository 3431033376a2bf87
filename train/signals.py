"""Every signal the trainer handles: Ctrl-C (SIGINT) and SIGTERM (batch schedulers, ``kill``,
``docker stop``) stop a run cleanly, its checkpoint saved.

* :func:`hold_start_up`: from the first lines of ``python -m train`` on, signals are held until
  the command line takes over (a Ctrl-C in the first instants ends it with its exit status and
  one line, never a traceback);
* :class:`CtrlC`: while the command line runs, the first signal raises ``KeyboardInterrupt``,
  later ones are ignored (the program is on its way out); exit 130, or 143 for SIGTERM;
* :func:`raise_if_stopped`: a signal whose ``KeyboardInterrupt`` a library's start-up code
  swallowed still stops the run;
* :func:`sigterm_as_ctrl_c`: while :func:`train.fit` runs without the command line, a SIGTERM
  left at the system's default acts as Ctrl-C;
* :func:`deferred`: a signal that comes while a file is written waits until it is complete.

Standard library only (imported before numpy loads).
"""
import contextlib
import os
import signal
import sys
import threading

from .errors import EXIT_INTERRUPTED, EXIT_TERMINATED, prog

__all__ = ["STOP_SIGNALS", "CtrlC", "hold_start_up", "restore", "raise_if_stopped",
           "sigterm_as_ctrl_c", "deferred"]

#: The signals that stop a run cleanly: Ctrl-C, and SIGTERM, handled as Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: The :class:`CtrlC` of the command line running in this process, innermost last.
_ACTIVE: list = []


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def restore(previous: dict) -> None:
    """Put back the handlers ``{signum: handler}`` taken before (None: one not set from
    Python, which cannot be put back)."""
    for signum, handler in previous.items():
        if handler is not None:
            signal.signal(signum, handler)


def hold_start_up() -> list:
    """Hold SIGINT and SIGTERM from now on: returns the list the signals that come are
    appended to (their numbers), for :class:`CtrlC` to raise the first once installed."""
    held = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda number, frame: held.append(number))
    return held


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt if a signal already came. Called after the heavy imports: the
    KeyboardInterrupt its handler raised may have been swallowed by a library's start-up code
    (measured: 2 of 80 SIGINTs sent during start-up, inside autograd's import, were lost
    and the run went on to exit 0)."""
    if _ACTIVE and _ACTIVE[-1].count:
        raise KeyboardInterrupt


class CtrlC:
    """SIGINT or SIGTERM while the command line runs: the first raises KeyboardInterrupt (the
    run stops, saving its checkpoint); later ones are ignored, the program being on its way
    out (:func:`deferred` also holds them until a checkpoint being written is complete).
    ``signum`` is the first one's; one ``held`` at start-up (:func:`hold_start_up`) is raised
    on entry. Installed only in the main thread; the previous handlers are restored on exit."""

    SIGNALS = STOP_SIGNALS
    #: Seconds after which a signal that came inside the import machinery is sent again.
    RETRY = 0.05

    def __init__(self, held=()):
        self.held = held                  # read once installed: none slips in between

    def __enter__(self):
        self.count, self.previous, self.signum = 0, {}, None
        if _in_main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self.handle)
        _ACTIVE.append(self)
        return self

    def raise_held(self):
        if self.held:
            signum = self.held[0]
            del self.held[:]
            self.handle(signum, None)

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
        print(f"{prog()}: interrupted; any checkpoint on disk is the last complete one",
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
        restore(self.previous)


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """While :func:`train.fit` runs in the main thread, a SIGTERM left at the system's default
    (which would end the process without a word) acts as Ctrl-C: the run stops with its
    checkpoint saved. A handler set by the caller (the command line's) is left alone."""
    if not _in_main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handle(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def deferred(replay: bool):
    """Hold a Ctrl-C (SIGINT) or SIGTERM back while files are written: no file is left half
    done by one (nor by a second one while stopping). Afterwards, if one came and ``replay``,
    it goes to the handler in place before for its signal (SIGINT's default: KeyboardInterrupt
    is raised). Only in the main thread (where Python runs signal handlers), and only for a
    signal with a Python handler (or SIGINT's default); a SIGTERM left at the system's default
    ends the process as before."""
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    held = []
    for signum, handler in previous.items():
        if callable(handler) or (signum == signal.SIGINT and handler == signal.SIG_DFL):
            signal.signal(signum, lambda number, frame: held.append((number, frame)))
    try:
        yield
    finally:
        restore(previous)
    if held and replay:
        signum, frame = held[0]
        if callable(previous[signum]):
            previous[signum](signum, frame)
        else:
            raise KeyboardInterrupt
