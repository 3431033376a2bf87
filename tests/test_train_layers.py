"""The trainer's stacked and bidirectional models (--layers, --bidirectional) and truncated BPTT
(--tbptt): exact resumes, refusals with one line, the chunk schedule against a loop written
out by hand, and a series trained whole in streams."""
import io
from dataclasses import replace

import numpy as np
import pytest

import lstm_ag
from lstm_ag.params import flatten, structure, tree_map
from train import TrainConfig, fit
from train.__main__ import main
from train.config import ConfigError
from train.loop import (
    batch_indices,
    chunk_plan,
    evaluate,
    load_checkpoint,
    save_checkpoint,
)
from train.optim import (
    adam_update,
    clip_by_global_norm,
    global_norm,
    init_moments,
    init_velocity,
    learning_rate,
    momentum_update,
)
from train.series import multi_step, one_step, series_task

PROG = "python -m train"
SMALL = ["--hidden", "4", "--batch", "4", "--train-size", "16", "--eval-every", "3",
         "--quiet"]


def _run(capsys, *argv, callback=None):
    code = main([str(a) for a in argv], callback=callback)
    out, err = capsys.readouterr()
    return code, out, err


def _stop_at(stop):
    def callback(step, params, info):
        if step == stop:
            raise KeyboardInterrupt
    return callback


def _same(a, b):
    """Two parameter (or buffer) trees hold the same arrays, bit for bit."""
    a, b = flatten(a), flatten(b)
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


def _config(**changes):
    settings = dict(task="sine", steps=12, hidden=4, seq_len=12, batch=4, train_size=16,
                    lr=0.1, seed=3, eval_every=4)
    return TrainConfig(**{**settings, **changes})


def _fit(config, **kwargs):
    task = config.make_task(n_val=8)
    return fit(config.init_params(task), task, config, log=io.StringIO(), **kwargs), task


def _rows(history):
    """The history without its timings (which differ from run to run)."""
    return [{k: v for k, v in row.items() if k not in ("seconds", "steps_per_second")}
            for row in history]


# ----------------------------------------------------------------------------- --layers

