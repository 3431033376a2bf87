"""The sweep's grid and plan: ``--grid`` items as settings, each (setting, seed) as a
:class:`Run` with its directory and trainer arguments, and :func:`plan`, which reads each run's
directory to say whether it is new, resumed or finished (skipped). Also the sweep's exit
statuses, its one error (:class:`SweepError`) and the names every part of it shares.
"""
import difflib
import json
import os
import re
from dataclasses import dataclass, fields

from .options import _option

EXIT_FAILED, EXIT_USAGE, EXIT_UNWRITABLE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 3, 130, 143


#: The files of a run that travel back from a Dask worker, in the order they are written
#: (the checkpoint first: metrics.json describes the checkpoint on disk).
RUN_FILES = ("model.npz", "best.npz", "metrics.json")


#: The most runs a sweep starts without --yes (a grid of every combination grows fast).
RUN_LIMIT = 100


class SweepError(Exception):
    """The sweep cannot go ahead: one line, and the exit status (2 usage, 3 unwritable)."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


def count(n, word):
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


# ----------------------------------------------------------------------------- the grid


def _parse_value(name, text, kind):
    """``text`` as a value of the setting ``name`` of type ``kind``."""
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise SweepError(f"--grid {name}={text}: not true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise SweepError(f"--grid {name}={text}: not an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise SweepError(f"--grid {name}={text}: not a number") from None
    return text


def parse_grid(items: list, fixed: dict | None = None) -> dict:
    """The grid of ``--grid`` items (``"lr=0.03,0.1"``): ``{setting: [values]}`` in the order
    given, each value of the setting's type in :class:`train.config.TrainConfig`.

    - fixed: the settings given as trainer options (a grid key may not repeat one).
    Keys are TrainConfig's field names; ``seq-len`` and the alias ``window`` are accepted too.
    Raises :class:`SweepError` naming the item for an unknown or repeated key, a value that is
    not of the setting's type, or a value given twice.
    """
    from .config import ALIASES, SETTING_TYPES, TrainConfig
    names = [f.name for f in fields(TrainConfig)]
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise SweepError(f"--grid {item}: not KEY=V1,V2,... (a setting and its values; "
                             "give the task and the trainer's options before --grid)")
        name = key.replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in names:
            close = difflib.get_close_matches(name, names, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SweepError(f"--grid {key}: not a setting of TrainConfig{hint}; the "
                             f"settings: {', '.join(n for n in names if n != 'task')}")
        if name == "task":
            raise SweepError("--grid task: a sweep trains one task; give it first "
                             "(lstm-ag-train sweep TASK ...), one sweep per task")
        if name == "seed":
            raise SweepError("--grid seed: the seeds are --seeds N (0 .. N-1 for every setting)")
        if name in grid:
            raise SweepError(f"--grid {key}: given twice; list its values once, "
                             f"{key}=V1,V2,...")
        if fixed and name in fixed:
            raise SweepError(f"--grid {key}: also given as {_option(name)} {fixed[name]}; "
                             "give it in one place")
        texts = [text.strip() for text in values.split(",")]
        if not all(texts):
            raise SweepError(f"--grid {item}: an empty value; give {key}=V1,V2,...")
        parsed = [_parse_value(name, text, SETTING_TYPES[name]) for text in texts]
        for i, value in enumerate(parsed):
            if value in parsed[:i]:
                raise SweepError(f"--grid {item}: the value {texts[i]} is given twice")
        grid[name] = parsed
    return grid


def value_text(value):
    """A value as the command line and a directory name spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def setting_name(setting: dict) -> str:
    """The directory name of a setting: ``lr=0.03,hidden=16`` ("" for no grid)."""
    return ",".join(f"{key}={re.sub(r'[^A-Za-z0-9._+-]', '_', value_text(value))}"
                    for key, value in setting.items())


def setting_args(setting):
    args = []
    for key, value in setting.items():
        option = _option(key)
        if isinstance(value, bool):
            args += [option] if value else []
        else:
            args += [option, value_text(value)]
    return args


# ----------------------------------------------------------------------------- the plan


@dataclass
class Run:
    """One (setting, seed) of a sweep.

    - setting: the grid's values; name: its directory name; seed; path: the run directory.
    - config: the run's :class:`train.config.TrainConfig`; argv: the trainer's arguments
      (without ``--out`` and ``--resume``).
    - action: ``"new"``, ``"resume"`` or ``"skip"`` (finished); metrics: what the finished
      run's metrics.json holds.
    """
    setting: dict
    name: str
    seed: int
    path: str
    config: object
    argv: list
    action: str = "new"
    metrics: dict | None = None

    @property
    def label(self):
        return os.path.join(self.name, f"seed={self.seed}") if self.name else f"seed={self.seed}"


def read_metrics(path):
    try:
        with open(os.path.join(path, "metrics.json"), encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) and isinstance(content.get("config"), dict) \
        else None


def _finished(metrics, config):
    """True when ``metrics`` (a run's metrics.json) is a finished run of ``config``."""
    if metrics.get("config") != config.to_dict():
        return False
    if metrics.get("status") == "diverged":
        return True
    return metrics.get("status") == "done" and (config.task != "series" or "test" in metrics)


def plan(runs: list) -> list:
    """Set each run's ``action`` from its directory: ``"skip"`` when its metrics.json is a
    finished run (done, or diverged) of the same config, ``"resume"`` when it holds a
    checkpoint, else ``"new"``. Returns ``runs``.

    Raises :class:`SweepError` when a run directory holds a run of another value of a setting
    that a resumed run may not change (the sweep would mix two experiments).
    """
    from .config import FIXED_ON_RESUME
    for run in runs:
        metrics = read_metrics(run.path)
        expected = run.config.to_dict()
        if metrics is not None:
            for name in FIXED_ON_RESUME:
                old, new = metrics["config"].get(name), expected[name]
                if old != new:
                    raise SweepError(f"{run.path} holds a run with {_option(name)} {old}, this "
                                     f"sweep's run has {new}: a sweep continues its own runs "
                                     "only; give another --out")
        if metrics is not None and _finished(metrics, run.config):
            run.action, run.metrics = "skip", metrics
        elif os.path.exists(os.path.join(run.path, "model.npz")):
            run.action = "resume"
        else:
            run.action = "new"
    return runs
