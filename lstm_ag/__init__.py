"""lstm_ag: an LSTM written once in autograd.numpy, with a verified hand-written BPTT.

The public names::

    init_params, param_shapes, check_params, GATES, split_gates    parameters (a dict of arrays)
    structure, flatten, unflatten, tree_map   layers and directions; every array by name
    lstm_step, lstm_forward, predict, forecast, mse, forward_cache  the one forward
    value_and_grad, METHODS               gradients: method "fast", "bptt" or "autograd"
    FloatOverflowError                    finite inputs whose result overflows (a ValueError)
    check_gradients, check_step, GradientReport   your backward vs autograd and finite
                                          differences, with a diagnosis
    save, load, CheckpointError, atomic_write    checkpoints (.npz, no pickle, atomic)
    layouts                               notebook, PyTorch and Keras weight layouts
    sigmoid, tanh                         the nonlinearities, as autograd primitives

The modules, each one job, importing one way (a module imports only those above it)::

    ops, params   the nonlinearities; parameter creation, shapes, gate order, validation
    inputs        validation of sequences, states, targets and masks
    cell          THE equations: lstm_step, the traced scan, the cached scan (SequenceCache)
    stack         layers, directions and lengths: the one composition of the one scan
    bptt          the hand-written backward: pure mathematics on arrays
    vjps          the fast path: two autograd primitives, each beside its gradient rule
    model         lstm_forward, predict, mse, value_and_grad: validate once, then dispatch
    gradcheck     the checker (a package; its command line is gradcheck/__main__.py)
    layouts       other weight layouts
    atomic        the atomic file writer (imports nothing of lstm_ag)
    npz_reader    the hardened reader of .npz archives (imports nothing of lstm_ag)
    checkpoint    the checkpoint format: save and load (through npz_reader, atomic)
"""
from . import layouts
from .atomic import atomic_write
from .cell import lstm_step
from .checkpoint import CheckpointError, load, save
from .gradcheck import GradientReport, check_gradients, check_step
from .model import (
    METHODS,
    FloatOverflowError,
    forecast,
    forward_cache,
    lstm_forward,
    mse,
    predict,
    value_and_grad,
)
from .ops import sigmoid, tanh
from .params import (
    GATES,
    check_params,
    flatten,
    init_params,
    param_shapes,
    split_gates,
    structure,
    tree_map,
    unflatten,
)

__all__ = [
    "GATES", "init_params", "param_shapes", "check_params", "split_gates",
    "structure", "flatten", "unflatten", "tree_map",
    "lstm_step", "lstm_forward", "predict", "forecast", "mse", "forward_cache",
    "value_and_grad", "METHODS", "FloatOverflowError",
    "check_gradients", "check_step", "GradientReport",
    "sigmoid", "tanh", "layouts", "save", "load", "CheckpointError", "atomic_write",
]
__version__ = "0.1.0"
