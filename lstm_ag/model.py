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

from .bptt import cached_runner, loss_and_grads
from .cell import SequenceCache, readout_mse, scan
from .inputs import forward_arguments, loss_arguments
from .ops import plain_ops
from .params import flatten, is_traced, tree_map, untraced
from .stack import initial_states, run_layers
from .vjps import as_traced_dict, lstm_sequence, readout_mse_primitive

__all__ = ["METHODS", "check_method", "lstm_forward", "predict", "forecast", "mse",
           "value_and_grad", "forward_cache", "bptt", "FloatOverflowError"]

#: The gradient methods, the default first.
METHODS = ("fast", "bptt", "autograd")


class FloatOverflowError(ValueError, OverflowError):
    """Finite inputs whose result overflows the dtype (float64 above 1.8e308): raised by every
    public function of this module instead of returning inf or NaN, naming what overflowed
    (the gate pre-activations, the predictions, the squared errors, their sum, a gradient)
    and the largest inputs that feed it. A ``ValueError``, and an ``OverflowError``."""


def _quiet():
    """numpy's overflow and invalid-value warnings off inside a public function: a result
    that is not finite is checked for, and named, by :func:`_check_finite`."""
    return onp.errstate(over="ignore", invalid="ignore")


def _finite(*values):
    return all(onp.isfinite(onp.asarray(untraced(v))).all() for v in values)


def _max_abs(value) -> float:
    value = onp.asarray(untraced(value))
    with _quiet():
        return float(onp.max(onp.abs(value))) if value.size else 0.0


def _largest(values: dict) -> str:
    """``|name| up to 1e+300, ...`` for the named arrays (None ones left out)."""
    return ", ".join(f"|{name}| up to {_max_abs(value):.3g}" for name, value in values.items()
                     if value is not None)


def _weights(params, keys):
    """The named parameter arrays of ``keys`` (``Wx``, ...) in every layer and direction."""
    plain = tree_map(untraced, {k: untraced(v) for k, v in untraced(params).items()})
    return {f"params['{name}']": value for name, value in flatten(plain).items()
            if name.rsplit(".", 1)[-1] in keys}


def _check_finite(function, results, params, xs, hs=None, targets=None, weights=None,
                  grads=None):
    """Raise :class:`FloatOverflowError` unless every array of ``results`` is finite. The
    inputs were validated finite, so something overflowed on the way: the first stage that
    did is named -- the LSTM's hidden states ``hs``, the predictions ``hs @ Wy + by``, the
    errors against ``targets``, their squares, their (``weights``-weighted) sum, then the
    gradient ``grads`` -- with the largest inputs that feed it."""
    if _finite(*results):
        return
    dtype = onp.asarray(untraced(untraced(params)["Wx"])).dtype
    limit = f"{float(onp.finfo(dtype).max):.3g}"
    head = f"{function}: finite inputs overflow {dtype} (largest {limit})"
    if hs is None or not _finite(hs):
        raise FloatOverflowError(
            f"{head} in the gate pre-activations x @ Wx + h @ Wh + b ("
            f"{_largest({'xs': xs, **_weights(params, ('Wx', 'Wh', 'b'))})}): scale the inputs "
            "or the weights down")
    if hs is not None and "Wy" in untraced(params):
        plain = onp.asarray(untraced(hs))
        with _quiet():
            ys = plain @ untraced(untraced(params)["Wy"]) + untraced(untraced(params)["by"])
        readout = _largest(_weights(params, ("Wy", "by")))
        if not _finite(ys):
            raise FloatOverflowError(f"{head} in the predictions hs @ Wy + by ({readout}, "
                                     "|hs| <= 1): scale Wy and by down")
        if targets is not None:
            with _quiet():
                err = ys - onp.asarray(untraced(targets))
                square = err * err
            inputs = (f"{readout}, predictions up to {_max_abs(ys):.3g}, "
                      f"{_largest({'targets': targets})}")
            if not _finite(err, square):
                raise FloatOverflowError(
                    f"{head} in the squared errors (predictions - targets)**2 ({inputs}): an "
                    f"error's square must stay below {limit}; scale the targets (and the "
                    "readout) down")
            if grads is None:
                raise FloatOverflowError(
                    f"{head} in the sum of the squared errors ({inputs}"
                    + (f", {_largest({'mask': weights})}" if weights is not None else "")
                    + "): scale the targets down")
    if grads is not None:
        bad = sorted(k for k, v in flatten(tree_map(untraced, grads)).items() if not _finite(v))
        raise FloatOverflowError(
            f"{head} in the gradient ({', '.join(f'grads[{k!r}]' for k in bad[:4])} not "
            f"finite; {_largest({'targets': targets, **_weights(params, ('Wx', 'Wh', 'Wy'))})})"
            ": scale the inputs, targets or weights down")
    raise FloatOverflowError(f"{head} ({_largest({'xs': xs})}): scale the inputs down")


