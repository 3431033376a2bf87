"""Thread probe: is each BLAS operation of a training step faster on 1 thread or on 2?

``python -m benchmarks.threads [--quick] [--sizes ...] [--dtypes ...] [--threads 1,2]
[--loads idle,busy] [--method fast] [--pinned] [--out PATH]`` (from the repository root).

At each named size and dtype it times, with numpy's BLAS limited by threadpoolctl to each
thread count in turn, the products of one training step and the step itself:

- ``h @ Wh``: the forward's recurrent product, ``(B, H) x (H, 4H)``, T calls a step;
- ``dz @ Wh.T``: the backward's recurrent product, ``(B, 4H) x (4H, H)``, T calls a step;
- ``xs @ Wx``: the input projection, ``(T*B, D) x (D, 4H)``, once;
- ``X^T dZ`` and ``H^T dZ``: the weight gradients, ``(D or H, T*B) x (T*B, 4H)``, once each;
- ``step``: the whole ``lstm_ag.value_and_grad`` (method ``fast`` unless ``--method``).

Each operation is timed on an idle machine (``idle``) and with one busy process beside it
(``busy``: ``python -c "while True: pass"``, killed when the phase ends, whatever happens).
The thread counts are interleaved round by round (:func:`benchmarks.run.time_interleaved`;
each turn switches the limit, makes one untimed lead-in call, then timed ones), and a sample
is enough back-to-back calls to last about a millisecond; medians are reported.
Like ``python -m benchmarks``, it times in a child process without the OpenBLAS pin unless
``--pinned``. Prints a markdown table on stdout, writes JSON. Nothing here asserts a time.
"""
import argparse
import contextlib
import json
import math
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import lstm_ag

from . import child, machine
from .contenders import DTYPES, SIZES, make_problem
from .run import (
    _csv,
    _json_safe,
    _kernel_text,
    _log,
    add_grid_options,
    environment,
    pin_text,
    time_interleaved,
)

