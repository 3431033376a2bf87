"""Running a sweep's planned runs on an engine (:func:`execute`): the jobs sent to the
workers (with a run's files and ``--data`` when the workers do not share this filesystem),
the results recorded as they come (:class:`Progress`, one line on a stream given), and the
stops: a Ctrl-C or SIGTERM stops the loky workers (each run saving its checkpoint), and a
worker killed while it trains fails its run while the others go on in a new pool.
"""
import contextlib
import os
import signal
import threading
import time

from .datasets import resolve
from .signals import restore
from .sweep_engines import ctrl_c_ignored, engine_for
from .sweep_plan import RUN_FILES, count, plan, read_metrics
from .sweep_summary import record
from .sweep_worker import read_run_files, run_one


class Progress:
    """The sweep's one progress line on a stream (rewritten in place on a terminal)."""

    def __init__(self, total, skipped, workers, stream, enabled):
        self.total, self.skipped, self.workers = total, skipped, workers
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.started = time.perf_counter()
        self.done = self.failed = 0
        self.width = 0

    def show(self, final=False):
        if not self.enabled:
            return
        made = self.done + self.failed
        remaining = self.total - self.skipped - made
        running = min(self.workers, remaining)
        elapsed = time.perf_counter() - self.started
        eta = _duration(elapsed / made * remaining) if made else "?"
        line = (f"sweep: {self.skipped + self.done}/{self.total} runs done"
                + (f" ({self.skipped} skipped)" if self.skipped else "")
                + f", {running} running, {self.failed} failed, {_duration(elapsed)} elapsed"
                + (f", ETA {eta}" if remaining else ""))
        if self.tty:
            pad = " " * max(self.width - len(line), 0)
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds):
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def job_of(run, transfer, data_cache):
    job = {"label": run.label, "argv": run.argv, "out": run.path,
           "resume": run.action == "resume", "transfer": transfer, "files": None, "data": None,
           "parent": os.getpid()}
    if not transfer:
        return job
    if run.action == "resume":
        job["files"] = read_run_files(run.path)
    if run.config.task == "series":
        data = run.config.data
        if data not in data_cache:
            with open(resolve(data), "rb") as file:
                data_cache[data] = file.read()
        job["data"] = {data: data_cache[data]}
    return job


def store(run, files):
    """Write a transferred run's files into its directory (under the run's lock), the
    checkpoint first; a best.npz of an earlier run that did not come back is removed."""
    import lstm_ag

    from .rundir import open_run_dir
    with open_run_dir(run.path, resume=False, overwrite=True):
        for name in RUN_FILES:
            path = os.path.join(run.path, name)
            if name in files:
                lstm_ag.atomic_write(path, lambda file, content=files[name]: file.write(content))
            elif name == "best.npz":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def execute(runs, args, rows, progress_stream, callback):
    """Run the pending runs; fill ``rows``. Returns the session's figures."""
    pending = [run for run in runs if run.action != "skip"]
    session = {"engine": None, "workers": 0, "skipped": len(runs) - len(pending),
               "resumed": sum(run.action == "resume" for run in pending),
               "new": sum(run.action == "new" for run in pending), "run_wall_seconds": 0.0}
    if not pending:
        return session
    with engine_for(args, len(pending)) as engine:
        session.update(engine=engine.name, workers=engine.workers)
        progress = Progress(len(runs), session["skipped"], engine.workers, progress_stream,
                             not args.quiet)
        progress.show()
        data_cache, todo = {}, pending
        while todo:                 # more than one round only after a worker was killed
            todo = _round(todo, engine, rows, progress, session, callback, data_cache,
                          len(pending))
    return session


def _round(todo, engine, rows, progress, session, callback, data_cache, total):
    """Run ``todo`` on the engine, recording each result in ``rows``. Returns the runs to run
    again: none, unless a loky worker process died (killed: SIGKILL, the out-of-memory
    killer), which breaks loky's pool and kills its other workers; then the run that the
    dead worker held is failed, and the others are planned again (resumed from their
    checkpoints, as after a Ctrl-C), in a new pool."""
    import joblib
    from joblib.externals.loky.process_executor import TerminatedWorkerError
    by_label = {run.label: run for run in todo}
    local = engine.n_jobs > 1 and not engine.transfer          # loky processes here
    watch = _WorkerWatch() if local else None
    jobs = (joblib.delayed(run_one)(job_of(run, engine.transfer, data_cache)) for run in todo)
    parallel = joblib.Parallel(n_jobs=engine.n_jobs, return_as="generator_unordered")
    returned, results = set(), None
    try:
        # loky starts its processes here: they are born ignoring Ctrl-C (see ctrl_c_ignored)
        with ctrl_c_ignored() if engine.n_jobs > 1 else contextlib.nullcontext():
            results = parallel(jobs)
        if watch is not None:
            watch.start()
        with _stop_workers_on_signal(progress.stream) if local else contextlib.nullcontext():
            _collect(results, by_label, returned, rows, progress, session, callback, total)
    except TerminatedWorkerError:
        lost = [run for run in todo if run.label not in returned]
        return _after_a_killed_worker(lost, watch, rows, progress, callback, total)
    except KeyboardInterrupt:
        if local:
            _stop_workers(progress.stream)
        raise
    finally:
        if watch is not None:
            watch.stop()
        if results is not None:
            with contextlib.suppress(Exception), _quiet_warnings():
                results.close()
    return []