def check_method(method: Any, allowed: tuple = METHODS) -> str:
    """Return ``method`` if it is one of ``allowed``, else raise ``ValueError`` naming it."""
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"method must be one of {', '.join(map(repr, allowed))}, "
                         f"got {method!r}")
    return method


def _runner(traced, method, batch_units):
    """The ``run_direction`` of :func:`lstm_ag.stack.run_layers` that suits: the plain scan
    when nothing is traced, else the whole-sequence primitive (``"fast"``) or the traced step
    loop (``"autograd"``)."""
    if not traced:
        ops = plain_ops(batch_units)
        return lambda w, xs, h0, c0, lengths: scan(w["Wx"], w["Wh"], w["b"], xs, h0, c0, ops,
                                                   lengths)
    if method == "autograd":
        return lambda w, xs, h0, c0, lengths: scan(w["Wx"], w["Wh"], w["b"], xs, h0, c0,
                                                   lengths=lengths)
    return lambda w, xs, h0, c0, lengths: lstm_sequence(as_traced_dict(w), xs, h0, c0, lengths)


def _hidden(params, xs, h0s, c0s, lengths, method, struct):
    """``(hs (T, B, dirs*H), hT, cT)``: the top layer's hidden states and the K final states
    (lists of ``(B, H)``), from the K initial states ``h0s, c0s``; ``struct`` is
    ``structure(params)``, computed once by the validation of the public call."""
    params = as_traced_dict(params)
    traced = is_traced(params) or is_traced(xs) or any(map(is_traced, h0s + c0s))
    B, H = untraced(h0s[0]).shape
    return run_layers(params, xs, h0s, c0s, lengths, _runner(traced, method, B * H), struct)


def _final_state(hT, cT, single):
    """The final state as the public functions return it: ``(B, H)`` each for one layer and
    direction, else ``(K, B, H)`` (PyTorch's layout); without the B axis for one sequence."""
    h, c = (hT[0], cT[0]) if len(hT) == 1 else (np.stack(hT), np.stack(cT))
    return (h[..., 0, :], c[..., 0, :]) if single else (h, c)


def lstm_forward(params: dict, xs: Any, state: Any = None, *, lengths: Any = None,
                 method: str = "fast") -> tuple:
    """Run the LSTM over a sequence.

    - params: dict with ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (a readout is ignored),
      and for more layers or directions ``reverse`` and ``layers`` (:mod:`lstm_ag.params`).
    - xs: ``(T, B, D)`` time-major batch, or ``(T, D)`` / a list of T vectors for one sequence.
    - state: optional ``(h0, c0)``, each ``(B, H)`` (``(H,)`` for one sequence), or
      ``(K, B, H)`` for K = layers * directions > 1 (PyTorch's layout and order: layer 0
      forward, layer 0 reverse, layer 1 forward, ...); zeros if None.
    - lengths: optional ``(B,)`` integers in [1, T], PyTorch's packed-sequence semantics: the
      steps past a sequence's length are padding: its hidden states there are zero, its final
      state is taken at its own length, and the reverse direction starts at its own last step.
    - method: how autograd differentiates it: ``"fast"`` records each layer and direction as
      one primitive whose gradient is the hand BPTT; ``"autograd"`` traces every step.
      Both give the same numbers; without differentiation they are the same code.
    Returns ``(hs, (h, c))``: hs ``(T, B, dirs*H)`` (or ``(T, dirs*H)``; forward direction
    first), and the final state in the layout of ``state``.

    >>> import numpy as np, lstm_ag
    >>> params = lstm_ag.init_params(1, 4)
    >>> hs, (h, c) = lstm_ag.lstm_forward(params, np.zeros((5, 1)))
    >>> hs.shape, h.shape
    ((5, 4), (4,))
    """
    check_method(method, ("fast", "autograd"))
    xs, h0, c0, lengths, single, struct = forward_arguments(params, xs, state, readout=False,
                                                            lengths=lengths)
    with _quiet():
        hs, hT, cT = _hidden(params, xs, *initial_states(h0, c0, params, struct), lengths,
                             method, struct)
    _check_finite("lstm_forward", [hs, *hT, *cT], params, xs, hs=hs)
    return (hs[:, 0] if single else hs), _final_state(hT, cT, single)


