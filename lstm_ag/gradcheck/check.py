"""Check a sequence backward against autograd and finite differences; say what is wrong.

::

    report = lstm_ag.check_gradients(params, xs, targets, backward=my_backward)
    print(report)            # the diagnosis, then one row per parameter and gate
    report.ok, report.worst, report.first_bad_length, report.diagnosis

The loss the backward differentiates is one of three (``upstream=``):

* ``None`` (default): the readout's MSE at every step, :func:`lstm_ag.mse` (with ``mask``);
  ``backward(params, xs, targets)``;
* ``"last"``: ``sum(dh_last * h_T)``, what notebook 001's backward takes (``dL/dh_T``);
  ``backward(params, xs, dh_last)``, dh_last ``(B, H)`` (``(H,)`` for one sequence);
* ``"all"``: ``sum(dhs * hs)``, a gradient for every hidden state (CS231n's
  ``lstm_backward(dh, cache)``); ``backward(params, xs, dhs)``, dhs ``(T, B, H)``.

For the upstream modes the upstream gradient is ``targets`` when given, else drawn at random
(seeded). With ``state=`` (or ``mask=``) the backward is called with ``state=...`` (or
``mask=...``, cut to the prefix checked) as a keyword argument too.

The references (see :mod:`lstm_ag.gradcheck.compare`) are autograd tracing the forward and
central finite differences, both in float64. When the backward is wrong, the check is repeated
on the prefixes ``xs[:L]``: ``first_bad_length`` is the shortest that is wrong, and the
diagnosis and ``worst`` are taken there, before the error spreads through the recurrence. A
wrong local derivative shows at length 1, where its block is first tested (from a zero initial
state, dWh and the forget gate are exactly 0 at length 1 and first tested at length 2; the
report says so); a broken recurrent path from length 2.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np

from ..bptt import (
    hidden_grads,
    local_derivatives,
    loss_and_grads,
    lstm_backward,
    lstm_step_backward,
    readout_mse_backward,
    weight_gradients,
    weight_product,
)
from ..cell import SequenceCache
from ..inputs import as_mask, as_sequence, as_state, as_targets
from ..model import bptt, lstm_forward, mse
from ..params import GATES, check_params, flatten, structure, unflatten
from .adapters import LAYOUTS, from_user, split_output, to_user
from .compare import (
    TOLERANCES,
    arrays_in,
    block_entries,
    blocks,
    changed,
    check_gate_order,
    check_tolerances,
    compare_block,
    finite_differences,
    label,
    where,
)
from .diagnosis import CLOSE, changed_in_place, diagnose
from .local import local_mistakes
from .report import GradientReport
from .styles import (
    call_backward,
    call_forward,
    check_plain_backward,
    diagnose_in_style,
    get_style,
    rename_rows,
    row_blocks,
    row_name,
)

__all__ = ["check_gradients", "UPSTREAMS"]

#: The losses a sequence backward may differentiate (None: the readout's MSE).
UPSTREAMS = (None, "last", "all")
#: Seconds of finite differences to aim for when ``fd_samples`` is not given.
FD_BUDGET = 2.0
#: The known mistakes the checker simulates, and the sentence each is reported with.
MISTAKES = {
    "dWh from h_t": (
        "dWh is built from h_t, the step's output, where it needs h_{t-1}, the state the step "
        "started from: dWh = h_prev^T dz (use the cached previous state)."),
    "no dc_next": (
        "Your gradients are the right ones with dc_next left out: the gradient of c_{t-1}, "
        "dc_prev = dc * f, is not added into the previous step's dc "
        "(dc = dc_next + dh * o * (1 - tanh(c)**2))."),
    "no dh_next": (
        "Your gradients are the right ones with dh_next left out: the gradient of h_{t-1}, "
        "dh_prev = dz @ Wh.T, is not added to the previous step's dh."),
    "nothing carried": (
        "Your gradients are the right ones with nothing carried from a step to the one before "
        "(neither dh_prev nor dc_prev reaches step t - 1): a loop that runs forward in time, "
        "t = 0, 1, ..., adds what step t passes back into a step it has already visited; run "
        "it from the last step to the first, for t in reversed(range(T))."),
    "first step only": (
        "Your gradients are those of the first step alone: the forward's loop stops after one "
        "step (a `return h` inside the loop, as in notebook 001) or the backward visits only "
        "the first cached step."),
    "db from one row": (
        "db is taken from the first sequence of the batch only: sum dz over every row "
        "(db = dz.sum(axis=0) over the batch and the time steps)."),
    "one step's contribution": (
        "Your {rows} {is} the contribution of one step alone (t = 0, the last step your "
        "backward loop visits): accumulate over time with += instead of = (the gradient of a "
        "weight is the sum of every step's contribution)."),
    "loop forward in time": (
        "Your backward loop runs forward in time (t = 0, 1, ..., T - 1): run it from the last "
        "step to the first, for t in reversed(range(T)), so that what step t passes back "
        "(dh_prev, dc_prev) reaches step t - 1."),
    "upstream not added": (
        "The upstream gradient of each step (dhs[t], da[:, :, t]) is not added to the "
        "gradient carried back from the step after: the gradient reaching h_t is "
        "dh = dhs[t] + dh_next (yours takes the upstream of the last step only)."),
    "dh from the wrong rows": (
        "dh_prev, the gradient carried back to h_{t-1}, is taken from the wrong rows of the "
        "gradient of the concatenated input {order} (dz @ W.T): yours is rows {got}, the "
        "gradient of h_{t-1} is rows {want}."),
    "dx from the wrong rows": (
        "dx is taken from the wrong rows of the gradient of the concatenated input {order} "
        "(dz @ W.T): yours is rows {got}, the gradient of x_t is rows {want}."),
    "no transpose": (
        "Your {rows}: the weight product is missing its transpose, {a} @ dz where "
        "{a}.T @ dz is needed (dW = dz @ {a}.T with the batch in columns); the shapes fit "
        "only because the batch has {size}."),
    "no gradient at all": (
        "Every gradient of yours is 0 at every length, where the expected ones are not: the "
        "upstream gradient (dhs[t], da[:, :, t]) never enters your backward (dh = dhs[t] + "
        "dh_next at every step), or nothing is added into the arrays you return."),
    "db to one number": (
        "Your {rows} {is} summed to one number (dz.sum(), over every axis) where the sum runs "
        "over the batch and the time steps only, one entry per unit: sum over those axes."),
    "dx at the wrong step": (
        "Your dx is stored at the wrong step: the gradient of x_t is written at step T - 1 - t "
        "(its time axis reversed); store what step t computes at t."),
    "upstream at every step": (
        "The upstream gradient dL/dh_T is added at every step: it reaches the last hidden "
        "state only, so add it once, before the loop, and carry dh_next alone to the steps "
        "before."),
    "dc_prev with another gate": (
        "Your dc_prev is multiplied by {gate} where the forget gate f is needed: "
        "c = f * c_prev + i * g, so dc_prev = dc * f."),
    "dh0 plus the upstream": (
        "Your dh0 adds the upstream gradient of step 0 (dhs[0], da[:, :, 0]) to the one "
        "carried back out of step 0, which already holds it: dh0 is dh_prev after the loop's "
        "last iteration alone."),
    "dc0 without f": (
        "Your dc0 is missing the forget gate: the gradient of the initial cell state is "
        "dc * f of step 0 (c_1 = f * c_0 + i * g), not dc."),
    "dWh from c_prev": (
        "dWh is built from c_{t-1}, the cell state, where it needs h_{t-1}, the hidden state "
        "the step started from: dWh = h_prev^T dz."),
    "dh_prev without a gate": (
        "dh_prev, the gradient carried back to h_{t-1}, leaves out the {gate} gate: "
        "dh_prev = dz @ Wh.T sums the contributions of all four gates' dz."),
    "dc_prev with f's derivative": (
        "Your dc_prev is multiplied by the forget gate's derivative f * (1 - f) where f itself "
        "is needed: c = f * c_prev + i * g, so dc_prev = dc * f."),
    "dh0 from the upstream": (
        "Your dh0 is the upstream gradient of step 0 (dhs[0], da[:, :, 0]): the gradient of "
        "the initial state is the one carried back out of step 0 (dh_prev after the loop's "
        "last iteration)."),
}


def _own_backward(upstream):
    """The library's hand BPTT, called as a user's backward would be."""
    if upstream is None:
        return bptt

    def backward(p, xs, upstream_grad, state=None):
        single = np.ndim(xs) == 2
        x3 = np.asarray(xs)[:, None] if single else np.asarray(xs)
        T, B, _ = x3.shape
        num_layers, dirs = structure(p)
        K, H = num_layers * dirs, p["Wh"].shape[0]
        h0, c0 = as_state(state, B, H, x3.dtype, single, K)
        g = np.asarray(upstream_grad)
        if upstream == "last":
            g = g.reshape((B, H) if K == 1 else (K, B, H))
            return hidden_grads(p, x3, h0, c0, dhT=[g] if K == 1 else list(g))
        return hidden_grads(p, x3, h0, c0, dhs=g.reshape(T, B, dirs * H))
    return backward


def _functional(upstream, params, xs, third, weights, h0, c0, method):
    """The loss the backward differentiates, at ``params`` (float64, time-major arguments;
    a nested dict, or its :func:`lstm_ag.params.flatten` names)."""
    if "." in "".join(params):
        params = unflatten(params)
    if upstream is None:
        mask = None if weights is None else weights[..., 0]
        return mse(params, xs, third, (h0, c0), mask=mask, method=method)
    hs, (h, _) = lstm_forward(params, xs, (h0, c0), method=method)
    return anp.sum(third * (h if upstream == "last" else hs))


def _fd_samples(T, B, D, H, O, n_blocks):
    """Entries per block to difference in about :data:`FD_BUDGET` seconds on a 2-core machine
    (four evaluations of the loss per entry), from the sizes alone, so that a report does not
    depend on how busy the machine is: a loss costs about T numpy calls per step and
    2 T B 4H (D + H + O) flops."""
    per_eval = T * 3e-5 + 2 * T * B * 4 * H * (D + H + O) / 5e9
    return int(np.clip(FD_BUDGET / (4 * n_blocks * per_eval), 1, 64))


def check_gradients(params: dict, xs: Any, targets: Any = None,
                    backward: Callable | None = None, *, upstream: str | None = None,
                    state: Any = None, mask: Any = None, gate_order: str = "ifgo",
                    layout: str = "dict", tolerances: tuple[float, float] | None = None,
                    fd_samples: int | None = None, seed: int = 0, style: str | None = None,
                    forward: Callable | None = None) -> GradientReport:
    """Compare a sequence backward with autograd and finite differences; say what is wrong.

    - params: this library's dict ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (and ``Wy (H, O)``,
      ``by (O,)`` for the default loss), float64 or float32: the backward runs in that dtype,
      the references always in float64.
    - xs: ``(T, B, D)``, or ``(T, D)`` for one sequence (the backward gets it as given).
    - targets: with ``upstream=None``, the readout's targets ``(T, B, O)`` / ``(T, O)``; with
      ``"last"`` or ``"all"``, optionally the upstream gradient (random when None).
    - backward: the function under test (see the module docstring for its signature); it
      returns a dict of gradients, or ``(loss, grads)`` (the loss is compared too). None checks
      the library's own hand BPTT.
    - upstream: ``None``, ``"last"`` or ``"all"``: which loss (module docstring).
    - state: optional initial ``(h0, c0)``; mask: optional loss weights (``upstream=None``).
    - gate_order: the order of the 4H axis in the backward's weights (``"ifog"``: CS231n).
    - layout: ``"dict"``, ``"concat"`` or ``"split"`` (:mod:`lstm_ag.gradcheck.adapters`).
    - tolerances: ``(rel vs autograd, rel vs finite differences)``; default by dtype.
    - fd_samples: entries per block to difference (default: as many as fit in about two
      seconds, at most 64); seed: seeds those entries and a random upstream.
    - style: the course's style of ``forward`` and ``backward`` (:mod:`~lstm_ag.gradcheck.styles`:
      ``"cs231n"``, ``"dls"``, ``"notebook"``, ``"karpathy"``, ``"torch"``): they are called
      as that style writes them (``backward`` alone for the notebook's class), the style sets
      the loss (``upstream``), layout and gate order, the initial state is drawn at random
      (seeded) when the style's forward takes one, and every output is compared (dx, the
      initial state's gradients, every weight and bias) in the student's names and shapes.
    Returns a :class:`~lstm_ag.gradcheck.report.GradientReport`.
    """
    start = time.perf_counter()
    styled = None if style is None else _styled(style, forward, backward, upstream, layout,
                                                gate_order)
    if styled is not None:
        upstream = styled.upstream
    if upstream not in UPSTREAMS:
        raise ValueError(f"upstream must be None, 'last' or 'all', got {upstream!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, "
                         f"got {layout!r}")
    check_gate_order(gate_order)
    if layout != "dict" and gate_order != "ifgo":
        raise ValueError("gate_order applies to layout='dict' (the other layouts name each "
                         f"gate), got gate_order={gate_order!r} with layout={layout!r}")
    if backward is not None and not callable(backward):
        raise TypeError(f"backward must be a function, got {type(backward).__name__}")
    tolerances = check_tolerances(tolerances)
    if fd_samples is not None and (isinstance(fd_samples, bool)
                                   or not isinstance(fd_samples, (int, np.integer))
                                   or fd_samples < 1):
        raise ValueError(f"fd_samples must be a positive integer or None, got {fd_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    D, H, O = check_params(params, readout=upstream is None)
    num_layers, dirs = structure(params)
    nested = (num_layers, dirs) != (1, 1)
    if nested and layout != "dict":
        raise ValueError(f"layout={layout!r} holds one layer and direction; a stacked or "
                         "bidirectional model is checked in layout='dict' (nested dicts)")
    K = num_layers * dirs
    dtype = np.dtype(params["Wx"].dtype)
    tol_ag, tol_fd = tolerances if tolerances is not None else TOLERANCES[dtype]
    xs3, single = as_sequence(xs, D, dtype)
    T, B, _ = xs3.shape
    rng = np.random.default_rng(seed)
    weights = None
    if upstream is None:
        if targets is None:
            raise ValueError("targets is required for the readout's MSE (upstream=None); "
                             "for a backward of dL/dh give upstream='last' or 'all'")
        third = as_targets(targets, (T, B, O), dtype, single)
        weights = as_mask(mask, T, B, dtype, single)
        names = list(flatten(params))
    else:
        if mask is not None:
            raise ValueError("mask applies to the readout's MSE (upstream=None) only")
        shape = ((B, H) if K == 1 else (K, B, H)) if upstream == "last" else (T, B, dirs * H)
        given_shape = (shape[0], H) if upstream == "last" and K > 1 else \
            (H,) if upstream == "last" else (T, dirs * H)
        if targets is None:
            third = rng.standard_normal(shape).astype(dtype)
        else:
            third = np.asarray(targets, dtype=dtype)
            want = given_shape if single else shape
            if third.shape != want:
                raise ValueError(f"targets (the upstream gradient dL/dh"
                                 f"{'_T' if upstream == 'last' else 's'}) must have shape "
                                 f"{want}, got {np.shape(targets)}")
            third = third.reshape(shape)
        names = [k for k in flatten(params) if k not in ("Wy", "by")]
    state, keys = _style_setup(styled, state, (D, H, B, T, seed), dtype)
    h0, c0 = as_state(state, B, H, dtype, single, K)
    style_notes = {}
    if backward is None:
        backward = _own_backward(upstream)
    elif styled is None:
        check_plain_backward(backward, [k for k, v in (("state", state), ("mask", mask))
                                        if v is not None])
    flat = flatten(params)
    shapes = {k: flat[k].shape for k in names}
    p64 = {k: np.array(flat[k], dtype=np.float64) for k in names}
    x64, third64 = xs3.astype(np.float64), third.astype(np.float64)
    h64, c64 = h0.astype(np.float64), c0.astype(np.float64)
    w64 = None if weights is None else weights.astype(np.float64)

    computed32 = []                     # lengths at which the backward returned float32
    history = {}                        # length -> its rows, for GradientReport.plot
    wrote = []                          # the arguments the backward changed in place
    third_name = {None: "targets", "last": "dh_last", "all": "dhs"}[upstream]

    def prefix(length):
        """The arguments of the loss at a prefix of ``length`` steps (float64, time-major)."""
        y = third64 if upstream == "last" else third64[:length]
        w = None if w64 is None else w64[:length]
        return x64[:length], y, w

    @functools.cache
    def reference(length):
        x, y, w = prefix(length)
        if any(k in keys for k in ("x", "h0", "c0")):      # a style's dx, dh0, dc0 too
            return _with_inputs(upstream, p64, x, y, w, h64, c64)
        loss, grads = autograd.value_and_grad(
            lambda p: _functional(upstream, p, x, y, w, h64, c64, "autograd"))(unflatten(p64))
        return loss, flatten(grads)

    def call(length, order=gate_order):
        if styled is not None:
            return None, _call_styled(styled, (forward, backward), params, xs3[:length],
                                      third if upstream == "last" else third[:length],
                                      (h0, c0), keys, seed, style_notes)
        x = xs3[:length]
        y = third if upstream == "last" else third[:length]
        if single:
            x, y = x[:, 0], (y[..., 0, :] if upstream == "last" else y[:, 0])
        user_params = to_user({k: params[k] for k in params}, layout, order)
        extra = {} if state is None else {"state": state}
        if mask is not None:
            extra["mask"] = np.array(mask)[:length]         # a copy: it may be written
        # the backward gets copies (its writes cannot reach the next call) of what it may
        # write into, checked after the call; the state as given (the very object)
        given = arrays_in({"params": user_params, "xs": x, third_name: y, **extra})
        before = {k: v.copy() for k, v in given.items()}
        x, y = x.copy(), y.copy()
        given.update(xs=x, **{third_name: y})
        out = backward(user_params, x, y, **extra)
        for name in changed(given, before):
            if name not in wrote:
                wrote.append(name)
        loss, grads = split_output(out)
        if dtype == np.float64 and isinstance(grads, dict) and any(
                getattr(v, "dtype", None) == np.float32 for v in grads.values()):
            computed32.append(length)
        return loss, from_user(grads, layout, order, shapes)

    def rows_at(length, fd=False, order=gate_order):
        nonlocal tol_ag, tol_fd
        ref_loss, ref = reference(length)
        loss, got = call(length, order)
        if computed32 and tolerances is None:      # judged as what it computes in
            tol_ag, tol_fd = TOLERANCES[np.dtype(np.float32)]
        rows = []
        pairs = (row_blocks(styled, keys) if styled is not None else
                 [(block, block.param) for block in blocks(names, nested=nested)])
        for block, key in pairs:
            fd_values = None
            if fd and key in p64:
                indices = block_entries(block, shapes[block.param], samples, rng)
                fd_values = (indices, *finite_differences(
                    lambda a: _plain_loss(a, length), p64, block.param, indices))
            rows.append(compare_block(block, got.get(block.name, got[key]), ref[block.param],
                                      tol_ag, fd=fd_values, fd_tolerance=tol_fd))
        loss_problem = None
        if loss is not None and not abs(loss - ref_loss) <= tol_ag * max(abs(ref_loss), 1e-300):
            loss_problem = (float(ref_loss), loss)
        if order == gate_order:
            history[length] = rows
        return rows, loss_problem

    def _plain_loss(arrays, length):
        return float(_functional(upstream, arrays, *prefix(length), h64, c64, "fast"))

    samples = fd_samples if fd_samples is not None else _fd_samples(
        T, B, D, H, O or 0, len(blocks(names)))
    if nested:                       # the loss costs one scan per layer and direction
        samples = fd_samples if fd_samples is not None else max(1, samples // K)
    rows, loss_problem = rows_at(T, fd=True)
    agrees = all(r.ok for r in rows) and loss_problem is None
    first_tested = _first_tested(reference, names, T, nested)
    first_bad, bad_rows, at_problem = None, [], loss_problem
    if not agrees:
        first_bad, bad_rows, at_problem = _first_bad_length(rows_at, T, rows, loss_problem)
    located = bad_rows or rows
    candidates = () if agrees or nested else _candidates(params, x64, third64, h64, c64, w64,
                                                      upstream, first_bad or T, names)
    if T > 1 and not agrees and all(r.given is not None and not np.any(r.given)
                                    for r in rows if r.status != "not tested"):
        candidates = [(MISTAKES["no gradient at all"],       # 0 at every length, not only 1
                       {r.name: np.zeros_like(r.expected) for r in located}), *candidates]
    L = first_bad or T                  # the sizes where the diagnosis measures
    counts = {"T*B*O": L * B * (O or 1), "T*B": L * B, "B": B, "T": L, "O": O or 1}
    if weights is not None:
        counts = {"B": B, "O": O}
    order = (None if agrees or layout != "dict" or styled is not None
             else _other_gate_order(rows_at, L, gate_order))
    if order is not None:
        cs231n = " (CS231n's order)" if order == "ifog" else ""
        diagnosis = [(f"With gate_order={order!r}{cs231n} every gradient agrees: your "
                      f"backward's 4H axis holds the gates in that order, not {gate_order!r}. "
                      f"Pass gate_order={order!r}.")]
    elif nested:
        diagnosis = _diagnose_nested(located, first_bad, first_tested, counts, at_problem)
    elif styled is not None:
        diagnosis = diagnose_in_style(styled, "sequence", located, diagnose,
                                      first_bad_length=first_bad, first_tested=first_tested,
                                      candidates=_styled_candidates(candidates), counts=counts,
                                      loss=at_problem, close=CLOSE[dtype],
                                      notes=list(style_notes))
    else:
        diagnosis = diagnose(located, kind="sequence", first_bad_length=first_bad,
                             first_tested=first_tested, candidates=candidates, counts=counts,
                             loss=at_problem,
                             close=CLOSE[np.dtype(np.float32 if computed32 else dtype)])
    ok = agrees and not wrote
    if wrote:                           # the first thing to fix: it spoils every other check
        diagnosis = [changed_in_place("backward", wrote), *diagnosis]
    notes = []
    if any(r.fd_entries < r.size for r in rows if r.fd_entries):
        notes.append(f"finite differences on a seeded random subset of at most {samples} "
                     "entries per block")
    if computed32:
        notes.append("note: your backward returns float32 gradients although it was given "
                     "float64 arrays; judged with float32's tolerances (check with float32 "
                     "parameters)")
    if B == 1 and not single:
        notes.append("warning: a batch of one (B = 1) cannot show a mistake in the sum over "
                     "the batch (db from one row, a sum over the wrong axis); check with "
                     "B >= 2 too")
    notes += list(style_notes)
    wrong = [r for r in located if not r.ok]
    worst_row = max(wrong or located, key=lambda r: r.rel) if located else None
    worst = (("", None, 0.0) if worst_row is None else
             (worst_row.name.split("[")[0], worst_row.gate, worst_row.rel))
    def named(rows):                    # the style's names and order, or as they are
        return rows if styled is None else _in_style(styled, rows, [], {}, None,
                                                     (D, H, B, T, seed))[0]
    if styled is not None:
        rows, bad_rows, first_tested, worst = _in_style(styled, rows, bad_rows, first_tested,
                                                        worst_row, (D, H, B, T, seed))
    report = GradientReport(ok=ok, rows=rows, worst=worst, kind="sequence", dtype=str(dtype),
                            tolerances=(tol_ag, tol_fd), length=T, first_bad_length=first_bad,
                            bad_rows=bad_rows, first_tested=first_tested,
                            diagnosis=diagnosis, notes=notes,
                            seconds=time.perf_counter() - start,
                            style=None if styled is None else styled.name,
                            history={n: named(h) for n, h in history.items()})
    report.rows_at = lambda n: named(rows_at(n)[0])          # more lengths, for report.plot
    return report


def _styled(style, forward, backward, upstream, layout, gate_order):
    """The :class:`~lstm_ag.gradcheck.styles.Style` to check in, its arguments checked."""
    styled = get_style(style)
    styled.pair("sequence")
    if upstream is not None and upstream != styled.upstream:
        raise ValueError(f"style={styled.name!r} sets the loss (upstream={styled.upstream!r}), "
                         f"got upstream={upstream!r}")
    if layout != "dict" or gate_order != "ifgo":
        raise ValueError(f"style={styled.name!r} sets the layout and the gate order; leave "
                         "layout and gate_order as they are")
    pair = styled.sequence
    if backward is None or not callable(backward):
        raise TypeError(f"style={styled.name!r} checks your backward: pass backward="
                        f"{pair.backward} (a function), got {type(backward).__name__}")
    if styled.call is None and not callable(forward):
        raise TypeError(f"style={styled.name!r} runs your forward to make the backward's cache: "
                        f"pass forward={pair.forward} (a function), got "
                        f"{type(forward).__name__}")
    return styled


def _style_setup(styled, state, sizes, dtype):
    """``(state, keys)``: a seeded non-zero initial state when the style's forward takes one
    and none is given (c0 zero when it does not take c0), so that dWh and the forget gate are
    tested from the first step; the arrays the style returns gradients of, in row order."""
    if styled is None:
        return state, []
    D, H, B, T, seed = sizes
    if state is None and styled.sequence.states:
        rng = np.random.default_rng(seed + 3)
        h0 = 0.5 * rng.standard_normal((B, H))
        c0 = (rng.standard_normal((B, H)) if "c0" in styled.sequence.states
              else np.zeros((B, H)))
        state = h0.astype(dtype), c0.astype(dtype)
    entries = styled.entries("sequence", {"D": D, "H": H, "B": B, "T": T, "seed": seed})
    returned = {key for e in entries for key, _, _ in e.pieces}
    return state, [k for k in ("Wx", "Wh", "b", *styled.aliases, "x", "h0", "c0")
                   if k in returned]


def _with_inputs(upstream, p64, x, y, w, h64, c64):
    """The loss and autograd's gradient of the parameters and of xs, h0, c0 (float64)."""
    loss, g = autograd.value_and_grad(lambda a: _functional(
        upstream, a["p"], a["x"], y, w, a["h0"], a["c0"], "autograd"))(
        {"p": unflatten(p64), "x": x, "h0": h64, "c0": c64})
    return loss, {**flatten(g["p"]), "x": g["x"], "h0": g["h0"], "c0": g["c0"]}


def _call_styled(styled, functions, params, xs, upstream_grad, state, keys, seed, notes):
    """The student's sequence pair run on a prefix ``xs (L, B, D)`` as its style calls it:
    its gradients in this library's layout (see :func:`~lstm_ag.gradcheck.styles.call_backward`);
    the notes it gives are added to ``notes``."""
    L, B, D = xs.shape
    H = params["Wh"].shape[0]
    arrays = {"Wx": params["Wx"], "Wh": params["Wh"], "b": params["b"], "x": xs,
              "h0": state[0], "c0": state[1], "dhs": upstream_grad}
    sizes = {"D": D, "H": H, "B": B, "T": L, "seed": seed}
    user = call_forward(styled, "sequence", functions[0], arrays, sizes)
    shapes = {k: (L, B, D) if k == "x" else (B, H) if k in ("h0", "c0")
              else params[styled.aliases.get(k, k)].shape for k in keys}
    got, said = call_backward(styled, "sequence", functions[1], user, sizes, shapes)
    notes.update(dict.fromkeys(said))
    return got


def _in_style(styled, rows, bad_rows, first_tested, worst_row, sizes):
    """The report's rows, first_tested and worst in the style's names and order."""
    D, H, B, T, seed = sizes
    shape = {"D": D, "H": H, "B": B, "T": T, "seed": seed}
    rows = rename_rows(styled, "sequence", rows, shape)
    bad_rows = rename_rows(styled, "sequence", bad_rows, shape)
    first_tested = {row_name(styled, "sequence", k): n for k, n in first_tested.items()}
    worst = (("", None, 0.0) if worst_row is None else
             (row_name(styled, "sequence", worst_row.name), worst_row.gate, worst_row.rel))
    return rows, bad_rows, first_tested, worst


def _other_gate_order(rows_at, length, gate_order):
    """The gate order (other than ``gate_order``) with which the backward agrees at
    ``length``, or None."""
    for order in ("".join(p) for p in itertools.permutations("ifgo")):
        if order == gate_order:
            continue
        try:
            rows, problem = rows_at(length, order=order)
        except Exception:
            continue
        if problem is None and all(r.ok for r in rows):
            return order
    return None


def _first_tested(reference, names, T, nested=False):
    """Block name -> the shortest length at which its expected gradient is not all zero."""
    first = {}
    todo = blocks(names, nested=nested)
    for length in range(1, min(T, 3) + 1):
        _, ref = reference(length)
        for block in todo:
            if block.name not in first and np.any(block.view(ref[block.param])):
                first[block.name] = length
        if len(first) == len(todo):
            break
    return first


def _diagnose_nested(rows, first_bad, first_tested, counts, loss):
    """The diagnosis of a stacked or bidirectional model: where the wrong gradients start,
    then the one-layer diagnosis of that layer and direction's rows.

    Gradients flow from the readout down the layers, so a mistake in layer l's backward (or
    in the gradient it passes down) also spoils every layer below it; the topmost wrong
    layer is where to look. The two directions of a layer are independent of each other."""
    wrong = [r for r in rows if r.status != "ok" and r.status != "not tested"]
    if not wrong:
        return diagnose(rows, kind="sequence", first_bad_length=first_bad, loss=loss)
    places = {where(r.param) for r in wrong}
    out = []
    if None in places:                             # the readout itself
        group = [r for r in rows if where(r.param) is None]
        out.append("The readout's gradients (dWy, dby) are wrong, and every layer's gradient "
                   "comes through them: fix those first.")
    else:
        top = max(layer for layer, _ in places)
        directions = sorted(d for layer, d in places if layer == top)
        place = (f"layer {top}, {' and '.join(directions)} direction"
                 f"{'s' if len(directions) > 1 else ''}")
        named = " and ".join(f"L{top}" + (".reverse" if d == "reverse" else "")
                             for d in directions)
        below = [f"L{layer}" for layer in range(top)]
        out.append(f"The wrong gradients start in {place} ({named}): the layers above it and "
                   "the readout agree. "
                   + (f"The layers below ({', '.join(below)}) receive their gradient through "
                      "it, so they are wrong too or will be once it is fixed; look at "
                      f"L{top} first." if below else "It is the bottom layer."))
        group = [r for r in rows if where(r.param) == (top, directions[0])]
    prefix = label(group[0].param, True)[:-len("d" + group[0].param.rsplit(".", 1)[-1])]
    local = [dataclasses.replace(r, name=r.name[len(prefix):],
                                 param=r.param.rsplit(".", 1)[-1]) for r in group]
    tested = {name[len(prefix):]: n for name, n in first_tested.items()
              if name.startswith(prefix)}
    detail = diagnose(local, kind="sequence", first_bad_length=first_bad,
                      first_tested=tested, counts=counts, loss=loss)
    return out + [f"{prefix.rstrip('.') or 'Readout'}: {sentence}" for sentence in detail]


def _first_bad_length(rows_at, T, full_rows, full_problem):
    """The shortest prefix at which the backward is wrong: lengths 1..4 one by one, then a
    bisection (a mistake, once it shows, stays). Returns (length, its rows, its loss problem)."""
    def bad(length):
        if length == T:
            return full_rows, full_problem
        rows, problem = rows_at(length)
        return (rows, problem) if (not all(r.ok for r in rows) or problem) else None

    for length in range(1, min(T, 4) + 1):
        found = bad(length)
        if found is not None:
            return length, *found
    lo, hi, found_hi = 4, T, (full_rows, full_problem)     # lo good, hi bad
    while hi - lo > 1:
        mid = (lo + hi) // 2
        found = bad(mid)
        if found is None:
            lo = mid
        else:
            hi, found_hi = mid, found
    return hi, *found_hi


def _candidates(params, x64, third64, h64, c64, w64, upstream, length, names):
    """Known mistakes, simulated on the prefix of ``length`` steps by the one backward,
    :func:`lstm_ag.bptt.lstm_backward`, with that mistake made through its hook:
    ``(sentence, {block name: the gradient block that mistake gives})``. A sentence's
    ``{rows}`` is filled with the wrong rows it explains (:func:`diagnosis.diagnose`)."""
    p = {k: np.array(params[k], dtype=np.float64) for k in names}
    x = x64[:length]
    cache = SequenceCache.run(p["Wx"], p["Wh"], p["b"], x, h64, c64)
    T, B, D = x.shape
    H = p["Wh"].shape[0]
    dh_last = None
    if upstream is None:
        y = third64[:length]
        w = None if w64 is None else w64[:length]
        _, dhs, _, _ = readout_mse_backward(cache.hs, p["Wy"], p["by"], y, w)
    elif upstream == "last":
        dhs, dh_last = np.zeros_like(cache.hs), third64
    else:
        dhs = third64[:length]

    def backward(dhs=dhs, dh_last=dh_last, cache=cache, **mistake):
        return lstm_backward(dhs, cache, dh_last=dh_last, **mistake)
    right = backward()
    dZ = right["z"]
    out = []

    def add(sentence, grads, strict=False):
        out.append((sentence, {b.name: b.view(grads[b.param])
                               for b in blocks([n for n in names if n in grads])}, strict))
        for key, name in _STATE_ROWS.items():  # a backward that returns these is compared too
            if key in grads:
                out[-1][1][name] = grads[key]
    add(MISTAKES["dWh from h_t"], weight_gradients(cache, dZ, inputs=False, h_prev=cache.hs))
    add(MISTAKES["no dc_next"], backward(carry="h"))
    add(MISTAKES["no dh_next"], backward(carry="c"))
    add(MISTAKES["nothing carried"], backward(carry=""))
    if T > 1:
        add(MISTAKES["one step's contribution"], weight_gradients(cache, dZ, inputs=False,
                                                                 steps=slice(0, 1)))
        add(MISTAKES["loop forward in time"], backward(reverse=False))
        if upstream == "last":                  # dh_last given to the first step visited
            first = np.zeros_like(dhs)
            first[0] = dh_last
            add(MISTAKES["loop forward in time"], backward(first, None, reverse=False))
        else:
            only_last = np.zeros_like(dhs)
            only_last[-1] = dhs[-1]
            add(MISTAKES["upstream not added"], backward(only_last))
    for sentence, weights in _wrong_rows(p["Wx"], p["Wh"]):
        add(sentence, backward(carry_weights=weights))
    for sentence, weights in _wrong_rows(p["Wx"], p["Wh"], "x", p["b"]):
        add(sentence, {"xs": dZ @ weights.T})
    for a, what in ((cache.xs, "x"), (cache.h_prev, "h_prev")):
        if a.shape[2] == B:
            key = "Wx" if what == "x" else "Wh"
            add(_no_transpose(what, B), {key: weight_product(a, dZ, transpose=False)})
    if B == H + D:                          # one matrix per gate on the column [h; x]
        both = weight_product(np.concatenate((cache.h_prev, cache.xs), axis=2), dZ,
                              transpose=False)
        add(_no_transpose("[h_prev; x]", B), {"Wh": both[:H], "Wx": both[H:]})
    if T > 1:                                   # notebook 001: only the first step runs
        x1, w1 = x[:1], None if w64 is None else w64[:1]
        if upstream is None:
            _, first = loss_and_grads(p, x1, h64, c64, third64[:1], w1)
        else:
            first_cache = SequenceCache.run(p["Wx"], p["Wh"], p["b"], x1, h64, c64)
            g = third64 if upstream == "last" else third64[:1]
            first = lstm_backward(g.reshape(1, B, H), first_cache, inputs=False)
        add(MISTAKES["first step only"], first)
    if B > 1:
        add(MISTAKES["db from one row"], {"b": dZ[:, 0].sum(axis=0)})
    for k in range(4):                          # one gate's db summed to one number
        b = right["b"].copy()
        b[k * H:(k + 1) * H] = b[k * H:(k + 1) * H].sum()
        add(MISTAKES["db to one number"], {"b": b}, True)
    if upstream != "last":                      # dh0 from the upstream, not carried
        out.append((MISTAKES["dh0 from the upstream"], {"dh0": dhs[0]}))
    with np.errstate(all="ignore"):         # a saturated gate divides by 0: no fit, no noise
        _more_candidates(add, backward, right, cache, dhs, dh_last, p)
    return out


def _more_candidates(add, backward, right, cache, dhs, dh_last, p):
    """The mistakes of :func:`_candidates` after the products: where dx, dc0 and dh_prev
    are taken from, what dWh multiplies, and a gate's local derivative
    (:data:`~lstm_ag.gradcheck.local.LOCAL_MISTAKES`), simulated by the one backward."""
    T, B, H = dhs.shape
    f = cache.f
    if T > 1:
        add(MISTAKES["dx at the wrong step"], {"xs": right["xs"][::-1]})
        if dh_last is not None:                 # dL/dh_T added at every step
            add(MISTAKES["upstream at every step"],
                backward(np.broadcast_to(dh_last, dhs.shape) + dhs, None))
    add(MISTAKES["dc0 without f"], {"c0": right["c0"] / f[0]})
    gates = {"i": cache.i, "g": cache.g, "o": cache.o}
    for gate, y in gates.items():               # dc_prev = dc * (another gate)
        sentence = MISTAKES["dc_prev with another gate"].replace("{gate}", gate)
        add(sentence.replace("dc_prev", "dc0"), {"c0": right["c0"] / f[0] * y[0]})
        add(sentence, backward(cache=_with_gates(
            cache, f=y, c_prev=cache.c_prev * f * (1 - f) / (y * (1 - y)))), True)
    if dh_last is None:                         # the upstream of step 0 added to dh0 again
        add(MISTAKES["dh0 plus the upstream"], {"h0": right["h0"] + dhs[0]})
    for sentence, weights in _wrong_rows(p["Wx"], p["Wh"], "h", p["b"]):
        add(sentence.replace("dh_prev, the gradient carried back to h_{t-1}",
                             "dh0, the gradient of the initial state"),
            {"h0": right["z"][0] @ weights.T})
    add(MISTAKES["dWh from c_prev"], weight_gradients(cache, right["z"], inputs=False,
                                                     h_prev=cache.c_prev), True)
    for k, gate in enumerate(GATES):
        weights = p["Wh"].copy()
        weights[:, k * H:(k + 1) * H] = 0
        add(MISTAKES["dh_prev without a gate"].replace("{gate}", gate),
            backward(carry_weights=weights), True)
    # dc_prev = dc * f * (1 - f): the forget gate f' = f * (1 - f) carried, with c_prev made
    # up for it so that dz_f is right
    carried = f * (1 - f)
    add(MISTAKES["dc_prev with f's derivative"], backward(cache=_with_gates(
        cache, f=carried, c_prev=cache.c_prev * carried / (carried * (1 - carried)))), True)
    acts = {"i": cache.i, "f": f, "g": cache.g, "o": cache.o, "tanh_c": cache.tanh_c,
            "c": cache.c[1:], "c_prev": cache.c_prev}
    h_c, c_z, h_zo, _ = local_derivatives(cache)
    for sentence, alternative in local_mistakes(acts):
        if set(alternative) == {"f"}:           # through dz_f = dc * c_prev * f * (1 - f)
            made_up = alternative["f"] / (f * (1 - f))
            add(sentence, backward(cache=_with_gates(cache, c_prev=made_up)), True)
        elif T == 1:                            # the other gates show at length 1
            step = (p["Wh"], alternative.get("h_c", h_c)[0],
                    _gate_derivatives(c_z[0], alternative), alternative.get("o", h_zo)[0], f[0])
            dz, dh_prev, dc_prev = lstm_step_backward(dhs[0] + (0 if dh_last is None
                                                                else dh_last), 0 * f[0], step)
            add(sentence, {**weight_gradients(cache, dz[None]), "h0": dh_prev,
                           "c0": dc_prev}, True)


def _gate_derivatives(c_z, alternative):
    """``c_z (B, 3, H)`` (dc_t/dz of the gates i, f, g) with ``alternative``'s in place."""
    c_z = c_z.copy()
    for k, gate in enumerate("ifg"):
        if gate in alternative:
            c_z[:, k] = alternative[gate][0]
    return c_z


def _with_gates(cache, **fields):
    """A copy of ``cache`` with some of its steps' fields (``f``, ``c_prev``: ``(T, B, H)``)
    replaced: a forward whose local derivatives make a known mistake."""
    store = cache.store.copy()
    rows = {"f": (3, slice(1, None)), "c_prev": (1, slice(None, -1))}
    for name, value in fields.items():
        field, steps = rows[name]
        store[field, steps] = value
    return SequenceCache(cache.xs, cache.Wx, cache.Wh, store)


def _styled_candidates(candidates):
    """The candidates keyed by a styled check's rows: the inputs' gradient is its row ``dx``
    (``dxs`` in :data:`_STATE_ROWS`)."""
    return [(sentence, {"dx" if k == "dxs" else k: v for k, v in predicted.items()}, *strict)
            for sentence, predicted, *strict in candidates]


#: The rows of a backward's initial state's and inputs' gradients, by lstm_backward's keys.
_STATE_ROWS = {"h0": "dh0", "c0": "dc0", "xs": "dxs"}


def _wrong_rows(Wx, Wh, of="h", b=None):
    """``(sentence, weights)`` for each way of taking dh_prev (``of="h"``) or dx (``"x"``)
    from the wrong rows of the gradient of a concatenated input (``[h; x]`` or ``[x; h]``,
    and ``[1; x; h]`` with the bias ``b`` as a row, Karpathy's): dh_prev (dx) = dz @ weights.T."""
    H, D = Wh.shape[0], Wx.shape[0]
    width, right_weights = (H, Wh) if of == "h" else (D, Wx)
    out, seen = [], [right_weights]
    orders = [("[h; x]", np.concatenate((Wh, Wx))), ("[x; h]", np.concatenate((Wx, Wh)))]
    if b is not None:
        orders.append(("[1; x; h]", np.concatenate((b[None], Wx, Wh))))
    for order, stacked in orders:
        right = (0 if (order == "[h; x]") == (of == "h") else H + D - width) + (
            order == "[1; x; h]")
        for start in sorted({0, 1, H, D, 1 + D} if b is not None else {0, H, D}):
            weights = stacked[start:start + width]
            if len(weights) < width or any(np.array_equal(weights, w) for w in seen):
                continue
            seen.append(weights)
            out.append((MISTAKES[f"d{of} from the wrong rows"]
                        .replace("{order}", order)
                        .replace("{want}", f"{right}:{right + width}")
                        .replace("{got}", f"{start}:{start + width}"), weights))
    return out


def _no_transpose(what, size):
    """The sentence for a weight product missing its transpose (the factor ``what``)."""
    return (MISTAKES["no transpose"].replace("{a}", what)
            .replace("{size}", f"{size} rows, as many as {what} has columns"))
