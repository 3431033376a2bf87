"""A step forward that is not lstm_ag's: a known LSTM variant named (not blamed), or the
equation that differs; and a backward checked against the student's own forward.

The standard LSTM (:mod:`lstm_ag.cell`) is what the checker compares with. Two variants are
common in courses and papers, and a student who writes one has made no mistake:

* **coupled input and forget gates** (Greff et al. 2017, "CIFG"): f = 1 - i, so
  c = (1 - i) * prev_c + i * g;
* **peephole connections** (Gers and Schmidhuber 2000): the gates also see the cell,
  i = sigma(z_i + p_i * prev_c), f = sigma(z_f + p_f * prev_c), o = sigma(z_o + p_o * c),
  with one weight per unit (p_i, p_f, p_o ``(H,)``, fitted here from the outputs).

These equations are written here only to recognise the variants from a forward's outputs;
lstm_ag's own equations stay in :func:`lstm_ag.cell.lstm_step`. When a variant is recognised,
the backward cannot be compared with lstm_ag's gradients, but it can be compared with central
finite differences of the student's own forward (:func:`against_own_forward`), row by row.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit

from ..cell import lstm_step
from ..ops import PLAIN
from ..params import split_gates
from .compare import (
    GATE_WIDE,
    block_entries,
    blocks,
    compare_block,
    errors,
    finite_differences,
    permute_gates,
)

__all__ = ["recognise", "which_equation", "against_own_forward"]

_FITS = 1e-8            # how exactly a variant must reproduce the outputs (relative)


def _gates(a):
    """lstm_ag's pre-activations z_i, z_f, z_g, z_o ``(N, H)`` of the step's arguments."""
    return split_gates(a["x"] @ a["Wx"] + a["prev_h"] @ a["Wh"] + a["b"])


def _standard(a):
    """lstm_ag's step (:func:`lstm_ag.cell.lstm_step`) on the arguments:
    ``((next_h, next_c), (i, f, g, o, tanh_c))``."""
    return lstm_step(a["Wh"], a["x"] @ a["Wx"] + a["b"], a["prev_h"], a["prev_c"], PLAIN)


def _close(a, b):
    return errors(np.asarray(a, dtype=np.float64), b)[1] < _FITS


def _peepholes(a, h, c):
    """The gates with peephole weights (not zero) with which lstm_ag's step reproduces
    ``h, c``, ``{gate: the cell it sees, "prev_c" or "next_c"}``, or None when none do."""
    z_i, z_f, z_g, z_o = _gates(a)
    prev_c, g = a["prev_c"], np.tanh(z_g)
    tanh_c = np.tanh(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = h / tanh_c
    if not np.all(np.isfinite(o)) or np.any((o <= 0) | (o >= 1)):
        return None
    r = logit(o) - z_o                   # = p_o * next_c (or * prev_c), one p_o per unit
    fits = [(p, sees) for seen, sees in ((c, "next_c"), (prev_c, "prev_c"))
            for p in [np.sum(r * seen, axis=0) / np.maximum(np.sum(seen * seen, axis=0), 1e-300)]
            if _close(expit(z_o + p * seen) * tanh_c, h)]
    if not fits:
        return None
    p_o, o_sees = fits[0]
    H = c.shape[1]

    def cell(p):
        return (expit(z_f + p[H:] * prev_c) * prev_c + expit(z_i + p[:H] * prev_c) * g) - c
    fit = least_squares(lambda p: cell(p).ravel(), np.zeros(2 * H), xtol=1e-15, ftol=1e-15,
                        gtol=1e-15)
    if not _close(cell(fit.x) + c, c):
        return None
    found = {"i": (fit.x[:H], "prev_c"), "f": (fit.x[H:], "prev_c"), "o": (p_o, o_sees)}
    scale = max(float(np.max(np.abs(c))), 1.0)
    return {k: sees for k, (v, sees) in found.items()
            if np.max(np.abs(v)) * scale > 1e-6} or None


def recognise(arrays: dict, given: tuple) -> str | None:
    """A sentence naming the LSTM variant whose step gives ``given = (next_h, next_c)``
    (float64, ``(N, H)``) on ``arrays`` (lstm_ag's gate order, float64), or None.

    - arrays: ``x (N, D)``, ``prev_h``, ``prev_c`` ``(N, H)``, ``Wx``, ``Wh``, ``b``.
    """
    h, c = given
    if h.shape != c.shape or h.shape != arrays["prev_c"].shape:
        return None
    _, (i, _, g, o, _) = _standard(arrays)
    if _close(c, (1 - i) * arrays["prev_c"] + i * g) and _close(h, o * np.tanh(c)):
        return ("Your step_forward couples the forget gate to the input gate, f = 1 - i "
                "(c = (1 - i) * prev_c + i * g): a known LSTM variant (CIFG), not the standard "
                "LSTM, whose f has its own weights; not a mistake if you meant it.")
    # p_i, p_f: two unknowns per unit in next_c, so at least three rows to tell a fit apart
    peep = _peepholes(arrays, h, c) if len(c) >= 3 else None
    if peep is not None:
        gates = [k for k in "ifo" if k in peep]
        return ("Your step_forward has peephole connections (" + " and ".join(gates)
                + (" see" if len(gates) > 1 else " sees") + " the cell: "
                + ", ".join(f"{k} = sigmoid(z_{k} + p_{k} * {peep[k]})" for k in gates)
                + "): a known LSTM variant, not the standard LSTM; not a mistake if you "
                "meant it.")
    return None


def which_equation(arrays: dict, given: tuple) -> str | None:
    """Which of lstm_ag's equations the outputs ``(next_h, next_c)`` break: a sentence, or None
    when their shapes do not allow the test."""
    h, c = given
    if h.shape != c.shape or h.shape != arrays["prev_c"].shape:
        return None
    (_, c_ref), (_, _, _, o, _) = _standard(arrays)
    c_ok, h_ok = _close(c, c_ref), _close(h, o * np.tanh(c))
    if c_ok and not h_ok:
        return ("Your next_c agrees with c = f * prev_c + i * g, and your next_h differs from "
                "h = o * tanh(c) (with o = sigmoid(z_o)): check that line and the o gate.")
    if h_ok and not c_ok:
        return ("Your next_h = o * tanh(next_c) holds, and your next_c differs from "
                "c = f * prev_c + i * g: check that line and the gates i, f, g "
                "(i, f = sigmoid, g = tanh of their blocks of z).")
    return None


def against_own_forward(step_forward, step_backward, arrays, gate_order, dnext_h, dnext_c,
                        returned, tolerance):
    """The backward's gradients against central finite differences of the student's own
    forward, ``sum(dnext_h * next_h + dnext_c * next_c)``, every entry.

    - step_forward, step_backward: the pair; arrays: the arguments (lstm_ag's gate order,
      float64); gate_order: the pair's; dnext_h, dnext_c ``(N, H)``.
    - returned: a function of the backward's 6 outputs giving ``{name: float64 array in
      lstm_ag's gate order, or a string saying what came back}`` (as check_step reads them).
    - tolerance: the relative part of each entry's bound.
    Returns the rows (as :func:`lstm_ag.gradcheck.compare.compare_block`; "expected" is the
    finite difference).
    """
    names = list(arrays)

    def user(a):
        return [permute_gates(a[k], "ifgo", gate_order) if k in GATE_WIDE else np.array(a[k])
                for k in names]

    def loss(a):
        h, c, _ = step_forward(*user(a))
        return float(np.sum(dnext_h * np.asarray(h)) + np.sum(dnext_c * np.asarray(c)))
    out = step_forward(*user(arrays))
    got = returned(step_backward(dnext_h.copy(), dnext_c.copy(), out[2]))
    plain = {k: np.array(v) for k, v in arrays.items()}
    rows = []
    for name in names:
        everything = np.arange(plain[name].size)
        fd, bound = finite_differences(loss, plain, name, everything)
        expected = fd.reshape(plain[name].shape)
        for blk in blocks([name]):
            inside = block_entries(blk, plain[name].shape, plain[name].size, None)
            rows.append(compare_block(blk, got[name], expected, np.inf,
                                      fd=(inside, fd[inside], bound[inside]),
                                      fd_tolerance=tolerance))
    return rows
