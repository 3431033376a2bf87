"""The series verdict: judged on the test part, in data units, against the strongest baseline
(naive, seasonal naive, AR(p), AutoETS/AutoARIMA with the ``stats`` extra); seasons and
seasonal differences; the AR order search from one QR; defaults that fit the data."""
import json
import re
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstm_ag
from train.cli import main
from train.options import diff_spec
from train.series import (
    STATS_HINT,
    Scaler,
    ar_order_cap,
    choose_ar_order,
    detect_season,
    evaluate,
    fit_ar,
    multi_step,
    read_series,
    seasonal_naive,
    series_task,
    verdict,
)


@pytest.fixture(autouse=True)
def no_peers(request, monkeypatch):
    """The statistical peers (seconds per fit) only in the tests of them (``peers`` in the
    name); elsewhere the table shows what the extra would add."""
    if "peers" not in request.node.name:
        monkeypatch.setattr("train.baselines.stats_peers", lambda *args, **kwargs: None)


def _seasonal(n=240, seed=0, trend=0.05):
    """A monthly-like series: a season of 12, a trend, noise; levels around 50."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + trend * t + 5 * np.sin(2 * np.pi * t / 12) + 0.5 * rng.standard_normal(n)


def _write(path, values, start_year=1990):
    rows = [f"{start_year + k // 12}-{k % 12 + 1:02d},{v:.6f}" for k, v in enumerate(values)]
    path.write_text("month,level\n" + "\n".join(rows) + "\n")
    return path


# -- seasons ------------------------------------------------------------------------------------

@pytest.mark.parametrize("diff, season", [(False, 12), (True, 12), (True, 0), (False, 0)])
def test_seasonal_differences_invert_exactly(diff, season):
    values = _seasonal()
    task = series_task(8, values=values, diff=diff, seasonal_diff=season)
    s, lag = task.scaler, int(diff) + season
    assert s.lag == lag and len(task.z) == len(values) - lag
    j = np.arange(lag + 1, len(values))
    assert_allclose(s.levels(task.z[j - lag], values, j), values[j], rtol=1e-12)
    origins = np.array([150, 200])
    k = np.arange(10)[:, None]
    assert_allclose(s.levels_path(task.z[origins[None, :] + k - lag], values, origins),
                    values[origins[None, :] + k], rtol=1e-12)
    train = values[:task.bounds[0]]
    if season:
        train = train[season:] - train[:-season]
    train = np.diff(train) if diff else train
    assert (s.mean, s.std) == (float(np.mean(train)), float(np.std(train)))


def test_the_test_part_changes_nothing_the_model_sees_with_seasons():
    values = _seasonal()
    other = values.copy()
    n2 = series_task(8, values=values).bounds[1]
    other[n2:] *= -50
    for diff in (False, True):
        a = series_task(8, values=values, diff=diff, seasonal_diff=12, season=12)
        b = series_task(8, values=other, diff=diff, seasonal_diff=12, season=12)
        for name in ("train_x", "train_y", "val_x", "val_y", "val_baseline"):
            assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.scaler == b.scaler


def test_seasonal_naive_by_hand():
    values = np.arange(40.0) ** 1.3
    pred = seasonal_naive(values, [20, 25], 5, 4)
    for b, o in enumerate([20, 25]):
        for k in range(5):
            assert pred[k, b] == values[o + k - 4 * (1 + k // 4)]


def test_the_season_is_detected_from_the_training_part():
    assert detect_season(_seasonal()[:144], (1, "M"))[0] == 12
    assert detect_season(_seasonal()[::3][:60], (3, "M"))[0] == 4
    noise = np.random.default_rng(3).standard_normal(200)
    assert detect_season(np.cumsum(noise), (1, "M")) [0] == 0
    assert detect_season(_seasonal(), None)[0] == 0                   # no dates: no guess
    cycle = 10 + 5 * np.sin(2 * np.pi * np.arange(150) / 9.6)        # a cycle of 9.6 years
    assert detect_season(cycle, (1, "Y"))[0] in (9, 10)


def test_diff_spec():
    assert diff_spec("1") == (True, 0) and diff_spec("12") == (False, 12)
    assert diff_spec("1,12") == (True, 12) and diff_spec("M") == (False, -1)
    assert diff_spec("1,M") == (True, -1)
    for bad in ("0", "2,3", "x", "1,1"):
        with pytest.raises(Exception, match=r"give 1 .first differences., M or a period"):
            diff_spec(bad)


# -- AR from one QR -----------------------------------------------------------------------------

def test_every_order_from_one_qr_is_its_own_least_squares_fit():
    from train.baselines import _orders_by_qr
    rng = np.random.default_rng(5)
    z = np.zeros(400)
    for t in range(3, 400):
        z[t] = 0.6 * z[t - 1] - 0.3 * z[t - 3] + rng.standard_normal()
    last, val, P = 239, np.arange(240, 320), 12
    mse = _orders_by_qr(z, last, val, P)
    by_hand = []
    for p in range(1, P + 1):
        coef = fit_ar(z, last, p)                    # its own targets [p, last]
        rows = np.column_stack([z[val[:, None] + np.arange(-p, 0)], np.ones(len(val))])
        by_hand.append(np.mean((rows @ coef - z[val]) ** 2))
    assert_allclose(mse, by_hand, rtol=1e-9)


def test_the_order_cap_scales_with_the_series_and_its_season():
    assert ar_order_cap(60) == 18 and ar_order_cap(4790) == 37
    assert ar_order_cap(1370, 52) == 53 and ar_order_cap(4790, 336) == 337
    assert ar_order_cap(30, 12) == 10                                # a third of the part
    task = series_task(8, values=_seasonal(300), season=12)
    p, coef = choose_ar_order(task)
    assert p >= 12 and len(coef) == p + 1                            # the season in reach


# -- the verdict --------------------------------------------------------------------------------

def _record(lstm, **baselines):
    test = {"mse": lstm}
    for key, mse in baselines.items():
        test[key] = {"mse": mse, "order": 3, "season": 12}
        if key in ("ets", "arima"):
            test[key]["model"] = key.upper()
    return test


def test_the_verdict_names_the_strongest_baseline():
    one = verdict(_record(10.0, naive=20.0, ar=1.5, seasonal_naive=12.0))["one_step"]
    assert (one["winner"], one["best"]) == ("ar", "AR(3)")
    assert one["ratio"] == pytest.approx(10 / 1.5) and one["naive_ratio"] == 2.0
    assert one["text"] == "one step ahead, AR(3) beats the LSTM 6.7x; the LSTM beats naive 2.0x"
    one = verdict(_record(1.0, naive=20.0, ar=1.5, arima=1.2))["one_step"]
    assert one["winner"] == "lstm" and one["best"] == "ARIMA"
    assert one["text"] == ("one step ahead, the LSTM beats every baseline: the best, ARIMA, "
                           "1.2x; the LSTM beats naive 20.0x")
    one = verdict(_record(30.0, naive=20.0, ar=25.0))["one_step"]
    assert one["text"] == "one step ahead, naive beats the LSTM 1.5x"


def _table(stdout):
    """``{label: (MSE, 1-K steps MSE or None)}`` of the printed test table."""
    rows, on = {}, False
    for line in stdout.splitlines():
        if line.startswith("test, one step ahead"):
            on = True
            continue
        if on and line.startswith("  ") and not line.strip().startswith(("MSE", "(")):
            label = line[2:28].strip()
            numbers = line[28:].split()
            rows[label] = (float(numbers[0]), float(numbers[3]) if len(numbers) > 4 else None)
        elif on and not line.startswith("  "):
            on = False
    return rows


def _printed_verdict(stdout):
    return [line.split(": ", 1)[1] for line in stdout.splitlines()
            if line.startswith("verdict (test part, MSE in data units): ")]


@pytest.mark.parametrize("argv", [[], ["--diff"], ["--diff", "1,M"], ["--season", "1"]])
def test_the_printed_verdict_agrees_with_the_test_table(tmp_path, capsys, argv):
    _verdict_agrees(tmp_path, capsys, argv)


def test_the_printed_verdict_agrees_with_the_test_table_with_peers(tmp_path, capsys):
    pytest.importorskip("statsforecast")
    _verdict_agrees(tmp_path, capsys, ["--diff"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stats"] is None and "mse" in metrics["test"]["arima"]


def _verdict_agrees(tmp_path, capsys, argv):
    data = _write(tmp_path / "m.csv", _seasonal())
    out = tmp_path / "run"
    code = main(["series", "--data", str(data), "--hidden", "6", "--steps", "40",
                 "--eval-every", "10", "--window", "12", "--horizon", "4", "--out", str(out),
                 "--quiet", *argv])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    table = _table(stdout)
    lstm, baselines = table.pop("LSTM"), table
    assert ("seasonal naive (12)" in baselines) == (argv != ["--season", "1"])
    printed = _printed_verdict(stdout)
    assert len(printed) == 2
    for k, where in enumerate(("one step ahead", "1 to 4 steps ahead")):
        scores = {label: row[k] for label, row in baselines.items() if row[k] is not None}
        best = min(scores, key=scores.get)
        name = best.split(" ")[0] if best.startswith(("ETS", "ARIMA")) else best
        if lstm[k] < scores[best]:
            assert printed[k].startswith(f"{where}, the LSTM beats every baseline: the best, "
                                         f"{name}")
        else:
            assert printed[k].startswith(f"{where}, {name} beats the LSTM")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["verdict"]["text"].split("\n") == printed
    one = metrics["verdict"]["one_step"]
    assert one["lstm_mse"] == metrics["test"]["mse"]
    assert one["best_mse"] == min(metrics["test"][key]["mse"] for key in
                                  ("naive", "seasonal_naive", "ar", "ets", "arima")
                                  if key in metrics["test"] and "mse" in metrics["test"][key])
    assert "progress figure: validation MSE" in stdout and "(scaled units)" in stdout
    if not argv:
        assert "season 12 detected (monthly dates" in stdout


def test_evaluate_in_data_units_by_hand_with_a_season():
    values = _seasonal(200)
    task = series_task(8, values=values, diff=True, seasonal_diff=12, season=12)
    params = lstm_ag.init_params(1, 5, 1, seed=2)
    result = evaluate(params, task, horizon=3, stats=False)
    n2 = task.bounds[1]
    test = np.arange(n2, 200)
    scale = np.mean(np.abs(np.diff(values[:task.bounds[0]])))
    snaive = values[test - 12]
    assert result["test"]["seasonal_naive"]["mse"] == pytest.approx(
        np.mean((snaive - values[test]) ** 2), rel=1e-12)
    assert result["test"]["seasonal_naive"]["mase"] == pytest.approx(
        np.mean(np.abs(snaive - values[test])) / scale, rel=1e-12)
    p, coef = choose_ar_order(task)
    z, lag = task.z, 13
    ar = [values[j - 1] + values[j - 12] - values[j - 13] + task.scaler.mean
          + task.scaler.std * (coef[:p] @ z[j - lag - p:j - lag] + coef[p]) for j in test]
    assert result["test"]["ar"]["mse"] == pytest.approx(np.mean((ar - values[test]) ** 2),
                                                        rel=1e-9)
    path = multi_step(None, task, test[:5], 3, coef=coef)
    assert path.shape == (3, 5)
    assert_allclose(path[0], ar[:5], rtol=1e-12)                 # one step: the same forecast
    assert result["stats"] in (None, STATS_HINT)


# -- the statistical peer (the stats extra) -----------------------------------------------------

def test_without_the_peers_extra_the_table_says_what_it_would_add(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "statsforecast", None)
    monkeypatch.setitem(sys.modules, "statsforecast.models", None)
    data = _write(tmp_path / "m.csv", _seasonal(120))
    code = main(["series", "--data", str(data), "--hidden", "4", "--steps", "10",
                 "--window", "8", "--out", str(tmp_path / "run"), "--quiet"])
    stdout = capsys.readouterr().out
    assert code == 0 and f"({STATS_HINT} adds them to this table)" in stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stats"] == STATS_HINT and "arima" not in metrics["test"]


def test_the_peers_are_fitted_on_the_training_part_only():
    pytest.importorskip("statsforecast")
    values = _seasonal(180)
    other = values.copy()
    task = series_task(8, values=values, season=12)
    n1, n2 = task.bounds
    other[n2:] += 100                       # the test part: never seen by the fits
    params = lstm_ag.init_params(1, 4, 1, seed=0)
    a = evaluate(params, task, horizon=2)
    b = evaluate(params, series_task(8, values=other, season=12), horizon=2)
    for key in ("ets", "arima"):
        assert np.isfinite(a["test"][key]["mse"]) and a["test"][key]["seconds"] >= 0
        assert a["val"][key]["mse"] == pytest.approx(b["val"][key]["mse"], rel=1e-9)
        assert a["test"]["horizon"][key]["mse"] > 0
    assert a["stats"] is None


# -- defaults that fit --------------------------------------------------------------------------

def test_the_default_batch_is_capped_at_the_training_windows(tmp_path, capsys):
    data = _write(tmp_path / "short.csv", _seasonal(100))
    code = main(["series", "--data", str(data), "--steps", "5", "--hidden", "4",
                 "--out", str(tmp_path / "a"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "--batch 30: the default 32 exceeds the 30 training windows of the series" in err
    code = main(["series", "--data", str(data), "--steps", "5", "--batch", "40",
                 "--out", str(tmp_path / "b"), "--quiet"])
    assert code == 2 and "--batch 40 exceeds the 30 training windows" in capsys.readouterr().err


def test_the_default_window_fits_a_short_series(tmp_path, capsys):
    data = _write(tmp_path / "tiny.csv", _seasonal(40))
    code = main(["series", "--data", str(data), "--steps", "5", "--hidden", "4",
                 "--out", str(tmp_path / "a"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--window 11: the default 30 is too long for the training part" in err
    assert "--batch 13: the default 32 exceeds the 13 training windows" in err
    code = main(["series", "--data", str(data), "--steps", "5", "--window", "30",
                 "--out", str(tmp_path / "b"), "--quiet"])
    assert code == 2 and "give a shorter --window" in capsys.readouterr().err


def test_a_test_part_beyond_the_training_range_suggests_diff(tmp_path, capsys):
    data = _write(tmp_path / "trend.csv", _seasonal(150, trend=1.0))
    args = ["series", "--data", str(data), "--steps", "5", "--hidden", "4", "--window", "8",
            "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert re.search(r"warning: the test part reaches .* outside the training part's range .*"
                     r"try --diff", capsys.readouterr().out)
    assert main([*args, "--diff", "--out", str(tmp_path / "b")]) == 0
    assert "warning" not in capsys.readouterr().out


def test_threads_limit_the_evaluation_too(tmp_path, capsys, monkeypatch):
    from threadpoolctl import threadpool_info

    import train.baselines
    seen = []
    real = train.baselines.choose_ar_order

    def spy(*args, **kwargs):
        seen.append([info["num_threads"] for info in threadpool_info()
                     if info["user_api"] == "blas"])
        return real(*args, **kwargs)
    monkeypatch.setattr(train.baselines, "choose_ar_order", spy)
    data = _write(tmp_path / "m.csv", _seasonal(120))
    assert main(["series", "--data", str(data), "--steps", "5", "--hidden", "4", "--window",
                 "8", "--threads", "1", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert seen and all(n == 1 for n in seen[0])


def test_long_evaluations_show_progress(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("train.report.LONG_SERIES", 100)
    monkeypatch.setattr("train.baselines.CHUNK", 10)
    data = _write(tmp_path / "m.csv", _seasonal(120))
    assert main(["series", "--data", str(data), "--steps", "5", "--hidden", "4", "--window",
                 "8", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "evaluating (" in err and "the LSTM on the test part: 24 windows" in err
    assert "10 of 24 windows" in err


def test_forecast_csv_has_times_and_intervals(tmp_path, capsys):
    data = _write(tmp_path / "m.csv", _seasonal(150))
    out = tmp_path / "run"
    assert main(["series", "--data", str(data), "--steps", "20", "--hidden", "4",
                 "--window", "8", "--out", str(out), "--quiet"]) == 0
    assert main(["forecast", "--out", str(out), "--horizon", "3"]) == 0
    rows = [row.split(",") for row in (out / "forecast.csv").read_text().splitlines()]
    assert rows[0] == ["step", "time", "value", "low", "high"]
    assert [row[1] for row in rows[1:]] == ["2002-07", "2002-08", "2002-09"]  # after 2002-06
    for row in rows[1:]:
        low, value, high = float(row[3]), float(row[2]), float(row[4])
        assert low <= value <= high
    assert read_series(data).dates[-1] == np.datetime64("2002-06")
    assert "90% interval per step ahead" in capsys.readouterr().out


def test_scaler_dict_of_old_checkpoints_still_matches():
    values = _seasonal()
    task = series_task(8, values=values, diff=True)
    assert task.spec["scaler"] == {"diff": True, "mean": task.scaler.mean,
                                   "std": task.scaler.std}          # no "season" key
    assert Scaler(True, 0.0, 1.0).lag == 1 and Scaler(True, 0.0, 1.0, 12).lag == 13


def test_season_options_are_checked_by_name(tmp_path, capsys):
    values = _seasonal(120)
    plain = tmp_path / "plain.txt"
    plain.write_text("\n".join(f"{v:.5f}" for v in values) + "\n")       # no dates: no season
    run = ["series", "--steps", "3", "--hidden", "3", "--window", "8", "--quiet"]
    assert main([*run, "--data", str(plain), "--diff", "M", "--out", str(tmp_path / "a")]) == 2
    assert "--diff M takes the season, and there is none: give --season M" in \
        capsys.readouterr().err
    assert main([*run, "--data", str(plain), "--season", "70", "--out", str(tmp_path / "b")]) == 2
    assert "--season must be 0 or an integer in [2, 35]" in capsys.readouterr().err
    assert main([*run, "--data", str(plain), "--diff", "1,M", "--season", "12",
                 "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "modelled as differences of lag 1 and 12" in out and "seasonal naive (12)" in out
    assert main(["sine", "--season", "12", "--out", str(tmp_path / "d")]) == 2
    assert "--season is a setting of the series task only" in capsys.readouterr().err


def test_a_series_trained_whole_takes_seasonal_differences():
    values = _seasonal(200)
    task = series_task(8, values=values, diff=True, seasonal_diff=12, season=12, streams=2)
    params = lstm_ag.init_params(1, 4, 1, seed=1)
    result = evaluate(params, task, horizon=3, stats=False)
    assert np.isfinite(result["test"]["mse"]) and result["test"]["seasonal_naive"]["season"] == 12
    scored = task.val_mask > 0
    j = np.arange(*task.bounds)          # naive: x[j - 1], i.e. the difference x[j-13] - x[j-12]
    assert_allclose(task.val_baseline[scored, 0, 0] * task.scaler.std + task.scaler.mean,
                    values[j - 13] - values[j - 12], atol=1e-9 * np.abs(values).max())
