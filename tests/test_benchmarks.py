"""The benchmark suite runs, reports what it should, and flags a wrong contender.

Nothing here asserts a time: the numbers come from `python -m benchmarks`, never from tests.
The smoke test leaves torch and jax out (`--no-peers`); their agreement with lstm_ag is tested
separately, skipped when they are not installed. The OpenBLAS pin (OPENBLAS_CORETYPE,
OPENBLAS_L2_SIZE) is set or removed per test: with it the runners time in a child process
without it, which the tests check from the child's own report.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstm_ag

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:             # benchmarks/ is not installed, only in the work tree
    sys.path.insert(0, str(ROOT))

from benchmarks import contenders, machine, run, threads  # noqa: E402
from benchmarks.bench_step import TimeStep  # noqa: E402

QUICK = dict(run.QUICK, budget=0.05, min_repeats=2, max_repeats=3, warmup=0.0)


@pytest.fixture
def no_pin(monkeypatch):
    """No OpenBLAS pin in the environment: the runners time in this process."""
    for var in machine.PIN_VARS:
        monkeypatch.delenv(var, raising=False)


def _kernel():
    """The kernel numpy's BLAS runs here (pinning to it is safe on any CPU), or None."""
    pools = machine.blas_info().get("threadpoolctl") or []
    return pools[0]["architecture"] if pools and pools[0]["internal_api"] == "openblas" else None


