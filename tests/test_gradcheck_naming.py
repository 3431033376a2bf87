"""The planted bugs of every style are not only located but named: the diagnosis's first
sentence says the mistake itself, in the student's names, for at least 80% of each style's bugs.

``NAMED`` gives, for each bug of ``test_gradcheck_styles.BUGS``, the words the sentence naming
it must hold (the mistake, and the student's array where it says one), or None for a bug the
checker locates but does not name. A sentence that quotes a formula, says "No known pattern
fits" or blames another line holds none of these words; a bug listed with words whose
sentence changes fails here, and so does a style whose named share falls under 80%.
"""
import numpy as np
import pytest
from students.mutate import mutate
from test_gradcheck_styles import BUGS, FILES, check

#: style -> bug id -> the words its first sentence must hold (None: located, not named)
NAMED = {
    "dls-cell": {
        "dbf without keepdims": ["dbf has shape (4,) where (4, 1) is expected",
                                 "without keepdims=True"],
        "dbf summed over the wrong axis": ["dbf has shape (1, 2) where (4, 1) is expected",
                                           "summed over the wrong axis"],
        "dWf transposed": ["dWf has shape (7, 4) where (4, 7) is expected", "transposed"],
        "tanh derivative of cct taken again": ["derivative is taken of tanh(cct)",
                                               "not 1 - tanh(cct)**2"],
        "sigmoid derivative of ot missing": ["dz_o is missing the sigmoid's derivative"],
        "dc_prev without ft": ["dc_prev is missing the forget gate"],
        "dft from c_next": ["dz_f uses c<t> where c<t-1> is needed"],
        "tanh derivative at c, not tanh(c)": ["(1 - tanh(c)**2, not 1 - c**2)"],
        "dit without it": ["dz_i has 1 - i where i * (1 - i) is needed"],
        "dbc from the first example": ["taken from the first row of the batch only"],
        "dxt returned as dx": ["returned dx where the dls style reads dxt"],
    },
    "dls": {
        "dWf = instead of +=": [("Your dWf[:, n_a:] and dWf[:, :n_a] are the contribution of "
                                "one step alone"), "with += instead of ="],
        "dbi = instead of +=": ["Your dbi is the contribution of one step alone",
                                "with += instead of ="],
        "time loop run forward": ["loop runs forward in time"],
        "da0 from the upstream": ["Your da0 is the upstream gradient of step 0"],
        "upstream da not added": ["0 at every length", "never enters your backward"],
        "carried da dropped": ["with da_prevt left out"],
        "carried dc dropped": ["with dc_prevt left out"],
        "dx stored at the wrong step": ["Your dx is stored at the wrong step"],
        "dWo from the first step only": [("Your dWo[:, n_a:] and dWo[:, :n_a] are the "
                                         "contribution of one step alone")],
    },
    "notebook": {
        "do from c, not tanh(c)": ["dz_o uses c where tanh(c) is needed"],
        "dc_next left out": ["with dc_next left out"],
        "df from c, not c_prev": ["dz_f uses c_t where c_{t-1} is needed"],
        "dzf with tanh's derivative": ["dz_f uses tanh's derivative 1 - f**2"],
        "dzg with sigmoid's derivative": ["dz_g uses the sigmoid's derivative g * (1 - g)"],
        "dWf = instead of +=": [("Your dWf[:, H:] and dWf[:, :H] are the contribution of one "
                                "step alone")],
        "dbf = instead of +=": ["Your dbf is the contribution of one step alone"],
        "upstream added at every step": ["dL/dh_T is added at every step"],
        "dc_prev with f's derivative": [("dc_prev is multiplied by the forget gate's "
                                        "derivative f * (1 - f)")],
        "dz without the o gate": ["leaves out the o gate"],
        "time loop run forward": ["loop runs forward in time"],
        "dbo summed to a number": ["Your dbo is summed to one number"],
        "dzi without sigmoid's derivative": ["dz_i has i where i * (1 - i) is needed"],
    },
    "karpathy": {
        "o gate without tanh(c)": ["dz_o is missing tanh(c)"],
        "tanh derivative without the square": ["dc has 1 - tanh(c) where 1 - tanh(c)**2"],
        "dC carried without f": ["the forget gate's factor f missing"],
        "dc0 without f": ["Your dc0 is missing the forget gate"],
        "f gate at t = 0 from C[0]": ["dz_f uses c_t where c_{t-1} is needed"],
        "g derivative without the square": ["dz_g has 1 - g where 1 - g**2 is needed"],
        "dWLSTM = instead of +=": ["dWLSTM[0, o] are the contribution of one step alone",
                                   "with += instead of ="],
        "dX from the wrong rows of dHin": ["dX is taken from the wrong rows",
                                           "[1; x; h]", "yours is rows 0:3",
                                           "x_t is rows 1:4"],
        "dh0 from the upstream": ["Your dh0 is the upstream gradient of step 0"],
        "carried dh replaces the upstream": ["upstream gradient of each step",
                                             "is not added to the gradient carried back"],
        "time loop run forward": ["nothing carried", "runs forward in time"],
        "sigmoid derivative without 1 - y": [("use y where the sigmoid's y * (1 - y) is "
                                             "needed")],
        "i gate from i, not g": ["dz_i multiplies dc by i where g is needed"],
    },
    "torch": {
        "carried dh dropped": ["with dh_next left out", "dgates @ weight_hh,"],
        "carried dc dropped": ["with dc_next left out"],
        "df from c, not c_prev": ["dz_f uses c_t where c_{t-1} is needed"],
        "dx stored at the wrong step": ["Your x is stored at the wrong step"],
        "dweight_ih = instead of +=": [("Your weight_ih[i], weight_ih[f], weight_ih[g] and "
                                       "weight_ih[o] are the contribution of one step alone")],
        "dweight_hh from c_prev": ["weight_hh.grad is built from c_{t-1}"],
        "dbias from the first row": ["bias_ih.grad is taken from the first sequence"],
        "bias_hh not returned": ["bias_hh missing"],
        "h0 from the upstream": ["Your h0 is the upstream gradient of step 0"],
        "dc_next without f": ["Your c0 is missing the forget gate"],
        "time loop run forward": ["loop runs forward in time"],
        "o without sigmoid's derivative": ["dz_o has o where o * (1 - o) is needed"],
        "gates assembled in CS231n's order": ["gates g and o are swapped"],
    },
    "cs231n": {
        "carried dh dropped": ["with dh_next left out"],
        "carried dc dropped": ["with dc_next left out"],
        "= instead of +=": ["db[o] are the contribution of one step alone",
                            "with += instead of ="],
        "time loop run forward": ["loop runs forward in time"],
        "dh0 from the upstream": ["Your dh0 is the upstream gradient of step 0"],
        "db from the first row": ["db is taken from the first sequence of the batch only"],
        "dprev_c without f": ["the forget gate's factor f missing"],
        "dWh from next_h": ["dWh is built from h_t"],
        "o without sigmoid's derivative": ["dz_o is missing the sigmoid's derivative"],
        "tanh derivative of g taken again": ["dz_g takes the derivative of tanh(g)"],
        "df from next_c": ["dz_f uses c_t where c_{t-1} is needed"],
        "dWx from the last step only": ["dWx[o] are the contribution of one step alone"],
    },
}
#: The share of each style's bugs that must be named (the issue's bar).
BAR = 0.8
#: Sentences that name no mistake: a bug named must not get one of these.
GENERIC = ("No known pattern fits", "its local derivative is the place to look")


