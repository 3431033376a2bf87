"""fit(): minibatch SGD or Adam (or full-batch L-BFGS, :mod:`train.lbfgs`) on a task, the loop
written out in :func:`_train`, top to bottom.

* A step draws its minibatch from the seed and the step alone (:mod:`train.batches`), so a run
  stopped at step k and resumed from its checkpoint (parameters, momentum buffers, carried
  state: :mod:`train.checkpoint`) computes, bit for bit, what an uninterrupted run computes.
  With truncated BPTT (``config.tbptt``) a batch takes one step per chunk of time steps, each
  from the state the chunk before left (detached). Validation runs over whole sequences.
* Every ``eval_every`` steps, and at the last, the run is evaluated and its files rewritten
  (:mod:`train.bookkeeping`: history, best, metrics.json, progress lines, ETA); with
  ``config.patience`` it stops early, its result the best parameters. A run resumed at an
  evaluation step whose row its history lacks (stopped while evaluating) evaluates it first.
* ``config.threads`` limits numpy's BLAS threads (threadpoolctl) while training; 0 leaves them.
* Ctrl-C (KeyboardInterrupt, also from a callback) saves a checkpoint of the last completed
  step and returns with ``status="interrupted"``; so does SIGTERM (:mod:`train.signals`). A
  signal that arrives while a file is being written waits until the write is complete.
* A non-finite loss, gradient or carried state (or lstm_ag's ``FloatOverflowError``, an
  ``OverflowError``) stops training before the update, with ``status="diverged"``; the
  checkpoint on disk is the last good one. A file that cannot be written (disk full,
  read-only) raises ``OSError`` naming it; the checkpoint on disk is the last good one.
"""
import contextlib
import math
import os
import sys
from collections.abc import Callable
from typing import TextIO

import numpy as np

import lstm_ag
from lstm_ag import structure

from . import signals
from .batches import batch_indices, check_carry, chunk_plan, state_shape
from .bookkeeping import (
    BEST_NAME,
    FitResult,
    Run,
    State,
    best_path,
    best_row,
    evaluation_due,
    validation_mse,
)
from .checkpoint import Checkpoint, Progress, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import Task
from .lbfgs import fit_lbfgs
from .optim import (
    adam_update,
    clip_by_global_norm,
    init_moments,
    init_velocity,
    learning_rate,
    momentum_update,
)

__all__ = ["Progress", "FitResult", "Checkpoint", "fit", "evaluate", "batch_indices",
           "chunk_plan", "check_carry", "state_shape", "save_checkpoint", "load_checkpoint",
           "best_path", "best_row", "BEST_NAME"]

#: The validation measure :func:`fit` reports and keeps the best by: :func:`train.bookkeeping.
#: validation_mse`, under the name this module has always given it. fit reads it, and
#: ``save_checkpoint``, from this module when it starts (a caller may replace either here).
evaluate = validation_mse
#: The run's bookkeeping, under its former name here.
_Run = Run


