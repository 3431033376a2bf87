"""The sweep's engines: joblib's configuration for its runs (:func:`engine_for`), loky
processes on this machine or Dask (a ``LocalCluster`` started here, or a running scheduler,
probed and connected within ``--timeout``, its workers' lstm-ag version checked).
"""
import contextlib
import signal
import threading
import time
from dataclasses import dataclass

from .sweep_plan import SweepError, count
from .sweep_worker import worker_version

#: Seconds to wait for a Dask scheduler's first worker.
WORKER_WAIT = 60


#: Default of --timeout: seconds to connect to a Dask scheduler and complete its handshake.
CONNECT_TIMEOUT = 20.0


#: The largest first message a Dask scheduler's handshake may announce (bytes; it sends a
#: few hundred): anything larger is not a Dask scheduler (an HTTP server's "HTTP/1.1" read
#: as a length is 3.5e18 bytes, which distributed would try to allocate).
HANDSHAKE_MAX = 16 << 20

DASK_HINT = ("needs Dask's distributed, which is not installed; install it with "
             "pip install 'lstm-ag[sweep]' (or pip install 'dask[distributed]')")


@dataclass
class Engine:
    n_jobs: int
    workers: int
    transfer: bool
    name: str


@contextlib.contextmanager
def engine_for(args, pending):
    """joblib's configuration for the runs: loky processes here, or Dask."""
    import joblib
    if args.scheduler is None and args.dask_local is None:
        jobs = args.jobs or joblib.cpu_count()
        jobs = max(1, min(jobs, pending))
        name = "this process, one run at a time" if jobs == 1 else \
            f"joblib (loky), {jobs} processes"
        with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
            yield Engine(jobs, jobs, False, name)
        return
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError:
        option = "--scheduler" if args.scheduler is not None else "--dask-local"
        raise SweepError(f"{option} {DASK_HINT}") from None
    import dask
    cluster = client = None
    try:
        if args.dask_local is not None:
            environ = {key: value for key, value in
                       dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                       if key != "MALLOC_TRIM_THRESHOLD_"}         # see sweep_worker._call_in_child
            with ctrl_c_ignored(), \
                    dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                cluster = LocalCluster(n_workers=args.dask_local, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
                client = Client(cluster)
                _check_workers(client, local=True)
            where = f"Dask LocalCluster, {count(args.dask_local, 'process')}"
        else:
            client = _connect(Client, args.scheduler, args.timeout)
            where = f"Dask scheduler {args.scheduler}"
        workers = sum(client.nthreads().values())
        with joblib.parallel_config(backend="dask"):
            yield Engine(-1, workers, True, f"{where}, {count(workers, 'worker thread')}")
    finally:
        with ctrl_c_ignored():
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()


def _connect(Client, address, timeout=CONNECT_TIMEOUT):
    """A client of the scheduler at ``address`` with at least one worker, checked. Every step
    of the handshake is bounded by ``timeout`` seconds: first a probe of a ``tcp://`` address
    (:func:`_probe_scheduler`: a peer that says nothing, or something other than Dask's
    protocol, is refused before distributed reads it), then distributed's own connection,
    in a thread given ``timeout`` and a little more."""
    _probe_scheduler(address, timeout)
    found, done = {}, threading.Event()

    def connect():
        try:
            found["client"] = Client(address, timeout=f"{timeout}s")
        except BaseException as err:              # reported by the caller's thread
            found["error"] = err
        finally:
            done.set()
    threading.Thread(target=connect, daemon=True, name="lstm-ag-connect").start()
    if not done.wait(2 * timeout + 1):
        raise SweepError(f"--scheduler {address}: no Dask handshake within --timeout "
                         f"{timeout:g} s; is a Dask scheduler listening there?")
    err = found.get("error")
    if isinstance(err, (OSError, ValueError, TimeoutError, MemoryError, EOFError)):
        raise SweepError(f"--scheduler {address}: cannot connect: "
                         f"{' '.join(str(err).split())[:300]}") from None
    if err is not None:
        raise err
    client = found["client"]
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
        _check_workers(client, local=False)
    except TimeoutError:
        client.close()
        raise SweepError(f"--scheduler {address}: no worker connected within {WORKER_WAIT} s"
                         ) from None
    except BaseException:
        client.close()
        raise
    return client


def _probe_scheduler(address, timeout):
    """Refuse a ``tcp://HOST:PORT`` (or ``HOST:PORT``) address where no Dask scheduler
    speaks, within ``timeout`` seconds: one that refuses the connection, says nothing (a
    scheduler sends its handshake first, unasked), or starts with a length no handshake has.
    Other schemes (tls://, ...) are left to distributed."""
    import socket
    import struct
    scheme, sep, rest = address.rpartition("://")
    if sep and scheme != "tcp":
        return
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        return                                    # distributed says what is wrong with it
    host = host.strip("[]") or "127.0.0.1"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            head = b""
            while len(head) < 8:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    raise SweepError(f"--scheduler {address}: the server there closed the "
                                     "connection without a Dask handshake: not a Dask "
                                     "scheduler")
                head += chunk
    except TimeoutError:
        raise SweepError(f"--scheduler {address}: no Dask handshake within --timeout "
                         f"{timeout:g} s (a server accepted the connection but said nothing: "
                         "not a Dask scheduler, or one too busy to answer)") from None
    except OSError as err:
        raise SweepError(f"--scheduler {address}: cannot connect: "
                         f"{err.strerror or err}") from None
    (length,) = struct.unpack("Q", head)           # distributed's framing: native order
    if not 0 < length <= HANDSHAKE_MAX:
        text = head.decode("ascii", "replace")
        raise SweepError(f"--scheduler {address}: the server there is not a Dask scheduler (it "
                         f"began with {text!r}; a scheduler begins with the length of its "
                         "handshake)")


@contextlib.contextmanager
def ctrl_c_ignored():
    """Ignore Ctrl-C while worker processes start (or Dask's stop): they inherit SIGINT
    ignored, so that a Ctrl-C at the terminal, which reaches every process of its group,
    never interrupts one half started (each printing a traceback); the sweep stops them
    itself, and during a run the trainer's own handling saves the run's checkpoint. A
    KeyboardInterrupt inside LocalCluster would also leave it half made. A Ctrl-C in this
    window (loky: moments; a LocalCluster: its start, a few seconds) is lost. Main thread
    only (elsewhere, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_workers(client, local):
    import lstm_ag
    try:
        versions = client.run(worker_version, local)
    except Exception as err:                     # whatever the worker raised
        raise SweepError(f"the Dask workers cannot run the sweep ({type(err).__name__}: "
                         f"{' '.join(str(err).split())}); install lstm-ag on every worker, "
                         f"version {lstm_ag.__version__} as here") from None
    for worker, version in sorted(versions.items()):
        if version != lstm_ag.__version__:
            raise SweepError(f"the Dask worker {worker} has lstm-ag {version}, this machine "
                             f"{lstm_ag.__version__}: install the same version everywhere")
