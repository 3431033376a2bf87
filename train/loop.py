"""fit(): minibatch SGD (or full-batch L-BFGS) on a task, with evaluation, progress lines,
checkpoints, and clean stops.

* Minibatches are slices of the task's arrays, drawn by ``np.random.default_rng((seed, step))``:
  the batch of a step depends on the seed and the step number only, so a run stopped at step k
  and resumed from its checkpoint (parameters and momentum buffers) computes, bit for bit,
  what an uninterrupted run computes.
* Every ``eval_every`` steps, and at the last, the validation MSE is computed and one progress
  line goes to ``log`` (stderr); the checkpoint and the metrics file are rewritten there, each
  atomically.
* Ctrl-C (KeyboardInterrupt, also from a callback) saves a checkpoint of the last completed
  step and returns with ``status="interrupted"``.
* A non-finite loss or gradient stops training before the update, with
  ``status="diverged"``; the checkpoint on disk is the last good one.
"""
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TextIO

import numpy as np

import lstm_ag

from .config import TrainConfig
from .data import Task
from .optim import clip_by_global_norm, init_velocity, learning_rate, momentum_update

__all__ = ["Progress", "FitResult", "Checkpoint", "fit", "evaluate", "batch_indices",
           "save_checkpoint", "load_checkpoint"]


