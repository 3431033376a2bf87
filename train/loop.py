"""fit(): minibatch SGD (or full-batch L-BFGS) on a task, with evaluation, progress lines,
checkpoints, and clean stops.

* Minibatches are slices of the task's arrays, drawn by ``np.random.default_rng((seed, step))``:
  the batch of a step depends on the seed and the step number only, so a run stopped at step k
  and resumed from its checkpoint (parameters and momentum buffers) computes, bit for bit,
  what an uninterrupted run computes.
* Truncated BPTT (``config.tbptt`` K > 0, :func:`chunk_plan`): a batch of sequences takes
  several steps, one per chunk of K time steps, in order; each starts from the final state of
  the chunk before (detached: no gradient crosses a chunk boundary), the first from a zero
  state. Chunks without loss weight (a burn-in) are run forward only, into the next one's
  state. Step s trains chunk ``s % n`` of batch ``s // n`` (n chunks per batch), so the
  batches depend on the step alone as above; the carried state and the chunk are in the
  checkpoint (``carry``), and a run resumed mid-sequence is bit for bit an uninterrupted one.
  With K = T it is exactly the run without ``tbptt``. Validation runs over whole sequences.
* Every ``eval_every`` steps, and at the last, the validation MSE is computed and one progress
  line goes to ``log`` (stderr); the checkpoint and the metrics file are rewritten there, each
  atomically, the checkpoint first. A progress line averages the training losses and gradient
  norms since the previous evaluation; a checkpoint written between evaluations (on Ctrl-C)
  holds those, so that after a resume the progress lines equal an uninterrupted run's.
* ``metrics.json`` describes the checkpoint on disk: its ``step`` is the checkpoint's, its
  ``status`` ``"running"``, ``"done"``, ``"interrupted"``, ``"diverged"`` or ``"failed"`` (a
  file could not be written). Two files cannot be replaced in one atomic step: the checkpoint
  is written first, and it is the truth. Should the process die between the two writes
  (SIGKILL, a power cut) or metrics.json fail to be written (fit raises the ``OSError``),
  metrics.json is one evaluation behind, and its ``step`` says which checkpoint it describes;
  a resumed run then says so and rewrites it from the checkpoint before it trains (and a
  ``"done"`` is only ever written after the final checkpoint).
* Each progress line ends with an ETA (``eta 1:05``): the median seconds per step of this
  session's evaluation windows times the steps left (``eta ?`` before any step is timed).
* Validation-driven: at every evaluation whose validation MSE is the lowest so far, the
  parameters are saved to ``best.npz`` beside the checkpoint (a checkpoint of that step,
  atomically). With ``config.patience`` P > 0 the run stops early after P evaluations without
  a lower validation MSE, and its result's parameters are the best ones (``FitResult.params``;
  ``FitResult.best_step`` says which step). The count comes from the history alone, so a
  resumed run stops where an uninterrupted one would.
* ``config.threads`` limits numpy's BLAS threads (threadpoolctl) while training; 0 leaves them.
* Ctrl-C (KeyboardInterrupt, also from a callback) saves a checkpoint of the last completed
  step and returns with ``status="interrupted"``. So does SIGTERM (batch schedulers, ``kill``,
  ``docker stop``): the command line handles it as Ctrl-C, and fit itself does when SIGTERM
  is left at the system's default. A signal that arrives while a file is being written waits
  until the write is complete. One that comes while an evaluation runs loses that
  evaluation's row, not for long: a run resumed at an evaluation step whose row its history
  lacks evaluates it first, so that its history is an uninterrupted run's.
* A non-finite loss or gradient (or lstm_ag's ``FloatOverflowError``, an ``OverflowError``)
  stops training before the update, with ``status="diverged"``; the checkpoint on disk is the
  last good one.
* A file that cannot be written (disk full, read-only) raises ``OSError`` naming it; the
  checkpoint on disk is the last good one.
"""
import contextlib
import inspect
import json
import math
import numbers
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TextIO

