"""TrainConfig: every training setting and its default, spelled once.

Everything else is derived from the fields below: the command line's options with their
``--help`` texts and defaults, the config a checkpoint stores whole, and the settings a resumed
run may not change (:data:`FIXED_ON_RESUME`). A field whose default is None depends on the task
(:data:`PER_TASK`): it takes its task's value from :data:`TASK_DEFAULTS`, or for
``train_size`` the task generator's own ``n_train``. After construction every field holds a
value, validated: a bad one raises :class:`ConfigError` naming the setting.

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

import lstm_ag

from .data import TASKS, Task, make_task

__all__ = ["TrainConfig", "ConfigError", "TASK_DEFAULTS", "PER_TASK", "FIXED_ON_RESUME",
           "OPTIMIZERS", "SETTING_TYPES"]

#: The optimizers: minibatch SGD (:mod:`train.optim`) or full-batch scipy L-BFGS-B.
OPTIMIZERS = ("sgd", "lbfgs")

#: The defaults that depend on the task (the fields of TrainConfig whose default is None).
TASK_DEFAULTS = {
    "sine": dict(seq_len=50, steps=1500, batch=32, lr=0.1),
    "counting": dict(seq_len=20, steps=2000, batch=32, lr=0.5),
    "adding": dict(seq_len=50, steps=3000, batch=64, lr=0.1),
}


class ConfigError(ValueError):
    """A setting's value is not allowed. ``str(err)`` is ``f"{err.name} {err.problem}"``."""

    def __init__(self, name, problem):
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem


def _setting(default, doc, metavar=None, *, check=None, choices=None, fixed_on_resume=False):
    """A TrainConfig field: its default, and what the command line and a resume need.

    - doc: the option's help text; metavar: the name of its value in ``--help``.
    - check: ``(test, expected)`` for numbers: ``test(value)`` is true for an allowed value,
      ``expected`` says which are (``">= 1"``); choices: the allowed strings.
    - fixed_on_resume: a resumed run keeps the checkpoint's value (a different one is refused).
    """
    return field(default=default, metadata=dict(doc=doc, metavar=metavar, check=check,
                                                choices=choices,
                                                fixed_on_resume=fixed_on_resume))


def _at_least(low):
    return (lambda value: value >= low), f">= {low}"


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run (immutable; :func:`dataclasses.replace` changes one).

    None for a per-task setting (seq_len, steps, batch, lr, train_size) means the task's
    default; the constructed config always holds the value. Raises :class:`ConfigError` (a
    ``ValueError``) naming the first setting that is not allowed.
    """
    task: str = _setting("sine", "the task", choices=tuple(TASKS), fixed_on_resume=True)
    steps: int | None = _setting(
        None, "total training steps (SGD updates or L-BFGS iterations); with --resume, the "
              "total to reach", "N", check=_at_least(1))
    hidden: int = _setting(32, "hidden units", "H", check=_at_least(1), fixed_on_resume=True)
    seq_len: int | None = _setting(None, "sequence length: steps per sequence", "T",
                                   check=_at_least(2), fixed_on_resume=True)
    batch: int | None = _setting(None, "sequences per minibatch", "B", check=_at_least(1),
                                 fixed_on_resume=True)
    train_size: int | None = _setting(
        None, "sequences in the training set; with --optimizer lbfgs every step uses all of "
              "them", "N", check=_at_least(1), fixed_on_resume=True)
    lr: float | None = _setting(None, "learning rate", "LR", check=(lambda v: v > 0, "> 0"),
                                fixed_on_resume=True)
    lr_decay: float = _setting(0.0, "learning-rate decay: lr / (1 + D * step); 0: constant",
                               "D", check=_at_least(0), fixed_on_resume=True)
    momentum: float = _setting(0.9, "momentum M in [0, 1): v = M v + g", "M",
                               check=(lambda v: 0 <= v < 1, "in [0, 1)"), fixed_on_resume=True)
    clip: float = _setting(1.0, "clip the global gradient norm to C; 0: off", "C",
                           check=_at_least(0), fixed_on_resume=True)
    optimizer: str = _setting("sgd", "sgd, or lbfgs: full-batch scipy L-BFGS-B over the whole "
                                     "training set, --steps iterations", choices=OPTIMIZERS,
                              fixed_on_resume=True)
    method: str = _setting("fast", "gradient method (may change on --resume: the run is then "
                                   "exact to rounding only)", choices=tuple(lstm_ag.METHODS))
    seed: int = _setting(0, "seed of the data, the initial weights and the minibatches", "S",
                         check=_at_least(0), fixed_on_resume=True)
    eval_every: int = _setting(100, "steps between evaluations, progress lines and checkpoints",
                               "N", check=_at_least(1))

    def __post_init__(self):
        for f in fields(self):                            # task first: the others may need it
            value = getattr(self, f.name)
            if value is None and f.name in PER_TASK:
                value = _task_default(self.task, f.name)
            object.__setattr__(self, f.name, _checked(f, value))
        if self.optimizer == "sgd" and self.batch > self.train_size:
            raise ConfigError("batch", f"{self.batch} exceeds the training set "
                                       f"({self.train_size} sequences)")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Rebuild a config from ``dataclasses.asdict(config)`` (as a checkpoint stores it).

        Raises ``ValueError`` when ``data`` has other settings than TrainConfig's, or lacks
        some, and :class:`ConfigError` when a value is not allowed.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a dict of settings, got {type(data).__name__}")
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
        """The task of this run: ``make_task(task, seq_len, seed=seed, n_train=train_size)``.

        - kwargs: more arguments of the generator (``n_val``, ...).
        """
        return make_task(self.task, self.seq_len, seed=self.seed, n_train=self.train_size,
                         **kwargs)

    def init_params(self, task: Task) -> dict:
        """Fresh parameters for ``task``: ``lstm_ag.init_params(D, hidden, O, seed=seed)``."""
        return lstm_ag.init_params(task.input_size, self.hidden, task.output_size,
                                   seed=self.seed)

    def to_dict(self) -> dict:
        """Every setting by name (JSON-ready): what a checkpoint and metrics.json store."""
        return asdict(self)


def _task_default(task, name):
    if name == "train_size":
        return inspect.signature(TASKS[task]).parameters["n_train"].default
    return TASK_DEFAULTS[task][name]


def _checked(f, value):
    """``value`` for field ``f``, as int, float or str; ConfigError when it is not allowed."""
    kind, meta = SETTING_TYPES[f.name], f.metadata
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
