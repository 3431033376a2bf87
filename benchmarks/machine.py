"""What the benchmark ran on: CPU, BLAS and its threads, library versions, the matmul peak,
and a process-wide resident-memory high-water mark that can be reset.

Nothing here imports torch or jax; :func:`versions` reports them only if already imported.
"""
import contextlib
import ctypes
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["PIN_VARS", "pin_in_effect", "unpinned_env", "thread_pools", "torch_kernels",
           "blas_threads", "set_blas_threads", "blas_info", "cpu_model", "machine_info",
           "versions", "matmul_peak",
           "cpu_snapshot", "others_cpu", "RssPeak"]

#: Environment variables that pin OpenBLAS to a kernel (``OPENBLAS_CORETYPE=Haswell``) or a
#: cache size, set on some machines for old OpenBLAS builds. OpenBLAS reads them once, when it
#: is loaded (with numpy), so a benchmark that should measure without them runs in a child
#: process whose environment lacks them.
PIN_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def pin_in_effect(environ=None):
    """The pin variables set (non-empty) in ``environ`` (default: this process's), as a dict."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in PIN_VARS if environ.get(k)}


def unpinned_env(environ=None):
    """A copy of ``environ`` (default: this process's) without the :data:`PIN_VARS`."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k not in PIN_VARS}


#: Libraries that bring their own native thread pools, recognised in a pool's file path.
_OWNERS = ("numpy", "scipy", "torch", "jaxlib", "sklearn")


def _owner(path):
    for part in reversed(Path(path).parts[:-1]):
        for name in _OWNERS:
            if part == name or part.startswith((name + ".", name + "_", name + "-")):
                return name
    return "other"


def thread_pools():
    """threadpoolctl's view of the native thread pools loaded in this process: a list of dicts
    (``owner`` = the package whose directory holds the library, e.g. numpy or torch;
    ``user_api``, ``internal_api``, ``version``, ``architecture`` = the kernel in use for
    OpenBLAS, ``threading_layer``, ``num_threads``, ``file`` = the library's file name).
    None when threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "version", "architecture", "threading_layer",
            "num_threads")
    return [{"owner": _owner(d.get("filepath", "")), **{k: d.get(k) for k in keys},
             "file": Path(d.get("filepath") or "").name} for d in threadpool_info()]


def torch_kernels():
    """torch's CPU kernels, if torch has been imported: the SIMD level its kernels dispatch to
    (``cpu_capability``), its BLAS (from its build configuration; MKL is linked statically,
    so threadpoolctl does not see it), oneDNN, threads and its thread pools (threadpoolctl).
    None when torch is not imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    info = {"threads": torch.get_num_threads()}
    with contextlib.suppress(Exception):
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    with contextlib.suppress(Exception):
        config = torch.__config__.show()
        match = re.search(r"BLAS_INFO=(\w+)", config)
        info["blas"] = match.group(1) if match else None
        match = re.search(r"Math Kernel Library Version ([\d.]+)", config)
        if match:
            info["mkl_version"] = match.group(1)
    with contextlib.suppress(Exception):
        info["mkldnn"] = bool(torch.backends.mkldnn.is_available())
    pools = thread_pools()
    if pools is not None:
        info["thread_pools"] = [p for p in pools if p["owner"] == "torch"]
    return info


def _openblas_handles():
    """ctypes handles of the OpenBLAS libraries loaded in this process (Linux only)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps
                     if "openblas" in line.lower() and ".so" in line.split()[-1]}
    except OSError:
        return []
    handles = []
    for path in sorted(paths):
        with contextlib.suppress(OSError):
            handles.append(ctypes.CDLL(path))
    return handles


def _openblas_call(suffix, restype=ctypes.c_int, *args):
    """Call ``openblas_<suffix>`` under any of the names numpy's OpenBLAS builds use."""
    for lib in _openblas_handles():
        for name in (f"scipy_openblas_{suffix}64_", f"scipy_openblas_{suffix}",
                     f"openblas_{suffix}64_", f"openblas_{suffix}"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = restype
                return fn(*args)
    return None


def set_blas_threads(n):
    """Make numpy's BLAS use ``n`` threads (threadpoolctl if installed, else OpenBLAS's own
    ``openblas_set_num_threads``). Returns the thread count in effect afterwards."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n, user_api="blas")
    except ImportError:
        _openblas_call("set_num_threads", None, ctypes.c_int(n))
    return blas_threads()


def blas_threads():
    """The number of threads numpy's BLAS uses.

    Asks threadpoolctl when installed, else OpenBLAS itself (through ctypes), else the
    environment (``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OMP_NUM_THREADS``), else the
    number of CPUs this process may run on.
    """
    try:
        from threadpoolctl import threadpool_info
        blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
        counts = [d["num_threads"] for d in blas if _owner(d.get("filepath", "")) == "numpy"]
        counts += [d["num_threads"] for d in blas]          # numpy's first, else any
        if counts:
            return int(counts[0])
    except ImportError:
        pass
    n = _openblas_call("get_num_threads")
    if n:
        return int(n)
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return _cpus()


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def blas_info():
    """numpy's BLAS: name, version, configuration (a dict of strings)."""
    info = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(name=blas.get("name"), version=blas.get("version"),
                    config=blas.get("openblas configuration"))
    except Exception:                            # old numpy, odd builds: leave it out
        pass
    core = _openblas_call("get_corename", ctypes.c_char_p)
    if core:
        info["openblas_core"] = core.decode()
    info.update(pin_in_effect())
    pools = thread_pools()
    if pools is not None:                    # threadpoolctl's view of numpy's own BLAS
        mine = [p for p in pools if p["owner"] == "numpy" and p["user_api"] == "blas"]
        info["threadpoolctl"] = mine
        if mine:
            info["kernel"] = mine[0]["architecture"]
            info["internal_api"] = mine[0]["internal_api"]
    info["threads"] = blas_threads()
    return info


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or platform.processor())."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    match = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    wanted = ("avx", "avx2", "fma", "avx512f")
    return [f for f in wanted if match and f in match.group(1).split()]


def _memory_gib():
    try:
        text = Path("/proc/meminfo").read_text()
        return round(int(re.search(r"MemTotal:\s+(\d+)", text).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        return None


def _git_commit():
    """The short commit of the work tree, with ``+dirty`` when lstm_ag/ has local changes."""
    here = Path(__file__).resolve().parent

    def git(*args):
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=here)
        return out.stdout.strip() if out.returncode == 0 else None
    try:
        commit = git("rev-parse", "--short", "HEAD")
        if commit and git("status", "--porcelain", "--", "../lstm_ag"):
            commit += "+dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info():
    """The machine, as a dict: CPU model, cores, usable CPUs, SIMD flags, memory, OS, BLAS."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "usable_cpus": _cpus(),
            "simd": _cpu_flags(), "memory_gib": _memory_gib(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "blas": blas_info()}


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(extra=("torch", "jax", "matplotlib")):
    """Versions of lstm_ag (and its git commit), numpy, scipy, autograd, and of the libraries
    in ``extra`` that have been imported."""
    import lstm_ag
    out = {"lstm_ag": lstm_ag.__version__, "git_commit": _git_commit(), "numpy": np.__version__,
           "scipy": _version("scipy"), "autograd": _version("autograd")}
    for name in extra:
        if name in sys.modules:
            out[name] = getattr(sys.modules[name], "__version__", None)
            if name == "jax":
                out["jaxlib"] = _version("jaxlib")
    return out


def matmul_peak(dtype, n=2048, repeats=5, make_matmul=None):
    """The machine's measured matrix-multiply rate, in GFLOP/s.

    - dtype: ``np.float64`` or ``np.float32``; n: the side of the square matrices.
    - repeats: timed products after one warm-up.
    - make_matmul: ``make_matmul(a, b)`` returns a call that multiplies them and waits for
      the result (to time another library's matmul); ``np.matmul`` into a preallocated output
      when None.
    Returns ``(best, median)`` over the repeats, each ``2 n^3 / seconds / 1e9``.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    if make_matmul is None:
        out = np.empty((n, n), dtype)
        call = lambda: np.matmul(a, b, out=out)   # noqa: E731
    else:
        call = make_matmul(a, b)
    call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return flops / min(times) / 1e9, flops / float(np.median(times)) / 1e9


def cpu_snapshot():
    """``(wall seconds, CPU seconds busy on the whole machine, CPU seconds of this process)``,
    or None where /proc/stat is missing; see :func:`others_cpu`."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    busy = sum(fields[:8]) - fields[3] - fields[4]
    mine = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), mine.user + mine.system


def others_cpu(before, after):
    """CPUs kept busy by other processes between two :func:`cpu_snapshot` s (0 = an idle
    machine apart from us, 1 = one core's worth of someone else's work), or None."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    other = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, other / (after[0] - before[0]))


class RssPeak:
    """Peak growth of the resident set size over a block of code (Linux only).

    Resets the kernel's high-water mark (``VmHWM``, via ``/proc/self/clear_refs``), asks glibc
    to give freed heap memory back (``malloc_trim``), runs the block, and reports
    ``VmHWM - VmRSS before``: the most extra physical memory the process held at any moment.
    It sees every allocator (numpy, torch, XLA) but is process-wide and page-granular.
    ``RssPeak.available()`` says whether this system supports it.
    """

    @staticmethod
    def _status():
        text = Path("/proc/self/status").read_text()
        return {k: int(re.search(k + r":\s+(\d+)", text).group(1)) * 1024
                for k in ("VmRSS", "VmHWM")}

    @classmethod
    def available(cls):
        try:
            cls._status()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except (OSError, AttributeError):
            return False

    def __enter__(self):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.before = self._status()["VmRSS"]
        self.bytes = None
        return self

    def __exit__(self, *exc):
        self.bytes = max(0, self._status()["VmHWM"] - self.before)
        return False
