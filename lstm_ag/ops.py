"""The two nonlinearities of the LSTM, as autograd primitives whose derivatives use their outputs.

``sigmoid`` and ``tanh`` (:func:`numpy.tanh`) are each one autograd primitive with a
reverse-mode rule (VJP) and a forward-mode rule (JVP), both written from the stored output
``ans`` (as CS231n's backward does)::

    sigmoid'(x) = ans * (1 - ans)        tanh'(x) = 1 - ans**2

Why not the alternatives:

* autograd's own ``tanh`` VJP is ``g / cosh(x)**2``: for |x| > 710 ``cosh`` overflows, which
  warns (an error under ``filterwarnings = error``) although the derivative is simply 0;
* autograd's ``autograd.scipy.special.expit`` has a VJP but no JVP, so forward mode fails;
* ``1 / (1 + exp(-x))`` overflows in ``exp`` at x = -1000 (a warning, and NaN gradients);
* ``0.5 * (tanh(x) + 1)`` is sigma(2x), not sigma(x): a known trap.

The sigmoid's values: :func:`scipy.special.expit` is exact but a scalar loop, so from
:data:`VECTOR_SIZE` elements on the sigmoid is ``1 / (1 + exp(-x))`` in numpy's vectorised
ufuncs, with ``-x`` first capped where ``exp`` would overflow (709 in float64, 88 in float32;
past them the value is below the smallest normal number): five calls instead of one, but
vectorised, and faster than expit on large gates (the timings: ``benchmarks/README.md``,
"Figures behind the code's choices"; ``tests/test_forward.py`` holds the accuracy). Against
expit computed in float64, over the whole float range where the value is a normal number: at
most 2.05 eps relative in float32, and in float64 0 where numpy's exp is the C library's
(numpy's vectorised exp is within 1 ulp), 0.75 eps absolute everywhere. Smaller arrays keep
expit: one call, where numpy's per-call cost outweighs its speed.
``0.5 * tanh(x / 2) + 0.5`` is not used: it loses all relative accuracy below x = -30
(float64) or -10 (float32), and numpy's tanh is no faster than expit.

The rules are written with autograd's numpy, so they can themselves be differentiated
(second order). :data:`TRACEABLE` holds the step's elementwise functions for code autograd may
trace; :data:`PLAIN` the same functions without autograd's wrapper, for loops over plain
arrays, where they can also write into a given array (``out``) instead of a new one.
"""
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import autograd.numpy  # noqa: F401  (registers autograd's array boxes, which the rules use)
import numpy as onp
from autograd.extend import defjvp, defvjp, primitive
from scipy.special import expit

__all__ = ["sigmoid", "tanh", "sigmoid_values", "Elementwise", "TRACEABLE", "PLAIN",
           "PLAIN_SMALL", "plain_ops", "VECTOR_SIZE"]

#: From this many elements on, the sigmoid's values come from numpy's vectorised exp
#: (between the sizes where expit and the exp form were measured to win: benchmarks/README.md).
VECTOR_SIZE = 4096
#: Where exp(-x) would overflow, by dtype: -x is capped there (the sigmoid is then below the
#: smallest normal number, and 1 / (1 + exp(cap)) is as close to 0 as it needs to be).
_EXP_CAP = {onp.dtype(onp.float64): 709.0, onp.dtype(onp.float32): 88.0}


def sigmoid_values(x: Any, out: Any = None) -> Any:
    """The logistic sigmoid 1 / (1 + exp(-x)) of a plain array: expit below
    :data:`VECTOR_SIZE` elements, numpy's vectorised exp from there on (module docstring).

    - x: array of any shape (float32 stays float32).
    - out: None, or an array of x's shape and dtype to write the result into.
    Returns a new array (or ``out``) of the same shape and dtype, in [0, 1].
    """
    x = onp.asarray(x)
    cap = _EXP_CAP.get(x.dtype)
    if x.size < VECTOR_SIZE or cap is None:
        return expit(x, out)
    e = onp.negative(x, out)
    onp.minimum(e, cap, out=e)
    onp.exp(e, out=e)                          # exp(-x), finite
    e += 1
    onp.reciprocal(e, out=e)
    return e


@primitive
def sigmoid(x: Any) -> Any:
    """Logistic sigmoid 1 / (1 + exp(-x)), elementwise and overflow-free.

    - x: array of any shape (float32 stays float32).
    Returns an array of the same shape and dtype, in [0, 1].
    """
    return sigmoid_values(x)


@primitive
def tanh(x: Any) -> Any:
    """Hyperbolic tangent, elementwise; its derivative is taken from the output, 1 - tanh**2.

    - x: array of any shape (float32 stays float32).
    Returns an array of the same shape and dtype, in [-1, 1].
    """
    return onp.tanh(x)


def _sigmoid_derivative(ans):
    return ans * (1 - ans)


def _tanh_derivative(ans):
    return 1 - ans * ans


defvjp(sigmoid, lambda ans, x: lambda g: g * _sigmoid_derivative(ans))
defjvp(sigmoid, lambda g, ans, x: g * _sigmoid_derivative(ans))
defvjp(tanh, lambda ans, x: lambda g: g * _tanh_derivative(ans))
defjvp(tanh, lambda g, ans, x: g * _tanh_derivative(ans))


class Elementwise(NamedTuple):
    """The elementwise functions of the LSTM step, as a set the step is given. Each takes its
    operands, then ``out``: None for a new array, or (plain functions only) an array of the
    result's shape and dtype to write it into, as numpy's ufuncs do."""
    sigmoid: Callable
    tanh: Callable
    multiply: Callable
    add: Callable


_NEW_ONLY = "the traceable functions make new arrays (autograd's values are never written into)"


def _traceable_unary(fun):
    def call(x, out=None):
        if out is not None:
            raise ValueError(_NEW_ONLY)
        return fun(x)
    call.__name__ = call.__qualname__ = fun.__name__
    return call


def _traceable_binary(fun):
    def call(a, b, out=None):
        if out is not None:
            raise ValueError(_NEW_ONLY)
        return fun(a, b)
    call.__name__ = call.__qualname__ = fun.__name__
    return call


#: Works on autograd boxes and plain arrays alike (every call goes through autograd's wrapper).
TRACEABLE = Elementwise(_traceable_unary(sigmoid), _traceable_unary(tanh),
                        _traceable_binary(operator.mul), _traceable_binary(operator.add))
#: The same functions without autograd's wrapper (a Python call saved each), for loops over
#: plain arrays: the hand BPTT's forward and a forward nobody differentiates. Same numbers;
#: ``out`` may name an array to write into (the cached forward writes into its cache).
PLAIN = Elementwise(sigmoid_values, onp.tanh, onp.multiply, onp.add)
#: :data:`PLAIN` for small gates (fewer than :data:`VECTOR_SIZE` elements): expit itself, with
#: no Python call in between (a loop over one sequence calls it three times a step).
PLAIN_SMALL = Elementwise(expit, onp.tanh, onp.multiply, onp.add)


def plain_ops(gate_size: int) -> Elementwise:
    """The plain pair for a loop whose gates have ``gate_size`` elements (B * H): the choice
    :func:`sigmoid_values` makes per call, made once per loop. Same numbers."""
    return PLAIN_SMALL if gate_size < VECTOR_SIZE else PLAIN
