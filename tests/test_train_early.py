"""Validation-driven training: best.npz, early stopping, Adam in fit with exact resume, the
series task through fit and the command line (no leakage, named errors, forecast)."""
import csv
import io
import json

import numpy as np
import pytest

import lstm_ag
from train import TrainConfig
from train.__main__ import main
from train.data import make_task
from train.loop import best_row, evaluate, fit, load_checkpoint
from train.optim import adam_update, clip_by_global_norm, init_moments
from train.series import forecast_levels, series_task


def _task(T=10):
    return make_task("sine", T, seed=0, n_train=48, n_val=16)


def _config(task, **changes):
    settings = dict(task=task.name, seq_len=task.seq_len, train_size=task.train_x.shape[1],
                    hidden=6, batch=8, lr=0.1, seed=3, eval_every=2, steps=40)
    return TrainConfig(**{**settings, **changes})


def _fit(task, config, **kwargs):
    params = lstm_ag.init_params(task.input_size, config.hidden, task.output_size,
                                 seed=config.seed)
    return fit(params, task, config, log=io.StringIO(), **kwargs)


def _same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def _wave(n=160):
    t = np.arange(n)
    return 5 + np.sin(t / 2.5) + 0.05 * np.random.default_rng(0).standard_normal(n)


def test_best_npz_holds_the_lowest_validation_mse(tmp_path):
    task = _task()
    config = _config(task, lr=2.0, momentum=0.0)       # a large step: the MSE goes up and down
    steps = {}
    result = _fit(task, config, checkpoint=tmp_path / "model.npz",
                  callback=lambda step, params, info: steps.__setitem__(step, params))
    rows = result.history
    best = min(rows, key=lambda row: row["val_mse"])
    assert best is best_row(rows) and best["step"] != rows[-1]["step"]   # not the last step
    params, _, progress, _ = load_checkpoint(tmp_path / "best.npz")
    assert progress.step == best["step"] == result.best_step
    _same(params, steps[best["step"]])
    assert evaluate(params, task) == best["val_mse"]
    _same(result.params, steps[config.steps])           # patience 0: the last parameters


def test_patience_stops_early_and_returns_the_best(tmp_path):
    task = _task()
    config = _config(task, lr=2.0, momentum=0.0, patience=3, steps=200)
    steps = {}
    result = _fit(task, config, checkpoint=tmp_path / "model.npz",
                  metrics=tmp_path / "metrics.json",
                  callback=lambda step, params, info: steps.__setitem__(step, params))
    rows = result.history
    best = best_row(rows)
    assert result.status == "done" and result.step < 200
    assert [row["step"] for row in rows if row["step"] > best["step"]] == \
        [best["step"] + 2, best["step"] + 4, best["step"] + 6]    # three evaluations, no better
    assert all(row["val_mse"] >= best["val_mse"] for row in rows)
    _same(result.params, steps[best["step"]])
    assert f"stopped early at step {result.step}" in result.message
    assert f"the result is the best step, {best['step']}" in result.message
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_step"] == best["step"] and metrics["best_val_mse"] == best["val_mse"]


def test_early_stopping_resumes_where_an_uninterrupted_run_stops(tmp_path):
    task = _task()
    config = _config(task, lr=2.0, momentum=0.0, patience=3, steps=200)
    whole = _fit(task, config)

    def ctrl_c(step, params, info):
        if step == whole.best_step + 3:                 # after the best, before the stop
            raise KeyboardInterrupt
    stopped = _fit(task, config, checkpoint=tmp_path / "model.npz", callback=ctrl_c)
    assert stopped.status == "interrupted"
    params, saved, progress, _ = load_checkpoint(tmp_path / "model.npz")
    resumed = fit(params, task, saved, start=progress, checkpoint=tmp_path / "model.npz",
                  log=io.StringIO())
    assert resumed.step == whole.step and resumed.best_step == whole.best_step
    _same(resumed.params, whole.params)                 # the best, read back from best.npz


