"""The runner: ``python -m benchmarks [--quick] [--sizes ...] [--dtypes ...] [--layers N]
[--plot PATH]``.

For each size and dtype it sets up every contender (:class:`~benchmarks.bench_step.TimeStep`;
``--layers N``: N stacked LSTM layers), checks its loss and gradients against lstm_ag's
autograd method, warms it up, then times :meth:`~benchmarks.bench_step.TimeStep.time_step`
round by round (in round r every contender, in an order rotated by r, makes one untimed
lead-in call and two timed ones) so that a slow spell of a shared machine hits all of them.
It reports medians and IQRs, ratios, GFLOP/s against the measured matmul peak and the peak
memory of one step; prints markdown on stdout (progress on stderr) and writes JSON.
Exit status 1 when a contender disagrees with the reference or fails, else 0.
"""
import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import lstm_ag

from . import child, machine
from .bench_step import TimeStep
from .contenders import (
    DTYPES,
    PEERS,
    SIZES,
    Unavailable,
    contender_names,
    step_flops,
    torch_threads,
)

__all__ = ["main", "run", "time_interleaved"]

#: Other processes' CPU use (in CPUs) above which the report warns that the machine was busy.
BUSY = 0.25
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
#: The plot's sweeps: T at fixed (B, D, H) and H at fixed (B, T, D) (small's other sizes).
SWEEP_T = [(32, T, 8, 64) for T in (25, 50, 100, 200, 400)]
SWEEP_H = [(32, 100, 8, H) for H in (16, 32, 64, 128, 256, 512)]

FULL = {"budget": 30.0, "min_repeats": 5, "max_repeats": 100, "warmup": 0.3,
        "peak_n": 2048, "peak_repeats": 5, "sweep_budget": 1.5}
QUICK = {"budget": 1.0, "min_repeats": 3, "max_repeats": 10, "warmup": 0.02,
         "peak_n": 512, "peak_repeats": 3, "sweep_budget": 0.3}


def _log(*args):
    print(*args, file=sys.stderr, flush=True)


# --- timing -----------------------------------------------------------------------------------

def _warm_up(step, seconds, min_calls=3, max_calls=20, enough=1.0):
    """Call ``step`` until ``seconds`` have passed and it has run ``min_calls`` times (or
    for ``enough`` seconds, for slow calls), at most ``max_calls``; return the fastest call's
    duration, the estimate of its time per call.

    Some contenders are slow for several calls after the first (PyTorch float32 runs its RNN
    through oneDNN, which builds its kernels over the first few calls), hence more than one.
    """
    spent, times = 0.0, []
    while True:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
        if len(times) >= max_calls or (spent >= seconds
                                        and (len(times) >= min_calls or spent >= enough)):
            return min(times)


