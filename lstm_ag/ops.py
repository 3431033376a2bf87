"""Elementwise operations that autograd needs help with.

``sigmoid`` is :func:`scipy.special.expit` wrapped as one autograd primitive with both a
reverse-mode rule (VJP) and a forward-mode rule (JVP). Why not the alternatives:

* autograd's own ``autograd.scipy.special.expit`` has a VJP but no JVP, so forward mode fails;
* ``1 / (1 + exp(-x))`` overflows in ``exp`` at x = -1000 (a warning, and NaN gradients);
* ``0.5 * (tanh(x) + 1)`` is sigma(2x), not sigma(x): a known trap.

Both derivative rules use the stored output, sigma'(x) = s * (1 - s) with s = sigma(x), and are
written with autograd's numpy so that they can themselves be differentiated (second order).
"""
from typing import Callable, NamedTuple

import autograd.numpy as anp
import numpy as onp
from autograd.extend import defjvp, defvjp, primitive
from scipy.special import expit

__all__ = ["sigmoid", "Elementwise", "TRACEABLE", "PLAIN"]


@primitive
def sigmoid(x):
    """Logistic sigmoid 1 / (1 + exp(-x)), elementwise and overflow-free.

    - x: array of any shape (float32 stays float32).
    Returns an array of the same shape and dtype, in [0, 1].
    """
    return expit(x)


def _sigmoid_derivative(ans):
    return ans * (1 - ans)


defvjp(sigmoid, lambda ans, x: lambda g: g * _sigmoid_derivative(ans))
defjvp(sigmoid, lambda g, ans, x: g * _sigmoid_derivative(ans))


class Elementwise(NamedTuple):
    """The two nonlinearities of the LSTM step, as a pair the step is given."""
    sigmoid: Callable
    tanh: Callable


#: Works on autograd boxes and plain arrays alike (every call goes through autograd's wrapper).
TRACEABLE = Elementwise(sigmoid, anp.tanh)
#: The same functions without autograd's wrapper (about 0.6 us a call saved), for loops over
#: plain arrays: the hand BPTT's forward and a forward nobody differentiates. Same numbers.
PLAIN = Elementwise(expit, onp.tanh)
