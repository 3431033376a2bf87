"""lstm_ag: an LSTM written once in autograd.numpy, with a verified hand-written BPTT.

The public names::

    init_params, param_shapes            parameters (a dict of arrays)
    lstm_step, lstm_forward, predict, mse    the one forward
    value_and_grad                       gradients: method "fast", "bptt" or "autograd"
    check_gradients                      a backward vs autograd and finite differences
    save, load                           checkpoints (.npz, no pickle, atomic)
    layouts                              notebook, PyTorch and Keras weight layouts
"""
from . import layouts
from .checkpoint import CheckpointError, atomic_write, load, save
from .grad import METHODS, value_and_grad
from .lstm import GATES, forward_cache, lstm_forward, lstm_step, mse, predict
from .ops import sigmoid
from .params import check_params, init_params, param_shapes

__all__ = ["GATES", "init_params", "param_shapes", "lstm_step", "lstm_forward", "predict",
           "mse", "value_and_grad", "METHODS", "check_gradients", "sigmoid", "layouts",
           "save", "load", "CheckpointError", "atomic_write", "check_params", "forward_cache"]
__version__ = "0.1.0"


def __getattr__(name):
    # check_gradients is imported on first use, so that `python -m lstm_ag.gradcheck` runs
    # its module once (importing it here too would make runpy warn about a double import).
    if name == "check_gradients":
        from .gradcheck import check_gradients
        return check_gradients
    raise AttributeError(f"module 'lstm_ag' has no attribute {name!r}")