def test_adam_in_fit_is_the_optimizers_step():
    task = _task()
    config = _config(task, optimizer="adam", steps=2, eval_every=1, clip=0.5, lr=None)
    params0 = lstm_ag.init_params(1, 6, 1, seed=3)
    result = fit(params0, task, config, log=io.StringIO())
    params, moments = params0, init_moments(params0)
    from train.loop import batch_indices
    for step in range(2):
        idx = batch_indices(3, step, 48, 8)
        _, grads = lstm_ag.value_and_grad(params, task.train_x[:, idx], task.train_y[:, idx],
                                          mask=task.mask)
        grads, _ = clip_by_global_norm(grads, 0.5)
        params, moments = adam_update(params, grads, moments, lr=config.lr, step=step)
    _same(result.params, params)
    _same(result.progress.velocity["m"], moments["m"])
    _same(result.progress.velocity["v"], moments["v"])
    assert config.lr == 0.01


def test_adam_resumes_exactly_with_its_moments(tmp_path):
    task = _task()
    config = _config(task, optimizer="adam", steps=12, eval_every=4)
    whole = _fit(task, config)
    _fit(task, config.resumed(steps=5), checkpoint=tmp_path / "model.npz")
    params, saved, progress, _ = load_checkpoint(tmp_path / "model.npz")
    assert progress.step == 5 and sorted(progress.velocity) == ["m", "v"]
    assert progress.velocity["v"]["Wx"].shape == params["Wx"].shape
    resumed = fit(params, task, saved.resumed(steps=12), start=progress, log=io.StringIO())
    _same(resumed.params, whole.params)
    _same(resumed.progress.velocity["m"], whole.progress.velocity["m"])


def test_adam_checkpoint_without_moments_is_refused(tmp_path):
    task = _task()
    config = _config(task, optimizer="adam", steps=2)
    _fit(task, config, checkpoint=tmp_path / "model.npz")
    params, meta = lstm_ag.load(tmp_path / "model.npz")
    meta["velocity"] = {"m": meta["velocity"]["m"]}
    lstm_ag.save(tmp_path / "bad.npz", params, **meta)
    with pytest.raises(lstm_ag.CheckpointError, match=r"bad.npz: velocity must hold Adam's"):
        load_checkpoint(tmp_path / "bad.npz")


# -- the series task through fit ----------------------------------------------------------------

def _series_config(task, **changes):
    settings = dict(task="series", data="w.csv", seq_len=task.seq_len, hidden=5, batch=8,
                    steps=30, eval_every=5, seed=1)
    return TrainConfig(**{**settings, **changes})


def test_changing_the_test_part_does_not_change_the_trained_model():
    values = _wave()
    changed = values.copy()
    changed[-int(0.2 * len(values)):] = 1e3 * np.cos(np.arange(int(0.2 * len(values))))
    results = []
    for v in (values, changed):
        task = series_task(8, values=v, diff=True)
        config = _series_config(task, diff=True, patience=2)
        results.append(_fit(task, config))
    _same(results[0].params, results[1].params)
    assert results[0].history == [{**row, "seconds": a["seconds"],
                                   "steps_per_second": a["steps_per_second"]}
                                  for row, a in zip(results[1].history, results[0].history,
                                                    strict=True)]


def test_the_series_validation_mse_scores_one_target_per_window():
    task = series_task(8, values=_wave())
    params = lstm_ag.init_params(1, 5, 1, seed=2)
    pred = lstm_ag.predict(params, task.val_x)[-1, :, 0]
    assert evaluate(params, task) == pytest.approx(np.mean((pred - task.val_y[-1, :, 0]) ** 2))
    scale = task.scaler.std
    from train.series import one_step
    data = one_step(params, task, np.arange(*task.bounds))
    truth = task.values[task.bounds[0]:task.bounds[1]]
    assert evaluate(params, task) * scale ** 2 == pytest.approx(np.mean((data - truth) ** 2))


# -- the command line ---------------------------------------------------------------------------

