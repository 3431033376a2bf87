"""The trainer's tasks: shapes, determinism, and the naive baselines each one reports."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from train.data import TASKS, adding, counting, make_task, masked_mse, sine


@pytest.mark.parametrize("name, D", [("sine", 1), ("counting", 1), ("adding", 2)])
def test_shapes_and_split(name, D):
    task = make_task(name, 12, seed=3, n_train=40, n_val=10)
    assert task.name == name
    assert task.train_x.shape == (12, 40, D) and task.train_y.shape == (12, 40, 1)
    assert task.val_x.shape == (12, 10, D) and task.val_y.shape == (12, 10, 1)
    assert task.val_baseline.shape == task.val_y.shape
    assert (task.input_size, task.output_size, task.seq_len) == (D, 1, 12)
    assert task.mask is None or task.mask.shape == (12,)
    for a in (task.train_x, task.train_y, task.val_x, task.val_y):
        assert a.dtype == np.float64 and np.isfinite(a).all()


@pytest.mark.parametrize("name", list(TASKS))
def test_seeded_and_regenerated_from_its_spec(name):
    a = make_task(name, 10, seed=7, n_train=20, n_val=5)
    b = make_task(**a.spec)
    c = make_task(name, 10, seed=8, n_train=20, n_val=5)
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.val_y, b.val_y)
    assert not np.array_equal(a.train_x, c.train_x)
    assert a.spec["name"] == name and a.spec["seq_len"] == 10 and a.spec["seed"] == 7


@pytest.mark.parametrize("name", list(TASKS))
def test_validation_set_does_not_depend_on_the_training_set_size(name):
    small = make_task(name, 10, seed=4, n_train=5, n_val=20)
    large = make_task(name, 10, seed=4, n_train=50, n_val=20)
    assert np.array_equal(small.val_x, large.val_x) and np.array_equal(small.val_y, large.val_y)
    assert small.baseline_mse == large.baseline_mse


def test_sine_targets_are_the_next_values_and_baseline_repeats_the_last():
    task = sine(30, n_train=50, n_val=200, seed=0, burn_in=5)
    assert np.array_equal(task.train_x[1:], task.train_y[:-1])     # y_t = x_{t+1}
    assert np.array_equal(task.val_baseline, task.val_x)
    assert np.array_equal(task.mask, np.r_[np.zeros(5), np.ones(25)])
    by_hand = np.mean((task.val_x[5:] - task.val_y[5:]) ** 2)      # scored steps only
    assert task.baseline_mse == pytest.approx(by_hand, rel=1e-12)
    assert 0.005 < task.baseline_mse < 0.1
    assert np.abs(task.train_x).max() < 1.1                        # amplitude <= 1, small noise


def test_counting_is_notebook_002s_1_2_3_then_4_scaled():
    task = counting(8, n_train=300, n_val=50, seed=1, max_start=10, max_step=5)
    counts = np.concatenate([task.train_x[:1], task.train_y]) * task.scale     # (T+1, N, 1)
    assert task.scale == 10 + 5 * 8
    assert_allclose(counts, np.round(counts), atol=1e-9)                        # integers
    steps = np.diff(counts, axis=0)
    assert_allclose(steps, steps[:1].repeat(8, axis=0), atol=1e-9)              # arithmetic
    assert set(np.round(steps[0, :, 0]).astype(int)) == {1, 2, 3, 4, 5}
    assert task.train_x.min() >= 0 and task.train_y.max() <= 1                 # in [0, 1]
    one_two_three = [i for i in range(300) if round(counts[0, i, 0]) == 1 and
                     round(steps[0, i, 0]) == 1]
    if one_two_three:                                 # 1, 2, 3 -> 4 as in the notebook
        i = one_two_three[0]
        assert_allclose(counts[:4, i, 0], [1, 2, 3, 4])
    last_step = (task.val_y - task.val_x)                                       # = step/scale
    assert task.baseline_mse == pytest.approx(np.mean(last_step ** 2), rel=1e-12)


def test_adding_marks_one_value_in_each_half_and_scores_the_last_step():
    T = 20
    task = adding(T, n_train=500, n_val=4000, seed=2)
    values, markers = task.train_x[..., 0], task.train_x[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert np.array_equal(markers.sum(axis=0), np.full(500, 2.0))
    assert np.array_equal(markers[:T // 2].sum(axis=0), np.ones(500))
    sums = (values * markers).sum(axis=0)
    assert_allclose(task.train_y[-1, :, 0], sums)
    assert np.array_equal(task.mask, np.r_[np.zeros(T - 1), 1.0])
    assert np.array_equal(task.val_baseline, np.ones_like(task.val_y))
    assert task.baseline_mse == pytest.approx(1 / 6, abs=0.01)      # Var of U(0,1)+U(0,1)


def test_masked_mse_matches_the_library_formula():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((2, 5, 3, 2))
    mask = np.array([0, 1, 2, 0, 1.0])
    err2 = (pred - target) ** 2
    assert masked_mse(pred, target) == pytest.approx(err2.mean())
    expected = (mask[:, None, None] * err2).sum() / (mask.sum() * 3 * 2)
    assert masked_mse(pred, target, mask) == pytest.approx(expected)


@pytest.mark.parametrize("call, match", [
    (lambda: make_task("music", 10), "task must be one of 'sine', 'counting', 'adding'"),
    (lambda: sine(1), "seq_len must be an integer >= 2, got 1"),
    (lambda: sine(10, burn_in=10), r"burn_in must be an integer in \[0, seq_len\)"),
    (lambda: adding(10, n_train=0), "n_train must be an integer >= 1, got 0"),
    (lambda: counting(10, max_step=0), "max_step must be an integer >= 1, got 0"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
