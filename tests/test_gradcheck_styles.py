"""The checker in each course's style: correct backwards pass, planted bugs are located.

Each style's reference file of ``lstm_ag/gradcheck/examples/`` (``dls_cell.py``,
``dls_sequence.py``, ``notebook_001.py``, ``karpathy.py``, ``torch_loop.py``,
``cs231n_step.py``) is checked with no glue (one call); each planted bug is that file with one
line changed as a student writes it (``mutate.py``), and the report must be not ok, with exactly
the expected rows wrong (in the student's names) at exactly the expected first wrong length.
"""
import re

import numpy as np
import pytest
from students.mutate import HERE, load, mutate, mutated_source

import lstm_ag
from lstm_ag.gradcheck.__main__ import main
from lstm_ag.gradcheck.styles import STYLES, StyleMismatch

D, H, T, B = 3, 4, 5, 2                          # D != H: a transpose or a wrong slice shows


def check(style, module, *, dtype=np.float64, sizes=(D, H, T, B), seed=0):
    """The one call a student writes for ``module`` in ``style``."""
    d, h, t, b = sizes
    if style == "dls-cell":
        return lstm_ag.check_step(module.lstm_cell_forward, module.lstm_cell_backward,
                                  style="dls", batch=b, input_size=d, hidden_size=h,
                                  dtype=dtype, seed=seed)
    params = lstm_ag.init_params(d, h, seed=seed, dtype=dtype)
    shape = (t, d) if style == "notebook" else (t, b, d)
    xs = np.random.default_rng(seed + 1).standard_normal(shape).astype(dtype)
    if style == "notebook":
        return lstm_ag.check_gradients(params, xs, backward=module.LSTM, style="notebook")
    if style == "karpathy":
        return lstm_ag.check_gradients(params, xs, forward=module.LSTM.forward,
                                       backward=module.LSTM.backward, style="karpathy")
    return lstm_ag.check_gradients(params, xs, forward=module.lstm_forward,
                                   backward=module.lstm_backward, style=style)


FILES = {"dls-cell": "dls_cell.py", "dls": "dls_sequence.py", "notebook": "notebook_001.py",
         "karpathy": "karpathy.py", "torch": "torch_loop.py", "cs231n": "cs231n_step.py"}
NAMES = {   # a gate's blocks in each style: x (the input's weights), h (the hidden's), b (bias)
    "dls-cell": {"x": "dW{G}[:, n_a:]", "h": "dW{G}[:, :n_a]", "b": "db{G}"},
    "dls": {"x": "dW{G}[:, n_a:]", "h": "dW{G}[:, :n_a]", "b": "db{G}"},
    "notebook": {"x": "dW{g}[:, H:]", "h": "dW{g}[:, :H]", "b": "db{g}"},
    "karpathy": {"x": "dWLSTM[1:1+D, {g}]", "h": "dWLSTM[1+D:, {g}]", "b": "dWLSTM[0, {g}]"},
    "torch": {"x": "weight_ih[{g}]", "h": "weight_hh[{g}]", "b": "bias_ih[{g}]",
              "B": "bias_hh[{g}]"},
    "cs231n": {"x": "dWx[{g}]", "h": "dWh[{g}]", "b": "db[{g}]"},
}
DLS = {"i": "i", "f": "f", "g": "c", "o": "o"}


def rows(style, gates, parts=None, *extra):
    """The row names of ``gates``' blocks ``parts`` (default: all) in ``style``, and ``extra``."""
    names = NAMES[style]
    parts = parts or "".join(names)
    return {names[p].format(g=g, G=DLS[g]) for g in gates for p in parts} | set(extra)


CELL = ("dxt", "da_prev")
RETURN_LINE = ('gradients = {"dxt": dxt, "da_prev": da_prev, "dc_prev": dc_prev, "dWf": dWf, '
               '"dbf": dbf,')                      # dxt, da_prev follow from every gate's dz
