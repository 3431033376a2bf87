"""check_gradients on sequence backwards: correct ones pass, planted bugs are located and named.

The students' code is in ``tests/students/``: ``sequence_loop.py`` (a forward loop and a
backward loop, this library's layout, one backward per loss), ``cs231n_step.py`` (CS231n's
``lstm_forward``/``lstm_backward``, gate order i, f, o, g, batch-major) and
``notebook_001.py`` (notebook 001's class, per-gate weights on ``[h; x]``). Each bug is one of
those files with one line changed (``students/mutate.py``).
"""
from functools import partial

import numpy as np
import pytest
from students.mutate import load, mutate

import lstm_ag
from lstm_ag.model import bptt

LOOP = "sequence_loop.py"
# finite differences are the slow half of a check and bugs are caught against autograd: a few
# entries per block here, every entry in the tests of correct backwards that say so
check = partial(lstm_ag.check_gradients, fd_samples=4)
T, B, D, H, O = 6, 3, 4, 5, 2


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    params = lstm_ag.init_params(D, H, O, seed=3)
    return params, rng.standard_normal((T, B, D)), rng.standard_normal((T, B, O))


def rows_of(gates, arrays=("Wx", "Wh", "b")):
    return {f"d{a}[{g}]" for a in arrays for g in gates}


def run(problem, backward, upstream, **kwargs):
    params, xs, ys = problem
    if upstream is not None:
        params = {k: params[k] for k in ("Wx", "Wh", "b")}
    return check(params, xs, ys if upstream is None else None,
                                   backward=backward, upstream=upstream, **kwargs)


# ---------------------------------------------------------------- correct backwards pass

def test_the_library_bptt_passes_with_every_block_listed(problem):
    report = lstm_ag.check_gradients(*problem)
    assert report.ok and report.first_bad_length is None and report.diagnosis == []
    assert [r.name for r in report.rows] == [f"d{p}[{g}]" for p in ("Wx", "Wh", "b")
                                             for g in "ifgo"] + ["dWy", "dby"]
    assert all(r.status == "ok" and r.rel_autograd <= 1e-10 and r.fd_ok for r in report.rows)
    assert all(r.fd_entries == r.size for r in report.rows)        # small: every entry
    assert report.worst[2] == max(r.rel for r in report.rows)
    text = str(report)
    assert text.startswith("gradient check of T=6, backward in float64")
    assert "dWh[o]" in text and text.splitlines()[-1].startswith("OK: worst")


@pytest.mark.parametrize("method", ["fast", "bptt", "autograd"])
def test_value_and_grad_passes(problem, method):
    report = check(
        *problem, backward=lambda p, x, y: lstm_ag.value_and_grad(p, x, y, method=method))
    assert report.ok, str(report)


@pytest.mark.parametrize("upstream", [None, "last", "all"])
@pytest.mark.parametrize(("shape", "seed"), [((1, 2, 1, 1, 1), 0), ((4, 2, 3, 4, 2), 1),
                                             ((9, 5, 2, 7, 3), 2)])
def test_the_students_loop_passes(shape, seed, upstream):
    T_, B_, D_, H_, O_ = shape
    rng = np.random.default_rng(seed)
    params = lstm_ag.init_params(D_, H_, O_ if upstream is None else None, seed=seed)
    xs, ys = rng.standard_normal((T_, B_, D_)), rng.standard_normal((T_, B_, O_))
    student = load(LOOP)
    backward = {None: student.backward_mse, "last": student.backward_last,
                "all": student.backward_all}[upstream]
    report = lstm_ag.check_gradients(params, xs, ys if upstream is None else None,
                                     backward=backward, upstream=upstream, seed=seed,
                                     fd_samples=8)
    assert report.ok, str(report)


@pytest.mark.parametrize(("shape", "seed"), [((3, 2, 2, 3, 1), 0), ((5, 3, 4, 5, 2), 1),
                                             ((7, 4, 3, 8, 2), 5)])
