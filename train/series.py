"""Your own sequence: read a series, split it in time, scale it, and evaluate honestly.

The ``series`` task of the trainer (``lstm-ag-train series --data FILE``), in the order a run
takes it:

* :func:`read_series`: one numeric column of a ``.csv`` (with a header; a date column and
  other text columns are ignored), a ``.npy`` array or a ``.txt`` of one value per line.
  Missing values (empty cells, ``NA``, ``nan``, ...) are filled by linear interpolation (the
  nearest value before the first or after the last known one) and counted.
* :func:`split_bounds`: a chronological split into a training, a validation and a test part
  (default 60/20/20), by the index of the *target*, the value predicted.
* :class:`Scaler`: z-scoring, optionally of the first differences (``diff=True``), with the
  mean and standard deviation of the **training part only**; it turns predictions back into
  the series' own units (levels, also with ``diff``).
* :func:`series_task`: a :class:`train.task.Task` of windows of the scaled series. Every window
  lies in one part: training windows are built from training values alone (inputs and
  targets); a validation or test window has one scored target, its last step, in its part,
  and sees only values before it. Nothing the model is trained or early-stopped on depends
  on the test part. With ``streams`` B (the trainer's ``--tbptt``) the series is not
  windowed: the training part is B contiguous streams, trained chunk by chunk with the state
  carried, and every prediction (validation, test, forecasts) comes from the model run over
  the whole series before it, from its first value.
* :func:`evaluate`: one-step-ahead errors over the test part in data units, for the LSTM,
  the naive forecast (repeat the last value) and a linear AR(p) fitted by least squares on the
  training part with p chosen on the validation part; and errors of multi-step forecasts.

The transformed series z and the levels x are indexed so that ``z[i]`` is known once
``x[i + lag]`` is, with ``lag = 1`` for differences (``z[i] = (x[i+1] - x[i] - mean) / std``)
and 0 otherwise (``z[i] = (x[i] - mean) / std``): predicting ``z[i]`` from ``z[:i]`` predicts the
level ``x[i + lag]`` from the levels before it.
"""
import csv
import math
import os
from dataclasses import dataclass

import numpy as np

import lstm_ag

from .task import Task

__all__ = ["SeriesError", "Series", "read_series", "fill_gaps", "split_bounds", "Scaler",
           "SeriesTask", "series_task", "load_task", "windows", "fit_ar", "ar_predict",
           "choose_ar_order",
           "one_step", "multi_step", "errors", "evaluate", "forecast_levels", "MISSING",
           "DATE_COLUMNS", "MAX_AR_ORDER"]

#: Cells read as a missing value (compared in lower case, after stripping blanks).
MISSING = ("", "na", "nan", "n/a", "null", "none", "-", "?")
#: Names of columns that hold dates or times (lower case): ignored when the series' column is
#: not named, like any non-numeric column.
DATE_COLUMNS = ("date", "time", "datetime", "timestamp", "year", "month", "week", "day",
                "period", "index")
#: The largest order p tried for the AR(p) baseline (also at most a third of the training part).
MAX_AR_ORDER = 100
_FORMATS = (".csv", ".npy", ".txt")


