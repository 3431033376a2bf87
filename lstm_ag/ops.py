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

The sigmoid's values: :func:`scipy.special.expit` is exact but a scalar loop (about 2 ns an
element, six times numpy's vectorised tanh), so from :data:`VECTOR_SIZE` elements on the
sigmoid is ``where(x >= 0, 1, e) / (1 + e)`` with ``e = exp(-|x|)``, in numpy's vectorised
``exp`` and ``divide``: no overflow at any input (``e <= 1``), no cancellation (the negative
half divides a small number by a number near 1). Measured over the whole float range against
expit computed in float64 (``tests/test_forward.py`` holds the bounds): at most 2.0 eps
relative in float64 and 2.3 eps in float32, 0.75 eps absolute in both (eps of the dtype;
expit itself is 1.2 eps off in float32). Smaller arrays (one sequence, a few units) keep expit,
which costs one call where the vectorised form costs seven.
``0.5 * tanh(x / 2) + 0.5`` would be faster still but loses all relative accuracy below
x = -30 (float64) or -10 (float32).

The rules are written with autograd's numpy, so they can themselves be differentiated
(second order). :data:`TRACEABLE` is the pair for code autograd may trace; :data:`PLAIN` the
same functions without autograd's wrapper, for loops over plain arrays.
"""
from collections.abc import Callable
from typing import Any, NamedTuple

import autograd.numpy  # noqa: F401  (registers autograd's array boxes, which the rules use)
import numpy as onp
from autograd.extend import defjvp, defvjp, primitive
from scipy.special import expit

__all__ = ["sigmoid", "tanh", "sigmoid_values", "Elementwise", "TRACEABLE", "PLAIN",
           "PLAIN_SMALL", "plain_ops", "VECTOR_SIZE"]

#: From this many elements on, the sigmoid's values come from numpy's vectorised exp.
VECTOR_SIZE = 512


def sigmoid_values(x: Any) -> Any:
    """The logistic sigmoid 1 / (1 + exp(-x)) of a plain array: expit below
    :data:`VECTOR_SIZE` elements, the vectorised exp form from there on (module docstring).

    - x: array of any shape (float32 stays float32).
    Returns a new array of the same shape and dtype, in [0, 1].
    """
    x = onp.asarray(x)
    if x.size < VECTOR_SIZE or x.dtype.kind != "f":
        return expit(x)
    e = onp.abs(x)
    onp.negative(e, out=e)
    with onp.errstate(under="ignore"):
        onp.exp(e, out=e)                       # e = exp(-|x|), in (0, 1]
    denominator = e + 1
    onp.copyto(e, 1, where=x >= 0)             # the numerator: 1, or e for x < 0
    onp.divide(e, denominator, out=e)
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
    """The two nonlinearities of the LSTM step, as a pair the step is given."""
    sigmoid: Callable
    tanh: Callable


#: Works on autograd boxes and plain arrays alike (every call goes through autograd's wrapper).
TRACEABLE = Elementwise(sigmoid, tanh)
#: The same functions without autograd's wrapper (about 0.6 us a call saved), for loops over
#: plain arrays: the hand BPTT's forward and a forward nobody differentiates. Same numbers.
PLAIN = Elementwise(sigmoid_values, onp.tanh)
#: :data:`PLAIN` for small gates (fewer than :data:`VECTOR_SIZE` elements): expit itself, with
#: no Python call in between (a loop over one sequence calls it three times a step).
PLAIN_SMALL = Elementwise(expit, onp.tanh)


def plain_ops(gate_size: int) -> Elementwise:
    """The plain pair for a loop whose gates have ``gate_size`` elements (B * H): the choice
    :func:`sigmoid_values` makes per call, made once per loop. Same numbers."""
    return PLAIN_SMALL if gate_size < VECTOR_SIZE else PLAIN
