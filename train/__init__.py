"""The lstm_ag trainer: fit next-value prediction on toy sequences (``lstm-ag-train``).

* :mod:`train.config`: :class:`TrainConfig`, every setting and its default, spelled once;
* :mod:`train.data`: the tasks (``sine``, ``counting``, ``adding``) and their baselines;
* :mod:`train.optim`: SGD with momentum, global-norm clipping and learning-rate decay;
* :mod:`train.loop`: :func:`fit`, one visible loop, with evaluation, progress lines,
  checkpoints and clean stops;
* :mod:`train.__main__`: the command line (the console script ``lstm-ag-train``, or
  ``python -m train`` from the repository's root).

Example::

    from train import TrainConfig, fit
    config = TrainConfig(task="sine", steps=500)           # the other settings: sine's defaults
    task = config.make_task()
    params = config.init_params(task)
    result = fit(params, task, config)
    print(result.last["val_mse"], task.baseline_mse)
"""
from .config import ConfigError, TrainConfig
from .data import TASKS, Task, make_task
from .loop import Checkpoint, FitResult, Progress, fit, load_checkpoint, save_checkpoint

__all__ = ["TrainConfig", "ConfigError", "Task", "TASKS", "make_task", "fit", "FitResult",
           "Progress", "Checkpoint", "save_checkpoint", "load_checkpoint"]
