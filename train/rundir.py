"""What a run of ``lstm-ag-train`` needs before it trains: its directory, locked and
protected, and the memory its sizes take.

* :func:`open_run_dir` creates ``--out`` (parents included), refuses one that is a file or
  cannot be written, takes an advisory lock on ``DIR/.lock`` (``fcntl.flock``; the file holds
  the pid of its holder) so that two trainers never write one directory, and refuses to replace
  a model (``DIR/model.npz``) unless the run resumes it or ``--overwrite`` says so. The lock is
  the kernel's: it goes with the process, however the process ends, and the lock file stays
  (removing it would let two trainers lock two different files).
* :func:`check_memory` estimates, before anything is allocated, the bytes of the task's arrays,
  of one training step and of the weights for the run's sizes, and refuses sizes that do not
  fit in the memory available, naming the options.

Both raise :class:`RunError`, whose ``exit_status`` is the command line's: 2 for a usage
problem (a directory in use or holding a model, sizes too large), 3 for files that cannot be
written.
"""
import os

try:
    import fcntl
except ImportError:                       # not on Windows: runs there are not locked
    fcntl = None

from .errors import EXIT_UNWRITABLE, RunError, unwritable

__all__ = ["RunError", "RunDir", "open_run_dir", "lock_holder", "check_memory",
           "available_memory", "memory_estimate", "unwritable", "LOCK_NAME"]

#: The lock file inside a run directory.
LOCK_NAME = ".lock"


