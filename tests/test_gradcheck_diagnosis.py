"""The checker names the mistake, not the formula: each planted as one line of a student's file.

Every mistake below is one line of ``tests/students/`` changed (``students/mutate.py``), as
students make it; the report must be not ok, locate it (the first wrong length, the wrong
rows) and name it in its first sentence (key words asserted). Each sentence is found by
simulating the mistake with the library's one backward (:func:`lstm_ag.bptt.lstm_backward`
and its hook), so these also test that hook. Then: no false alarm on correct backwards
(float64 and float32, and at H = 256, T = 100, B = 32 under ``-m slow``), a Fortran-ordered
parameter, arguments changed in place, non-finite gradients, LSTM variants.
"""
import numpy as np
import pytest
from students.mutate import load, load_source, mutate, mutated_source

import lstm_ag
from lstm_ag.bptt import lstm_backward
from lstm_ag.cell import SequenceCache
from lstm_ag.gradcheck.check import _candidates
from lstm_ag.gradcheck.compare import Block, Row, blocks, compare_block, permute_gates
from lstm_ag.gradcheck.diagnosis import diagnose, shape_mistake

LOOP, STEP, NOTEBOOK = "sequence_loop.py", "cs231n_step.py", "notebook_001.py"


def rows_of(gates, arrays=("Wx", "Wh", "b")):
    return {f"d{a}[{g}]" for a in arrays for g in gates}


def cs231n_backward(student):
    """CS231n's lstm_forward/lstm_backward as a backward of sum(dhs * hs)."""
    def backward(p, xs, dhs):
        h0 = np.zeros((xs.shape[1], p["Wh"].shape[0]))
        _, cache = student.lstm_forward(xs.transpose(1, 0, 2), h0, p["Wx"], p["Wh"], p["b"])
        return dict(zip(("Wx", "Wh", "b"),
                        student.lstm_backward(dhs.transpose(1, 0, 2), cache)[2:], strict=True))
    return backward


def notebook_backward(LSTM):
    """Notebook 001's class as a backward of sum(dh_last * h_T) in the concat layout."""
    def backward(p, xs, dh):
        net = LSTM(xs.shape[1], dh.shape[0])
        W, b = p["W"], {k: v[:, None] for k, v in p["b"].items()}
        for k in "ifgo":
            setattr(net, "W" + k, W[k].copy()), setattr(net, "b" + k, b[k].copy())
        net.forward(xs), net.backward(dh[:, None], lr=1.0)
        return {"W": {k: W[k] - getattr(net, "W" + k) for k in "ifgo"},
                "b": {k: b[k] - getattr(net, "b" + k) for k in "ifgo"}}
    return backward


def run(kind, student, sizes, dtype=np.float64, seed=3):
    """The check of ``student`` (a module) as ``kind`` at ``sizes``."""
    rng = np.random.default_rng(seed)
    if kind == "step":
        N, D, H = sizes
        return lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                  gate_order="ifog", batch=N, input_size=D, hidden_size=H,
                                  dtype=dtype)
    if kind == "notebook":
        T, D, H = sizes
        params = lstm_ag.init_params(D, H, seed=seed, dtype=dtype)
        xs = rng.standard_normal((T, D)).astype(dtype)
        return lstm_ag.check_gradients(params, xs, backward=notebook_backward(student.LSTM),
                                       upstream="last", layout="concat", fd_samples=4)
    T, B, D, H = sizes
    upstream = {"mse": None, "last": "last", "all": "all", "cs231n": "all"}[kind]
    params = lstm_ag.init_params(D, H, 2 if upstream is None else None, seed=seed, dtype=dtype)
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    ys = rng.standard_normal((T, B, 2)).astype(dtype) if upstream is None else None
    if kind == "cs231n":
        return lstm_ag.check_gradients(params, xs, backward=cs231n_backward(student),
                                       upstream="all", gate_order="ifog", fd_samples=4)
    backward = {None: student.backward_mse, "last": student.backward_last,
                "all": student.backward_all}[upstream]
    return lstm_ag.check_gradients(params, xs, ys, backward=backward, upstream=upstream,
                                   fd_samples=4)


