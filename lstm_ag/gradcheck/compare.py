"""Comparing a gradient with its references, block by block, with bounds that never cry wolf.

A gradient is cut into **blocks**: one per array, and for the 4H-wide ``Wx``, ``Wh``, ``b`` one
per gate (:func:`lstm_ag.params.split_gates`). Each block of the gradient under test
(``given``) is compared with two references, both computed in float64:

* **autograd** (``expected``), exact up to rounding. The error is normwise,
  ``rel = max |given - expected| / max(max |given|, max |expected|)``, so that near-zero
  entries cannot blow it up; the bound is :data:`TOLERANCES` by the backward's dtype.
* **central finite differences** on a seeded sample of entries, as a second witness that the
  reference itself is right. Each entry gets its own bound: ``fd_tol * scale`` plus the finite
  difference's own error, estimated per entry from two step sizes (the truncation error,
  ``|fd(eps) - fd(2 eps)|``) and from the loss's magnitude (the rounding error,
  ``eps_machine * |L| / eps``). So a correct backward passes at any size, however large the
  loss or the model, and a wrong one is still caught by the sharp autograd bound.

A block whose expected gradient is exactly zero cannot show an error in the backward's
arithmetic: it is reported as "not tested" when the given block is zero too, and as wrong
(with the diagnosis that a value appears where none should) when it is not.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..params import GATES, split_gates

__all__ = ["ReturnedWrongly", "TOLERANCES", "FD_EPS", "GATE_WIDE", "Block", "blocks",
           "permute_gates", "check_gate_order", "check_tolerances", "errors", "finite_differences",
           "block_entries", "Row", "compare_block", "arrays_in", "changed"]

#: Bounds on the normwise relative error, by the dtype of the backward under test:
#: ``(against autograd, against finite differences)`` (the latter plus each entry's own error).
#: Measured on the library's own BPTT: float64 at most 2.9e-15 against autograd (H = 256,
#: T = 100, B = 32), float32 1.5e-6 there but up to 7.2e-5 on one-unit models whose blocks
#: are single sums. So float64 is held to 1e-10 and still shows a 1e-3 error in one block;
#: float32 to 1e-3, which still shows a 1e-2 error.
TOLERANCES = {np.dtype(np.float64): (1e-10, 1e-6), np.dtype(np.float32): (1e-3, 1e-3)}
#: Step of the central finite differences: truncation (eps^2 L'''/6) and rounding (about
#: 1e-16 |L| / eps) balance near eps = 1e-5 for float64.
FD_EPS = 1e-5
#: The arrays whose last axis holds the four gates.
GATE_WIDE = ("Wx", "Wh", "b")
_EPS64 = np.finfo(np.float64).eps


class ReturnedWrongly(TypeError):
    """The function under test returned something of the wrong kind (not a mistake in its
    mathematics): the message says what it returned and what was expected."""


@dataclass(frozen=True)
class Block:
    """One block: ``name`` as printed (``"dWx[f]"``), the array ``param`` (``"Wx"``), the
    ``gate`` or None, and ``view(array)``, the block of an array of that parameter's shape."""
    name: str
    param: str
    gate: str | None
    view: Callable


def _whole(a):
    return a


def leaf(name: str) -> str:
    """The array a :func:`lstm_ag.params.flatten` name ends in: ``"layers.0.reverse.Wx"`` ->
    ``"Wx"``."""
    return name.rsplit(".", 1)[-1]


def where(name: str) -> tuple[int, str] | None:
    """``(layer, direction)`` of an LSTM array's flatten name (``"layers.0.reverse.Wx"`` ->
    ``(1, "reverse")``); None for the readout."""
    if leaf(name) not in GATE_WIDE:
        return None
    parts = name.split(".")
    layer = int(parts[1]) + 1 if parts[0] == "layers" else 0
    return layer, "reverse" if "reverse" in parts else "forward"


def label(name: str, nested: bool, prefix: str = "d") -> str:
    """A block's printed name: ``"dWx"``, or for a stacked or bidirectional model
    ``"L1.reverse.dWx"`` (layer 1 counting from 0, as PyTorch's ``weight_ih_l1_reverse``)."""
    at = where(name) if nested else None
    if at is None:
        return prefix + leaf(name)
    layer, direction = at
    return f"L{layer}.{'reverse.' if direction == 'reverse' else ''}{prefix}{leaf(name)}"


