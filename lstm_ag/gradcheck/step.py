"""Check a CS231n-style step pair: first its forward, then every gradient, gate by gate.

::

    report = lstm_ag.check_step(lstm_step_forward, lstm_step_backward, gate_order="ifog")
    print(report)

The pair has CS231n's signatures::

    step_forward(x, prev_h, prev_c, Wx, Wh, b) -> (next_h, next_c, cache)
    step_backward(dnext_h, dnext_c, cache) -> (dx, dprev_h, dprev_c, dWx, dWh, db)

with x ``(N, D)``, prev_h and prev_c ``(N, H)``, Wx ``(D, 4H)``, Wh ``(H, 4H)``, b ``(4H,)``,
the 4H axis in ``gate_order`` (CS231n's is ``"ifog"``; this library's ``"ifgo"``).

Everything is drawn at random (seeded, N >= 2, non-zero previous state, random upstream
gradients ``dnext_h``, ``dnext_c``), so no block is zero by accident. The forward is compared
with this library's :func:`lstm_ag.cell.lstm_step` first: when it disagrees, the report says
so (and names a wrong ``gate_order`` or a sigma(2x) sigmoid when that is what it finds) and
blames no gradient. Then each of ``dx, dprev_h, dprev_c, dWx, dWh, db`` is compared with
autograd's gradient of ``sum(dnext_h * next_h + dnext_c * next_c)`` through the same step, and
with central finite differences.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
from scipy.special import expit

from ..bptt import (
    local_derivatives,
    lstm_backward,
    lstm_step_backward,
    weight_gradients,
    weight_product,
)
from ..cell import SequenceCache, lstm_step
from ..ops import PLAIN
from ..params import as_float_dtype
from . import variants
from .compare import (
    TOLERANCES,
    ReturnedWrongly,
    Row,
    block_entries,
    blocks,
    changed,
    check_gate_order,
    check_tolerances,
    compare_block,
    errors,
    finite_differences,
    permute_gates,
)
from .diagnosis import CLOSE, changed_in_place, diagnose
from .local import local_mistakes
from .report import GradientReport
from .styles import (
    call_backward,
    call_forward,
    check_signature,
    diagnose_in_style,
    forward_outputs,
    get_style,
    rename_rows,
    row_name,
    translate,
)

__all__ = ["check_step", "STEP_ARRAYS"]

#: The step's arguments, in CS231n's order; their gradients are the rows ``d<name>``.
STEP_ARRAYS = ("x", "prev_h", "prev_c", "Wx", "Wh", "b")
#: The known mistakes the step check simulates, and the sentence each is reported with.
MISTAKES = {
    "dWh from next_h": (
        "dWh is built from next_h, the step's output, where it needs prev_h: "
        "dWh = prev_h.T @ dz."),
    "db from one row": (
        "db is taken from the first row of the batch only: db = dz.sum(axis=0)."),
    "dprev_c without f": (
        "dprev_c is missing the forget gate: the cell's gradient passes to the previous cell "
        "through c = f * prev_c + i * g, so dprev_c = dc * f."),
    "dprev_c with another gate": (
        "dprev_c is multiplied by {gate} where the forget gate f is needed: the cell's "
        "gradient passes to the previous cell through c = f * prev_c + i * g, so "
        "dprev_c = dc * f."),
    "wrong rows": (
        "Your {row} is rows {got} of the gradient of the concatenated input {order} "
        "(dz @ W.T with W the weights stacked as {order}): {row} is rows {want}; check the "
        "slice that splits it (or which weight you multiply)."),
    "no transpose": (
        "Your {rows}: the weight product is missing its transpose, {a} @ dz where "
        "{a}.T @ dz is needed (dW = dz @ {a}.T with the batch in columns); the shapes fit "
        "only because {size}."),
    "dtanh twice c": (
        "The derivative of tanh(c) is taken of tanh(tanh(c)): with t = tanh(c) already "
        "stored, it is 1 - t**2, not 1 - tanh(t)**2 (dc = dnext_c + dnext_h * o * (1 - t**2))."),
}
_TWICE = {
    "i": "The input gate's derivative is taken of sigmoid(i): i is already sigmoid(z_i), so "
         "its derivative is i * (1 - i), not sigmoid(i) * (1 - sigmoid(i)).",
    "f": "The forget gate's derivative is taken of sigmoid(f): f is already sigmoid(z_f), so "
         "its derivative is f * (1 - f), not sigmoid(f) * (1 - sigmoid(f)).",
    "g": "The candidate's derivative is taken of tanh(g): g is already tanh(z_g), so its "
         "derivative is 1 - g**2, not 1 - tanh(g)**2.",
    "o": "The output gate's derivative is taken of sigmoid(o): o is already sigmoid(z_o), so "
         "its derivative is o * (1 - o), not sigmoid(o) * (1 - sigmoid(o)).",
}


def _draw(rng, N, D, H):
    """Random arguments of moderate size (no gate saturated), this library's gate order."""
    def normal(*shape, scale=1.0):
        return rng.standard_normal(shape) * scale
    arrays = {"x": normal(N, D), "prev_h": normal(N, H, scale=0.5),
              "prev_c": normal(N, H), "Wx": normal(D, 4 * H, scale=0.5),
              "Wh": normal(H, 4 * H, scale=0.5), "b": normal(4 * H, scale=0.3)}
    return arrays, normal(N, H), normal(N, H)