def _collect(results, by_label, returned, rows, progress, session, callback, total):
    """Record each result as it comes; a run interrupted in its worker stops the sweep."""
    for result in results:
        run = by_label[result["label"]]
        returned.add(run.label)
        session["run_wall_seconds"] += result["wall"]
        code, error = result["code"], result["error"]
        if result["files"]:
            try:
                store(run, result["files"])
            except Exception as err:          # the run failed here, not the sweep
                code, error = None, f"cannot store the run's files: {err}"
        row = record(run, result["metrics"], code, error)
        if row["status"] == "interrupted":
            raise KeyboardInterrupt
        _count_row(run, row, rows, progress, callback, total)


def _count_row(run, row, rows, progress, callback, total):
    rows[run.label] = row
    progress.done += row["status"] == "done"
    progress.failed += row["status"] != "done"
    progress.show(final=progress.done + progress.failed == total)
    if callback is not None:
        callback(run, row)


def _after_a_killed_worker(lost, watch, rows, progress, callback, total):
    """The runs without a result when loky's pool broke: the one a killed worker held (its
    lock file names the worker) failed; the others are planned again."""
    from .rundir import LOCK_NAME
    first, seen = (watch.first_dead, watch.seen) if watch is not None else (set(), set())
    holders = {}
    for run in lost:
        with contextlib.suppress(OSError, ValueError), \
                open(os.path.join(run.path, LOCK_NAME), encoding="ascii") as file:
            holders[run.label] = int(file.read().strip() or 0)
    killed = [run for run in lost if holders.get(run.label) in first]
    if not killed:                 # the first to die not seen: every run a worker held
        killed = [run for run in lost if holders.get(run.label) in seen] or lost
    for run in killed:             # its worker was interrupted, and ended after saving it
        if (read_metrics(run.path) or {}).get("status") == "interrupted":
            raise KeyboardInterrupt                     # a stop, as a Ctrl-C of the sweep
    for run in killed:
        row = record(run, None, None, "its worker process was killed while it ran (SIGKILL, "
                                       "or the out-of-memory killer); its last checkpoint is "
                                       "kept, and the next sweep resumes it")
        _count_row(run, row, rows, progress, callback, total)
    again = plan([run for run in lost if run not in killed])
    for run in again:
        if run.action == "skip":                   # done, its result lost with the pool
            _count_row(run, record(run, run.metrics), rows, progress, callback, total)
    return [run for run in again if run.action != "skip"]


class _WorkerWatch(threading.Thread):
    """Watches this process's worker processes (loky's, children of this one): ``seen``, the
    pids of every worker seen, and ``first_dead``, those found dead at the first death (loky
    kills the others right after it: the killed worker is told from them by being first)."""

    POLL = 0.05

    def __init__(self):
        super().__init__(daemon=True, name="lstm-ag-sweep-watch")
        self.first_dead, self.seen = set(), set()
        self._stop_event = threading.Event()

    def run(self):
        import multiprocessing
        from multiprocessing import connection
        while not self._stop_event.is_set() and not self.first_dead:
            workers = {p.sentinel: p.pid for p in multiprocessing.active_children()}
            self.seen.update(workers.values())
            if not workers:
                self._stop_event.wait(self.POLL)
                continue
            ready = connection.wait(list(workers), timeout=self.POLL)
            if ready:
                self.first_dead = {workers[sentinel] for sentinel in ready}

    def stop(self):
        self._stop_event.set()
        if self.is_alive():
            self.join(1.0)


@contextlib.contextmanager
def _stop_workers_on_signal(stream):
    """While results are awaited: a Ctrl-C or SIGTERM first stops the workers (their runs
    saving their checkpoints, :func:`_stop_workers`), then goes to the handler before (the
    command line's, which raises KeyboardInterrupt). Raised straight away, it would reach
    joblib first, which kills its workers at once (SIGKILL: the runs' progress since their
    last evaluation lost). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signums}
    stopped = []

    def handle(signum, frame):
        if not stopped:
            stopped.append(signum)
            _stop_workers(stream)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        raise KeyboardInterrupt
    for signum in signums:
        signal.signal(signum, handle)
    try:
        yield
    finally:
        restore(previous)


#: Seconds that stopped workers have to save their runs' checkpoints before they are killed.
STOP_GRACE = 60


def _stop_workers(stream, grace=STOP_GRACE):
    """A stopped sweep stops its loky workers: each is sent SIGTERM, so that the run it is
    training saves its checkpoint and exits (a worker between runs just ends, and queued runs
    never start); those still alive after ``grace`` seconds are killed. Says so on ``stream``."""
    import multiprocessing
    workers = multiprocessing.active_children()
    for worker in workers:
        with contextlib.suppress(OSError):
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0))
    killed = [worker for worker in workers if worker.is_alive()]
    for worker in killed:
        with contextlib.suppress(OSError):
            os.kill(worker.pid, signal.SIGKILL)
        worker.join(5)
    if workers:
        newline = "\n" if getattr(stream, "isatty", lambda: False)() else ""
        stream.write(f"{newline}sweep: stopped {count(len(workers), 'worker process')}; the "
                     "runs in progress saved their checkpoints"
                     + (f" ({len(killed)} killed after {grace} s)" if killed else "")
                     + ", the queued runs were not started\n")
        stream.flush()


@contextlib.contextmanager
def _quiet_warnings():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
