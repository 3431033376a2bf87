"""check_step on CS231n step pairs: correct ones pass, planted bugs are named.

Each bug is the correct pair of ``lstm_ag/gradcheck/examples/cs231n_step.py`` (gate order i, f,
o, g) with one line changed, as a student would get it wrong; the report must say not ok, locate
it (the exact set of wrong rows, the worst gate or array) and name it in its first sentence.
"""
import numpy as np
import pytest
from students.mutate import load, mutate

import lstm_ag

FILE = "cs231n_step.py"
DZ = {"dx", "dprev_h"}                  # dz @ Wx.T, dz @ Wh.T: wrong whenever a gate's dz is


def rows_of(gates, arrays=("Wx", "Wh", "b")):
    return {f"d{a}[{g}]" for a in arrays for g in gates}


# (id, line of the correct file, the student's line, wrong rows, (worst array, gate), phrase)
STEP_BUGS = [
    ("sigmoid derivative of o missing",
     "do = dnext_h * tanh_c * o * (1 - o)", "do = dnext_h * tanh_c",
     DZ | rows_of("o"), (None, "o"), "Your dz_o is missing the sigmoid's derivative"),
    ("tanh derivative of c taken of tanh(c)",
     "dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)",
     "dc = dnext_c + dnext_h * o * (1 - np.tanh(tanh_c) ** 2)",
     DZ | {"dprev_c"} | rows_of("ifg"), (None, None), "taken of tanh(tanh(c))"),
    ("tanh derivative of g taken of the stored g",
     "dg = dc * i * (1 - g ** 2)", "dg = dc * i * (1 - np.tanh(g) ** 2)",
     DZ | rows_of("g"), (None, "g"), "The candidate's derivative is taken of tanh(g)"),
    ("sigmoid derivative of i taken of the stored i",
     "di = dc * g * i * (1 - i)", "di = dc * g * sigmoid(i) * (1 - sigmoid(i))",
     DZ | rows_of("i"), (None, "i"), "The input gate's derivative is taken of sigmoid(i)"),
    ("i and f swapped in da",
     "da = np.hstack((di, df, do, dg))", "da = np.hstack((df, di, do, dg))",
     DZ | rows_of("if"), (None, "if"), "gates i and f are swapped"),
    ("dWh from next_h",
     "dWh = prev_h.T @ da", "dWh = (o * tanh_c).T @ da",
     rows_of("ifgo", ["Wh"]), ("dWh", None), "dWh is built from next_h"),
    ("db from the first row",
     "db = da.sum(axis=0)", "db = da[0]",
     rows_of("ifgo", ["b"]), ("db", None), "db is taken from the first row of the batch"),
    ("db as a mean over the batch",
     "db = da.sum(axis=0)", "db = da.mean(axis=0)",
     rows_of("ifgo", ["b"]), ("db", None), "1/2 = 1/N: an extra division by N"),
    ("dprev_c without f",
     "dprev_c = dc * f", "dprev_c = dc",
     {"dprev_c"}, ("dprev_c", None), "dprev_c is missing the forget gate"),
    ("dprev_c with the sigmoid derivative of f",
     "dprev_c = dc * f", "dprev_c = dc * f * (1 - f)",
     {"dprev_c"}, ("dprev_c", None), "check dprev_c = dc * f"),
    ("df from next_c instead of prev_c",
     "df = dc * prev_c * f * (1 - f)", "df = dc * next_c * f * (1 - f)",
     DZ | rows_of("f"), (None, "f"), "Your dz_f uses c_t where c_{t-1} is needed"),
    ("dc without o",
     "dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)",
     "dc = dnext_c + dnext_h * (1 - tanh_c ** 2)",
     DZ | {"dprev_c"} | rows_of("ifg"), (None, "ifg"), "Your dc is missing o"),
    ("dc without dnext_c",
     "dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)", "dc = dnext_h * o * (1 - tanh_c ** 2)",
     DZ | {"dprev_c"} | rows_of("ifg"), (None, "ifg"), "i, f and g all come from dc"),
    ("dWx transposed",
     "dWx = x.T @ da", "dWx = da.T @ x",
     rows_of("ifgo", ["Wx"]), ("dWx", None), "dWx: shape (32, 3), expected (3, 32)"),
    ("db not computed",
     "db = da.sum(axis=0)", "db = None",
     rows_of("ifgo", ["b"]), ("db", None), "db: missing"),
]


@pytest.mark.parametrize(("old", "new", "wrong", "worst", "phrase"),
                         [b[1:] for b in STEP_BUGS], ids=[b[0] for b in STEP_BUGS])
def test_planted_step_bug_is_located_and_named(old, new, wrong, worst, phrase):
    student = mutate(FILE, old, new)
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                gate_order="ifog")
    assert not report.ok
    assert all(r.ok for r in report.forward)            # the forward is right: no blame there
    assert {r.name for r in report.rows if not r.ok} == wrong
    array, gates = worst
    if array is not None:
        assert report.worst[0] == array
    if gates is not None:
        assert report.worst[1] in gates
    assert phrase in report.diagnosis[0]
    assert str(report).startswith("diagnosis:\n  - " + report.diagnosis[0])
    assert report.first_bad_length is None


