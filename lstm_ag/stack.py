"""Layers, directions and lengths: the one composition of the one scan.

Nothing here is LSTM mathematics. A model of L layers and dirs directions (``params``, see
:mod:`lstm_ag.params`) runs one sequence scan per layer and direction, given as
``run_direction(weights, xs, h0, c0, lengths) -> (hs, h_T, c_T)``: the traced or plain
:func:`lstm_ag.cell.scan`, the fast path's primitive, or the hand BPTT's cached run. This module
wires them together, as ``torch.nn.LSTM`` does:

* **layers**: layer l > 0 reads the hidden states of layer l - 1, its directions side by side
  (forward first): ``(T, B, dirs*H)``;
* **directions**: the reverse direction is the same scan on the sequence reversed in time,
  each sequence within its own length (:func:`reverse_time`), and its hidden states are put
  back in the original order;
* **lengths**: each scan takes its final state at each sequence's own length and returns zero
  hidden states past it (PyTorch's packed sequences); the padding never reaches a valid step.

The hand backward (:func:`lstm_ag.bptt.stack_backward`) walks the same wiring in reverse.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import autograd.numpy as np
import numpy as onp

from .params import lstm_layers, structure, untraced

__all__ = ["reverse_index", "reverse_time", "initial_states", "run_layers"]


def reverse_index(lengths: onp.ndarray | None, T: int) -> onp.ndarray | None:
    """For each step t and sequence b, the step that the reversed sequence reads there:
    ``lengths[b] - 1 - t`` within the length, ``t`` (the padding stays in place) past it.
    ``(T, B)`` integers; None without lengths (then the reversal is ``[::-1]``). Reading
    through it twice is the identity."""
    if lengths is None:
        return None
    t = onp.arange(T)[:, None]
    return onp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def reverse_time(a: Any, index: onp.ndarray | None) -> Any:
    """``a (T, B, ...)`` reversed in time within each sequence's length (:func:`reverse_index`);
    traceable. Its own inverse, and its own transpose."""
    if index is None:
        return a[::-1]
    return a[index, onp.arange(index.shape[1])[None, :]]


def initial_states(h0: Any, c0: Any, params: Any,
                   struct: tuple[int, int] | None = None) -> tuple[list, list]:
    """The initial states as lists of K = layers * directions arrays ``(B, H)``, in PyTorch's
    order (layer 0 forward, layer 0 reverse, layer 1 forward, ...), from ``(B, H)`` arrays
    (one layer and direction) or ``(K, B, H)`` arrays. ``struct``: ``structure(params)``
    when the caller has it (computed when None)."""
    num_layers, dirs = structure(params) if struct is None else struct
    if num_layers * dirs == 1:
        return [h0], [c0]
    return [h0[k] for k in range(num_layers * dirs)], [c0[k] for k in range(num_layers * dirs)]


def run_layers(params: Any, xs: Any, h0s: list, c0s: list, lengths: onp.ndarray | None,
               run_direction: Callable,
               struct: tuple[int, int] | None = None) -> tuple[Any, list, list]:
    """Run every layer and direction of ``params`` over ``xs``.

    - params: the parameter dict (plain, or traced by autograd).
    - xs ``(T, B, D)``; h0s, c0s: K initial states ``(B, H)`` each (:func:`initial_states`).
    - lengths: ``(B,)`` or None; run_direction: as in the module docstring.
    - struct: ``(num_layers, dirs)``, :func:`lstm_ag.params.structure` of ``params`` when the
      caller has it (computed when None).
    Returns ``(hs, hT, cT)``: the top layer's hidden states ``(T, B, dirs*H)`` (zero past each
    length) and the K final states ``(B, H)`` each, in PyTorch's order.
    """
    num_layers, dirs = structure(params) if struct is None else struct
    layers = [[params]] if num_layers * dirs == 1 else lstm_layers(params, (num_layers, dirs))
    index = reverse_index(lengths, untraced(xs).shape[0]) if dirs == 2 else None
    inputs, hT, cT = xs, [], []
    for directions in layers:
        outputs = []
        for d, weights in enumerate(directions):
            k = len(hT)
            seq = inputs if d == 0 else reverse_time(inputs, index)
            hs, h, c = run_direction(weights, seq, h0s[k], c0s[k], lengths)
            outputs.append(hs if d == 0 else reverse_time(hs, index))
            hT.append(h)
            cT.append(c)
        inputs = outputs[0] if dirs == 1 else np.concatenate(outputs, axis=-1)
    return inputs, hT, cT
