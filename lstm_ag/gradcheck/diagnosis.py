"""From the rows of a check to plain sentences: the likely mistake, and what to look at next.

Each fingerprint is a pattern in the blocks that one kind of mistake leaves, tested in order;
the first that fits is reported, so one diagnosis is given or none (then the wrong blocks are
named, with no guess). Every fingerprint is exact or nearly so: a constant ratio must hold to
1e-6 in every block, a swap must reproduce both blocks, a known mistake simulated by the
checker must reproduce the given gradient. The worst block's worst entries, expected against
given, always close the diagnosis.
"""
from __future__ import annotations

import re

import numpy as np

from ..params import GATES
from .compare import GATE_WIDE

__all__ = ["diagnose", "CLOSE", "fill", "shape_mistake", "changed_in_place", "LOCAL_DERIVATIVES"]

#: Each gate's local derivative, as the sentences quote it (dc is the gradient reaching c_t,
#: dh the one reaching h_t).
LOCAL_DERIVATIVES = {
    "i": "dz_i = dc * g * i * (1 - i)",
    "f": "dz_f = dc * c_prev * f * (1 - f)",
    "g": "dz_g = dc * i * (1 - g**2)",
    "o": "dz_o = dh * tanh(c) * o * (1 - o)",
}
_CLOSE = 1e-6           # how exactly a fingerprint must fit (relative), float64
#: How exactly a fingerprint must fit a gradient computed in each dtype (relative).
CLOSE = {np.dtype(np.float64): _CLOSE, np.dtype(np.float32): 1e-4}


def _rel(a, b):
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b))) / scale