def named_share(style, dtype):
    """``(share of the bugs named, {bug id: its first sentence} of those not named)``, as
    measured: a bug is named when its first sentence holds every word NAMED gives it and no
    generic sentence."""
    bugs = BUGS[style]
    assert {b[0] for b in bugs} == set(NAMED[style])       # every bug has its entry
    misses = {}
    for bug, old, new, _, _ in bugs:
        first = (check(style, mutate(FILES[style], old, new), dtype=dtype).diagnosis
                 or ["(nothing said: the bug was not detected)"])[0]
        words = NAMED[style][bug]
        if (words is None or not all(w in first for w in words)
                or any(g in first for g in GENERIC)):
            misses[bug] = first
    return 1 - len(misses) / len(bugs), misses


@pytest.mark.parametrize("style", list(BUGS))
def test_each_styles_bugs_are_named_in_the_students_words(style):
    share, misses = named_share(style, np.float64)
    assert not {b: s for b, s in misses.items() if NAMED[style][b] is not None}, misses
    assert share >= BAR, (share, misses)


def test_the_dls_style_with_its_cell_pair_names_80_percent_together():
    """The dls style is one style: its cell pair's bugs and its sequence's count together."""
    measured = [named_share(s, np.float64) for s in ("dls-cell", "dls")]
    count = len(BUGS["dls-cell"]) + len(BUGS["dls"])
    missed = sum(len(m) for _, m in measured)
    assert count >= 12 and 1 - missed / count >= BAR, measured


@pytest.mark.parametrize("style", list(BUGS))
def test_bugs_are_named_in_float32_too(style):
    """The fingerprints fit a float32 student's gradients at float32's precision (the cell
    pair's tanh taken at c is within float32's tolerance at the step check's draw, so the
    share, not each bug, is asserted there)."""
    share, misses = named_share(style, np.float32)
    assert share >= BAR, (share, misses)
    if style != "dls-cell":
        assert not misses, misses