SEQ = (6, 3, 4, 5)              # T, B, D, H
NB = (7, 3, 4)                  # T, D, H of notebook 001's one sequence
PAIR = (3, 4, 5)                # N, D, H of a step
# (id, kind, file, the line, the student's line, sizes, first wrong length (None: a step),
#  the wrong rows there (None: not asserted), key words of the first sentence)
PLANTED = [
    ("dWx = instead of += (loop)", "all", LOOP, "dWx += x.T @ da", "dWx = x.T @ da", SEQ,
     2, rows_of("ifgo", ["Wx"]), ["dWx[i]", "one step alone", "+= instead of ="]),
    ("db = instead of += (loop, MSE)", "mse", LOOP, "db += da.sum(axis=0)",
     "db = da.sum(axis=0)", SEQ, 2, rows_of("ifgo", ["b"]), ["db[i]", "+= instead of ="]),
    ("= instead of += (CS231n)", "cs231n", STEP,
     "dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t", "dWx, dWh, db = dWx_t, dWh_t, db_t",
     SEQ, 2, rows_of("ifgo"), ["one step alone", "+= instead of ="]),
    ("dWf = instead of += (notebook)", "notebook", NOTEBOOK, "dWf += dzf @ z.T",
     "dWf = dzf @ z.T", NB, 2, rows_of("f", ["Wx", "Wh"]),
     ["dWx[f] and dWh[f]", "+= instead of ="]),
    ("loop forward in time (loop)", "all", LOOP, "for t in reversed(range(len(caches))):",
     "for t in range(len(caches)):", SEQ, 2, None, ["runs forward in time", "reversed"]),
    ("loop forward in time (loop, last)", "last", LOOP,
     "for t in reversed(range(len(caches))):", "for t in range(len(caches)):", SEQ, 2, None,
     ["runs forward in time"]),
    ("loop forward in time (CS231n)", "cs231n", STEP, "for t in reversed(range(T)):",
     "for t in range(T):", SEQ, 2, None, ["runs forward in time"]),
    ("loop forward in time (notebook)", "notebook", NOTEBOOK,
     "for t in reversed(range(len(self.cache))):", "for t in range(len(self.cache)):", NB, 2,
     None, ["runs forward in time"]),
    ("dWx without its transpose, B = D", "all", LOOP, "dWx += x.T @ da", "dWx += x @ da",
     (4, 3, 3, 5), 1, rows_of("igo", ["Wx"]), ["dWx[i]", "missing its transpose", "x @ dz"]),
    ("dWh without its transpose, B = H", "all", LOOP, "dWh += h_prev.T @ da",
     "dWh += h_prev @ da", (4, 4, 3, 4), 2, rows_of("ifgo", ["Wh"]),
     ["missing its transpose", "h_prev @ dz"]),
    ("step dWx without its transpose, N = D", "step", STEP, "dWx = x.T @ da", "dWx = x @ da",
     (4, 4, 5), None, rows_of("ifgo", ["Wx"]), ["missing its transpose", "x @ dz"]),
    ("step dWh without its transpose, N = H", "step", STEP, "dWh = prev_h.T @ da",
     "dWh = prev_h @ da", (5, 4, 5), None, rows_of("ifgo", ["Wh"]),
     ["missing its transpose", "prev_h @ dz"]),
    ("dh_next from the last H rows of dz (notebook)", "notebook", NOTEBOOK,
     "dh_next = dz[:self.hidden_size, :]", "dh_next = dz[-self.hidden_size:, :]", NB, 2, None,
     ["wrong rows", "[h; x]", "rows 3:7", "rows 0:4"]),
    ("dh_next from the x rows, D = H (notebook)", "notebook", NOTEBOOK,
     "dh_next = dz[:self.hidden_size, :]", "dh_next = dz[self.hidden_size:, :]", (7, 4, 4), 2,
     None, ["wrong rows", "rows 4:8", "rows 0:4"]),
    ("step dx from the h rows, D = H", "step", STEP, "dx = da @ Wx.T", "dx = da @ Wh.T",
     (3, 5, 5), None, {"dx"}, ["Your dx is rows 0:5", "[h; x]", "dx is rows 5:10"]),
    ("step dprev_h from the x rows, D = H", "step", STEP, "dprev_h = da @ Wh.T",
     "dprev_h = da @ Wx.T", (3, 5, 5), None, {"dprev_h"}, ["Your dprev_h is rows 5:10"]),
    ("the upstream never added (loop)", "all", LOOP, "dh = dhs[t] + dh_next", "dh = dh_next",
     SEQ, 1, None, ["Every gradient of yours is 0", "upstream", "dh = dhs[t] + dh_next"]),
    ("the upstream never added (CS231n)", "cs231n", STEP,
     "step = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])",
     "step = lstm_step_backward(dprev_h, dprev_c, cache[t])", SEQ, 1, None,
     ["Every gradient of yours is 0", "upstream"]),
    ("the upstream of the last step only (loop)", "all", LOOP, "dh = dhs[t] + dh_next",
     "dh = dh_next + (dhs[t] if t == len(caches) - 1 else 0)", SEQ, 2, None,
     ["upstream gradient of each step", "not added", "dh = dhs[t] + dh_next"]),
    ("a weight line wrong, its bias right (notebook)", "notebook", NOTEBOOK,
     "dWf += dzf @ z.T", "dWf += df @ z.T", NB, 2, rows_of("f", ["Wx", "Wh"]),
     ["dWx[f] and dWh[f] are wrong while db[f] is right", "multiplies dz_f",
      "not in the gate's local derivative"]),
    ("a weight line wrong, its bias right (step)", "step", STEP, "dWx = x.T @ da",
     "dWx = x.T @ np.hstack((di, df, do, dc * i))", PAIR, None, rows_of("g", ["Wx"]),
     ["dWx[g] is wrong while db[g] is right", "multiplies dz_g"]),
    ("an extra keepdims (step)", "step", STEP, "db = da.sum(axis=0)",
     "db = da.sum(axis=0, keepdims=True)", PAIR, None, rows_of("ifgo", ["b"]),
     ["could not be compared", "db: shape (1, 20), expected (20,)",
      "db has shape (1, 20) where (20,) is expected: keepdims=True"]),
    ("the backward writes into dhs", "all", LOOP, "dh = dhs[t] + dh_next",
     "dh = dhs[t]; dh += dh_next", SEQ, None, set(),
     ["Your backward changed `dhs` in place"]),
    ("the step forward writes into prev_c", "step", STEP, "next_c = f * prev_c + i * g",
     "prev_c *= f; next_c = prev_c + i * g", PAIR, None, None,
     ["Your step_forward changed `prev_c` in place"]),
    ("the step backward writes into dnext_c", "step", STEP,
     "dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)",
     "dc = dnext_c; dc += dnext_h * o * (1 - tanh_c ** 2)", PAIR, None, set(),
     ["Your step_backward changed `dnext_c` in place"]),
    ("nan gradients", "all", LOOP, "dc_next = np.zeros_like(dhs[0])",
     "dc_next = np.full_like(dhs[0], np.nan)", SEQ, 1, None,
     ["hold nan where the expected gradient is finite"]),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("kind", "file", "old", "new", "sizes", "length", "wrong", "words"),
                         [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED])