# style -> (id, the line of the correct file, the student's line, wrong rows, first length)
BUGS = {
    "dls-cell": [
        ("dbf without keepdims", "dbf = np.sum(dft, axis=1, keepdims=True)",
         "dbf = np.sum(dft, axis=1)", {"dbf"}, None),
        ("dbf summed over the wrong axis", "dbf = np.sum(dft, axis=1, keepdims=True)",
         "dbf = np.sum(dft, axis=0, keepdims=True)", {"dbf"}, None),
        ("dWf transposed", "dWf = np.dot(dft, concat.T)", "dWf = np.dot(concat, dft.T)",
         rows("dls", "f", "xh"), None),
        ("tanh derivative of cct taken again", "dcct = dc * it * (1 - cct ** 2)",
         "dcct = dc * it * (1 - np.tanh(cct) ** 2)", rows("dls", "g", None, *CELL), None),
        ("sigmoid derivative of ot missing", "dot = da_next * np.tanh(c_next) * ot * (1 - ot)",
         "dot = da_next * np.tanh(c_next)", rows("dls", "o", None, *CELL), None),
        ("dc_prev without ft", "dc_prev = dc * ft", "dc_prev = dc", {"dc_prev"}, None),
        ("dft from c_next", "dft = dc * c_prev * ft * (1 - ft)",
         "dft = dc * c_next * ft * (1 - ft)", rows("dls", "f", None, *CELL), None),
        ("tanh derivative at c, not tanh(c)",
         "dc = dc_next + da_next * ot * (1 - np.tanh(c_next) ** 2)",
         "dc = dc_next + da_next * ot * (1 - c_next ** 2)",
         rows("dls", "ifg", None, *CELL, "dc_prev"), None),
        ("dit without it", "dit = dc * cct * it * (1 - it)", "dit = dc * cct * (1 - it)",
         rows("dls", "i", None, *CELL), None),
        ("dbc from the first example", "dbc = np.sum(dcct, axis=1, keepdims=True)",
         "dbc = dcct[:, :1]", {"dbc"}, None),
        ("dxt returned as dx", RETURN_LINE, RETURN_LINE.replace('"dxt"', '"dx"'), {"dxt"},
         None),
    ],
    "dls": [
        ("dWf = instead of +=", 'dWf += gradients["dWf"]', 'dWf = gradients["dWf"]',
         rows("dls", "f", "xh"), 2),
        ("dbi = instead of +=", 'dbi += gradients["dbi"]', 'dbi = gradients["dbi"]',
         {"dbi"}, 2),
        ("time loop run forward", "for t in reversed(range(T_x)):", "for t in range(T_x):",
         rows("dls", "ifgo", None, "dx", "da0"), 2),
        ("da0 from the upstream", "da0 = da_prevt", "da0 = da[:, :, 0]", {"da0"}, 1),
        ("upstream da not added",
         "gradients = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, caches[t])",
         "gradients = lstm_cell_backward(da_prevt, dc_prevt, caches[t])",
         rows("dls", "igo", None, "dx", "da0"), 1),
        ("carried da dropped",
         "gradients = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, caches[t])",
         "gradients = lstm_cell_backward(da[:, :, t], dc_prevt, caches[t])",
         rows("dls", "igo", None, "dx", "da0"), 2),
        ("carried dc dropped", 'dc_prevt = gradients["dc_prev"]',
         "dc_prevt = np.zeros((n_a, m))", rows("dls", "ig", None, "dx", "da0"), 2),
        ("dx stored at the wrong step", 'dx[:, :, t] = gradients["dxt"]',
         'dx[:, :, T_x - 1 - t] = gradients["dxt"]', {"dx"}, 2),
        ("dWo from the first step only", 'dWo += gradients["dWo"]',
         'dWo += gradients["dWo"] * (t == 0)', rows("dls", "o", "xh"), 2),
    ],
    "notebook": [
        ("do from c, not tanh(c)", "do = dh_next * np.tanh(c)", "do = dh_next * c",
         rows("notebook", "o", "xb"), 1),
        ("dc_next left out", "dco = dh_next * o * dtanh(np.tanh(c)) + dc_next",
         "dco = dh_next * o * dtanh(np.tanh(c))", rows("notebook", "ig", "xb"), 2),
        ("df from c, not c_prev", "df = dco * c_prev", "df = dco * c",
         rows("notebook", "f", "xb"), 1),
        ("dzf with tanh's derivative", "dzf = df * dsigmoid(f)", "dzf = df * dtanh(f)",
         rows("notebook", "f") | rows("notebook", "igo", "xb"), 2),
        ("dzg with sigmoid's derivative", "dzg = dg * dtanh(g)", "dzg = dg * dsigmoid(g)",
         rows("notebook", "g", "xb"), 1),
        ("dWf = instead of +=", "dWf += dzf @ z.T", "dWf = dzf @ z.T",
         rows("notebook", "f", "xh"), 2),
        ("dbf = instead of +=", "dbf += dzf", "dbf = dzf", {"dbf"}, 2),
        ("upstream added at every step", "dh_next = dz[:self.hidden_size, :]",
         "dh_next = dz[:self.hidden_size, :] + dL_dh", rows("notebook", "igo", "xb"), 2),
        ("dc_prev with f's derivative", "dc_prev = dco * f", "dc_prev = dco * f * (1 - f)",
         rows("notebook", "ig", "xb"), 2),
        ("dz without the o gate",
         "dz = (self.Wf.T @ dzf + self.Wi.T @ dzi + self.Wg.T @ dzg + self.Wo.T @ dzo)",
         "dz = (self.Wf.T @ dzf + self.Wi.T @ dzi + self.Wg.T @ dzg)",
         rows("notebook", "igo", "xb"), 2),
        ("time loop run forward", "for t in reversed(range(len(self.cache))):",
         "for t in range(len(self.cache)):", rows("notebook", "ifgo"), 2),
        ("dbo summed to a number", "dbo += dzo", "dbo += dzo.sum()", {"dbo"}, 1),
        ("dzi without sigmoid's derivative", "dzi = di * dsigmoid(i)", "dzi = di * i",
         rows("notebook", "i", "xb"), 1),
    ],
    "karpathy": [
        ("o gate without tanh(c)", "dIFOGf[t, :, 2 * d:3 * d] = tanhCt * dHout[t]",
         "dIFOGf[t, :, 2 * d:3 * d] = dHout[t]", rows("karpathy", "o", None, "dX", "dh0"), 1),
        ("tanh derivative without the square",
         "dC[t] += (1 - tanhCt ** 2) * (IFOGf[t, :, 2 * d:3 * d] * dHout[t])",
         "dC[t] += (1 - tanhCt) * (IFOGf[t, :, 2 * d:3 * d] * dHout[t])",
         rows("karpathy", "ifg", None, "dX", "dh0", "dc0"), 1),
        ("dC carried without f", "dC[t - 1] += IFOGf[t, :, d:2 * d] * dC[t]",
         "dC[t - 1] += dC[t]", rows("karpathy", "ifg", None, "dX", "dh0", "dc0"), 2),
        ("dc0 without f", "dc0 = IFOGf[t, :, d:2 * d] * dC[t]", "dc0 = dC[t]", {"dc0"}, 1),
        ("f gate at t = 0 from C[0]", "dIFOGf[t, :, d:2 * d] = c0 * dC[t]",
         "dIFOGf[t, :, d:2 * d] = C[t] * dC[t]", rows("karpathy", "f", None, "dX", "dh0"), 1),
        ("g derivative without the square",
         "dIFOG[t, :, 3 * d:] = (1 - IFOGf[t, :, 3 * d:] ** 2) * dIFOGf[t, :, 3 * d:]",
         "dIFOG[t, :, 3 * d:] = (1 - IFOGf[t, :, 3 * d:]) * dIFOGf[t, :, 3 * d:]",
         rows("karpathy", "g", None, "dX", "dh0"), 1),
        ("dWLSTM = instead of +=", "dWLSTM += np.dot(Hin[t].transpose(), dIFOG[t])",
         "dWLSTM = np.dot(Hin[t].transpose(), dIFOG[t])", rows("karpathy", "ifgo"), 2),
        ("dX from the wrong rows of dHin", "dX[t] = dHin[t, :, 1:input_size + 1]",
         "dX[t] = dHin[t, :, :input_size]", {"dX"}, 1),
        ("dh0 from the upstream", "dh0 += dHin[t, :, input_size + 1:]",
         "dh0 += dHout_in[0]", {"dh0"}, 1),
        ("carried dh replaces the upstream", "dHout[t - 1, :] += dHin[t, :, input_size + 1:]",
         "dHout[t - 1, :] = dHin[t, :, input_size + 1:]",
         rows("karpathy", "ifgo", None, "dX", "dh0", "dc0"), 2),
        ("time loop run forward", "for t in reversed(range(n)):", "for t in range(n):",
         rows("karpathy", "ifgo", None, "dX", "dh0", "dc0"), 2),
        ("sigmoid derivative without 1 - y",
         "dIFOG[t, :, :3 * d] = (y * (1.0 - y)) * dIFOGf[t, :, :3 * d]",
         "dIFOG[t, :, :3 * d] = y * dIFOGf[t, :, :3 * d]",
         rows("karpathy", "ifo", None, "dX", "dh0"), 1),
        ("i gate from i, not g", "dIFOGf[t, :, :d] = IFOGf[t, :, 3 * d:] * dC[t]",
         "dIFOGf[t, :, :d] = IFOGf[t, :, :d] * dC[t]",
         rows("karpathy", "i", None, "dX", "dh0"), 1),
    ],
    "torch": [
        ("carried dh dropped", "dh = doutput[:, t] + dh_next", "dh = doutput[:, t]",
         rows("torch", "ifgo", None, "x", "h0", "c0"), 2),
        ("carried dc dropped", "dc = dc_next + dh * o * (1 - tanh_c ** 2)",
         "dc = dh * o * (1 - tanh_c ** 2)", rows("torch", "ifg", None, "x", "h0", "c0"), 2),
        ("df from c, not c_prev", "df = dc * c_prev * f * (1 - f)",
         "df = dc * c * f * (1 - f)", rows("torch", "f", None, "x", "h0"), 1),
        ("dx stored at the wrong step", "dx[:, t] = dgates @ weight_ih",
         "dx[:, T - 1 - t] = dgates @ weight_ih", {"x"}, 2),
        ("dweight_ih = instead of +=", "dweight_ih += dgates.T @ x_t",
         "dweight_ih = dgates.T @ x_t", rows("torch", "ifgo", "x"), 2),
        ("dweight_hh from c_prev", "dweight_hh += dgates.T @ h_prev",
         "dweight_hh += dgates.T @ c_prev", rows("torch", "ifgo", "h"), 1),
        ("dbias from the first row", "dbias += dgates.sum(axis=0)", "dbias += dgates[0]",
         rows("torch", "ifgo", "bB"), 1),
        ("bias_hh not returned",
         '"weight_hh": dweight_hh, "bias_ih": dbias, "bias_hh": dbias.copy()}',
         '"weight_hh": dweight_hh, "bias_ih": dbias}', rows("torch", "ifgo", "B"), 1),
        ("h0 from the upstream",
         'return {"x": dx, "h0": dh_next, "c0": dc_next, "weight_ih": dweight_ih,',
         'return {"x": dx, "h0": doutput[:, 0], "c0": dc_next, "weight_ih": dweight_ih,',
         {"h0"}, 1),
        ("dc_next without f", "dc_next = dc * f", "dc_next = dc", {"c0"}, 1),
        ("time loop run forward", "for t in reversed(range(T)):", "for t in range(T):",
         rows("torch", "ifgo", None, "x", "h0", "c0"), 2),
        ("o without sigmoid's derivative", "do = dh * tanh_c * o * (1 - o)",
         "do = dh * tanh_c * o", rows("torch", "o", None, "x", "h0"), 1),
        ("gates assembled in CS231n's order",
         "dgates = np.concatenate((di, df, dg, do), axis=1)",
         "dgates = np.concatenate((di, df, do, dg), axis=1)",
         rows("torch", "go", None, "x", "h0"), 1),
    ],
    "cs231n": [
        ("carried dh dropped",
         "step = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])",
         "step = lstm_step_backward(dh[:, t], dprev_c, cache[t])",
         rows("cs231n", "igo", None, "dx", "dh0"), 2),
        ("carried dc dropped",
         "step = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])",
         "step = lstm_step_backward(dh[:, t] + dprev_h, 0 * dprev_c, cache[t])",
         rows("cs231n", "ig", None, "dx", "dh0"), 2),
        ("= instead of +=", "dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t",
         "dWx, dWh, db = dWx_t, dWh_t, db_t", rows("cs231n", "ifgo"), 2),
        ("time loop run forward", "for t in reversed(range(T)):", "for t in range(T):",
         rows("cs231n", "ifgo", None, "dx", "dh0"), 2),
        ("dh0 from the upstream", "return dx, dprev_h, dWx, dWh, db",
         "return dx, dh[:, 0], dWx, dWh, db", {"dh0"}, 1),
        ("db from the first row", "db = da.sum(axis=0)", "db = da[0]",
         rows("cs231n", "igo", "b"), 1),
        ("dprev_c without f", "dprev_c = dc * f", "dprev_c = dc",
         rows("cs231n", "ig", None, "dx", "dh0"), 2),
        ("dWh from next_h", "dWh = prev_h.T @ da", "dWh = (o * tanh_c).T @ da",
         rows("cs231n", "igo", "h"), 1),
        ("o without sigmoid's derivative", "do = dnext_h * tanh_c * o * (1 - o)",
         "do = dnext_h * tanh_c", rows("cs231n", "o", None, "dx", "dh0"), 1),
        ("tanh derivative of g taken again", "dg = dc * i * (1 - g ** 2)",
         "dg = dc * i * (1 - np.tanh(g) ** 2)", rows("cs231n", "g", None, "dx", "dh0"), 1),
        ("df from next_c", "df = dc * prev_c * f * (1 - f)", "df = dc * next_c * f * (1 - f)",
         rows("cs231n", "f", None, "dx", "dh0"), 1),
        ("dWx from the last step only", "dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t",
         "dWx, dWh, db = dWx_t, dWh + dWh_t, db + db_t", rows("cs231n", "ifgo", "x"), 2),
    ],
}
ALL_BUGS = [(style, *bug) for style, bugs in BUGS.items() for bug in bugs]
#: names only this library uses, which a styled sentence must not show
FOREIGN = re.compile(r"\bd(Wx|Wh|b)\[|\bdprev_h\b|\bdnext_h\b")


