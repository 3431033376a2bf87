r"""The LSTM equations, written once against ``autograd.numpy``.

For each time step t, with x_t ``(B, D)`` and the state h_{t-1}, c_{t-1} ``(B, H)``
(row-vector convention, batch rows first; sigma is the logistic sigmoid)::

    i_t = sigma(x_t W_xi + h_{t-1} W_hi + b_i)      input gate: how much to write
    f_t = sigma(x_t W_xf + h_{t-1} W_hf + b_f)      forget gate: how much of c_{t-1} to keep
    g_t = tanh (x_t W_xg + h_{t-1} W_hg + b_g)      candidate, the notebooks' C~_t
    o_t = sigma(x_t W_xo + h_{t-1} W_ho + b_o)      output gate: how much of the cell to show
    c_t = f_t * c_{t-1} + i_t * g_t                 cell state
    h_t = o_t * tanh(c_t)                           hidden state

The four gates share one matrix product: ``z_t = x_t @ Wx + h_{t-1} @ Wh + b`` is ``(B, 4H)``
and holds the pre-activations of i, f, g, o side by side (:data:`lstm_ag.params.GATES`). The
input part ``x_t @ Wx + b`` is computed for all steps at once before the time loop; each step
then adds one recurrent product. A readout ``y_t = h_t @ Wy + by`` gives predictions.

:func:`lstm_step` is the only place these equations are written. Two loops call it:
:func:`scan`, which autograd can trace, and :meth:`SequenceCache.run`, which runs it on plain
arrays and keeps every activation for the hand-written backward (:mod:`lstm_ag.bptt`).
"""
from __future__ import annotations

from typing import Any

import autograd.numpy as np
import numpy as onp

from .ops import TRACEABLE, Elementwise, plain_ops
from .params import split_gates

__all__ = ["lstm_step", "scan", "SequenceCache", "readout_mse"]


#: ``out`` of :func:`lstm_step` when the step makes new arrays.
_NEW = (None,) * 7


def lstm_step(Wh: Any, zx_t: Any, h: Any, c: Any, ops: Elementwise = TRACEABLE,
              out: Any = None) -> tuple:
    """One LSTM step from a precomputed input projection.

    - Wh: recurrent weights ``(H, 4H)``.
    - zx_t: the input part of the pre-activation, ``x_t @ Wx + b``, ``(B, 4H)``.
    - h, c: the previous hidden and cell state, each ``(B, H)``.
    - ops: the elementwise functions to use: :data:`lstm_ag.ops.TRACEABLE` (default) works on
      autograd boxes and plain arrays alike; :data:`lstm_ag.ops.PLAIN` only on plain arrays,
      and faster.
    - out: None (new arrays), or with plain ``ops`` only, a ``(7, B, H)`` array to write
      ``h, c, i, f, g, o, tanh_c`` into (a time row of :attr:`SequenceCache.store`; it must
      not overlap ``h`` or ``c``).
    Returns ``((h, c), (i, f, g, o, tanh_c))``: the new state, each ``(B, H)``, and the gate
    activations with tanh(c_t), each ``(B, H)``, which the hand-written backward caches
    (views of ``out`` when given).

    >>> import numpy as np
    >>> H = 2
    >>> (h, c), (i, f, g, o, tanh_c) = lstm_step(np.zeros((H, 4 * H)), np.zeros((1, 4 * H)),
    ...                                          np.zeros((1, H)), np.ones((1, H)))
    >>> f, c                    # sigma(0) = 0.5 of the old cell is kept; g = tanh(0) = 0
    (array([[0.5, 0.5]]), array([[0.5, 0.5]]))
    """
    h_, c_, i_, f_, g_, o_, tanh_c_ = _NEW if out is None else out      # where each one goes
    z_i, z_f, z_g, z_o = split_gates(zx_t + h @ Wh)
    i = ops.sigmoid(z_i, i_)
    f = ops.sigmoid(z_f, f_)
    g = ops.tanh(z_g, g_)
    o = ops.sigmoid(z_o, o_)
    c = ops.add(ops.multiply(f, c, c_), i * g, c_)                 # c = f * c + i * g
    tanh_c = ops.tanh(c, tanh_c_)
    h = ops.multiply(o, tanh_c, h_)                                 # h = o * tanh_c
    return (h, c), (i, f, g, o, tanh_c)