class SeriesError(ValueError):
    """A series file cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Series:
    """What :func:`read_series` returns.

    - values: the series ``(N,)``, float64, gaps filled; missing: how many values were filled.
    - column: the column read (a ``.csv``), else ``""``; source: the file's name.
    """
    values: np.ndarray
    missing: int
    column: str
    source: str


def _float(cell):
    """A cell as a float: NaN for a missing value, None when it is not a number."""
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _read_csv(path, column):
    name = os.path.basename(path)
    with open(path, newline="", encoding="utf-8-sig") as file:
        rows = [row for row in csv.reader(file) if any(cell.strip() for cell in row)]
    if not rows:
        raise SeriesError(f"{name}: the file is empty (a .csv needs a header line and values)")
    header = [cell.strip() for cell in rows[0]]
    body = rows[1:]
    if all(_float(cell) is not None and not math.isnan(_float(cell)) for cell in header):
        raise SeriesError(f"{name}: the first line {','.join(header)!r} holds numbers; a .csv "
                          "needs a header line naming its columns")
    if not body:
        raise SeriesError(f"{name}: no values below the header")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise SeriesError(f"{name}: line {number} has {len(row)} cells, the header "
                              f"{len(header)}")
    cells = {title: [row[k] for row in body] for k, title in enumerate(header)}
    parsed = {title: [_float(cell) for cell in col] for title, col in cells.items()}
    numeric = [title for title, col in parsed.items()
               if None not in col and not all(math.isnan(v) for v in col)]
    if column:
        if column not in cells:
            raise SeriesError(f"{name}: no column {column!r}; the columns are "
                              f"{', '.join(map(repr, header))}")
        if column not in numeric:
            col = parsed[column]
            if None in col:
                row = col.index(None)
                raise SeriesError(f"{name}: column {column!r} is not numeric: line {row + 2} "
                                  f"holds {cells[column][row].strip()!r}")
            raise SeriesError(f"{name}: column {column!r} holds no values (all missing)")
        return parsed[column], column
    candidates = [title for title in numeric if title.lower() not in DATE_COLUMNS]
    if len(candidates) != 1:
        found = (f"the numeric columns are {', '.join(map(repr, candidates))}" if candidates
                 else "no numeric column besides dates")
        raise SeriesError(f"{name}: {found}; name the series' column with --column NAME")
    return parsed[candidates[0]], candidates[0]


def _read_txt(path):
    name = os.path.basename(path)
    values = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            tokens = text.replace(",", " ").split()
            value = _float(tokens[0]) if len(tokens) == 1 else None
            if value is None:
                raise SeriesError(f"{name}: line {number} {text!r} is not one number (a .txt "
                                  "holds one value per line)")
            values.append(value)
    if not values:
        raise SeriesError(f"{name}: the file holds no values")
    return values


def _read_npy(path):
    name = os.path.basename(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise SeriesError(f"{name}: not a readable .npy array ({err})") from None
    if not isinstance(array, np.ndarray):
        raise SeriesError(f"{name}: holds several arrays (an .npz?); give one .npy array")
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise SeriesError(f"{name}: the array has shape {array.shape}; a series is 1-D (N,) "
                          "or (N, 1)")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise SeriesError(f"{name}: the array's dtype is {array.dtype}; a series holds real "
                          "numbers")
    return array.astype(np.float64)


def fill_gaps(values) -> tuple[np.ndarray, int]:
    """Fill missing values (NaN) by linear interpolation in the index.

    - values: ``(N,)`` floats with NaN for missing values, at least one of them finite.
    Returns ``(filled (N,), count)``: a new float64 array (leading and trailing gaps take the
    nearest known value) and the number of values filled.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    if missing.all():
        raise SeriesError("every value is missing")
    if not missing.any():
        return values.copy(), 0
    index = np.arange(len(values))
    filled = values.copy()
    filled[missing] = np.interp(index[missing], index[~missing], values[~missing])
    return filled, int(missing.sum())


