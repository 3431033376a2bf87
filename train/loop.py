"""fit(): minibatch SGD (or full-batch L-BFGS) on a task, with evaluation, progress lines,
checkpoints, and clean stops.

* Minibatches are slices of the task's arrays, drawn by ``np.random.default_rng((seed, step))``:
  the batch of a step depends on the seed and the step number only, so a run stopped at step k
  and resumed from its checkpoint (parameters and momentum buffers) computes, bit for bit,
  what an uninterrupted run computes.
* Every ``eval_every`` steps, and at the last, the validation MSE is computed and one progress
  line goes to ``log`` (stderr); the checkpoint and the metrics file are rewritten there.
* Ctrl-C (KeyboardInterrupt, also from a callback) saves a checkpoint of the last completed
  step and returns with ``status="interrupted"``.
* A non-finite loss or gradient stops training before the update, with
  ``status="diverged"``; the checkpoint on disk is the last good one.
"""
import json
import math
import os
import secrets
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import lstm_ag
from lstm_ag.params import check_params

from .sgd import global_norm, init_velocity, learning_rate, sgd_step

__all__ = ["Progress", "FitResult", "fit", "evaluate", "batch_indices", "save_checkpoint",
           "load_checkpoint", "write_json", "OPTIMIZERS"]

#: The optimizers :func:`fit` knows.
OPTIMIZERS = ("sgd", "lbfgs")


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
    - message: one line saying what happened; config: the run's settings (JSON-ready).
    """
    params: dict
    progress: Progress
    status: str
    message: str
    config: dict

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


def batch_indices(seed, step, n, batch):
    """The sequences of minibatch ``step``: ``batch`` distinct indices in ``[0, n)``.

    Drawn by ``np.random.default_rng((seed, step))``, so they depend on nothing else.
    Returns an int array ``(batch,)``.
    """
    if not 1 <= batch <= n:
        raise ValueError(f"batch must be in [1, {n}] (the training set has {n} sequences), "
                         f"got {batch}")
    return np.random.default_rng((seed, step)).choice(n, batch, replace=False)


def evaluate(params, task):
    """The validation MSE of ``params`` on ``task`` (with the task's mask), a float."""
    with np.errstate(all="ignore"):
        return float(lstm_ag.mse(params, task.val_x, task.val_y, mask=task.mask))


def write_json(path, data):
    """Write ``data`` as JSON to ``path`` atomically (temporary file, then ``os.replace``)."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "w") as file:
            json.dump(data, file, indent=1)
            file.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_checkpoint(path, params, progress, config):
    """Save parameters, config and progress (momentum buffers included) with ``lstm_ag.save``.

    - path: the ``.npz`` file; params: the parameter dict; progress: a :class:`Progress`;
      config: the run's settings (JSON-ready dict).
    """
    optimizer = {"name": config.get("optimizer", "sgd")}
    if progress.velocity is not None:
        optimizer["velocity"] = progress.velocity
    return lstm_ag.save(path, params, config=config, step=progress.step, optimizer=optimizer,
                        history=progress.history, seconds=progress.seconds,
                        lstm_ag_version=lstm_ag.__version__)


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns ``(params, config, progress)``. Raises ``lstm_ag.CheckpointError`` naming the file
    when it lacks the trainer's metadata or its momentum buffers do not match the parameters.
    """
    params, meta = lstm_ag.load(path)
    missing = [k for k in ("config", "step", "optimizer") if k not in meta]
    if missing:
        raise lstm_ag.CheckpointError(f"{os.fspath(path)}: not a trainer checkpoint "
                                      f"(metadata lacks {missing})")
    velocity = meta["optimizer"].get("velocity")
    if velocity is not None:
        bad = [k for k in params if k not in velocity or velocity[k].shape != params[k].shape]
        if bad or set(velocity) != set(params):
            raise lstm_ag.CheckpointError(f"{os.fspath(path)}: momentum buffers do not match "
                                          f"the parameters (at {bad or sorted(velocity)})")
    progress = Progress(step=int(meta["step"]), velocity=velocity,
                        history=list(meta.get("history", [])),
                        seconds=float(meta.get("seconds", 0.0)))
    return params, meta["config"], progress


def _finite(x):
    return math.isfinite(x)


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


def _metrics(task, row, config, progress, status):
    ratio = row["baseline_mse"] / row["val_mse"] if row["val_mse"] > 0 else None
    return {"task": task.name, "status": status, "step": row["step"],
            "train_loss": row["train_loss"], "val_mse": row["val_mse"],
            "baseline_mse": row["baseline_mse"], "baseline": task.baseline,
            "baseline_over_val": ratio, "grad_norm": row["grad_norm"],
            "seconds": progress.seconds, "steps_per_second": row["steps_per_second"],
            "config": config, "history": progress.history}


def fit(params, task, *, steps, batch=32, lr=0.1, momentum=0.9, clip=1.0, lr_decay=0.0,
        method="fast", seed=0, eval_every=100, optimizer="sgd", start=None, checkpoint=None,
        metrics=None, callback=None, log=None):
    """Train ``params`` on ``task`` up to ``steps`` steps in total.

    - params: dict ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)`` with
      D, O the task's ``input_size``, ``output_size``.
    - task: a :class:`train.data.Task`.
    - steps: total steps (SGD updates, or L-BFGS iterations), counting those already done
      in ``start``.
    - batch: sequences per minibatch (SGD); lr, momentum, clip, lr_decay: see
      :func:`train.sgd.sgd_step` (clip None or 0: no clipping).
    - method: gradient method, one of ``lstm_ag.METHODS``.
    - seed: seed of the minibatch draws (:func:`batch_indices`).
    - eval_every: steps between evaluations (and progress lines, checkpoints).
    - optimizer: ``"sgd"``, or ``"lbfgs"`` for full-batch ``scipy.optimize.minimize`` over the
      whole training set (batch, lr, momentum, clip, lr_decay are then unused).
    - start: a :class:`Progress` to continue from (as :func:`load_checkpoint` returns), or None.
    - checkpoint: ``.npz`` path rewritten at every evaluation, on Ctrl-C and at the end; None
      for none. metrics: JSON path rewritten at every evaluation; None for none.
    - callback: ``callback(step, params, info)`` after each step (step = steps completed,
      info = ``{"loss", "grad_norm", ...}``); raising KeyboardInterrupt there acts as Ctrl-C.
    - log: where progress lines go (default ``sys.stderr``); one line per evaluation.
    Returns a :class:`FitResult`.
    """
    if method not in lstm_ag.METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, lstm_ag.METHODS))}, "
                         f"got {method!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, "
                         f"got {optimizer!r}")
    for name, value in (("steps", steps), ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    D, H, O = check_params(params, readout=True)
    if (D, O) != (task.input_size, task.output_size):
        raise ValueError(f"params have D={D}, O={O}; task {task.name!r} needs "
                         f"D={task.input_size}, O={task.output_size}")
    learning_rate(lr, 0, lr_decay)                        # validates lr and lr_decay early
    log = sys.stderr if log is None else log
    config = dict(task=task.name, seq_len=task.seq_len, hidden=H, batch=batch, lr=lr,
                  momentum=momentum, clip=clip, lr_decay=lr_decay, method=method, seed=seed,
                  steps=steps, eval_every=eval_every, optimizer=optimizer,
                  task_spec=dict(task.spec), dtype=str(params["Wx"].dtype))
    start = Progress() if start is None else start
    progress = Progress(step=start.step, history=list(start.history), seconds=start.seconds,
                        velocity=(start.velocity if start.velocity is not None
                                  else init_velocity(params) if optimizer == "sgd" else None))
    run = _Run(task, config, progress, checkpoint, metrics, log)
    if checkpoint is not None and start.step == 0:
        run.save(params, progress)                      # a good checkpoint exists from step 0
    if progress.step >= steps:
        return FitResult(params, progress, "done",
                         f"already at step {progress.step} (>= steps={steps}); nothing to do",
                         config)
    if optimizer == "lbfgs":
        return _fit_lbfgs(params, run, steps=steps, method=method, eval_every=eval_every,
                          callback=callback)
    return _fit_sgd(params, run, steps=steps, batch=batch, lr=lr, momentum=momentum, clip=clip,
                    lr_decay=lr_decay, method=method, seed=seed, eval_every=eval_every,
                    callback=callback)


class _Run:
    """Bookkeeping shared by the optimizers: timing, evaluation rows, files, messages."""

    def __init__(self, task, config, progress, checkpoint, metrics, log):
        self.task, self.config, self.progress, self.log = task, config, progress, log
        self.checkpoint, self.metrics = checkpoint, metrics
        self.baseline_mse = task.baseline_mse
        self.started = time.perf_counter()
        self.seconds0 = progress.seconds
        self.saved_step = progress.step if checkpoint is not None else None
        self.window_losses, self.window_norms = [], []
        self.window_start, self.window_step = time.perf_counter(), progress.step

    def seconds(self):
        return self.seconds0 + time.perf_counter() - self.started

    def record(self, loss, norm):
        self.window_losses.append(loss)
        self.window_norms.append(norm)

    def evaluate(self, params, progress, lr=None):
        """Append an evaluation row to the history and log it; False if val MSE not finite."""
        now = time.perf_counter()
        done = progress.step - self.window_step
        row = {"step": progress.step,
               "train_loss": float(np.mean(self.window_losses)) if self.window_losses else None,
               "val_mse": evaluate(params, self.task), "baseline_mse": self.baseline_mse,
               "grad_norm": float(np.mean(self.window_norms)) if self.window_norms else None,
               "lr": lr, "seconds": None,
               "steps_per_second": done / (now - self.window_start) if done else 0.0}
        if not _finite(row["val_mse"]):
            return row, False
        progress.seconds = row["seconds"] = self.seconds()
        progress.history.append(row)
        print(_format_row(row, self.config["steps"]), file=self.log, flush=True)
        self.window_losses, self.window_norms = [], []
        self.window_start, self.window_step = time.perf_counter(), progress.step
        return row, True

    def save(self, params, progress, status="running"):
        progress.seconds = self.seconds()
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, params, progress, self.config)
            self.saved_step = progress.step
        if self.metrics is not None and progress.history:
            write_json(self.metrics, _metrics(self.task, progress.history[-1], self.config,
                                              progress, status))
        self.window_start = time.perf_counter()         # steps/s counts training time only

    def interrupted(self, params, progress):
        self.save(params, progress, status="interrupted")
        where = f"; checkpoint saved to {self.checkpoint}" if self.checkpoint else ""
        return FitResult(params, progress, "interrupted",
                         f"interrupted at step {progress.step}{where}", self.config)

    def diverged(self, params, progress, what):
        progress.seconds = self.seconds()
        if self.saved_step is not None:
            rows = [r for r in progress.history if r["step"] == self.saved_step]
            val = f", validation MSE {rows[-1]['val_mse']:.3g}" if rows else ""
            kept = (f"the last good checkpoint (step {self.saved_step}{val}) is kept in "
                    f"{self.checkpoint}")
        else:
            kept = "no checkpoint was written"
        return FitResult(params, progress, "diverged",
                         f"training stopped at step {progress.step}: {what} is not finite; "
                         f"{kept}. Try a smaller --lr or --clip.", self.config)

    def done(self, params, progress):
        if not progress.history or progress.history[-1]["step"] != progress.step:
            row, ok = self.evaluate(params, progress)
            if not ok:
                return self.diverged(params, progress, "the validation MSE")
        self.save(params, progress, status="done")
        return FitResult(params, progress, "done", f"done: step {progress.step}", self.config)