def test_float32_passes(shape, seed):
    T_, B_, D_, H_, O_ = shape
    rng = np.random.default_rng(seed)
    params = lstm_ag.init_params(D_, H_, O_, seed=seed, dtype=np.float32)
    xs = rng.standard_normal((T_, B_, D_)).astype(np.float32)
    ys = rng.standard_normal((T_, B_, O_)).astype(np.float32)
    for backward in (None, lambda p, x, y: lstm_ag.value_and_grad(p, x, y)):
        report = lstm_ag.check_gradients(params, xs, ys, backward=backward, fd_samples=8)
        assert report.ok, str(report)
        assert report.dtype == "float32" and report.tolerances == (1e-3, 1e-3)


def test_a_float32_mistake_of_one_percent_in_one_gate_is_caught(problem):
    params, xs, ys = problem
    p32 = {k: v.astype(np.float32) for k, v in params.items()}

    def off(p, x, y):
        loss, grads = bptt(p, x, y)
        grads["b"] = grads["b"].copy()
        grads["b"][2 * H:3 * H] *= 1.01                          # db[g]
        return loss, grads
    report = check(p32, xs.astype(np.float32), ys.astype(np.float32),
                                     backward=off)
    assert not report.ok and report.worst[:2] == ("db", "g")


def cs231n_backward(student):
    """CS231n's lstm_forward/lstm_backward as a backward of sum(dhs * hs): 4 lines of user code."""
    def backward(p, xs, dhs):                                            # 1
        h0 = np.zeros((xs.shape[1], p["Wh"].shape[0]))                   # 2
        _, cache = student.lstm_forward(xs.transpose(1, 0, 2), h0, p["Wx"], p["Wh"], p["b"])
        return dict(zip(("Wx", "Wh", "b"),                               # 4
                        student.lstm_backward(dhs.transpose(1, 0, 2), cache)[2:], strict=True))
    return backward


def test_cs231n_sequence_pair_passes_with_its_gate_order(problem):
    report = run(problem, cs231n_backward(load("cs231n_step.py")), "all", gate_order="ifog")
    assert report.ok, str(report)


def test_cs231n_sequence_pair_without_its_gate_order_is_told_to_pass_it(problem):
    report = run(problem, cs231n_backward(load("cs231n_step.py")), "all")
    assert not report.ok and report.first_bad_length == 1
    assert "gate_order='ifog'" in report.diagnosis[0]


# ---------------------------------------------------------------- planted bugs

