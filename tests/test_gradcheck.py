"""The gradient checker passes a correct backward and names what is wrong in broken ones."""
import subprocess
import sys

import numpy as np
import pytest

import lstm_ag
import lstm_ag.bptt as bptt_module
from lstm_ag.bptt import bptt
from lstm_ag.gradcheck import check_gradients
from lstm_ag.gradcheck.__main__ import main


@pytest.fixture
def problem():
    rng = np.random.default_rng(11)
    params = lstm_ag.init_params(3, 5, 2, seed=11)
    xs = rng.standard_normal((6, 2, 3))
    ys = rng.standard_normal((6, 2, 2))
    return params, xs, ys


def test_correct_backward_passes_with_every_block_listed(problem):
    assert lstm_ag.check_gradients is check_gradients
    report = check_gradients(*problem)
    assert report.ok and report.first_bad_length is None
    names = [r.name for r in report.rows]
    assert names == [f"{p}[{g}]" for p in ("Wx", "Wh", "b") for g in "ifgo"] + ["Wy", "by"]
    assert all(r.rel_autograd <= 1e-10 and r.rel_fd <= 1e-6 for r in report.rows)
    assert all(r.fd_entries == r.size for r in report.rows)       # small model: every entry
    assert report.worst[2] == max(r.rel for r in report.rows)
    text = str(report)
    assert "rel vs autograd" in text and "Wh[o]" in text and text.rstrip().endswith("s)")


def test_fast_path_and_float32_pass(problem):
    params, xs, ys = problem
    assert check_gradients(params, xs, ys,
                           backward=lambda p, x, y: lstm_ag.value_and_grad(p, x, y)).ok
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    report = check_gradients(p32, xs.astype(np.float32), ys.astype(np.float32))
    assert report.ok and report.tolerances == (1e-4, 1e-4)
    assert 0 < report.worst[2] < 1e-4


def test_initial_state_is_checked_too(problem):
    params, xs, ys = problem
    rng = np.random.default_rng(0)
    state = (rng.standard_normal((2, 5)), rng.standard_normal((2, 5)))
    assert check_gradients(params, xs, ys, state=state).ok
    wrong = check_gradients(params, xs, ys, backward=lambda p, x, y: bptt(p, x, y), state=state)
    assert not wrong.ok and wrong.first_bad_length == 1    # ignores the state: wrong at once


def test_wrong_output_gate_derivative_is_caught_at_length_1_in_gate_o(problem, monkeypatch):
    right = bptt_module.local_derivatives

    def forgot_sigmoid_derivative(cache):
        h_c, c_z, h_zo, f = right(cache)
        return h_c, c_z, cache.tanh_c * cache.o, f     # dh/dz_o without o (1 - o)
    monkeypatch.setattr(bptt_module, "local_derivatives", forgot_sigmoid_derivative)
    report = check_gradients(*problem)
    assert not report.ok
    assert report.first_bad_length == 1
    param, gate, rel = report.worst
    assert gate == "o" and param in ("Wx", "Wh", "b") and rel > 1e-3
    bad = {r.name for r in report.bad_rows if not r.ok}
    assert bad and all(name.endswith("[o]") for name in bad)
    assert "first disagreement at sequence length 1" in str(report)


def test_dropped_dc_next_is_caught_from_length_2(problem, monkeypatch):
    right = bptt_module.lstm_step_backward

    def no_dc_next(dh_next, dc_next, cache, dz=None):
        return right(dh_next, np.zeros_like(dc_next), cache, dz)
    monkeypatch.setattr(bptt_module, "lstm_step_backward", no_dc_next)
    report = check_gradients(*problem)
    assert not report.ok and report.first_bad_length == 2
    # the cell path feeds i, f, g (not o) of the earlier step
    assert report.worst[1] in ("i", "f", "g")


def test_notebook_001_first_step_only_backward_is_caught_from_length_2(problem):
    def first_step_only(params, xs, targets):
        # notebook 001: `return h` inside the loop caches only the first step
        return bptt(params, xs[:1], targets[:1])
    report = check_gradients(*problem, backward=first_step_only)
    assert not report.ok and report.first_bad_length == 2


def test_dropped_dh_next_is_caught_from_length_2(problem, monkeypatch):
    right = bptt_module.lstm_step_backward

    def no_dh_prev(dh_next, dc_next, cache, dz=None):
        dz, dh_prev, dc_prev = right(dh_next, dc_next, cache, dz)
        return dz, np.zeros_like(dh_prev), dc_prev
    monkeypatch.setattr(bptt_module, "lstm_step_backward", no_dh_prev)
    report = check_gradients(*problem)
    assert not report.ok and report.first_bad_length == 2


def test_missing_gradient_is_reported(problem):
    def no_readout(params, xs, targets):
        _, grads = bptt(params, xs, targets)
        return {k: v for k, v in grads.items() if k != "by"}
    report = check_gradients(*problem, backward=no_readout)
    assert not report.ok and report.worst[0] == "by"
    assert "by: the backward's gradient is missing" in str(report)


def test_large_model_differences_a_seeded_subset():
    rng = np.random.default_rng(2)
    params = lstm_ag.init_params(20, 16, 1, seed=2)
    xs, ys = rng.standard_normal((3, 1, 20)), rng.standard_normal((3, 1, 1))
    report = check_gradients(params, xs, ys, fd_samples=10)
    assert report.ok
    wx = [r for r in report.rows if r.param == "Wx"]
    assert all(r.fd_entries == 10 and r.size == 320 for r in wx)
    assert "random subset of 10 entries" in str(report)
    again = check_gradients(params, xs, ys, fd_samples=10)
    assert [r.rel_fd for r in again.rows] == [r.rel_fd for r in report.rows]   # seeded


def test_command_line_default_exits_0_and_prints_the_table(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "Wx[i]" in out and "by" in out and "OK: worst" in out


def test_command_line_exits_1_on_a_mismatch(capsys, monkeypatch):
    right = bptt_module.local_derivatives
    monkeypatch.setattr(bptt_module, "local_derivatives",
                        lambda cache: (2 * right(cache)[0],) + right(cache)[1:])
    assert main(["--steps", "3"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_command_line_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "lstm_ag.gradcheck", "--dtype", "float32",
                           "--method", "fast", "--steps", "4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr
    assert "float32" in done.stdout and "OK: worst" in done.stdout


def test_wrongly_shaped_gradient_is_named_once(problem):
    def transposed_wh(params, xs, targets):
        _, grads = bptt(params, xs, targets)
        return {**grads, "Wh": grads["Wh"].T}
    report = check_gradients(*problem, backward=transposed_wh)
    assert not report.ok and report.worst[0] == "Wh"
    assert str(report).count("Wh: the backward's gradient is shape (20, 5)") == 1