#: Bugs written after the fingerprints were made for BUGS (a check that they generalise):
#: style -> (the line of the correct file, the student's line, words, or None: not named)
LATER = {
    "dls-cell": [
        ("dcct = dc * it * (1 - cct ** 2)", "dcct = dc * it",
         ["dz_g is missing tanh's derivative 1 - cct**2"]),
        ("dc_prev = dc * ft", "dc_prev = dc * it", ["dc_prev is multiplied by i where"]),
        ("dot = da_next * np.tanh(c_next) * ot * (1 - ot)",
         "dot = da_next * c_next * ot * (1 - ot)", ["dz_o uses c where tanh(c) is needed"]),
        ("dWf = np.dot(dft, concat.T)", "dWf = np.dot(dit, concat.T)",
         ["wrong while dbf is right", "the line that multiplies dz_f into dWf"]),
    ],
    "dls": [
        ('da_prevt = gradients["da_prev"]', 'da_prevt += gradients["da_prev"]', None),
        ('dWc += gradients["dWc"]', 'dWc += gradients["dWi"]',
         ["wrong while dbc is right", "the line that multiplies dz_g into dWc"]),
        ("da0 = da_prevt", "da0 = da_prevt + da[:, :, 0]",
         ["Your da0 adds the upstream gradient of step 0"]),
    ],
    "notebook": [
        ("dzo = do * dsigmoid(o)", "dzo = do * dtanh(o)",
         ["dz_o uses tanh's derivative 1 - o**2"]),
        ("di = dco * g", "di = dco * i", ["dz_i multiplies dc by i where g is needed"]),
        ("dc_next = dc_prev", "dc_next = dco", ["the forget gate's factor f missing"]),
        ("dWo += dzo @ z.T", "dWo += dzo @ z.T * 2", ["your gradient is 2 times the expected"]),
    ],
    "torch": [
        ("dc_next = dc * f", "dc_next = dc * i", ["Your c0 is multiplied by i where"]),
        ("dg = dc * i * (1 - g ** 2)", "dg = dc * i * (1 - g)",
         ["dz_g has 1 - g where 1 - g**2 is needed"]),
        ("dweight_ih += dgates.T @ x_t", "dweight_ih += dgates.T @ x_t / B",
         ["0.5 times the expected one", "an extra division by B"]),
        ("di = dc * g * i * (1 - i)", "di = dc * g * (1 - i)",
         ["dz_i has 1 - i where i * (1 - i) is needed"]),
    ],
    "cs231n": [
        ("dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)",
         "dc = dnext_c + dnext_h * (1 - tanh_c ** 2)", ["Your dc is missing o"]),
        ("di = dc * g * i * (1 - i)", "di = dc * i * (1 - i)", ["Your dz_i is missing g"]),
        ("db = da.sum(axis=0)", "db = da.mean(axis=0)",
         ["0.5 times the expected one", "an extra division by B"]),
        ("step = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])",
         "step = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[T - 1 - t])", None),
    ],
    "karpathy": [
        ("dIFOGf[t, :, 3 * d:] = IFOGf[t, :, :d] * dC[t]", "dIFOGf[t, :, 3 * d:] = dC[t]",
         ["Your dz_g is missing i"]),
        ("dWLSTM += np.dot(Hin[t].transpose(), dIFOG[t])",
         "dWLSTM += np.dot(Hin[t].transpose(), dIFOGf[t])", ["miss every gate's derivative"]),
        ("dC[t] += (1 - tanhCt ** 2) * (IFOGf[t, :, 2 * d:3 * d] * dHout[t])",
         "dC[t] = (1 - tanhCt ** 2) * (IFOGf[t, :, 2 * d:3 * d] * dHout[t])",
         ["with dc_next left out"]),
        ("dh0 += dHin[t, :, input_size + 1:]", "dh0 += dHin[t, :, input_size:-1]",
         ["dh0, the gradient of the initial state, is taken from the wrong rows", "[1; x; h]"]),
    ],
}


def test_bugs_written_later_are_named_too():
    """Every later bug is detected; those listed with words are named; 80% of them in all."""
    named = total = 0
    for style, bugs in LATER.items():
        for old, new, words in bugs:
            report = check(style, mutate(FILES[style], old, new))
            assert not report.ok, (style, new)
            first = report.diagnosis[0]
            if words is not None:
                assert all(w in first for w in words), (style, new, first)
                assert not any(g in first for g in GENERIC), (style, new, first)
            named += words is not None
            total += 1
    assert named / total >= BAR