def time_interleaved(steps, budget, min_repeats=5, max_repeats=100, warmup=0.3, overrun=1.5,
                     lead_in=1, per_round=2):
    """Time several calls round by round.

    - steps: dict name -> zero-argument call.
    - budget: seconds of calls in all; each contender gets an equal share, so its number of
      timed calls is about ``share / (its time per call)`` (less its lead-in calls), clipped
      to ``[min_repeats, max_repeats]``: a slow contender gets fewer, and sits out the last
      rounds.
    - warmup: seconds of untimed calls per contender first (at least three calls).
    - lead_in, per_round: in each round a contender makes ``lead_in`` untimed calls, then
      ``per_round`` timed ones. The first call after another contender ran is slow (up to
      2.5x on the 2-core VM this was written on: memory the other library touched, its
      threads), while a training loop calls the same step back to back.
    - overrun: a contender whose calls have taken ``overrun * share`` seconds in all stops once
      it has ``min_repeats`` samples (calls much slower than its warm-up, e.g. on a busy
      machine, cannot stretch the run without bound).
    Returns dict name -> list of seconds of the timed calls. The garbage collector is off
    during the calls (as in timeit) and collects the young generations between rounds.
    """
    names = list(steps)
    per_call = {name: max(_warm_up(steps[name], warmup), 1e-7) for name in names}
    share = budget / max(len(names), 1)
    timed_fraction = per_round / (per_round + lead_in)
    repeats = {name: int(min(max_repeats, max(min_repeats,
                                              round(timed_fraction * share / per_call[name]))))
               for name in names}
    samples = {name: [] for name in names}
    spent = dict.fromkeys(names, 0.0)
    gc_was_enabled = gc.isenabled()
    try:
        r = 0
        while any(len(samples[name]) < repeats[name] for name in names):
            order = names[r % len(names):] + names[:r % len(names)]
            r += 1
            gc.disable()
            for name in order:
                if len(samples[name]) >= repeats[name]:
                    continue
                step = steps[name]
                t0 = time.perf_counter()
                for _ in range(lead_in):
                    step()
                spent[name] += time.perf_counter() - t0
                for _ in range(min(per_round, repeats[name] - len(samples[name]))):
                    t0 = time.perf_counter()
                    step()
                    samples[name].append(time.perf_counter() - t0)
                    spent[name] += samples[name][-1]
                if spent[name] > overrun * share and len(samples[name]) >= min_repeats:
                    repeats[name] = len(samples[name])
            gc.enable()
            gc.collect(1)        # young objects only: a full collection can take 0.2 s
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def _traced_peak(step):
    """Peak of the memory tracemalloc sees (Python objects and numpy arrays) during one
    call, above what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _rss_peak(step):
    gc.collect()
    with machine.RssPeak() as rss:
        step()
    return rss.bytes


# --- one group: a size and a dtype -----------------------------------------------------------

def run_group(size_name, dtype, names, settings, shape=None, memory=True, budget=None,
              num_layers=1):
    """Set up, check and time every contender at one size and dtype (and ``num_layers``
    stacked LSTM layers).

    Returns a list of row dicts, one per contender in ``names`` (unavailable ones included).
    """
    size = tuple(SIZES[size_name] if shape is None else shape)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t_setup = time.perf_counter()
    cpu_before = machine.cpu_snapshot()
    rows, benches = {}, {}
    for name in names:
        row = {"size": size_name, "dtype": dtype, "B": size[0], "T": size[1], "D": size[2],
               "H": size[3], "contender": name, "available": False, "status": None,
               "flops": step_flops(*size, num_layers=num_layers), "load_1min": load}
        rows[name] = row
        bench = TimeStep()
        try:
            case = bench.prepare(size_name, dtype, name, shape=shape, num_layers=num_layers)
        except Unavailable as err:                # a peer that is not installed
            row["status"] = f"n/a: {err}"
            continue
        except Exception as err:                 # a contender that crashes is reported, once
            row["status"] = f"ERROR: {type(err).__name__}: {err}"
            continue
        row.update(available=True, status=str(case.check), check=case.check.as_dict(),
                   first_call_s=case.first_call, **case.extra)
        benches[name] = bench
    budget = settings["budget"] if budget is None else budget
    t_timing = time.perf_counter()
    samples = time_interleaved({n: b.time_step for n, b in benches.items()}, budget,
                               settings["min_repeats"], settings["max_repeats"],
                               settings["warmup"])
    for name, times in samples.items():
        t = np.asarray(times)
        q25, q75 = np.percentile(t, [25, 75])
        rows[name].update(median_s=float(np.median(t)), iqr_s=float(q75 - q25),
                          q25_s=float(q25), q75_s=float(q75),
                          min_s=float(t.min()), n=len(times), samples_s=[float(x) for x in t])
    t_memory = time.perf_counter()
    if memory:
        rss_ok = machine.RssPeak.available()
        for name, bench in benches.items():
            case = bench.case
            rows[name]["mem_tracemalloc_bytes"] = (_traced_peak(case.step) if case.numpy_memory
                                                   else None)
            rows[name]["mem_rss_bytes"] = _rss_peak(case.step) if rss_ok else None
    benches.clear()
    gc.collect()
    t_end = time.perf_counter()
    others = machine.others_cpu(cpu_before, machine.cpu_snapshot())
    for row in rows.values():
        row["others_cpu"] = others
    _log(f"{size_name} {dtype}: setup {t_timing - t_setup:.1f} s, "
         f"timing {t_memory - t_timing:.1f} s"
         + (f", memory {t_end - t_memory:.1f} s" if memory else "")
         + (f"; other processes used {others:.2f} CPUs" if others is not None else ""))
    return [rows[name] for name in names]


def _add_ratios(rows, peaks):
    """Ratios to torch (same dtype, and float64) and to bptt, GFLOP/s and peak fraction."""
    median = {(r["size"], r["dtype"], r["contender"]): r.get("median_s") for r in rows}
    for r in rows:
        t = r.get("median_s")
        for key, other in (("ratio_torch", (r["dtype"], "torch")),
                           ("ratio_torch_float64", ("float64", "torch")),
                           ("ratio_bptt", (r["dtype"], "bptt"))):
            ref = median.get((r["size"], *other))
            r[key] = t / ref if t and ref else None
        r["gflops"] = r["flops"] / t / 1e9 if t else None
        peak = peaks.get(r["dtype"])
        r["peak_fraction"] = r["gflops"] / peak if t and peak else None


# --- output ------------------------------------------------------------------------------------

def _ms(seconds):
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _num(x, fmt="{:.2f}"):
    return "n/a" if x is None else fmt.format(x)


def _pct(f):
    if f is None:
        return "n/a"
    p = 100 * f
    return f"{p:.2f}%" if p < 1 else f"{p:.1f}%" if p < 10 else f"{p:.0f}%"


def _mib(b):
    return "n/a" if b is None else f"{b / 2**20:.3g}"


def summary_table(rows, names):
    """Median ms per step: one row per size and dtype, one column per contender."""
    lines = ["| size (B, T, D, H) | dtype | " + " | ".join(names) + " | others' CPU |",
             "|---|---|" + "---:|" * (len(names) + 1)]
    groups = {}
    for r in rows:
        groups.setdefault((r["size"], r["dtype"]), {})[r["contender"]] = r
    for (size, dtype), by_name in groups.items():
        r0 = next(iter(by_name.values()))
        cells = []
        for name in names:
            r = by_name.get(name)
            cell = _ms(r.get("median_s")) if r else "n/a"
            if r and r["available"] and not r["check"]["ok"]:
                cell += " (!)"
            cells.append(cell)
        lines.append(f"| {size} ({r0['B']}, {r0['T']}, {r0['D']}, {r0['H']}) | {dtype} | "
                     + " | ".join(cells) + f" | {_num(r0.get('others_cpu'))} |")
    return "\n".join(lines)


DETAIL_COLUMNS = ["size", "dtype", "contender", "median ms", "IQR ms", "n", "x torch", "x bptt",
                  "GFLOP/s", "% peak", "mem MiB (tracemalloc)", "mem MiB (RSS)", "1st call ms",
                  "check"]


def detail_table(rows):
    """Every contender at every size and dtype, one row each."""
    lines = ["| " + " | ".join(DETAIL_COLUMNS) + " |",
             "|---|---|---|" + "---:|" * (len(DETAIL_COLUMNS) - 4) + "---|"]
    for r in rows:
        cells = [r["size"], r["dtype"], r["contender"], _ms(r.get("median_s")),
                 _ms(r.get("iqr_s")), str(r.get("n", "n/a")), _num(r.get("ratio_torch")),
                 _num(r.get("ratio_bptt")), _num(r.get("gflops"), "{:.3g}"),
                 _pct(r.get("peak_fraction")), _mib(r.get("mem_tracemalloc_bytes")),
                 _mib(r.get("mem_rss_bytes")), _ms(r.get("first_call_s")), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _kernel_text(blas):
    """numpy's BLAS kernel as threadpoolctl (or OpenBLAS itself) reports it."""
    pools = blas.get("threadpoolctl")
    if pools:
        p = pools[0]
        return (f"kernel {p.get('architecture') or 'n/a'} (threadpoolctl: {p['internal_api']} "
                f"{p.get('version')}, {p.get('threading_layer')})")
    if blas.get("openblas_core"):
        return f"kernel {blas['openblas_core']} (OpenBLAS's openblas_get_corename)"
    return "kernel not reported (threadpoolctl is not installed)"