import numpy as np

import lstm_ag
from lstm_ag import flatten, structure

from .config import TrainConfig
from .data import TASKS, Task
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

#: The file of the best parameters, beside the checkpoint.
BEST_NAME = "best.npz"


@dataclass
class Progress:
    """Where a run stands: what a checkpoint holds besides the parameters and the config.

    - step: steps completed; velocity: the optimizer's buffers: SGD's momentum (a dict like
      params), Adam's moments (``{"m": dict like params, "v": ...}``), None for L-BFGS.
    - history: one dict per evaluation (step, train_loss, val_mse, baseline_mse, grad_norm,
      lr, seconds, steps_per_second); seconds: training time so far, over every session.
    - losses, norms: the training losses and gradient norms of the steps since the last
      evaluation (what its progress line will average).
    - carry: with truncated BPTT, in the middle of a batch's sequences, ``{"chunk": j, "h":
      array, "c": array}``: the state the next step (chunk j of :func:`chunk_plan`) starts
      from; None at the start of a batch, and without ``tbptt``.
    """
    step: int = 0
    velocity: dict | None = None
    history: list = field(default_factory=list)
    seconds: float = 0.0
    losses: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    carry: dict | None = None
    #: The lstm_ag version that wrote the checkpoint resumed from ("" when it recorded none;
    #: None for a fresh run or this version): a resumed run says so in a line of its log.
    written_by: str | None = None


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
    carry: dict | None = None


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """The sequences of minibatch ``step``: ``batch`` distinct indices in ``[0, n)``.

    Drawn by ``np.random.default_rng((seed, step))``, so they depend on nothing else.
    Returns an int array ``(batch,)``.
    """
    if not 1 <= batch <= n:
        raise ValueError(f"batch must be in [1, {n}] (the training set has {n} sequences), "
                         f"got {batch}")
    return np.random.default_rng((seed, step)).choice(n, batch, replace=False)


def chunk_plan(seq_len: int, tbptt: int, mask: np.ndarray | None = None) -> list:
    """The steps of one batch of sequences: ``[(warm, start, stop), ...]``, in order.

    - seq_len: T; tbptt: K, the chunk length (0: whole sequences); mask: the loss weights
      ``(T,)`` of the task, or None.
    The chunks are ``[0, K), [K, 2K), ...`` (the last may be shorter). A step trains on the
    time steps ``[start, stop)`` of a chunk that carries loss weight, from the state at
    ``warm``, the end of the step before (0 for the first): the chunks between, which carry
    no weight, are run forward only. Without ``tbptt``, or with K = T: ``[(0, 0, T)]``.
    """
    K = tbptt or seq_len
    plan, warm = [], 0
    for start in range(0, seq_len, K):
        stop = min(start + K, seq_len)
        if mask is None or np.any(mask[start:stop] > 0):
            plan.append((warm, start, stop))
            warm = stop
    return plan


def state_shape(config: TrainConfig) -> tuple:
    """The shape of each of a training batch's ``(h, c)`` (lstm_ag's layout): ``(B, H)`` for
    one layer and direction, else ``(layers * directions, B, H)``."""
    B, H = config.batch, config.hidden
    stacked = config.layers * config.directions
    return (B, H) if stacked == 1 else (stacked, B, H)