# (id, loss, line of sequence_loop.py, the student's line, first bad length,
#  wrong rows there, worst (array or None, gates or None), a phrase of the first sentence)
SEQ_BUGS = [
    ("no dc_next", "all",
     "dc = dc_next + dh * o * (1 - tanh_c ** 2)", "dc = dh * o * (1 - tanh_c ** 2)",
     2, rows_of("ig", ["Wx", "b"]), (None, "ig"), "with dc_next left out"),
    ("no dh_next", "all", "dh = dhs[t] + dh_next", "dh = dhs[t]",
     2, rows_of("igo", ["Wx", "b"]), (None, "igo"), "with dh_next left out"),
    ("no dh_next, loss at the last step", "last", "dh = dhs[t] + dh_next", "dh = dhs[t]",
     2, rows_of("igo", ["Wx", "b"]), (None, "igo"), "with dh_next left out"),
    ("dc_next without f", "all", "dc_next = dc * f", "dc_next = dc",
     2, rows_of("ig", ["Wx", "b"]), (None, "ig"), "(the forget gate's factor f missing"),
    ("dh_next halved", "all", "dh_next = da @ Wh.T", "dh_next = da @ Wh.T * 0.5",
     2, rows_of("igo", ["Wx", "b"]), (None, "igo"), "the hidden path, dh_prev = dz @ Wh.T"),
    ("dWh from h_t", None, "dWh += h_prev.T @ da", "dWh += h.T @ da",
     1, rows_of("igo", ["Wh"]), ("dWh", None), "dWh is built from h_t"),
    ("df from c_t, an off-by-one state", "all",
     "df = dc * c_prev * f * (1 - f)", "df = dc * c * f * (1 - f)",
     1, rows_of("f", ["Wx", "b"]), (None, "f"), "Your dz_f uses c_t where c_{t-1} is needed"),
    ("the MSE's 2 missing", None, "dys = 2 * err / err.size", "dys = err / err.size",
     1, rows_of("igo", ["Wx", "b"]) | {"dWy", "dby"}, (None, None),
     "It is half: the 2 of d(err**2)/d(err) = 2 err is missing"),
    ("an extra 1/B", None, "dys = 2 * err / err.size", "dys = 2 * err / err.size / len(xs[0])",
     1, rows_of("igo", ["Wx", "b"]) | {"dWy", "dby"}, (None, None),
     "0.333333 times the expected one"),
    ("the loop skips step 0", "all",
     "for t in reversed(range(len(caches))):", "for t in reversed(range(1, len(caches))):",
     1, rows_of("igo", ["Wx", "b"]), (None, None), "Every gradient of yours is 0 at length 1"),
    ("return inside the forward loop (notebook 001)", "last",
     "return np.array(hs), caches", "        return np.array(hs), caches",
     2, rows_of("ifgo"), (None, None), "Your gradients are those of the first step alone"),
    ("i and f swapped in da", "all",
     "da = np.hstack((di, df, dg, do))", "da = np.hstack((df, di, dg, do))",
     1, rows_of("if", ["Wx", "b"]), (None, "if"), "gates i and f are swapped"),
    ("g and o in CS231n's order in da", "all",
     "da = np.hstack((di, df, dg, do))", "da = np.hstack((di, df, do, dg))",
     1, rows_of("go", ["Wx", "b"]), (None, "go"), "gates g and o are swapped"),
    ("sigmoid derivative of o missing", "all",
     "do = dh * tanh_c * o * (1 - o)", "do = dh * tanh_c",
     1, rows_of("o", ["Wx", "b"]), (None, "o"), "Your dz_o is missing the sigmoid's derivative"),
    ("db from the first sequence", None, "db += da.sum(axis=0)", "db += da[0]",
     1, rows_of("igo", ["b"]), ("db", None), "db is taken from the first sequence"),
    ("a misspelt gradient key", None,
     'grads["by"] = dys.sum(axis=(0, 1))', 'grads["b_y"] = dys.sum(axis=(0, 1))',
     1, {"dby"}, ("dby", None), "could not be compared (dby: missing)"),
    ("dWy transposed", None,
     'grads["Wy"] = np.einsum("tbh,tbo->ho", hs, dys)',
     'grads["Wy"] = np.einsum("tbh,tbo->oh", hs, dys)',
     1, {"dWy"}, ("dWy", None), "(dWy: shape (2, 5), expected (5, 2))"),
]


@pytest.mark.parametrize(("upstream", "old", "new", "length", "wrong", "worst", "phrase"),
                         [b[1:] for b in SEQ_BUGS], ids=[b[0] for b in SEQ_BUGS])
def test_planted_sequence_bug_is_located_and_named(problem, upstream, old, new, length, wrong,
                                                   worst, phrase):
    student = mutate(LOOP, old, new)
    backward = {None: student.backward_mse, "last": student.backward_last,
                "all": student.backward_all}[upstream]
    report = run(problem, backward, upstream)
    assert not report.ok
    assert report.first_bad_length == length
    assert {r.name for r in report.bad_rows if not r.ok} == wrong
    array, gates = worst
    if array is not None:
        assert report.worst[0] == array
    if gates is not None:
        assert report.worst[1] in gates
    assert phrase in report.diagnosis[0]
    text = str(report)
    assert text.startswith("diagnosis:\n  - " + report.diagnosis[0])
    assert f"first wrong at length {length}" in text.splitlines()[-1]


def test_a_missing_mean_is_named_with_the_sizes_where_it_is_measured(problem):
    params, xs, ys = problem
    student = mutate(LOOP, "dys = 2 * err / err.size", "dys = 2 * err")
    report = check(params, xs, ys, backward=student.backward_mse)
    assert report.first_bad_length == 1
    # at length 1 the ratio is 1 * B * O = 6; today it is explained as "6 = T", the full T
    assert "6 = T*B*O: the division by T*B*O of the mean is missing" in report.diagnosis[0]