@pytest.mark.parametrize(("style", "old", "new", "wrong", "length"),
                         [b[:1] + b[2:] for b in ALL_BUGS],
                         ids=[f"{b[0]}: {b[1]}" for b in ALL_BUGS])
def test_a_planted_bug_is_located_in_the_students_names(style, old, new, wrong, length):
    report = check(style, mutate(FILES[style], old, new))
    assert not report.ok
    assert report.first_bad_length == length
    located = report.bad_rows if length else report.rows
    assert {r.name for r in located if not r.ok} == wrong, str(report)
    assert report.worst[0] in wrong                      # the verdict's row is a wrong one
    assert report.diagnosis                              # something is always said
    if style != "cs231n":
        assert not any(FOREIGN.search(s) for s in report.diagnosis), report.diagnosis
    assert str(report).splitlines()[-1].startswith(f"MISMATCH: worst {report.worst[0]}")


def test_every_style_has_at_least_12_planted_bugs():
    counts = {s: len(b) for s, b in BUGS.items()}
    counts["dls"] += counts.pop("dls-cell")
    assert min(counts.values()) >= 12 and set(counts) == set(STYLES), counts


SIZES = [(3, 4, 5, 2, 0), (1, 1, 3, 1, 1), (5, 16, 7, 3, 2), (7, 64, 20, 8, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("d", "h", "t", "b", "seed"), SIZES)
@pytest.mark.parametrize("style", list(FILES))
def test_a_correct_backward_is_ok_in_every_style(style, d, h, t, b, seed, dtype):
    report = check(style, load(FILES[style]), dtype=dtype, sizes=(d, h, t, b), seed=seed)
    assert report.ok, str(report)
    assert report.diagnosis == [] and report.style == ("dls" if style == "dls-cell" else style)
    assert all(r.status in ("ok", "not tested") for r in report.rows)
    assert report.dtype == np.dtype(dtype).name
    assert str(report).splitlines()[-1].startswith("OK: worst")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("style", list(FILES))
def test_a_correct_backward_is_ok_at_the_largest_sizes(style, dtype):
    report = check(style, load(FILES[style]), dtype=dtype, sizes=(16, 256, 100, 32), seed=4)
    assert report.ok, str(report)


def test_every_output_is_a_row_in_the_students_names_and_order():
    report = check("dls", load(FILES["dls"]))
    assert [r.name for r in report.rows] == ["dx", "da0"] + [
        n for g in "fico" for n in (f"dW{g}[:, :n_a]", f"dW{g}[:, n_a:]", f"db{g}")]
    karpathy = check("karpathy", load(FILES["karpathy"]))
    assert {"dX", "dc0", "dh0", "dWLSTM[0, i]", "dWLSTM[1+D:, g]"} <= {r.name for r in
                                                                      karpathy.rows}
    torch = check("torch", load(FILES["torch"]))
    assert {"x", "h0", "c0", "weight_hh[f]", "bias_hh[o]"} <= {r.name for r in torch.rows}
    cell = check("dls-cell", load(FILES["dls-cell"]))
    assert [r.name for r in cell.forward] == ["a_next", "c_next"]
    assert [r.name for r in cell.rows][:3] == ["dxt", "da_prev", "dc_prev"]
    # the blocks are shown in the student's layout: dWf[:, n_a:] is (n_a, n_x)
    assert cell.row("dWf[:, n_a:]").given.shape == (H, D)


def test_a_wrong_shape_is_a_row_quoting_the_students_shapes():
    student = mutate(FILES["dls-cell"], "dbf = np.sum(dft, axis=1, keepdims=True)",
                     "dbf = np.sum(dft, axis=1)")
    report = check("dls-cell", student)
    row = report.row("dbf")
    assert row.status == "bad shape" and row.problem == "dbf: shape (4,), expected (4, 1)"
    assert "dbf: shape (4,), expected (4, 1)" in report.diagnosis[0]
    assert "BAD SHAPE" in str(report)


def test_a_key_the_style_does_not_know_is_named():
    student = mutate(FILES["dls-cell"], RETURN_LINE, RETURN_LINE.replace('"dxt"', '"dx_t"'))
    report = check("dls-cell", student)
    assert report.row("dxt").status == "missing"
    assert "dxt missing" in report.diagnosis[0]
    assert any("returned dx_t (did you mean dxt?), which the dls style does not know" in n
               for n in report.notes)


def test_a_signature_of_another_style_is_named_not_called():
    dls = load(FILES["dls-cell"])
    with pytest.raises(StyleMismatch, match=re.escape(
            "lstm_cell_forward takes (xt, a_prev, c_prev, parameters): this is the dls style; "
            "pass style='dls'")):
        lstm_ag.check_step(dls.lstm_cell_forward, dls.lstm_cell_backward)
    seq = load(FILES["dls"])
    with pytest.raises(StyleMismatch, match="lstm_backward takes \\(da, caches\\): this is "
                                            "the dls style"):
        lstm_ag.check_gradients(lstm_ag.init_params(3, 4), np.zeros((5, 2, 3)),
                                backward=seq.lstm_backward, upstream="all")
    karpathy = load(FILES["karpathy"])
    with pytest.raises(StyleMismatch, match="this is the karpathy style"):
        lstm_ag.check_gradients(lstm_ag.init_params(3, 4), np.zeros((5, 2, 3)),
                                forward=karpathy.LSTM.forward, backward=karpathy.LSTM.backward,
                                style="torch")


def test_bad_style_arguments_name_themselves():
    dls = load(FILES["dls"])
    params, xs = lstm_ag.init_params(3, 4), np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=r"style must be one of .*did you mean 'dls'"):
        lstm_ag.check_step(dls.lstm_cell_forward, dls.lstm_cell_backward, style="dsl")
    with pytest.raises(ValueError, match="style 'karpathy' has no step pair"):
        lstm_ag.check_step(dls.lstm_cell_forward, dls.lstm_cell_backward, style="karpathy")
    with pytest.raises(TypeError, match="pass forward=lstm_forward"):
        lstm_ag.check_gradients(params, xs, backward=dls.lstm_backward, style="dls")
    with pytest.raises(ValueError, match="sets the loss"):
        lstm_ag.check_gradients(params, xs, forward=dls.lstm_forward,
                                backward=dls.lstm_backward, style="dls", upstream="last")
    with pytest.raises(ValueError, match="notebook style checks one sequence"):
        lstm_ag.check_gradients(params, xs, backward=load(FILES["notebook"]).LSTM,
                                style="notebook")


