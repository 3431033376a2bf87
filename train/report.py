"""What a series run prints and writes after training (:mod:`train.cli` calls it): the test
table of the LSTM and every baseline in data units, the verdict against the strongest one,
warnings, progress of long evaluations; the rows of ``forecast.csv`` with their times and
intervals; and, on ``--resume``, whether the data file changed."""
import sys

__all__ = ["series_report", "say_if_data_changed", "forecast_rows", "LEVEL", "LONG_SERIES",
           "OUT_OF_RANGE"]


def say_if_data_changed(config, spec):
    """On --resume of a series: say when --data is no longer the file the run started from
    (its SHA-256, recorded in the checkpoint); the run goes on with the values it stored."""
    recorded = spec.get("data_sha256") if config.task == "series" else None
    if not recorded:
        return
    from .series_io import file_sha256
    try:
        now = file_sha256(config.data)
    except OSError as err:
        now, why = None, f"cannot be read now ({err.strerror or err})"
    else:
        why = "has changed since the run started (its SHA-256 differs)"
    if now != recorded:
        print(f"--resume: note: {config.data} {why}; the run goes on with the "
              f"{len(spec['values'])} values its checkpoint stored", file=sys.stderr)


def series_report(result, task, metrics, log=None):
    """Evaluate a series run on its test part in data units (:func:`train.series.evaluate`),
    add it to metrics.json (``"series"``, ``"validation"``, ``"test"``, ``"verdict"``) and
    return the lines to print: the table, the verdict against the strongest baseline, and
    warnings. ``log``: where progress of a long evaluation goes (None: nowhere)."""
    import json
    import time

    import numpy as np

    import lstm_ag

    from .series import evaluate
    config = result.config
    began = time.perf_counter()
    say = None
    if log is not None and len(task.values) >= LONG_SERIES:
        def say(message):
            print(f"evaluating ({time.perf_counter() - began:.0f} s): {message}", file=log,
                  flush=True)
    evaluation = evaluate(result.params, task, config.horizon, progress=say)
    seconds = time.perf_counter() - began
    n1, n2 = task.bounds
    spec = task.spec
    info = {"source": spec["source"], "column": spec["column"], "values": len(task.values),
            "missing_filled": spec["missing"], "train": n1, "validation": n2 - n1,
            "test": len(task.values) - n2, "scaler": spec["scaler"],
            "params_step": result.best_step if config.patience else result.step,
            "season": task.season, "dates": spec.get("dates", ""),
            "data_sha256": spec.get("data_sha256", ""), "notes": list(task.notes),
            "evaluation_seconds": seconds}
    with open(metrics, encoding="utf-8") as file:
        content = json.load(file)
    content.update(series=info, validation=evaluation["val"], test=evaluation["test"],
                   verdict=evaluation["verdict"], stats=evaluation["stats"])
    text = json.dumps(content, indent=1) + "\n"
    lstm_ag.atomic_write(metrics, lambda file: file.write(text), mode="w")

    test = evaluation["test"]
    name = spec["source"] + (f", column {spec['column']}" if spec["column"] else "")
    diff = _modelled(task)
    if task.streams:
        diff += (f"; trained whole, --tbptt {config.tbptt} in {task.streams} stream"
                 f"{'s' if task.streams > 1 else ''} of {task.seq_len} steps")
    lines = [(f"series {name}: {len(task.values)} values ({spec['missing']} missing, filled); "
              f"train {n1}, validation {n2 - n1}, test {len(task.values) - n2}{diff}")]
    lines += [f"  {note}" for note in task.notes]
    horizon = test.get("horizon")
    steps = f"  {'1-' + str(horizon['steps']) + ' steps MSE':>16s}" if horizon else ""
    lines += [(f"test, one step ahead ({test['n']} values, data units; the model of step "
               f"{info['params_step']}):"),
              f"  {'':26s}{'MSE':>12s}{'MAE':>12s}{'MASE':>8s}{steps}{'seconds':>9s}"]
    for label, key, row in _table_rows(test):
        if "error" in row:
            lines.append(f"  {label:26s}  failed: {row['error'][:60]}")
            continue
        far = (f"  {horizon[key]['mse']:16.4g}" if horizon and key in horizon else
               f"  {'':16s}" if horizon else "")
        took = f"{row['seconds']:9.2f}" if "seconds" in row else f"{'':9s}"
        lines.append(f"  {label:26s}{row['mse']:12.4g}{row['mae']:12.4g}"
                     f"{row['mase']:8.3f}{far}{took}")
    if evaluation["stats"]:
        lines.append(f"  ({evaluation['stats']} adds them to this table)")
    notes = {test[key]["note"] for key in ("ets", "arima") if test.get(key, {}).get("note")}
    lines += [f"  ({note})" for note in sorted(notes)]
    lines += [f"verdict (test part, MSE in data units): {line}"
              for line in evaluation["verdict"]["text"].split("\n")]
    train, test_values = task.values[:n1], task.values[n2:]
    low, high = float(np.min(train)), float(np.max(train))
    margin = OUT_OF_RANGE * (high - low)
    if not (task.scaler.diff or task.scaler.season) and (
            test_values.max() > high + margin or test_values.min() < low - margin):
        lines.append(f"warning: the test part reaches {test_values.min():.4g} .. "
                     f"{test_values.max():.4g}, outside the training part's range "
                     f"{low:.4g} .. {high:.4g}; a model of the levels does not extrapolate: "
                     "try --diff (first differences)")
    return "\n".join(lines)


