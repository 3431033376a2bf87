"""The trainer's checkpoint: what it holds (:class:`Progress`), how it is written
(:func:`save_checkpoint`) and read (:func:`load_checkpoint`), and its schema, checked once.

A checkpoint is ``lstm_ag.save``'s ``.npz`` (never pickled, written atomically): the
parameters, and as metadata the fields of :data:`SCHEMA`. :func:`load_checkpoint` reads it
with ``lstm_ag.load(path, check=...)``: the fields' names and the config are checked before
any array is inflated (a foreign file costs no memory), every other field after, each by its
entry of :data:`SCHEMA`; :func:`task_of` then checks the task its spec makes against the
parameters and the carried state. A caller never checks a field again.
"""
import inspect
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

import lstm_ag
from lstm_ag import flatten, structure

from .batches import check_carry, state_shape
from .config import TrainConfig
from .data import TASKS, make_task

__all__ = ["Progress", "Checkpoint", "save_checkpoint", "load_checkpoint", "task_of",
           "load_best", "SCHEMA", "CHECKPOINT_FIELDS", "OPTIONAL_FIELDS", "HISTORY_KEYS"]


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



class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns: ``params, config, progress, task_spec``.

    task_spec: the task's ``spec``; ``make_task(**task_spec)`` regenerates the task.
    """
    params: dict
    config: TrainConfig
    progress: Progress
    task_spec: dict


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
#: A row's numbers: ``{key: may it be null}`` (its step is checked against the rows before).
ROW_NUMBERS = {"val_mse": False, "baseline_mse": False, "seconds": False,
               "steps_per_second": False, "train_loss": True, "grad_norm": True, "lr": True}


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
    params, meta = lstm_ag.load(path, check=lambda meta, layouts: _check_names(name, meta))
    version = meta.get("lstm_ag_version", "")
    config = _checked_config(name, meta["config"], version)
    try:
        _check_params(params, config)
        checked = {}
        for key, check in SCHEMA.items():
            checked[key] = check(meta.get(key, _ABSENT.get(key)), params, config, checked)
    except _BadField as err:
        why = _other_version(version) or (" (a checkpoint of this trainer never has that; "
                                          "the file was altered)")
        raise lstm_ag.CheckpointError(f"{name}: {err.field} {err.problem}{why}") from None
    window = checked["window"]
    progress = Progress(step=checked["step"], velocity=checked["velocity"],
                        history=checked["history"], seconds=checked["seconds"],
                        losses=window["losses"].tolist(), norms=window["norms"].tolist(),
                        carry=checked["carry"],
                        written_by=None if version == lstm_ag.__version__ else version)
    return Checkpoint(params, config, progress, checked["task_spec"])


def task_of(path, checkpoint: Checkpoint, config: TrainConfig | None = None):
    """The task ``checkpoint`` (read from ``path``) trains on, made from its spec, and checked
    against its parameters (D, O) and, for ``config`` (default its own), its carried state.
    Raises ``lstm_ag.CheckpointError`` naming the file."""
    name = os.fspath(path)
    try:
        task = make_task(**checkpoint.task_spec)
    except (TypeError, ValueError) as err:
        raise lstm_ag.CheckpointError(f"{name}: task_spec: {err}") from None
    D, _, O = lstm_ag.check_params(checkpoint.params, readout=True)
    if (task.input_size, task.output_size) != (D, O):
        raise lstm_ag.CheckpointError(f"{name}: params: D={D}, O={O}, the task "
                                      f"{task.name!r} has D={task.input_size}, "
                                      f"O={task.output_size}")
    try:
        check_carry(checkpoint.progress, task, config or checkpoint.config)
    except ValueError as err:
        raise lstm_ag.CheckpointError(f"{name}: {err} (a checkpoint of this trainer "
                                      "never has that; the file was altered)") from None
    return task


def load_best(path, step: int) -> dict:
    """The parameters in ``path`` (a run's ``best.npz``), which must be those of ``step``."""
    params, meta = lstm_ag.load(path)
    if meta.get("step") != step:
        raise lstm_ag.CheckpointError(f"{path}: holds step {meta.get('step')}, the history's "
                                      f"best is step {step}")
    return params


def _other_version(version):
    """Why a checkpoint of another lstm_ag version may be refused: its format differs."""
    if version == lstm_ag.__version__ or not isinstance(version, str):
        return ""
    who = f"lstm_ag {version}" if version else "an lstm_ag that did not record its version"
    return (f" (written by {who}; this is lstm_ag {lstm_ag.__version__}, whose checkpoints "
            "differ there: resume it with that version, or start a new run)")


def _check_names(name, meta):
    """The checks of the metadata that :func:`lstm_ag.load` runs before inflating any array:
    the trainer's fields, none other, the version as a string, and the config."""
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


def _check_params(params, config):
    hidden = lstm_ag.check_params(params, readout=True)[1]
    if hidden != config.hidden:
        raise _BadField("params", f"have H={hidden}, its config hidden={config.hidden}")
    layers, directions = structure(params)
    if (layers, directions) != (config.layers, config.directions):
        raise _BadField("params", f"have {layers} layers and {directions} directions, its "
                                  f"config layers={config.layers}, bidirectional="
                                  f"{config.bidirectional}")


def _step(step, params, config, checked):
    step = _number(step, "step", integer=True)
    if step > config.steps:
        raise _BadField("step", f"{step} exceeds its config's steps={config.steps}")
    return step


def _seconds(seconds, params, config, checked):
    return float(_number(seconds, "seconds"))


def _history(history, params, config, checked):
    """A list of rows of :data:`HISTORY_KEYS`, their steps rising up to the checkpoint's."""
    if not isinstance(history, list):
        raise _BadField("history", f"must be a list of rows, got {type(history).__name__}")
    previous = 0
    for i, row in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(row, dict) or sorted(row) != sorted(HISTORY_KEYS):
            raise _BadField(where, f"must be a dict with the keys {list(HISTORY_KEYS)}, got "
                                   f"{sorted(row) if isinstance(row, dict) else row!r}")
        previous = _number(row["step"], f"{where}.step", low=previous + 1, integer=True)
        if previous > checked["step"]:
            raise _BadField(f"{where}.step", f"{previous} exceeds the checkpoint's step "
                                             f"{checked['step']}")
        for key, none in ROW_NUMBERS.items():
            _number(row[key], f"{where}.{key}", none=none)
    return list(history)


def _velocity(velocity, params, config, checked, field="velocity"):
    """SGD: momentum buffers like the parameters; Adam: ``{"m": ..., "v": ...}``, each like
    the parameters; L-BFGS: None."""
    if config.optimizer == "lbfgs":
        if velocity is not None:
            raise _BadField("velocity", "must be null for optimizer lbfgs")
        return None
    if config.optimizer == "adam" and field == "velocity":
        if not isinstance(velocity, dict) or sorted(velocity) != ["m", "v"]:
            raise _BadField("velocity", "must hold Adam's moments {'m': ..., 'v': ...}")
        return {key: _velocity(velocity[key], params, config, checked, f"velocity[{key!r}]")
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


def _window(window, params, config, checked):
    """The losses and gradient norms of the steps since the last evaluation."""
    if not isinstance(window, dict) or sorted(window) != ["losses", "norms"]:
        raise _BadField("window", "must be a dict of 'losses' and 'norms'")
    history = checked["history"]
    since = checked["step"] - (history[-1]["step"] if history else 0)
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
    return window


def _carry(carry, params, config, checked):
    """None, or with ``tbptt`` ``{"chunk": int >= 1, "h": ..., "c": ...}`` in the parameters'
    dtype and :func:`state_shape` (whether the chunk is the step's is checked against the
    task: :func:`task_of`)."""
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


def _task_spec(spec, params, config, checked):
    """The task's spec: the config's task, seq_len and train_size, and only arguments of its
    generator (their values are checked when the task is made, :func:`task_of`)."""
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


#: The schema of the fields read after the arrays: ``{field: check(value, params, config,
#: checked) -> value}``, run in this order (``checked``: the fields before); the config and
#: the names were checked before the arrays were inflated (``_check_names``).
SCHEMA = {"step": _step, "seconds": _seconds, "history": _history, "velocity": _velocity,
          "window": _window, "carry": _carry, "task_spec": _task_spec}
#: The value of an optional field a checkpoint lacks (older ones have no window).
_ABSENT = {"window": {"losses": np.zeros(0), "norms": np.zeros(0)}, "carry": None}
