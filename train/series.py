"""Your own sequence: read a series, split it in time, scale it, and evaluate honestly.

The ``series`` task of the trainer (``lstm-ag-train series --data FILE``), in the order a run
takes it, each step in its own module (this one gathers their names):

* :mod:`train.series_io`, :func:`read_series`: one numeric column of a ``.csv`` (with a
  header; its date column read as the series' dates), a ``.npy`` array or a ``.txt`` of one
  value per line. Missing values (empty cells, ``NA``, ``nan``, ..., holes in the dates) are
  filled by linear interpolation (the nearest value before the first or after the last known
  one) and counted.
* :mod:`train.split`: :func:`split_bounds`, a chronological split into a training, a
  validation and a test part (default 60/20/20), by the index of the *target*, the value
  predicted; :class:`Scaler`, z-scoring (optionally of first and/or seasonal differences)
  with the statistics of the **training part only**; :func:`series_task`, the windows (or
  streams) the model trains on, every window in one part.
* :mod:`train.baselines`, :func:`evaluate`: one-step errors over the test part in data units
  for the LSTM, the naive and seasonal naive forecasts, AR(p) (least squares on the training
  part, p chosen on the validation part) and, with the ``stats`` extra, AutoETS and AutoARIMA;
  errors of multi-step forecasts; and :func:`verdict`, the LSTM against the strongest of them.
"""
from .baselines import (
    MAX_AR_ORDER,
    STATS_HINT,
    ar_order_cap,
    ar_predict,
    choose_ar_order,
    errors,
    evaluate,
    fit_ar,
    forecast_intervals,
    forecast_levels,
    multi_step,
    one_step,
    seasonal_naive,
    stats_peers,
    verdict,
)
from .series_io import (
    DATE_COLUMNS,
    MISSING,
    Series,
    SeriesError,
    fill_gaps,
    parse_dates,
    read_series,
)
from .split import Scaler, SeriesTask, detect_season, load_task, series_task, split_bounds, windows

__all__ = ["SeriesError", "Series", "read_series", "fill_gaps", "split_bounds", "Scaler",
           "SeriesTask", "series_task", "load_task", "windows", "fit_ar", "ar_predict",
           "choose_ar_order",
           "one_step", "multi_step", "errors", "evaluate", "forecast_levels", "MISSING",
           "DATE_COLUMNS", "MAX_AR_ORDER", "parse_dates", "detect_season", "ar_order_cap",
           "seasonal_naive", "stats_peers", "verdict", "forecast_intervals", "STATS_HINT"]