def test_a_planted_mistake_is_located_and_named(kind, file, old, new, sizes, length, wrong,
                                                words, dtype):
    report = run(kind, mutate(file, old, new), sizes, dtype=dtype)
    assert not report.ok
    assert report.first_bad_length == length
    if wrong is not None:
        rows = report.bad_rows if length is not None else report.rows
        assert {r.name for r in rows if not r.ok} == wrong
    first = report.diagnosis[0]
    for word in words:
        assert word in first, (word, report.diagnosis)
    assert "times the expected one" not in " ".join(report.diagnosis)


def test_the_misleading_sentences_of_before_are_gone():
    """The three sentences the issue quotes, for = instead of +=, a loop run forward and a
    product missing its transpose while the bias is right."""
    said = [run("all", mutate(LOOP, "dWx += x.T @ da", "dWx = x.T @ da"), SEQ).diagnosis[0],
            run("all", mutate(LOOP, "for t in reversed(range(len(caches))):",
                              "for t in range(len(caches)):"), SEQ).diagnosis[0],
            run("all", mutate(LOOP, "dWx += x.T @ da", "dWx += x @ da"), (4, 3, 3, 5))
            .diagnosis[0]]
    assert not any("the first step alone" in s or "the hidden path" in s
                   or "local derivative is the place to look" in s for s in said), said