def check_carry(progress: Progress, task: Task, config: TrainConfig) -> None:
    """Raise ``ValueError`` unless ``progress.carry`` is what step ``progress.step`` of a run
    of ``config`` on ``task`` starts from: None at the start of a batch (and without
    ``tbptt``), else ``{"chunk": step % chunks per batch, "h", "c"}`` of :func:`state_shape`."""
    chunks = len(chunk_plan(task.seq_len, config.tbptt, task.mask)) if config.tbptt else 1
    chunk, carry = progress.step % chunks, progress.carry
    if (carry is None) != (chunk == 0):
        raise ValueError(f"carry is {'missing' if carry is None else 'given'} at step "
                         f"{progress.step}, chunk {chunk} of the {chunks} of a batch (a carried "
                         "state is there exactly when a step is in the middle of a batch)")
    if carry is not None:
        if carry.get("chunk") != chunk:
            raise ValueError(f"carry is the state before chunk {carry.get('chunk')!r}, but step "
                             f"{progress.step} trains chunk {chunk} of {chunks}")
        for key in ("h", "c"):
            value = carry.get(key)
            if (not isinstance(value, np.ndarray) or value.shape != state_shape(config)
                    or not np.isfinite(value).all()):
                raise ValueError(f"carry['{key}'] must be a finite array of shape "
                                 f"{state_shape(config)}")


def evaluate(params: dict, task: Task) -> float:
    """The validation MSE of ``params`` on ``task`` (with its validation weights,
    ``task.val_weights``), a float."""
    with np.errstate(all="ignore"):
        try:
            return float(lstm_ag.mse(params, task.val_x, task.val_y, mask=task.val_weights))
        except OverflowError:             # lstm_ag names an overflow: not finite, diverged
            return math.inf


def save_checkpoint(path, params: dict, progress: Progress, config: TrainConfig,
                    task_spec: dict) -> str:
    """Save parameters, the config (whole), the task's spec and the progress (momentum buffers
    and the steps since the last evaluation included) with ``lstm_ag.save``: an ``.npz``,
    never pickled, written atomically.

    - path: the ``.npz`` file; params: the parameter dict; progress: a :class:`Progress`;
      config: the run's :class:`TrainConfig`; task_spec: ``task.spec``.
    Returns ``path``.
    """
    window = {"losses": np.array(progress.losses, dtype=np.float64),
              "norms": np.array(progress.norms, dtype=np.float64)}
    return lstm_ag.save(path, params, config=config.to_dict(), task_spec=task_spec,
                        step=progress.step, velocity=progress.velocity,
                        history=progress.history, seconds=progress.seconds, window=window,
                        carry=progress.carry, lstm_ag_version=lstm_ag.__version__)


