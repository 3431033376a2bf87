"""One entry point to the loss and its gradients, by any of the library's methods."""
from autograd import value_and_grad as _autograd_value_and_grad

from . import fast  # noqa: F401  (registers the hand-written gradients of the fast path)
from .bptt import bptt
from .lstm import loss_inputs, mse_of

__all__ = ["METHODS", "value_and_grad"]

#: The gradient methods, the default first.
METHODS = ("fast", "bptt", "autograd")


def value_and_grad(params, xs, targets, state=None, *, method="fast", mask=None):
    """The MSE of the readout at every step and its gradient with respect to ``params``.

    - params: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)``.
    - xs: ``(T, B, D)`` or ``(T, D)``; targets: ``(T, B, O)`` or ``(T, O)``.
    - state: optional initial ``(h0, c0)``; mask: optional loss weights ``(T,)`` or ``(T, B)``.
    - method: ``"fast"`` (autograd through a whole-sequence primitive whose VJP is the hand
      BPTT), ``"bptt"`` (the hand-written backward alone) or ``"autograd"`` (autograd traces
      the Python forward step by step).
    Returns ``(loss, grads)``: a numpy scalar and a dict with the keys and shapes of
    ``params``, both in the parameters' dtype.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if method == "bptt":
        return bptt(params, xs, targets, state, mask=mask)
    # Validate once, outside the trace; autograd then records only the loss itself.
    arrays = loss_inputs(params, xs, targets, state, mask)
    return _autograd_value_and_grad(mse_of)(params, *arrays, method=method)