def predict(params: dict, xs: Any, state: Any = None, *, lengths: Any = None,
            method: str = "fast", return_state: bool = False) -> Any:
    """Predictions of the linear readout at every step, ``y_t = h_t @ Wy + by``.

    - params: ``Wx, Wh, b`` and the readout ``Wy (dirs*H, O)``, ``by (O,)``.
    - xs, state, lengths, method: as for :func:`lstm_forward` (past a sequence's length its
      hidden states are zero, so its predictions there are ``by``).
    - return_state: also return the final state ``(h, c)``, to continue from it.
    Returns ys ``(T, B, O)``, or ``(T, O)`` for one sequence; with ``return_state``,
    ``(ys, (h, c))`` in the layout of :func:`lstm_forward`.
    """
    check_method(method, ("fast", "autograd"))
    xs, h0, c0, lengths, single, struct = forward_arguments(params, xs, state, readout=True,
                                                            lengths=lengths)
    with _quiet():
        hs, hT, cT = _hidden(params, xs, *initial_states(h0, c0, params, struct), lengths,
                             method, struct)
        ys = hs @ params["Wy"] + params["by"]
    _check_finite("predict", [hs, *hT, *cT, ys], params, xs, hs=hs)
    ys = ys[:, 0] if single else ys
    return (ys, _final_state(hT, cT, single)) if return_state else ys


