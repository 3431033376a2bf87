"""The lstm_ag trainer: fit next-value prediction on toy sequences (``lstm-ag-train``).

* :mod:`train.config`: :class:`TrainConfig`, every setting and its default, spelled once;
* :mod:`train.data`: the tasks (``sine``, ``counting``, ``adding``) and their baselines;
* :mod:`train.optim`: SGD with momentum, Adam, global-norm clipping, learning-rate decay;
* :mod:`train.loop`: :func:`fit`, one visible loop (:mod:`train.lbfgs` for L-BFGS), reading
  its minibatches from :mod:`train.batches`;
* :mod:`train.bookkeeping`: a run's history, best, metrics.json, progress lines and ETA;
* :mod:`train.checkpoint`: the trainer's checkpoint, its schema checked once;
* :mod:`train.cli`: the command line, which parses and dispatches to :mod:`train.commands`
  (``lstm-ag-train``, or ``python -m train`` from the repository's root, through
  :mod:`train.__main__`, which also hands ``sweep`` to :mod:`train.sweep`);
* :mod:`train.errors`: exit statuses and one-line reports; :mod:`train.signals`: Ctrl-C and
  SIGTERM; :mod:`train.rundir`: a run's directory and memory; the series:
  :mod:`train.series`.

Example::

    from train import TrainConfig, fit
    config = TrainConfig(task="sine", steps=500)           # the other settings: sine's defaults
    task = config.make_task()
    params = config.init_params(task)
    result = fit(params, task, config)
    print(result.last["val_mse"], task.baseline_mse)
"""
import importlib

#: The public names and the module that defines each. They are imported on first use, not
#: with the package: ``lstm-ag-train`` (``train.__main__``) then installs its Ctrl-C handling
#: before numpy and autograd load, so a Ctrl-C during start-up exits cleanly (status 130).
_EXPORTS = {
    "TrainConfig": "config", "ConfigError": "config",
    "Task": "data", "TASKS": "data", "make_task": "data",
    "fit": "loop", "FitResult": "bookkeeping", "Progress": "checkpoint",
    "Checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS})