@dataclass
class Progress:
    """Where a run stands: what a checkpoint holds besides the parameters and the config.

    - step: steps completed; velocity: SGD momentum buffers (dict like params) or None.
    - history: one dict per evaluation (step, train_loss, val_mse, baseline_mse, grad_norm,
      lr, seconds, steps_per_second); seconds: training time so far, over every session.
    """
    step: int = 0
    velocity: dict | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class FitResult:
    """What :func:`fit` returns.

    - params: the trained parameters (those of ``progress.step``).
    - progress: a :class:`Progress` (step, velocity, history, seconds).
    - status: ``"done"``, ``"interrupted"`` (Ctrl-C) or ``"diverged"`` (non-finite loss).
    - message: one line saying what happened; config: the run's :class:`TrainConfig`.
    """
    params: dict
    progress: Progress
    status: str
    message: str
    config: TrainConfig

    @property
    def step(self):
        return self.progress.step

    @property
    def history(self):
        return self.progress.history

    @property
    def last(self):
        """The last evaluation's row of the history (a dict), or None."""
        return self.progress.history[-1] if self.progress.history else None


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns: ``params, config, progress, task_spec``.

    task_spec: the task's ``spec``; ``make_task(**task_spec)`` regenerates the task.
    """
    params: dict
    config: TrainConfig
    progress: Progress
    task_spec: dict


class _State(NamedTuple):
    """The training state, replaced in one assignment per step (Ctrl-C never splits it)."""
    step: int
    params: dict
    velocity: dict | None


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """The sequences of minibatch ``step``: ``batch`` distinct indices in ``[0, n)``.

    Drawn by ``np.random.default_rng((seed, step))``, so they depend on nothing else.
    Returns an int array ``(batch,)``.
    """
    if not 1 <= batch <= n:
        raise ValueError(f"batch must be in [1, {n}] (the training set has {n} sequences), "
                         f"got {batch}")
    return np.random.default_rng((seed, step)).choice(n, batch, replace=False)


def evaluate(params: dict, task: Task) -> float:
    """The validation MSE of ``params`` on ``task`` (with the task's mask), a float."""
    with np.errstate(all="ignore"):
        return float(lstm_ag.mse(params, task.val_x, task.val_y, mask=task.mask))


def save_checkpoint(path, params: dict, progress: Progress, config: TrainConfig,
                    task_spec: dict) -> str:
    """Save parameters, the config (whole), the task's spec and the progress (momentum buffers
    included) with ``lstm_ag.save``: an ``.npz``, never pickled, written atomically.

    - path: the ``.npz`` file; params: the parameter dict; progress: a :class:`Progress`;
      config: the run's :class:`TrainConfig`; task_spec: ``task.spec``.
    Returns ``path``.
    """
    return lstm_ag.save(path, params, config=config.to_dict(), task_spec=task_spec,
                        step=progress.step, velocity=progress.velocity,
                        history=progress.history, seconds=progress.seconds,
                        lstm_ag_version=lstm_ag.__version__)


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns a :class:`Checkpoint` ``(params, config, progress, task_spec)``. Raises
    ``lstm_ag.CheckpointError`` naming the file when it lacks the trainer's metadata, its config
    is not a valid :class:`TrainConfig`, or the parameters or momentum buffers do not fit it.
    """
    name = os.fspath(path)
    params, meta = lstm_ag.load(path)
    missing = [k for k in ("config", "task_spec", "step", "velocity", "history", "seconds")
               if k not in meta]
    if missing:
        raise lstm_ag.CheckpointError(f"{name}: not a checkpoint of this trainer (its metadata "
                                      f"lacks {missing})")
    try:
        config = TrainConfig.from_dict(meta["config"])
    except ValueError as err:
        raise lstm_ag.CheckpointError(f"{name}: its config is not valid: {err}") from None
    hidden = lstm_ag.check_params(params, readout=True)[1]
    if hidden != config.hidden:
        raise lstm_ag.CheckpointError(f"{name}: the parameters have H={hidden}, its config "
                                      f"hidden={config.hidden}")
    velocity = meta["velocity"]
    if velocity is not None:
        bad = [k for k in params if k not in velocity or velocity[k].shape != params[k].shape]
        if bad or set(velocity) != set(params):
            raise lstm_ag.CheckpointError(f"{name}: momentum buffers do not match the "
                                          f"parameters (at {bad or sorted(velocity)})")
    progress = Progress(step=int(meta["step"]), velocity=velocity,
                        history=list(meta["history"]), seconds=float(meta["seconds"]))
    return Checkpoint(params, config, progress, dict(meta["task_spec"]))


def fit(params: dict, task: Task, config: TrainConfig, *, start: Progress | None = None,
        checkpoint: str | os.PathLike | None = None, metrics: str | os.PathLike | None = None,
        callback: Callable[[int, dict, dict], None] | None = None,
        log: TextIO | None = None) -> FitResult:
    """Train ``params`` on ``task`` up to ``config.steps`` steps in total.

    - params: dict ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)`` with
      D, O the task's ``input_size``, ``output_size`` and H ``config.hidden``.
    - task: a :class:`train.data.Task` of ``config``'s task, seq_len and train_size
      (``config.make_task()`` makes it).
    - config: a :class:`TrainConfig`; its seed seeds the minibatches (:func:`batch_indices`).
    - start: a :class:`Progress` to continue from (as :func:`load_checkpoint` returns), or None.
    - checkpoint: ``.npz`` path rewritten at every evaluation, on Ctrl-C and at the end; None
      for none. metrics: JSON path rewritten at every evaluation; None for none.
    - callback: ``callback(step, params, info)`` after each step (step = steps completed,
      info = ``{"loss", "grad_norm", "lr"}``); raising KeyboardInterrupt there acts as Ctrl-C.
    - log: where progress lines go (default ``sys.stderr``); one line per evaluation.
    Returns a :class:`FitResult`.
    """
    _check_fit(params, task, config)
    start = Progress() if start is None else start
    velocity = start.velocity
    if velocity is None and config.optimizer == "sgd":
        velocity = init_velocity(params)
    run = _Run(task, config, start, checkpoint, metrics, sys.stderr if log is None else log)
    state = _State(start.step, params, velocity)
    if state.step == 0:
        run.save(state)                                 # a good checkpoint exists from step 0
    if state.step >= config.steps:
        return run.result(state, "done", f"already at step {state.step} "
                                         f"(>= steps={config.steps}); nothing to do")
    if config.optimizer == "lbfgs":
        return _fit_lbfgs(state, task, config, run, callback)

    try:
        while state.step < config.steps:
            step, params, velocity = state
            idx = batch_indices(config.seed, step, config.train_size, config.batch)
            with np.errstate(all="ignore"):           # non-finite values are handled below
                loss, grads = lstm_ag.value_and_grad(params, task.train_x[:, idx],
                                                     task.train_y[:, idx], method=config.method,
                                                     mask=task.mask)
                loss = float(loss)
                grads, norm = clip_by_global_norm(grads, config.clip)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    return run.diverged(state, "the loss" if not math.isfinite(loss)
                                        else "the gradient norm")
                lr = learning_rate(config.lr, step, config.lr_decay)
                params, velocity = momentum_update(params, grads, velocity, lr=lr,
                                                   momentum=config.momentum)
            state = _State(step + 1, params, velocity)
            run.record(loss, norm)
            if callback is not None:
                callback(state.step, params, {"loss": loss, "grad_norm": norm, "lr": lr})
            if state.step % config.eval_every == 0 or state.step == config.steps:
                if not run.evaluate_and_save(state, lr=lr if config.lr_decay else None):
                    return run.diverged(state, "the validation MSE")
    except KeyboardInterrupt:
        return run.interrupted(state)
    return run.done(state)


def _check_fit(params, task, config):
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    D, H, out = lstm_ag.check_params(params, readout=True)
    if (D, out) != (task.input_size, task.output_size):
        raise ValueError(f"params have D={D}, O={out}; task {task.name!r} needs "
                         f"D={task.input_size}, O={task.output_size}")
    if H != config.hidden:
        raise ValueError(f"params have H={H}, config.hidden is {config.hidden}")
    given = (task.name, task.seq_len, task.train_x.shape[1])
    if given != (config.task, config.seq_len, config.train_size):
        raise ValueError(f"the task is {given[0]!r} with seq_len={given[1]}, "
                         f"{given[2]} training sequences; the config says {config.task!r}, "
                         f"seq_len={config.seq_len}, train_size={config.train_size} "
                         f"(config.make_task() makes its task)")


def _format_row(row, steps):
    width = len(str(steps))
    ratio = row["baseline_mse"] / row["val_mse"] if row["val_mse"] > 0 else math.inf
    train = "-" if row["train_loss"] is None else f"{row['train_loss']:.3e}"
    norm = "-" if row["grad_norm"] is None else f"{row['grad_norm']:.3g}"
    text = (f"step {row['step']:>{width}}/{steps}  {row['steps_per_second']:7.1f} steps/s  "
            f"train {train}  val {row['val_mse']:.3e}  "
            f"baseline {row['baseline_mse']:.3e} ({ratio:.1f}x)  |g| {norm}")
    if row.get("lr") is not None:
        text += f"  lr {row['lr']:.3g}"
    return text


class _Run:
    """Bookkeeping of a run, shared by the optimizers: timing, history, files, results."""

    def __init__(self, task, config, start, checkpoint, metrics, log):
        self.task, self.config, self.log = task, config, log
        self.checkpoint, self.metrics = checkpoint, metrics
        self.history, self.seconds0 = list(start.history), start.seconds
        self.baseline_mse = task.baseline_mse
        self.started = time.perf_counter()
        self.saved_step = start.step if checkpoint is not None else None
        self.losses, self.norms = [], []                # since the last evaluation
        self.window_start, self.window_step = time.perf_counter(), start.step

    def seconds(self):
        return self.seconds0 + time.perf_counter() - self.started

    def progress(self, state):
        return Progress(step=state.step, velocity=state.velocity, history=list(self.history),
                        seconds=self.seconds())

    def record(self, loss, norm):
        self.losses.append(loss)
        self.norms.append(norm)

    def evaluate_and_save(self, state, lr=None):
        """Evaluate, log a progress line, save: False (and nothing saved) if not finite."""
        done, elapsed = state.step - self.window_step, time.perf_counter() - self.window_start
        row = {"step": state.step,
               "train_loss": float(np.mean(self.losses)) if self.losses else None,
               "val_mse": evaluate(state.params, self.task), "baseline_mse": self.baseline_mse,
               "grad_norm": float(np.mean(self.norms)) if self.norms else None, "lr": lr,
               "seconds": self.seconds(), "steps_per_second": done / elapsed if done else 0.0}
        if not math.isfinite(row["val_mse"]):
            return False
        self.history.append(row)
        print(_format_row(row, self.config.steps), file=self.log, flush=True)
        self.losses, self.norms = [], []
        self.window_step = state.step
        self.save(state)
        return True

    def save(self, state, status="running"):
        """Rewrite the checkpoint and the metrics file (each atomically), if asked for."""
        progress = self.progress(state)
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, state.params, progress, self.config, self.task.spec)
            self.saved_step = state.step
        if self.metrics is not None and self.history:
            content = _metrics(self.task, self.config, progress, status)
            lstm_ag.atomic_write(self.metrics, lambda file: file.write(
                json.dumps(content, indent=1) + "\n"), mode="w")
        self.window_start = time.perf_counter()         # steps/s counts training time only

    def result(self, state, status, message):
        return FitResult(state.params, self.progress(state), status, message, self.config)

    def interrupted(self, state):
        self.save(state, status="interrupted")
        where = f"; checkpoint saved to {self.checkpoint}" if self.checkpoint else ""
        return self.result(state, "interrupted", f"interrupted at step {state.step}{where}")

    def diverged(self, state, what):
        if self.saved_step is not None:
            rows = [r for r in self.history if r["step"] == self.saved_step]
            val = f", validation MSE {rows[-1]['val_mse']:.3g}" if rows else ""
            kept = (f"the last good checkpoint (step {self.saved_step}{val}) is kept in "
                    f"{self.checkpoint}")
        else:
            kept = "no checkpoint was written"
        return self.result(state, "diverged", f"training stopped at step {state.step}: {what} "
                                              f"is not finite; {kept}. Try a smaller --lr or "
                                              f"--clip.")

    def done(self, state):
        if not self.history or self.history[-1]["step"] != state.step:
            if not self.evaluate_and_save(state):
                return self.diverged(state, "the validation MSE")
        self.save(state, status="done")
        return self.result(state, "done", f"done: step {state.step}")


def _metrics(task, config, progress, status):
    """The content of metrics.json: the last evaluation, the config, the whole history."""
    row = progress.history[-1]
    ratio = row["baseline_mse"] / row["val_mse"] if row["val_mse"] > 0 else None
    return {"task": task.name, "status": status, "step": row["step"],
            "train_loss": row["train_loss"], "val_mse": row["val_mse"],
            "baseline_mse": row["baseline_mse"], "baseline": task.baseline,
            "baseline_over_val": ratio, "grad_norm": row["grad_norm"],
            "seconds": progress.seconds, "steps_per_second": row["steps_per_second"],
            "config": config.to_dict(), "task_spec": task.spec, "history": progress.history}


def _fit_lbfgs(state, task, config, run, callback):
    """Full-batch L-BFGS (scipy.optimize.minimize, method L-BFGS-B) over the training set,
    the parameter dict flattened to one vector by ``autograd.misc.flatten``; one step is one
    iteration."""
    from autograd.misc import flatten
    from scipy.optimize import minimize

    keys = list(state.params)
    x0, unflatten = flatten(state.params)
    last = {"loss": math.nan, "norm": math.nan}

    class NonFinite(Exception):
        pass

    def objective(x):
        with np.errstate(all="ignore"):
            loss, grads = lstm_ag.value_and_grad(unflatten(x), task.train_x, task.train_y,
                                                 method=config.method, mask=task.mask)
        loss = float(loss)
        g, _ = flatten({k: grads[k] for k in keys})
        norm = float(np.linalg.norm(g))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise NonFinite("the loss" if not math.isfinite(loss) else "the gradient norm")
        last.update(loss=loss, norm=norm)
        return loss, np.asarray(g, dtype=np.float64)

    def on_iteration(xk):
        nonlocal state
        state = _State(state.step + 1, unflatten(np.array(xk)), None)
        run.record(last["loss"], last["norm"])
        if callback is not None:
            callback(state.step, state.params, {"loss": last["loss"], "grad_norm": last["norm"]})
        if state.step % config.eval_every == 0 or state.step == config.steps:
            if not run.evaluate_and_save(state):
                raise NonFinite("the validation MSE")
        if state.step >= config.steps:
            raise StopIteration

    try:
        result = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
                          options={"maxiter": config.steps - state.step,
                                   "maxfun": 20 * config.steps, "ftol": 0.0, "gtol": 1e-12})
        stopped = None if state.step >= config.steps else str(result.message)
    except StopIteration:
        stopped = None
    except NonFinite as err:
        return run.diverged(state, str(err))
    except KeyboardInterrupt:
        return run.interrupted(state)
    result = run.done(state)
    if stopped and result.status == "done":
        result.message = f"L-BFGS stopped at iteration {state.step}: {stopped}"
    return result
