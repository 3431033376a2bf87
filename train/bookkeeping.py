"""The bookkeeping of a run, shared by the optimizers (:mod:`train.loop`, :mod:`train.lbfgs`):
its history and best evaluation, its files and their statuses, its progress lines and ETA.

* Every ``eval_every`` steps, and at the last, the validation MSE is computed and one progress
  line goes to the log; the checkpoint and the metrics file are rewritten there, each
  atomically, the checkpoint first. A progress line averages the training losses and gradient
  norms since the previous evaluation, and ends with an ETA (``eta 1:05``): the median
  seconds per step of this session's evaluation windows times the steps left (``eta ?``
  before any step is timed).
* ``metrics.json`` describes the checkpoint on disk: its ``step`` is the checkpoint's, its
  ``status`` ``"running"``, ``"done"``, ``"interrupted"``, ``"diverged"`` or ``"failed"`` (a
  file could not be written). The checkpoint is written first, and it is the truth.
* At every evaluation whose validation MSE is the lowest so far, the parameters are saved to
  ``best.npz`` beside the checkpoint; with ``config.patience`` P the run stops after P
  evaluations without a lower one (counted from the history alone).
"""
import contextlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import lstm_ag
from lstm_ag import flatten

from . import signals
from .checkpoint import HISTORY_KEYS, Progress, load_best, save_checkpoint
from .config import TrainConfig
from .data import Task

__all__ = ["BEST_NAME", "FitResult", "State", "Run", "best_row", "best_path",
           "validation_mse", "evaluation_due", "clock", "format_row", "metrics_content"]

#: The file of the best parameters, beside the checkpoint.
BEST_NAME = "best.npz"


@dataclass
class FitResult:
    """What :func:`fit` returns.

    - params: the trained parameters: those of ``progress.step``, or with
      ``config.patience`` > 0 those of the best evaluation (``best_step``).
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

    @property
    def best(self):
        """The history's row with the lowest validation MSE (the first such), or None."""
        return best_row(self.progress.history)

    @property
    def best_step(self):
        """The step of :attr:`best`, or None."""
        return None if self.best is None else self.best["step"]


def best_row(history: list) -> dict | None:
    """The row of ``history`` with the lowest ``val_mse`` (the earliest of equals), or None."""
    return min(history, key=lambda row: row["val_mse"]) if history else None


def best_path(checkpoint: str | os.PathLike) -> str:
    """Where the best parameters of the run of ``checkpoint`` go: ``best.npz`` beside it."""
    return os.path.join(os.path.dirname(os.fspath(checkpoint)), BEST_NAME)


class State(NamedTuple):
    """The training state, replaced in one assignment per step (Ctrl-C never splits it)."""
    step: int
    params: dict
    velocity: dict | None
    carry: dict | None = None


def evaluation_due(step: int, config: TrainConfig) -> bool:
    """True when step ``step`` (steps completed) is evaluated: every ``config.eval_every``
    steps, and at the last."""
    return step % config.eval_every == 0 or step == config.steps


def validation_mse(params: dict, task: Task) -> float:
    """The validation MSE of ``params`` on ``task`` (with its validation weights,
    ``task.val_weights``), a float; ``inf`` where it overflows."""
    with np.errstate(all="ignore"):
        try:
            return float(lstm_ag.mse(params, task.val_x, task.val_y, mask=task.val_weights))
        except OverflowError:             # lstm_ag names an overflow: not finite, diverged
            return math.inf


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on) of a duration in seconds."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_row(row: dict, steps: int, eta: float | None = None) -> str:
    """The progress line of a history ``row`` of a run of ``steps`` steps."""
    width = len(str(steps))
    ratio = row["baseline_mse"] / row["val_mse"] if row["val_mse"] > 0 else math.inf
    train = "-" if row["train_loss"] is None else f"{row['train_loss']:.3e}"
    norm = "-" if row["grad_norm"] is None else f"{row['grad_norm']:.3g}"
    text = (f"step {row['step']:>{width}}/{steps}  {row['steps_per_second']:7.1f} steps/s  "
            f"train {train}  val {row['val_mse']:.3e}  "
            f"baseline {row['baseline_mse']:.3e} ({ratio:.1f}x)  |g| {norm}")
    if row.get("lr") is not None:
        text += f"  lr {row['lr']:.3g}"
    return text + f"  eta {'?' if eta is None else clock(eta)}"   # ?: no step timed yet


