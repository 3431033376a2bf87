"""TrainConfig: every training setting and its default, spelled once.

Everything else is derived from the fields below: the command line's options with their
``--help`` texts and defaults, the config a checkpoint stores whole, and the settings a resumed
run may not change (:data:`FIXED_ON_RESUME`). A field whose default is None depends on the task
(:data:`PER_TASK`): it takes its task's value from :data:`TASK_DEFAULTS`, or for
```train_size`` the task generator's own ``n_train`` (for ``series``, 0: every training window
of the data). With ``optimizer="adam"`` the default learning rate is :data:`ADAM_LR`; a
``series`` with ``tbptt`` trains on one stream by default (``batch`` 1). After
construction every field holds a value, validated: a bad one raises :class:`ConfigError`
naming the setting.

Example::

    >>> config = TrainConfig(task="counting", steps=500)
    >>> config.seq_len, config.lr, config.batch, config.train_size
    (20, 0.5, 32, 2000)
"""
import inspect
import math
import numbers
import typing
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

import lstm_ag

from .data import TASKS, Task, make_task

__all__ = ["TrainConfig", "ConfigError", "TASK_DEFAULTS", "PER_TASK", "FIXED_ON_RESUME",
           "OPTIMIZERS", "SETTING_TYPES", "TASK_NAMES", "ADAM_LR", "ALIASES",
           "NEXT_VALUE_TASKS", "ADDED_SETTINGS"]

#: The optimizers: minibatch SGD or Adam (:mod:`train.optim`), or full-batch scipy L-BFGS-B.
OPTIMIZERS = ("sgd", "adam", "lbfgs")
#: The tasks: the toy generators of :mod:`train.data`, and a user's series (:mod:`train.series`).
TASK_NAMES = (*TASKS, "series")
#: The default learning rate of Adam (the per-task ``lr`` defaults are SGD's).
ADAM_LR = 0.01

#: The tasks whose target at step t is the input at step t + 1 (next-value prediction). A
#: bidirectional model is not causal: its backward direction reads the inputs after t, among
#: them the very value to predict, so these tasks refuse ``bidirectional``. ``adding`` takes
#: it: its target (the sum of the two marked values) is scored once, at the last step, when
#: the whole sequence is an input anyway.
NEXT_VALUE_TASKS = ("sine", "counting", "series")

#: Settings added after checkpoints were first written, with the value the runs of those
#: checkpoints had: a config stored without them reads as that value.
ADDED_SETTINGS = {"layers": 1, "bidirectional": False, "tbptt": 0, "season": 0,
                  "seasonal_diff": 0}

#: The defaults that depend on the task (the fields of TrainConfig whose default is None).
TASK_DEFAULTS = {
    "sine": dict(seq_len=50, steps=1500, batch=32, lr=0.1, eval_every=100, patience=0),
    "counting": dict(seq_len=20, steps=2000, batch=32, lr=0.5, eval_every=100, patience=0),
    "adding": dict(seq_len=50, steps=3000, batch=64, lr=0.1, eval_every=100, patience=0),
    # a series is small and noisy: evaluate often, keep the best, stop when it stays best
    "series": dict(seq_len=30, steps=3000, batch=32, lr=0.1, eval_every=20, patience=10),
}


class ConfigError(ValueError):
    """A setting's value is not allowed. ``str(err)`` is ``f"{err.name} {err.problem}"``."""

    def __init__(self, name, problem):
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem


def _setting(default, doc, metavar=None, *, check=None, choices=None, fixed_on_resume=False,
             alias=None):
    """A TrainConfig field: its default, and what the command line and a resume need.

    - doc: the option's help text; metavar: the name of its value in ``--help``.
    - check: ``(test, expected)`` for numbers: ``test(value)`` is true for an allowed value,
      ``expected`` says which are (``">= 1"``); choices: the allowed strings.
    - fixed_on_resume: a resumed run keeps the checkpoint's value (a different one is refused).
    - alias: another name of the option on the command line (``window`` for ``seq_len``).
    A str setting without choices takes any string; a bool setting is a flag.
    """
    return field(default=default, metadata=dict(doc=doc, metavar=metavar, check=check,
                                                choices=choices, alias=alias,
                                                fixed_on_resume=fixed_on_resume))