@pytest.mark.benchmark
def test_quick_run_table_json_and_checks(tmp_path, capsys, no_pin):
    out = tmp_path / "quick.json"
    status = run.main(["--quick", "--no-peers", "--budget", "0.2", "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0
    result = json.loads(out.read_text())

    assert result["quick"] is True and result["checks_ok"] is True
    assert result["sizes"] == {"tiny": [1, 50, 1, 16]}
    assert result["dtypes"] == ["float64", "float32"]
    assert result["contenders"] == list(lstm_ag.METHODS)
    assert set(result["matmul_peak"]["gflops"]) == {"float64", "float32"}
    assert {"cpu", "cores", "blas"} <= set(result["machine"])
    assert {"lstm_ag", "numpy", "autograd"} <= set(result["versions"])
    assert "torch" not in result["versions"] and "jax" not in result["versions"]

    rows = result["results"]
    assert [(r["dtype"], r["contender"]) for r in rows] == [
        (d, m) for d in ("float64", "float32") for m in lstm_ag.METHODS]
    for r in rows:                                       # every method of lstm_ag runs
        assert r["flops"] == contenders.step_flops(1, 50, 1, 16)
        assert r["available"] and r["status"] == "ok" and r["check"]["ok"]
        assert r["n"] == len(r["samples_s"]) >= 3
        assert r["median_s"] > 0 and r["gflops"] > 0 and r["peak_fraction"] > 0
        assert r["mem_tracemalloc_bytes"] > 0              # numpy's arrays are seen
        assert r["ratio_torch"] is None                     # no peers in this run
        assert r["ratio_bptt"] == pytest.approx(r["median_s"] / next(
            b["median_s"] for b in rows if b["dtype"] == r["dtype"] and b["contender"] == "bptt"))
    assert result["availability"] == dict.fromkeys(lstm_ag.METHODS, "ok")
    # written whole through lstm_ag.atomic_write: no temporary file is left beside it
    assert [p.name for p in tmp_path.iterdir()] == ["quick.json"]

    assert "### Median time per step (ms)" in text and "### Details" in text
    header = "| " + " | ".join(run.DETAIL_COLUMNS) + " |"
    assert header in text
    assert text.count("| tiny | float") == len(rows)
    assert "all agree" in text
    assert result["environment"] == {"pin_vars": list(machine.PIN_VARS), "pin_in_effect": {},
                                     "pin_removed": {}, "process": "main", "mode": "unpinned"}
    assert "OpenBLAS pin: none" in text


@pytest.mark.benchmark
def test_default_run_times_in_a_child_without_the_pin(tmp_path, capsys, monkeypatch):
    kernel = _kernel() or "Haswell"      # the pin is never in effect in the timing process
    monkeypatch.setenv("OPENBLAS_CORETYPE", kernel)
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    out = tmp_path / "child.json"
    status = run.main(["--quick", "--no-peers", "--dtypes", "float64", "--budget", "0.05",
                       "--out", str(out)])
    text = capsys.readouterr().out                       # the child's report, relayed
    assert status == 0
    result = json.loads(out.read_text())
    env = result["environment"]
    assert env["process"] == "child" and env["mode"] == "unpinned"
    assert env["pin_in_effect"] == {}                     # the child's own os.environ
    assert env["pin_removed"] == {"OPENBLAS_CORETYPE": kernel, "OPENBLAS_L2_SIZE": "1048576"}
    assert "OpenBLAS_CORETYPE" not in result["machine"]["blas"]
    assert result["command"].startswith("python -m benchmarks --quick --no-peers")
    assert "OpenBLAS pin removed for this run: OPENBLAS_CORETYPE=" in text
    assert "### Median time per step (ms)" in text and result["checks_ok"]


def test_kernel_is_reported(no_pin):
    blas = machine.blas_info()
    pools = blas["threadpoolctl"]                         # threadpoolctl is installed here
    assert pools and all(p["owner"] == "numpy" and p["user_api"] == "blas" for p in pools)
    assert {"internal_api", "version", "architecture", "num_threads"} <= set(pools[0])
    assert blas["internal_api"] == pools[0]["internal_api"]
    if blas["internal_api"] == "openblas":
        assert blas["kernel"] and blas["kernel"] == pools[0]["architecture"]
    line = run._kernel_text(blas)
    assert line.startswith(f"kernel {pools[0]['architecture'] or 'n/a'} (threadpoolctl: ")
    assert "/" not in json.dumps(pools)                   # file names only, no paths


def test_torch_kernels_are_reported():
    pytest.importorskip("torch")
    info = machine.torch_kernels()
    assert info["threads"] >= 1 and info["cpu_capability"]
    assert isinstance(info["thread_pools"], list)
    assert info["cpu_capability"] in run._torch_text(info)


@pytest.mark.benchmark
def test_compare_pinned_runs_both_and_adds_a_secondary_table(tmp_path, capsys, no_pin):
    kernel = _kernel()
    if kernel is None:
        pytest.skip("numpy's BLAS is not OpenBLAS")
    out = tmp_path / "both.json"
    status = run.main(["--quick", "--no-peers", "--dtypes", "float64", "--contenders",
                       "fast,bptt", "--budget", "0.05", "--compare-pinned", kernel,
                       "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0
    result = json.loads(out.read_text())
    pinned = result["pinned"]
    assert result["environment"]["pin_in_effect"] == {}
    assert result["environment"]["process"] == pinned["environment"]["process"] == "child"
    assert pinned["environment"]["pin_in_effect"] == {"OPENBLAS_CORETYPE": kernel}
    assert pinned["machine"]["blas"]["kernel"] == kernel
    assert [(r["size"], r["contender"]) for r in result["results"]] == [
        ("tiny", "fast"), ("tiny", "bptt")]
    assert [r["contender"] for r in pinned["results"]] == ["fast", "bptt"]
    assert all(r["median_s"] > 0 for r in result["results"] + pinned["results"])
    assert f"### Secondary: pinned (OPENBLAS_CORETYPE={kernel})" in text
    assert "Pinned median / unpinned median" in text
    assert text.index("### Median time per step") < text.index("### Secondary")


def test_compare_pinned_without_a_pin_is_a_usage_error(tmp_path, no_pin):
    out = tmp_path / "none.json"
    assert run.main(["--quick", "--no-peers", "--compare-pinned", "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.benchmark
def test_thread_probe_quick(tmp_path, capsys, no_pin):
    before = machine.blas_threads()
    out = tmp_path / "threads.json"
    status = threads.main(["--quick", "--dtypes", "float64", "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0
    assert machine.blas_threads() == before               # the limit is restored afterwards
    result = json.loads(out.read_text())
    assert result["thread_counts"] == [1, 2] and result["loads"] == ["idle", "busy"]
    assert result["environment"]["pin_in_effect"] == {}
    rows = result["results"]
    assert [(r["load"], r["op"]) for r in rows] == [
        (load, op) for load in ("idle", "busy") for op in threads.OPS]
    B, T, D, H = contenders.SIZES["tiny"]
    shapes = {r["op"]: r["shape"] for r in rows}
    assert shapes["h @ Wh"] == f"({B}, {H}) x ({H}, {4 * H})"
    assert shapes["H^T dZ"] == f"({H}, {T * B}) x ({T * B}, {4 * H})"
    assert {r["op"]: r["per_step"] for r in rows}["h @ Wh"] == T
    for r in rows:
        assert set(r["threads"]) == {"1", "2"} and r["best"] in (1, 2)
        assert all(t["median_s"] > 0 and t["n"] >= 3 for t in r["threads"].values())
        assert r["ratio"]["1"] == 1.0
    assert len(result["verdicts"]) == len(threads.OPS)
    assert "### Median time per call" in text and "### Fastest thread count" in text
    assert text.count("| tiny | float64 | `") == len(rows) + len(threads.OPS)


def test_busy_neighbour_is_killed_whatever_happens():
    with pytest.raises(RuntimeError), threads.busy_neighbour(settle=0.0) as proc:
        assert proc.poll() is None
        raise RuntimeError("stop")
    assert proc.poll() is not None


def test_missing_peer_is_na_crash_is_an_error_and_wrong_one_is_flagged(monkeypatch):
    real = lstm_ag.value_and_grad

    def patched(params, xs, targets, *args, method="fast", **kw):
        if method == "fast":                                # a method that crashes
            raise NotImplementedError("not yet")
        loss, grads = real(params, xs, targets, *args, method="autograd", **kw)
        if method == "bptt":                                # a wrong gradient, right loss
            grads = dict(grads, Wh=grads["Wh"] * 1.01)
        return loss, grads

    monkeypatch.setattr(lstm_ag, "value_and_grad", patched)
    monkeypatch.setitem(sys.modules, "torch", None)         # `import torch` fails: not installed
    names = ["fast", "bptt", "autograd", "torch"]
    rows = run.run_group("tiny", "float64", names, QUICK, memory=False)
    fast, bptt, autograd, torch = rows
    assert not fast["available"] and fast["status"] == "ERROR: NotImplementedError: not yet"
    assert bptt["available"] and not bptt["check"]["ok"]
    assert bptt["check"]["worst_grad"] == "Wh" and "DISAGREES" in bptt["status"]
    assert bptt["median_s"] > 0                              # flagged, still timed
    assert autograd["status"] == "ok"
    assert not torch["available"] and torch["status"] == "n/a: torch is not installed"
    assert "median_s" not in fast and "median_s" not in torch
    run._add_ratios(rows, {"float64": 1.0})
    row = run.summary_table(rows, names).splitlines()[2]
    fast_ms, bptt_ms, autograd_ms, torch_ms = [c.strip() for c in row.split("|")[3:7]]
    assert fast_ms == torch_ms == "n/a" and bptt_ms.endswith(" (!)")
    assert float(autograd_ms) > 0


@pytest.mark.benchmark
def test_two_layers_quick_run_agrees_with_the_reference(tmp_path, capsys, no_pin):
    out = tmp_path / "layers2.json"
    status = run.main(["--quick", "--layers", "2", "--budget", "0.05", "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0
    result = json.loads(out.read_text())
    assert result["num_layers"] == 2 and result["checks_ok"] is True
    names = list(lstm_ag.METHODS) + list(contenders.PEERS)
    assert result["contenders"] == names
    installed = [n for n in contenders.PEERS if importlib.util.find_spec(n) is not None]
    rows = result["results"]
    assert [(r["dtype"], r["contender"]) for r in rows] == [
        (d, n) for d in ("float64", "float32") for n in names]
    for r in rows:
        assert r["flops"] == contenders.step_flops(1, 50, 1, 16, num_layers=2)
        if r["contender"] in lstm_ag.METHODS or r["contender"] in installed:
            assert r["available"] and r["status"] == "ok", r["status"]
            assert r["check"]["ok"] and r["median_s"] > 0
        else:
            assert r["status"] == f"n/a: {r['contender']} is not installed"
    # the reference holds the second layer's gradients, under flatten's names
    _, ref = contenders.reference(contenders.SIZES["tiny"], "float64", 2)
    assert {"layers.0.Wx", "layers.0.Wh", "layers.0.b"} <= set(ref)
    assert ref["layers.0.Wx"].shape == (16, 64)
    assert "one training step of a 2-layer LSTM" in text and "- layers: 2 stacked" in text
    assert "all agree" in text


def test_wrong_upper_layer_gradient_is_flagged_by_name(monkeypatch):
    real = lstm_ag.value_and_grad

    def patched(params, xs, targets, *args, method="fast", **kw):
        loss, grads = real(params, xs, targets, *args, method="autograd", **kw)
        if method == "bptt":                                # layer 1's Wh gradient off by 1%
            grads["layers"][0]["Wh"] = grads["layers"][0]["Wh"] * 1.01
        return loss, grads

    monkeypatch.setattr(lstm_ag, "value_and_grad", patched)
    fast, bptt = run.run_group("tiny", "float64", ["fast", "bptt"], QUICK, memory=False,
                               num_layers=2)
    assert fast["check"]["ok"]
    assert not bptt["check"]["ok"] and bptt["check"]["worst_grad"] == "layers.0.Wh"
    assert "DISAGREES: grad layers.0.Wh" in bptt["status"]


def test_asv_class_shape_and_one_step():
    sizes, dtypes, names = TimeStep.params
    assert TimeStep.param_names == ["size", "dtype", "contender"]
    assert sizes == ["tiny", "small", "medium", "large"] and dtypes == ["float64", "float32"]
    assert names[:len(lstm_ag.METHODS)] == list(lstm_ag.METHODS)
    bench = TimeStep()
    bench.setup("tiny", "float32", "autograd")
    bench.time_step("tiny", "float32", "autograd")
    assert bench.case.check.ok and bench.case.size == (1, 50, 1, 16)


def test_step_flops_counts_the_matmuls():
    B, T, D, H = 2, 3, 5, 7
    inp, rec, out = 2 * T * B * D * 4 * H, 2 * T * B * H * 4 * H, 2 * T * B * H
    assert contenders.step_flops(B, T, D, H) == 2 * inp + 3 * rec + 3 * out
    # each upper layer: input projection (H wide), its dWx and its input's gradient, and
    # three recurrences
    upper = 3 * (2 * T * B * H * 4 * H) + 3 * rec
    one = 2 * inp + 3 * rec + 3 * out
    assert contenders.step_flops(B, T, D, H, num_layers=3) == one + 2 * upper


def test_problem_is_seeded_and_typed():
    p1, x1, y1 = contenders.make_problem(2, 4, 3, 5, "float32")
    p2, x2, y2 = contenders.make_problem(2, 4, 3, 5, "float32")
    assert x1.shape == (4, 2, 3) and y1.shape == (4, 2, 1) and x1.dtype == np.float32
    assert p1["Wy"].shape == (5, 1) and all(v.dtype == np.float32 for v in p1.values())
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(p1["Wh"], p2["Wh"])
    p3, x3, _ = contenders.make_problem(2, 4, 3, 5, "float32", num_layers=2)
    assert p3["layers"][0]["Wx"].shape == (5, 20) and "layers" not in p1
    np.testing.assert_array_equal(p3["Wh"], p1["Wh"])          # layer 0 and the batch as L=1
    np.testing.assert_array_equal(x3, x1)


@pytest.mark.parametrize("peer", contenders.PEERS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_peer_agrees_with_autograd(peer, dtype):
    pytest.importorskip(peer)
    case = contenders.prepare("tiny", dtype, peer)
    assert case.check.ok, str(case.check)
    # float64 to rounding: loss rel <= 1e-10 and gradients <= 1e-8 of their largest entry
    case.step()


def test_plot_writes_a_file(tmp_path):
    pytest.importorskip("matplotlib")
    results = [{"size": f"sweep_{k} {k}={v}", "contender": name, "T": v if k == "T" else 100,
                "H": v if k == "H" else 64, "median_s": v * m * 1e-4, "iqr_s": 1e-5}
               for k in ("T", "H") for v in (16, 64) for name, m in (("bptt", 1), ("jax", 2))]
    sweep = {"dtype": "float64", "contenders": ["bptt", "jax"], "results": results,
             "fixed_T": "B=32, D=8, H=64", "fixed_H": "B=32, T=100, D=8"}
    path = tmp_path / "plot.png"
    run.plot_sweep(sweep, path)
    assert path.stat().st_size > 1000


def test_runs_as_module_and_as_script():
    for cmd in (["-m", "benchmarks", "--help"], ["benchmarks/__main__.py", "--help"]):
        done = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "--quick" in done.stdout and "--plot" in done.stdout
        assert "--compare-pinned" in done.stdout and "--child" not in done.stdout
    done = subprocess.run([sys.executable, "-m", "benchmarks.threads", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--threads" in done.stdout and "--loads" in done.stdout
