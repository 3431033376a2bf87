"""A user's series: reading every format, named errors, the split without leakage, scaling
and its inverse, the baselines against least squares by hand, forecasts against a loop."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstm_ag
from train.data import make_task
from train.series import (
    Scaler,
    SeriesError,
    choose_ar_order,
    errors,
    evaluate,
    fill_gaps,
    fit_ar,
    forecast_levels,
    multi_step,
    one_step,
    read_series,
    series_task,
    split_bounds,
    windows,
)


def _wave(n=120, seed=0):
    """A noisy, trending wave: something with structure, levels around 10."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + np.sin(t / 3) + 0.02 * t + 0.1 * rng.standard_normal(n)


# -- reading ------------------------------------------------------------------------------------

def test_csv_with_a_date_column_reads_the_only_numeric_one(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("date,value\n2020-01-01,1.5\n2020-01-02,2.5\n2020-01-03,4\n")
    series = read_series(path)
    assert_array_equal(series.values, [1.5, 2.5, 4.0])
    assert (series.column, series.missing, series.source) == ("value", 0, "s.csv")


def test_csv_year_column_is_a_date_and_a_named_column_wins(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("year,a,b\n1700,1,10\n1701,2,20\n1702,3,30\n")
    with pytest.raises(SeriesError, match=r"s.csv: the numeric columns are 'a', 'b'; "
                                          r"name the series' column with --column NAME"):
        read_series(path)
    assert_array_equal(read_series(path, "b").values, [10, 20, 30])
    assert_array_equal(read_series(path, "year").values, [1700, 1701, 1702])


def test_npy_and_txt(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(5))
    np.save(tmp_path / "b.npy", np.arange(4.0)[:, None])
    (tmp_path / "c.txt").write_text("# a comment\n1.0\n\n2.0  # trailing\nNA\n4.0\n")
    assert_array_equal(read_series(tmp_path / "a.npy").values, np.arange(5.0))
    assert read_series(tmp_path / "a.npy").values.dtype == np.float64
    assert_array_equal(read_series(tmp_path / "b.npy").values, np.arange(4.0))
    txt = read_series(tmp_path / "c.txt")
    assert_array_equal(txt.values, [1, 2, 3, 4]) and txt.missing == 1


def test_gaps_are_interpolated_and_counted(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("time,x\n0,\n1,2\n2,NA\n3,nan\n4,8\n5,\n")
    series = read_series(path)
    assert_allclose(series.values, [2, 2, 4, 6, 8, 8])     # ends: the nearest known value
    assert series.missing == 4
    filled, count = fill_gaps([1.0, np.nan, 3.0])
    assert_array_equal(filled, [1, 2, 3]) and count == 1
    np.save(tmp_path / "g.npy", np.array([1.0, np.nan, np.nan, 4.0]))
    assert read_series(tmp_path / "g.npy").missing == 2


@pytest.mark.parametrize("name, content, column, match", [
    ("s.xlsx", "x", "", r"s.xlsx: unknown format '.xlsx'; give a .csv, .npy, .txt file"),
    ("s", "x", "", r"unknown format '\(no extension\)'"),
    ("s.csv", "", "", r"s.csv: the file is empty"),
    ("s.csv", "value\n", "", r"s.csv: no values below the header"),
    ("s.csv", "1,2\n3,4\n", "", (r"s.csv: the first line '1,2' holds numbers; a .csv needs a "
                                r"header line")),
    ("s.csv", "a\n1\n", "b", r"s.csv: no column 'b'; the columns are 'a'"),
    ("s.csv", "a,b\n1,x\n2,3\n", "b", r"s.csv: column 'b' is not numeric: line 2 holds 'x'"),
    ("s.csv", "a,b\n1\n", "", r"s.csv: line 2 has 1 cells, the header 2"),
    ("s.csv", "date,note\n2020,x\n", "", r"s.csv: no numeric column besides dates"),
    ("s.csv", "a\nNA\nNA\n", "a", r"s.csv: column 'a' holds no values \(all missing\)"),
    ("s.csv", "a\n1\ninf\n", "", r"s.csv: value 1 is infinite"),
    ("s.txt", "1\n2 3\n", "", r"s.txt: line 2 '2 3' is not one number"),
    ("s.txt", "# nothing\n", "", r"s.txt: the file holds no values"),
    ("s.txt", "NA\nnan\n", "", r"s.txt: every value is missing"),
    ("s.txt", "1\n", "a", r"s.txt: --column is for .csv files"),
])
def test_bad_text_files_are_named(tmp_path, name, content, column, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SeriesError, match=match):
        read_series(path, column)


def test_bad_binary_files_are_named(tmp_path):
    with pytest.raises(SeriesError, match=r"no such file"):
        read_series(tmp_path / "missing.csv")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(SeriesError, match=r"d.csv: not a regular file"):
        read_series(tmp_path / "d.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(SeriesError, match=r"bin.csv: not a text file"):
        read_series(tmp_path / "bin.csv")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(SeriesError, match=r"bad.npy: not a readable .npy array"):
        read_series(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object))
    with pytest.raises(SeriesError, match=r"obj.npy: not a readable .npy array"):
        read_series(tmp_path / "obj.npy")                    # never unpickled
    np.save(tmp_path / "m.npy", np.zeros((3, 2)))
    with pytest.raises(SeriesError, match=r"m.npy: the array has shape \(3, 2\); a series is "
                                          r"1-D"):
        read_series(tmp_path / "m.npy")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(SeriesError, match=r"s.npy: the array's dtype is <U1"):
        read_series(tmp_path / "s.npy")


# -- split, scaling, windows --------------------------------------------------------------------

def test_split_bounds():
    assert split_bounds(100, 0.2, 0.2) == (60, 80)
    assert split_bounds(309, 0.2, 0.2) == (185, 247)
    assert split_bounds(10, 0.01, 0.01) == (8, 9)                    # each part at least 1
    with pytest.raises(SeriesError, match="no training part"):
        split_bounds(3, 0.3, 0.3)


@pytest.mark.parametrize("diff", [False, True])
def test_scaler_statistics_from_the_training_part_and_the_inverse(diff):
    values = _wave()
    task = series_task(8, values=values, diff=diff)
    n1 = task.bounds[0]
    train = np.diff(values[:n1]) if diff else values[:n1]
    assert task.scaler == Scaler(diff, float(np.mean(train)), float(np.std(train)))
    assert task.spec["scaler"] == {"diff": diff, "mean": task.scaler.mean,
                                   "std": task.scaler.std}
    lag = int(diff)
    j = np.arange(lag + 1, len(values))
    assert_allclose(task.scaler.one_step(task.z[j - lag], values[j - 1]), values[j])
    path = task.scaler.path(task.z[50 - lag:60 - lag], values[49])       # x[50..59] from x[49]
    assert_allclose(path, values[50:60])


@pytest.mark.parametrize("diff", [False, True])
def test_windows_lie_in_one_part(diff):
    values = np.arange(200.0) ** 1.5                    # distinct, and so are its differences
    task = series_task(10, values=values, diff=diff)
    n1, n2 = task.bounds
    source = np.diff(values) if diff else values
    lag = int(diff)

    def levels(z):                                       # the last level index each z needs
        rebuilt = task.scaler.mean + task.scaler.std * z.ravel()
        return np.argmin(np.abs(source[:, None] - rebuilt[None, :]), axis=0) + lag
    assert levels(np.concatenate([task.train_x, task.train_y])).max() == n1 - 1
    assert task.train_x.shape == (10, n1 - lag - 10, 1)
    val = levels(task.val_y[-1])                         # the scored targets
    assert_array_equal(val, np.arange(n1, n2))
    assert levels(task.val_x).max() == n2 - 2            # inputs: only values before the target
    assert_array_equal(task.val_mask, [0] * 9 + [1])
    assert task.mask is None


def test_windows_by_index():
    xs, ys = windows(np.arange(20.0), [5, 9], 3)
    assert_array_equal(xs[..., 0], [[2, 6], [3, 7], [4, 8]])
    assert_array_equal(ys[..., 0], [[3, 7], [4, 8], [5, 9]])


def test_the_test_part_changes_nothing_the_model_sees():
    values = _wave()
    other = values.copy()
    n2 = split_bounds(len(values), 0.2, 0.2)[1]
    other[n2:] *= -50
    for diff in (False, True):
        a, b = series_task(8, values=values, diff=diff), series_task(8, values=other, diff=diff)
        assert a.bounds[1] == n2
        for name in ("train_x", "train_y", "val_x", "val_y", "val_baseline"):
            assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.scaler == b.scaler


def test_a_window_too_long_is_named():
    with pytest.raises(SeriesError, match=r"the training part \(12 values\) is too short for "
                                          r"one window of 12 steps: give a shorter --window"):
        series_task(12, values=_wave(20))


def test_the_spec_regenerates_the_task():
    task = series_task(8, values=_wave(), diff=True, source="w.csv")
    again = make_task(**task.spec)
    for name in ("train_x", "train_y", "val_x", "val_y", "values"):
        assert_array_equal(getattr(task, name), getattr(again, name))
    assert again.scaler == task.scaler and again.name == "series"


# -- baselines, metrics, forecasts --------------------------------------------------------------

def test_ar_is_least_squares_by_hand():
    z = np.random.default_rng(1).standard_normal(60)
    p, last = 3, 40
    rows = [[z[i - 3], z[i - 2], z[i - 1], 1.0] for i in range(p, last + 1)]
    expected = np.linalg.lstsq(np.array(rows), z[p:last + 1], rcond=None)[0]
    assert_allclose(fit_ar(z, last, p), expected, rtol=1e-12)


def test_ar_recovers_an_ar2_process_and_its_order_is_chosen_on_validation():
    rng = np.random.default_rng(2)
    x = np.zeros(600)
    for t in range(2, 600):
        x[t] = 1.2 * x[t - 1] - 0.5 * x[t - 2] + 0.1 * rng.standard_normal()
    task = series_task(8, values=x)
    p, coef = choose_ar_order(task, max_order=6)
    z, (n1, n2) = task.z, task.bounds
    by_hand = {}
    for q in range(1, 7):
        c = fit_ar(z, n1 - 1, q)
        pred = np.array([c[:q] @ z[j - q:j] + c[q] for j in range(n1, n2)])
        by_hand[q] = np.mean((pred - z[n1:n2]) ** 2)
    assert p == min(by_hand, key=by_hand.get) and p >= 2
    assert_allclose(fit_ar(z, n1 - 1, 2)[:2], [-0.5, 1.2], atol=0.1)   # z[i-2], z[i-1]


def test_evaluate_by_hand():
    values = _wave(150)
    task = series_task(8, values=values)
    params = lstm_ag.init_params(1, 5, 1, seed=1)
    result = evaluate(params, task, horizon=4)
    n1, n2 = task.bounds
    test = np.arange(n2, 150)
    scale = np.mean(np.abs(np.diff(values[:n1])))
    naive = values[test - 1]
    assert result["test"]["naive"] == pytest.approx(
        {"mse": np.mean((naive - values[test]) ** 2),
         "mae": np.mean(np.abs(naive - values[test])),
         "mase": np.mean(np.abs(naive - values[test])) / scale})
    lstm = [task.scaler.mean + task.scaler.std * lstm_ag.predict(
        params, task.z[j - 8:j, None])[-1, 0] for j in test]
    assert_allclose(one_step(params, task, test), lstm, rtol=1e-12)
    assert result["test"]["mse"] == pytest.approx(np.mean((np.array(lstm) - values[test]) ** 2))
    p, coef = choose_ar_order(task)
    ar = [task.scaler.mean + task.scaler.std * (coef[:p] @ task.z[j - p:j] + coef[p])
          for j in test]
    assert result["test"]["ar"]["order"] == p
    assert result["test"]["ar"]["mse"] == pytest.approx(np.mean((ar - values[test]) ** 2))
    horizon = result["test"]["horizon"]
    assert horizon["steps"] == 4 and horizon["origins"] == 150 - n2 - 3
    assert len(horizon["lstm"]["mse_by_step"]) == 4
    assert horizon["naive"]["mse_by_step"][0] == pytest.approx(
        np.mean((values[n2:147] - values[n2 - 1:146]) ** 2))
    assert result["val"]["n"] == n2 - n1 and result["test"]["n"] == 150 - n2


def test_errors():
    assert errors([1.0, 3.0], [2.0, 1.0], scale=0.5) == {"mse": 2.5, "mae": 1.5, "mase": 3.0}
    assert errors([1.0], [1.0]) == {"mse": 0.0, "mae": 0.0}


@pytest.mark.parametrize("diff", [False, True])
def test_forecast_is_a_hand_written_loop_in_data_units(diff):
    values = _wave(100)
    task = series_task(8, values=values, diff=diff)
    params = lstm_ag.init_params(1, 6, 1, seed=4)
    lag, s = int(diff), task.scaler
    for origin in (60, 100):
        ys, state = lstm_ag.predict(params, task.z[origin - lag - 8:origin - lag, None],
                                    return_state=True)
        level, expected = values[origin - 1], []
        for _ in range(5):
            z = ys[-1, 0]
            level = level + s.mean + s.std * z if diff else s.mean + s.std * z
            expected.append(level)
            ys, state = lstm_ag.predict(params, np.array([[z]]), state, return_state=True)
        assert_allclose(forecast_levels(params, task, 5, origin=origin if origin < 100
                                        else None), expected, rtol=1e-10)


def test_ar_multi_step_is_a_hand_written_loop():
    task = series_task(8, values=_wave(100), diff=True)
    p, coef = choose_ar_order(task, max_order=4)
    z = list(task.z[:70 - 1])                            # z[i] needs x[i + 1]: up to x[69]
    level, expected = task.values[69], []
    for _ in range(3):
        nxt = coef[:p] @ np.array(z[-p:]) + coef[p]
        z.append(nxt)
        level = level + task.scaler.mean + task.scaler.std * nxt
        expected.append(level)
    assert_allclose(multi_step(None, task, [70], 3, coef=coef)[:, 0], expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"origin must be in \[9, 100\], got 101"):
        forecast_levels(lstm_ag.init_params(1, 2, 1), task, 3, origin=101)
