"""lstm_ag: an LSTM written once in autograd.numpy, with a verified hand-written BPTT."""
from . import layouts
from .checkpoint import CheckpointError, load, save
from .grad import METHODS, value_and_grad
from .lstm import GATES, lstm_forward, lstm_step, mse, predict
from .ops import sigmoid
from .params import init_params, param_shapes

__all__ = ["GATES", "init_params", "param_shapes", "lstm_step", "lstm_forward", "predict",
           "mse", "value_and_grad", "METHODS", "sigmoid", "layouts",
           "save", "load", "CheckpointError"]
__version__ = "0.1.0"