def pin_text(env):
    """One sentence: was the OpenBLAS pin in effect for this run."""
    if not env:
        return "OpenBLAS pin: not recorded"
    fmt = lambda d: ", ".join(f"{k}={v}" for k, v in d.items())   # noqa: E731
    if env["pin_in_effect"]:
        return (f"OpenBLAS pin **in effect**: {fmt(env['pin_in_effect'])} "
                "(pinned run: numpy's BLAS held to that kernel)")
    if env["pin_removed"]:
        return (f"OpenBLAS pin removed for this run: {fmt(env['pin_removed'])} set in the "
                "calling environment, unset in the child process that timed (numpy's BLAS "
                "picks its kernel for this CPU, as on users' machines)")
    return (f"OpenBLAS pin: none ({' and '.join(env['pin_vars'])} unset; numpy's BLAS picks "
            "its kernel for this CPU)")


def _torch_text(tk):
    pools = ", ".join(f"{p['internal_api']} {p['num_threads']} threads"
                      for p in tk.get("thread_pools") or [])
    return (f"CPU capability {tk.get('cpu_capability', 'n/a')}, BLAS {tk.get('blas', 'n/a')}"
            + (f" {tk['mkl_version']}" if tk.get("mkl_version") else "")
            + (", oneDNN" if tk.get("mkldnn") else "")
            + f", {tk['threads']} threads" + (f" ({pools})" if pools else ""))


