"""Baselines and evaluation of a series model, in data units, on the test part.

* the naive forecast (repeat the last value) and, with a season M, the seasonal naive one
  (repeat the value one season back);
* AR(p), a linear autoregression with an intercept fitted by least squares on the training
  part, p chosen on the validation part among 1 .. :func:`ar_order_cap` (every order from one
  QR factorisation, :func:`choose_ar_order`);
* optionally (the ``stats`` extra, statsforecast): AutoETS and AutoARIMA fitted on the
  training part, then run over the series with their parameters fixed;
* :func:`evaluate`: one-step errors over the validation and test parts, multi-step errors
  from every test origin, and :func:`verdict`: the LSTM against the strongest of them, in
  plain words and as a structured record (what the screen prints and metrics.json holds).
"""
import math
import time
import warnings

import numpy as np

import lstm_ag

from .series_io import SeriesError
from .split import SeriesTask, _window_index

__all__ = ["fit_ar", "ar_predict", "choose_ar_order", "ar_order_cap", "one_step", "multi_step",
           "errors", "evaluate", "verdict", "forecast_levels", "forecast_intervals",
           "seasonal_naive", "stats_peers", "STATS_HINT", "MAX_AR_ORDER"]

#: The largest order p tried for AR(p) when the series has no season longer than it (the cap
#: scales with the training part: :func:`ar_order_cap`).
MAX_AR_ORDER = 100
#: What the table says when the ``stats`` extra is not installed.
STATS_HINT = "ETS/ARIMA: pip install 'lstm-ag[stats]'"
#: The longest season given to AutoETS and AutoARIMA (AutoETS takes none longer; AutoARIMA
#: took minutes on the weekly CO2 series with 52): a longer one is left out of their models.
MAX_PEER_SEASON = 24
#: The values before each origin the peers' multi-step forecasts are filtered from (their
#: fixed parameters run over the whole series once for the one-step predictions; per origin,
#: a filter over the whole past would cost O(N) each, O(N^2) for every origin of a long
#: series: benchmarks/README.md).
PEER_HISTORY = 1000
#: Windows predicted at once by :func:`one_step` (bounds the memory of a long series).
CHUNK = 32768


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