def _write_csv(path, values, gaps=()):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["date", "level"])
        for i, v in enumerate(values):
            writer.writerow([f"day {i}", "" if i in gaps else f"{v:.6f}"])
    return path


SMALL = ["--hidden", "5", "--batch", "8", "--window", "8", "--steps", "20", "--eval-every",
         "5", "--horizon", "3"]


def test_series_from_the_command_line_writes_an_honest_evaluation(tmp_path, capsys):
    data = _write_csv(tmp_path / "w.csv", _wave(), gaps=(10, 11, 50))
    out = tmp_path / "run"
    code = main(["series", "--data", str(data), *SMALL, "--diff", "--out", str(out), "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["series"]["missing_filled"] == 3 and metrics["series"]["column"] == "level"
    assert (metrics["series"]["train"], metrics["series"]["test"]) == (96, 32)
    test = metrics["test"]
    for row in (test, test["naive"], test["ar"]):
        assert {"mse", "mae", "mase"} <= set(row) and row["mse"] > 0
    assert test["horizon"]["steps"] == 3 and test["horizon"]["origins"] == 30
    assert "3 missing, filled" in stdout and "naive (last)" in stdout
    assert f"AR({test['ar']['order']})" in stdout
    assert (out / "best.npz").exists()
    params, config, progress, spec = load_checkpoint(out / "best.npz")
    task = make_task(**spec)
    assert task.scaler.diff and spec["values"][10] == pytest.approx(
        (2 * _wave()[9] + _wave()[12]) / 3, abs=1e-5)                # interpolated
    code = main(["forecast", "--out", str(out), "--horizon", "4"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    rows = (out / "forecast.csv").read_text().splitlines()
    assert rows[0] == "step,value,low,high" and len(rows) == 5
    expected = forecast_levels(params, task, 4)
    assert [float(r.split(",")[1]) for r in rows[1:]] == pytest.approx(expected, rel=1e-9)
    code = main(["forecast", "--out", str(out), "--horizon", "2", "--on-test"])
    rows = (out / "forecast.csv").read_text().splitlines()
    assert code == 0 and rows[0] == "step,value,low,high,actual"
    assert float(rows[1].split(",")[4]) == pytest.approx(task.values[task.bounds[1]])


@pytest.mark.parametrize("content, argv, message", [
    ("date,a,b\nx,1,2\n", [], ("--data s.csv: the numeric columns are 'a', 'b'; name the "
                               "series' column with --column NAME")),
    ("a\n1\n2\n", ["--column", "b"], "--data s.csv: no column 'b'; the columns are 'a'"),
    ("a\nNA\n", [], "--data s.csv: no numeric column besides dates"),
    ("a\n" + "\n".join(map(str, range(13))) + "\n", [],
     "--data s.csv: the training part (7 values) is too short for one window of 8 steps"),
    ("a\n" + "\n".join(map(str, range(40))) + "\n", ["--batch", "64"],
     "--batch 64 exceeds the 16 training windows of the series"),
])
def test_bad_series_exit_2_with_one_named_line(tmp_path, capsys, content, argv, message):
    (tmp_path / "s.csv").write_text(content)
    code = main(["series", "--data", str(tmp_path / "s.csv"), "--window", "8", *argv,
                 "--out", str(tmp_path / "run")])
    _, stderr = capsys.readouterr()
    assert code == 2
    assert message in stderr and "Traceback" not in stderr


def test_forecast_needs_a_series_run(tmp_path, capsys):
    assert main(["forecast", "--out", str(tmp_path / "none")]) == 2
    assert "no model in" in capsys.readouterr().err
    out = tmp_path / "sine"
    assert main(["sine", "--steps", "2", "--hidden", "3", "--seq-len", "8", "--quiet",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["forecast", "--out", str(out)]) == 2
    assert "a model of the 'sine' task; forecast needs a series run" in capsys.readouterr().err
    assert main(["sine", "--on-test"]) == 2