def blocks(names: Any, prefix: str = "d", nested: bool = False) -> list[Block]:
    """The blocks of the arrays ``names`` (flatten names), in order: the 4H-wide ones by gate.
    With ``nested`` (a stacked or bidirectional model) the names say the layer and direction."""
    out = []
    for name in names:
        shown = label(name, nested, prefix)
        if leaf(name) in GATE_WIDE:
            for k, gate in enumerate(GATES):
                out.append(Block(f"{shown}[{gate}]", name, gate,
                                 lambda a, k=k: split_gates(a)[k]))
        else:
            out.append(Block(shown, name, None, _whole))
    return out


def permute_gates(array: Any, from_order: str, to_order: str) -> np.ndarray:
    """Reorder the gate blocks of the last (4H) axis from ``from_order`` to ``to_order``.

    - array: ``(..., 4H)``; from_order, to_order: strings of the four letters ``i f g o``
      (``"ifgo"`` is this library's order, ``"ifog"`` CS231n's).
    Returns a new array (the same values when the orders agree).
    """
    if from_order == to_order:
        return np.array(array, copy=True)
    parts = dict(zip(from_order, split_gates(np.asarray(array)), strict=True))
    return np.concatenate([parts[g] for g in to_order], axis=-1)


def check_gate_order(order: Any, name: str = "gate_order") -> str:
    """``order`` if it is a permutation of ``"ifgo"``, else ``ValueError`` naming ``name``."""
    if not isinstance(order, str) or sorted(order) != sorted("ifgo"):
        raise ValueError(f"{name} must be the four gate letters i, f, g, o in some order "
                         f"(this library's is 'ifgo', CS231n's 'ifog'), got {order!r}")
    return order


def check_tolerances(tolerances: Any) -> tuple[float, float] | None:
    """``tolerances`` as a pair of positive finite floats (or None), else ``ValueError``."""
    if tolerances is None:
        return None
    try:
        pair = tuple(float(t) for t in tolerances)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(np.isfinite(t) and t > 0 for t in pair):
        raise ValueError("tolerances must be a pair (rel vs autograd, rel vs finite "
                         f"differences) of positive numbers, got {tolerances!r}")
    return pair