def test_a_step_pair_in_cs231n_order_checked_as_ifgo_blames_the_forward_only():
    student = load(FILE)
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward)
    assert not report.ok and report.rows == []           # no gradient blamed
    assert [r.status for r in report.forward] == ["WRONG", "WRONG"]
    assert report.worst[0] in ("next_h", "next_c")
    assert report.diagnosis == [
        ("Your step_forward reads the 4H axis in gate order 'ifog' (CS231n's order), not "
         "'ifgo': pass gate_order='ifog'. No gradient is blamed before the forward agrees.")]
    assert "forward: your next_h, next_c against lstm_ag's step" in str(report)


def test_a_sigma_2x_sigmoid_is_named_in_the_forward():
    student = mutate(FILE, "return 1 / (1 + np.exp(-x))", "return 0.5 * (np.tanh(x) + 1)")
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                gate_order="ifog")
    assert not report.ok and report.rows == []
    assert report.diagnosis[0].startswith("Your sigmoid is sigma(2x), not sigma(x)")


def test_an_unknown_forward_mistake_points_at_the_equations():
    student = mutate(FILE, "next_c = f * prev_c + i * g", "next_c = f * prev_c + i")
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                gate_order="ifog")
    assert not report.ok and report.rows == []
    assert "your next_c differs from c = f * prev_c + i * g" in report.diagnosis[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("N", "D", "H", "seed"), [(2, 3, 4, 0), (3, 4, 5, 1), (5, 1, 1, 3),
                                                   (4, 7, 16, 3)])
def test_the_correct_pair_passes(N, D, H, seed, dtype):
    student = load(FILE)
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                gate_order="ifog", batch=N, input_size=D, hidden_size=H,
                                dtype=dtype, seed=seed)
    assert report.ok, str(report)
    assert report.diagnosis == [] and report.notes == []
    names = [r.name for r in report.rows]
    assert names == ["dx", "dprev_h", "dprev_c"] + [f"d{a}[{g}]" for a in ("Wx", "Wh", "b")
                                                    for g in "ifgo"]
    assert all(r.status == "ok" for r in report.rows)     # nothing is zero by accident
    assert report.dtype == np.dtype(dtype).name
    assert max(r.rel_autograd for r in report.rows) <= report.tolerances[0]
    assert all(r.fd_ok and r.fd_entries for r in report.rows)
    assert str(report).splitlines()[-1].startswith("OK: worst")


def test_a_correct_float32_pair_with_one_unit_is_no_false_alarm():
    student = load(FILE)
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                gate_order="ifog", batch=5, input_size=1, hidden_size=1,
                                dtype=np.float32, seed=2)
    assert report.ok, str(report)        # today: dWh[g] rel 1.4e-6 vs FD > 1e-6: "NO"


def test_a_float32_pair_with_a_small_planted_error_is_caught():
    student = mutate(FILE, "dg = dc * i * (1 - g ** 2)", "dg = dc * i * (1 - g ** 2) * 1.01")
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                gate_order="ifog", dtype=np.float32)
    assert not report.ok and report.worst[1] == "g"


def test_a_batch_of_one_warns_that_the_batch_sum_is_untested():
    student = mutate(FILE, "db = da.sum(axis=0)", "db = da[0]")
    report = lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                                gate_order="ifog", batch=1)
    assert report.ok                                        # the mistake cannot show at N = 1
    assert any(note.startswith("warning: a batch of one (N = 1)") for note in report.notes)
    assert "warning: a batch of one" in str(report)


def test_bad_arguments_name_themselves():
    student = load(FILE)
    with pytest.raises(ValueError, match="gate_order"):
        lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward,
                           gate_order="ifgx")
    with pytest.raises(ValueError, match="hidden_size"):
        lstm_ag.check_step(student.lstm_step_forward, student.lstm_step_backward, hidden_size=0)
    with pytest.raises(TypeError, match=r"step_backward returned None, expected 6 values"):
        lstm_ag.check_step(student.lstm_step_forward, lambda *a: None, gate_order="ifog")


def test_gradients_returned_in_another_order_are_named():
    student = load(FILE)

    def backward(dnext_h, dnext_c, cache):
        dx, dprev_h, dprev_c, dWx, dWh, db = student.lstm_step_backward(dnext_h, dnext_c, cache)
        return dx, dprev_c, dprev_h, dWx, dWh, db
    report = lstm_ag.check_step(student.lstm_step_forward, backward, gate_order="ifog")
    assert not report.ok
    assert report.diagnosis == [
        ("Your step_backward returns its gradients in another order: (dx, dprev_c, dprev_h, "
         "dWx, dWh, db) where (dx, dprev_h, dprev_c, dWx, dWh, db) is expected; each of them is "
         "right.")]


def test_a_float32_student_given_float64_is_judged_as_float32():
    student = load(FILE)

    def forward(*args):
        return student.lstm_step_forward(*(np.asarray(a, np.float32) for a in args))

    def backward(dnext_h, dnext_c, cache):
        return student.lstm_step_backward(dnext_h.astype(np.float32),
                                          dnext_c.astype(np.float32), cache)
    report = lstm_ag.check_step(forward, backward, gate_order="ifog")
    assert report.ok and report.tolerances == (1e-3, 1e-3)
    assert any("computes in float32" in note for note in report.notes)