def _our_step(a, ops=PLAIN):
    """This library's step on the dict of arrays: ``((next_h, next_c), activations)``."""
    return lstm_step(a["Wh"], a["x"] @ a["Wx"] + a["b"], a["prev_h"], a["prev_c"], ops)


def _in_order(arrays, order):
    """The arguments with the 4H axis in ``order`` (from this library's ``"ifgo"``)."""
    return {k: permute_gates(v, "ifgo", order) if k in ("Wx", "Wh", "b") else np.array(v)
            for k, v in arrays.items()}


def _forward_diagnosis(arrays, given, gate_order):
    """A sentence naming what the user's forward computes instead, when it is a known thing."""
    h, c = given

    def matches(out):
        return errors(h, out[0])[1] < 1e-8 and errors(c, out[1])[1] < 1e-8
    for order in ("".join(p) for p in itertools.permutations("ifgo")):
        if order == gate_order:
            continue
        # the user reads the blocks we passed (in gate_order) as if they were in `order`
        seen = {k: permute_gates(permute_gates(v, "ifgo", gate_order), order, "ifgo")
                if k in ("Wx", "Wh", "b") else v for k, v in arrays.items()}
        if matches(_our_step(seen)[0]):
            cs231n = " (CS231n's order)" if order == "ifog" else ""
            return (f"Your step_forward reads the 4H axis in gate order {order!r}{cs231n}, "
                    f"not {gate_order!r}: pass gate_order={order!r}. No gradient is blamed "
                    "before the forward agrees.")
    doubled = PLAIN._replace(sigmoid=lambda z, out=None: expit(2 * z, out))
    if matches(_our_step(arrays, doubled)[0]):
        return ("Your sigmoid is sigma(2x), not sigma(x): 0.5 * (tanh(x) + 1) is a known trap; "
                "use 1 / (1 + exp(-x)) (or 0.5 * (tanh(x / 2) + 1)). No gradient is blamed "
                "before the forward agrees.")
    equation = variants.which_equation(arrays, given)
    if equation is not None:
        return equation + " No gradient is blamed before the forward agrees."
    return ("Your step_forward's next_h and next_c differ from lstm_ag's step: check the six "
            "equations (i, f, o = sigmoid, g = tanh of z = x Wx + prev_h Wh + b; "
            "c = f * prev_c + i * g; h = o * tanh(c)) and the gate order of the 4H axis "
            "before any gradient.")