def test_layers_train_and_resume_exactly_from_the_command_line(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    argv = ["counting", "--layers", 2, "--seq-len", 8, "--steps", 9, *SMALL]
    assert _run(capsys, *argv, "--out", straight)[0] == 0
    assert _run(capsys, *argv, "--out", split, callback=_stop_at(5))[0] == 130
    code, _, err = _run(capsys, "--out", split, "--resume")
    assert code == 0, err
    a, config, progress_a, _ = load_checkpoint(straight / "model.npz")
    b, _, progress_b, _ = load_checkpoint(split / "model.npz")
    assert config.layers == 2 and structure(a) == (2, 1) and progress_b.step == 9
    assert a["layers"][0]["Wx"].shape == (4, 16)              # layer 1 reads layer 0's h
    _same(a, b)
    _same(progress_a.velocity, progress_b.velocity)
    assert _rows(progress_a.history) == _rows(progress_b.history)
    code, _, err = _run(capsys, "--out", split, "--resume", "--steps", 10, "--layers", 3)
    assert code == 2
    assert err.splitlines()[-1].startswith(f"{PROG}: error: --layers 3 differs from the "
                                           "checkpoint's layers=2 in")


def test_layers_with_adam_and_every_method_give_one_run():
    runs = [_fit(_config(layers=3, optimizer="adam", method=method, steps=4))[0]
            for method in lstm_ag.METHODS]
    for other in runs[1:]:
        for key, value in flatten(runs[0].params).items():
            np.testing.assert_allclose(flatten(other.params)[key], value, rtol=1e-9,
                                       atol=1e-12, err_msg=key)
    assert structure(runs[0].params) == (3, 1)
    assert sorted(runs[0].progress.velocity) == ["m", "v"]
    assert sorted(flatten(runs[0].progress.velocity["m"])) == sorted(flatten(runs[0].params))


def test_a_layers_checkpoint_whose_params_do_not_match_is_refused(tmp_path):
    config = _config(layers=2)
    task = config.make_task(n_val=8)
    path = tmp_path / "m.npz"
    params = _config().init_params(task)                    # one layer only
    save_checkpoint(path, params, fit(params, task, _config(steps=1),
                                      log=io.StringIO()).progress, config, task.spec)
    with pytest.raises(lstm_ag.CheckpointError, match=r"m.npz: params have 1 layers and 1 "
                                                      r"directions, its config layers=2"):
        load_checkpoint(path)


def test_a_checkpoint_written_before_layers_existed_reads_as_one_layer(tmp_path):
    result, task = _fit(_config(steps=2))
    path = tmp_path / "old.npz"
    save_checkpoint(path, result.params, result.progress, result.config, task.spec)
    params, meta = lstm_ag.load(path)
    for name in ("layers", "bidirectional", "tbptt"):
        del meta["config"][name]
    del meta["carry"]
    lstm_ag.save(path, params, **meta)
    config = load_checkpoint(path).config
    assert (config.layers, config.bidirectional, config.tbptt) == (1, False, 0)
    assert config == result.config


def test_too_many_layers_are_refused_before_anything_is_allocated(tmp_path, capsys):
    code, _, err = _run(capsys, "sine", "--layers", 10**9, "--hidden", 1000, "--out",
                        tmp_path / "run")
    assert code == 2
    assert err.splitlines()[-1].startswith(f"{PROG}: error: --layers 1000000000 with --hidden "
                                           "1000: the weights and the optimizer's copies "
                                           "would need about")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- --bidirectional

@pytest.mark.parametrize("task", ["sine", "counting", "series"])
def test_bidirectional_is_refused_for_next_value_prediction(task, tmp_path, capsys):
    data = ["--data", tmp_path / "s.csv"] if task == "series" else []
    code, out, err = _run(capsys, task, *data, "--bidirectional", "--out", tmp_path / "run")
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == (
        f"{PROG}: error: --bidirectional is not causal: {task} predicts the next value, which "
        "the backward direction would read from the inputs (only adding, which predicts once "
        "at the end, takes it)")
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_bidirectional_adding_trains_and_forecast_refuses_it(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "adding", "--bidirectional", "--seq-len", 10, "--steps", 4,
                             *SMALL, "--out", out)
    assert code == 0, err
    params, config, progress, _ = load_checkpoint(out / "model.npz")
    assert config.bidirectional and structure(params) == (1, 2) and progress.step == 4
    assert params["Wy"].shape == (8, 1)                     # the readout reads both directions
    code, _, err = _run(capsys, "forecast", "--out", out)
    assert code == 2
    assert err.splitlines()[-1] == (
        f"{PROG}: error: forecast: {out / 'best.npz'} holds a bidirectional model (adding "
        "task), which reads each sequence backwards too: it is not causal and cannot forecast")


@pytest.mark.parametrize("argv", [["adding", "--bidirectional"], ["sine", "--layers", 2]])
def test_plot_of_a_stacked_or_bidirectional_model_draws_the_top_layer(argv, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, _, err = _run(capsys, *argv, "--plot", "--steps", 3, "--hidden", 3, "--seq-len", 12,
                        "--train-size", 64, "--out", tmp_path / "run")
    assert code == 0, err
    assert (tmp_path / "run" / "plot.png").stat().st_size > 10_000


def test_help_says_which_tasks_take_bidirectional_and_what_tbptt_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--bidirectional adding only: every layer also reads the sequence backwards" in text
    assert "sine, counting and series are refused: they predict the next value" in text
    assert "--tbptt K truncated BPTT for long sequences: each step trains on the next K" in text
    assert "Validation runs over whole sequences" in text
    assert "--layers N stacked LSTM layers" in text


# ----------------------------------------------------------------------------- --tbptt

def test_the_chunk_plan():
    assert chunk_plan(12, 0) == chunk_plan(12, 12) == [(0, 0, 12)]
    assert chunk_plan(10, 4) == [(0, 0, 4), (4, 4, 8), (8, 8, 10)]       # a shorter last one
    burn_in = np.r_[np.zeros(5), np.ones(7)]
    assert chunk_plan(12, 3, burn_in) == [(0, 3, 6), (6, 6, 9), (9, 9, 12)]   # 0-3 forward
    last = np.r_[np.zeros(11), 1.0]
    assert chunk_plan(12, 5, last) == [(0, 10, 12)]         # adding: the last chunk is trained


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("layers", [1, 2])
def test_tbptt_over_whole_sequences_is_the_run_without_it(optimizer, layers):
    config = _config(optimizer=optimizer, layers=layers)
    plain, _ = _fit(config)
    whole, _ = _fit(replace(config, tbptt=config.seq_len))
    _same(plain.params, whole.params)
    _same(plain.progress.velocity, whole.progress.velocity)
    assert _rows(plain.history) == _rows(whole.history)
    assert whole.progress.carry is None


def test_tbptt_steps_are_chunks_in_order_with_the_state_carried_and_detached():
    """Four steps of sine, T = 12, K = 4 (steps 0-4 carry no loss), written out: each batch
    runs [0, 4) forward, trains [4, 8) from that state, then [8, 12) from the state at 8."""
    config = _config(tbptt=4, steps=4, clip=0.5, lr_decay=0.1)
    result, task = _fit(config)
    params = previous = lstm_ag.init_params(1, 4, 1, seed=3)
    velocity = init_velocity(params)
    x, y, mask = task.train_x, task.train_y, task.mask
    for step in range(4):
        batch, chunk = divmod(step, 2)
        idx = batch_indices(3, batch, 16, 4)
        if chunk == 0:
            start = lstm_ag.lstm_forward(params, x[:4, idx])[1]
            t0 = 4
        else:                             # the state at 8 under the parameters of step - 1
            start = lstm_ag.lstm_forward(previous, x[:8, idx])[1]
            t0 = 8
        loss, grads = lstm_ag.value_and_grad(params, x[t0:t0 + 4, idx], y[t0:t0 + 4, idx],
                                             start, mask=mask[t0:t0 + 4])
        grads, _ = clip_by_global_norm(grads, 0.5)
        previous = params
        params, velocity = momentum_update(params, grads, velocity,
                                           lr=learning_rate(0.1, step, 0.1), momentum=0.9)
    for key, value in params.items():
        np.testing.assert_allclose(result.params[key], value, rtol=1e-12, atol=1e-15,
                                   err_msg=key)
    cut, _ = _fit(replace(config, tbptt=0))               # whole sequences: another run
    assert not np.allclose(cut.params["Wh"], result.params["Wh"])


def test_tbptt_validates_over_whole_sequences():
    result, task = _fit(_config(tbptt=3, steps=6, eval_every=3))
    assert result.last["val_mse"] == evaluate(result.params, task)
    assert result.last["val_mse"] == float(lstm_ag.mse(result.params, task.val_x, task.val_y,
                                                       mask=task.mask))


@pytest.mark.parametrize("layers, stop", [(1, 4), (2, 5)])
def test_tbptt_resumes_mid_sequence_bit_for_bit(tmp_path, layers, stop):
    config = _config(tbptt=3, steps=10, layers=layers, optimizer="adam")   # 3 chunks a batch
    task = config.make_task(n_val=8)
    straight = fit(config.init_params(task), task, config, log=io.StringIO())
    path = tmp_path / "model.npz"
    first = fit(config.init_params(task), task, replace(config, steps=stop), checkpoint=path,
                log=io.StringIO())
    params, saved, progress, _ = load_checkpoint(path)
    carry = progress.carry
    assert carry["chunk"] == stop % 3 != 0
    assert carry["h"].shape == carry["c"].shape == ((4, 4) if layers == 1 else (2, 4, 4))
    np.testing.assert_array_equal(carry["h"], first.progress.carry["h"])
    resumed = fit(params, task, saved.resumed(steps=10), start=progress, checkpoint=path,
                  log=io.StringIO())
    _same(straight.params, resumed.params)
    _same(straight.progress.velocity, resumed.progress.velocity)
    assert straight.progress.carry["chunk"] == 1           # step 10: chunk 1 of batch 3
    np.testing.assert_array_equal(straight.progress.carry["c"], resumed.progress.carry["c"])


def test_tbptt_ctrl_c_mid_sequence_and_resume_from_the_command_line(tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    argv = ["sine", "--seq-len", 12, "--tbptt", 3, "--steps", 8, *SMALL]
    assert _run(capsys, *argv, "--out", straight)[0] == 0
    code, _, err = _run(capsys, *argv, "--out", split, callback=_stop_at(4))
    assert code == 130 and "interrupted at step 4" in err
    assert load_checkpoint(split / "model.npz").progress.carry["chunk"] == 1
    assert _run(capsys, "--out", split, "--resume")[0] == 0
    a, b = load_checkpoint(straight / "model.npz"), load_checkpoint(split / "model.npz")
    _same(a.params, b.params)
    assert b.config.tbptt == 3 and b.progress.step == 8
    assert _rows(a.progress.history) == _rows(b.progress.history)


@pytest.mark.parametrize("argv, message", [
    (["--tbptt", 0], ("--tbptt must be >= 1, the time steps per chunk (leave it out to "
                     "backpropagate through whole sequences), got 0")),
    (["--tbptt", -2], "--tbptt must be >= 1, the time steps per chunk"),
    (["--tbptt", 13], ("--tbptt 13 exceeds the sequence length 12 (--seq-len): a chunk is at "
                      "most a whole sequence")),
    (["--tbptt", 4, "--optimizer", "lbfgs"], ("--tbptt is for sgd and adam (lbfgs takes every "
                                             "step over the whole training set)")),
    (["--layers", 0], "--layers must be >= 1, got 0"),
])
def test_bad_tbptt_and_layers_are_refused_in_one_line(argv, message, tmp_path, capsys):
    code, _, err = _run(capsys, "sine", "--seq-len", 12, *argv, "--out", tmp_path / "run")
    assert code == 2
    assert err.splitlines()[-1].startswith(f"{PROG}: error: {message}")
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_tbptt_and_bidirectional_are_refused_together():
    with pytest.raises(ConfigError, match=r"^tbptt carries the state forward from chunk to "
                                          r"chunk; a bidirectional model's backward direction"):
        TrainConfig(task="adding", bidirectional=True, tbptt=5)


@pytest.fixture(scope="module")
def stopped_tbptt(tmp_path_factory):
    out = tmp_path_factory.mktemp("tbptt") / "run"
    assert main([str(a) for a in ("sine", "--seq-len", 12, "--tbptt", 3, "--steps", 9, *SMALL,
                                  "--out", out)], callback=_stop_at(4)) == 130
    return (out / "model.npz").read_bytes()


def _carry(**changes):
    return lambda meta: meta["carry"].update(changes)


@pytest.mark.parametrize("change, message", [
    (_carry(chunk=2), "carry is the state before chunk 2, but step 4 trains chunk 1 of 3"),
    (_carry(chunk=0), "carry.chunk must be a finite number >= 1, got 0"),
    (_carry(h=np.zeros((3, 4))), "carry.h must be a finite state: float64, shape (4, 4)"),
    (_carry(c=np.full((4, 4), np.nan)), "carry.c must be a finite state"),
    (lambda meta: meta.update(carry=None), ("carry is missing at step 4, chunk 1 of the 3 of "
                                           "a batch")),
    (lambda meta: meta.update(carry=[1]), "carry must be null or {'chunk'"),
    (lambda meta: meta.update(step=6), "carry is given at step 6, chunk 0 of the 3"),
    (lambda meta: meta["config"].update(tbptt=0), "carry must be null without tbptt"),
])
def test_a_tampered_carry_is_refused_naming_the_file(change, message, tmp_path, capsys,
                                                     stopped_tbptt):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.npz").write_bytes(stopped_tbptt)
    params, meta = lstm_ag.load(out / "model.npz")
    change(meta)
    lstm_ag.save(out / "model.npz", params, **meta)
    code, _, err = _run(capsys, "--out", out, "--resume")
    assert code == 2
    line = err.splitlines()[-1]
    assert line.startswith(f"{PROG}: error: {out / 'model.npz'}: ") and message in line, line


# ----------------------------------------------------------------------------- series, whole

def _wave(n=120, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + np.sin(t / 3) + 0.02 * t + 0.1 * rng.standard_normal(n)


@pytest.mark.parametrize("diff", [False, True])
def test_a_series_in_streams_holds_the_training_part_whole_and_validates_from_the_start(diff):
    values = _wave()
    task = series_task(30, values=values, diff=diff, streams=3)
    windows = series_task(30, values=values, diff=diff)
    lag, (n1, n2) = int(diff), task.bounds
    n = n1 - 1 - lag
    L = n // 3
    assert task.train_x.shape == (L, 3, 1) and task.seq_len == L and task.streams == 3
    flat_x, flat_y = task.train_x[:, :, 0].T.ravel(), task.train_y[:, :, 0].T.ravel()
    np.testing.assert_array_equal(flat_x, task.z[n - 3 * L:n])       # contiguous, in order
    np.testing.assert_array_equal(flat_y, task.z[n - 3 * L + 1:n + 1])  # ends at the part's end
    np.testing.assert_array_equal(task.val_x[:, 0, 0], task.z[:n2 - lag - 1])
    scored = np.flatnonzero(task.val_mask) + 1 + lag                 # the levels scored
    np.testing.assert_array_equal(scored, np.arange(n1, n2))
    assert task.baseline_mse == pytest.approx(windows.baseline_mse, rel=1e-12)
    assert list(task.part("train")) == list(range(n - 3 * L + 1 + lag, n1))
    changed = values.copy()
    changed[n2:] += 100.0                                            # the test part
    other = series_task(30, values=changed, diff=diff, streams=3)
    np.testing.assert_array_equal(other.train_x, task.train_x)
    np.testing.assert_array_equal(other.val_x, task.val_x)


def test_a_series_in_streams_predicts_from_the_whole_history():
    task = series_task(30, values=_wave(), diff=True, streams=2)
    params = lstm_ag.init_params(1, 5, 1, seed=1, num_layers=2)
    targets = np.array([90, 100, 117])
    expected = [task.scaler.one_step(lstm_ag.predict(params, task.z[:j - 1, None])[-1, 0],
                                     task.values[j - 1]) for j in targets]
    np.testing.assert_allclose(one_step(params, task, targets), expected, rtol=1e-12)
    origins = np.array([110, 96, 101])
    paths = multi_step(params, task, origins, 4)
    for k, o in enumerate(origins):
        zs = lstm_ag.forecast(params, task.z[:o - 1, None], 4)[:, 0]
        np.testing.assert_allclose(paths[:, k], task.scaler.path(zs, task.values[o - 1]),
                                   rtol=1e-10)


def test_series_tbptt_trains_whole_and_resumes_exactly(tmp_path, capsys):
    data = tmp_path / "s.csv"
    data.write_text("time,value\n" + "".join(f"{i},{v:.6f}\n" for i, v in enumerate(_wave())))
    straight, split = tmp_path / "straight", tmp_path / "split"
    argv = ["series", "--data", data, "--tbptt", 20, "--steps", 10, "--hidden", 4,
            "--eval-every", 5, "--horizon", 3, "--quiet"]
    code, stdout, err = _run(capsys, *argv, "--out", straight)
    assert code == 0, err
    assert "trained whole, --tbptt 20 in 1 stream of 71 steps" in stdout
    assert "test, one step ahead (24 values" in stdout
    assert _run(capsys, *argv, "--out", split, callback=_stop_at(6))[0] == 130
    assert load_checkpoint(split / "model.npz").progress.carry["chunk"] == 2
    code, _, err = _run(capsys, "--out", split, "--resume", "--plot")
    assert code == 2 and "--plot draws validation windows, and series --tbptt has none" in err
    assert _run(capsys, "--out", split, "--resume", "--quiet")[0] == 0
    a, b = load_checkpoint(straight / "model.npz"), load_checkpoint(split / "model.npz")
    _same(a.params, b.params)
    assert (b.config.batch, b.task_spec["streams"]) == (1, 1)
    code, stdout, _ = _run(capsys, "forecast", "--out", split, "--horizon", 3)
    assert code == 0 and "forecast of 3 values after the last value (index 119)" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--tbptt", 72], ("--tbptt 72 exceeds the length of the training streams, 71 steps (the "
                      "training part in --batch 1 streams): give a smaller --tbptt or --batch")),
    (["--tbptt", 30, "--batch", 3], ("--tbptt 30 exceeds the length of the training streams, "
                                    "23 steps")),
    (["--tbptt", 5, "--window", 10], ("--window (--seq-len) cuts a series into windows; with "
                                     "--tbptt the series is trained whole")),
    (["--tbptt", 5, "--batch", 80], ("--data s.csv: the training part (72 values) has 71 "
                                    "targets, fewer than --batch 80 streams")),
    (["--tbptt", 5, "--plot"], ("--plot draws validation windows, and series --tbptt has none; "
                               "plot its forecast instead: forecast --out DIR --on-test --plot")),
])
def test_series_tbptt_refusals(argv, message, tmp_path, capsys):
    data = tmp_path / "s.csv"
    data.write_text("time,value\n" + "".join(f"{i},{v:.6f}\n" for i, v in enumerate(_wave())))
    code, _, err = _run(capsys, "series", "--data", data, *argv, "--out", tmp_path / "run")
    assert code == 2
    assert err.splitlines()[-1].startswith(f"{PROG}: error: {message}"), err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- optimizers

def _tree(seed, num_layers=2, bidirectional=True):
    params = lstm_ag.init_params(2, 3, 1, seed=seed, num_layers=num_layers,
                                 bidirectional=bidirectional)
    rng = np.random.default_rng(seed)
    return tree_map(lambda a: rng.standard_normal(a.shape), params)


def test_optimizers_update_every_array_of_a_nested_tree_as_a_flat_dict():
    params, grads, other = _tree(0), _tree(1), _tree(2)
    flat = flatten(params)
    assert global_norm(grads) == pytest.approx(
        np.sqrt(sum(float(np.sum(g * g)) for g in flatten(grads).values())), rel=1e-14)
    clipped, norm = clip_by_global_norm(grads, 1.0)
    assert norm > 1 and global_norm(clipped) == pytest.approx(1.0)
    new_p, new_v = momentum_update(params, clipped, other, lr=0.1, momentum=0.9)
    ref_p, ref_v = momentum_update(flat, flatten(clipped), flatten(other), lr=0.1, momentum=0.9)
    _same(ref_p, flatten(new_p))
    _same(ref_v, flatten(new_v))
    assert structure(new_p) == (2, 2) and type(new_p["layers"]) is list
    moments = {"m": other, "v": tree_map(np.abs, grads)}
    new_p, new_m = adam_update(params, grads, moments, lr=0.01, step=3)
    ref_p, ref_m = adam_update(flat, flatten(grads), {k: flatten(v) for k, v in moments.items()},
                               lr=0.01, step=3)
    _same(ref_p, flatten(new_p))
    _same(ref_m["v"], flatten(new_m["v"]))
    zeros = init_moments(params)
    assert all(not a.any() for a in flatten(zeros["m"]).values())
    with pytest.raises(ValueError, match="grads and velocity must have the keys of params"):
        momentum_update(params, _tree(1, bidirectional=False), other, lr=0.1, momentum=0.9)