def forecast(params: dict, xs: Any, horizon: int, state: Any = None, *, lengths: Any = None,
             method: str = "fast") -> Any:
    """Forecast ``horizon`` steps past ``xs``, feeding each prediction back as the next input.

    - params: with a readout whose outputs are the inputs (``O == D``): next-value prediction;
      any number of layers, one direction (a bidirectional model reads the future).
    - xs: the history, ``(T, B, D)`` or ``(T, D)``; state: its initial state, optional;
      lengths: optional ``(B,)``, each history's own length (its forecast starts after it).
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
    xs, h0, c0, lengths, single, struct = forward_arguments(params, xs, state, readout=True,
                                                            lengths=lengths)
    if struct[1] == 2:
        raise ValueError("forecast feeds each prediction forward in time, but params is "
                         "bidirectional: its reverse direction reads the future, which a "
                         "forecast does not have; train a one-direction model to forecast")
    D, O = xs.shape[-1], untraced(untraced(params)["Wy"]).shape[1]
    if O != D:
        raise ValueError(f"forecast feeds each prediction back as the next input, so the "
                         f"readout's outputs must be the inputs: params has O = {O} outputs "
                         f"but xs has D = {D} features")
    with _quiet():
        hs, hT, cT = _hidden(params, xs, *initial_states(h0, c0, params, struct), lengths,
                             method, struct)
    _check_finite("forecast", [hs, *hT, *cT], params, xs, hs=hs)
    ys = []
    for k in range(horizon):
        with _quiet():
            ys.append(hT[-1] @ params["Wy"] + params["by"])  # from the top layer's last state
        _check_finite(f"forecast (step {k + 1} of {horizon})", [ys[-1]], params, xs,
                      hs=hT[-1][None])
        if k + 1 < horizon:
            with _quiet():
                hs, hT, cT = _hidden(params, ys[-1][None], hT, cT, None, method, struct)
            _check_finite(f"forecast (step {k + 2} of {horizon}, fed its prediction)",
                          [hs, *hT, *cT], params, ys[-1][None], hs=hs)
    ys = np.stack(ys)
    return ys[:, 0] if single else ys


def _loss(params, xs, h0, c0, targets, weights, lengths, method, struct, state_out=None,
          hs_out=None):
    """The loss of :func:`mse` on arguments validated by :func:`loss_arguments` (``struct``
    too); the final states (plain arrays) are appended to ``state_out`` when given, the
    hidden states (plain) to ``hs_out``."""
    hs, hT, cT = _hidden(params, xs, *initial_states(h0, c0, params, struct), lengths, method,
                         struct)
    if state_out is not None:
        state_out.append(([untraced(h) for h in hT], [untraced(c) for c in cT]))
    if hs_out is not None:
        hs_out.append(untraced(hs))
    params = as_traced_dict(params)
    traced = any(is_traced(a) for a in (params, hs, targets, weights))
    loss = readout_mse_primitive if method == "fast" and traced else readout_mse
    return loss(params, hs, targets, weights)


#: :func:`_loss` and its gradient with respect to ``params``, built once (building autograd's
#: wrapper on every call cost a measurable part of a tiny step: benchmarks/README.md).
_loss_and_gradient = _autograd_value_and_grad(_loss)


def mse(params: dict, xs: Any, targets: Any, state: Any = None, *, mask: Any = None,
        lengths: Any = None, method: str = "fast") -> Any:
    """Mean squared error of :func:`predict` against ``targets``, over every element.

    - targets: the predictions' shape, ``(T, B, O)`` or ``(T, O)``.
    - mask: optional loss weights per step, ``(T,)`` or ``(T, B)``; the loss is then
      ``sum(mask * err**2) / (sum(mask) * O)`` (for example the last step only).
    - lengths: optional ``(B,)``, as for :func:`lstm_forward`; the steps past each length
      are left out of the loss (their weight is 0).
    - method: as for :func:`lstm_forward`.
    Returns a scalar.
    """
    check_method(method, ("fast", "autograd"))
    arrays, struct = loss_arguments(params, xs, targets, state, mask, lengths)
    out: list = []
    with _quiet():
        loss = _loss(params, *arrays, method, struct, hs_out=out)
    _check_finite("mse", [loss], params, arrays[0], hs=out[0], targets=arrays[3],
                  weights=arrays[4])
    return loss


def value_and_grad(params: dict, xs: Any, targets: Any, state: Any = None, *,
                   method: str = "fast", mask: Any = None, lengths: Any = None,
                   return_state: bool = False) -> tuple:
    """The MSE of the readout at every step and its gradient with respect to ``params``.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)`` (and
      more layers or directions: :mod:`lstm_ag.params`).
    - xs: ``(T, B, D)`` or ``(T, D)``; targets: ``(T, B, O)`` or ``(T, O)``.
    - state: optional initial ``(h0, c0)``; mask: optional loss weights ``(T,)`` or ``(T, B)``;
      lengths: optional ``(B,)`` (as for :func:`mse`).
    - method: ``"fast"`` (autograd through one primitive per layer and direction, whose VJP is
      the hand BPTT), ``"bptt"`` (the hand-written backward alone) or ``"autograd"`` (autograd
      traces the Python forward step by step).
    - return_state: also return the final state (plain arrays, as :func:`lstm_forward` lays
      it out), to carry into the next chunk of a long sequence (truncated BPTT).
    Returns ``(loss, grads)``: a numpy scalar and a dict with the keys and shapes of
    ``params``, both in the parameters' dtype; with ``return_state``,
    ``(loss, grads, (h, c))``.

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
    arrays, struct = loss_arguments(params, xs, targets, state, mask, lengths)  # validated once
    single = onp.ndim(untraced(xs)) < 3           # (T, D), a list of vectors, or (T,)
    with _quiet():
        if method == "bptt":
            loss, grads, (hT, cT) = loss_and_grads(params, *arrays, with_state=True,
                                                   struct=struct)
        else:
            out: list = []
            loss, grads = _loss_and_gradient(params, *arrays, method, struct, out)
            hT, cT = out[0]
    if not _finite(loss, *flatten(tree_map(untraced, grads)).values(), *hT, *cT):
        with _quiet():                   # which stage: the forward again, on plain arrays
            hs = _hidden(tree_map(untraced, untraced(params)), untraced(arrays[0]),
                         *initial_states(untraced(arrays[1]), untraced(arrays[2]), None,
                                         struct),
                         arrays[5], "fast", struct)[0]
        _check_finite("value_and_grad", [loss], params, arrays[0], hs=hs, targets=arrays[3],
                      weights=arrays[4])
        _check_finite("value_and_grad", [*hT, *cT], params, arrays[0], hs=hs)
        _check_finite("value_and_grad", [*flatten(tree_map(untraced, grads)).values()],
                      params, arrays[0], hs=hs, targets=arrays[3], grads=grads)
    return (loss, grads, _final_state(hT, cT, single)) if return_state else (loss, grads)