def test_the_students_changes_to_its_inputs_never_reach_the_checker():
    student = mutate(FILES["karpathy"], "dHout = dHout_in.copy()", "dHout = dHout_in")
    assert check("karpathy", student).ok                  # it changes its own copy only


def test_the_cs231n_style_of_a_step_pair_is_todays_check_in_ifog():
    cs = load(FILES["cs231n"])
    styled = lstm_ag.check_step(cs.lstm_step_forward, cs.lstm_step_backward, style="cs231n")
    plain = lstm_ag.check_step(cs.lstm_step_forward, cs.lstm_step_backward, gate_order="ifog")
    assert styled.ok and [r.name for r in styled.rows] == [r.name for r in plain.rows]


# ---------------------------------------------------------------- the command line

SEQ = "lstm_forward, lstm_backward"

@pytest.mark.parametrize(("name", "style", "found"), [
    ("dls_cell.py", "dls", "lstm_cell_forward, lstm_cell_backward"),
    ("dls_sequence.py", "dls", "lstm_cell_forward, lstm_cell_backward; " + SEQ),
    ("karpathy.py", "karpathy", "LSTM.forward, LSTM.backward"),
    ("torch_loop.py", "torch", "lstm_forward, lstm_backward"),
    ("notebook_001.py", "notebook", "LSTM"),
    ("cs231n_step.py", "cs231n", "lstm_step_forward, lstm_step_backward; " + SEQ),
])
def test_the_command_line_finds_the_style_and_says_it(name, style, found, capsys, tmp_path):
    path = tmp_path / "my_lstm.py"
    path.write_text((HERE / name).read_text())
    assert main([str(path), "--steps", "3", "--hidden-size", "4"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"style {style} (found {found})"
    assert out.count("OK: worst") == found.count(";") + 1
    assert main([str(path), "--style", style, "--steps", "3", "--hidden-size", "4"]) == 0


def test_the_command_line_exits_1_on_a_bug_and_2_on_another_styles_signature(tmp_path, capsys):
    path = tmp_path / "my_lstm.py"
    path.write_text(mutated_source(FILES["dls"], "da0 = da_prevt", "da0 = da[:, :, 0]"))
    assert main([str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count("OK: worst") == 1 and "MISMATCH: worst da0" in out   # the cell pair is right
    assert main(["--sequence", str(path), "--style", "dls"]) == 1
    assert capsys.readouterr().out.count("MISMATCH") == 1
    assert main(["--step", str(path), "--forward", "lstm_cell_forward",
                 "--backward", "lstm_cell_backward"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "error: lstm_cell_forward takes (xt, a_prev, c_prev, parameters): this is the dls "
        "style; pass --style dls")
    assert main(["--step", str(path)]) == 0           # no lstm_step_forward: the dls cell pair
    assert capsys.readouterr().out.startswith("style dls (found lstm_cell_forward, "
                                              "lstm_cell_backward)\n")
    assert main([str(path), "--style", "karpathy"]) == 2
    assert "defines none of the karpathy style's functions" in capsys.readouterr().err
    assert main([str(HERE / "sequence_loop.py")]) == 2
    assert "it defines none of the styles' functions" in capsys.readouterr().err


# ---------------------------------------------------------------- the picture

def test_plot_draws_every_block_at_every_length(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    student = mutate(FILES["torch"], "dc = dc_next + dh * o * (1 - tanh_c ** 2)",
                     "dc = dh * o * (1 - tanh_c ** 2)")
    report = check("torch", student)
    figure = report.plot(tmp_path / "errors.png")
    assert (tmp_path / "errors.png").stat().st_size > 1000
    image = figure.axes[0].images[0].get_array()
    assert image.shape == (len(report.rows), T)          # every block, every length 1..T
    assert sorted(report.history) == list(range(1, T + 1))
    crossed = {(t.get_position()[1], t.get_position()[0]) for t in figure.axes[0].texts}
    names = [r.name for r in report.history[T]]
    assert (names.index("weight_hh[i]"), 1) in crossed          # wrong from length 2 ...
    assert (names.index("weight_hh[i]"), 0) not in crossed      # ... right at length 1
    path = tmp_path / "my_lstm.py"
    path.write_text(mutated_source(FILES["torch"], "dc = dc_next + dh * o * (1 - tanh_c ** 2)",
                                   "dc = dh * o * (1 - tanh_c ** 2)"))
    assert main([str(path), "--plot", str(tmp_path / "cli.png")]) == 1
    assert capsys.readouterr().out.rstrip().endswith(f"wrote {tmp_path / 'cli.png'}")
    assert (tmp_path / "cli.png").exists()


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch):
    report = check("torch", load(FILES["torch"]))
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.colors"):
        monkeypatch.setitem(__import__("sys").modules, name, None)   # as if not installed
    with pytest.raises(ImportError, match=re.escape("pip install lstm-ag[plot]")):
        report.plot()


def test_plot_of_a_step_or_to_a_bad_path_is_a_usage_error(tmp_path, capsys):
    assert main(["--step", str(HERE / "cs231n_step.py"), "--gate-order", "ifog",
                 "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot draws a sequence check" in capsys.readouterr().err
    assert main([str(HERE / "dls_cell.py"), "--plot", str(tmp_path / "x.png")]) == 2
    pytest.importorskip("matplotlib")
    assert main([str(HERE / "torch_loop.py"), "--steps", "2", "--plot",
                 str(tmp_path / "no" / "x.png")]) == 2
    assert "--plot " in capsys.readouterr().err


def test_notebook_001s_own_class_is_checked_in_one_line():
    """The notebook's forward returns inside its loop: only the first step runs."""
    notebook = load(FILES["notebook"])
    params = lstm_ag.init_params(3, 4, seed=1)
    xs = np.random.default_rng(1).standard_normal((7, 3))
    report = lstm_ag.check_gradients(params, xs, backward=notebook.LSTMNotebook,
                                     style="notebook")
    assert not report.ok and report.first_bad_length == 2
    assert report.diagnosis[0].startswith("Your gradients are those of the first step alone")
    assert lstm_ag.check_gradients(params, xs, backward=notebook.LSTM, style="notebook").ok


def test_dx_and_da0_are_compared_at_square_sizes_too():
    """At n_x = n_a a dx taken from the a rows has the right shape: only its values show it."""
    student = mutate(FILES["dls"], 'dx[:, :, t] = gradients["dxt"]',
                     'dx[:, :, t] = gradients["da_prev"]')
    report = check("dls", student, sizes=(4, 4, T, B))
    assert not report.ok and report.first_bad_length == 1
    assert {r.name for r in report.bad_rows if not r.ok} == {"dx"}
    student = mutate(FILES["dls"], "da0 = da_prevt", "da0 = da[:, :, 0]")
    report = check("dls", student, sizes=(4, 4, T, B))
    assert {r.name for r in report.rows if not r.ok} == {"da0"}
