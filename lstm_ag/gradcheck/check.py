"""Check a backward pass against autograd and central finite differences, gate by gate.

::

    report = check_gradients(params, xs, targets, backward=my_backward)
    print(report)            # one row per parameter and gate
    report.ok, report.worst, report.first_bad_length

The gradient under test is compared with two references, both computed in float64:

* **autograd** tracing the Python forward step by step (exact up to rounding);
* **central finite differences**, (L(p + eps e_k) - L(p - eps e_k)) / (2 eps) per entry, with
  eps = 1e-5: there the truncation error (eps^2 L'''/6) and the rounding error (about
  1e-16 / eps) balance near 1e-11, ten times below what eps = 1e-6 gives. We write our own
  rather than use ``scipy.optimize.check_grad``: that returns one norm for the whole vector
  (it cannot say which gate is wrong) and uses one-sided differences, whose O(eps) error is
  too coarse for a 1e-6 bound. On a large parameter only a seeded random subset of each
  gate's entries is differenced, and the report says so.

Errors are measured per block (a parameter, and for the 4H-wide ``Wx``, ``Wh``, ``b`` each
gate's columns): ``abs = max |a - r|`` and ``rel = abs / max(max |a|, max |r|)``, a normwise
relative error that near-zero entries cannot blow up.

Default tolerances on ``rel`` (see :data:`TOLERANCES`): float64 backward, 1e-10 against
autograd and 1e-6 against finite differences; float32 backward, 1e-4 against both float64
references (float32 has a 6e-8 unit roundoff, and the errors of a T-step recurrence grow with
T; 1e-5 is typical at T = 10).

When the backward disagrees, the check is repeated on the prefixes ``xs[:L]`` for
L = 1, 2, ...: ``first_bad_length`` is the shortest that disagrees, and ``worst`` names the
parameter and gate worst at that length, where the error has not yet spread through the
recurrence. A wrong local derivative shows at length 1 (in its own gate); a broken recurrent
path (a missing ``dh_next`` or ``dc_next``, an early ``return`` in the time loop) from length 2.

Command line: ``python -m lstm_ag.gradcheck`` (or ``lstm-ag-gradcheck``); ``--help``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..bptt import bptt
from ..inputs import as_sequence, as_targets
from ..model import mse, value_and_grad
from ..params import GATES, check_params, split_gates
from .report import GradientReport, Row

__all__ = ["TOLERANCES", "FD_EPS", "check_gradients"]

#: Default bounds on the relative error, by the dtype of the backward under test:
#: ``{dtype: (against autograd, against finite differences)}``.
TOLERANCES = {np.dtype(np.float64): (1e-10, 1e-6), np.dtype(np.float32): (1e-4, 1e-4)}
FD_EPS = 1e-5


def _blocks(params):
    """(name, gate, view) for every block: the 4H-wide parameters split by gate
    (:func:`lstm_ag.params.split_gates`), ``view(array)`` the block of an array of the
    parameter's shape."""
    for name in params:
        if name in ("Wx", "Wh", "b"):
            for k, gate in enumerate(GATES):
                yield name, gate, (lambda a, k=k: split_gates(a)[k])
        else:
            yield name, None, (lambda a: a)


def _errors(a, r):
    diff = np.max(np.abs(a - r)) if a.size else 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(r))) if a.size else 0.0
    if not np.isfinite(diff):
        return float("inf"), float("inf")
    return float(diff), float(diff / scale) if scale > 0 else 0.0


def _call(backward, params, xs, targets):
    out = backward(params, xs, targets)
    grads = out[1] if isinstance(out, tuple) and len(out) == 2 else out
    if not isinstance(grads, dict):
        raise TypeError("backward must return a dict of gradients or (loss, dict), "
                        f"got {type(out).__name__}")
    return grads


