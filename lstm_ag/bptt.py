r"""Backpropagation through time, written by hand (in the form of CS231n's ``rnn_layers.py``).

The forward is not repeated here: :meth:`lstm_ag.cell.SequenceCache.run` runs the one
:func:`lstm_ag.cell.lstm_step` on plain arrays and keeps its activations. This module is the
only other copy of the mathematics: the derivative of one step, in two halves.

**Local derivatives** of step t (they do not depend on the loss, so they are computed for all
steps at once, from the stored activations, never recomputed from pre-activations)::

    dh_t/dc_t    = o_t (1 - tanh(c_t)^2)          h_c
    dc_t/dz_i    = g_t  i_t (1 - i_t)              c_z[..., 0, :]
    dc_t/dz_f    = c_{t-1} f_t (1 - f_t)           c_z[..., 1, :]
    dc_t/dz_g    = i_t (1 - g_t^2)                 c_z[..., 2, :]
    dh_t/dz_o    = tanh(c_t) o_t (1 - o_t)         h_zo
    dc_t/dc_{t-1} = f_t,   dz_t/dh_{t-1} = Wh^T

**The chain rule, step by step, backwards in time**: with ``dh`` = dL/dh_t (from the loss at
step t plus ``dh_next`` from step t + 1) and ``dc_next`` = dL/dc_t from step t + 1::

    dc   = dc_next + dh * h_c
    dz   = [dc * c_z_i, dc * c_z_f, dc * c_z_g, dh * h_zo]     (B, 4H), gates i, f, g, o
    dc_prev = dc * f,   dh_prev = dz @ Wh^T

Weight gradients are then one matrix product each over all steps, after the loop:
``dWx = X^T dZ``, ``dWh = H_prev^T dZ``, ``db = sum(dZ)``, ``dX = dZ Wx^T``.

Notebook 001's backward, which this replaces, has two bugs:

1. its forward has ``return h`` *inside* the time loop, so only the first step ever runs and
   is cached: the backward then sees a sequence of length 1 and the recurrent path
   (``dh_next``, ``dc_next``) is never exercised;
2. its loss reaches only the last hidden state (one ``dL_dh``), so the gradient of a loss at
   every step, the usual next-value objective, cannot be expressed; ours takes ``dhs``, a
   gradient for every hidden state, and :func:`bptt` puts an MSE readout at every step.
"""
from __future__ import annotations

import numpy as np

from .cell import SequenceCache
from .params import nest_layers, structure
from .stack import initial_states, reverse_index, reverse_time, run_layers

__all__ = ["LOCAL_BYTES", "local_derivatives", "lstm_step_backward", "lstm_backward",
           "weight_product", "weight_gradients", "cached_runner", "stack_backward",
           "readout_mse_backward", "loss_and_grads", "hidden_grads"]


#: Bytes of local derivatives computed at once: the backward takes them for a chunk of steps
#: at a time (all T steps when they fit), so that its memory does not grow with T * B * H
#: beyond the forward's cache (at B = 64, H = 256, T = 200 in float64 this saves 110 MiB).
LOCAL_BYTES = 16 * 2**20


def local_derivatives(cache: SequenceCache, steps: slice = slice(None)) -> tuple:
    """The local derivatives of the steps ``steps``, from a forward's stored activations.

    - cache: a :class:`lstm_ag.cell.SequenceCache` of T steps, batch B, H units.
    - steps: which steps (a slice of range(T)); all by default.
    Returns ``(h_c, c_z, h_zo, f)`` for those S steps: ``h_c (S, B, H)`` = dh_t/dc_t,
    ``c_z (S, B, 3, H)`` = dc_t/dz for the gates i, f, g, ``h_zo (S, B, H)`` = dh_t/dz_o,
    ``f (S, B, H)`` = dc_t/dc_{t-1}.
    """
    i, f, g, o, tanh_c = (a[steps] for a in (cache.i, cache.f, cache.g, cache.o, cache.tanh_c))
    c_prev = cache.c_prev[steps]
    T, B, H = i.shape
    c_z = np.empty((T, B, 3, H), dtype=i.dtype)
    np.multiply(g, i * (1 - i), out=c_z[:, :, 0])
    np.multiply(c_prev, f * (1 - f), out=c_z[:, :, 1])
    np.multiply(i, 1 - g * g, out=c_z[:, :, 2])
    h_c = o * (1 - tanh_c * tanh_c)
    h_zo = tanh_c * o * (1 - o)
    return h_c, c_z, h_zo, f