def test_a_wrong_loss_with_right_gradients_is_caught(problem):
    student = mutate(LOOP, "loss = np.mean(err ** 2)", "loss = np.sum(err ** 2)")
    report = run(problem, student.backward_mse, None)
    assert not report.ok and report.first_bad_length == 1
    assert all(r.ok for r in report.rows)
    assert report.diagnosis[0].startswith("The loss your backward returns, 7.38")
    assert "is not the loss it differentiates here, 1.23" in report.diagnosis[0]


# ---------------------------------------------------------------- what the report says

def test_blocks_that_are_exactly_zero_are_not_tested(problem):
    params, xs, ys = problem
    report = check(params, xs[:1], ys[:1])      # length 1, zero state
    assert report.ok
    untested = {r.name for r in report.rows if r.status == "not tested"}
    assert untested == rows_of("ifgo", ["Wh"]) | {"dWx[f]", "db[f]"}
    assert "dWh[i]" not in report.first_tested and report.first_tested["dWx[i]"] == 1
    assert "dWh[i]    " in str(report) and "not tested" in str(report)
    # at T = 2 every block is tested, and the report knows where each first was
    report = lstm_ag.check_gradients(params, xs[:2], ys[:2], fd_samples=4)
    assert report.ok and all(r.status == "ok" for r in report.rows)
    assert report.first_tested["dWh[i]"] == 2 and report.first_tested["dWx[f]"] == 2


def test_a_value_where_zero_is_expected_is_wrong_not_untested(problem):
    params, xs, ys = problem
    student = mutate(LOOP, "dWh += h_prev.T @ da", "dWh += h.T @ da")
    report = check(params, xs[:1], ys[:1], backward=student.backward_mse)
    assert not report.ok
    assert {r.name for r in report.rows if r.status == "WRONG"} == rows_of("igo", ["Wh"])


def test_a_batch_of_one_warns(problem):
    params, xs, ys = problem
    student = mutate(LOOP, "db += da.sum(axis=0)", "db += da[0]")
    report = check(params, xs[:, :1], ys[:, :1],
                                     backward=student.backward_mse)
    assert report.ok                                  # db from the one row is the whole sum
    assert any(n.startswith("warning: a batch of one (B = 1)") for n in report.notes)


