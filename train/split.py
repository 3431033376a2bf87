"""A series split in time, scaled and windowed: what the model trains and is scored on.

* :func:`split_bounds`: a chronological split into a training, a validation and a test part
  (default 60/20/20), by the index of the *target*, the value predicted.
* :class:`Scaler`: z-scoring of the levels, or of their differences: first (``diff``),
  seasonal (``season`` M: ``x[t] - x[t - M]``) or both, with the mean and standard deviation
  of the **training part only**; it turns predictions back into the series' own units.
* :func:`detect_season`: the dominant period of the training part, from its autocorrelation.
* :func:`series_task`: a :class:`train.task.Task` of windows of the scaled series. Every window
  lies in one part: training windows are built from training values alone (inputs and
  targets); a validation or test window has one scored target, its last step, in its part,
  and sees only values before it. Nothing the model is trained or early-stopped on depends
  on the test part. With ``streams`` B (the trainer's ``--tbptt``) the series is not
  windowed: the training part is B contiguous streams, trained chunk by chunk with the state
  carried, and every prediction (validation, test, forecasts) comes from the model run over
  the whole series before it, from its first value.

The transformed series z and the levels x are indexed so that ``z[i]`` is known once
``x[i + lag]`` is, with ``lag = int(diff) + season`` (``z[i] = (x[i+1] - x[i] - mean) / std``
for first differences, ``(x[i] - mean) / std`` for levels): predicting ``z[i]`` from ``z[:i]``
predicts the level ``x[i + lag]`` from the levels before it.
"""
import math
import os
from dataclasses import dataclass

import numpy as np

from .series_io import SeriesError, read_series
from .task import Task