def lstm_step_backward(dh_next: np.ndarray, dc_next: np.ndarray, cache: tuple,
                       dz: np.ndarray | None = None) -> tuple:
    """Backward through one :func:`lstm_ag.cell.lstm_step`.

    - dh_next: dL/dh_t, the whole gradient reaching the step's output h_t, ``(B, H)``.
    - dc_next: dL/dc_t from the steps after t, ``(B, H)``.
    - cache: ``(Wh, h_c, c_z, h_zo, f)`` for this step: the recurrent weights ``(H, 4H)`` and
      this step's slice of :func:`local_derivatives` (``(B, H)``, ``(B, 3, H)``, ``(B, H)``,
      ``(B, H)``).
    - dz: optional ``(B, 4H)`` C-contiguous array to write dL/dz_t into.
    Returns ``(dz, dh_prev, dc_prev)``: dL/dz_t ``(B, 4H)`` (gates i, f, g, o) for
    z_t = x_t Wx + h_{t-1} Wh + b, so that dx_t = dz Wx^T, dWx = x_t^T dz, dWh = h_{t-1}^T dz,
    db = sum_rows(dz); and dL/dh_{t-1}, dL/dc_{t-1}, each ``(B, H)``.
    """
    Wh, h_c, c_z, h_zo, f = cache
    B, H = dh_next.shape
    if dz is None:
        dz = np.empty((B, 4 * H), dtype=dh_next.dtype)
    dz_gates = dz.reshape(B, 4, H)        # the gates i, f, g, o of split_gates, as one axis
    dc = dh_next * h_c                                      # through h_t = o_t tanh(c_t)
    dc += dc_next                                           # and from c_{t+1}
    np.multiply(dc[:, None, :], c_z, out=dz_gates[:, :3])  # dz_i, dz_f, dz_g
    np.multiply(dh_next, h_zo, out=dz_gates[:, 3])          # dz_o
    dc *= f                                                 # dc_prev
    return dz, dz @ Wh.T, dc