def fit(params: dict, task: Task, config: TrainConfig, *, start: Progress | None = None,
        checkpoint: str | os.PathLike | None = None, metrics: str | os.PathLike | None = None,
        callback: Callable[[int, dict, dict], None] | None = None,
        log: TextIO | None = None) -> FitResult:
    """Train ``params`` on ``task`` up to ``config.steps`` steps in total.

    - params: dict ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)`` with
      D, O the task's ``input_size``, ``output_size`` and H ``config.hidden`` (with
      ``config.layers`` > 1 or ``config.bidirectional`` also ``"layers"``, ``"reverse"``:
      ``config.init_params(task)`` makes them).
    - task: a :class:`train.data.Task` of ``config``'s task, seq_len and train_size
      (``config.make_task()`` makes it; a series with ``tbptt``, its ``batch`` streams).
    - config: a :class:`TrainConfig`; its seed seeds the minibatches (:func:`batch_indices`).
    - start: a :class:`Progress` to continue from (as :func:`load_checkpoint` returns; its
      ``carry`` must be the state its step starts from, :func:`check_carry`), or None.
    - checkpoint: ``.npz`` path written at the start, at every evaluation, on Ctrl-C and at
      the end; None for none. metrics: JSON path rewritten after every checkpoint, and when
      the run stops (its status); None for none.
    - callback: ``callback(step, params, info)`` after each step (step = steps completed,
      info = ``{"loss", "grad_norm", "lr"}``); raising KeyboardInterrupt there acts as Ctrl-C.
    - log: where progress lines go (default ``sys.stderr``); one line per evaluation.
    Returns a :class:`FitResult`. Raises ``OSError`` (naming the file) when the checkpoint or
    the metrics file cannot be written; the checkpoint on disk is then the last good one.
    """
    _check_fit(params, task, config, start)
    run = Run(task, config, start, checkpoint, metrics, sys.stderr if log is None else log,
              score=evaluate, save=save_checkpoint)
    with _blas_threads(config.threads), signals.sigterm_as_ctrl_c():
        state = _first_state(params, config, start, run)
        result = _finish_resumed_evaluation(state, start, config, run)
        if result is not None:
            return result
        if state.step >= config.steps:
            message = f"already at step {state.step} (>= steps={config.steps}); nothing to do"
            run.save(state, status="done", message=message)
            return run.result(state, "done", message)
        if config.optimizer == "lbfgs":
            return fit_lbfgs(state, task, config, run, callback)
        return _train(state, task, config, run, callback)


def _train(state, task, config, run, callback):
    """SGD with momentum or Adam from ``state`` to ``config.steps``: a minibatch (with
    ``tbptt``, a chunk of it) per step; evaluate, save and maybe stop every ``eval_every``."""
    plan = chunk_plan(task.seq_len, config.tbptt, task.mask)
    try:
        run.save(state)                   # a checkpoint from the start; metrics: running
        while state.step < config.steps:
            step, params, velocity, carry = state
            batch, chunk = divmod(step, len(plan))
            idx = batch_indices(config.seed, batch, task.train_x.shape[1], config.batch)
            with np.errstate(all="ignore"):           # non-finite values are handled below
                try:
                    loss, grads, carry = _loss_and_grads(params, task, config, idx, plan, chunk,
                                                         carry)
                except OverflowError as err:          # lstm_ag names an overflow
                    return run.diverged(state, "the gradient norm" if "in the gradient"
                                        in str(err) else "the loss")
                grads, norm = clip_by_global_norm(grads, config.clip)
                what = _not_finite(loss, norm, carry)
                if what is not None:
                    return run.diverged(state, what)
                lr = learning_rate(config.lr, step, config.lr_decay)
                params, velocity = _update(params, grads, velocity, lr, step, config)
            state = State(step + 1, params, velocity, carry)
            run.record(loss, norm)
            if callback is not None:
                callback(state.step, params, {"loss": loss, "grad_norm": norm, "lr": lr})
            evaluation = evaluation_due(state.step, config)
            if evaluation and not run.evaluate_and_save(state, lr=lr if config.lr_decay else None):
                return run.diverged(state, "the validation MSE")
            if evaluation and run.patience_spent():
                break
    except KeyboardInterrupt:
        return run.interrupted(state)
    return run.done(state)


def _loss_and_grads(params, task, config, idx, plan, chunk, carry):
    """``(loss, grads, carry)`` of one step: ``value_and_grad`` on the batch ``idx`` over the
    time steps of chunk ``plan[chunk] = (warm, start, stop)`` of :func:`chunk_plan`, from the
    carried state (the chunks between ``warm`` and ``start``, without loss weight, run
    forward only); ``carry``: the state the next step starts from, None at a batch's end."""
    warm, start, stop = plan[chunk]
    initial = None if carry is None else (carry["h"], carry["c"])
    if warm < start:
        initial = lstm_ag.predict(params, task.train_x[warm:start, idx], initial,
                                  method=config.method, return_state=True)[1]
    carried = {"return_state": True} if config.tbptt else {}   # the final state
    out = lstm_ag.value_and_grad(
        params, task.train_x[start:stop, idx], task.train_y[start:stop, idx], initial,
        method=config.method, mask=None if task.mask is None else task.mask[start:stop],
        **carried)
    carry = None
    if chunk + 1 < len(plan):             # the batch goes on: carry its state
        carry = {"chunk": chunk + 1, "h": out[2][0], "c": out[2][1]}
    return float(out[0]), out[1], carry