__all__ = ["OPS", "operations", "busy_neighbour", "probe_group", "run", "render", "main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "threads.json"
#: The operations, in the order of the table.
OPS = ("h @ Wh", "dz @ Wh.T", "xs @ Wx", "X^T dZ", "H^T dZ", "step")
LOADS = ("idle", "busy")
#: budget: seconds of timed calls per operation and load, shared by the thread counts
#: (step_budget for the whole step); sample: seconds one sample should last at least.
FULL = {"budget": 2.0, "step_budget": 8.0, "min_repeats": 5, "max_repeats": 200,
        "warmup": 0.2, "sample": 1e-3, "settle": 0.3}
QUICK = {"budget": 0.05, "step_budget": 0.1, "min_repeats": 3, "max_repeats": 6,
         "warmup": 0.0, "sample": 1e-4, "settle": 0.05}
#: Other processes' CPU use above which an idle phase is reported as not idle.
BUSY = 0.25


@contextlib.contextmanager
def busy_neighbour(settle=0.3):
    """One other process spinning on a CPU for the duration of the block; killed (and reaped)
    on the way out, whatever happens inside. Yields the ``Popen``."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        time.sleep(settle)                       # let it start and take its CPU
        yield proc
    finally:
        proc.kill()
        proc.wait()


def operations(size, dtype, method="fast"):
    """The operations at one size ``(B, T, D, H)`` and dtype: a dict name -> dict with
    ``call`` (zero-argument), ``shape`` (text), ``flops`` (per call) and ``per_step`` (calls
    in one training step)."""
    B, T, D, H = size
    params, xs, targets = make_problem(B, T, D, H, dtype)
    rng = np.random.default_rng(2)

    def arr(*shape):
        return rng.standard_normal(shape).astype(dtype)
    Wx, Wh = params["Wx"], params["Wh"]
    h, dz = arr(B, H), arr(B, 4 * H)
    X = xs.reshape(T * B, D)
    Hs, dZ = arr(T * B, H), arr(T * B, 4 * H)
    # the products as lstm_ag computes them (transposes are views, as in bptt.py)
    return {
        "h @ Wh": {"call": lambda: h @ Wh, "shape": f"({B}, {H}) x ({H}, {4 * H})",
                   "flops": 2.0 * B * H * 4 * H, "per_step": T},
        "dz @ Wh.T": {"call": lambda: dz @ Wh.T, "shape": f"({B}, {4 * H}) x ({4 * H}, {H})",
                      "flops": 2.0 * B * H * 4 * H, "per_step": T},
        "xs @ Wx": {"call": lambda: X @ Wx, "shape": f"({T * B}, {D}) x ({D}, {4 * H})",
                    "flops": 2.0 * T * B * D * 4 * H, "per_step": 1},
        "X^T dZ": {"call": lambda: X.T @ dZ, "shape": f"({D}, {T * B}) x ({T * B}, {4 * H})",
                   "flops": 2.0 * T * B * D * 4 * H, "per_step": 1},
        "H^T dZ": {"call": lambda: Hs.T @ dZ, "shape": f"({H}, {T * B}) x ({T * B}, {4 * H})",
                   "flops": 2.0 * T * B * H * 4 * H, "per_step": 1},
        "step": {"call": lambda: lstm_ag.value_and_grad(params, xs, targets, method=method),
                 "shape": f"value_and_grad({method})", "flops": None, "per_step": 1},
    }


class _Threads:
    """Switches numpy's BLAS thread count through threadpoolctl, only when it changes."""

    def __init__(self, controller):
        self.blas = controller.select(user_api="blas")
        self.current = None

    def set(self, n):
        if n != self.current:
            self.blas.limit(limits=n)
            self.current = n


def _batch(call, seconds):
    """How many back-to-back calls make one sample of about ``seconds`` (at least one)."""
    t0 = time.perf_counter()
    call()
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    call()
    single = min(single, time.perf_counter() - t0)
    return int(min(1000, max(1, math.ceil(seconds / max(single, 1e-7)))))


def _time_op(op, threads, switch, settings, budget):
    """Median seconds per call of ``op`` at each thread count, interleaved."""
    switch.set(max(threads))
    number = _batch(op["call"], settings["sample"])

    def make(n):
        call = op["call"]

        def sample():
            switch.set(n)                      # in the untimed warm-up and lead-in calls
            for _ in range(number):
                call()
        return sample
    samples = time_interleaved({n: make(n) for n in threads}, budget, settings["min_repeats"],
                               settings["max_repeats"], settings["warmup"])
    out = {}
    for n, times in samples.items():
        t = np.asarray(times) / number
        q25, q75 = np.percentile(t, [25, 75])
        out[n] = {"median_s": float(np.median(t)), "iqr_s": float(q75 - q25), "n": len(t),
                  "calls_per_sample": number}
    return out


def probe_group(size_name, dtype, threads, loads, settings, switch, method="fast"):
    """Every operation at one size and dtype, under each load; a list of row dicts."""
    size = SIZES[size_name]
    ops = operations(size, dtype, method)
    rows = []
    for load in loads:
        neighbour = busy_neighbour(settings["settle"]) if load == "busy" else None
        with neighbour or contextlib.nullcontext():
            before = machine.cpu_snapshot()
            for name, op in ops.items():
                budget = settings["step_budget" if name == "step" else "budget"]
                timed = _time_op(op, threads, switch, settings, budget)
                medians = {n: timed[n]["median_s"] for n in threads}
                best = min(medians, key=medians.get)
                runner_up = min((t for n, t in medians.items() if n != best), default=None)
                rows.append({"size": size_name, "dtype": dtype, "B": size[0], "T": size[1],
                             "D": size[2], "H": size[3], "op": name, "shape": op["shape"],
                             "flops": op["flops"], "per_step": op["per_step"], "load": load,
                             "threads": {str(n): timed[n] for n in threads},
                             "best": best,
                             "margin": runner_up / medians[best] - 1 if runner_up else None,
                             "ratio": {str(n): medians[n] / medians[threads[0]]
                                       for n in threads}})
            others = machine.others_cpu(before, machine.cpu_snapshot())
        for r in rows:
            if r["load"] == load:
                r["others_cpu"] = others
        _log(f"{size_name} {dtype} {load}: done"
             + (f"; other processes used {others:.2f} CPUs" if others is not None else ""))
    return rows


def verdicts(rows):
    """Per size, dtype and operation: the fastest thread count under each load, and by how
    much the next best is slower (``margin``, 0.05 = 5%)."""
    out = {}
    for r in rows:
        out.setdefault((r["size"], r["dtype"], r["op"]), {})[r["load"]] = {
            "best": r["best"], "margin": r["margin"]}
    return [{"size": s, "dtype": d, "op": op, **best} for (s, d, op), best in out.items()]


def _best(v):
    """``"1 (+48%)"``: the fastest thread count, and how much slower the next best is."""
    if v is None:
        return "n/a"
    return str(v["best"]) + (f" (+{100 * v['margin']:.0f}%)" if v["margin"] is not None
                             else "")


def _t(seconds):
    if seconds is None:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    return f"{seconds * 1e3:.3g} ms"


def render(result):
    m, th = result["machine"], result["thread_counts"]
    blas = m["blas"]
    out = ["## lstm_ag: BLAS threads per operation of one training step", "",
           (f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cpus']} usable), "
           f"{m['os']}, Python {m['python']}"),
           f"- numpy BLAS: {blas.get('name')} {blas.get('version')}, {_kernel_text(blas)}",
           "- " + pin_text(result.get("environment")),
           (f"- thread counts compared (threadpoolctl limit on numpy's BLAS): "
           f"{', '.join(map(str, th))}; loads: {', '.join(result['loads'])} "
           "(busy = one `while True: pass` process beside the probe)"),
           f"- step = lstm_ag.value_and_grad(method={result['method']!r}); "
           f"run took {result['elapsed_s']:.0f} s" + (" (--quick)" if result["quick"] else "")]
    idle = [r["others_cpu"] for r in result["results"]
            if r["load"] == "idle" and r.get("others_cpu") is not None]
    if idle and max(idle) > BUSY:
        out.append(f"- **WARNING: the machine was not idle** during an `idle` phase (other "
                   f"processes used up to {max(idle):.2f} CPUs): rerun on an idle machine.")
    ratio_cols = [f"{n}/{th[0]}" for n in th[1:]]
    head = (["size", "dtype", "operation", "shape", "calls/step", "load"]
            + [f"{n} thread{'s' if n > 1 else ''}" for n in th] + ratio_cols
            + ["fastest", "others' CPU"])
    out += ["", "### Median time per call", "", "| " + " | ".join(head) + " |",
            "|---|---|---|---|---:|---|" + "---:|" * (len(th) + len(ratio_cols)) + "---:|---:|"]
    for r in result["results"]:
        cells = [r["size"], r["dtype"], f"`{r['op']}`", r["shape"], str(r["per_step"]),
                 r["load"]]
        cells += [_t(r["threads"][str(n)]["median_s"]) for n in th]
        cells += [f"{r['ratio'][str(n)]:.2f}" for n in th[1:]]
        others = r.get("others_cpu")
        cells += [_best(r), "n/a" if others is None else f"{others:.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    loads = result["loads"]
    out += ["", "### Fastest thread count (in brackets: how much slower the next best is)", "",
            "| size | dtype | operation | " + " | ".join(loads) + " |",
            "|---|---|---|" + "---:|" * len(loads)]
    for v in result["verdicts"]:
        out.append(f"| {v['size']} | {v['dtype']} | `{v['op']}` | "
                   + " | ".join(_best(v.get(load)) for load in loads) + " |")
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.threads",
        description="Time each BLAS operation of one LSTM training step, and the step, with "
                    "numpy's BLAS limited to each thread count, idle and beside a busy process.")
    add_grid_options(p, "tiny size, a handful of samples: a smoke run of seconds")
    p.add_argument("--threads", type=_threads, default=[1, 2],
                   help="comma-separated thread counts to compare (default 1,2)")
    p.add_argument("--loads", type=_csv(list(LOADS), "load"), default=list(LOADS),
                   help="idle, busy or both (default: both)")
    p.add_argument("--method", choices=list(lstm_ag.METHODS), default="fast",
                   help="lstm_ag method of the whole step (default fast)")
    p.add_argument("--pinned", action="store_true",
                   help=f"keep {' and '.join(machine.PIN_VARS)} if set (default: time in a "
                        "child process without them)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="JSON output (default: benchmarks/results/threads.json)")
    p.add_argument(child.CHILD_FLAG, type=child.child_info, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _threads(text):
    try:
        counts = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be positive integers: {text!r}")
    return list(dict.fromkeys(counts))


def run(args):
    """Run the probe as configured by ``args``; returns the result dict (also JSON's)."""
    from threadpoolctl import ThreadpoolController
    t_start = time.perf_counter()
    settings = dict(QUICK if args.quick else FULL)
    sizes = args.sizes or (["tiny"] if args.quick else list(SIZES))
    dtypes = args.dtypes or list(DTYPES)
    controller = ThreadpoolController()
    rows = []
    with controller.limit(limits=max(args.threads), user_api="blas"):   # restored after
        switch = _Threads(controller)
        for size in sizes:
            for dtype in dtypes:
                rows += probe_group(size, dtype, args.threads, args.loads, settings, switch,
                                    args.method)
    return {
        "schema": 1, "kind": "threads",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick), "sizes": {s: list(SIZES[s]) for s in sizes},
        "dtypes": dtypes, "thread_counts": args.threads, "loads": args.loads,
        "method": args.method, "ops": list(OPS), "settings": settings,
        "machine": machine.machine_info(), "versions": machine.versions(()),
        "environment": environment(args),
        "results": rows, "verdicts": verdicts(rows),
        "elapsed_s": time.perf_counter() - t_start,
    }


def main(argv=None):
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = " ".join(["python -m benchmarks.threads", *argv])
    if args.child is not None:
        command = args.child.get("command") or command
    elif not args.pinned and machine.pin_in_effect():
        _log(f"timing in a child process without {', '.join(machine.pin_in_effect())}")
        status, text = child.run_child("benchmarks.threads", argv, command=command)
        print(text or "", end="", flush=True)
        return status
    result = run(args)
    result["command"] = command
    print(render(result), end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(_json_safe(result), indent=1, allow_nan=False) + "\n"
    lstm_ag.atomic_write(args.out, lambda file: file.write(payload), mode="w")
    _log(f"JSON written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