def lstm_backward(dhs: np.ndarray, cache: SequenceCache, dh_last: np.ndarray | None = None,
                  dc_last: np.ndarray | None = None, *, inputs: bool = True,
                  lengths: np.ndarray | None = None, reverse: bool = True, carry: str = "hc",
                  carry_weights: np.ndarray | None = None) -> dict:
    """Backpropagation through time over a whole sequence: the transpose of
    :meth:`SequenceCache.outputs <lstm_ag.cell.SequenceCache.outputs>` after the forward.

    - dhs: dL/dh_t for every step from outside the recurrence (e.g. a readout), ``(T, B, H)``.
    - cache: the :class:`lstm_ag.cell.SequenceCache` of the forward.
    - dh_last, dc_last: optional dL/dh_T and dL/dc_T for the final state, ``(B, H)`` each.
    - inputs: also compute the gradient of the inputs ``xs`` (one more matrix product as
      large as the input projection); the others are always computed.
    - lengths: optional ``(B,)``: the final state of sequence b was taken after step
      lengths[b] - 1 (its gradient enters there) and its hidden states past it were zero
      (``dhs`` there is ignored).
    Returns a dict: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``xs (T, B, D)`` (when
    ``inputs``), ``h0 (B, H)``, ``c0 (B, H)``: the gradients of the LSTM's weights, inputs
    and initial state; and ``z (T, B, 4H)``, those of the pre-activations z_t.

    **The mistakes hook.** The gradient checker names a student's mistake by running this one
    loop with that mistake made, and comparing. The defaults are the right backward; each
    other value is one known mistake (``h0``, ``c0`` are then what the loop carries out):

    - ``reverse=False``: the loop visits the steps forward in time, t = 0 .. T-1, carrying
      dh_prev, dc_prev from step t into step t + 1 (the final state's gradient still enters
      at step T - 1);
    - ``carry``: the gradients carried to the next step visited, ``"hc"``; without ``"h"``
      dh_prev = dz Wh^T is dropped (dh = dhs[t] alone), without ``"c"`` dc_prev = dc * f is;
    - ``carry_weights``: an ``(H, 4H)`` matrix used in place of ``Wh`` in dh_prev = dz Wh^T
      (e.g. rows of ``[Wh; Wx]`` other than Wh's: dh taken from the wrong rows of the
      gradient of the concatenated input ``[h; x]``).
    """
    xs, Wh = cache.xs, cache.Wh
    T, B, D = xs.shape
    H = Wh.shape[0]
    if dhs.shape != (T, B, H):
        raise ValueError(f"dhs must have shape (T, B, H) = ({T}, {B}, {H}), got {dhs.shape}")
    dZ = np.empty((T, B, 4 * H), dtype=cache.store.dtype)
    ends = {}                           # step -> the sequences whose final state it made
    if lengths is not None or not reverse:
        if lengths is not None:
            dhs = dhs * (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
            ends = {t: np.flatnonzero(lengths == t + 1) for t in np.unique(lengths - 1)}
        else:
            ends = {T - 1: np.arange(B)}
        dh, dc = dhs[-1 if reverse else 0].copy(), np.zeros((B, H), dtype=dZ.dtype)
    else:
        dh = dhs[-1] if dh_last is None else dhs[-1] + dh_last
        dc = np.zeros((B, H), dtype=dZ.dtype) if dc_last is None else dc_last
    W_carry = Wh
    if carry_weights is not None:
        if carry_weights.shape != Wh.shape:
            raise ValueError(f"carry_weights must have Wh's shape {Wh.shape}, got "
                             f"{carry_weights.shape}")
        W_carry = carry_weights
    step, last = (-1, 0) if reverse else (1, T - 1)       # the next step visited; the last
    drop = carry != "hc"
    chunk = max(1, LOCAL_BYTES // (7 * B * H * dZ.itemsize))    # c_z, h_c, h_zo, temporaries
    for edge in (range(T, 0, -chunk) if reverse else range(0, T, chunk)):
        start, stop = (max(0, edge - chunk), edge) if reverse else (edge, min(T, edge + chunk))
        h_c, c_z, h_zo, f = local_derivatives(cache, slice(start, stop))
        for t in (range(stop - 1, start - 1, -1) if reverse else range(start, stop)):
            if t in ends:               # the final state's gradient, at each length
                rows = ends[t]
                if dh_last is not None:
                    dh[rows] += dh_last[rows]
                if dc_last is not None:
                    dc[rows] += dc_last[rows]
            k = t - start
            _, dh, dc = lstm_step_backward(dh, dc, (W_carry, h_c[k], c_z[k], h_zo[k], f[k]),
                                           dZ[t])
            if t != last:
                if drop:                # a mistake simulated: a path not carried
                    dh = dh if "h" in carry else np.zeros_like(dh)
                    dc = dc if "c" in carry else np.zeros_like(dc)
                dh += dhs[t + step]
    grads = weight_gradients(cache, dZ, inputs=inputs)
    grads.update(h0=dh, c0=dc, z=dZ)
    return grads


def weight_product(a: np.ndarray, dZ: np.ndarray, *, transpose: bool = True) -> np.ndarray:
    """sum_t a_t^T dz_t: the gradient of a weight that multiplies ``a`` in z_t.

    - a ``(T, B, K)``: what the weight multiplies (x_t, h_{t-1}); dZ ``(T, B, 4H)``.
    - transpose: False is a mistake the checker simulates, the product without its
      transpose, sum_t a_t dz_t, which fits only when K = B (then ``(B, 4H)``).
    Returns ``(K, 4H)``.
    """
    T, B, K = a.shape
    if transpose:
        return a.reshape(T * B, K).T @ dZ.reshape(T * B, -1)
    if K != B:
        raise ValueError(f"a product without its transpose needs K = B, got K={K}, B={B}")
    return np.einsum("tbk,tkj->bj", a, dZ)


def weight_gradients(cache: SequenceCache, dZ: np.ndarray, *, inputs: bool = True,
                     steps: slice | None = None, h_prev: np.ndarray | None = None) -> dict:
    """The gradients that follow from dL/dz_t, one matrix product each over the steps.

    - cache: the forward's :class:`lstm_ag.cell.SequenceCache` (its ``xs (T, B, D)``, the
      states ``h_prev (T, B, H)`` each step started from, ``Wx (D, 4H)``).
    - dZ: dL/dz_t ``(T, B, 4H)``, e.g. :func:`lstm_backward`'s ``"z"``.
    - inputs: also ``xs``: dx_t = dz_t Wx^T ``(T, B, D)``.
    - steps: the steps summed over (None: all; the checker takes ``slice(0, 1)``, step
      0's contribution alone, which ``dWx = ...`` in place of ``dWx += ...`` in a backward
      loop leaves).
    - h_prev: the states dWh multiplies, ``(T, B, H)`` (default: the cache's h_{t-1}; the
      checker passes h_t to simulate that mistake).
    Returns ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (and ``xs``): dWx = sum_t x_t^T dz_t,
    dWh = sum_t h_{t-1}^T dz_t, db = the sum of dz over the steps and the batch.
    """
    h_prev = cache.h_prev if h_prev is None else h_prev
    xs, dz = cache.xs, dZ
    if steps is not None:
        xs, h_prev, dz = xs[steps], h_prev[steps], dz[steps]
    T, B, D = xs.shape
    dz2 = dz.reshape(T * B, -1)
    grads = {"Wx": xs.reshape(T * B, D).T @ dz2,                # weight_product, inline
             "Wh": h_prev.reshape(T * B, -1).T @ dz2,
             "b": dz2.sum(axis=0)}
    if inputs:
        grads["xs"] = (dz2 @ cache.Wx.T).reshape(T, B, D)
    return grads


def cached_runner(caches: list):
    """A ``run_direction`` for :func:`lstm_ag.stack.run_layers` that runs the forward on plain
    arrays and appends each direction's :class:`lstm_ag.cell.SequenceCache` to ``caches``."""
    def run(weights, xs, h0, c0, lengths):
        cache = SequenceCache.run(weights["Wx"], weights["Wh"], weights["b"], xs, h0, c0)
        caches.append(cache)
        return cache.outputs(lengths)
    return run


def stack_backward(params: dict, caches: list, dhs: np.ndarray, dhT: list | None = None,
                   dcT: list | None = None, lengths: np.ndarray | None = None,
                   struct: tuple[int, int] | None = None) -> tuple:
    """The backward of :func:`lstm_ag.stack.run_layers`: :func:`lstm_backward` for every layer
    and direction, wired in reverse (the input gradient of layer l is the ``dhs`` of layer
    l - 1; the reverse direction's gradients are put back in time by the same reversal).

    - params: the parameter dict; caches: the K caches of the forward, in PyTorch's order
      (:func:`cached_runner`); dhs: dL/d(top layer's hidden states) ``(T, B, dirs*H)``;
      dhT, dcT: optional K gradients of the final states ``(B, H)``; lengths: as the forward;
      struct: ``structure(params)`` when the caller has it (computed when None).
    Returns ``(grads, dh0s, dc0s)``: a dict of the LSTM weights' gradients with the structure
    of ``params`` (without the readout), and the K initial states' gradients.
    """
    num_layers, dirs = structure(params) if struct is None else struct
    H = caches[0].Wh.shape[0]
    index = reverse_index(lengths, dhs.shape[0]) if dirs == 2 else None
    per_direction = [None] * len(caches)
    for layer in range(num_layers - 1, -1, -1):
        below = None
        for d in range(dirs):
            k = layer * dirs + d
            g = dhs if dirs == 1 else dhs[..., d * H:(d + 1) * H]
            grads = lstm_backward(g if d == 0 else reverse_time(g, index), caches[k],
                                  None if dhT is None else dhT[k],
                                  None if dcT is None else dcT[k],
                                  inputs=layer > 0, lengths=lengths)
            per_direction[k] = grads
            if layer:
                dx = grads["xs"] if d == 0 else reverse_time(grads["xs"], index)
                below = dx if below is None else below + dx
        dhs = below
    grads = nest_layers([{k: g[k] for k in ("Wx", "Wh", "b")} for g in per_direction], dirs)
    return grads, [g["h0"] for g in per_direction], [g["c0"] for g in per_direction]


def readout_mse_backward(hs: np.ndarray, Wy: np.ndarray, by: np.ndarray, targets: np.ndarray,
                         weights: np.ndarray | None = None) -> tuple:
    """The loss of :func:`lstm_ag.cell.readout_mse` and its gradients, by hand.

    - hs ``(T, B, H)``, Wy ``(H, O)``, by ``(O,)``, targets ``(T, B, O)``, weights
      ``(T, B, 1)`` or None: the MSE of ``y = hs @ Wy + by`` against targets.
    Returns ``(loss, dhs (T, B, H), dWy (H, O), dby (O,))``.
    """
    T, B, H = hs.shape
    O = Wy.shape[1]
    err = hs @ Wy + by - targets                                # (T, B, O)
    count = err.size if weights is None else np.sum(weights) * O
    werr = err if weights is None else err * weights
    loss = np.sum(werr * err) / count
    dys = (werr * (2 / count)).reshape(T * B, O)
    return loss, (dys @ Wy.T).reshape(T, B, H), hs.reshape(T * B, H).T @ dys, dys.sum(axis=0)


def loss_and_grads(params: dict, xs, h0, c0, targets, weights, lengths=None,
                   with_state: bool = False, struct: tuple[int, int] | None = None) -> tuple:
    """:func:`bptt` on arguments already validated by :func:`lstm_ag.inputs.loss_arguments`
    (time-major ``xs (T, B, D)``, ``h0, c0`` ``(B, H)`` or ``(K, B, H)``, ``targets
    (T, B, O)``, ``weights (T, B, 1)`` or None, ``lengths (B,)`` or None). Returns
    ``(loss, grads)``, and with ``with_state`` also the K final states ``(hT, cT)`` as lists
    of ``(B, H)`` arrays. ``struct``: ``structure(params)``, computed when None."""
    struct = structure(params) if struct is None else struct
    caches: list = []
    hs, hT, cT = run_layers(params, xs, *initial_states(h0, c0, params, struct), lengths,
                            cached_runner(caches), struct)
    loss, dhs, dWy, dby = readout_mse_backward(hs, params["Wy"], params["by"], targets,
                                               weights)
    grads, _, _ = stack_backward(params, caches, dhs, lengths=lengths, struct=struct)
    grads.update(Wy=dWy, by=dby)
    grads = {k: grads[k] for k in params}            # the order of params
    return (loss, grads, (hT, cT)) if with_state else (loss, grads)


def hidden_grads(params: dict, xs, h0, c0, dhs=None, dhT=None,
                 struct: tuple[int, int] | None = None) -> dict:
    """The LSTM weights' gradients of ``sum(dhs * hs) + sum_k sum(dhT[k] * h_T[k])``, a loss
    given by its gradients with respect to the hidden states, by the hand-written backward.

    - params: the LSTM's weights (a readout, if any, is not used); xs ``(T, B, D)``;
      h0, c0 ``(B, H)`` or ``(K, B, H)`` (as :func:`loss_and_grads`).
    - dhs: ``(T, B, dirs*H)``, the top layer's hidden states' gradients (None: zeros);
      dhT: None or K arrays ``(B, H)``, the final hidden states' gradients.
    - struct: ``structure(params)`` when the caller has it (computed when None).
    Returns the gradients with the structure of ``params`` (without the readout).
    """
    struct = structure(params) if struct is None else struct
    caches: list = []
    hs, _, _ = run_layers(params, xs, *initial_states(h0, c0, params, struct), None,
                          cached_runner(caches), struct)
    grads, _, _ = stack_backward(params, caches, np.zeros_like(hs) if dhs is None else dhs, dhT,
                                 struct=struct)
    return grads