# ------------------------------------------------ dh0 taken from the upstream (a dh0 row)

def test_dh0_taken_from_the_upstream_is_named():
    """CS231n's lstm_backward returning dh[:, 0] as dh0: the sentence, from the row ``dh0``
    (the checker's rows for the initial state's gradient) and the simulated candidates."""
    T, B, D, H = SEQ
    rng = np.random.default_rng(0)
    params = lstm_ag.init_params(D, H, seed=0)
    xs, dhs = rng.standard_normal((T, B, D)), rng.standard_normal((T, B, H))
    student = mutate(STEP, "return dx, dprev_h, dWx, dWh, db",
                     "return dx, dh[:, 0], dWx, dWh, db")
    weights = [permute_gates(params[k], "ifgo", "ifog") for k in ("Wx", "Wh", "b")]

    def dh0_of(module):
        _, cache = module.lstm_forward(xs.transpose(1, 0, 2), np.zeros((B, H)), *weights)
        return module.lstm_backward(dhs.transpose(1, 0, 2), cache)[1]
    given, expected = dh0_of(student), dh0_of(load(STEP))
    zeros = np.zeros((B, H))
    cache = SequenceCache.run(params["Wx"], params["Wh"], params["b"], xs, zeros, zeros)
    assert np.allclose(expected, lstm_backward(dhs, cache)["h0"], rtol=1e-12)
    row = compare_block(Block("dh0", "h0", None, lambda a: a), given, expected, 1e-10)
    assert row.status == "WRONG"
    candidates = _candidates(params, xs, dhs, np.zeros((B, H)), np.zeros((B, H)), None, "all",
                             T, ["Wx", "Wh", "b"])
    first = diagnose([row], kind="sequence", first_bad_length=1, candidates=candidates)[0]
    assert first.startswith("Your dh0 is the upstream gradient of step 0")
    assert "carried back out of step 0" in first


def test_dx_from_the_wrong_rows_is_named_in_a_sequence():
    """CS231n's lstm_backward whose step takes dx = da @ Wh.T (D = H): the sentence, from a
    row ``dxs`` (the checker's rows for the inputs' gradient) and the simulated candidates."""
    T, B, D, H = 4, 3, 5, 5
    rng = np.random.default_rng(2)
    params = lstm_ag.init_params(D, H, seed=2)
    xs, dhs = rng.standard_normal((T, B, D)), rng.standard_normal((T, B, H))
    weights = [permute_gates(params[k], "ifgo", "ifog") for k in ("Wx", "Wh", "b")]

    def dxs_of(module):
        _, cache = module.lstm_forward(xs.transpose(1, 0, 2), np.zeros((B, H)), *weights)
        return module.lstm_backward(dhs.transpose(1, 0, 2), cache)[0].transpose(1, 0, 2)
    given = dxs_of(mutate(STEP, "dx = da @ Wx.T", "dx = da @ Wh.T"))
    row = compare_block(Block("dxs", "xs", None, lambda a: a), given, dxs_of(load(STEP)),
                        1e-10)
    zeros = np.zeros((B, H))
    candidates = _candidates(params, xs, dhs, zeros, zeros, None, "all", T,
                             ["Wx", "Wh", "b"])
    first = diagnose([row], kind="sequence", first_bad_length=1, candidates=candidates)[0]
    assert first.startswith("dx is taken from the wrong rows of the gradient of the "
                            "concatenated input [h; x]")
    assert "yours is rows 0:5, the gradient of x_t is rows 5:10" in first