def scan(Wx: Any, Wh: Any, b: Any, xs: Any, h0: Any, c0: Any,
         ops: Elementwise = TRACEABLE, lengths: Any = None) -> tuple:
    """Run :func:`lstm_step` over a whole sequence (traceable by autograd).

    - Wx ``(D, 4H)``, Wh ``(H, 4H)``, b ``(4H,)``: the LSTM weights.
    - xs: inputs ``(T, B, D)``; h0, c0: initial state, each ``(B, H)``.
    - ops: as for :func:`lstm_step`.
    - lengths: optional ``(B,)`` integers in [1, T]: sequence b ends after step lengths[b] - 1
      (the steps past it are padding: they run, but nothing valid depends on them).
    Returns ``(hs, h_T, c_T)``: every hidden state ``(T, B, H)`` (zero past each length) and
    the final state, each ``(B, H)``, taken at each sequence's own length.
    """
    zx = xs @ Wx + b                      # (T, B, 4H): the input projection, once
    h, c = h0, c0
    hs, cs = [], []
    for t in range(xs.shape[0]):
        (h, c), _ = lstm_step(Wh, zx[t], h, c, ops)
        hs.append(h)
        if lengths is not None:
            cs.append(c)
    hs = np.stack(hs)
    if lengths is None:
        return hs, h, c
    last, rows = lengths - 1, onp.arange(len(lengths))
    valid = onp.arange(len(hs))[:, None, None] < lengths[None, :, None]
    return hs * valid, hs[last, rows], np.stack(cs)[last, rows]