def _at_least(low):
    return (lambda value: value >= low), f">= {low}"


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run (immutable; :func:`dataclasses.replace` changes one).

    None for a per-task setting (seq_len, steps, batch, lr, train_size, eval_every, patience)
    means the task's default; the constructed config always holds the value. Raises
    :class:`ConfigError` (a ``ValueError``) naming the first setting that is not allowed.
    """
    task: str = _setting("sine", "the task (series: your own, from --data FILE)",
                         choices=TASK_NAMES, fixed_on_resume=True)
    steps: int | None = _setting(
        None, "total training steps (SGD updates or L-BFGS iterations); with --resume, the "
              "total to reach", "N", check=_at_least(1))
    hidden: int = _setting(32, "hidden units", "H", check=_at_least(1), fixed_on_resume=True)
    layers: int = _setting(1, "stacked LSTM layers, each reading the hidden states of the one "
                              "below", "N", check=_at_least(1), fixed_on_resume=True)
    bidirectional: bool = _setting(
        False, "adding only: every layer also reads the sequence backwards. adding predicts "
               "once, at the last step, from the whole sequence, so that is no look-ahead; "
               "sine, counting and series are refused: they predict the next value, which "
               "the backward direction would read from the inputs (it is not causal)",
        fixed_on_resume=True)
    seq_len: int | None = _setting(None, "sequence length: steps per sequence (series: the "
                                         "window, also --window; unused with --tbptt)", "T",
                                   check=_at_least(2), fixed_on_resume=True, alias="window")
    tbptt: int = _setting(
        0, "truncated BPTT for long sequences: each step trains on the next K time steps of "
           "its batch of sequences, from the state the K before left (carried, but no "
           "gradient across chunks, as Keras's stateful=True); a new batch starts from a zero "
           "state. series: the training part is not windowed but trained whole, as --batch "
           "contiguous streams (default 1). Validation runs over whole sequences (the state "
           "carried), with or without --tbptt. Off by default", "K", check=_at_least(0),
        fixed_on_resume=True)
    batch: int | None = _setting(None, "sequences per minibatch (series --tbptt: streams)", "B",
                                 check=_at_least(1), fixed_on_resume=True)
    train_size: int | None = _setting(
        None, "sequences in the training set; with --optimizer lbfgs every step uses all of "
              "them (series: 0, every training window)", "N", check=_at_least(0),
        fixed_on_resume=True)
    lr: float | None = _setting(None, f"learning rate (adam: {ADAM_LR})", "LR",
                                check=(lambda v: v > 0, "> 0"), fixed_on_resume=True)
    lr_decay: float = _setting(0.0, "learning-rate decay: lr / (1 + D * step); 0: constant",
                               "D", check=_at_least(0), fixed_on_resume=True)
    momentum: float = _setting(0.9, "momentum M in [0, 1): v = M v + g", "M",
                               check=(lambda v: 0 <= v < 1, "in [0, 1)"), fixed_on_resume=True)
    clip: float = _setting(1.0, "clip the global gradient norm to C; 0: off", "C",
                           check=_at_least(0), fixed_on_resume=True)
    optimizer: str = _setting("sgd", "sgd (with --momentum), adam, or lbfgs: full-batch scipy "
                                     "L-BFGS-B over the whole training set, --steps iterations",
                              choices=OPTIMIZERS, fixed_on_resume=True)
    method: str = _setting("fast", "gradient method (may change on --resume: the run is then "
                                   "exact to rounding only)", choices=tuple(lstm_ag.METHODS))
    seed: int = _setting(0, "seed of the data, the initial weights and the minibatches", "S",
                         check=_at_least(0), fixed_on_resume=True)
    eval_every: int | None = _setting(None, "steps between evaluations, progress lines and "
                                            "checkpoints", "N", check=_at_least(1))
    patience: int | None = _setting(
        None, "stop after N evaluations without a lower validation MSE, and return the best "
              "parameters (best.npz is written at each improvement either way); 0: never stop "
              "early", "N", check=_at_least(0))
    threads: int = _setting(1, "BLAS threads of numpy (threadpoolctl; one is fastest at this "
                               "trainer's sizes); 0: leave numpy's default", "N",
                            check=_at_least(0))
    data: str = _setting("", "series: the file (.csv with a header, .npy, .txt)", "FILE",
                         fixed_on_resume=True)
    column: str = _setting("", "series: the .csv column (default: the only numeric one that "
                               "is not a date)", "NAME", fixed_on_resume=True)
    diff: bool = _setting(False, "series: model the first differences (for a trend); errors "
                                 "are still reported in the series' units", fixed_on_resume=True)
    val_frac: float = _setting(0.2, "series: the validation part, a fraction of the series "
                                    "(chronological: train, validation, test)", "F",
                               check=(lambda v: 0 < v < 1, "in (0, 1)"), fixed_on_resume=True)
    test_frac: float = _setting(0.2, "series: the test part, the last fraction of the series",
                                "F", check=(lambda v: 0 < v < 1, "in (0, 1)"),
                                fixed_on_resume=True)
    horizon: int = _setting(10, "series: also score forecasts K steps ahead from every test "
                                "point (0: one step only)", "K", check=_at_least(0))
    season: int = _setting(0, "series: the seasonal period M (12 for monthly data with a yearly "
                              "season): the seasonal naive baseline, an AR order reaching it; "
                              "0: detected from the training part when the file has dates; 1: "
                              "none", "M", check=_at_least(0), fixed_on_resume=True)
    seasonal_diff: int = _setting(
        0, "series: model seasonal differences x[t] - x[t-M] of lag M (--diff M and --diff 1,M "
           "set it; -1: the season); 0: none", "M", check=_at_least(-1), fixed_on_resume=True)

    def __post_init__(self):
        first = [f for f in fields(self) if f.name in ("task", "optimizer", "tbptt")]
        for f in first + [f for f in fields(self) if f not in first]:   # lr needs the optimizer
            value = getattr(self, f.name)
            if value is None and f.name in PER_TASK:
                value = _task_default(self.task, f.name, self.optimizer, self.tbptt)
            object.__setattr__(self, f.name, _checked(f, value))
        series = self.task == "series"
        if self.train_size == 0 and not series:
            raise ConfigError("train_size", "must be >= 1, got 0 (0, every window: series only)")
        burn_in = _burn_in(self.task)
        if self.seq_len <= burn_in:
            raise ConfigError("seq_len", f"must be > {burn_in} for {self.task} (its first "
                                         f"{burn_in} steps carry no loss), got {self.seq_len}")
        if self.optimizer != "lbfgs" and self.train_size and self.batch > self.train_size:
            raise ConfigError("batch", f"{self.batch} exceeds the training set "
                                       f"({self.train_size} sequences)")
        if series and not self.data:
            raise ConfigError("data", "is needed by the series task: --data FILE")
        if self.val_frac + self.test_frac >= 1:
            raise ConfigError("test_frac", f"{self.test_frac} with val_frac {self.val_frac} "
                                           "leaves no training part")
        if not series:
            for name in ("data", "column", "diff", "season", "seasonal_diff"):
                if getattr(self, name) != _default(name):
                    raise ConfigError(name, "is a setting of the series task only")
        if self.bidirectional and self.task in NEXT_VALUE_TASKS:
            raise ConfigError("bidirectional", f"is not causal: {self.task} predicts the next "
                                               "value, which the backward direction would read "
                                               "from the inputs (only adding, which predicts "
                                               "once at the end, takes it)")
        if self.tbptt:
            if self.optimizer == "lbfgs":
                raise ConfigError("tbptt", "is for sgd and adam (lbfgs takes every step over "
                                           "the whole training set)")
            if self.bidirectional:
                raise ConfigError("tbptt", "carries the state forward from chunk to chunk; a "
                                           "bidirectional model's backward direction cannot "
                                           "take it")
            if not series and self.tbptt > self.seq_len:
                raise ConfigError("tbptt", f"{self.tbptt} exceeds the sequence length "
                                           f"{self.seq_len} (--seq-len): a chunk is at most "
                                           "a whole sequence")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Rebuild a config from ``dataclasses.asdict(config)`` (as a checkpoint stores it).

        Settings of :data:`ADDED_SETTINGS` that ``data`` lacks (a checkpoint written before
        they existed) take the value those runs had. Raises ``ValueError`` when ``data`` has
        other settings than TrainConfig's, or lacks some, and :class:`ConfigError` when a
        value is not allowed.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a dict of settings, got {type(data).__name__}")
        data = {**{k: v for k, v in ADDED_SETTINGS.items() if k not in data}, **data}
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = [name for name in names if name not in data]
        if unknown or missing:
            raise ValueError(f"the config does not match TrainConfig's settings "
                             f"(unknown {unknown}, missing {missing})")
        return cls(**data)

    def resumed(self, **changes) -> "TrainConfig":
        """This (a checkpoint's) config with ``changes`` for a resumed run.

        Raises :class:`ConfigError` naming the first setting of :data:`FIXED_ON_RESUME` that
        ``changes`` gives a different value; others (steps, eval_every, method) may change.
        """
        for name, value in changes.items():
            if name in FIXED_ON_RESUME and value != getattr(self, name):
                raise ConfigError(name, f"{value} differs from the checkpoint's "
                                        f"{name}={getattr(self, name)}")
        return replace(self, **changes)

    def make_task(self, **kwargs) -> Task:
        """The task of this run: ``make_task(task, seq_len, seed=seed, n_train=train_size)``;
        for ``series``, the windows of the file ``data`` (:func:`train.series.load_task`), or
        with ``tbptt`` its training part as ``batch`` streams.

        - kwargs: more arguments of the generator (``n_val``, ...).
        Raises :class:`train.series.SeriesError` (a ``ValueError``) when the file cannot be
        used, and :class:`ConfigError` when batch or train_size do not fit its windows.
        """
        if self.task == "series":
            task = self._series()
            self.check_windows(task)
            return task
        return make_task(self.task, self.seq_len, seed=self.seed, n_train=self.train_size,
                         **kwargs)

    def _series(self, fit_window=False):
        from .datasets import resolve
        from .series import load_task
        return load_task(resolve(self.data), self.seq_len, column=self.column, diff=self.diff,
                         val_frac=self.val_frac, test_frac=self.test_frac, seed=self.seed,
                         streams=self.batch if self.tbptt else 0, season=self.season,
                         seasonal_diff=self.seasonal_diff, fit_window=fit_window)

    def series_task(self, *, batch_given: bool = True,
                    window_given: bool = True) -> tuple[Task, "TrainConfig"]:
        """The series task of this run and the config to train it with: without
        ``window_given`` (the default window), a window too long for the training part is
        halved to fit it; without ``batch_given``, a batch larger than the training windows
        is capped at their number (the returned config says so; the caller tells the user).
        Raises what :meth:`make_task` raises."""
        task = self._series(fit_window=not window_given)
        config = replace(self, seq_len=task.spec["seq_len"])
        n = task.train_x.shape[1]
        if not batch_given and not self.tbptt and self.optimizer != "lbfgs" and self.batch > n:
            config = replace(config, batch=n)
        config.check_windows(task)
        return task, config

    def check_windows(self, task: Task) -> None:
        """Raise :class:`ConfigError` if a series task's training windows do not fit
        ``train_size`` (0: any number) and ``batch``, or its streams ``tbptt``."""
        n = task.train_x.shape[1]
        if self.tbptt > task.seq_len:
            raise ConfigError("tbptt", f"{self.tbptt} exceeds the length of the training "
                                       f"streams, {task.seq_len} steps (the training part in "
                                       f"--batch {self.batch} streams): give a smaller "
                                       "--tbptt or --batch")
        if self.train_size and self.train_size != n:
            raise ConfigError("train_size", f"{self.train_size} differs from the {n} training "
                                            "windows of the series (leave it out: 0, all)")
        if self.optimizer != "lbfgs" and self.batch > n:
            raise ConfigError("batch", f"{self.batch} exceeds the {n} training windows of the "
                                       "series; give a smaller --batch (or --window)")

    def init_params(self, task: Task) -> dict:
        """Fresh parameters for ``task``: ``lstm_ag.init_params(D, hidden, O, seed=seed,
        num_layers=layers, bidirectional=bidirectional)``."""
        return lstm_ag.init_params(task.input_size, self.hidden, task.output_size,
                                   seed=self.seed, num_layers=self.layers,
                                   bidirectional=self.bidirectional)

    @property
    def directions(self) -> int:
        """2 for a bidirectional model, else 1."""
        return 2 if self.bidirectional else 1

    def to_dict(self) -> dict:
        """Every setting by name (JSON-ready): what a checkpoint and metrics.json store."""
        return asdict(self)


def _task_default(task, name, optimizer=None, tbptt=0):
    if name == "batch" and task == "series" and tbptt:
        return 1                          # one stream: the training part, whole
    if name == "train_size":
        return 0 if task == "series" else \
            inspect.signature(TASKS[task]).parameters["n_train"].default
    if name == "lr" and optimizer == "adam":
        return ADAM_LR
    return TASK_DEFAULTS[task][name]


def _burn_in(task):
    """The unscored leading steps of a toy task (its generator's ``burn_in``), else 0."""
    parameter = inspect.signature(TASKS[task]).parameters.get("burn_in") if task in TASKS \
        else None
    return 0 if parameter is None else parameter.default


def _default(name):
    return next(f.default for f in fields(TrainConfig) if f.name == name)


def _checked(f, value):
    """``value`` for field ``f``, as int, float or str; ConfigError when it is not allowed."""
    kind, meta = SETTING_TYPES[f.name], f.metadata
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f.name, f"must be True or False, got {value!r}")
        return bool(value)
    if kind is str and meta["choices"] is None:
        if not isinstance(value, str):
            raise ConfigError(f.name, f"must be a string, got {value!r}")
        return value
    if kind is str:
        if value not in meta["choices"]:
            raise ConfigError(f.name, f"must be one of {', '.join(map(repr, meta['choices']))}, "
                                      f"got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(
            value, numbers.Integral if kind is int else numbers.Real):
        raise ConfigError(f.name, f"must be {'an integer' if kind is int else 'a number'}, "
                                  f"got {value!r}")
    value = kind(value)
    if not math.isfinite(value):
        raise ConfigError(f.name, f"must be a finite number, got {value!r}")
    test, expected = meta["check"]
    if not test(value):
        raise ConfigError(f.name, f"must be {expected}, got {value!r}")
    return value


#: Each setting's type (int, float or str), from its annotation.
SETTING_TYPES = {name: next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
                 for name, hint in typing.get_type_hints(TrainConfig).items()}
#: The settings whose default depends on the task (declared with default None).
PER_TASK = tuple(f.name for f in fields(TrainConfig) if f.default is None)
#: The settings a resumed run keeps from its checkpoint (refused when given otherwise).
FIXED_ON_RESUME = tuple(f.name for f in fields(TrainConfig) if f.metadata["fixed_on_resume"])
#: Other command-line names of settings: ``{"window": "seq_len"}``.
ALIASES = {f.metadata["alias"]: f.name for f in fields(TrainConfig) if f.metadata["alias"]}
