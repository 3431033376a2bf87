"""The public model functions: validate the arguments once, then dispatch.

=====================  =====================================================================
:func:`lstm_forward`   hidden states and final state
:func:`predict`        the readout ``y_t = h_t @ Wy + by`` at every step
:func:`forecast`       predictions fed back as inputs, K steps past the history
:func:`mse`            the readout's mean squared error against targets
:func:`value_and_grad` that loss and its gradient, by ``"fast"``, ``"bptt"`` or ``"autograd"``
:func:`forward_cache`  a forward that keeps every gate, for inspection and plots
=====================  =====================================================================

Each validates with :mod:`lstm_ag.inputs` and then runs one of three loops over the one
:func:`lstm_ag.cell.lstm_step`:

* nothing is differentiated: :func:`lstm_ag.cell.scan` on plain arrays (no autograd wrappers);
* autograd differentiates, ``method="fast"`` (default): :func:`lstm_ag.vjps.lstm_sequence`,
  one primitive whose gradient is the hand BPTT;
* autograd differentiates, ``method="autograd"``: :func:`lstm_ag.cell.scan` traced step by step.
"""
from __future__ import annotations

from typing import Any

import autograd.numpy as np
import numpy as onp
from autograd import value_and_grad as _autograd_value_and_grad

from .bptt import loss_and_grads
from .cell import SequenceCache, readout_mse, scan
from .inputs import forward_arguments, loss_arguments
from .ops import plain_ops
from .params import is_traced, untraced
from .vjps import as_traced_dict, lstm_sequence, readout_mse_primitive

__all__ = ["METHODS", "check_method", "lstm_forward", "predict", "forecast", "mse",
           "value_and_grad", "forward_cache"]

#: The gradient methods, the default first.
METHODS = ("fast", "bptt", "autograd")


def check_method(method: Any, allowed: tuple = METHODS) -> str:
    """Return ``method`` if it is one of ``allowed``, else raise ``ValueError`` naming it."""
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"method must be one of {', '.join(map(repr, allowed))}, "
                         f"got {method!r}")
    return method


def _hidden(params, xs, h0, c0, method):
    """``(hs (T, B, H), c_T)``, by the loop that suits: plain when nothing is traced, else the
    whole-sequence primitive (``"fast"``) or the traced step loop (``"autograd"``)."""
    params = as_traced_dict(params)
    if not any(is_traced(a) for a in (params, xs, h0, c0)):
        return scan(params["Wx"], params["Wh"], params["b"], xs, h0, c0,
                    ops=plain_ops(h0.shape[0] * h0.shape[1]))
    if method == "autograd":
        return scan(params["Wx"], params["Wh"], params["b"], xs, h0, c0)
    return lstm_sequence(params, xs, h0, c0)


def lstm_forward(params: dict, xs: Any, state: Any = None, *, method: str = "fast") -> tuple:
    """Run the LSTM over a sequence.

    - params: dict with ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (a readout is ignored).
    - xs: ``(T, B, D)`` time-major batch, or ``(T, D)`` / a list of T vectors for one sequence.
    - state: optional ``(h0, c0)``, each ``(B, H)`` (``(H,)`` for one sequence); zeros if None.
    - method: how autograd differentiates it: ``"fast"`` records the whole sequence as one
      primitive whose gradient is the hand BPTT; ``"autograd"`` traces every step.
      Both give the same numbers; without differentiation they are the same code.
    Returns ``(hs, (h, c))``: hs ``(T, B, H)`` (or ``(T, H)``), and the final state, each
    ``(B, H)`` (or ``(H,)``).

    >>> import numpy as np, lstm_ag
    >>> params = lstm_ag.init_params(1, 4)
    >>> hs, (h, c) = lstm_ag.lstm_forward(params, np.zeros((5, 1)))
    >>> hs.shape, h.shape
    ((5, 4), (4,))
    """
    check_method(method, ("fast", "autograd"))
    xs, h0, c0, single = forward_arguments(params, xs, state, readout=False)
    out = _hidden(params, xs, h0, c0, method)
    hs, c = out[0], out[1]               # (indexing records less than unpacking a traced tuple)
    h = hs[-1]
    if single:
        return hs[:, 0], (h[0], c[0])
    return hs, (h, c)


def predict(params: dict, xs: Any, state: Any = None, *, method: str = "fast",
            return_state: bool = False) -> Any:
    """Predictions of the linear readout at every step, ``y_t = h_t @ Wy + by``.

    - params: ``Wx, Wh, b`` and the readout ``Wy (H, O)``, ``by (O,)``.
    - xs, state, method: as for :func:`lstm_forward`.
    - return_state: also return the final state ``(h, c)``, to continue from it.
    Returns ys ``(T, B, O)``, or ``(T, O)`` for one sequence; with ``return_state``,
    ``(ys, (h, c))``, h and c ``(B, H)`` (or ``(H,)``).
    """
    check_method(method, ("fast", "autograd"))
    xs, h0, c0, single = forward_arguments(params, xs, state, readout=True)
    out = _hidden(params, xs, h0, c0, method)
    hs, c = out[0], out[1]
    ys = hs @ params["Wy"] + params["by"]
    if not return_state:
        return ys[:, 0] if single else ys
    h = hs[-1]
    return (ys[:, 0], (h[0], c[0])) if single else (ys, (h, c))