__all__ = ["split_bounds", "Scaler", "SeriesTask", "series_task", "load_task", "windows",
           "detect_season", "calendar_periods", "encode_dates", "dates_of"]


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
    """z-scoring of the levels, or of their differences.

    - diff: first differences ``x[t+1] - x[t]``; season: M >= 2 for seasonal differences
      ``x[t+M] - x[t]`` (0: none); both: ``(1 - B)(1 - B^M) x``. ``lag = int(diff) + season``.
    - mean, std: of the training part's levels (or differences) only.
    """
    diff: bool
    mean: float
    std: float
    season: int = 0

    @property
    def lag(self) -> int:
        """``int(diff) + season``: ``z[i]`` is known once ``x[i + lag]`` is."""
        return int(self.diff) + self.season

    @classmethod
    def fit(cls, train: np.ndarray, diff: bool, season: int = 0) -> "Scaler":
        """The scaler of a training part ``train (n1,)`` (levels)."""
        values = cls(bool(diff), 0.0, 1.0, int(season)).transform(train)
        std = float(np.std(values)) if len(values) else 0.0
        if not std > 0:
            what = " in its differences" if diff or season else ""
            raise SeriesError(f"the training part is constant{what}; nothing to learn")
        return cls(bool(diff), float(np.mean(values)), std, int(season))

    def _differences(self, levels):
        values = np.asarray(levels, dtype=np.float64)
        if self.season:
            values = values[self.season:] - values[:-self.season]
        return np.diff(values) if self.diff else values

    def transform(self, levels: np.ndarray) -> np.ndarray:
        """z ``(N - lag,)`` of levels ``(N,)``."""
        return (self._differences(levels) - self.mean) / self.std

    def _base(self, get):
        """What a difference is added to: ``get(k)`` is the level k steps back."""
        if self.diff and self.season:
            return get(1) + get(self.season) - get(self.season + 1)
        if self.season:
            return get(self.season)
        return get(1) if self.diff else 0.0

    def levels(self, z_pred: np.ndarray, values: np.ndarray, targets) -> np.ndarray:
        """One-step predictions in levels: ``z_pred (B,)`` predicts ``z[j - lag]`` for each
        target j of ``targets (B,)``; ``values (N,)``: the known levels. Returns ``(B,)``."""
        targets = np.asarray(targets, dtype=np.intp)
        values = np.asarray(values, dtype=np.float64)
        return self.mean + self.std * np.asarray(z_pred) + self._base(
            lambda k: values[targets - k])

    def levels_path(self, z_pred: np.ndarray, values: np.ndarray, origins) -> np.ndarray:
        """Multi-step forecasts in levels: ``z_pred (K, B)`` are successive predictions from
        each origin o of ``origins (B,)`` (the first level forecast); ``values (N,)``: the
        levels, known before each origin. Returns ``(K, B)``: each difference added to the
        levels before it, forecast ones included."""
        z_pred = np.asarray(z_pred, dtype=np.float64)
        origins = np.asarray(origins, dtype=np.intp)
        lag, K = self.lag, len(z_pred)
        if not lag:
            return self.mean + self.std * z_pred
        path = np.empty((lag + K, len(origins)))
        path[:lag] = np.asarray(values, dtype=np.float64)[origins[None, :] - lag
                                                         + np.arange(lag)[:, None]]
        for k in range(K):
            p = lag + k
            path[p] = self.mean + self.std * z_pred[k] + self._base(
                lambda back, p=p: path[p - back])
        return path[lag:]

    def one_step(self, z_pred: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Levels from predictions of single values (no seasonal difference).

        - z_pred: predicted ``z[i]``, any shape; previous: the levels ``x[i + lag - 1]`` (the
          last known value before each target), the same shape.
        Returns the predicted levels ``x[i + lag]``, that shape.
        """
        values = self.mean + self.std * np.asarray(z_pred)
        return np.asarray(previous) + values if self.diff else values

    def path(self, z_pred: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Levels of a multi-step forecast (no seasonal difference).

        - z_pred: ``(K, ...)`` successive predictions; last: the last known level ``(...)``.
        Returns ``(K, ...)``: with differences, ``last`` plus their running sum.
        """
        values = self.mean + self.std * np.asarray(z_pred)
        return np.asarray(last) + np.cumsum(values, axis=0) if self.diff else values

    def to_dict(self) -> dict:
        out = {"diff": self.diff, "mean": self.mean, "std": self.std}
        return {**out, "season": self.season} if self.season else out


#: The periods worth trying for each step of the dates: ``{(count, unit): (M, ...)}``.
_PERIODS = {(1, "M"): (12,), (3, "M"): (4,), (7, "D"): (52,), (1, "D"): (7, 365),
            (1, "B"): (5, 261)}


def calendar_periods(step) -> tuple:
    """The calendar's periods for dates of ``step`` ``(count, unit)``: monthly ``(12,)``,
    quarterly ``(4,)``, weekly ``(52,)``, daily ``(7, 365)``, hourly ``(24, 168)``,
    half-hourly ``(48, 336)``; yearly and others ``()`` (any lag is then tried)."""
    if step is None:
        return ()
    count, unit = step
    if unit == "s" and count < 86400 and 86400 % count == 0:
        day = 86400 // count
        return (day, 7 * day)
    return _PERIODS.get((count, unit), ())


def _acf(values, lags):
    """The sample autocorrelation of ``values (n,)`` at each lag of ``lags``."""
    x = values - values.mean()
    denom = float(x @ x)
    return np.array([float(x[k:] @ x[:-k]) / denom if denom > 0 else 0.0 for k in lags])


def detect_season(train: np.ndarray, step) -> tuple[int, float]:
    """The dominant period of a training part ``train (n1,)`` with dates of ``step``: among
    the calendar's periods (:func:`calendar_periods`; without any, every lag 2 .. n1 // 3),
    the one where the autocorrelation of the first differences is highest, if it is above
    0.2 and twice its standard error ``2 / sqrt(n1)``, and has three periods in the part;
    searching every lag (a cycle, as yearly sunspots), the first peak reaching 70% of that
    highest one (the cycle, not a multiple of it).

    Returns ``(M, autocorrelation)``, ``(0, nan)`` when no period stands out.
    """
    changes = np.diff(np.asarray(train, dtype=np.float64))
    n = len(changes)
    lags = [m for m in calendar_periods(step) if 3 * m <= n] or \
        (list(range(2, n // 3 + 1)) if step is not None and not calendar_periods(step) else [])
    if not lags:
        return 0, math.nan
    acf = _acf(changes, lags)
    k = int(np.argmax(acf))
    if not acf[k] > max(0.2, 2 / math.sqrt(n)):
        return 0, math.nan
    if not calendar_periods(step):          # a cycle: its first peak, not a multiple of it
        peaks = [i for i in range(len(acf)) if acf[i] >= 0.7 * acf[k]
                 and (i == 0 or acf[i] > acf[i - 1]) and (i + 1 == len(acf) or
                                                          acf[i] >= acf[i + 1])]
        k = peaks[0]
    return int(lags[k]), float(acf[k])


@dataclass(frozen=True, eq=False)
class SeriesTask(Task):
    """A :class:`train.task.Task` of one series, with what evaluation and forecasts need.

    - values: the series' levels ``(N,)`` (gaps filled), data units.
    - scaler: the :class:`Scaler` (training-part statistics); z: the scaled series ``(N - lag,)``.
    - bounds: ``(n1, n2)`` of :func:`split_bounds`.
    - streams: 0 for windows, else B (the trainer's ``--tbptt``).
    - season: the period M of the seasonal baselines, 0 for none; notes: what reading the file
      found, in words (holes in the dates filled, a season detected), for the screen.
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
    season: int = 0
    notes: tuple = ()

    @property
    def dates(self) -> np.ndarray | None:
        """The dates of the values ``(N,)`` (``numpy.datetime64``), or None."""
        return dates_of(self.spec.get("dates", ""), len(self.values))

    def date_after(self, k: int = 1) -> np.ndarray | None:
        """The dates of the k values after the series ``(k,)``, or None."""
        return dates_of(self.spec.get("dates", ""), len(self.values) + k)[-k:] \
            if self.spec.get("dates") else None

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
                streams: int = 0, season: int = 0, seasonal_diff: int = 0,
                dates: str = "", data_sha256: str = "") -> SeriesTask:
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
    - season: the period M of the seasonal baselines (0: none); seasonal_diff: M >= 2 to
      model seasonal differences of that lag (0: none).
    - dates: ``"START/COUNT/UNIT"`` (``"1949-01/1/M"``: monthly from January 1949), the
      dates of the values, or ``""``; data_sha256: the file's digest (for the record).
    Returns a :class:`SeriesTask`; its ``spec`` holds the values themselves, so a checkpoint
    regenerates the task without the file.
    """
    if isinstance(streams, bool) or not isinstance(streams, (int, np.integer)) or streams < 0:
        raise SeriesError(f"streams must be an integer >= 0, got {streams!r}")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(values).all():
        raise SeriesError("the values must be finite (fill the gaps first: fill_gaps)")
    n1, n2 = split_bounds(len(values), val_frac, test_frac)
    for name, value in (("season", season), ("seasonal_diff", seasonal_diff)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0 \
                or value == 1 or 2 * value >= n1:
            raise SeriesError(f"--{name.replace('_', '-')} must be 0 or an integer in "
                              f"[2, {max(2, (n1 - 1) // 2)}] (at most half the training part "
                              f"of {n1} values), got {value!r}")
    stored, scaler = scaler, Scaler.fit(values[:n1], diff, seasonal_diff)
    if stored is not None and stored != scaler.to_dict():
        raise SeriesError(f"the stored scaler {stored} is not that of the values "
                          f"{scaler.to_dict()}")
    z = scaler.transform(values)
    lag, T = scaler.lag, seq_len
    last_train = n1 - 1 - lag                    # the last z index whose level is in training
    spec = dict(name="series", seq_len=T, seed=seed, values=values, diff=bool(diff),
                val_frac=val_frac, test_frac=test_frac, source=source, column=column,
                missing=int(missing), scaler=scaler.to_dict())
    spec.update({key: value for key, value in (
        ("season", int(season)), ("seasonal_diff", int(seasonal_diff)), ("dates", dates),
        ("data_sha256", data_sha256)) if value})
    if streams:
        return _stream_task(z, scaler, values, (n1, n2), int(streams), {**spec,
                                                                        "streams": int(streams)})
    from .rundir import available_memory
    available = available_memory()
    if available is not None and window_bytes(len(values), T) > available:
        raise _too_large(len(values), T, available)
    if last_train - T < 0:
        raise SeriesError(f"the training part ({n1} values) is too short for one window of "
                          f"{T} steps: give a shorter --window (at most {max(n1 - 2 - lag, 1)})")
    train_x, train_y = windows(z, np.arange(T, last_train + 1), T)
    val_ends = np.arange(n1, n2) - lag
    val_x, val_y = windows(z, val_ends, T)
    val_mask = np.zeros(T)
    val_mask[-1] = 1.0
    baseline = (np.full_like(val_y, -scaler.mean / scaler.std) if diff else val_x.copy())
    if scaler.season:
        baseline = np.broadcast_to(_naive_z(scaler, values, val_ends)[None, :, None],
                                   val_y.shape).copy()
    return SeriesTask("series", train_x, train_y, val_x, val_y, None, val_baseline=baseline,
                      baseline="repeat the last value", spec=spec, scale=scaler.std,
                      val_mask=val_mask, values=values, scaler=scaler, z=z, bounds=(n1, n2),
                      season=int(season))


def _naive_z(scaler, values, ends):
    """The naive forecast (repeat the last value) of ``z[e]`` for each e of ``ends``."""
    targets = np.asarray(ends, dtype=np.intp) + scaler.lag
    base = scaler.levels(np.zeros(len(targets)), values, targets) - scaler.mean
    return (values[targets - 1] - base - scaler.mean) / scaler.std


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
    if scaler.season:
        baseline = _naive_z(scaler, values, np.arange(1, n2 - lag))[:, None, None]
    return SeriesTask("series", train_x, train_y, val_x, val_y, None, val_baseline=baseline,
                      baseline="repeat the last value", spec=spec, scale=scaler.std,
                      val_mask=val_mask, values=values, scaler=scaler, z=z, bounds=(n1, n2),
                      streams=streams, season=int(spec.get("season", 0)))


def _too_large(n, seq_len, available=None):
    """The error of a series whose windows do not fit in memory, naming its length."""
    where = f", {available / 2**30:.3g} GiB available" if available else ""
    return SeriesError(f"{n} values: out of memory building the windows of {seq_len} steps "
                       f"(about {window_bytes(n, seq_len) / 2**30:.3g} GiB{where}); train it "
                       "whole with --tbptt K (no windows), or on a shorter series")


def window_bytes(n: int, seq_len: int) -> int:
    """About the bytes the windows of a series of ``n`` values take: inputs, targets and the
    validation baseline, ``seq_len`` float64 steps for each value (Python ints)."""
    return 8 * seq_len * n * 5 // 2


def encode_dates(dates, step) -> str:
    """``"START/COUNT/UNIT"`` of regular dates ``(N,)`` of ``step`` ``(count, unit)``."""
    return f"{dates[0]}/{step[0]}/{step[1]}" if dates is not None and step else ""


def dates_of(code: str, n: int) -> np.ndarray | None:
    """The ``n`` dates of :func:`encode_dates`' ``code`` (``(n,)`` datetime64), or None."""
    if not code:
        return None
    start, count, unit = code.rsplit("/", 2)
    if unit == "B":
        return np.busday_offset(np.datetime64(start, "D"), np.arange(n))
    return np.datetime64(start, unit) + np.arange(n) * np.timedelta64(int(count), unit)


def load_task(path: str | os.PathLike, seq_len: int, *, column: str = "", diff: bool = False,
              val_frac: float = 0.2, test_frac: float = 0.2, seed: int = 0,
              streams: int = 0, season: int = 0, seasonal_diff: int = 0,
              fit_window: bool = False) -> SeriesTask:
    """:func:`read_series` then :func:`series_task` (what ``lstm-ag-train series`` runs).

    - season: M >= 2 for the seasonal baselines; 0: detected from the training part when the
      file has dates (:func:`detect_season`), else none; 1: none.
    - seasonal_diff: M >= 2, or -1 for the season (given or detected); 0: none.
    - fit_window: shorten a window ``seq_len`` too long for the training part to half of it
      (the task's ``spec["seq_len"]`` says which was taken).
    The task's ``notes`` say what was found (holes in the dates, the season detected).
    Raises :class:`SeriesError` naming the file for anything wrong with it or its split.
    """
    series = read_series(path, column)
    notes = list(series.notes)
    try:
        n1 = split_bounds(len(series.values), val_frac, test_frac)[0]
        if season == 0 and series.step is not None:
            season, acf = detect_season(series.values[:n1], series.step)
            from .series_io import describe_step
            notes.append(f"season {season} detected ({describe_step(series.step)} dates; the "
                         f"training part's differences have autocorrelation {acf:.2f} at lag "
                         f"{season}; --season 1 for none)" if season else
                         f"no season detected ({describe_step(series.step)} dates); give one "
                         "with --season M")
        season = 0 if season == 1 else season
        if seasonal_diff == -1:
            if not season:
                raise SeriesError("--diff M takes the season, and there is none: give "
                                  "--season M (or dates from which one is detected)")
            seasonal_diff = season
        targets = n1 - 1 - int(diff) - seasonal_diff        # training targets of z
        if fit_window and not streams and seq_len > targets - 1:
            seq_len = max(2, targets // 2)
        try:
            task = series_task(seq_len, values=series.values, seed=seed, diff=diff,
                               val_frac=val_frac, test_frac=test_frac, source=series.source,
                               column=series.column, missing=series.missing, streams=streams,
                               season=season, seasonal_diff=seasonal_diff,
                               dates=encode_dates(series.dates, series.step),
                               data_sha256=series.sha256)
        except MemoryError:
            raise _too_large(len(series.values), seq_len) from None
    except SeriesError as err:
        raise SeriesError(f"{series.source}: {err}") from None
    object.__setattr__(task, "notes", tuple(notes))
    return task