def read_series(path: str | os.PathLike, column: str = "") -> Series:
    """Read one series from ``path``: a ``.csv``, ``.npy`` or ``.txt`` file.

    - path: the file. A ``.csv`` has a header line; its series is the column ``column``, or
      without one the only numeric column whose name is not a date's (:data:`DATE_COLUMNS`);
      other columns are ignored. A ``.npy`` holds a 1-D array (or ``(N, 1)``); a ``.txt`` one
      value per line (``#`` starts a comment).
    - column: the ``.csv`` column to read (``""``: the only numeric one).
    Returns a :class:`Series`: values ``(N,)`` with the gaps filled (:func:`fill_gaps`) and
    their count. Raises :class:`SeriesError` (a ``ValueError``) naming the file and the
    problem: unknown format, no such file, empty, no header, a column that is missing or not
    numeric, several numeric columns without ``column``, infinite values, every value
    missing.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS:
        raise SeriesError(f"{name}: unknown format {ext or '(no extension)'!r}; give a "
                          f"{', '.join(_FORMATS)} file")
    if column and ext != ".csv":
        raise SeriesError(f"{name}: --column is for .csv files (a {ext} holds one series)")
    if not os.path.isfile(path):
        raise SeriesError(f"{path}: no such file" if not os.path.exists(path)
                          else f"{path}: not a regular file")
    try:
        if ext == ".csv":
            values, column = _read_csv(path, column)
        elif ext == ".txt":
            values = _read_txt(path)
        else:
            values = _read_npy(path)
    except UnicodeDecodeError:
        raise SeriesError(f"{name}: not a text file (UTF-8)") from None
    except csv.Error as err:
        raise SeriesError(f"{name}: not a valid .csv ({err})") from None
    values = np.asarray(values, dtype=np.float64)
    if np.isinf(values).any():
        where = int(np.flatnonzero(np.isinf(values))[0])
        raise SeriesError(f"{name}: value {where} is infinite")
    try:
        filled, missing = fill_gaps(values)
    except SeriesError as err:
        raise SeriesError(f"{name}: {err}") from None
    return Series(filled, missing, column if ext == ".csv" else "", name)


def split_bounds(n: int, val_frac: float, test_frac: float) -> tuple[int, int]:
    """The chronological split of ``n`` values: ``(n1, n2)``.

    Values ``[0, n1)`` are the training part, ``[n1, n2)`` the validation part, ``[n2, n)``
    the test part; ``n - n2 = round(n * test_frac)``, ``n2 - n1 = round(n * val_frac)``, each
    at least 1. Returns two ints.
    """
    n_test, n_val = max(1, round(n * test_frac)), max(1, round(n * val_frac))
    if n - n_val - n_test < 2:
        raise SeriesError(f"{n} values leave no training part beside {n_val} validation and "
                          f"{n_test} test values")
    return n - n_val - n_test, n - n_test


@dataclass(frozen=True)
class Scaler:
    """z-scoring of the levels, or of their first differences (``diff``).

    - diff: model the differences ``x[t+1] - x[t]`` (lag 1) instead of the levels (lag 0).
    - mean, std: of the training part's levels (or differences) only.
    """
    diff: bool
    mean: float
    std: float

    @property
    def lag(self) -> int:
        """1 with ``diff``, else 0: ``z[i]`` is known once ``x[i + lag]`` is."""
        return int(self.diff)

    @classmethod
    def fit(cls, train: np.ndarray, diff: bool) -> "Scaler":
        """The scaler of a training part ``train (n1,)`` (levels)."""
        values = np.diff(train) if diff else np.asarray(train, dtype=np.float64)
        std = float(np.std(values))
        if not std > 0:
            raise SeriesError("the training part is constant" + (" in its differences" if diff
                                                                   else "") + "; nothing to learn")
        return cls(bool(diff), float(np.mean(values)), std)

    def transform(self, levels: np.ndarray) -> np.ndarray:
        """z ``(N - lag,)`` of levels ``(N,)``."""
        values = np.diff(levels) if self.diff else np.asarray(levels, dtype=np.float64)
        return (values - self.mean) / self.std

    def one_step(self, z_pred: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Levels from predictions of single values.

        - z_pred: predicted ``z[i]``, any shape; previous: the levels ``x[i + lag - 1]`` (the
          last known value before each target), the same shape.
        Returns the predicted levels ``x[i + lag]``, that shape.
        """
        values = self.mean + self.std * np.asarray(z_pred)
        return np.asarray(previous) + values if self.diff else values

    def path(self, z_pred: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Levels of a multi-step forecast.

        - z_pred: ``(K, ...)`` successive predictions; last: the last known level ``(...)``.
        Returns ``(K, ...)``: with differences, ``last`` plus their running sum.
        """
        values = self.mean + self.std * np.asarray(z_pred)
        return np.asarray(last) + np.cumsum(values, axis=0) if self.diff else values

    def to_dict(self) -> dict:
        return {"diff": self.diff, "mean": self.mean, "std": self.std}


@dataclass(frozen=True, eq=False)
class SeriesTask(Task):
    """A :class:`train.task.Task` of one series, with what evaluation and forecasts need.

    - values: the series' levels ``(N,)`` (gaps filled), data units.
    - scaler: the :class:`Scaler` (training-part statistics); z: the scaled series ``(N - lag,)``.
    - bounds: ``(n1, n2)`` of :func:`split_bounds`.
    - streams: 0 for windows, else B (the trainer's ``--tbptt``).
    The training windows ``train_x, train_y (T, N_windows, 1)`` score every step (``mask``
    None); the validation windows ``val_x, val_y (T, n2 - n1, 1)`` one target each, at their
    last step (``val_mask``). With streams: ``train_x, train_y (L, B, 1)``, B contiguous
    streams of L steps, the last ending at the training part's end (the first values of
    the part, ``(n1 - 1 - lag) % B``, are left out); ``val_x, val_y (n2 - lag - 1, 1, 1)``,
    the series from its start up to the last validation target, ``val_mask`` 1 at the
    validation part's targets.
    """
    values: np.ndarray | None = None
    scaler: Scaler | None = None
    z: np.ndarray | None = None
    bounds: tuple = (0, 0)
    streams: int = 0

    @property
    def first_origin(self) -> int:
        """The first level index a prediction can start from: after a window (``seq_len +
        lag``), or with streams after two values of z (``2 + lag``)."""
        return (2 if self.streams else self.spec["seq_len"]) + self.scaler.lag

    def part(self, name: str) -> range:
        """The level indices j of the targets of ``"train"`` (those a training window, or
        stream, can predict), ``"val"`` or ``"test"``."""
        n1, n2 = self.bounds
        lag = self.scaler.lag
        if self.streams:                 # the first target of the first stream
            first = n1 - 1 - lag - self.streams * self.seq_len + 1 + lag
        else:                            # the last target of the first window
            first = self.spec["seq_len"] + lag
        return {"train": range(first, n1), "val": range(n1, n2),
                "test": range(n2, len(self.values))}[name]


def windows(z: np.ndarray, ends: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of next-value prediction ending at the z indices ``ends``.

    - z: the scaled series ``(M,)``; ends: ints ``(B,)``, the index of each window's last
      target (``>= seq_len``); seq_len: T.
    Returns ``(xs, ys)``, each ``(T, B, 1)``: ``xs[:, b] = z[e - T : e]``,
    ``ys[:, b] = z[e - T + 1 : e + 1]`` for ``e = ends[b]``.
    """
    index = _window_index(ends, seq_len)
    return z[index][..., None], z[index + 1][..., None]


def _window_index(ends, seq_len):
    """The input indices ``(T, B)`` of the windows whose last targets are ``ends``."""
    return np.asarray(ends, dtype=np.intp)[None, :] + np.arange(-seq_len, 0)[:, None]


def series_task(seq_len: int, *, values, seed: int = 0, diff: bool = False,
                val_frac: float = 0.2, test_frac: float = 0.2, source: str = "",
                column: str = "", missing: int = 0, scaler: dict | None = None,
                streams: int = 0) -> SeriesTask:
    """The ``series`` task: windows of a scaled series, split in time (module docstring).

    - seq_len: T, the window (unused with ``streams``); values: the levels ``(N,)`` (finite:
      gaps already filled).
    - seed: unused (the data is given), kept so that ``make_task(**task.spec)`` regenerates.
    - diff: model first differences; val_frac, test_frac: sizes of the last two parts.
    - source, column, missing: where the values came from (kept in ``spec`` for the record).
    - scaler: the statistics a checkpoint stored (``Scaler.to_dict()``), checked against those
      of ``values``; None: computed.
    - streams: 0 for windows; B >= 1: the training part whole, as B contiguous streams
      (:class:`SeriesTask`), validated over the whole series.
    Returns a :class:`SeriesTask`; its ``spec`` holds the values themselves, so a checkpoint
    regenerates the task without the file.
    """
    if isinstance(streams, bool) or not isinstance(streams, (int, np.integer)) or streams < 0:
        raise SeriesError(f"streams must be an integer >= 0, got {streams!r}")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(values).all():
        raise SeriesError("the values must be finite (fill the gaps first: fill_gaps)")
    n1, n2 = split_bounds(len(values), val_frac, test_frac)
    stored, scaler = scaler, Scaler.fit(values[:n1], diff)
    if stored is not None and stored != scaler.to_dict():
        raise SeriesError(f"the stored scaler {stored} is not that of the values "
                          f"{scaler.to_dict()}")
    z = scaler.transform(values)
    lag, T = scaler.lag, seq_len
    last_train = n1 - 1 - lag                    # the last z index whose level is in training
    spec = dict(name="series", seq_len=T, seed=seed, values=values, diff=bool(diff),
                val_frac=val_frac, test_frac=test_frac, source=source, column=column,
                missing=int(missing), scaler=scaler.to_dict())
    if streams:
        return _stream_task(z, scaler, values, (n1, n2), int(streams), {**spec,
                                                                        "streams": int(streams)})
    if last_train - T < 0:
        raise SeriesError(f"the training part ({n1} values) is too short for one window of "
                          f"{T} steps: give a shorter --window (at most {max(n1 - 2 - lag, 1)})")
    train_x, train_y = windows(z, np.arange(T, last_train + 1), T)
    val_ends = np.arange(n1, n2) - lag
    val_x, val_y = windows(z, val_ends, T)
    val_mask = np.zeros(T)
    val_mask[-1] = 1.0
    baseline = (np.full_like(val_y, -scaler.mean / scaler.std) if diff else val_x.copy())
    return SeriesTask("series", train_x, train_y, val_x, val_y, None, val_baseline=baseline,
                      baseline="repeat the last value", spec=spec, scale=scaler.std,
                      val_mask=val_mask, values=values, scaler=scaler, z=z, bounds=(n1, n2))


def _stream_task(z, scaler, values, bounds, streams, spec):
    """The series task of ``series_task(..., streams=B)``: no windows (its docstring)."""
    (n1, n2), lag = bounds, scaler.lag
    n = n1 - 1 - lag                     # training targets z[1 .. n], inputs z[0 .. n - 1]
    if n < streams:
        raise SeriesError(f"the training part ({n1} values) has {n} targets, fewer than "
                          f"--batch {streams} streams: give a smaller --batch")
    L = n // streams
    index = (n - streams * L) + L * np.arange(streams)[None, :] + np.arange(L)[:, None]
    train_x, train_y = z[index][..., None], z[index + 1][..., None]
    val_x, val_y = z[:n2 - lag - 1, None, None], z[1:n2 - lag, None, None]
    val_mask = np.zeros(len(val_x))
    val_mask[n:] = 1.0                   # targets z[n + 1 ...]: the levels n1 ... n2 - 1
    baseline = (np.full_like(val_y, -scaler.mean / scaler.std) if scaler.diff
                else val_x.copy())
    return SeriesTask("series", train_x, train_y, val_x, val_y, None, val_baseline=baseline,
                      baseline="repeat the last value", spec=spec, scale=scaler.std,
                      val_mask=val_mask, values=values, scaler=scaler, z=z, bounds=(n1, n2),
                      streams=streams)


def load_task(path: str | os.PathLike, seq_len: int, *, column: str = "", diff: bool = False,
              val_frac: float = 0.2, test_frac: float = 0.2, seed: int = 0,
              streams: int = 0) -> SeriesTask:
    """:func:`read_series` then :func:`series_task` (what ``lstm-ag-train series`` runs).

    Raises :class:`SeriesError` naming the file for anything wrong with it or its split.
    """
    series = read_series(path, column)
    try:
        return series_task(seq_len, values=series.values, seed=seed, diff=diff,
                           val_frac=val_frac, test_frac=test_frac, source=series.source,
                           column=series.column, missing=series.missing, streams=streams)
    except SeriesError as err:
        raise SeriesError(f"{series.source}: {err}") from None


# -- baselines and evaluation (data units) ----------------------------------------------------

def _lagged(z, ends, p):
    """Rows ``[z[e - p], ..., z[e - 1], 1]`` for each e of ends: ``(len(ends), p + 1)``."""
    ends = np.asarray(ends, dtype=np.intp)
    return np.column_stack([z[ends[:, None] + np.arange(-p, 0)[None, :]],
                            np.ones(len(ends))])


def fit_ar(z: np.ndarray, last: int, p: int) -> np.ndarray:
    """AR(p) with an intercept by least squares on ``z[:last + 1]``.

    - z: the scaled series ``(M,)``; last: the last index usable as a target; p: the order.
    Returns the coefficients ``(p + 1,)``: ``z[i] ~ coef[:p] @ z[i - p : i] + coef[p]``, fitted
    on every target i in ``[p, last]`` with ``np.linalg.lstsq``.
    """
    ends = np.arange(p, last + 1)
    if len(ends) <= p + 1:
        raise SeriesError(f"AR({p}) needs more than {p + 1} training targets, got {len(ends)}")
    return np.linalg.lstsq(_lagged(z, ends, p), z[ends], rcond=None)[0]


def ar_predict(z: np.ndarray, ends: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """One-step AR predictions of ``z[e]`` from ``z[e - p : e]`` for each e of ``ends``:
    ``(len(ends),)``."""
    return _lagged(z, ends, len(coef) - 1) @ coef


def errors(pred: np.ndarray, truth: np.ndarray, scale: float | None = None) -> dict:
    """``{"mse", "mae"}`` of predictions against the truth (any equal shapes), and ``"mase"``
    (MAE / ``scale``) when a scale is given."""
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    out = {"mse": float(np.mean(err * err)), "mae": float(np.mean(np.abs(err)))}
    if scale is not None:
        out["mase"] = out["mae"] / scale if scale > 0 else None
    return out


def choose_ar_order(task: SeriesTask, max_order: int = MAX_AR_ORDER) -> tuple[int, np.ndarray]:
    """The AR order with the lowest one-step validation MSE, p in 1..P, with P the smaller of
    ``max_order`` and a third of the training part.

    Returns ``(p, coef)`` (coef of :func:`fit_ar` on the training part).
    """
    lag, (n1, _) = task.scaler.lag, task.bounds
    last, val = n1 - 1 - lag, np.array(task.part("val")) - lag
    best = None
    for p in range(1, max(1, min(max_order, (n1 - lag) // 3)) + 1):
        coef = fit_ar(task.z, last, p)
        mse = float(np.mean((ar_predict(task.z, val, coef) - task.z[val]) ** 2))
        if best is None or mse < best[0]:
            best = (mse, p, coef)
    return best[1], best[2]


def one_step(params: dict, task: SeriesTask, targets) -> np.ndarray:
    """The LSTM's one-step predictions, in data units, of the levels ``x[j]`` for each j of
    ``targets`` (each from the window of the T values of z before it, from a zero state; with
    streams, from the model run over the whole series before it).

    - params: trained parameters (D = O = 1); targets: level indices ``(B,)``.
    Returns ``(B,)``.
    """
    targets = np.asarray(targets, dtype=np.intp)
    ends = targets - task.scaler.lag            # the z index of each target
    with np.errstate(all="ignore"):
        if task.streams:
            ys = lstm_ag.predict(params, task.z[:ends.max(), None, None])[:, 0, 0]
            return task.scaler.one_step(ys[ends - 1], task.values[targets - 1])
        xs = task.z[_window_index(ends, task.spec["seq_len"])][..., None]
        ys = lstm_ag.predict(params, xs)
    return task.scaler.one_step(ys[-1, :, 0], task.values[targets - 1])


def _states_after(params, z, ends):
    """The LSTM's state after reading ``z[:e]`` for each e of ``ends`` (each >= 1), stacked
    along the batch axis in the order of ``ends``: one pass over the series, the state
    carried from one end to the next."""
    h, c = [None] * len(ends), [None] * len(ends)
    state, done = None, 0
    for k in np.argsort(ends, kind="stable"):
        if ends[k] > done:
            state = lstm_ag.predict(params, z[done:ends[k], None, None], state,
                                    return_state=True)[1]
            done = ends[k]
        h[k], c[k] = state
    axis = h[0].ndim - 2                        # (1, H), or (layers, 1, H)
    return np.concatenate(h, axis), np.concatenate(c, axis)


def multi_step(params: dict | None, task: SeriesTask, origins, horizon: int, *,
               coef: np.ndarray | None = None) -> np.ndarray:
    """Forecasts of the levels ``x[o], ..., x[o + K - 1]`` from the values before each origin o.

    - params: LSTM parameters (their forecast feeds each prediction back,
      ``lstm_ag.forecast``), or None for the AR(p) of ``coef`` (iterated the same way).
    - origins: level indices ``(B,)``, each ``>= task.first_origin`` (and ``> p + lag`` for
      AR); horizon: K.
    Returns ``(K, B)``, data units.
    """
    origins = np.asarray(origins, dtype=np.intp)
    lag, z = task.scaler.lag, task.z
    if params is not None and task.streams:      # the state of the whole series before o
        ends = origins - lag
        with np.errstate(all="ignore"):
            state = _states_after(params, z, ends - 1)
            zs = lstm_ag.forecast(params, z[ends - 1][None, :, None], horizon, state)[:, :, 0]
    elif params is not None:
        xs = z[_window_index(origins - lag, task.spec["seq_len"])][..., None]
        with np.errstate(all="ignore"):
            zs = lstm_ag.forecast(params, xs, horizon)[:, :, 0]
    else:
        p = len(coef) - 1
        history = [z[origins - lag - p + k] for k in range(p)]            # p arrays (B,)
        zs = []
        for _ in range(horizon):
            nxt = np.column_stack([*history[-p:], np.ones(len(origins))]) @ coef
            history.append(nxt)
            zs.append(nxt)
        zs = np.array(zs)
    return task.scaler.path(zs, task.values[origins - 1])


def evaluate(params: dict, task: SeriesTask, horizon: int = 0, *,
             max_order: int = MAX_AR_ORDER) -> dict:
    """Honest errors in data units: the LSTM against the naive forecast and AR(p).

    - params: the trained parameters; task: the :class:`SeriesTask`.
    - horizon: K >= 1 also scores multi-step forecasts from every test origin o with
      ``o + K <= N`` (0: one step only).
    Returns a JSON-ready dict: ``{"val": {...}, "test": {...}}``; each has the LSTM's ``n``
    (targets), ``mse``, ``mae``, ``mase`` (MAE over the in-sample MAE of the naive forecast on
    the training part) and the same for ``"naive"`` and ``"ar"`` (with its ``order``); the
    test part also ``"horizon"``: ``{"steps": K, "origins", "lstm", "naive", "ar"}`` with
    ``mse``, ``mae`` over every origin and step and ``mse_by_step`` (K values).
    """
    values, n1 = task.values, task.bounds[0]
    scale = float(np.mean(np.abs(np.diff(values[:n1]))))        # in-sample naive MAE
    p, coef = choose_ar_order(task, max_order)
    lag = task.scaler.lag
    out = {}
    for name in ("val", "test"):
        targets = np.array(task.part(name))
        truth = values[targets]
        row = {"n": len(targets), **errors(one_step(params, task, targets), truth, scale)}
        row["naive"] = errors(values[targets - 1], truth, scale)
        ar = task.scaler.one_step(ar_predict(task.z, targets - lag, coef), values[targets - 1])
        row["ar"] = {"order": p, **errors(ar, truth, scale)}
        out[name] = row
    test = np.array(task.part("test"))
    origins = test[test + horizon <= len(values)] if horizon else test[:0]
    if len(origins):
        truth = values[origins[None, :] + np.arange(horizon)[:, None]]        # (K, B)
        preds = {"lstm": multi_step(params, task, origins, horizon),
                 "naive": np.broadcast_to(values[origins - 1], truth.shape),
                 "ar": multi_step(None, task, origins, horizon, coef=coef)}
        out["test"]["horizon"] = {"steps": horizon, "origins": len(origins)}
        for name, pred in preds.items():
            out["test"]["horizon"][name] = {
                **errors(pred, truth),
                "mse_by_step": [float(v) for v in np.mean((pred - truth) ** 2, axis=1)]}
    return out


def forecast_levels(params: dict, task: SeriesTask, horizon: int, *,
                    origin: int | None = None) -> np.ndarray:
    """The LSTM's forecast of ``horizon`` levels from ``origin`` (a level index: the first
    value forecast), from the values before it; None: past the end of the series.

    Returns ``(horizon,)``, data units.
    """
    n = len(task.values)
    origin = n if origin is None else origin
    if not task.first_origin <= origin <= n:
        raise ValueError(f"origin must be in [{task.first_origin}, {n}], got {origin}")
    return multi_step(params, task, [origin], horizon)[:, 0]