def _simulated(arrays, dnext_h, dnext_c):
    """Known mistakes, composed from the hand backward's own pieces:
    ``(sentence, {block name: the gradient block that mistake gives})``."""
    a = arrays
    cache = SequenceCache.run(a["Wx"], a["Wh"], a["b"], a["x"][None], a["prev_h"],
                              a["prev_c"])
    right = lstm_backward(np.zeros_like(cache.hs), cache, dnext_h, dnext_c)
    dz = right["z"][0]
    h_c, c_z, h_zo, f = (d[0] for d in local_derivatives(cache))
    i, g, o, tanh_c = cache.i[0], cache.g[0], cache.o[0], cache.tanh_c[0]

    def from_dz(dz, dprev_c=None):
        grads = weight_gradients(cache, dz[None])
        grads.update(x=grads.pop("xs")[0], prev_h=dz @ a["Wh"].T)
        if dprev_c is not None:
            grads["prev_c"] = dprev_c
        return named(grads)

    def named(grads):
        return {blk.name: blk.view(grads[blk.param]) for blk in blocks(list(grads))}

    def variant(h_c=h_c, c_z=c_z, h_zo=h_zo):
        dz, _, dprev_c = lstm_step_backward(dnext_h, dnext_c, (a["Wh"], h_c, c_z, h_zo, f))
        return from_dz(dz, dprev_c)

    def sig_twice(s):
        return expit(s) * (1 - expit(s))
    out = [(MISTAKES["dWh from next_h"],
            named({"Wh": weight_gradients(cache, right["z"], h_prev=cache.hs)["Wh"]})),
           (MISTAKES["db from one row"],
            {blk.name: blk.view(dz[0]) for blk in blocks(["b"])}),
           (MISTAKES["dprev_c without f"],
            {"dprev_c": dnext_c + dnext_h * h_c}),
           (MISTAKES["dtanh twice c"], variant(h_c=o * (1 - np.tanh(tanh_c) ** 2))),
           *((MISTAKES["dprev_c with another gate"].replace("{gate}", gate),
              {"dprev_c": (dnext_c + dnext_h * h_c) * y}) for gate, y in (("i", i), ("g", g),
                                                                           ("o", o)))]
    twice = {"i": g * sig_twice(i), "f": a["prev_c"] * sig_twice(f),
             "g": i * (1 - np.tanh(g) ** 2)}
    for k, gate in enumerate("ifg"):
        c_z2 = c_z.copy()
        c_z2[:, k] = twice[gate]
        out.append((_TWICE[gate], variant(c_z=c_z2)))
    out.append((_TWICE["o"], variant(h_zo=tanh_c * sig_twice(o))))
    acts = {"i": i, "f": f, "g": g, "o": o, "tanh_c": tanh_c, "c": cache.c[1],
            "c_prev": a["prev_c"]}
    for sentence, alternative in local_mistakes(acts):
        out.append((sentence, variant(**_local(alternative, h_c, c_z, h_zo)), True))
    return out + _split_and_products(a, cache, right["z"])


def _local(alternative, h_c, c_z, h_zo):
    """The local derivatives ``(h_c, c_z, h_zo)`` of one step (:func:`lstm_ag.bptt.
    local_derivatives`' ``(B, H)``, ``(B, 3, H)``, ``(B, H)``) with those of a
    :data:`~lstm_ag.gradcheck.local.LOCAL_MISTAKES` entry in place of the right ones."""
    c_z = c_z.copy()
    for k, gate in enumerate("ifg"):
        if gate in alternative:
            c_z[:, k] = alternative[gate]
    return {"h_c": alternative.get("h_c", h_c), "c_z": c_z, "h_zo": alternative.get("o", h_zo)}


def _split_and_products(a, cache, dZ):
    """Mistakes in the products after dz: dx and dprev_h taken from the wrong rows of the
    gradient of a concatenated input, and weight products missing their transpose (these
    fit only at square sizes)."""
    N, D = a["x"].shape
    H = a["prev_h"].shape[1]
    dz = dZ[0]
    out = []
    for order, stack in (("[h; x]", ("Wh", "Wx")), ("[x; h]", ("Wx", "Wh"))):
        whole = dz @ np.concatenate([a[k] for k in stack]).T       # (N, H + D)
        right = {"prev_h": 0 if stack[0] == "Wh" else D, "x": H if stack[0] == "Wh" else 0}
        for name, width in (("prev_h", H), ("x", D)):
            for start in sorted({0, H, D}):
                if start == right[name] or start + width > H + D:
                    continue
                part = whole[:, start:start + width]
                out.append((MISTAKES["wrong rows"].replace("{row}", f"d{name}")
                            .replace("{order}", order)
                            .replace("{got}", f"{start}:{start + width}")
                            .replace("{want}", f"{right[name]}:{right[name] + width}"),
                            {f"d{name}": part}))
    for key, factor, what in (("Wx", cache.xs, "x"), ("Wh", cache.h_prev, "prev_h")):
        if factor.shape[2] == N:
            wrong = weight_product(factor, dZ, transpose=False)
            out.append((MISTAKES["no transpose"].replace("{a}", what)
                        .replace("{size}", f"N = {N}, as many rows as {what} has columns"),
                        {blk.name: blk.view(wrong) for blk in blocks([key])}))
    return out


