"""The fast path: two autograd primitives, each beside the gradient rule that runs the hand BPTT.

Autograd, tracing the Python forward, records a dozen operations per time step and pays for
each of them. Here two pieces of the model are single autograd primitives:

* :func:`lstm_sequence`, the whole recurrence over ``(params, xs, h0, c0)``: its forward is
  :meth:`lstm_ag.cell.SequenceCache.run` (the one :func:`lstm_ag.cell.lstm_step` on plain
  arrays); its reverse-mode rule is :func:`lstm_ag.bptt.lstm_backward`, run once for all the
  arguments being differentiated.
* :func:`readout_mse_primitive`, the readout and its MSE (:func:`lstm_ag.cell.readout_mse`),
  whose rule is :func:`lstm_ag.bptt.readout_mse_backward`.

:mod:`lstm_ag.model` calls them whenever autograd differentiates (``method="fast"``, the
default), so ``autograd.grad`` of any loss built on ``lstm_forward``, ``predict`` or ``mse``
gets the hand BPTT. Forward mode (``make_jvp``), higher orders (``grad`` of ``grad``) and
gradients with respect to the targets or the mask fall back to autograd tracing the same Python
functions (:func:`lstm_ag.cell.scan`, :func:`lstm_ag.cell.readout_mse`): same numbers, traced
speed.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from autograd import make_jvp, make_vjp
from autograd.builtins import dict as traced_dict
from autograd.builtins import tuple as traced_tuple
from autograd.extend import defjvp_argnums, defvjp_argnums, primitive

from .bptt import lstm_backward, readout_mse_backward
from .cell import SequenceCache, readout_mse, scan
from .params import is_traced, tree_map

__all__ = ["lstm_sequence", "readout_mse_primitive", "as_traced_dict"]


def _partial(fun, argnums, args):
    """``fun`` as a function of the arguments at ``argnums`` only, the others held fixed;
    and those arguments."""
    def f(chosen):
        full = list(args)
        for k, value in zip(argnums, chosen, strict=True):
            full[k] = value
        out = fun(*full)
        return traced_tuple(out) if isinstance(out, tuple) else out   # traceable tuples
    return f, tuple(args[k] for k in argnums)


def _fast_rules(prim, traced_fun, hand_vjp, hand_argnums):
    """Register on ``prim`` a VJP from ``hand_vjp(argnums, ans, args)`` -> ``vjp(g)``, which
    returns the gradients of the arguments at ``argnums`` (a subset of ``hand_argnums``);
    other requests, forward mode and higher orders trace ``traced_fun`` instead."""
    def vjp_maker(argnums, ans, args, kwargs):
        if (is_traced(ans) or any(is_traced(a) for a in args)
                or not set(argnums) <= set(hand_argnums)):
            # Differentiating a derivative (the hand backward uses in-place numpy and
            # cannot be traced), or an argument it does not cover: trace the Python forward.
            f, chosen = _partial(traced_fun, argnums, args)
            return make_vjp(f)(chosen)[0]
        return hand_vjp(argnums, ans, args)       # the hand backward, once for all of them

    def jvp_maker(argnums, tangents, ans, args, kwargs):
        f, chosen = _partial(traced_fun, argnums, args)
        return make_jvp(f)(chosen)(tuple(tangents))[1]

    defvjp_argnums(prim, vjp_maker)
    defjvp_argnums(prim, jvp_maker)


def _dict_grad(params, grads):
    """A gradient for the whole params dict: ``grads`` where given, zeros elsewhere (also for
    nested layers and directions, which another primitive differentiates)."""
    return {k: grads[k] if k in grads else tree_map(lambda a: np.zeros(a.shape, a.dtype), v)
            for k, v in params.items()}


def as_traced_dict(params: dict) -> dict:
    """``params`` as autograd's primitives see it: a plain dict that holds traced arrays (say,
    ``{"Wx": box, ...}`` built inside a user's loss) is recorded as one traced dict, so that
    :func:`lstm_sequence` receives the gradient path; otherwise ``params`` itself."""
    if is_traced(params) or not any(is_traced(v) for v in params.values()):
        return params
    return traced_dict(params)


# --- the whole recurrence ---------------------------------------------------------------------

@primitive
def lstm_sequence(params: dict, xs: Any, h0: Any, c0: Any, lengths: Any = None) -> tuple:
    """One direction of one layer over a whole sequence, as one autograd primitive:
    ``(hs (T, B, H), h_T (B, H), c_T (B, H))``, as :func:`lstm_ag.cell.scan` returns them.

    - params: a dict with ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` (other entries get a
      zero gradient); xs ``(T, B, D)``; h0, c0 ``(B, H)``; lengths ``(B,)`` or None (never
      differentiated).
    It takes the dict whole (autograd differentiates dicts natively) so that differentiating
    a params dict costs no per-entry bookkeeping. ``hs`` is ``cache.hs``, a view into the
    cache's buffer: :meth:`SequenceCache.of_hidden_states` finds the cache from it.
    """
    cache = SequenceCache.run(params["Wx"], params["Wh"], params["b"], xs, h0, c0)
    return cache.outputs(lengths)


_SEQUENCE_ARGS = ("params", "xs", "h0", "c0")


def _sequence_vjp(argnums, ans, args):
    hs = ans[0]
    params, xs, _, _, *rest = args
    lengths = rest[0] if rest else None
    cache = SequenceCache.of_hidden_states(hs, xs, params["Wx"], params["Wh"])

    def vjp(g):
        dhs, dh_last, dc_last = g
        grads = lstm_backward(dhs, cache, dh_last, dc_last, inputs=1 in argnums,
                              lengths=lengths)
        grads["params"] = _dict_grad(params, grads)
        return tuple(grads[_SEQUENCE_ARGS[k]] for k in argnums)
    return vjp


def _sequence_traced(params, xs, h0, c0, lengths=None):
    return scan(params["Wx"], params["Wh"], params["b"], xs, h0, c0, lengths=lengths)


_fast_rules(lstm_sequence, _sequence_traced, _sequence_vjp, hand_argnums=(0, 1, 2, 3))


# --- the readout and its MSE ------------------------------------------------------------------

#: :func:`lstm_ag.cell.readout_mse` as one autograd primitive.
readout_mse_primitive = primitive(readout_mse)


def _readout_vjp(argnums, ans, args):
    def vjp(g):
        params, hs, targets, weights = args
        _, dhs, dWy, dby = readout_mse_backward(hs, params["Wy"], params["by"], targets,
                                                weights)
        if g != 1:                       # autograd's cotangent of the loss: 1.0 for grad
            dWy, dby, dhs = g * dWy, g * dby, g * dhs
        grads = (_dict_grad(params, {"Wy": dWy, "by": dby}), dhs)
        return tuple(grads[k] for k in argnums)
    return vjp


_fast_rules(readout_mse_primitive, readout_mse, _readout_vjp, hand_argnums=(0, 1))