def ar_order_cap(n_train: int, season: int = 0) -> int:
    """The largest AR order tried on a training part of ``n_train`` targets: ``10 log10 n``
    (rounded up; at least :data:`MAX_AR_ORDER` for long series is not needed), raised to
    ``season + 1`` so that a season's lag is in reach, and at most a third of the part."""
    cap = max(math.ceil(10 * math.log10(max(n_train, 2))), season + 1 if season else 0)
    return max(1, min(cap, n_train // 3))


def _orders_by_qr(z, last, val, P):
    """The one-step validation MSE of AR(p) for p = 1 .. P, each fitted on its own targets
    ``[p, last]`` as :func:`fit_ar`, from one QR factorisation (module docstring).

    Columns ``[1, z[i-1], ..., z[i-P], z[i]]``: the fit of order p is the leading ``p + 1``
    block of R and the target column's first ``p + 1`` entries. Orders are visited from P
    down: each adds the one target its order has beyond the previous, rotated into R with
    Givens rotations over the first ``p + 1`` columns (the other ones are no longer needed).
    Returns ``(P,)`` MSEs.
    """
    from scipy.linalg import solve_triangular
    ends = np.arange(P, last + 1)
    X = np.empty((len(ends), P + 2))
    X[:, 0] = 1.0
    X[:, 1:P + 1] = z[ends[:, None] - np.arange(1, P + 1)[None, :]]
    X[:, -1] = z[ends]
    R = np.linalg.qr(X, mode="r")
    V = np.ones((len(val), P + 1))
    V[:, 1:] = z[val[:, None] - np.arange(1, P + 1)[None, :]]
    mse = np.empty(P)
    for p in range(P, 0, -1):
        if p < P:                                  # the target z[p], lags z[p-1] .. z[0]
            row = np.zeros(P + 2)
            row[0], row[1:p + 1], row[-1] = 1.0, z[p - 1::-1][:p], z[p]
            cols = np.r_[0:p + 1, P + 1]
            for k in range(p + 1):
                a, b = R[k, k], row[k]
                r = math.hypot(a, b)
                if r == 0.0:
                    continue
                c, s = a / r, b / r
                top, bottom = R[k, cols], row[cols]
                R[k, cols], row[cols] = c * top + s * bottom, c * bottom - s * top
        coef = solve_triangular(R[:p + 1, :p + 1], R[:p + 1, -1])
        mse[p - 1] = float(np.mean((V[:, :p + 1] @ coef - z[val]) ** 2))
    return mse


def choose_ar_order(task: SeriesTask, max_order: int | None = None) -> tuple[int, np.ndarray]:
    """The AR order with the lowest one-step validation MSE, p in 1..P, with P the smaller of
    ``max_order`` (None: :func:`ar_order_cap` of the training part and the task's season)
    and a third of the training part. Every order is scored from one QR factorisation
    (:func:`_orders_by_qr`); the chosen one is refitted by :func:`fit_ar`.

    Returns ``(p, coef)`` (coef of :func:`fit_ar` on the training part).
    """
    lag, (n1, _) = task.scaler.lag, task.bounds
    last, val = n1 - 1 - lag, np.array(task.part("val")) - lag
    if max_order is None:
        max_order = ar_order_cap(n1 - lag, task.season)
    P = max(1, min(max_order, (n1 - lag) // 3))
    if last - P + 1 <= P + 1:
        fit_ar(task.z, last, P)                    # raises: too few training targets
    mse = _orders_by_qr(task.z, last, val, P)
    p = int(np.argmin(mse)) + 1
    return p, fit_ar(task.z, last, p)


def one_step(params: dict, task: SeriesTask, targets, *, progress=None) -> np.ndarray:
    """The LSTM's one-step predictions, in data units, of the levels ``x[j]`` for each j of
    ``targets`` (each from the window of the T values of z before it, from a zero state; with
    streams, from the model run over the whole series before it).

    - params: trained parameters (D = O = 1); targets: level indices ``(B,)``.
    - progress: None, or ``progress(done, total)`` after each block of :data:`CHUNK` windows.
    Returns ``(B,)``.
    """
    targets = np.asarray(targets, dtype=np.intp)
    ends = targets - task.scaler.lag            # the z index of each target
    with np.errstate(all="ignore"):
        if task.streams:
            ys = lstm_ag.predict(params, task.z[:ends.max(), None, None])[:, 0, 0]
            return task.scaler.levels(ys[ends - 1], task.values, targets)
        out = np.empty(len(ends))
        for start in range(0, len(ends), CHUNK):
            block = ends[start:start + CHUNK]
            xs = task.z[_window_index(block, task.spec["seq_len"])][..., None]
            out[start:start + CHUNK] = lstm_ag.predict(params, xs)[-1, :, 0]
            if progress is not None:
                progress(min(start + CHUNK, len(ends)), len(ends))
    return task.scaler.levels(out, task.values, targets)


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
        zs = np.empty((horizon, len(origins)))
        for start in range(0, len(origins), CHUNK):
            block = origins[start:start + CHUNK]
            xs = z[_window_index(block - lag, task.spec["seq_len"])][..., None]
            with np.errstate(all="ignore"):
                zs[:, start:start + CHUNK] = lstm_ag.forecast(params, xs, horizon)[:, :, 0]
    else:
        p = len(coef) - 1
        history = [z[origins - lag - p + k] for k in range(p)]            # p arrays (B,)
        zs = []
        for _ in range(horizon):
            nxt = np.column_stack([*history[-p:], np.ones(len(origins))]) @ coef
            history.append(nxt)
            zs.append(nxt)
        zs = np.array(zs)
    return task.scaler.levels_path(zs, task.values, origins)


def seasonal_naive(values: np.ndarray, origins, horizon: int, season: int) -> np.ndarray:
    """The seasonal naive forecast ``(K, B)``: ``x[o + k]`` predicted by the last value of the
    same season before o, ``x[o + k - M (1 + k // M)]``, for each origin o of ``origins``."""
    k = np.arange(horizon)[:, None]
    return np.asarray(values)[np.asarray(origins)[None, :] + k - season * (1 + k // season)]


def stats_peers(values: np.ndarray, n1: int, season: int, targets, origins,
                horizon: int) -> dict | None:
    """AutoETS and AutoARIMA (statsforecast, the ``stats`` extra) fitted on ``values[:n1]``,
    their parameters then fixed: one-step predictions of ``values[j]`` for each j of
    ``targets`` (from the values before j) and forecasts of ``horizon`` values from each
    origin of ``origins``.

    The forecasts from each origin filter the :data:`PEER_HISTORY` values before it.
    A season longer than :data:`MAX_PEER_SEASON` is left out of both models (and their names
    say so); AutoARIMA approximates the likelihood for a part longer than 150 values or a
    season longer than 12 (the rule of R's ``auto.arima``).
    Returns None when statsforecast is not installed, else ``{"ets": ..., "arima": ...}``,
    each ``{"model", "note", "one_step" (B,), "path" (K, B_o) or None, "seconds"}`` or
    ``{"model", "error"}`` when the fit failed.
    """
    try:
        from statsforecast.models import AutoARIMA, AutoETS
    except ImportError:
        return None
    values = np.asarray(values, dtype=np.float64)
    targets, origins = np.asarray(targets), np.asarray(origins)
    m = season if season and season <= MAX_PEER_SEASON else 1
    note = (f"ETS and ARIMA without the season {season} (statsforecast's AutoETS takes "
            f"seasons up to {MAX_PEER_SEASON})") if season != m and season else ""
    out = {}                                         # R's forecast::auto.arima rule:
    approximation = n1 > 150 or m > 12               # approximate the likelihood when long
    for key, model in (("ets", AutoETS(season_length=m)),
                       ("arima", AutoARIMA(season_length=m, approximation=approximation))):
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                fitted = model.fit(values[:n1])
                one = np.asarray(fitted.forward(y=values, h=1, fitted=True)["fitted"])[targets]
                path = None
                if len(origins) and horizon:
                    path = np.column_stack([np.asarray(fitted.forward(
                        y=values[max(0, o - PEER_HISTORY):o], h=horizon)["mean"])
                        for o in origins])
        except Exception as err:                       # a peer's own failure, reported
            out[key] = {"model": type(model).__name__, "error": f"{type(err).__name__}: {err}"}
            continue
        if not (np.isfinite(one).all() and (path is None or np.isfinite(path).all())):
            out[key] = {"model": type(model).__name__, "error": "non-finite forecasts"}
            continue
        out[key] = {"model": _describe(fitted, type(model).__name__), "note": note,
                    "one_step": one,
                    "path": path, "seconds": time.perf_counter() - start}
    return out


def _describe(fitted, name):
    """The model statsforecast chose, as it names it (``"ETS(A,N,N)"``), else ``name``."""
    model = getattr(fitted, "model_", None)
    if isinstance(model, dict) and isinstance(model.get("method"), str):
        return model["method"]
    try:
        from statsforecast.arima import arima_string
        return " ".join(arima_string(model).split(" with ")[0].split())
    except Exception:                              # another version's layout: its class name
        return name


#: The rows of the table and the verdict: key in the evaluation, label.
BASELINES = (("naive", "naive"), ("seasonal_naive", "seasonal naive"), ("ar", "AR"),
             ("ets", "ETS"), ("arima", "ARIMA"))


def evaluate(params: dict, task: SeriesTask, horizon: int = 0, *,
             max_order: int | None = None, stats: bool = True, progress=None) -> dict:
    """Honest errors in data units: the LSTM against the naive forecast, the seasonal naive one
    (with a season), AR(p) and, with ``stats`` and the extra installed, AutoETS and AutoARIMA.

    - params: the trained parameters; task: the :class:`SeriesTask`.
    - horizon: K >= 1 also scores multi-step forecasts from every test origin o with
      ``o + K <= N`` (0: one step only).
    - max_order: the largest AR order (None: :func:`ar_order_cap`); stats: try the peers;
      progress: None, or ``progress(message)`` for what takes long.
    Returns a JSON-ready dict: ``{"val": {...}, "test": {...}, "verdict": {...}}``; val and
    test have the LSTM's ``n`` (targets), ``mse``, ``mae``, ``mase`` (MAE over the in-sample
    MAE of the naive forecast on the training part) and the same for ``"naive"``,
    ``"seasonal_naive"`` (with its ``season``), ``"ar"`` (with its ``order``), ``"ets"`` and
    ``"arima"`` (with their ``model``), each with the ``seconds`` it took; the test part also
    ``"horizon"``: ``{"steps": K, "origins", "lstm", "naive", ...}`` with ``mse``, ``mae``,
    ``mase`` over every origin and step and ``mse_by_step`` (K values). ``"stats"``: None, or
    why the peers are missing (:data:`STATS_HINT`). ``"verdict"``: :func:`verdict` of the test part.
    """
    values, n1 = task.values, task.bounds[0]
    scale = float(np.mean(np.abs(np.diff(values[:n1]))))        # in-sample naive MAE
    say = progress or (lambda message: None)
    start = time.perf_counter()
    p, coef = choose_ar_order(task, max_order)
    ar_seconds = time.perf_counter() - start
    lag, M = task.scaler.lag, task.season
    test = np.array(task.part("test"))
    origins = test[test + horizon <= len(values)] if horizon else test[:0]
    peers, missing = None, None
    if stats:
        say("fitting AutoETS and AutoARIMA (statsforecast) on the training part")
        targets = np.arange(n1, len(values))
        peers = stats_peers(values, n1, M, targets, origins, horizon)
        missing = STATS_HINT if peers is None else None
    out = {}
    for name in ("val", "test"):
        targets = np.array(task.part(name))
        truth = values[targets]
        say(f"the LSTM on the {'validation' if name == 'val' else 'test'} part: "
            f"{len(targets)} windows")
        t0 = time.perf_counter()
        lstm = one_step(params, task, targets, progress=None if progress is None else (
            lambda done, total: say(f"  {done} of {total} windows")))
        row = {"n": len(targets), **errors(lstm, truth, scale),
               "seconds": time.perf_counter() - t0}
        row["naive"] = errors(values[targets - 1], truth, scale)
        if M:
            row["seasonal_naive"] = {"season": M, **errors(values[targets - M], truth, scale)}
        ar = task.scaler.levels(ar_predict(task.z, targets - lag, coef), values, targets)
        row["ar"] = {"order": p, **errors(ar, truth, scale), "seconds": ar_seconds}
        for key, peer in (peers or {}).items():
            if "error" in peer:
                row[key] = {"model": peer["model"], "error": peer["error"]}
            else:
                row[key] = {"model": peer["model"],
                            **errors(peer["one_step"][targets - n1], truth, scale),
                            "seconds": peer["seconds"]}
                if peer["note"]:
                    row[key]["note"] = peer["note"]
        out[name] = row
    out["stats"] = missing
    if len(origins):
        say(f"forecasts of {horizon} steps from {len(origins)} test origins")
        truth = values[origins[None, :] + np.arange(horizon)[:, None]]        # (K, B)
        preds = {"lstm": multi_step(params, task, origins, horizon),
                 "naive": np.broadcast_to(values[origins - 1], truth.shape),
                 "ar": multi_step(None, task, origins, horizon, coef=coef)}
        if M:
            preds["seasonal_naive"] = seasonal_naive(values, origins, horizon, M)
        for key, peer in (peers or {}).items():
            if "error" not in peer and peer["path"] is not None:
                preds[key] = peer["path"]
        out["test"]["horizon"] = {"steps": horizon, "origins": len(origins)}
        for name, pred in preds.items():
            out["test"]["horizon"][name] = {
                **errors(pred, truth, scale),
                "mse_by_step": [float(v) for v in np.mean((pred - truth) ** 2, axis=1)]}
    out["verdict"] = verdict(out["test"])
    return out


def _label(key, row):
    if key == "ar":
        return f"AR({row['order']})"
    if key == "seasonal_naive":
        return f"seasonal naive ({row['season']})"
    return row.get("model") or dict(BASELINES)[key]


def _times(ratio):
    return f"{ratio:.3f}x" if ratio < 1.01 else f"{ratio:.2f}x" if ratio < 1.1 else \
        f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


def _compare(lstm, rows, where):
    """The structured comparison of one horizon: ``{"lstm_mse", "best", "best_mse",
    "winner", "ratio", "naive_ratio", "text"}`` (ratio: the loser's MSE over the winner's)."""
    best = min(rows, key=lambda key: rows[key][1])
    label, mse = rows[best]
    if lstm < mse:
        winner, ratio = "lstm", mse / lstm if lstm > 0 else math.inf
        text = f"{where}, the LSTM beats every baseline: the best, {label}, {_times(ratio)}"
    else:
        ratio = lstm / mse if mse > 0 else math.inf
        text = f"{where}, {label} beats the LSTM {_times(ratio)}"
        winner = best
    naive = rows["naive"][1]
    naive_ratio = naive / lstm if lstm > 0 else math.inf
    if best != "naive":
        text += ("; the LSTM beats naive " + _times(naive_ratio) if naive_ratio > 1 else
                 "; naive beats the LSTM " + _times(1 / naive_ratio))
    return {"lstm_mse": lstm, "best": label, "best_key": best, "best_mse": mse,
            "winner": winner, "ratio": ratio, "naive_ratio": naive_ratio, "text": text}


def verdict(test: dict) -> dict:
    """Who wins on the test part, one step and ``horizon`` steps ahead, by MSE in data units:
    the LSTM against the strongest baseline computed (:data:`BASELINES`).

    - test: the ``"test"`` record of :func:`evaluate`.
    Returns ``{"one_step": {...}, "horizon": {...} or None, "text": str}``: each comparison
    has the LSTM's MSE, the best baseline's label and MSE, the winner (``"lstm"`` or the
    baseline's key), the ratio (the loser's MSE over the winner's, >= 1) and the ratio of
    naive's MSE to the LSTM's; text is the plain sentence the screen prints.
    """
    rows = {key: (_label(key, test[key]), test[key]["mse"]) for key, _ in BASELINES
            if key in test and "mse" in test[key]}
    one = _compare(test["mse"], rows, "one step ahead")
    out = {"one_step": one, "horizon": None, "text": one["text"]}
    horizon = test.get("horizon")
    if horizon:
        rows = {key: (_label(key, test[key]), horizon[key]["mse"]) for key, _ in BASELINES
                if key in horizon}
        out["horizon"] = _compare(horizon["lstm"]["mse"], rows,
                                  f"1 to {horizon['steps']} steps ahead")
        out["text"] += "\n" + out["horizon"]["text"]
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


def forecast_intervals(params: dict, task: SeriesTask, horizon: int,
                       level: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction intervals per step ahead from the LSTM's errors on the validation part
    (split conformal): the forecasts of ``horizon`` values from every validation origin,
    their errors where the value forecast lies in the validation part (never the test
    part), and per step k their ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles.

    Returns ``(low (K,), high (K,), count (K,))``: offsets to add to a forecast, and the errors
    each step had (NaN offsets for a step with fewer than 2).
    """
    n1, n2 = task.bounds
    origins = np.arange(max(n1, task.first_origin), n2)
    low, high, count = np.full(horizon, np.nan), np.full(horizon, np.nan), np.zeros(horizon,
                                                                                   int)
    if not len(origins):
        return low, high, count
    pred = multi_step(params, task, origins, horizon)                  # (K, B)
    for k in range(horizon):
        inside = origins + k < n2
        err = task.values[origins[inside] + k] - pred[k, inside]
        count[k] = len(err)
        if len(err) >= 2:
            low[k], high[k] = np.quantile(err, [(1 - level) / 2, (1 + level) / 2])
    return low, high, count