def forward_cache(params: dict, xs: Any, state: Any = None, *, lengths: Any = None,
                  layer: int = -1, direction: str = "forward") -> SequenceCache:
    """Run the forward on plain arrays and keep every step's activations of one layer and
    direction.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (a readout is ignored), or a stacked
      or bidirectional model.
    - xs: ``(T, B, D)``, or ``(T, D)`` for one sequence; state, lengths: as for
      :func:`lstm_forward`.
    - layer: which layer's activations (default -1, the top one; 0 is the bottom one);
      direction: ``"forward"`` or ``"reverse"`` (whose steps run in reversed time: step t of
      its cache read input ``lengths[b] - 1 - t`` of sequence b).
    Returns a :class:`lstm_ag.cell.SequenceCache` (always batched: one sequence has B = 1),
    whose named views are ``h``, ``c`` ``(T + 1, B, H)`` (row 0 the initial state), ``hs``
    ``(T, B, H)`` and the gates ``i, f, g, o`` and ``tanh_c`` ``(T, B, H)``.

    >>> import numpy as np, lstm_ag
    >>> cache = lstm_ag.forward_cache(lstm_ag.init_params(2, 3), np.ones((4, 2)))
    >>> cache.h.shape, cache.f.shape
    ((5, 1, 3), (4, 1, 3))
    """
    xs, h0, c0, lengths, _, struct = forward_arguments(params, xs, state, readout=False,
                                                       lengths=lengths)
    num_layers, dirs = struct
    if isinstance(layer, bool) or not isinstance(layer, (int, onp.integer)) \
            or not -num_layers <= layer < num_layers:
        raise ValueError(f"layer must be an integer in [{-num_layers}, {num_layers - 1}] "
                         f"(params has {num_layers} layer{'s' if num_layers > 1 else ''}), "
                         f"got {layer!r}")
    if direction not in ("forward", "reverse") or (direction == "reverse" and dirs == 1):
        allowed = "'forward' or 'reverse'" if dirs == 2 else "'forward' (one direction)"
        raise ValueError(f"direction must be {allowed}, got {direction!r}")
    plain = tree_map(untraced, {k: untraced(v) for k, v in untraced(params).items()})
    caches: list = []
    run_layers(plain, untraced(xs), *initial_states(untraced(h0), untraced(c0), plain, struct),
               lengths, cached_runner(caches), struct)
    return caches[(layer % num_layers) * dirs + (direction == "reverse")]


def bptt(params: dict, xs: Any, targets: Any, state: Any = None, *,
         mask: Any = None, lengths: Any = None) -> tuple[Any, dict]:
    """Loss and parameter gradients of :func:`lstm_ag.mse`, by the hand-written backward.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)`` (and
      more layers or directions: :mod:`lstm_ag.params`).
    - xs ``(T, B, D)`` or ``(T, D)``; targets ``(T, B, O)`` or ``(T, O)``; state, mask,
      lengths: as for :func:`lstm_ag.mse` (the loss is the readout's MSE at every step).
    Returns ``(loss, grads)``, grads a dict with the keys and shapes of ``params``.
    """
    arrays, struct = loss_arguments(params, xs, targets, state, mask, lengths)
    return loss_and_grads(params, *arrays, struct=struct)