class Run:
    """Bookkeeping of a run, shared by the optimizers: timing, history, files, results.

    - task, config: the run's; start: the :class:`Progress` it continues, or None;
      checkpoint, metrics: the paths of its files, or None; log: where progress lines go;
      score: ``score(params, task)``, the validation measure (:func:`validation_mse`);
      save: ``save(path, params, progress, config, task_spec)``, the checkpoint's writer
      (:func:`train.checkpoint.save_checkpoint`).
    """

    def __init__(self, task, config, start, checkpoint, metrics, log, score=validation_mse,
                 save=save_checkpoint):
        self.task, self.config, self.log = task, config, log
        self.score, self.save_checkpoint = score, save
        self.task, self.config, self.log = task, config, log
        self.checkpoint, self.metrics = checkpoint, metrics
        resumed = start is not None
        start = Progress() if start is None else start
        self.history, self.seconds0 = list(start.history), start.seconds
        self.baseline_mse = task.baseline_mse
        self.started = time.perf_counter()
        # The step of the checkpoint on disk (a resumed run's: its start), and the progress
        # last written to disk (checkpoint or metrics), which metrics.json must describe.
        self.saved_step = start.step if checkpoint is not None and resumed else None
        self.saved = None
        self.losses, self.norms = list(start.losses), list(start.norms)  # since the last eval
        self.window_start, self.window_step = time.perf_counter(), start.step
        self.best = None                 # (row, params) of the lowest validation MSE
        self.best_file = None if checkpoint is None else best_path(checkpoint)
        self.step_seconds = []           # seconds per step of each window, for the ETA

    def resumed_notes(self, start):
        """The lines a resumed run starts its log with: a checkpoint of another lstm_ag
        version, and a metrics.json that lags its checkpoint (the trainer was killed between
        the two writes: the checkpoint is the truth, and metrics.json is rewritten from it
        when the run starts)."""
        version = start.written_by
        if version is not None and version != lstm_ag.__version__:
            who = f"lstm_ag {version}" if version else "an lstm_ag that did not record its version"
            print(f"note: {self.checkpoint or 'the checkpoint'} was written by {who}; this is "
                  f"lstm_ag {lstm_ag.__version__} (its fields were checked and are read as "
                  "this version writes them)", file=self.log, flush=True)
        if self.metrics is None or self.checkpoint is None or self.saved_step is None:
            return
        try:
            with open(self.metrics, encoding="utf-8") as file:
                step = json.load(file).get("step")
        except (OSError, ValueError, AttributeError):
            step = "unreadable"
        if step != start.step:
            print(f"note: {self.metrics} described step {step}, the checkpoint holds step "
                  f"{start.step} (the trainer was stopped between the two writes); it is "
                  "rewritten from the checkpoint", file=self.log, flush=True)

    def eta(self, step):
        """Seconds left until ``config.steps``: the median seconds per step of the windows so
        far (this session's), times the steps left; None before the first window."""
        if not self.step_seconds:
            return None
        return statistics.median(self.step_seconds) * max(self.config.steps - step, 0)

    def restore_best(self, start, params):
        """The best evaluation before ``start``: its parameters from best.npz (or ``params``
        when the best is the start's own step, or no file is kept)."""
        row = best_row(self.history)
        if row is None:
            return
        best = params
        if row["step"] != start.step and self.best_file and os.path.exists(self.best_file):
            best = load_best(self.best_file, row["step"])
        self.best = (row, best)

    def patience_spent(self):
        """True when ``config.patience`` evaluations in a row found no lower validation MSE."""
        patience, best = self.config.patience, best_row(self.history)
        if not patience or best is None:
            return False
        return sum(row["step"] > best["step"] for row in self.history) >= patience

    def seconds(self):
        return self.seconds0 + time.perf_counter() - self.started

    def progress(self, state):
        return Progress(step=state.step, velocity=state.velocity, history=list(self.history),
                        seconds=self.seconds(), losses=list(self.losses),
                        norms=list(self.norms), carry=state.carry)

    def record(self, loss, norm):
        self.losses.append(loss)
        self.norms.append(norm)

    def evaluate_and_save(self, state, lr=None):
        """Evaluate, log a progress line, save: False (and nothing saved) if not finite."""
        done, elapsed = state.step - self.window_step, time.perf_counter() - self.window_start
        row = {"step": state.step,
               "train_loss": float(np.mean(self.losses)) if self.losses else None,
               "val_mse": self.score(state.params, self.task), "baseline_mse": self.baseline_mse,
               "grad_norm": float(np.mean(self.norms)) if self.norms else None, "lr": lr,
               "seconds": self.seconds(), "steps_per_second": done / elapsed if done else 0.0}
        if not math.isfinite(row["val_mse"]):
            return False
        if done:
            self.step_seconds.append(elapsed / done)
        self.history.append(row)
        print(format_row(row, self.config.steps, self.eta(state.step)), file=self.log,
              flush=True)
        self.losses, self.norms = [], []
        self.window_step = state.step
        self.save(state)
        if best_row(self.history) is row:
            self.best = (row, state.params)
            if self.best_file is not None:
                progress = self.progress(state)
                with signals.deferred(replay=True):
                    self._write(self.best_file, lambda path: self.save_checkpoint(
                        path, state.params, progress, self.config, self.task.spec))
        return True

    def save(self, state, status="running", message=None):
        """Write the checkpoint of ``state`` (unless the one on disk is of this step), then
        the metrics file, each atomically, if asked for. A Ctrl-C meanwhile waits for the
        writes; then it is raised if the run is running (else the run is stopping anyway)."""
        progress = self.progress(state)
        with signals.deferred(replay=status == "running"):
            if self.checkpoint is not None and self.saved_step != state.step:
                self._write(self.checkpoint, lambda path: self.save_checkpoint(
                    path, state.params, progress, self.config, self.task.spec))
                self.saved_step = state.step
            self.saved = progress
            self.write_metrics(progress, status, message)
        self.window_start = time.perf_counter()         # steps/s counts training time only

    def write_metrics(self, progress, status, message=None):
        if self.metrics is not None:
            content = json.dumps(metrics_content(self.task, self.config, progress, status, message),
                                 indent=1) + "\n"
            self._write(self.metrics, lambda path: lstm_ag.atomic_write(
                path, lambda file: file.write(content), mode="w"))

    def _write(self, path, write):
        """``write(path)``; an OSError becomes one naming ``path`` (not a temporary file),
        and metrics.json is told, if it can be, that the run failed at the saved step."""
        try:
            write(path)
        except OSError as err:
            failed = OSError(err.errno, err.strerror or str(err), os.fspath(path))
            if self.saved is not None and path != self.metrics:
                with contextlib.suppress(OSError):
                    self.write_metrics(self.saved, "failed", f"cannot write {path}: "
                                                             f"{failed.strerror}")
            raise failed from err

    def result(self, state, status, message):
        params = state.params
        if self.config.patience and self.best is not None and status == "done":
            params = self.best[1]
        return FitResult(params, self.progress(state), status, message, self.config)

    def interrupted(self, state):
        if not all(np.isfinite(v).all() for v in flatten(state.params).values()):
            return self.diverged(state, "the parameters")   # Ctrl-C just as the run diverged
        where = f"; checkpoint saved to {self.checkpoint}" if self.checkpoint else ""
        message = f"interrupted at step {state.step}{where}"
        self.save(state, status="interrupted", message=message)
        return self.result(state, "interrupted", message)

    def diverged(self, state, what):
        if self.saved_step is not None:
            rows = [r for r in self.history if r["step"] == self.saved_step]
            val = f", validation MSE {rows[-1]['val_mse']:.3g}" if rows else ""
            kept = (f"the last good checkpoint (step {self.saved_step}{val}) is kept in "
                    f"{self.checkpoint}")
        else:
            kept = "no checkpoint was written"
        message = (f"training stopped at step {state.step}: {what} is not finite; {kept}. Try "
                   "a smaller --lr or --clip.")
        if self.saved is not None:                     # metrics: the saved step, diverged
            with signals.deferred(replay=False):
                self.write_metrics(self.saved, "diverged", message)
        return self.result(state, "diverged", message)

    def done(self, state):
        evaluated = self.history and self.history[-1]["step"] == state.step
        if not evaluated and not self.evaluate_and_save(state):
            return self.diverged(state, "the validation MSE")
        message = f"done: step {state.step}"
        if self.patience_spent() and state.step < self.config.steps:
            message = (f"stopped early at step {state.step}: no lower validation MSE in "
                       f"{self.config.patience} evaluations")
        if self.config.patience and self.best is not None:
            message += (f"; the result is the best step, {self.best[0]['step']} (validation "
                        f"MSE {self.best[0]['val_mse']:.3e})")
        self.save(state, status="done", message=message)
        return self.result(state, "done", message)


def metrics_content(task, config, progress, status, message=None):
    """The content of metrics.json: the checkpoint's step and the run's status, the last
    evaluation (None before the first), the config, the whole history."""
    row = progress.history[-1] if progress.history else dict.fromkeys(HISTORY_KEYS)
    val = row["val_mse"]
    ratio = task.baseline_mse / val if val else None
    best = best_row(progress.history) or dict.fromkeys(HISTORY_KEYS)
    spec = {k: v for k, v in task.spec.items() if not isinstance(v, np.ndarray)}   # no data
    return {"task": task.name, "status": status, "step": progress.step, "message": message,
            "best_step": best["step"], "best_val_mse": best["val_mse"],
            "evaluated_at": row["step"], "train_loss": row["train_loss"], "val_mse": val,
            "baseline_mse": task.baseline_mse, "baseline": task.baseline,
            "baseline_over_val": ratio, "grad_norm": row["grad_norm"],
            "seconds": progress.seconds, "steps_per_second": row["steps_per_second"],
            "config": config.to_dict(), "task_spec": spec, "history": progress.history}