def render(result):
    """The whole markdown report."""
    m, v = result["machine"], result["versions"]
    blas = m["blas"]
    layers = result.get("num_layers", 1)
    model = "" if layers == 1 else f" of a {layers}-layer LSTM"
    out = [(f"## lstm_ag: one training step{model} (forward + all gradients, linear readout, "
            "MSE at every step)"), ""]
    out.append(f"- machine: {m['cpu']}, {m['cores']} cores ({m['usable_cpus']} usable), "
               f"{m['memory_gib']} GiB, {m['os']}, Python {m['python']}")
    out.append(f"- numpy BLAS: {blas.get('name')} {blas.get('version')}, "
               + _kernel_text(blas) + f", {blas.get('threads')} threads")
    out.append("- " + pin_text(result.get("environment")))
    if result.get("torch_kernels"):
        out.append("- torch kernels: " + _torch_text(result["torch_kernels"]))
    vs = ", ".join(f"{k} {val}" for k, val in v.items() if val and k != "git_commit")
    out.append(f"- versions: {vs}" + (f"; commit {v['git_commit']}" if v.get("git_commit") else ""))
    th = result["threads"]
    out.append(f"- threads: numpy BLAS {th['numpy_blas']}"
               + (f", torch {th['torch']}" if th.get("torch") else "")
               + (", jax: XLA's default (all usable CPUs)" if "jax" in v else ""))
    pk = result["matmul_peak"]
    when = "at the start of the run" if pk.get("end") is None else "best of start and end of run"
    out.append(f"- matmul peak (np.matmul {pk['n']}x{pk['n']}, best of {pk['repeats']}, {when}): "
               + ", ".join(f"{d} {pk['gflops'][d]:.1f} GFLOP/s" for d in pk["gflops"]))
    for lib in ("torch", "jax"):
        if pk.get(lib):
            out.append(f"- {lib}.matmul peak (same sizes, for reference): "
                       + ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in pk[lib].items()))
    la, busy = result["load_average"], result["others_cpu_max"]
    out.append(f"- load average (1 min) at start {_num(la['start'])}, at end {_num(la['end'])}; "
               + (f"other processes used up to {busy:.2f} CPUs during a size/dtype group; "
                  if busy is not None else "")
               + f"run took {result['elapsed_s']:.0f} s"
               + (" (--quick)" if result["quick"] else ""))
    if busy is not None and busy > BUSY:
        out.append(f"- **WARNING: the machine was busy** (other processes used up to {busy:.2f} "
                   "CPUs). Multi-threaded BLAS and OpenMP wait for threads that another "
                   "process keeps off the CPU: small matmuls can slow down by 100x. Rerun on "
                   "an idle machine, or with --threads 1.")
    avail = result["availability"]
    if layers != 1:
        out.append(f"- layers: {layers} stacked (lstm_ag.init_params(..., num_layers={layers}); "
                   f"torch nn.LSTM(D, H, num_layers={layers}) with the same weights)")
    out.append("- contenders: " + ", ".join(
        f"{n}" + ("" if avail[n] == "ok" else f" ({avail[n]})") for n in avail))
    agree = "all agree" if result["checks_ok"] else "SOME DISAGREE (marked (!) / DISAGREES)"
    out.append(f"- loss and gradients checked against lstm_ag autograd at setup: {agree}")
    out += ["", "### Median time per step (ms)", "", summary_table(result["results"],
                                                                    result["contenders"])]
    out += ["", "### Details", "", detail_table(result["results"])]
    if result.get("pinned"):
        out += ["", *render_pinned(result)]
    if result.get("sweep"):
        out += ["", f"Sweep for the plot ({result['sweep']['dtype']}, median ms):", ""]
        out.append(summary_table(result["sweep"]["results"], result["contenders"]))
    return "\n".join(out) + "\n"


