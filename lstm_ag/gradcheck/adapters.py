"""Meeting users' backwards where they are: their layout, their gate order, their return value.

The checker holds parameters in this library's dict (gates i, f, g, o along 4H). A backward
under test may take and return them in another layout (``layout=``):

* ``"dict"`` (default): this library's keys ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` and
  ``Wy (H, O)``, ``by (O,)``, the 4H axis in ``gate_order`` (``"ifog"`` for CS231n);
* ``"concat"``: notebooks 000, 001, 003, one matrix per gate on the column ``[h; x]``:
  ``{"W": {gate: (H, H + D)}, "b": {gate: (H,)}}`` (:func:`lstm_ag.layouts.to_concat`);
* ``"split"``: notebook 004, ``{"W": {gate: (H, D)}, "U": {gate: (H, H)}, "b": {gate: (H,)}}``
  (:func:`lstm_ag.layouts.to_split`).

Gradients come back in the same layout and are converted by the same (linear) conversion.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import layouts
from ..params import flatten, unflatten
from .compare import GATE_WIDE, ReturnedWrongly, leaf, permute_gates

__all__ = ["LAYOUTS", "to_user", "from_user", "split_output"]

LAYOUTS = ("dict", "concat", "split")


def to_user(params: dict, layout: str, gate_order: str) -> dict:
    """``params`` (this library's dict) as the backward under test takes them."""
    if layout == "dict":
        return unflatten({k: permute_gates(v, "ifgo", gate_order) if leaf(k) in GATE_WIDE
                          else np.array(v) for k, v in flatten(params).items()})
    if layout == "concat":
        return layouts.to_concat(params)
    return layouts.to_split(params)


def _shape_problem(value, shape):
    if not hasattr(value, "shape") and not isinstance(value, (list, tuple, float, int)):
        return f"a {type(value).__name__}, not an array"
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"a {type(value).__name__} that is not an array of numbers"
    if array.shape != shape:
        return f"shape {array.shape}, expected {shape}"
    return array


def from_user(grads: Any, layout: str, gate_order: str, shapes: dict) -> dict:
    """The backward's gradients in this library's dict, float64.

    - grads: what the backward returned (its gradient part), in its layout.
    - shapes: this library's parameter name -> shape, for the parameters to compare
      (:func:`lstm_ag.params.flatten` names: a stacked model's gradients come back nested).
    Returns name -> float64 array, or a string saying what was returned instead (missing
    entries are ``None``).
    """
    if not isinstance(grads, dict):
        raise ReturnedWrongly("the backward must return a dict of gradients or (loss, dict), got "
                        f"{type(grads).__name__}")
    if layout == "dict":
        out = {}
        grads = flatten(grads)
        for name, shape in shapes.items():
            if name not in grads:
                out[name] = None
                continue
            array = _shape_problem(grads[name], shape)
            if isinstance(array, np.ndarray) and leaf(name) in GATE_WIDE:
                array = permute_gates(array, gate_order, "ifgo")
            out[name] = array
        return out
    return _from_gate_dicts(grads, layout, shapes)


def _from_gate_dicts(grads, layout, shapes):
    weights = ("W",) if layout == "concat" else ("W", "U")
    out = dict.fromkeys(shapes)
    if any(k not in grads for k in weights):
        return out                                         # missing
    kwargs = {k: grads[k] for k in (*weights, "b", "Wy", "by") if k in grads}
    if "Wy" not in shapes:
        kwargs.pop("Wy", None), kwargs.pop("by", None)
    convert = layouts.from_concat if layout == "concat" else layouts.from_split
    try:
        back = convert(**kwargs)
    except (TypeError, ValueError) as err:
        return dict.fromkeys(shapes, f"not convertible ({err})")
    for name in shapes:
        if name in back and (name in ("Wx", "Wh", "Wy") or name in grads):
            out[name] = _shape_problem(back[name], shapes[name])
    return out


def split_output(out: Any) -> tuple:
    """``(loss or None, grads)`` from what a backward returned: grads, or (loss, grads)."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        loss = out[0]
        try:
            loss = float(loss)
        except (TypeError, ValueError):
            raise TypeError("the backward returned (loss, grads) with a loss that is not a "
                            f"number: {type(out[0]).__name__}") from None
        return loss, out[1]
    return None, out