class SequenceCache:
    """A forward run on plain arrays, with every activation the backward needs.

    Build one with :meth:`run`. The activations live in one buffer ``store`` of shape
    ``(7, T + 1, B, H)`` (fields in :attr:`FIELDS` order, time-major, each contiguous); time
    row 0 holds the initial state ``h0, c0`` (unused for the gates), row t + 1 the values of
    step t. The named views below are views into it, never copies:

    - ``h``, ``c``: ``(T + 1, B, H)``, the states with the initial one first;
    - ``hs``: ``(T, B, H)``, the hidden states of the steps (``h[1:]``), the forward's output;
    - ``h_prev``, ``c_prev``: ``(T, B, H)``, the states each step started from (``h[:-1]``);
    - ``i, f, g, o, tanh_c``: ``(T, B, H)``, each step's gates and tanh(c_t).

    Also kept: the inputs ``xs (T, B, D)`` and the weights ``Wx (D, 4H)``, ``Wh (H, 4H)``.
    """
    FIELDS = ("h", "c", "i", "f", "g", "o", "tanh_c")
    __slots__ = ("xs", "Wx", "Wh", "store")

    def __init__(self, xs, Wx, Wh, store):
        T, B, _ = xs.shape
        H = Wh.shape[0]
        if store.shape != (len(self.FIELDS), T + 1, B, H):
            raise ValueError(f"store must have shape (7, T + 1, B, H) = (7, {T + 1}, {B}, {H}), "
                             f"got {store.shape}")
        self.xs, self.Wx, self.Wh, self.store = xs, Wx, Wh, store

    @classmethod
    def run(cls, Wx, Wh, b, xs, h0, c0) -> SequenceCache:
        """Run :func:`lstm_step` over ``xs`` on plain arrays, keeping every activation.

        - Wx ``(D, 4H)``, Wh ``(H, 4H)``, b ``(4H,)``, xs ``(T, B, D)``, h0, c0 ``(B, H)``:
          numpy arrays (not autograd boxes).
        Returns the cache; ``cache.hs`` are the hidden states ``(T, B, H)``.
        """
        T, B, _ = xs.shape
        H = Wh.shape[0]
        zx = xs @ Wx + b
        store = onp.empty((len(cls.FIELDS), T + 1, B, H), dtype=zx.dtype)
        store[0, 0], store[1, 0] = h0, c0
        h, c = h0, c0
        ops = plain_ops(B * H)
        # Each step writes its fields straight into its time row of the buffer (``out``): no
        # new arrays to keep alive (new memory each step cost 25% of the forward at B=64,
        # H=512) and no copy into the buffer after the step.
        for zx_t, row in zip(zx, store.swapaxes(0, 1)[1:], strict=True):
            (h, c), _ = lstm_step(Wh, zx_t, h, c, ops, row)
        return cls(xs, Wx, Wh, store)

    @classmethod
    def of_hidden_states(cls, hs, xs, Wx, Wh) -> SequenceCache:
        """The cache whose buffer ``hs`` is a view of: the link from a forward's output back
        to its activations (the fast path's backward receives only the output).

        - hs: ``cache.hs`` of a cache built by :meth:`run` on ``xs``, ``Wx``, ``Wh``.
        Raises ``ValueError`` when ``hs`` is not such a view (a copy, or another array).
        """
        store = hs.base
        if (not isinstance(store, onp.ndarray) or store.ndim != 4
                or store.shape[0] != len(cls.FIELDS) or store.shape[1] != hs.shape[0] + 1
                or not _same_view(hs, store[0, 1:])):
            raise ValueError("hs is not the hidden states of a SequenceCache (a copy, or an "
                             "array not made by SequenceCache.run)")
        return cls(xs, Wx, Wh, store)

    def outputs(self, lengths: onp.ndarray | None = None) -> tuple:
        """What :func:`scan` returns, from the cache: ``(hs, h_T, c_T)``.

        - lengths: optional ``(B,)``: the final state is taken at each sequence's own length,
          and ``hs`` past it is set to zero *in the cache* (those rows are padding: no valid
          step and no gradient depends on them). ``hs`` stays a view of the cache.
        """
        if lengths is None:
            return self.hs, self.h[-1], self.c[-1]
        rows = onp.arange(len(lengths))
        h_T, c_T = self.h[lengths, rows], self.c[lengths, rows]
        self.hs[onp.arange(self.hs.shape[0])[:, None] >= lengths[None, :]] = 0
        return self.hs, h_T, c_T

    h = property(lambda self: self.store[0], doc="``(T + 1, B, H)``: h_0 (initial) .. h_T")
    c = property(lambda self: self.store[1], doc="``(T + 1, B, H)``: c_0 (initial) .. c_T")
    hs = property(lambda self: self.store[0, 1:], doc="``(T, B, H)``: h_1 .. h_T, the output")
    h_prev = property(lambda self: self.store[0, :-1], doc="``(T, B, H)``: h_{t-1} of step t")
    c_prev = property(lambda self: self.store[1, :-1], doc="``(T, B, H)``: c_{t-1} of step t")
    i = property(lambda self: self.store[2, 1:], doc="``(T, B, H)``: input gates")
    f = property(lambda self: self.store[3, 1:], doc="``(T, B, H)``: forget gates")
    g = property(lambda self: self.store[4, 1:], doc="``(T, B, H)``: candidates")
    o = property(lambda self: self.store[5, 1:], doc="``(T, B, H)``: output gates")
    tanh_c = property(lambda self: self.store[6, 1:], doc="``(T, B, H)``: tanh(c_t)")


def _same_view(a, b):
    """True when arrays ``a`` and ``b`` are the same memory seen the same way."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def readout_mse(params: dict, hs: Any, targets: Any, weights: Any) -> Any:
    """The MSE of the readout ``y = hs @ Wy + by`` against targets (traceable).

    - params: a dict with ``Wy (H, O)``, ``by (O,)``; hs ``(T, B, H)``; targets
      ``(T, B, O)``; weights ``(T, B, 1)`` or None: with weights, the loss is
      ``sum(weights * err**2) / (sum(weights) * O)``.
    Returns a scalar.
    """
    err = hs @ params["Wy"] + params["by"] - targets
    # the methods .sum() (numpy's own on plain arrays, autograd's np.sum on boxes): on plain
    # arrays, as in the fast path's primitive, thinner than autograd's np.mean and np.sum
    if weights is None:
        return (err * err).sum() / err.size              # the mean, the same number
    return (weights * err * err).sum() / (weights.sum() * err.shape[-1])