def test_a_product_on_the_concatenated_input_missing_its_transpose_is_named():
    """One matrix per gate on [h; x] (deeplearning.ai's dWf = dft @ concat, without .T),
    which fits when the batch B = H + D; the bias is right."""
    text = mutated_source(LOOP, "dWx += x.T @ da",
                          "wrong = np.hstack((h_prev, x)) @ da; dWx += wrong[Wh.shape[0]:]")
    student = load_source(text.replace("dWh += h_prev.T @ da", "dWh += wrong[:Wh.shape[0]]"),
                          "concat")
    report = run("all", student, (4, 5, 2, 3))
    assert not report.ok
    assert report.diagnosis[0].startswith("Your dWx[i], ")
    assert "missing its transpose, [h_prev; x] @ dz" in report.diagnosis[0]


# ------------------------------------------------ shapes: the sentence for the row

@pytest.mark.parametrize(("problem", "words"), [
    ("shape (5,), expected (5, 1)", "a sum without keepdims=True"),
    ("shape (1, 20), expected (20,)", "keepdims=True (or a column vector)"),
    ("shape (20, 4), expected (4, 20)", "it is transposed"),
    ("shape (3, 20), expected (20,)", "a sum over too few axes"),
])
def test_a_wrong_shape_is_explained(problem, words):
    assert words in shape_mistake("dbf", problem)
    row = Row("dbf", "b", None, 5, "bad shape", problem=problem)
    sentences = diagnose([row], kind="sequence")
    assert sentences[0].startswith("Your backward's gradients could not be compared (dbf: ")
    assert words in sentences[0]


def test_no_sentence_for_a_shape_without_a_usual_mistake():
    assert shape_mistake("dWx", "shape (7, 3, 2), expected (4, 20)") is None
    assert shape_mistake("dWx", "a str, not an array") is None


# ------------------------------------------------ no false alarm

CORRECT = [("mse", LOOP, (5, 3, 4, 5)), ("last", LOOP, (5, 2, 3, 4)), ("all", LOOP, (4, 3, 3, 3)),
           ("cs231n", STEP, (4, 2, 3, 5)), ("notebook", NOTEBOOK, (6, 3, 4)),
           ("step", STEP, (3, 4, 5)), ("step", STEP, (4, 4, 4))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("kind", "file", "sizes"), CORRECT,
                         ids=[f"{k}-{'x'.join(map(str, s))}" for k, _, s in CORRECT])
def test_no_false_alarm_on_a_correct_backward(kind, file, sizes, dtype):
    report = run(kind, load(file), sizes, dtype=dtype, seed=sum(sizes))
    assert report.ok, str(report)
    assert report.diagnosis == []


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_false_alarm_at_the_largest_size(dtype):
    T, B, D, H = 100, 32, 8, 256
    rng = np.random.default_rng(7)
    params = lstm_ag.init_params(D, H, 2, seed=7, dtype=dtype)
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    ys = rng.standard_normal((T, B, 2)).astype(dtype)
    for backward in (None, load(LOOP).backward_mse):
        report = lstm_ag.check_gradients(params, xs, ys, backward=backward, fd_samples=2)
        assert report.ok, str(report)


# ------------------------------------------------ memory order, in place, non-finite

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_fortran_ordered_parameter_is_no_false_alarm(dtype):
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((4, 3, 2)).astype(dtype)
    ys = rng.standard_normal((4, 3, 2)).astype(dtype)
    P = lstm_ag.init_params(2, 5, 2, seed=0, dtype=dtype)
    P["Wx"] = np.asfortranarray(P["Wx"])
    assert lstm_ag.check_gradients(P, xs, ys).ok
    P["Wh"] = np.ascontiguousarray(P["Wh"].T).T              # W.T of a C array: Fortran order
    assert not P["Wh"].flags.c_contiguous
    report = lstm_ag.check_gradients(P, xs, ys, fd_samples=64)
    assert report.ok, str(report)
    assert all(r.fd_entries for r in report.rows)