def _not_finite(loss, norm, carry):
    """What of a step is not finite (the loss, the gradient norm, the carried state), or None."""
    if not math.isfinite(loss):
        return "the loss"
    if not math.isfinite(norm):
        return "the gradient norm"
    if carry is not None and not (np.isfinite(carry["h"]).all()
                                  and np.isfinite(carry["c"]).all()):
        return "the carried state"
    return None


def _update(params, grads, velocity, lr, step, config):
    """The optimizer's update: ``(params, velocity)`` after Adam's or SGD-momentum's step."""
    if config.optimizer == "adam":
        return adam_update(params, grads, velocity, lr=lr, step=step)
    return momentum_update(params, grads, velocity, lr=lr, momentum=config.momentum)


def _blas_threads(threads):
    """At most ``threads`` BLAS threads inside (threadpoolctl); 0: as they are."""
    if not threads:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads, user_api="blas")


def _first_state(params, config, start, run):
    """The :class:`State` a run starts from: ``start``'s, with fresh optimizer buffers for a
    new run; the best evaluation before it restored and the resumed run's notes logged."""
    start = Progress() if start is None else start
    velocity = start.velocity
    if velocity is None and config.optimizer == "sgd":
        velocity = init_velocity(params)
    if velocity is None and config.optimizer == "adam":
        velocity = init_moments(params)
    run.restore_best(start, params)
    run.resumed_notes(start)
    return State(start.step, params, velocity, start.carry)


def _finish_resumed_evaluation(state, start, config, run):
    """A run resumed at an evaluation step whose row the history lacks (it was stopped while
    evaluating: a Ctrl-C, SIGTERM or SIGKILL between the step and its row) evaluates it
    first, so that its history is an uninterrupted run's ([50, 100], never [100]). Returns
    the run's result if that ends it (diverged, interrupted, patience spent), else None."""
    if start is None or start.step == 0 or not evaluation_due(start.step, config) or (
            start.history and start.history[-1]["step"] == start.step):
        return None
    run.saved_step = None                        # its checkpoint is rewritten with the row
    lr = (learning_rate(config.lr, start.step - 1, config.lr_decay)
          if config.lr_decay and config.optimizer != "lbfgs" else None)
    try:
        if not run.evaluate_and_save(state, lr=lr):
            return run.diverged(state, "the validation MSE")
    except KeyboardInterrupt:
        return run.interrupted(state)
    return run.done(state) if run.patience_spent() else None


def _check_fit(params, task, config, start):
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    D, H, out = lstm_ag.check_params(params, readout=True)
    if (D, out) != (task.input_size, task.output_size):
        raise ValueError(f"params have D={D}, O={out}; task {task.name!r} needs "
                         f"D={task.input_size}, O={task.output_size}")
    if config.hidden != H:
        raise ValueError(f"params have H={H}, config.hidden is {config.hidden}")
    if structure(params) != (config.layers, config.directions):
        raise ValueError(f"params have {structure(params)[0]} layers and "
                         f"{structure(params)[1]} directions; config.layers is "
                         f"{config.layers}, config.bidirectional {config.bidirectional}")
    streams = getattr(task, "streams", 0)      # a series trained whole (tbptt): no windows
    if streams != (config.batch if config.task == "series" and config.tbptt else 0):
        raise ValueError(f"the task has {streams} training streams; the config says "
                         f"task {config.task!r}, tbptt={config.tbptt}, batch={config.batch} "
                         "(config.make_task() makes its task)")
    if config.tbptt > task.seq_len:
        raise ValueError(f"config.tbptt={config.tbptt} exceeds the task's sequences "
                         f"({task.seq_len} steps)")
    if start is not None:
        check_carry(start, task, config)
    given = (task.name, config.seq_len if streams else task.seq_len, task.train_x.shape[1])
    if given != (config.task, config.seq_len, config.train_size or given[2]):
        raise ValueError(f"the task is {given[0]!r} with seq_len={given[1]}, "
                         f"{given[2]} training sequences; the config says {config.task!r}, "
                         f"seq_len={config.seq_len}, train_size={config.train_size} "
                         f"(config.make_task() makes its task)")