def render_pinned(result):
    """The secondary section of a ``--compare-pinned`` run: the pinned run's kernel, peak,
    table, and its times over the unpinned ones."""
    pinned = result["pinned"]
    env, blas = pinned.get("environment") or {}, pinned["machine"]["blas"]
    pin = ", ".join(f"{k}={v}" for k, v in (env.get("pin_in_effect") or {}).items())
    out = [f"### Secondary: pinned ({pin or 'no pin'}), median time per step (ms)", "",
           ("The same suite in a child process that kept the pin, timed size by size "
            "alternately with the unpinned run above."), "",
           f"- numpy BLAS: {_kernel_text(blas)}, {blas.get('threads')} threads",
           "- matmul peak: " + ", ".join(f"{d} {g:.1f} GFLOP/s"
                                          for d, g in pinned["matmul_peak"]["gflops"].items()),
           "", summary_table(pinned["results"], pinned["contenders"]), "",
           "Pinned median / unpinned median (> 1: the pin makes it slower):", "",
           ratio_table(pinned["results"], result["results"], pinned["contenders"])]
    return out


def ratio_table(rows, base_rows, names):
    """``rows``' medians over ``base_rows``' at the same size, dtype and contender."""
    base = {(r["size"], r["dtype"], r["contender"]): r.get("median_s") for r in base_rows}
    lines = ["| size | dtype | " + " | ".join(names) + " |",
             "|---|---|" + "---:|" * len(names)]
    groups = {}
    for r in rows:
        groups.setdefault((r["size"], r["dtype"]), {})[r["contender"]] = r
    for (size, dtype), by_name in groups.items():
        cells = []
        for name in names:
            t = (by_name.get(name) or {}).get("median_s")
            ref = base.get((size, dtype, name))
            cells.append(_num(t / ref) if t and ref else "n/a")
        lines.append(f"| {size} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --- peaks and plot -------------------------------------------------------------------------

def _peer_matmuls(peers):
    """``lib -> make_matmul`` for the ``peers`` that ran (for :func:`machine.matmul_peak`)."""
    out = {}
    if "torch" in peers:
        torch = sys.modules["torch"]

        def torch_mm(a, b):
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            tc = torch.empty_like(ta)
            return lambda: torch.matmul(ta, tb, out=tc)
        out["torch"] = torch_mm
    if "jax" in peers:
        jax = sys.modules["jax"]

        def jax_mm(a, b):
            ja, jb = jax.numpy.asarray(a), jax.numpy.asarray(b)
            mm = jax.jit(jax.numpy.matmul)
            return lambda: mm(ja, jb).block_until_ready()
        out["jax"] = jax_mm
    return out


def _measure_peaks(dtypes, n, repeats):
    return {d: machine.matmul_peak(np.dtype(d), n, repeats)[0] for d in dtypes}


def plot_sweep(sweep, path):
    """Median time against T and against H, log-log, one line per contender."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "T", "sweep_T"), (axes[1], "H", "sweep_H")):
        rows = [r for r in sweep["results"] if r["size"].startswith(label)]
        for name in sweep["contenders"]:
            pts = sorted((r[key], r["median_s"], r.get("q25_s", r["median_s"]),
                          r.get("q75_s", r["median_s"])) for r in rows
                         if r["contender"] == name and r.get("median_s"))
            if pts:
                x, med, lo, hi = (np.asarray(v) * (1 if i == 0 else 1e3)
                                  for i, v in enumerate(zip(*pts, strict=True)))
                ax.errorbar(x, med, yerr=[med - lo, hi - med], marker="o", capsize=2,
                            label=name)
        fixed = sweep["fixed_T"] if key == "T" else sweep["fixed_H"]
        ax.set(xscale="log", yscale="log", xlabel=key,
               ylabel="ms per training step (median, bars: IQR)",
               title=f"time vs {key} ({fixed}, {sweep['dtype']})")
        ticks = sorted({r[key] for r in rows})
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_sweep(names, dtype, settings, num_layers=1):
    results = []
    for label, shapes in (("sweep_T", SWEEP_T), ("sweep_H", SWEEP_H)):
        for shape in shapes:
            key = "T" if label == "sweep_T" else "H"
            size_name = f"{label} {key}={shape[1] if key == 'T' else shape[3]}"
            results += run_group(size_name, dtype, names, dict(settings, min_repeats=3),
                                 shape=shape, memory=False,
                                 budget=settings["sweep_budget"] * len(names),
                                 num_layers=num_layers)
    return {"dtype": dtype, "contenders": list(names), "results": results,
            "fixed_T": "B=32, D=8, H=64", "fixed_H": "B=32, T=100, D=8"}


# --- command line ---------------------------------------------------------------------------

def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _csv(choices, what):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or '(none)'}; choose from {', '.join(choices)}")
        return items
    return parse


def add_grid_options(parser, quick_help):
    """``--quick``, ``--sizes`` and ``--dtypes``, as every command of the suite takes them."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--sizes", type=_csv(list(SIZES), "size"),
                        help=f"comma-separated subset of {','.join(SIZES)} (default: all; "
                             "--quick: tiny)")
    parser.add_argument("--dtypes", type=_csv(list(DTYPES), "dtype"),
                        help="comma-separated subset of float64,float32 (default: both)")