def _fit_sgd(params, run, *, steps, batch, lr, momentum, clip, lr_decay, method, seed,
             eval_every, callback):
    task, progress = run.task, run.progress
    n = task.train_x.shape[1]
    batch_indices(seed, 0, n, batch)                    # validates batch early
    # One tuple, assigned in one statement per step: Ctrl-C never splits params from velocity.
    state = (progress.step, params, progress.velocity)
    try:
        for step in range(progress.step, steps):
            step_, p, v = state
            idx = batch_indices(seed, step, n, batch)
            xs, ys = task.train_x[:, idx], task.train_y[:, idx]
            with np.errstate(all="ignore"):
                loss, grads = lstm_ag.value_and_grad(p, xs, ys, method=method, mask=task.mask)
                loss = float(loss)
                norm = global_norm(grads)
                if not (_finite(loss) and _finite(norm)):
                    progress.step, progress.velocity = step, v
                    return run.diverged(p, progress, "the loss" if not _finite(loss)
                                        else "the gradient norm")
                new_p, new_v, info = sgd_step(p, grads, v, step=step, lr=lr,
                                              momentum=momentum, clip=clip, decay=lr_decay)
            state = (step + 1, new_p, new_v)
            run.record(loss, info["grad_norm"])
            if callback is not None:
                callback(step + 1, new_p, {"loss": loss, **info})
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                progress.step, progress.velocity = step + 1, new_v
                row, ok = run.evaluate(new_p, progress, lr=info["lr"] if lr_decay else None)
                if not ok:
                    return run.diverged(new_p, progress, "the validation MSE")
                run.save(new_p, progress)
    except KeyboardInterrupt:
        progress.step, params, progress.velocity = state
        return run.interrupted(params, progress)
    progress.step, params, progress.velocity = state
    return run.done(params, progress)


