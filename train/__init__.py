"""The lstm_ag trainer: fit next-value prediction on toy sequences (``python -m train``).

* :mod:`train.data`: the tasks (``sine``, ``counting``, ``adding``) and their baselines;
* :mod:`train.sgd`: SGD with momentum, global-norm clipping and learning-rate decay;
* :mod:`train.loop`: :func:`fit`, with evaluation, progress lines, checkpoints and clean stops;
* :mod:`train.__main__`: the command line (also the console script ``lstm-ag-train``).

Example::

    import lstm_ag
    from train import fit, make_task
    task = make_task("sine", seed=0)
    params = lstm_ag.init_params(task.input_size, 32, task.output_size, seed=0)
    result = fit(params, task, steps=500)
    print(result.last["val_mse"], task.baseline_mse)
"""
from .data import DEFAULTS, TASKS, Task, make_task
from .loop import FitResult, Progress, fit, load_checkpoint, save_checkpoint

__all__ = ["Task", "TASKS", "DEFAULTS", "make_task", "fit", "FitResult", "Progress",
           "save_checkpoint", "load_checkpoint"]