def parse_args(argv=None):
    names = contender_names(peers=True)
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time one LSTM training step (forward + all gradients) by every lstm_ag "
                    "method and by PyTorch eager and JAX jit when installed.")
    add_grid_options(p, "tiny size only, few repeats: a smoke run of a few seconds")
    p.add_argument("--contenders", type=_csv(list(names), "contender"),
                   help=f"comma-separated subset of {','.join(names)} (default: all)")
    p.add_argument("--no-peers", action="store_true",
                   help=f"leave out {' and '.join(PEERS)} (never imported then)")
    p.add_argument("--layers", type=_positive_int, default=1, metavar="N",
                   help="stacked LSTM layers: lstm_ag.init_params(..., num_layers=N), torch "
                        "nn.LSTM(D, H, num_layers=N) with the same weights, jax one lax.scan "
                        "per layer (default 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="JSON output (default: benchmarks/results/latest.json)")
    p.add_argument("--plot", type=Path, metavar="PATH",
                   help="also sweep T and H and plot time against them (log axes) to PATH")
    p.add_argument("--budget", type=float,
                   help="seconds of timed calls per size and dtype, shared by the contenders "
                        f"(default {FULL['budget']:g}; --quick {QUICK['budget']:g})")
    p.add_argument("--threads", type=int,
                   help="threads for numpy's BLAS and for torch (default: leave numpy's BLAS "
                        "as it is and give torch as many); JAX cannot be limited from inside "
                        "(run the suite under taskset for that)")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--pinned", action="store_true",
                     help="time in this process with the environment as it is (keep "
                          f"{' and '.join(machine.PIN_VARS)} if set); by default the timing "
                          "runs in a child process without them, as users' machines run")
    pin.add_argument("--compare-pinned", nargs="?", const="", metavar="CORETYPE",
                     help="run both: size by size, a child without the pin and a child with "
                          "it (the inherited pin, or OPENBLAS_CORETYPE=CORETYPE if given); "
                          "the pinned numbers come as a secondary table")
    p.add_argument(child.CHILD_FLAG, type=child.child_info, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def environment(args):
    """The pin as this process runs: in effect, removed by the parent, where it is timed."""
    info = args.child or {}
    in_effect = machine.pin_in_effect()
    return {"pin_vars": list(machine.PIN_VARS), "pin_in_effect": in_effect,
            "pin_removed": info.get("removed") or {},
            "process": "child" if args.child is not None else "main",
            "mode": "pinned" if in_effect else "unpinned"}


def run(args):
    """Run the suite as configured by ``args``; returns the result dict (also JSON's)."""
    t_start = time.perf_counter()
    settings = dict(QUICK if args.quick else FULL)
    if args.budget is not None:
        settings["budget"] = args.budget
    sizes = args.sizes or (["tiny"] if args.quick else list(SIZES))
    dtypes = args.dtypes or list(DTYPES)
    names = [n for n in contender_names(peers=not args.no_peers)
             if not args.contenders or n in args.contenders]
    if args.threads:
        machine.set_blas_threads(args.threads)
    threads = {"numpy_blas": machine.blas_threads()}
    torch_threads(threads["numpy_blas"])
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    _log(f"matmul peak ({settings['peak_n']}^2) ...")
    peaks_start = _measure_peaks(dtypes, settings["peak_n"], settings["peak_repeats"])
    rows = []
    for size in sizes:
        for dtype in dtypes:
            rows += run_group(size, dtype, names, settings, num_layers=args.layers)

    sweep = None
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _log("matplotlib is not installed: no sweep, no plot")
        else:
            _log(f"sweep for the plot ({dtypes[0]}) ...")
            sweep = run_sweep(names, dtypes[0], settings, num_layers=args.layers)
            plot_sweep(sweep, args.plot)
            _log(f"plot written to {args.plot}")

    peaks_end = (peaks_start if args.quick
                 else _measure_peaks(dtypes, settings["peak_n"], settings["peak_repeats"]))
    peaks = {d: max(peaks_start[d], peaks_end[d]) for d in dtypes}
    _add_ratios(rows, peaks)
    if sweep:
        _add_ratios(sweep["results"], peaks)
    matmul = {"n": settings["peak_n"], "repeats": settings["peak_repeats"], "gflops": peaks,
              "start": peaks_start, "end": None if args.quick else peaks_end}
    ran = {r["contender"] for r in rows if r["available"]}
    peers = [p for p in PEERS if p in ran]
    for lib, make in _peer_matmuls(peers).items():
        matmul[lib] = {d: machine.matmul_peak(np.dtype(d), settings["peak_n"],
                                              settings["peak_repeats"], make)[0] for d in dtypes}
    if "torch" in peers:
        threads["torch"] = sys.modules["torch"].get_num_threads()

    availability = {}
    for name in names:
        status = [r["status"] for r in rows if r["contender"] == name]
        ok = [r for r in rows if r["contender"] == name and r["available"]]
        availability[name] = "ok" if ok else (status[0] if status else "not run")
    checks_ok = all((r["available"] and r["check"]["ok"]) or r["status"].startswith("n/a")
                    for r in rows + (sweep["results"] if sweep else []))
    result = {
        "schema": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick), "sizes": {s: list(SIZES[s]) for s in sizes},
        "num_layers": args.layers,
        "dtypes": dtypes, "contenders": names, "availability": availability,
        "machine": machine.machine_info(),
        "versions": machine.versions(tuple(peers) + (("matplotlib",) if sweep else ())),
        "threads": threads, "environment": environment(args),
        "torch_kernels": machine.torch_kernels() if "torch" in peers else None,
        "matmul_peak": matmul, "settings": settings,
        "load_average": {"start": load_start,
                         "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")},
        "others_cpu_max": max((r["others_cpu"] for r in rows if r.get("others_cpu") is not None),
                              default=None),
        "checks_ok": checks_ok, "results": rows,
        "sweep": sweep, "plot": str(args.plot) if args.plot and sweep else None,
    }
    result["elapsed_s"] = time.perf_counter() - t_start
    return result


