"""fit(): it learns, it resumes bit for bit, Ctrl-C and a non-finite loss stop it cleanly."""
import io
import json
import math
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose

import lstm_ag
from train import TrainConfig
from train.data import make_task, masked_mse
from train.loop import batch_indices, evaluate, fit, load_checkpoint
from train.optim import clip_by_global_norm, init_velocity, learning_rate, momentum_update


def _task(name="sine", T=12, seed=0):
    return make_task(name, T, seed=seed, n_train=64, n_val=32)


def _params(task, H=8, seed=0):
    return lstm_ag.init_params(task.input_size, H, task.output_size, seed=seed)


def _config(task, **changes):
    """A small run's config for ``task`` (hidden 8, batch 8, lr 0.1, autograd, seed 3)."""
    settings = dict(task=task.name, seq_len=task.seq_len, train_size=task.train_x.shape[1],
                    hidden=8, batch=8, lr=0.1, method="autograd", seed=3, eval_every=10)
    return TrainConfig(**{**settings, **changes})


def _same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def _run(task, steps, method="autograd", *, start=None, checkpoint=None, metrics=None,
         callback=None, log=None, params=None, **changes):
    config = _config(task, steps=steps, method=method, **changes)
    return fit(_params(task) if params is None else params, task, config, start=start,
               checkpoint=checkpoint, metrics=metrics, callback=callback,
               log=io.StringIO() if log is None else log)


@pytest.mark.parametrize("method", lstm_ag.METHODS)
def test_a_short_fit_lowers_the_loss(method):
    task = _task()
    before = evaluate(_params(task), task)
    result = _run(task, 60, method)
    assert result.status == "done" and result.step == 60
    assert [row["step"] for row in result.history] == [10, 20, 30, 40, 50, 60]
    assert result.last["val_mse"] < 0.3 * before
    assert result.last["val_mse"] == pytest.approx(evaluate(result.params, task))
    assert result.last["baseline_mse"] == task.baseline_mse


@pytest.mark.parametrize("method", lstm_ag.METHODS)
def test_resume_is_exact_bit_for_bit(tmp_path, method):
    task = _task()
    straight = _run(task, 40, method, checkpoint=tmp_path / "straight.npz")
    first = _run(task, 20, method, eval_every=7, checkpoint=tmp_path / "run.npz")
    params, config, progress, _ = load_checkpoint(tmp_path / "run.npz")
    assert progress.step == 20 and config == first.config
    resumed = fit(params, task, config.resumed(steps=40), start=progress,
                  checkpoint=tmp_path / "run.npz", log=io.StringIO())
    assert first.step == 20 and resumed.step == 40
    _same(straight.params, resumed.params)
    _same(straight.progress.velocity, resumed.progress.velocity)
    _same(straight.params, load_checkpoint(tmp_path / "run.npz")[0])


def test_batches_depend_on_seed_and_step_only():
    a = batch_indices(1, 5, 100, 10)
    assert np.array_equal(a, batch_indices(1, 5, 100, 10))
    assert len(set(a)) == 10 and a.min() >= 0 and a.max() < 100
    assert not np.array_equal(a, batch_indices(1, 6, 100, 10))
    assert not np.array_equal(a, batch_indices(2, 5, 100, 10))
    with pytest.raises(ValueError, match=r"batch must be in \[1, 100\].*got 101"):
        batch_indices(1, 0, 100, 101)


def test_ctrl_c_saves_the_last_step_and_resumes_exactly(tmp_path):
    task = _task()
    path = tmp_path / "model.npz"

    def ctrl_c_at_13(step, params, info):
        assert math.isfinite(info["loss"]) and info["grad_norm"] >= 0
        if step == 13:
            raise KeyboardInterrupt
    stopped = _run(task, 30, checkpoint=path, callback=ctrl_c_at_13)
    assert stopped.status == "interrupted" and stopped.step == 13
    assert "interrupted at step 13" in stopped.message and str(path) in stopped.message
    params, config, progress, _ = load_checkpoint(path)
    assert progress.step == 13
    _same(params, stopped.params)
    resumed = fit(params, task, config, start=progress, checkpoint=path, log=io.StringIO())
    _same(_run(task, 30).params, resumed.params)
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "model.npz"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    task = _task()
    path = tmp_path / "model.npz"
    log = io.StringIO()
    result = _run(task, 50, lr=1e12, momentum=0.0, clip=0.0, eval_every=2, checkpoint=path,
                  log=log)
    assert result.status == "diverged"
    assert "is not finite" in result.message and "Try a smaller --lr" in result.message
    params, _, progress, _ = load_checkpoint(path)
    assert f"last good checkpoint (step {progress.step}, validation MSE" in result.message
    assert progress.step < result.step < 50
    assert all(np.isfinite(v).all() for v in params.values())
    assert math.isfinite(evaluate(params, task))
    assert sorted(os.listdir(tmp_path)) == ["best.npz", "model.npz"]