def test_the_callers_arrays_are_unchanged_by_a_backward_that_writes_into_them():
    T, B, D, H = SEQ
    rng = np.random.default_rng(1)
    params = lstm_ag.init_params(D, H, seed=1)
    xs, dhs = rng.standard_normal((T, B, D)), rng.standard_normal((T, B, H))
    copies = [xs.copy(), dhs.copy(), {k: v.copy() for k, v in params.items()}]
    student = mutate(LOOP, "dh = dhs[t] + dh_next", "dh = dhs[t]; dh += dh_next")
    report = lstm_ag.check_gradients(params, xs, dhs, backward=student.backward_all,
                                     upstream="all")
    assert not report.ok and report.first_bad_length is None     # its gradients are right
    assert all(r.ok for r in report.rows)
    assert report.diagnosis[0].startswith("Your backward changed `dhs` in place")
    assert np.array_equal(xs, copies[0]) and np.array_equal(dhs, copies[1])
    assert all(np.array_equal(params[k], copies[2][k]) for k in params)


def test_a_backward_that_writes_into_its_params_is_named_with_the_key():
    rng = np.random.default_rng(0)
    params = lstm_ag.init_params(3, 4, 2, seed=0)
    xs, ys = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 2))
    kept = params["Wh"].copy()

    def backward(p, xs, ys):
        loss, grads = lstm_ag.value_and_grad(p, xs, ys, method="bptt")
        p["Wh"][0, 0] += 1.0                        # after its gradients: they are right
        return loss, grads
    report = lstm_ag.check_gradients(params, xs, ys, backward=backward)
    assert not report.ok and all(r.ok for r in report.rows)
    assert report.diagnosis[0].startswith("Your backward changed `params['Wh']` in place")
    assert np.array_equal(params["Wh"], kept)       # the caller's own array is untouched


def test_inf_gradients_are_named_as_such():
    student = mutate(LOOP, "dc_next = np.zeros_like(dhs[0])",
                     "dc_next = np.full_like(dhs[0], np.inf)")
    with np.errstate(invalid="ignore"):             # inf * 0 in the student's own code
        report = run("all", student, SEQ)
    assert not report.ok
    assert "hold inf" in report.diagnosis[0] or "hold nan and inf" in report.diagnosis[0]


# ------------------------------------------------ variants named, not blamed

COUPLED = ("f = sigmoid(a[:, H:2 * H])", "f = 1 - i")


def test_a_coupled_forget_gate_is_named_and_its_backward_checked_against_its_forward():
    report = run("step", mutate(STEP, *COUPLED), PAIR)
    assert not report.ok
    assert report.diagnosis[0].startswith("Your step_forward couples the forget gate to the "
                                          "input gate, f = 1 - i")
    assert "not a mistake if you meant it" in report.diagnosis[0]
    # the standard backward is not the variant's: wrong against the student's own forward
    wrong = {r.name for r in report.rows if not r.ok}
    assert wrong == {"dx", "dprev_h"} | rows_of("if")
    assert "your step_backward is wrong in dx, dprev_h, dWx[i]" in report.diagnosis[1]


def test_a_coupled_forget_gate_with_its_own_right_backward_agrees_with_its_forward():
    text = mutated_source(STEP, *COUPLED)
    text = text.replace("di = dc * g * i * (1 - i)", "di = dc * (g - prev_c) * i * (1 - i)")
    text = text.replace("df = dc * prev_c * f * (1 - f)", "df = 0 * dc")
    student = load_source(text, "coupled")
    report = run("step", student, PAIR)
    assert not report.ok                                  # not lstm_ag's forward, said so
    assert "couples the forget gate" in report.diagnosis[0]
    assert report.diagnosis[1].startswith("Your step_backward agrees with your own "
                                          "step_forward")
    assert all(r.ok for r in report.rows) and len(report.rows) == 15