def errors(given: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """``(abs, rel)``: ``max |given - expected|`` and that over the larger of both maxima
    (0 when both are zero; inf when anything is not finite)."""
    if given.size == 0:
        return 0.0, 0.0
    diff = float(np.max(np.abs(given - expected)))
    scale = max(float(np.max(np.abs(given))), float(np.max(np.abs(expected))))
    if not np.isfinite(diff):
        return float("inf"), float("inf")
    return diff, (diff / scale if scale > 0 else 0.0)


def block_entries(block: Block, shape: tuple, samples: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Flat indices into an array of ``shape`` of the entries of ``block`` to difference:
    all of them when there are at most ``samples``, else a seeded random subset (sorted)."""
    inside = block.view(np.arange(int(np.prod(shape))).reshape(shape)).reshape(-1)
    if inside.size <= samples:
        return inside
    return np.sort(rng.choice(inside, samples, replace=False))


def finite_differences(loss: Callable, arrays: dict, name: str,
                       flat_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of ``loss(arrays)`` with respect to entries of ``arrays[name]``.

    - loss: a function of the dict ``arrays`` returning a float (evaluated in float64).
    - arrays: dict of float64 arrays (not modified: the entry is restored after each use).
    - flat_indices: flat indices (C order) into ``arrays[name]``, an array of any memory
      order: the entry is perturbed in place.
    Returns ``(fd, bound)``: the differences with step :data:`FD_EPS`, and per entry an
    estimate of their own error (truncation from a second step 2 eps, rounding from |L|).
    """
    x = arrays[name]
    fd = np.empty(len(flat_indices))
    bound = np.empty(len(flat_indices))
    for n, k in enumerate(flat_indices):
        # the entry itself, whatever the memory order (a Fortran-ordered W.T's reshape(-1)
        # would be a copy, and perturbing it would leave the loss unchanged)
        index = np.unravel_index(k, x.shape)
        old = x[index]
        values = {}
        for step in (FD_EPS, -FD_EPS, 2 * FD_EPS, -2 * FD_EPS):
            x[index] = old + step
            values[step] = loss(arrays)
        x[index] = old
        d1 = (values[FD_EPS] - values[-FD_EPS]) / (2 * FD_EPS)
        d2 = (values[2 * FD_EPS] - values[-2 * FD_EPS]) / (4 * FD_EPS)
        magnitude = max(abs(v) for v in values.values())
        fd[n] = d1
        # truncation of d1 is about (d2 - d1) / 3; rounding about eps |L| / eps_fd per value
        bound[n] = abs(d2 - d1) + 10 * _EPS64 * magnitude / FD_EPS
    return fd, bound


@dataclass
class Row:
    """How one block compares.

    - name (``"dWx[f]"``, ``"dprev_c"``), param (``"Wx"``), gate (``"f"`` or None), size.
    - status: ``"ok"``, ``"WRONG"``, ``"not tested"`` (the expected block is exactly zero, and
      so is the given one), ``"missing"`` or ``"bad shape"`` (the backward did not return it
      as expected).
    - abs_autograd, rel_autograd: errors against autograd; tolerance: the bound on rel.
    - abs_fd, rel_fd, fd_entries: errors against finite differences on ``fd_entries`` entries
      (0: none differenced); fd_ok: within each entry's bound.
    - expected, given: the blocks (float64), for the diagnosis; problem: what was returned
      instead, when it could not be compared.
    """
    name: str
    param: str
    gate: str | None
    size: int
    status: str
    tolerance: float = 0.0
    abs_autograd: float = float("nan")
    rel_autograd: float = float("nan")
    abs_fd: float = float("nan")
    rel_fd: float = float("nan")
    fd_entries: int = 0
    fd_ok: bool = True
    expected: np.ndarray | None = None
    given: np.ndarray | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        """Nothing wrong found in this block ("not tested" included)."""
        return self.status in ("ok", "not tested")

    @property
    def rel(self) -> float:
        """The larger relative error of the two comparisons (inf when not comparable)."""
        if self.status in ("missing", "bad shape"):
            return float("inf")
        fd = 0.0 if np.isnan(self.rel_fd) else self.rel_fd
        ag = 0.0 if np.isnan(self.rel_autograd) else self.rel_autograd
        return max(ag, fd)


def compare_block(block: Block, given: Any, expected: np.ndarray, tolerance: float, *,
                  fd: tuple | None = None, fd_tolerance: float = 1e-6) -> Row:
    """A :class:`Row` for one block.

    - block: a :class:`Block`; given, expected: the whole arrays (float64) of its parameter,
      ``given`` None when the backward did not return it, or a string saying what it returned.
    - tolerance: the bound on the relative error against autograd; fd_tolerance: the
      relative part of the bound against finite differences.
    - fd: None, or ``(flat_indices, fd_values, fd_bounds)``: flat indices into the whole
      array of entries inside this block (:func:`block_entries`), and their differences.
    """
    exp = block.view(expected)
    if given is None or isinstance(given, str):
        status = "missing" if given is None else "bad shape"
        return Row(block.name, block.param, block.gate, exp.size, status, tolerance,
                   expected=np.array(exp), problem=given or "missing")
    got = block.view(given)
    abs_ag, rel_ag = errors(got, exp)
    row = Row(block.name, block.param, block.gate, exp.size, "ok", tolerance, abs_ag, rel_ag,
              expected=np.array(exp), given=np.array(got))
    if fd is not None and len(fd[0]):
        indices, values, bounds = fd
        scale = max(float(np.max(np.abs(got))), float(np.max(np.abs(exp))))
        diff = np.abs(given.reshape(-1)[indices] - values)
        row.fd_entries = len(indices)
        row.abs_fd = float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf")
        row.rel_fd = (row.abs_fd / scale if scale > 0
                      else 0.0 if row.abs_fd == 0 else float("inf"))
        row.fd_ok = bool(np.all(diff <= fd_tolerance * scale + bounds))
    if not np.any(exp) and not np.any(got):
        row.status = "not tested"
    elif not (rel_ag <= tolerance and row.fd_ok):
        row.status = "WRONG"
    return row


def arrays_in(named: dict) -> dict:
    """The arrays inside ``named`` (argument name -> value: an array, a tuple of them, a dict
    of them, nested), each under the name a user reads: ``"params['W']['f']"``, ``"state[0]"``.
    Values that are not arrays are left out."""
    out = {}

    def walk(name, value):
        if isinstance(value, np.ndarray):
            out[name] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{name}[{k!r}]", v)
        elif isinstance(value, (tuple, list)):
            for k, v in enumerate(value):
                walk(f"{name}[{k}]", v)
    for name, value in named.items():
        walk(name, value)
    return out


def changed(arrays: dict, copies: dict) -> list[str]:
    """The names of ``arrays`` (name -> array, as :func:`arrays_in` gives) whose values differ
    from ``copies`` (the same names, copied before a call): what the call wrote into."""
    return [name for name, a in arrays.items()
            if a.shape != copies[name].shape
            or not np.array_equal(a, copies[name], equal_nan=a.dtype.kind in "fc")]