def check_step(step_forward: Callable, step_backward: Callable, *, gate_order: str = "ifgo",
               batch: int = 2, input_size: int = 3, hidden_size: int = 8,
               dtype: Any = np.float64, seed: int = 0,
               tolerances: tuple[float, float] | None = None,
               fd_samples: int = 32, style: str | None = None) -> GradientReport:
    """Check a CS231n-style step pair (see the module docstring); say what is wrong.

    - step_forward, step_backward: the pair under test.
    - gate_order: the order of the 4H axis in their Wx, Wh, b and dWx, dWh, db (``"ifog"``
      for CS231n).
    - batch, input_size, hidden_size: N, D, H of the random problem (N >= 2 unless you want a
      warning: a batch of one hides mistakes in the sum over the batch).
    - dtype: float64 or float32, the dtype the pair is run in (references in float64).
    - seed: of the random problem and the finite-difference entries.
    - tolerances: ``(rel vs autograd, rel vs finite differences)``; default by dtype.
    - fd_samples: most entries per block to difference.
    - style: the course's style of the pair (:mod:`~lstm_ag.gradcheck.styles`): ``"cs231n"``
      (gate order i, f, o, g) or ``"dls"`` (``lstm_cell_forward(xt, a_prev, c_prev,
      parameters)``, ``lstm_cell_backward(da_next, dc_next, cache)``, the batch in columns);
      the rows and sentences then use that style's names and shapes. None: the signatures
      above with ``gate_order``.
    Returns a :class:`~lstm_ag.gradcheck.report.GradientReport` (``kind="step"``): rows
    ``dx, dprev_h, dprev_c, dWx[i] .. db[o]``; ``forward`` compares next_h and next_c.
    """
    start = time.perf_counter()
    styled = None if style is None else get_style(style)
    if styled is not None:
        styled.pair("step")
        if styled.name == "cs231n":                  # today's pair, in CS231n's gate order
            styled, gate_order = None, "ifog"
    for f, name in ((step_forward, "step_forward"), (step_backward, "step_backward")):
        if not callable(f):
            raise TypeError(f"{name} must be a function, got {type(f).__name__}")
    check_gate_order(gate_order)
    for name, value in (("batch", batch), ("input_size", input_size),
                        ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    dtype = as_float_dtype(dtype)
    tolerances = check_tolerances(tolerances)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    tol_ag, tol_fd = tolerances if tolerances is not None else TOLERANCES[dtype]
    rng = np.random.default_rng(seed)
    arrays, dnext_h, dnext_c = _draw(rng, batch, input_size, hidden_size)
    sizes = {"B": batch, "D": input_size, "H": hidden_size, "T": 1, "seed": seed}
    wrote = []                          # the arguments the student's code changed in place
    if styled is None:
        check_signature(step_forward, "forward", get_style("cs231n"), "step")
        check_signature(step_backward, "backward", get_style("cs231n"), "step")
        user = {k: v.astype(dtype) for k, v in _in_order(arrays, gate_order).items()}
        before = {k: v.copy() for k, v in user.items()}
        out = step_forward(*(user[k] for k in STEP_ARRAYS))
        if names := changed(user, before):
            wrote.append(changed_in_place("step_forward", names))
        if not (isinstance(out, tuple) and len(out) == 3):
            raise ReturnedWrongly(f"step_forward returned {_what(out)}, expected 3 values: "
                                  "(next_h, next_c, cache)")
        outputs = list(zip(("next_h", "next_c"), out[:2], strict=True))
    else:
        state, outputs, out = _styled_forward(styled, step_forward, arrays, dnext_h, dnext_c,
                                              dtype, sizes)
    (h_ref, c_ref), _ = _our_step(arrays)
    given = [np.asarray(v, dtype=np.float64) for _, v in outputs]
    notes = []
    computed = {np.asarray(v).dtype for v in out[:2]}
    if dtype == np.float64 and np.dtype(np.float32) in computed and tolerances is None:
        tol_ag, tol_fd = TOLERANCES[np.dtype(np.float32)]
        notes.append("note: your step computes in float32 although it was given float64 "
                     "arrays; judged with float32's tolerances (check with dtype=float32)")
    forward = [_forward_row(name, g, r, tol_ag)
               for name, g, r in ((outputs[0][0], given[0], h_ref),
                                  (outputs[1][0], given[1], c_ref))]
    if batch == 1:
        notes.append("warning: a batch of one (N = 1) cannot show a mistake in the sum over the "
                     "batch (db from one row); check with N >= 2 too")
    if not all(r.ok for r in forward):
        worst = max(forward, key=lambda r: r.rel)
        variant = None if styled is not None else _variant_report(
            step_forward, step_backward, arrays, gate_order, dnext_h, dnext_c, given, tol_fd)
        sentences, rows = variant or ([_forward_diagnosis(arrays, given, gate_order)], [])
        if rows:
            notes.append("the gradient rows compare your step_backward with finite "
                         "differences of your own step_forward (both error columns)")
        return GradientReport(
            ok=False, rows=rows, worst=(worst.name, None, worst.rel), kind="step",
            dtype=str(dtype), tolerances=(tol_ag, tol_fd), forward=forward,
            diagnosis=_in_style(styled, [*wrote, *sentences]),
            notes=notes, seconds=time.perf_counter() - start, style=_name(styled))
    if styled is not None:
        got, unknown = call_backward(styled, "step", step_backward, state, sizes,
                                     {k: v.shape for k, v in arrays.items()})
        notes += unknown
        grads = ()
    else:
        upstream = {"dnext_h": dnext_h.astype(dtype), "dnext_c": dnext_c.astype(dtype)}
        before = {k: v.copy() for k, v in upstream.items()}
        grads = step_backward(upstream["dnext_h"], upstream["dnext_c"], out[2])
        if names := changed(upstream, before):
            wrote.append(changed_in_place("step_backward", names))
        got = _returned(grads, arrays, gate_order)

    def functional(a):
        (h, c), _ = lstm_step(a["Wh"], a["x"] @ a["Wx"] + a["b"], a["prev_h"], a["prev_c"])
        return anp.sum(dnext_h * h) + anp.sum(dnext_c * c)

    reference = autograd.grad(functional)(arrays)
    plain = {k: np.array(v) for k, v in arrays.items()}

    def plain_loss(a):
        (h, c), _ = _our_step(a)
        return float(np.sum(dnext_h * h) + np.sum(dnext_c * c))
    rows = []
    for blk in blocks(STEP_ARRAYS):
        indices = block_entries(blk, arrays[blk.param].shape, fd_samples, rng)
        fd = (indices, *finite_differences(plain_loss, plain, blk.param, indices))
        rows.append(compare_block(blk, got.get(blk.name, got[blk.param]), reference[blk.param],
                                  tol_ag, fd=fd, fd_tolerance=tol_fd))
    ok = all(r.ok for r in rows)
    order = None if ok or styled else _return_order(grads, reference, gate_order, tol_ag)
    close = CLOSE[max({d for d in computed if d.kind == "f"} | {dtype},
                      key=lambda d: np.finfo(d).eps)]
    if order is not None:
        diagnosis = [(f"Your step_backward returns its gradients in another order: "
                      f"({', '.join(order)}) where (dx, dprev_h, dprev_c, dWx, dWh, db) is "
                      "expected; each of them is right.")]
    elif styled is not None:
        diagnosis = [] if ok else diagnose_in_style(
            styled, "step", rows, diagnose, candidates=_simulated(arrays, dnext_h, dnext_c),
            counts={"N": batch}, notes=notes, close=close)
    else:
        diagnosis = [] if ok else diagnose(rows, kind="step",
                                           candidates=_simulated(arrays, dnext_h, dnext_c),
                                           counts={"N": batch}, close=close)
    ok = ok and not wrote
    diagnosis = [*wrote, *diagnosis]
    wrong = [r for r in rows if not r.ok]
    # dx and dprev_h follow from dz: a wrong gate block is where the mistake is
    worst = max([r for r in wrong if r.gate] or wrong or rows, key=lambda r: r.rel)
    name = worst.name.split("[")[0]
    if styled is not None:
        rows = rename_rows(styled, "step", rows, sizes)
        name = row_name(styled, "step", worst.name)
    return GradientReport(ok=ok, rows=rows, worst=(name, worst.gate, worst.rel),
                          kind="step", dtype=str(dtype), tolerances=(tol_ag, tol_fd),
                          forward=forward, diagnosis=diagnosis, notes=notes,
                          seconds=time.perf_counter() - start, style=_name(styled))


def _styled_forward(styled, step_forward, arrays, dnext_h, dnext_c, dtype, sizes):
    """A styled pair's forward run: ``(its arguments and outputs by name, [(name, next_h),
    (name, next_c)] in this library's layout, the raw next_h and next_c)``."""
    state = call_forward(styled, "step", step_forward, {
        k: v.astype(dtype) for k, v in {**arrays, "dnext_h": dnext_h,
                                        "dnext_c": dnext_c}.items()}, sizes)
    return state, forward_outputs(styled, state, sizes), [state[k] for k in styled.forward_rows]


def _name(styled):
    return None if styled is None else styled.name


def _in_style(styled, sentences):
    """The forward's sentences in the style's words (a styled pair names its own arguments)."""
    if styled is None:
        return sentences
    return translate(styled, "step", [s.replace("step_forward", styled.step.forward)
                                      for s in sentences], [], [])


def _returned(grads, arrays, gate_order):
    """The backward's six outputs by name: float64 arrays in lstm_ag's gate order, None when
    not returned, or a string saying the shape that came back."""
    if not (isinstance(grads, (tuple, list)) and len(grads) == 6):
        raise ReturnedWrongly(f"step_backward returned {_what(grads)}, expected 6 values: "
                              "(dx, dprev_h, dprev_c, dWx, dWh, db)")
    got = {}
    for name, value in zip(STEP_ARRAYS, grads, strict=True):
        value = np.asarray(value, dtype=np.float64) if value is not None else None
        if value is None:
            got[name] = None
        elif value.shape != arrays[name].shape:
            got[name] = f"shape {value.shape}, expected {arrays[name].shape}"
        else:
            got[name] = (permute_gates(value, gate_order, "ifgo")
                         if name in ("Wx", "Wh", "b") else value)
    return got


def _variant_report(step_forward, step_backward, arrays, gate_order, dnext_h, dnext_c,
                    given, tol_fd):
    """For a forward that is a known LSTM variant: ``(sentences, rows)``, the variant named
    and the backward checked against the student's own forward by finite differences; None
    when the forward is no known variant."""
    named = variants.recognise(arrays, given)
    if named is None:
        return None
    user = {k: np.array(v) for k, v in _in_order(arrays, gate_order).items()}
    rows = variants.against_own_forward(
        step_forward, step_backward, {k: arrays[k] for k in STEP_ARRAYS}, gate_order, dnext_h,
        dnext_c, lambda grads: _returned(grads, user, gate_order), tol_fd)
    wrong = [r for r in rows if not r.ok]
    if not wrong:
        return [named, ("Your step_backward agrees with your own step_forward (every gradient "
                        "against its finite differences): it is right for the variant you "
                        "wrote.")], rows
    names = ", ".join(r.name for r in wrong)
    return [named, (f"Against your own step_forward's finite differences, your step_backward "
                    f"is wrong in {names}: these are mistakes in the backward of your "
                    "variant.")], rows


def _what(value):
    """What a function returned, in a few words."""
    if isinstance(value, (tuple, list)):
        return f"{len(value)} value{'s' if len(value) != 1 else ''}"
    return "None" if value is None else f"a {type(value).__name__}"


def _return_order(grads, reference, gate_order, tolerance):
    """The names of the gradients in the order the backward returned them, when a reordering
    (other than none) makes every one of them right; else None."""
    names = list(STEP_ARRAYS)

    def matches(value, name):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        if value.shape != reference[name].shape:
            return False
        if name in ("Wx", "Wh", "b"):
            value = permute_gates(value, gate_order, "ifgo")
        return errors(value, reference[name])[1] <= tolerance
    fits = [[matches(value, name) for name in names] for value in grads]
    for order in itertools.permutations(range(len(names))):
        if list(order) != list(range(len(names))) and all(fits[k][order[k]]
                                                          for k in range(len(names))):
            return [f"d{names[k]}" for k in order]
    return None


def _forward_row(name, given, expected, tolerance):
    if given.shape != expected.shape:
        return Row(name, name, None, expected.size, "bad shape", tolerance,
                   problem=f"shape {given.shape}, expected {expected.shape}")
    abs_ag, rel = errors(given, expected)
    return Row(name, name, None, expected.size, "ok" if rel <= tolerance else "WRONG",
               tolerance, abs_ag, rel, expected=expected, given=given)