def _as_f64(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def _compare(grads, reference, params, tol):
    """Rows comparing ``grads`` with the autograd ``reference`` (no finite differences)."""
    rows = []
    for name, gate, view in _blocks(params):
        r = view(reference[name])
        if name not in grads or np.shape(grads[name]) != params[name].shape:
            got = "missing" if name not in grads else f"shape {np.shape(grads[name])}"
            rows.append(Row(name, gate, np.inf, np.inf, size=r.size, ok=False, problem=got))
            continue
        a = view(np.asarray(grads[name], dtype=np.float64))
        abs_ag, rel_ag = _errors(a, r)
        rows.append(Row(name, gate, abs_ag, rel_ag, size=r.size, ok=rel_ag <= tol))
    return rows


def _finite_differences(params64, xs, targets, state, rows, grads, tol, samples, rng):
    """Fill the FD columns of ``rows``; at most ``samples`` entries per block."""
    def loss(p):
        return float(mse(p, xs, targets, state))
    notes = set()
    for row, (name, _, view) in zip(rows, _blocks(params64), strict=True):
        if name not in grads or np.shape(grads[name]) != params64[name].shape:
            continue
        block = np.zeros(params64[name].shape, bool)
        view(block)[...] = True
        flat = np.flatnonzero(block)
        if flat.size > samples:
            flat = np.sort(rng.choice(flat, samples, replace=False))
            notes.add(f"finite differences on a seeded random subset of {samples} entries "
                      "per block where a block is larger")
        fd = np.empty(flat.size)
        a = np.asarray(grads[name], dtype=np.float64).ravel()[flat]
        for n, k in enumerate(flat):
            plus, minus = params64[name].copy(), params64[name].copy()
            plus.flat[k] += FD_EPS
            minus.flat[k] -= FD_EPS
            fd[n] = (loss({**params64, name: plus})
                     - loss({**params64, name: minus})) / (2 * FD_EPS)
        row.abs_fd, row.rel_fd = _errors(a, fd)
        row.fd_entries = flat.size
        row.ok = row.ok and row.rel_fd <= tol
    return sorted(notes)


def _worst(rows):
    r = max(rows, key=lambda r: r.rel)
    return (r.param, r.gate, r.rel)


def check_gradients(params: dict, xs: Any, targets: Any, backward: Callable | None = None, *,
                    state: Any = None, tolerances: tuple[float, float] | None = None,
                    fd_samples: int = 64, seed: int = 0) -> GradientReport:
    """Compare a backward pass with autograd and finite differences; say which gate is wrong.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)``, float64
      or float32 (the backward is run in that dtype; the references always in float64).
    - xs ``(T, B, D)`` or ``(T, D)``; targets ``(T, B, O)`` or ``(T, O)``; state optional.
    - backward: ``backward(params, xs, targets)`` returning a dict of gradients with the
      keys and shapes of params, or ``(loss, grads)``, for the loss :func:`lstm_ag.mse` (the
      readout's MSE at every step). None checks the library's own :func:`lstm_ag.bptt.bptt`.
    - tolerances: ``(rel vs autograd, rel vs finite differences)``; default by dtype,
      :data:`TOLERANCES`.
    - fd_samples: most entries per block to difference (a seeded random subset beyond).
    - seed: seed of that subset.
    Returns a :class:`GradientReport`.
    """
    start = time.perf_counter()
    D, _, O = check_params(params, readout=True)
    dtype = np.dtype(params["Wx"].dtype)
    tol_ag, tol_fd = tolerances or TOLERANCES[dtype]
    xs3, single = as_sequence(xs, D, dtype)
    T, B, _ = xs3.shape
    targets3 = as_targets(targets, (T, B, O), dtype, single)
    if backward is None:
        backward = bptt if state is None else (lambda p, x, y: bptt(p, x, y, state))
    params64 = _as_f64(params)
    state64 = None if state is None else tuple(np.asarray(s, np.float64) for s in state)
    x64, y64 = xs3.astype(np.float64), targets3.astype(np.float64)

    def rows_at(length):
        _, ref = value_and_grad(params64, x64[:length], y64[:length], state64, method="autograd")
        got = _call(backward, params, xs3[:length], targets3[:length])
        return _compare(got, ref, params64, tol_ag), got

    rows, grads = rows_at(T)
    notes = _finite_differences(params64, x64, y64, state64, rows, grads, tol_fd, fd_samples,
                                np.random.default_rng(seed))
    for r in rows:
        note = f"{r.param}: the backward's gradient is {r.problem}"
        if r.problem and note not in notes:          # once per parameter, not per gate
            notes.append(note)
    ok = all(r.ok for r in rows)
    first_bad, bad_rows = None, []
    if not ok:
        for length in range(1, T + 1):
            at, _ = rows_at(length) if length < T else (rows, None)
            if not all(r.ok for r in at):
                first_bad, bad_rows = length, at
                break
    worst = _worst(bad_rows or rows)
    return GradientReport(ok=ok, worst=worst, first_bad_length=first_bad, rows=rows,
                          tolerances=(tol_ag, tol_fd), length=T, dtype=str(dtype),
                          seconds=time.perf_counter() - start, bad_rows=bad_rows, notes=notes)