def forecast(params: dict, xs: Any, horizon: int, state: Any = None, *,
             method: str = "fast") -> Any:
    """Forecast ``horizon`` steps past ``xs``, feeding each prediction back as the next input.

    - params: with a readout whose outputs are the inputs (``O == D``): next-value prediction.
    - xs: the history, ``(T, B, D)`` or ``(T, D)``; state: its initial state, optional.
    - horizon: K >= 1, the steps to forecast.
    Returns ``(K, B, O)`` (or ``(K, O)`` for one sequence): the prediction after ``xs``, then
    the prediction after feeding it back, and so on (step k sees the k - 1 predictions
    before it as inputs, never the truth).

    >>> import numpy as np, lstm_ag
    >>> params = lstm_ag.init_params(1, 4, 1)
    >>> lstm_ag.forecast(params, np.zeros((10, 1)), 3).shape
    (3, 1)
    """
    check_method(method, ("fast", "autograd"))
    if isinstance(horizon, bool) or not isinstance(horizon, (int, onp.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    xs, h, c, single = forward_arguments(params, xs, state, readout=True)
    D, O = xs.shape[-1], untraced(untraced(params)["Wy"]).shape[1]
    if O != D:
        raise ValueError(f"forecast feeds each prediction back as the next input, so the "
                         f"readout's outputs must be the inputs: params has O = {O} outputs "
                         f"but xs has D = {D} features")
    ys = []
    for _ in range(horizon):
        out = _hidden(params, xs, h, c, method)
        hs, c = out[0], out[1]
        h = hs[-1]
        ys.append(h @ params["Wy"] + params["by"])
        xs = ys[-1][None]                                  # (1, B, D): the next input
    ys = np.stack(ys)
    return ys[:, 0] if single else ys


def _loss(params, xs, h0, c0, targets, weights, method):
    """The loss of :func:`mse` on arguments validated by :func:`loss_arguments`."""
    hs = _hidden(params, xs, h0, c0, method)[0]
    params = as_traced_dict(params)
    traced = any(is_traced(a) for a in (params, hs, targets, weights))
    loss = readout_mse_primitive if method == "fast" and traced else readout_mse
    return loss(params, hs, targets, weights)


def mse(params: dict, xs: Any, targets: Any, state: Any = None, *, mask: Any = None,
        method: str = "fast") -> Any:
    """Mean squared error of :func:`predict` against ``targets``, over every element.

    - targets: the predictions' shape, ``(T, B, O)`` or ``(T, O)``.
    - mask: optional loss weights per step, ``(T,)`` or ``(T, B)``; the loss is then
      ``sum(mask * err**2) / (sum(mask) * O)`` (for example the last step only).
    - method: as for :func:`lstm_forward`.
    Returns a scalar.
    """
    check_method(method, ("fast", "autograd"))
    return _loss(params, *loss_arguments(params, xs, targets, state, mask), method)


def value_and_grad(params: dict, xs: Any, targets: Any, state: Any = None, *,
                   method: str = "fast", mask: Any = None) -> tuple[Any, dict]:
    """The MSE of the readout at every step and its gradient with respect to ``params``.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)``.
    - xs: ``(T, B, D)`` or ``(T, D)``; targets: ``(T, B, O)`` or ``(T, O)``.
    - state: optional initial ``(h0, c0)``; mask: optional loss weights ``(T,)`` or ``(T, B)``.
    - method: ``"fast"`` (autograd through a whole-sequence primitive whose VJP is the hand
      BPTT), ``"bptt"`` (the hand-written backward alone) or ``"autograd"`` (autograd traces
      the Python forward step by step).
    Returns ``(loss, grads)``: a numpy scalar and a dict with the keys and shapes of
    ``params``, both in the parameters' dtype.

    >>> import numpy as np, lstm_ag
    >>> params = lstm_ag.init_params(1, 3, 1)
    >>> xs = np.linspace(0, 1, 6)[:, None]
    >>> loss, grads = lstm_ag.value_and_grad(params, xs[:-1], xs[1:])
    >>> sorted(grads) == sorted(params), grads["Wh"].shape
    (True, (3, 12))
    """
    check_method(method)
    if isinstance(params, dict) and type(params) is not dict:
        params = dict(params)             # an OrderedDict, say: autograd differentiates dicts
    arrays = loss_arguments(params, xs, targets, state, mask)      # validated once
    if method == "bptt":
        return loss_and_grads(params, *arrays)
    return _autograd_value_and_grad(_loss)(params, *arrays, method)


def forward_cache(params: dict, xs: Any, state: Any = None) -> SequenceCache:
    """Run the forward on plain arrays and keep every step's activations.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (a readout is ignored).
    - xs: ``(T, B, D)``, or ``(T, D)`` for one sequence; state: optional ``(h0, c0)``.
    Returns a :class:`lstm_ag.cell.SequenceCache` (always batched: one sequence has B = 1),
    whose named views are ``h``, ``c`` ``(T + 1, B, H)`` (row 0 the initial state), ``hs``
    ``(T, B, H)`` and the gates ``i, f, g, o`` and ``tanh_c`` ``(T, B, H)``.

    >>> import numpy as np, lstm_ag
    >>> cache = lstm_ag.forward_cache(lstm_ag.init_params(2, 3), np.ones((4, 2)))
    >>> cache.h.shape, cache.f.shape
    ((5, 1, 3), (4, 1, 3))
    """
    xs, h0, c0, _ = forward_arguments(params, xs, state, readout=False)
    Wx, Wh, b = (untraced(untraced(params)[k]) for k in ("Wx", "Wh", "b"))
    return SequenceCache.run(Wx, Wh, b, untraced(xs), untraced(h0), untraced(c0))