def _child_argv(args, size, out, plot=None):
    """The command line of one child of :func:`compare_pinned`: ``args`` at one size."""
    argv = ["--quick"] if args.quick else []
    argv += ["--sizes", size]
    if args.dtypes:
        argv += ["--dtypes", ",".join(args.dtypes)]
    if args.contenders:
        argv += ["--contenders", ",".join(args.contenders)]
    if args.no_peers:
        argv.append("--no-peers")
    if args.layers != 1:
        argv += ["--layers", str(args.layers)]
    if args.budget is not None:
        argv += ["--budget", repr(args.budget)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    argv += ["--out", str(out)]
    if plot:
        argv += ["--plot", str(Path(plot).resolve())]
    return argv


def _merge(parts):
    """One result from several children's (one size each), as if one run had made them."""
    merged = dict(parts[0])
    merged["results"] = [r for part in parts for r in part["results"]]
    merged["sizes"] = {k: v for part in parts for k, v in part["sizes"].items()}
    peak = dict(parts[0]["matmul_peak"], per_size=[part["matmul_peak"] for part in parts])
    for lib in ("gflops", "torch", "jax"):
        values = [part["matmul_peak"].get(lib) for part in parts]
        if all(values):
            peak[lib] = {d: max(v[d] for v in values) for d in values[0]}
    merged["matmul_peak"] = peak
    availability = {}
    for name in merged["contenders"]:
        states = [part["availability"].get(name) for part in parts]
        availability[name] = "ok" if "ok" in states else states[0]
    merged["availability"] = availability
    merged["checks_ok"] = all(part["checks_ok"] for part in parts)
    merged["load_average"] = {"start": parts[0]["load_average"]["start"],
                              "end": parts[-1]["load_average"]["end"]}
    busy = [part["others_cpu_max"] for part in parts if part["others_cpu_max"] is not None]
    merged["others_cpu_max"] = max(busy, default=None)
    merged["elapsed_s"] = sum(part["elapsed_s"] for part in parts)
    swept = [part for part in parts if part.get("sweep")]
    merged["sweep"] = swept[0]["sweep"] if swept else None
    merged["plot"] = swept[0]["plot"] if swept else None
    _add_ratios(merged["results"], peak["gflops"])
    return merged


def compare_pinned(args, command):
    """Run the suite twice, size by size, in child processes: without the pin and with it
    (the order alternates from size to size). Returns ``(exit status, merged result)``,
    the pinned run under ``result["pinned"]``; result is None when a child failed to report."""
    pin = ({"OPENBLAS_CORETYPE": args.compare_pinned} if args.compare_pinned
           else machine.pin_in_effect())
    if not pin:
        _log(f"--compare-pinned: no pin to compare with ({' and '.join(machine.PIN_VARS)} "
             "are unset here); name a kernel, e.g. --compare-pinned Haswell")
        return 2, None
    t_start = time.perf_counter()
    sizes = args.sizes or (["tiny"] if args.quick else list(SIZES))
    parts = {"unpinned": [], "pinned": []}
    worst = 0
    with tempfile.TemporaryDirectory(prefix="lstm_ag_bench_") as tmp:
        for i, size in enumerate(sizes):
            for mode in (("unpinned", "pinned") if i % 2 == 0 else ("pinned", "unpinned")):
                out = Path(tmp) / f"{mode}-{size}.json"
                plot = args.plot if mode == "unpinned" and i == len(sizes) - 1 else None
                _log(f"--- {size}, {mode} (child process) ---")
                status, _ = child.run_child("benchmarks", _child_argv(args, size, out, plot),
                                            pin=pin if mode == "pinned" else None,
                                            command=command)
                if not out.exists():
                    _log(f"the {mode} child at {size} wrote no result (exit status {status})")
                    return status or 1, None
                worst = max(worst, status)
                parts[mode].append(json.loads(out.read_text()))
    result = _merge(parts["unpinned"])
    result["pinned"] = _merge(parts["pinned"])
    result["elapsed_s"] = time.perf_counter() - t_start
    return worst, result


def main(argv=None):
    """Entry point; returns the exit status (0, or 1 when a contender disagrees or fails;
    2 when ``--compare-pinned`` has no pin to compare with)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = " ".join(["python -m benchmarks", *argv])
    if args.child is not None:
        command = args.child.get("command") or "python -m benchmarks (child)"
    if args.compare_pinned is not None:
        status, result = compare_pinned(args, command)
        if result is None:
            return status
    elif args.child is None and not args.pinned and machine.pin_in_effect():
        # OpenBLAS has read the pin already in this process: time in a child without it
        _log(f"timing in a child process without {', '.join(machine.pin_in_effect())}")
        status, text = child.run_child("benchmarks", argv, command=command)
        print(text or "", end="", flush=True)
        return status
    else:
        result = run(args)
        status = 0 if result["checks_ok"] else 1
    result["command"] = command
    text = render(result)
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(_json_safe(result), indent=1, allow_nan=False) + "\n"
    lstm_ag.atomic_write(args.out, lambda file: file.write(payload), mode="w")
    _log(f"JSON written to {args.out}")
    return status