def _fit_lbfgs(params, run, *, steps, method, eval_every, callback):
    """Full-batch L-BFGS (scipy.optimize.minimize, method L-BFGS-B) over the training set,
    the parameter dict flattened to one vector by ``autograd.misc.flatten``."""
    from autograd.misc import flatten
    from scipy.optimize import minimize

    task, progress = run.task, run.progress
    keys = list(params)
    x0, unflatten = flatten(params)
    last = {"loss": math.nan, "norm": math.nan}

    class _NonFinite(Exception):
        pass

    def objective(x):
        p = unflatten(x)
        with np.errstate(all="ignore"):
            loss, grads = lstm_ag.value_and_grad(p, task.train_x, task.train_y, method=method,
                                                 mask=task.mask)
        loss = float(loss)
        g, _ = flatten({k: grads[k] for k in keys})
        norm = float(np.linalg.norm(g))
        if not (_finite(loss) and _finite(norm)):
            raise _NonFinite("the loss" if not _finite(loss) else "the gradient norm")
        last.update(loss=loss, norm=norm)
        return loss, np.asarray(g, dtype=np.float64)

    state = (progress.step, params)

    def on_iteration(xk):
        nonlocal state
        step = state[0] + 1
        p = unflatten(np.array(xk))
        state = (step, p)
        run.record(last["loss"], last["norm"])
        if callback is not None:
            callback(step, p, {"loss": last["loss"], "grad_norm": last["norm"]})
        if step % eval_every == 0 or step == steps:
            progress.step = step
            row, ok = run.evaluate(p, progress)
            if not ok:
                raise _NonFinite("the validation MSE")
            run.save(p, progress)
        if step >= steps:
            raise StopIteration

    try:
        result = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
                          options={"maxiter": steps - progress.step, "maxfun": 20 * steps,
                                   "ftol": 0.0, "gtol": 1e-12})
        stopped = None if state[0] >= steps else str(result.message)
    except StopIteration:
        stopped = None
    except _NonFinite as err:
        progress.step = state[0]
        return run.diverged(state[1], progress, str(err))
    except KeyboardInterrupt:
        progress.step, params = state
        return run.interrupted(params, progress)
    progress.step, params = state
    result = run.done(params, progress)
    if stopped and result.status == "done":
        result.message = f"L-BFGS stopped at iteration {progress.step}: {stopped}"
    return result