#: The metadata of a checkpoint: required, then optional (window: older checkpoints lack it,
#: and their first progress line after a resume averages the resumed steps only; carry: the
#: state truncated BPTT carries, null between batches and without it).
CHECKPOINT_FIELDS = ("config", "task_spec", "step", "velocity", "history", "seconds")
OPTIONAL_FIELDS = ("window", "carry", "lstm_ag_version")
#: The keys of a row of the history, one row per evaluation.
HISTORY_KEYS = ("step", "train_loss", "val_mse", "baseline_mse", "grad_norm", "lr", "seconds",
                "steps_per_second")


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`, validating every field.

    The metadata's fields, their names and the config are checked before any array of the
    file is inflated (``lstm_ag.load(check=...)``): a foreign file costs no memory. A file of
    another lstm_ag version is read when its fields are this version's (``progress.
    written_by`` names that version, and the resumed run says so); where they differ, the
    error names both versions. Returns a :class:`Checkpoint` ``(params, config, progress,
    task_spec)``. Raises
    ``lstm_ag.CheckpointError`` naming the file and the field when it lacks the trainer's
    metadata or has other fields, its config is not a valid :class:`TrainConfig`, its step,
    history, seconds or window are not what this trainer writes, the task's spec does not
    describe the config's task, or the parameters or momentum buffers do not fit the config.
    """
    name = os.fspath(path)
    params, meta = lstm_ag.load(path, check=lambda meta, layouts: _check_fields(name, meta))
    version = meta.get("lstm_ag_version", "")
    config = _checked_config(name, meta["config"], version)
    try:
        progress = _checked_progress(params, meta, config)
        task_spec = _checked_task_spec(meta["task_spec"], config)
    except _BadField as err:
        why = _other_version(version) or (" (a checkpoint of this trainer never has that; "
                                          "the file was altered)")
        raise lstm_ag.CheckpointError(f"{name}: {err.field} {err.problem}{why}") from None
    return Checkpoint(params, config, progress, task_spec)


def _other_version(version):
    """Why a checkpoint of another lstm_ag version may be refused: its format differs."""
    if version == lstm_ag.__version__ or not isinstance(version, str):
        return ""
    who = f"lstm_ag {version}" if version else "an lstm_ag that did not record its version"
    return (f" (written by {who}; this is lstm_ag {lstm_ag.__version__}, whose checkpoints "
            "differ there: resume it with that version, or start a new run)")


def _check_fields(name, meta):
    """The checks of the metadata that :func:`lstm_ag.load` runs before inflating any array:
    the trainer's fields, none other, and the version as a string."""
    version = meta.get("lstm_ag_version", "")
    if not isinstance(version, str):
        raise lstm_ag.CheckpointError(f"{name}: lstm_ag_version must be a string, got "
                                      f"{repr(version)[:60]}")
    missing = [k for k in CHECKPOINT_FIELDS if k not in meta]
    if missing:
        raise lstm_ag.CheckpointError(f"{name}: not a checkpoint of this trainer (its metadata "
                                      f"lacks {missing})"
                                      f"{_other_version(version) if version else ''}")
    unknown = sorted(set(meta) - set(CHECKPOINT_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        shown = unknown[:5] + (["..."] if len(unknown) > 5 else [])
        raise lstm_ag.CheckpointError(f"{name}: not a checkpoint of this trainer (unknown "
                                      f"metadata {shown}){_other_version(version)}")
    _checked_config(name, meta["config"], version)


def _checked_config(name, raw, version):
    """The :class:`TrainConfig` of a checkpoint's ``config`` (plain JSON: checked before any
    array is read), or a CheckpointError naming the file."""
    try:
        config = TrainConfig.from_dict(raw)
        nulls = sorted(k for k, v in raw.items() if v is None)
        if nulls:                         # None means "the task's default"; never written
            raise ValueError(f"{nulls} must hold values, got null")
    except ValueError as err:
        raise lstm_ag.CheckpointError(f"{name}: its config is not valid: {err}"
                                      f"{_other_version(version)}") from None
    return config


class _BadField(Exception):
    def __init__(self, field, problem):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def _number(value, field, *, low=0.0, none=False, integer=False):
    """``value`` if it is a finite number >= low (an int if ``integer``; None if ``none``)."""
    if value is None and none:
        return value
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _BadField(field, f"must be {'an integer' if integer else 'a number'}"
                               f"{' or null' if none else ''}, got {value!r}")
    if not math.isfinite(value) or value < low:
        raise _BadField(field, f"must be a finite number >= {low}, got {value!r}")
    return value


def _checked_progress(params, meta, config):
    hidden = lstm_ag.check_params(params, readout=True)[1]
    if hidden != config.hidden:
        raise _BadField("params", f"have H={hidden}, its config hidden={config.hidden}")
    layers, directions = structure(params)
    if (layers, directions) != (config.layers, config.directions):
        raise _BadField("params", f"have {layers} layers and {directions} directions, its "
                                  f"config layers={config.layers}, bidirectional="
                                  f"{config.bidirectional}")
    step = _number(meta["step"], "step", integer=True)
    if step > config.steps:
        raise _BadField("step", f"{step} exceeds its config's steps={config.steps}")
    seconds = float(_number(meta["seconds"], "seconds"))
    history = meta["history"]
    if not isinstance(history, list):
        raise _BadField("history", f"must be a list of rows, got {type(history).__name__}")
    previous = 0
    for i, row in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(row, dict) or sorted(row) != sorted(HISTORY_KEYS):
            raise _BadField(where, f"must be a dict with the keys {list(HISTORY_KEYS)}, got "
                                   f"{sorted(row) if isinstance(row, dict) else row!r}")
        row_step = _number(row["step"], f"{where}.step", low=previous + 1, integer=True)
        if row_step > step:
            raise _BadField(f"{where}.step", f"{row_step} exceeds the checkpoint's step {step}")
        previous = row_step
        for key in ("val_mse", "baseline_mse", "seconds", "steps_per_second"):
            _number(row[key], f"{where}.{key}")
        for key in ("train_loss", "grad_norm", "lr"):
            _number(row[key], f"{where}.{key}", none=True)
    velocity = _checked_velocity(meta["velocity"], params, config)
    window = meta.get("window", {"losses": np.zeros(0), "norms": np.zeros(0)})
    if not isinstance(window, dict) or sorted(window) != ["losses", "norms"]:
        raise _BadField("window", "must be a dict of 'losses' and 'norms'")
    since = step - previous
    for key in ("losses", "norms"):
        values = window[key]
        if (not isinstance(values, np.ndarray) or values.dtype != np.float64
                or values.ndim != 1 or len(values) > since):
            raise _BadField(f"window.{key}", f"must be a float64 vector of at most {since} "
                                             "values (the steps since the last evaluation)")
        if not (np.isfinite(values).all() and (values >= 0).all()):
            raise _BadField(f"window.{key}", "must hold finite values >= 0")
    if len(window["losses"]) != len(window["norms"]):
        raise _BadField("window", "must hold as many losses as norms")
    version = meta.get("lstm_ag_version", "")
    return Progress(step=step, velocity=velocity, history=list(history), seconds=seconds,
                    losses=window["losses"].tolist(), norms=window["norms"].tolist(),
                    carry=_checked_carry(meta.get("carry"), params, config),
                    written_by=None if version == lstm_ag.__version__ else version)


def _checked_carry(carry, params, config):
    """None, or with ``tbptt`` ``{"chunk": int >= 1, "h": ..., "c": ...}`` in the parameters'
    dtype and :func:`state_shape` (whether the chunk is the step's is checked against the
    task: :func:`check_carry`)."""
    if carry is None:
        return None
    if not config.tbptt:
        raise _BadField("carry", "must be null without tbptt")
    if not isinstance(carry, dict) or sorted(carry) != ["c", "chunk", "h"]:
        raise _BadField("carry", "must be null or {'chunk': ..., 'h': ..., 'c': ...}")
    _number(carry["chunk"], "carry.chunk", low=1, integer=True)
    dtype, shape = params["Wx"].dtype, state_shape(config)
    for key in ("h", "c"):
        value = carry[key]
        if (not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != shape
                or not np.isfinite(value).all()):
            raise _BadField(f"carry.{key}", f"must be a finite state: {dtype}, shape {shape}")
    return dict(carry)


def _checked_velocity(velocity, params, config, field="velocity"):
    """SGD: momentum buffers like the parameters; Adam: ``{"m": ..., "v": ...}``, each like
    the parameters; L-BFGS: None."""
    if config.optimizer == "lbfgs":
        if velocity is not None:
            raise _BadField("velocity", "must be null for optimizer lbfgs")
        return None
    if config.optimizer == "adam" and field == "velocity":
        if not isinstance(velocity, dict) or sorted(velocity) != ["m", "v"]:
            raise _BadField("velocity", "must hold Adam's moments {'m': ..., 'v': ...}")
        return {key: _checked_velocity(velocity[key], params, config, f"velocity[{key!r}]")
                for key in ("m", "v")}
    arrays = flatten(params)
    if not isinstance(velocity, dict) or sorted(flatten(velocity)) != sorted(arrays):
        given = sorted(flatten(velocity)) if isinstance(velocity, dict) else repr(velocity)
        raise _BadField(field, f"must hold buffers for {sorted(arrays)}, got {given}")
    for key, value in flatten(velocity).items():
        if (not isinstance(value, np.ndarray) or value.shape != arrays[key].shape
                or value.dtype != arrays[key].dtype or not np.isfinite(value).all()):
            raise _BadField(f"{field}[{key!r}]", "must be a finite buffer like the "
                                                  f"parameter: {arrays[key].dtype}, shape "
                                                  f"{arrays[key].shape}")
    return velocity


def _checked_task_spec(spec, config):
    """The task's spec: the config's task, seq_len and train_size, and only arguments of its
    generator (their values are checked when the task is made)."""
    if not isinstance(spec, dict):
        raise _BadField("task_spec", f"must be a dict, got {type(spec).__name__}")
    if config.task not in TASKS:
        return dict(spec)
    expected = {"name": config.task, "seq_len": config.seq_len, "n_train": config.train_size}
    for key, value in expected.items():
        given = spec.get(key)
        if type(given) is not type(value) or given != value:
            raise _BadField(f"task_spec.{key}", f"must be its config's {value!r}, got "
                                                f"{given!r}")
    allowed = set(inspect.signature(TASKS[config.task]).parameters) | {"name"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise _BadField("task_spec", f"has arguments {unknown} that task {config.task!r} "
                                     "does not take")
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _BadField(f"task_spec.{key}", f"must be a number, got {value!r}")
    for key in ("n_val", "seed"):
        if key in spec:
            _number(spec[key], f"task_spec.{key}", low=1 if key == "n_val" else 0,
                    integer=True)
    return dict(spec)


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
    if config.threads:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(limits=config.threads, user_api="blas")
    else:
        limits = contextlib.nullcontext()
    with limits, _sigterm_as_ctrl_c():
        return _fit(params, task, config, start, checkpoint, metrics, callback, log)


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """While :func:`fit` runs in the main thread, a SIGTERM left at the system's default (which
    would end the process without a word) acts as Ctrl-C: the run stops with its checkpoint
    saved. A handler set by the caller (the command line's) is left alone."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL):
        yield
        return

    def handle(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fit(params, task, config, start, checkpoint, metrics, callback, log):
    run = _Run(task, config, start, checkpoint, metrics, sys.stderr if log is None else log)
    start = Progress() if start is None else start
    velocity = start.velocity
    if velocity is None and config.optimizer == "sgd":
        velocity = init_velocity(params)
    if velocity is None and config.optimizer == "adam":
        velocity = init_moments(params)
    run.restore_best(start, params)
    state = _State(start.step, params, velocity, start.carry)
    run.resumed_notes(start)
    if _evaluation_missing(start, config):       # stopped during the evaluation of its step
        run.saved_step = None                    # its checkpoint is rewritten with the row
        lr = (learning_rate(config.lr, start.step - 1, config.lr_decay)
              if config.lr_decay and config.optimizer != "lbfgs" else None)
        try:
            if not run.evaluate_and_save(state, lr=lr):
                return run.diverged(state, "the validation MSE")
        except KeyboardInterrupt:
            return run.interrupted(state)
        if run.patience_spent():
            return run.done(state)
    if state.step >= config.steps:
        message = f"already at step {state.step} (>= steps={config.steps}); nothing to do"
        run.save(state, status="done", message=message)
        return run.result(state, "done", message)
    if config.optimizer == "lbfgs":
        return _fit_lbfgs(state, task, config, run, callback)

    try:
        run.save(state)                   # a checkpoint from the start; metrics: running
        plan = chunk_plan(task.seq_len, config.tbptt, task.mask)
        while state.step < config.steps:
            step, params, velocity, carry = state
            batch, chunk = divmod(step, len(plan))
            idx = batch_indices(config.seed, batch, task.train_x.shape[1], config.batch)
            with np.errstate(all="ignore"):           # non-finite values are handled below
                try:
                    out = _step(params, task, config, idx, plan[chunk], carry)
                except OverflowError as err:          # lstm_ag names an overflow
                    return run.diverged(state, "the gradient norm" if "in the gradient"
                                        in str(err) else "the loss")
                loss, grads = float(out[0]), out[1]
                carry = None
                if chunk + 1 < len(plan):             # the batch goes on: carry its state
                    carry = {"chunk": chunk + 1, "h": out[2][0], "c": out[2][1]}
                grads, norm = clip_by_global_norm(grads, config.clip)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    return run.diverged(state, "the loss" if not math.isfinite(loss)
                                        else "the gradient norm")
                if carry is not None and not (np.isfinite(carry["h"]).all()
                                              and np.isfinite(carry["c"]).all()):
                    return run.diverged(state, "the carried state")
                lr = learning_rate(config.lr, step, config.lr_decay)
                if config.optimizer == "adam":
                    params, velocity = adam_update(params, grads, velocity, lr=lr, step=step)
                else:
                    params, velocity = momentum_update(params, grads, velocity, lr=lr,
                                                       momentum=config.momentum)
            state = _State(step + 1, params, velocity, carry)
            run.record(loss, norm)
            if callback is not None:
                callback(state.step, params, {"loss": loss, "grad_norm": norm, "lr": lr})
            evaluation = state.step % config.eval_every == 0 or state.step == config.steps
            if evaluation and not run.evaluate_and_save(state, lr=lr if config.lr_decay else None):
                return run.diverged(state, "the validation MSE")
            if evaluation and run.patience_spent():
                break
    except KeyboardInterrupt:
        return run.interrupted(state)
    return run.done(state)


def _step(params, task, config, idx, chunk, carry):
    """The loss and gradient of one step: ``value_and_grad`` on the batch ``idx`` over the
    time steps of ``chunk = (warm, start, stop)`` of :func:`chunk_plan`, from the carried
    state (the chunks between ``warm`` and ``start``, without loss weight, run forward only);
    with ``tbptt`` also the final state."""
    warm, start, stop = chunk
    initial = None if carry is None else (carry["h"], carry["c"])
    if warm < start:
        initial = lstm_ag.predict(params, task.train_x[warm:start, idx], initial,
                                  method=config.method, return_state=True)[1]
    carried = {"return_state": True} if config.tbptt else {}   # the final state
    return lstm_ag.value_and_grad(
        params, task.train_x[start:stop, idx], task.train_y[start:stop, idx], initial,
        method=config.method, mask=None if task.mask is None else task.mask[start:stop],
        **carried)


def _evaluation_missing(start, config):
    """True when ``start`` is at an evaluation step (every ``eval_every``, and the last) whose
    row the history lacks: the run was stopped while evaluating it (a Ctrl-C, SIGTERM or
    SIGKILL between the step and its row), and a resumed run evaluates it first, so that its
    history is an uninterrupted run's ([50, 100], never [100])."""
    step = start.step
    if step == 0 or not (step % config.eval_every == 0 or step == config.steps):
        return False
    return not start.history or start.history[-1]["step"] != step


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


def _clock(seconds):
    """``m:ss`` (``h:mm:ss`` from an hour on) of a duration in seconds."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _format_row(row, steps, eta=None):
    width = len(str(steps))
    ratio = row["baseline_mse"] / row["val_mse"] if row["val_mse"] > 0 else math.inf
    train = "-" if row["train_loss"] is None else f"{row['train_loss']:.3e}"
    norm = "-" if row["grad_norm"] is None else f"{row['grad_norm']:.3g}"
    text = (f"step {row['step']:>{width}}/{steps}  {row['steps_per_second']:7.1f} steps/s  "
            f"train {train}  val {row['val_mse']:.3e}  "
            f"baseline {row['baseline_mse']:.3e} ({ratio:.1f}x)  |g| {norm}")
    if row.get("lr") is not None:
        text += f"  lr {row['lr']:.3g}"
    return text + f"  eta {'?' if eta is None else _clock(eta)}"   # ?: no step timed yet


class _Run:
    """Bookkeeping of a run, shared by the optimizers: timing, history, files, results."""

    def __init__(self, task, config, start, checkpoint, metrics, log):
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
            best, meta = lstm_ag.load(self.best_file)
            if meta.get("step") != row["step"]:
                raise lstm_ag.CheckpointError(f"{self.best_file}: holds step "
                                              f"{meta.get('step')}, the history's best is "
                                              f"step {row['step']}")
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
               "val_mse": evaluate(state.params, self.task), "baseline_mse": self.baseline_mse,
               "grad_norm": float(np.mean(self.norms)) if self.norms else None, "lr": lr,
               "seconds": self.seconds(), "steps_per_second": done / elapsed if done else 0.0}
        if not math.isfinite(row["val_mse"]):
            return False
        if done:
            self.step_seconds.append(elapsed / done)
        self.history.append(row)
        print(_format_row(row, self.config.steps, self.eta(state.step)), file=self.log,
              flush=True)
        self.losses, self.norms = [], []
        self.window_step = state.step
        self.save(state)
        if best_row(self.history) is row:
            self.best = (row, state.params)
            if self.best_file is not None:
                progress = self.progress(state)
                with _ctrl_c_deferred(replay=True):
                    self._write(self.best_file, lambda path: save_checkpoint(
                        path, state.params, progress, self.config, self.task.spec))
        return True

    def save(self, state, status="running", message=None):
        """Write the checkpoint of ``state`` (unless the one on disk is of this step), then
        the metrics file, each atomically, if asked for. A Ctrl-C meanwhile waits for the
        writes; then it is raised if the run is running (else the run is stopping anyway)."""
        progress = self.progress(state)
        with _ctrl_c_deferred(replay=status == "running"):
            if self.checkpoint is not None and self.saved_step != state.step:
                self._write(self.checkpoint, lambda path: save_checkpoint(
                    path, state.params, progress, self.config, self.task.spec))
                self.saved_step = state.step
            self.saved = progress
            self.write_metrics(progress, status, message)
        self.window_start = time.perf_counter()         # steps/s counts training time only

    def write_metrics(self, progress, status, message=None):
        if self.metrics is not None:
            content = json.dumps(_metrics(self.task, self.config, progress, status, message),
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
            with _ctrl_c_deferred(replay=False):
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


#: The signals that stop a run cleanly: Ctrl-C, and SIGTERM (what batch schedulers, ``kill``
#: and ``docker stop`` send), which the command line handles as Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _ctrl_c_deferred(replay):
    """Hold a Ctrl-C (SIGINT) or SIGTERM back while files are written: no file is left half
    done by one (nor by a second one while stopping). Afterwards, if one came and ``replay``,
    it goes to the handler in place before for its signal (SIGINT's default: KeyboardInterrupt
    is raised). Only in the main thread (where Python runs signal handlers), and only for a
    signal with a Python handler (or SIGINT's default); a SIGTERM left at the system's default
    ends the process as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    held = []
    for signum, handler in previous.items():
        if callable(handler) or (signum == signal.SIGINT and handler == signal.SIG_DFL):
            signal.signal(signum, lambda number, frame: held.append((number, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)
    if held and replay:
        signum, frame = held[0]
        if callable(previous[signum]):
            previous[signum](signum, frame)
        else:
            raise KeyboardInterrupt


def _metrics(task, config, progress, status, message=None):
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
            try:
                loss, grads = lstm_ag.value_and_grad(unflatten(x), task.train_x, task.train_y,
                                                     method=config.method, mask=task.mask)
            except OverflowError:          # lstm_ag names an overflow: the loss, say
                raise NonFinite("the loss") from None
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
        evaluation = state.step % config.eval_every == 0 or state.step == config.steps
        if evaluation and not run.evaluate_and_save(state):
            raise NonFinite("the validation MSE")
        if state.step >= config.steps or (evaluation and run.patience_spent()):
            raise StopIteration

    try:
        run.save(state)                   # a checkpoint from the start; metrics: running
        result = minimize(objective, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
                          options={"maxiter": config.steps - state.step,
                                   "maxfun": 20 * config.steps, "ftol": 0.0, "gtol": 1e-12})
        stopped = None if state.step >= config.steps or run.patience_spent() \
            else str(result.message)
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