def _names(rows):
    names = [r.name for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def fill(sentence, rows):
    """A candidate's sentence with ``{rows}`` replaced by the rows' names (``"dWx[f] and
    dWh[f]"``, as the report shows them) and ``{is}`` by "is" or "are"."""
    names = [r.name for r in rows]
    return (sentence.replace("{rows}", _names(rows))
            .replace("{is}", "is" if len(names) == 1 else "are"))


def _array_name(row):
    """The array a row belongs to, as the report names it (``"dWx"`` of ``"dWx[f]"``)."""
    return row.name.split("[")[0]


def _not_finite(rows):
    """The sentence for gradients that hold nan or inf."""
    kinds = sorted({k for r in rows for k, bad in (("nan", np.isnan(r.given).any()),
                                                   ("inf", np.isinf(r.given).any())) if bad})
    return (f"Your {_names(rows)} {'holds' if len(rows) == 1 else 'hold'} "
            f"{' and '.join(kinds)} where the expected gradient is finite: a division by "
            "zero, a log or sqrt of a non-positive number, an overflow (exp of a large "
            "argument), or an array used before it is filled (np.empty).")


_SHAPE = re.compile(r"shape \(([\d, ]*)\), expected \(([\d, ]*)\)")


def shape_mistake(name, problem):
    """A sentence naming the usual mistake behind a wrong shape, from a row's ``problem``
    ("shape (5,), expected (5, 1)"), or None when no usual one fits."""
    found = _SHAPE.search(problem or "")
    if found is None:
        return None
    got, want = (tuple(int(n) for n in part.split(",") if n.strip()) for part in found.groups())
    if want == (*got, 1) or want == (1, *got):
        return (f"{name} has shape {got} where {want} is expected: a sum without "
                "keepdims=True (np.sum(dz, axis=..., keepdims=True) keeps the summed axis).")
    if got == (*want, 1) or got == (1, *want):
        return (f"{name} has shape {got} where {want} is expected: keepdims=True (or a column "
                "vector) where the parameter is a vector; sum without keepdims.")
    if len(got) == len(want) == 2 and got == want[::-1]:
        return (f"{name} has shape {got} where {want} is expected: it is transposed (a .T "
                "missing or extra, or the product's factors in the wrong order).")
    if len(want) < len(got) and set(want) <= set(got):
        return (f"{name} has shape {got} where {want} is expected: a sum over too few axes "
                "(sum over the batch and the time steps).")
    if len(want) == len(got) and sorted(want) != sorted(got):
        return (f"{name} has shape {got} where {want} is expected: summed over the wrong "
                "axis, or multiplied by the wrong array.")
    return None


def changed_in_place(function, arguments):
    """The sentence for a function that wrote into the arrays it was given (``arguments``:
    their names in its signature, e.g. ``["dhs"]`` or ``["params['Wx']"]``)."""
    names = " and ".join(f"`{a}`" for a in arguments)
    return (f"Your {function} changed {names} in place: a function must not write into the "
            "arrays it is given (the caller's arrays change, and so would the next check). "
            "A view updated in place does it, as dh = dhs[t] then dh += dh_next, or "
            "prev_c *= f; use dh = dhs[t] + dh_next, or copy first.")


def _weight_lines(gated, ok_rows):
    """The sentence for weight blocks that are wrong while the same gate's bias is right:
    that gate's dz is right, so the line that multiplies it into dW is wrong; or None."""
    ok = {(r.param, r.gate) for r in ok_rows}
    if any(r.param == "b" for r in gated):
        return None
    gates = sorted({r.gate for r in gated}, key=GATES.index)
    if not all(("b", g) in ok for g in gates):
        return None
    biases = " and ".join(next(r.name for r in ok_rows if (r.param, r.gate) == ("b", g))
                          for g in gates)          # the rows' names, as the report shows them
    dz = " and ".join(f"dz_{g}" for g in gates)
    one = "is" if len(gates) == 1 else "are"
    return (f"{_names(gated)} {'is' if len(gated) == 1 else 'are'} wrong while {biases} "
            f"{one} right, so {dz} {one} right (db is its sum): the mistake is in the line "
            f"that multiplies {dz} into "
            f"{_names(gated)} (dW = x.T @ dz, h_prev.T @ dz, or dz @ [h; x].T: the array it "
            "multiplies, the step it takes it from, or a transpose), not in the gate's "
            "local derivative.")


def _comparable(rows):
    return [r for r in rows if r.given is not None and r.status in ("ok", "WRONG")]


def _constant_ratio(rows, wrong, close=_CLOSE):
    """The common ratio given / expected of the wrong blocks (and whether every block shares
    it), or None."""
    ratios = []
    for r in _comparable(rows):
        e, g = r.expected, r.given
        ee = float(np.vdot(e, e))
        if ee == 0:
            continue
        k = float(np.vdot(g, e)) / ee
        if _rel(g, k * e) > close:
            if r in wrong:
                return None
            continue
        ratios.append((r, k))
    wrong_ratios = [k for r, k in ratios if r in wrong]
    if len(wrong_ratios) < len(wrong) or not wrong_ratios:
        return None
    k0 = wrong_ratios[0]
    if any(abs(k - k0) > close * abs(k0) for k in wrong_ratios) or abs(k0 - 1) < 1e-3:
        return None
    everywhere = all(abs(k - k0) <= close * abs(k0) for _, k in ratios)
    return k0, everywhere


def _ratio_hint(k, counts, loss=True):
    """What a ratio ``k`` is likely to be, given the sizes ``counts`` (name -> number).
    ``loss``: whether the loss's scaling can explain it (not in a step check, which has no
    loss, nor when only some blocks are off, since the loss's scale reaches every block)."""
    hints = []
    if loss and abs(k - 0.5) < 1e-9:
        hints.append("half: the 2 of d(err**2)/d(err) = 2 err is missing")
    elif loss and abs(k - 2) < 1e-9:
        hints.append("twice: a factor 2 too many (the square's 2 counted twice?)")
    elif abs(k + 1) < 1e-9:
        hints.append("the opposite sign: err = target - prediction instead of prediction - "
                     "target, or a minus sign lost" if loss else
                     "the opposite sign: a minus sign lost or added")
    same = {}                           # sizes equal here are named together
    for what, n in counts.items():
        same.setdefault(n, []).append(what)
    for n, names in same.items():
        what = names[-1] + (f" (or {', '.join(names[:-1])}, equal here)" if len(names) > 1
                            else "")
        if loss and n > 1 and abs(k - n) < 1e-9 * n:
            hints.append(f"{n} = {what}: the division by {names[-1]} of the mean is missing")
        elif n > 1 and abs(k * n - 1) < 1e-9:
            hints.append(f"1/{n} = 1/{what}: an extra division by {names[-1]}")
    return hints


def _swapped(wrong_gated, close=_CLOSE):
    """A pair of gates whose blocks are exchanged in every wrong parameter, or None."""
    by_param = {}
    for r in wrong_gated:
        by_param.setdefault(r.param, {})[r.gate] = r
    pairs = set()
    for gates in by_param.values():
        if len(gates) != 2:
            return None
        (a, ra), (b, rb) = sorted(gates.items(), key=lambda item: GATES.index(item[0]))
        if _rel(ra.given, rb.expected) > close or _rel(rb.given, ra.expected) > close:
            return None
        pairs.add((a, b))
    return pairs.pop() if len(pairs) == 1 else None


def _worst_entries(row, count=3):
    """A sentence with the worst entries of ``row``, expected against given."""
    diff = np.abs(row.given - row.expected)
    order = np.argsort(diff, axis=None)[::-1][:count]
    parts = []
    for flat in order:
        index = np.unravel_index(flat, row.given.shape)
        where = "[" + ", ".join(str(int(i)) for i in index) + "]"
        parts.append(f"{where} expected {row.expected[index]:+.6e}, given "
                     f"{row.given[index]:+.6e}")
    return f"In {row.name}, the worst entries: " + "; ".join(parts) + "."


def diagnose(rows, *, kind, first_bad_length=None, bad_rows=None, first_tested=None,
             candidates=(), counts=None, loss=None, close=_CLOSE):
    """Sentences naming the likely mistake, the first that fits (see the module docstring).

    - rows: the rows where the mistake is located (for a sequence, at its first bad length).
    - kind: ``"step"`` or ``"sequence"``; first_bad_length: for a sequence.
    - first_tested: block name -> the shortest length at which it is not exactly zero.
    - candidates: ``(sentence, {block name: predicted given block})`` pairs, known mistakes
      the checker simulated; the first whose prediction reproduces every wrong block is
      reported. A third element ``True`` makes a candidate strict: it must also leave right
      every block it predicts that is right (a mistake that changes a gate's dz changes its
      db too, so it does not explain a wrong dW beside a right db).
    - counts: sizes that normalisations divide by, e.g. ``{"T*B*O": 24, "B": 2}``.
    - loss: ``(expected, given)`` when the backward returned a loss that disagrees.
    - close: how exactly a fingerprint must fit (:data:`CLOSE` by the dtype judged).
    Returns a list of sentences (empty when nothing is wrong).
    """
    first_tested = first_tested or {}
    wrong = [r for r in rows if r.status == "WRONG"]
    unusable = [r for r in rows if r.status in ("missing", "bad shape")]
    out = []
    if unusable:
        params = sorted({r.param for r in unusable}, key=[r.param for r in unusable].index)
        first = {p: next(r for r in unusable if r.param == p) for p in params}
        what = "; ".join(f"{_array_name(first[p])}: {first[p].problem}" for p in params)
        why = [s for s in (shape_mistake(_array_name(first[p]), first[p].problem)
                           for p in params) if s]
        said = (f"Your backward's gradients could not be compared ({what}). Return every "
                "gradient, with the shape of its parameter.")
        out.append(" ".join([said, *why]))
    bad = [r for r in wrong if r.given is not None and not np.all(np.isfinite(r.given))]
    if bad:
        out.append(_not_finite(bad))
        return out
    if wrong:
        out.append(_likely_mistake(rows, wrong, kind, first_bad_length, first_tested,
                                   candidates, counts or {}, close))
    if loss is not None:
        out.append(f"The loss your backward returns, {loss[1]:.10g}, is not the loss it "
                   f"differentiates here, {loss[0]:.10g}"
                   + (f" (at length {first_bad_length})" if first_bad_length else "")
                   + ": check the forward and the loss formula too.")
    if not wrong:
        return out
    # in a step, dx and dprev_h only echo a wrong dz: show the block the mistake is in
    primary = [r for r in wrong if kind != "step" or r.name not in ("dx", "dprev_h")] or wrong
    out.append(_worst_entries(max(primary, key=lambda r: r.rel)))
    return out


def _likely_mistake(rows, wrong, kind, first_bad_length, first_tested, candidates, counts,
                    close=_CLOSE):
    wrong_names = {r.name for r in wrong}
    by_name = {r.name: r for r in rows}
    # a step's dx = dz @ Wx.T and dprev_h = dz @ Wh.T are wrong whenever a gate's dz is (and
    # dprev_c = dc * f whenever dc is): consequences, not evidence against a gate's pattern
    derived = {"dx", "dprev_h"} if kind == "step" else set()
    # 1. a known mistake the checker simulated, reproduced exactly (and told apart from the
    # right gradient: a prediction equal to it would "reproduce" any tiny error)
    for sentence, predicted, *strict in candidates:
        if set(predicted) >= wrong_names and all(
                by_name[name].given is not None
                and _rel(by_name[name].given, predicted[name]) <= close
                and _rel(by_name[name].expected, predicted[name])
                > max(100 * _CLOSE, 10 * _rel(by_name[name].given, predicted[name]))
                for name in wrong_names) and not (strict and strict[0] and any(
                    _rel(by_name[name].expected, value) > 100 * close
                    for name, value in predicted.items()
                    if name in by_name and by_name[name].status == "ok")):
            return fill(sentence, wrong)
    # 2. nothing where something is expected (a ratio of 0 is no constant factor)
    zeros = [r for r in wrong if r.given is not None and not np.any(r.given)]
    if zeros and len(zeros) == len(wrong):
        tested = [r for r in rows if r.status != "not tested"]
        if kind == "sequence" and len(zeros) == len(tested):
            at = f" at length {first_bad_length}" if first_bad_length else ""
            return (f"Every gradient of yours is 0{at}, where the expected ones are not: the "
                    "backward loop does not visit the steps (a range that stops before t = 0, "
                    "such as range(T - 1, 0, -1) or range(1, T)), the upstream gradient "
                    "(dhs[t], da[:, :, t]) is never added to the carried one (dh = dhs[t] + "
                    "dh_next), or the gradients are never added up (= where += is needed, or "
                    "fresh zeros returned).")
        return (f"{_names(zeros)} {'is' if len(zeros) == 1 else 'are'} all 0 where the "
                "expected gradient is not: never computed, or never added into the array "
                "you return.")
    # 3. one constant factor
    ratio = _constant_ratio(rows, wrong, close)
    if ratio is not None:
        k, everywhere = ratio
        where = "every block" if everywhere else f"the wrong blocks ({_names(wrong)})"
        hints = _ratio_hint(k, counts, loss=everywhere and kind == "sequence")
        hint = f" It is {hints[0]}." if hints else ""
        look = ("Look at the scaling of the loss's gradient (the 2 of the square, the mean's "
                "1/N, a 1/B) before anything else." if everywhere and kind == "sequence" else
                f"Look for a stray constant in the formula of {_names(wrong)}.")
        return (f"In {where} your gradient is {k:.6g} times the expected one: a missing or "
                f"extra constant factor, not a wrong formula.{hint} {look}")
    gated = [r for r in wrong if r.param in GATE_WIDE]
    others = [r for r in wrong if r.param not in GATE_WIDE and r.name not in derived]
    wrong_gates = sorted({r.gate for r in gated}, key=GATES.index)
    ok_rows = [r for r in rows if r.ok and r.status == "ok"]
    # 4. two gates exchanged
    pair = _swapped(gated, close) if not others else None
    if pair is not None:
        a, b = pair
        return (f"The gradients of gates {a} and {b} are swapped (your {a} blocks hold the "
                f"expected {b} ones and the other way round): check the order in which dz "
                f"is assembled; this library's gate order is i, f, g, o (pass gate_order= "
                "if your weights use another).")
    # 5. a value where the expected gradient is exactly zero
    zero = [r for r in wrong if not np.any(r.expected)]
    if zero and len(zero) == len(wrong):
        at = (f"at length {first_bad_length} from a zero initial state"
              if kind == "sequence" else "here")
        reason = []
        if any(r.param == "Wh" for r in zero):
            reason.append("dWh = h_{t-1}^T dz is 0 when h_{t-1} is 0, so yours is built from "
                          "h_t, the step's output, instead of h_{t-1}")
        if any(r.gate == "f" for r in zero):
            reason.append("dz_f = dc * c_prev * f * (1 - f) is 0 when c_{t-1} is 0, so yours "
                          "uses c_t instead of c_prev")
        because = ("; ".join(reason) if reason else
                   "check which stored value each of these uses")
        return (f"{_names(zero)} should be exactly 0 {at}, and yours "
                f"{'is' if len(zero) == 1 else 'are'} not: {because}.")
    # 6. patterns of gates and arrays
    # i, f, g all use dc (a gate not tested here, as f from a zero state, cannot object)
    untested = {r.gate for r in rows if r.gate is not None and r.status == "not tested"}
    # (in a sequence, a wrong dc shows at length 1: from length 2 it is what is carried)
    if ((kind == "step" or (first_bad_length or 1) < 2)
            and len(wrong_gates) >= 2 and set(wrong_gates) <= {"i", "f", "g"}
            and set(wrong_gates) | untested >= {"i", "f", "g"}
            and all(r.name == "dprev_c" for r in others)):
        blocks = ("The i, f and g blocks are wrong" if len(wrong_gates) == 3 else
                  f"The {' and '.join(wrong_gates)} blocks are wrong ("
                  f"{' and '.join(g for g in 'ifg' if g not in wrong_gates)} not tested here)")
        return (f"{blocks} and the o blocks are right: i, f and g all come from dc, the "
                "gradient reaching c_t, which o does not use; check "
                "dc = dc_next + dh * o * (1 - tanh(c)**2), the derivative of tanh taken at c "
                "(1 - tanh(c)**2, not 1 - c**2)"
                + (" (dprev_c = dc * f is wrong with it)." if others else "."))
    if not others and gated:
        params_wrong = {r.param for r in gated}
        products = _weight_lines(gated, ok_rows) if len(wrong_gates) < 4 else None
        if products:
            return products
        if params_wrong == {"b"} and any(r.param in ("Wx", "Wh") for r in ok_rows):
            return ("Only db is wrong while dWx and dWh are right: db is dz summed over every "
                    "row (the batch, and the time steps), db = dz.sum(axis=0); check the axis "
                    "of the sum and that no row is left out.")
        if params_wrong == {"Wh"} and any(r.param in ("Wx", "b") for r in ok_rows):
            return ("Only dWh is wrong while dWx and db are right, so dz is right: the mistake "
                    "is in the line dWh = h_prev^T dz (the states it multiplies, h_{t-1} of "
                    "each step, or the transpose).")
        if params_wrong == {"Wx"} and any(r.param in ("Wh", "b") for r in ok_rows):
            return ("Only dWx is wrong while dWh and db are right, so dz is right: dWx = "
                    "x^T dz; check the inputs you multiply (x_t of the same step) and the "
                    "transpose.")
        if len(wrong_gates) == 1:
            gate = wrong_gates[0]
            recurrent = _recurrent(kind, first_bad_length, wrong, first_tested)
            if recurrent is None:
                return (f"Only the {gate} gate is wrong ({_names(gated)}): its local "
                        f"derivative is the place to look, {LOCAL_DERIVATIVES[gate]}.")
    # 7. the recurrence
    recurrent = _recurrent(kind, first_bad_length, wrong, first_tested)
    if recurrent is not None:
        return recurrent
    if kind == "step" and len(wrong) == 1 and not gated:
        formula = {"dx": "dx = dz @ Wx.T", "dprev_h": "dprev_h = dz @ Wh.T",
                   "dprev_c": "dprev_c = dc * f"}.get(wrong[0].name)
        if formula:
            return (f"Only {wrong[0].name} is wrong while every weight gradient is right, so "
                    f"dz is right: check {formula}.")
    if not others and len(wrong_gates) == 2:
        a, b = wrong_gates
        return (f"Only gates {a} and {b} are wrong ({_names(gated)}): compare their lines, "
                f"{LOCAL_DERIVATIVES[a]} and {LOCAL_DERIVATIVES[b]}.")
    return (f"No known pattern fits; the wrong blocks are {_names(wrong)}. Compare the "
            "expected and given entries below with your formulas for them.")


def _recurrent(kind, first_bad_length, wrong, first_tested):
    """The recurrent-path sentence when the evidence supports it, else None."""
    if kind != "sequence" or not first_bad_length or first_bad_length < 2:
        return None
    fresh = [r for r in wrong if first_tested.get(r.name, 1) >= first_bad_length]
    if fresh and len(fresh) == len(wrong):
        return (f"Wrong from length {first_bad_length}, where {_names(fresh)} "
                f"{'is' if len(fresh) == 1 else 'are'} first tested (from a zero initial "
                "state they are exactly 0 at shorter lengths), so the mistake may be local to "
                f"{'it' if len(fresh) == 1 else 'them'} rather than in the recurrence; a "
                "check with a non-zero initial state (state=) tells them apart.")
    gates = {r.gate for r in wrong if r.gate is not None}
    path = ""
    if gates and "o" not in gates:
        path = (" At that length the o gate is right and i, f, g are not: the cell's path "
                "is the likely culprit (dc_next): what is carried into the previous step's dc "
                "is not dc_prev = dc * f (the forget gate's factor f missing, or another "
                "factor in its place).")
    elif "o" in gates:
        path = (" The o gate is wrong too, which the cell's path alone cannot do: the hidden "
                "path, dh_prev = dz @ Wh.T added to the previous step's dh, is the likely "
                "culprit (dh_next).")
    return (f"Right at length {first_bad_length - 1}, wrong from length {first_bad_length}: "
            "each step's own derivative is right and what is carried from one step to the "
            f"one before is not (dh_next or dc_next, or a loop that does not visit every "
            f"step).{path}")
