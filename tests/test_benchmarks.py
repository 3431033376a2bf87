"""The benchmark suite runs, reports what it should, and flags a wrong contender.

Nothing here asserts a time: the numbers come from `python -m benchmarks`, never from tests.
The smoke test leaves torch and jax out (`--no-peers`); their agreement with lstm_ag is tested
separately, skipped when they are not installed.
"""
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

from benchmarks import contenders, run  # noqa: E402
from benchmarks.bench_step import TimeStep  # noqa: E402

QUICK = dict(run.QUICK, budget=0.05, min_repeats=2, max_repeats=3, warmup=0.0)


def test_quick_run_table_json_and_checks(tmp_path, capsys):
    out = tmp_path / "quick.json"
    status = run.main(["--quick", "--no-peers", "--out", str(out)])
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


def test_problem_is_seeded_and_typed():
    p1, x1, y1 = contenders.make_problem(2, 4, 3, 5, "float32")
    p2, x2, y2 = contenders.make_problem(2, 4, 3, 5, "float32")
    assert x1.shape == (4, 2, 3) and y1.shape == (4, 2, 1) and x1.dtype == np.float32
    assert p1["Wy"].shape == (5, 1) and all(v.dtype == np.float32 for v in p1.values())
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(p1["Wh"], p2["Wh"])


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