#: The test part leaving the training part's range by more than this fraction of it warns.
OUT_OF_RANGE = 0.1
#: Series at least this long show progress lines while they are evaluated.
LONG_SERIES = 20000


def _modelled(task):
    """``"; modelled as differences"`` and the like, for the series' first line."""
    scaler = task.scaler
    if scaler.diff and scaler.season:
        return f"; modelled as differences of lag 1 and {scaler.season}"
    if scaler.season:
        return f"; modelled as seasonal differences (lag {scaler.season})"
    return "; modelled as differences" if scaler.diff else ""


def _table_rows(test):
    """``(label, key, row)`` of the test table: the LSTM, then each baseline computed."""
    rows = [("LSTM", "lstm", test), ("naive (last)", "naive", test["naive"])]
    if "seasonal_naive" in test:
        rows.append((f"seasonal naive ({test['seasonal_naive']['season']})", "seasonal_naive",
                     test["seasonal_naive"]))
    rows.append((f"AR({test['ar']['order']})", "ar", test["ar"]))
    for key, label in (("ets", "ETS"), ("arima", "ARIMA")):
        if key in test:
            model = test[key]["model"]
            rows.append(((model if model.startswith(label) else f"{label} {model}")[:26], key,
                         test[key]))
    return rows


#: The coverage of forecast.csv's intervals.
LEVEL = 0.9


def _dates(task, origin, horizon):
    """The dates of the values ``origin .. origin + horizon - 1`` as text."""
    from .split import dates_of
    return [str(d) for d in dates_of(task.spec["dates"], origin + horizon)[origin:]]


def forecast_rows(params, task, values, origin, on_test):
    """The lines of ``forecast.csv``: a header, then per step ahead its number, its time (with
    dates), the forecast ``values (K,)`` from level index ``origin``, the interval's bounds
    (blank where the validation part has too few errors), and with ``on_test`` the truth."""
    import numpy as np

    from .series import forecast_intervals
    horizon, n = len(values), len(task.values)
    low, high, _ = forecast_intervals(params, task, horizon, LEVEL)
    dates = task.spec.get("dates") and _dates(task, origin, horizon)
    lines = ["step" + (",time" if dates else "") + ",value,low,high"
             + (",actual" if on_test else "")]
    for k, value in enumerate(values):
        row = f"{k + 1}" + (f",{dates[k]}" if dates else "") + f",{value:.10g}," + (
            f"{value + low[k]:.10g},{value + high[k]:.10g}" if np.isfinite(low[k]) else ",")
        if on_test:
            row += f",{task.values[origin + k]:.10g}" if origin + k < n else ","
        lines.append(row)
    return lines, (values + low, values + high)