def test_one_progress_line_per_evaluation_and_metrics_file(tmp_path):
    task = _task()
    log = io.StringIO()
    result = _run(task, 25, eval_every=10, log=log, metrics=tmp_path / "metrics.json")
    lines = log.getvalue().splitlines()
    assert len(lines) == 3                                   # steps 10, 20 and the last, 25
    assert lines[-1].startswith("step 25/25") and "steps/s" in lines[-1]
    for word in ("train", "val", "baseline", "|g|"):
        assert word in lines[0]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["step"] == 25 and metrics["task"] == "sine" and metrics["status"] == "done"
    assert metrics["val_mse"] == result.last["val_mse"]
    assert metrics["baseline_mse"] == pytest.approx(task.baseline_mse)
    assert metrics["seconds"] > 0 and len(metrics["history"]) == 3


@pytest.mark.parametrize("method", lstm_ag.METHODS)
def test_every_method_trains_the_same_way(method):
    task = _task("adding", T=10)
    reference = _run(task, 8, "autograd")
    other = _run(task, 8, method)
    for key in reference.params:
        assert_allclose(other.params[key], reference.params[key], rtol=1e-8, atol=1e-12)


def test_adding_is_scored_at_the_last_step_only():
    task = _task("adding", T=10)
    params = _params(task)
    pred = lstm_ag.predict(params, task.val_x)
    assert evaluate(params, task) == pytest.approx(masked_mse(pred, task.val_y, task.mask))
    assert evaluate(params, task) == pytest.approx(np.mean((pred[-1] - task.val_y[-1]) ** 2))


def test_lbfgs_full_batch_lowers_the_loss(tmp_path):
    task = _task()
    before = evaluate(_params(task), task)
    result = _run(task, 15, optimizer="lbfgs", eval_every=5, checkpoint=tmp_path / "m.npz")
    assert result.status == "done", result.message
    assert result.last["val_mse"] < 0.5 * before
    params, config, progress, _ = load_checkpoint(tmp_path / "m.npz")
    assert config.optimizer == "lbfgs" and progress.velocity is None
    _same(params, result.params)


def test_one_step_is_the_optimizers_step_on_the_seeded_batch():
    task = _task()
    config = _config(task, steps=1, lr=0.3, lr_decay=0.5, momentum=0.5, clip=0.05)
    params = _params(task)
    idx = batch_indices(config.seed, 0, config.train_size, config.batch)
    _, grads = lstm_ag.value_and_grad(params, task.train_x[:, idx], task.train_y[:, idx],
                                      method=config.method, mask=task.mask)
    grads, norm = clip_by_global_norm(grads, config.clip)
    assert norm > config.clip                                       # clipping is exercised
    expected, velocity = momentum_update(params, grads, init_velocity(params),
                                         lr=learning_rate(0.3, 0, 0.5), momentum=0.5)
    result = fit(params, task, config, log=io.StringIO())
    _same(result.params, expected)
    _same(result.progress.velocity, velocity)


def test_the_checkpoint_holds_the_config_whole(tmp_path):
    task = _task("counting", T=9)
    result = _run(task, 4, lr_decay=0.25, eval_every=2, checkpoint=tmp_path / "m.npz")
    params, config, progress, task_spec = load_checkpoint(tmp_path / "m.npz")
    assert config == result.config and config.lr_decay == 0.25 and config.task == "counting"
    assert make_task(**task_spec).val_x.tobytes() == task.val_x.tobytes()
    assert [row["step"] for row in progress.history] == [2, 4]
    _same(params, result.params)


@pytest.mark.parametrize("change, match", [
    (dict(config="not a config"), "config must be a TrainConfig, got str"),
    (dict(hidden=5), "params have H=8, config.hidden is 5"),
    (dict(seq_len=13), (r"the task is 'sine' with seq_len=12, 64 training sequences; the "
                        r"config says 'sine', seq_len=13, train_size=64")),
    (dict(train_size=63), "train_size=63"),
])
def test_config_must_describe_the_task_and_params(change, match):
    task = _task()
    config = change.pop("config", None) or _config(task, steps=3, **change)
    with pytest.raises((TypeError, ValueError), match=match):
        fit(_params(task), task, config, log=io.StringIO())


def test_params_must_fit_the_task():
    task = _task("adding", T=10)
    with pytest.raises(ValueError, match="params have D=1, O=1; task 'adding' needs D=2, O=1"):
        fit(lstm_ag.init_params(1, 8, 1), task, _config(task, steps=3))
