"""Gradient rules that make autograd run the hand-written backward.

Autograd, tracing the Python forward, records a dozen operations per time step and pays for
each of them. Here two pieces of the model are single autograd primitives, defined in
:mod:`lstm_ag.lstm` and given their gradients here:

* :func:`lstm_ag.lstm.lstm_sequence`, the whole recurrence over ``(params, xs, h0, c0)``:
  its forward runs the one :func:`lstm_ag.lstm.lstm_step` on plain arrays
  (:func:`lstm_ag.lstm.scan_with_cache`); its reverse-mode rule is
  :func:`lstm_ag.bptt.lstm_backward`, run once for all the arguments being differentiated.
* :data:`lstm_ag.lstm.readout_mse_primitive`, the readout and its MSE, whose rule is
  :func:`lstm_ag.bptt.readout_mse_backward`.

``lstm_forward``, ``predict`` and ``mse`` go through them whenever autograd differentiates
them (``method="fast"``, the default), so ``autograd.grad`` of any loss built on them gets the
hand BPTT. Forward mode (``make_jvp``), higher orders (``grad`` of ``grad``) and gradients with
respect to the targets or the mask fall back to autograd tracing the same Python functions
(:func:`lstm_ag.lstm.scan`, :func:`lstm_ag.lstm.readout_mse`): same numbers, traced speed.

This module registers rules and exports nothing; ``import lstm_ag`` loads it.
"""
import numpy as np
from autograd import make_jvp, make_vjp
from autograd.builtins import tuple as traced_tuple
from autograd.extend import defjvp_argnums, defvjp_argnums

from .bptt import lstm_backward, readout_mse_backward
from .lstm import SequenceCache, lstm_sequence, readout_mse, readout_mse_primitive, scan
from .params import is_traced

__all__ = []


def _partial(fun, argnums, args):
    """``fun`` as a function of the arguments at ``argnums`` only, the others held fixed;
    and those arguments."""
    def f(chosen):
        full = list(args)
        for k, value in zip(argnums, chosen):
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
    """A gradient for the whole params dict: ``grads`` where given, zeros elsewhere."""
    return {k: grads[k] if k in grads else np.zeros_like(v) for k, v in params.items()}


def _sequence_traced(params, xs, h0, c0):
    return scan(params["Wx"], params["Wh"], params["b"], xs, h0, c0)


def _sequence_vjp(argnums, ans, args):
    hs, _ = ans
    params, xs, _, _ = args
    cache = SequenceCache(xs, params["Wx"], params["Wh"], hs.base)   # hs views the cache

    def vjp(g):
        dhs, dc_last = g
        grads = lstm_backward(dhs, cache, dc_last=dc_last, inputs=1 in argnums)
        grads["params"] = _dict_grad(params, grads)
        return tuple(grads[_SEQUENCE_ARGS[k]] for k in argnums)
    return vjp


def _readout_vjp(argnums, ans, args):
    def vjp(g):
        params, hs, targets, weights = args
        _, dhs, dWy, dby = readout_mse_backward(hs, params["Wy"], params["by"], targets,
                                                weights)
        grads = (_dict_grad(params, {"Wy": g * dWy, "by": g * dby}), g * dhs)
        return tuple(grads[k] for k in argnums)
    return vjp


_SEQUENCE_ARGS = ("params", "xs", "h0", "c0")
_fast_rules(lstm_sequence, _sequence_traced, _sequence_vjp, (0, 1, 2, 3))
_fast_rules(readout_mse_primitive, readout_mse, _readout_vjp, (0, 1))