def test_the_initial_state_is_passed_through(problem):
    params, xs, ys = problem
    rng = np.random.default_rng(0)
    state = (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    seen = {}

    def backward(p, x, y, state=None):
        seen["state"] = state
        return bptt(p, x, y, state)
    assert check(params, xs, ys, backward=backward, state=state).ok
    assert seen["state"] is state
    ignored = check(params, xs, ys, state=state,
                                      backward=lambda p, x, y, state=None: bptt(p, x, y))
    assert not ignored.ok and ignored.first_bad_length == 1
    assert "dWh[i]" in {r.name for r in ignored.bad_rows if not r.ok}   # tested at length 1


def test_the_mask_is_passed_through(problem):
    params, xs, ys = problem
    mask = np.ones((T, B))
    mask[3:, 0] = 0
    mask[5:, 2] = 0
    report = check(params, xs, ys, mask=mask,
                                     backward=lambda p, x, y, mask: bptt(p, x, y, mask=mask))
    assert report.ok, str(report)
    ignored = check(params, xs, ys, mask=mask,
                                      backward=lambda p, x, y, mask: bptt(p, x, y))
    assert not ignored.ok and ignored.first_bad_length == 4        # the mask starts at t = 3
    with pytest.raises(ValueError, match="mask applies to the readout"):
        check(params, xs, mask=mask, upstream="all")


def test_the_split_layout_round_trips(problem):
    params, xs, _ = problem
    core = {k: params[k] for k in ("Wx", "Wh", "b")}

    def backward(p, x, dhs):                           # a notebook-004 style backward
        grads = load(LOOP).backward_all(lstm_ag.layouts.from_split(**p), x, dhs)
        return lstm_ag.layouts.to_split(grads)
    assert check(core, xs, backward=backward, upstream="all",
                                   layout="split").ok


def test_bad_arguments_name_themselves(problem):
    params, xs, ys = problem
    with pytest.raises(ValueError, match="upstream must be"):
        check(params, xs, ys, upstream="first")
    with pytest.raises(ValueError, match="layout must be one of"):
        check(params, xs, ys, layout="torch")
    with pytest.raises(ValueError, match="targets is required"):
        check(params, xs)
    with pytest.raises(TypeError, match="backward must be a function"):
        check(params, xs, ys, backward="bptt")


# ---------------------------------------------------------------- notebook 001's class

def notebook_backward(LSTM):
    """Notebook 001's class as a backward of sum(dh_last * h_T) in the concat layout."""
    # --- the README's snippet: 7 lines of user code (8 with the check_gradients call) ---
    def backward(p, xs, dh):                                  # p: {"W": {gate: (H, H+D)}, ...}
        net = LSTM(xs.shape[1], dh.shape[0])                                              # 2
        W, b = p["W"], {k: v[:, None] for k, v in p["b"].items()}     # biases as (H, 1)  # 3
        for k in "ifgo":                                                                  # 4
            setattr(net, "W" + k, W[k].copy()), setattr(net, "b" + k, b[k].copy())      # 5
        net.forward(xs), net.backward(dh[:, None], lr=1.0)    # updates: param -= grad    # 6
        return {"W": {k: W[k] - getattr(net, "W" + k) for k in "ifgo"},                   # 7
                "b": {k: b[k] - getattr(net, "b" + k) for k in "ifgo"}}                   # 8
    return backward
    # report = lstm_ag.check_gradients(params, xs, backward=backward, upstream="last",
    #                                  layout="concat")                                   # 9


@pytest.fixture(scope="module")
def one_sequence():
    rng = np.random.default_rng(1)
    return lstm_ag.init_params(3, 4, seed=1), rng.standard_normal((7, 3))


def test_notebook_001_fixed_class_passes(one_sequence):
    notebook = load("notebook_001.py")
    params, xs = one_sequence
    report = lstm_ag.check_gradients(params, xs, backward=notebook_backward(notebook.LSTM),
                                     upstream="last", layout="concat")
    assert report.ok, str(report)
    assert [r.fd_entries for r in report.rows] == [r.size for r in report.rows]


def test_notebook_001_original_class_is_caught_at_length_2(one_sequence):
    notebook = load("notebook_001.py")
    params, xs = one_sequence
    report = check(params, xs,
                                     backward=notebook_backward(notebook.LSTMNotebook),
                                     upstream="last", layout="concat")
    assert not report.ok and report.first_bad_length == 2
    assert all(not r.ok for r in report.bad_rows)
    assert report.diagnosis[0].startswith("Your gradients are those of the first step alone")
    assert "a `return h` inside the loop, as in notebook 001" in report.diagnosis[0]


@pytest.mark.parametrize(("old", "new", "count", "length", "phrase"), [
    ("dco = dh_next * o * dtanh(np.tanh(c)) + dc_next", "dco = dh_next * o * dtanh(c) + dc_next",
     1, 1, "not 1 - c**2"),
    ("dh_next = dz[:self.hidden_size, :]", "dh_next = dz[-self.hidden_size:, :]",
     1, 2, "taken from the wrong rows of the gradient of the concatenated input [h; x]"),
    ("dzo = do * dsigmoid(o)", "dzo = do * dsigmoid(o) * 2", 1, 1,
     ("In the wrong blocks (dWx[o] and db[o]) your gradient is 2 times the expected one: "
      "a missing or extra constant factor, not a wrong formula. Look for a stray constant")),
], ids=["dtanh of c, not of tanh(c)", "dh_next sliced from the x rows", "dzo doubled"])
def test_notebook_001_bugs_are_named(one_sequence, old, new, count, length, phrase):
    params, xs = one_sequence
    student = mutate("notebook_001.py", old, new, count)
    report = check(params, xs, backward=notebook_backward(student.LSTM),
                                     upstream="last", layout="concat")
    assert not report.ok and report.first_bad_length == length
    assert phrase in report.diagnosis[0]