class RunDir:
    """An open run directory: ``path``, ``checkpoint`` (model.npz), ``metrics``
    (metrics.json), ``plot`` (plot.png); holds the lock until :meth:`close`."""

    def __init__(self, path: str, lock_fd: int | None):
        self.path = path
        self.checkpoint = os.path.join(path, "model.npz")
        self.metrics = os.path.join(path, "metrics.json")
        self.plot = os.path.join(path, "plot.png")
        self._lock_fd = lock_fd

    def close(self) -> None:
        """Release the lock (closing the file releases it)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_run_dir(path, *, resume: bool, overwrite: bool) -> RunDir:
    """Create (unless resuming), check and lock the run directory ``path``.

    - resume: the run continues ``path/model.npz``, which must exist.
    - overwrite: a model already in ``path`` may be replaced (without it: refused).
    Returns a :class:`RunDir` holding the lock. Raises :class:`RunError`: exit status 3 when
    ``path`` is a file, lies under one, or cannot be written; 2 when another trainer holds
    the lock, ``path`` holds a model and neither resume nor overwrite is given, or resume is
    given and there is no model.
    """
    path = os.fspath(path)
    checkpoint = os.path.join(path, "model.npz")
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunError(f"--out {path} is a file, not a directory (give a directory for the "
                       "run's files)", EXIT_UNWRITABLE)
    if resume and not os.path.isdir(path):
        raise RunError(f"--resume: no checkpoint at {checkpoint} (run without --resume "
                       "first, or give the run's --out)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise unwritable(path, err) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunError(f"cannot write the run's files in {path}: permission denied "
                       "(read-only directory)", EXIT_UNWRITABLE)
    lock_fd = _lock(path)
    try:
        exists = os.path.lexists(checkpoint)
        if resume and not exists:
            raise RunError(f"--resume: no checkpoint at {checkpoint} (run without --resume "
                           "first, or give the run's --out)")
        if exists and not resume and not overwrite:
            raise RunError(f"{path} already holds a trained model ({checkpoint}); continue it "
                           "with --resume, replace it with --overwrite, or choose another "
                           "--out")
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    return RunDir(path, lock_fd)


def _lock(path):
    """Lock ``path/.lock`` for this process; the file then holds our pid. Returns its fd."""
    if fcntl is None:
        return None
    name = os.path.join(path, LOCK_NAME)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(name, flags, 0o644)
    except OSError as err:
        raise unwritable(path, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise RunError(f"{path} is in use by another trainer{pid}; wait for it to "
                           "finish, or choose another --out") from None
        except OSError as err:
            raise RunError(f"cannot lock {name}: {err.strerror}", EXIT_UNWRITABLE) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as err:
            raise unwritable(path, err) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_holder(path) -> int | None:
    """Who holds the lock of the run directory ``path``: the pid written in its lock file
    (0 when it cannot be read), or None when no process holds it (or there is none, or no
    locks on this platform). Takes nothing: the lock is only tried, shared, and let go."""
    if fcntl is None:
        return None
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(os.path.join(os.fspath(path), LOCK_NAME), flags)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        except OSError:
            return None
        return None
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- memory

#: float64 values per (time step, sequence, hidden unit) that one training step holds at its
#: peak: gate pre-activations and activations, cells, states and their gradients (measured
#: with tracemalloc at T=50, B=64, H=64: 18 for method fast, 17 bptt, 23 autograd; an
#: evaluation 8), with a margin.
STEP_VALUES_PER_UNIT = 32
#: float64 values per weight at the peak of a step: the weights, the velocity, the gradients
#: and autograd's intermediates (measured: 5), the update.
WEIGHT_COPIES = 8
#: float64 values per (time step, sequence, feature) of a task while it is generated
#: (measured: at most 1.7).
DATA_COPIES = 3


def available_memory() -> int | None:
    """Bytes of memory available to this process, or None where that cannot be read.

    Linux: ``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup's ``memory.max``;
    elsewhere the physical memory.
    """
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as file:
            limit = file.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as file:
            used = int(file.read().strip())
        if limit.isdigit():
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def memory_estimate(config, input_size: int, output_size: int, n_val: int) -> list:
    """The bytes a run of ``config`` needs, by part: a list of ``(bytes, what, options)``.

    - config: a :class:`train.config.TrainConfig`; input_size, output_size: the task's D, O;
      n_val: the task's validation sequences.
    The parts: the task's arrays, one training step (and one evaluation), the weights with
    the optimizer's copies. Computed with Python integers: no overflow at any size.
    """
    T, H, D, O = config.seq_len, config.hidden, input_size, output_size
    batch = config.train_size if config.optimizer == "lbfgs" else config.batch
    weights = ((D + H + 1) * 4 * H + (H + 1) * O) * WEIGHT_COPIES * 8
    data = (T + 1) * (config.train_size + 2 * n_val) * (D + O) * DATA_COPIES * 8
    step = T * max(batch, n_val) * (H * STEP_VALUES_PER_UNIT + D + O) * 8
    batch_option = (f"--train-size {config.train_size} (L-BFGS uses every sequence at each "
                    "step)" if config.optimizer == "lbfgs" else f"--batch {config.batch}")
    return [(data, "the training data", f"--train-size {config.train_size} with --seq-len {T}"),
            (step, "one training step", f"{batch_option} with --seq-len {T} and --hidden {H}"),
            (weights, "the weights and the optimizer's copies", f"--hidden {H}")]


def check_memory(config, input_size: int, output_size: int, n_val: int,
                 available: int | None = None) -> int:
    """Refuse, before allocating, a run whose sizes need more memory than is available.

    Arguments as :func:`memory_estimate`; available: bytes (default :func:`available_memory`).
    Returns the estimated bytes. Raises :class:`RunError` (exit status 2) naming the options
    of the largest part.
    """
    parts = memory_estimate(config, input_size, output_size, n_val)
    total = sum(nbytes for nbytes, _, _ in parts)
    if available is None:
        available = available_memory()
    if available is not None and total > available:
        nbytes, what, options = max(parts)
        raise RunError(f"{options}: {what} would need about {_gib(nbytes)} of memory (the "
                       f"run {_gib(total)} in all), more than the {_gib(available)} available; "
                       "choose smaller sizes")
    return total


def _gib(nbytes):
    return f"{nbytes / 2**30:.3g} GiB"