@pytest.mark.parametrize(("old", "new", "words"), [
    ("i = sigmoid(a[:, :H])", "i = sigmoid(a[:, :H] + 0.5 * prev_c)",
     "(i sees the cell: i = sigmoid(z_i + p_i * prev_c))"),
    ("f = sigmoid(a[:, H:2 * H])", "f = sigmoid(a[:, H:2 * H] - 0.7 * prev_c)",
     "(f sees the cell: f = sigmoid(z_f + p_f * prev_c))"),
    ("o = sigmoid(a[:, 2 * H:3 * H])", "o = sigmoid(a[:, 2 * H:3 * H] + 0.3 * prev_c)",
     "(o sees the cell: o = sigmoid(z_o + p_o * prev_c))"),
])
def test_peephole_connections_are_named(old, new, words):
    report = run("step", mutate(STEP, old, new), PAIR)
    assert not report.ok
    assert report.diagnosis[0].startswith("Your step_forward has peephole connections")
    assert words in report.diagnosis[0]
    assert report.rows                                   # checked against its own forward


def test_a_forward_mistake_that_is_no_variant_names_the_equation_and_blames_no_gradient():
    report = run("step", mutate(STEP, "next_h = o * np.tanh(next_c)", "next_h = o * next_c"),
                 PAIR)
    assert not report.ok and report.rows == []
    assert report.diagnosis[0].startswith("Your next_c agrees with c = f * prev_c + i * g, "
                                          "and your next_h differs from h = o * tanh(c)")


def test_blocks_are_the_checkers_names():
    """The sentences are built from the rows' names (which the styles translate)."""
    assert [b.name for b in blocks(["Wx"])] == ["dWx[i]", "dWx[f]", "dWx[g]", "dWx[o]"]


# ------------------------------------------------ the hook of the one backward

def test_the_hooks_defaults_are_the_backward_and_its_mistakes_differ_only_where_they_should():
    T, B, D, H = 5, 2, 3, 4
    rng = np.random.default_rng(5)
    p = lstm_ag.init_params(D, H, seed=5)
    xs, dhs = rng.standard_normal((T, B, D)), rng.standard_normal((T, B, H))
    h0, c0, dh_last = (rng.standard_normal((B, H)) for _ in range(3))
    cache = SequenceCache.run(p["Wx"], p["Wh"], p["b"], xs, h0, c0)
    right = lstm_backward(dhs, cache, dh_last)
    same = lstm_backward(dhs, cache, dh_last, reverse=True, carry="hc", carry_weights=p["Wh"])
    assert all(np.array_equal(right[k], same[k]) for k in right)
    one = SequenceCache.run(p["Wx"], p["Wh"], p["b"], xs[:1], h0, c0)   # one step: no carry
    base = lstm_backward(dhs[:1], one, dh_last)
    for hook in ({"reverse": False}, {"carry": ""}, {"carry_weights": 0 * p["Wh"]}):
        assert all(np.allclose(base[k], lstm_backward(dhs[:1], one, dh_last, **hook)[k],
                               rtol=1e-14, atol=0) for k in ("Wx", "Wh", "b", "xs", "c0"))
    for hook in ({"reverse": False}, {"carry": "h"}, {"carry": "c"},
                 {"carry_weights": np.concatenate((p["Wh"], p["Wx"]))[D:D + H]}):
        wrong = lstm_backward(dhs, cache, dh_last, **hook)
        assert np.allclose(wrong["z"][-1], right["z"][-1], rtol=1e-14) != ("reverse" in hook)
        assert not np.allclose(wrong["Wx"], right["Wx"])
    with pytest.raises(ValueError, match="carry_weights must have Wh's shape"):
        lstm_backward(dhs, cache, carry_weights=p["Wx"])
