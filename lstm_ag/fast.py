"""Gradient rules of the whole-sequence primitive :func:`lstm_ag.lstm.lstm_sequence`.

Autograd, tracing the Python forward, records a dozen operations per time step and pays for
each of them. Here the whole sequence is one primitive: its forward runs the one
:func:`lstm_ag.lstm.lstm_step` on plain arrays (:func:`lstm_ag.lstm.scan_with_cache`), and its
reverse-mode rule is the hand-written :func:`lstm_ag.bptt.lstm_backward`, run once for all the
arguments being differentiated. ``lstm_forward``, ``predict`` and ``mse`` go through it
whenever autograd differentiates them, so ``autograd.grad`` of any loss built on them gets
the hand BPTT (first order, reverse mode).

Forward mode (``make_jvp``) and higher orders (``grad`` of ``grad``) fall back to autograd
tracing the step loop (:func:`lstm_ag.lstm.scan`): same numbers, traced speed.

This module registers rules and exports nothing else; ``import lstm_ag`` loads it.
"""
from autograd import make_jvp, make_vjp
from autograd.builtins import tuple as traced_tuple
from autograd.extend import defjvp_argnums, defvjp_argnums

from .bptt import lstm_backward
from .lstm import SequenceCache, lstm_sequence, scan
from .params import is_traced

__all__ = []

_ARGS = ("Wx", "Wh", "b", "xs", "h0", "c0")


def _traced(argnums, args):
    """scan as a function of the arguments at ``argnums`` only, the others held fixed."""
    def f(chosen):
        full = list(args)
        for k, value in zip(argnums, chosen):
            full[k] = value
        return traced_tuple(scan(*full))      # a tuple autograd can trace through
    return f, tuple(args[k] for k in argnums)


def _sequence_vjp(argnums, ans, args, kwargs):
    hs, _ = ans
    if is_traced(hs) or any(is_traced(a) for a in args):
        # Differentiating a derivative: let autograd trace the step loop, which it can
        # differentiate again (the hand BPTT uses in-place numpy and cannot be traced).
        f, chosen = _traced(argnums, args)
        vjp, _ = make_vjp(f)(chosen)
        return vjp
    Wx, Wh, _, xs, _, _ = args
    cache = SequenceCache(xs, Wx, Wh, hs.base)     # hs is a view into the cache's buffer

    def vjp(g):
        dhs, dc_last = g
        grads = lstm_backward(dhs, cache, dc_last=dc_last)
        return tuple(grads[_ARGS[k]] for k in argnums)
    return vjp


def _sequence_jvp(argnums, tangents, ans, args, kwargs):
    f, chosen = _traced(argnums, args)
    return make_jvp(f)(chosen)(tuple(tangents))[1]


defvjp_argnums(lstm_sequence, _sequence_vjp)
defjvp_argnums(lstm_sequence, _sequence_jvp)
