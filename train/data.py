"""Toy sequence tasks: generated once, up front, from a seeded ``np.random.default_rng``.

Every task is a :class:`Task`: time-major training and validation arrays, per-step loss
weights, and a naive baseline scored on the validation set with the same weights, so that a
model's validation MSE and the baseline's are directly comparable.

Training and validation sequences come from two independent streams of the seed, so the
validation set does not change with the size of the training set. The sequence length has no
default here: it is a training setting (:class:`train.config.TrainConfig`); the sizes of the
sets are the generators' own (``n_train``, ``n_val``).

* ``sine``: sine waves of random amplitude, frequency and phase plus a little noise; predict
  the next value. Baseline: repeat the last value.
* ``counting``: arithmetic sequences such as 1, 2, 3 -> 4 (notebook 002's example), random
  start and step, divided by a fixed scale so that every value lies in [0, 1]. Baseline:
  repeat the last value.
* ``adding``: Hochreiter & Schmidhuber's adding problem, in the form of Le, Jaitly & Hinton
  (2015): each step holds a value in [0, 1] and a marker; exactly two steps are marked, one
  in each half; the target is the sum of the two marked values, scored at the last step only.
  Baseline: always predict the mean sum, 1 (MSE 1/6 in expectation).
"""
import numpy as np

from .series import series_task
from .task import Task, masked_mse

__all__ = ["Task", "TASKS", "make_task", "sine", "counting", "adding", "masked_mse"]


_DATA = 0xDA7A       # tags the data streams apart from the minibatch draws (seed, step)


def _check(name, value, low, kind=int, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer) if kind is int
                                                 else (int, float, np.number)) \
            or not np.isfinite(value) or value < low or (high is not None and value > high):
        what = "an integer" if kind is int else "a number"
        bound = f">= {low}" if high is None else f"in [{low}, {high:g}]"
        raise ValueError(f"{name} must be {what} {bound}, got {value!r}")
    return value


#: The largest noise of the sine task: its waves have amplitudes near 1; 1e3 already buries
#: them, and much larger values overflow the MSE in float64.
MAX_NOISE = 1e3


def _train_val(draw, seed, n_train, n_val):
    """Training and validation sets from two independent streams of one seed.

    - draw: ``draw(rng, n) -> (xs (T, n, D), ys (T, n, O))``.
    Returns ``((train_x, train_y), (val_x, val_y))``. The validation set does not depend on
    ``n_train`` (a smaller training set is scored on the same held-out sequences).
    """
    train = draw(np.random.default_rng([seed, _DATA, 0]), n_train)
    val = draw(np.random.default_rng([seed, _DATA, 1]), n_val)
    return train, val


def _burn_in_mask(seq_len, burn_in):
    if burn_in == 0:
        return None
    mask = np.ones(seq_len)
    mask[:burn_in] = 0.0
    return mask


def sine(seq_len: int, *, n_train: int = 2000, n_val: int = 256, seed: int = 0,
         noise: float = 0.01, burn_in: int = 5) -> Task:
    """Noisy sine waves; predict the next value.

    Each sequence is ``a * sin(w * t + phi) + noise * N(0, 1)`` at t = 0..T, with amplitude
    a ~ U(0.5, 1), angular frequency w ~ U(0.1, 0.5) rad per step and phase phi ~ U(0, 2 pi).
    Inputs are the values at 0..T-1, targets the values at 1..T. The first ``burn_in`` steps,
    where too little of the wave has been seen to tell its frequency, carry no loss (for the
    model and the baseline alike).

    - seq_len: T >= 2; n_train, n_val: sequences; seed: ``np.random.default_rng`` seed.
    - noise: standard deviation of the added noise; burn_in: unscored leading steps (< T).
    Returns a :class:`Task` with D = O = 1; baseline: repeat the last value.
    """
    T = _check("seq_len", seq_len, 2)
    _check("n_train", n_train, 1), _check("n_val", n_val, 1)
    _check("noise", noise, 0, float, MAX_NOISE)
    if not isinstance(burn_in, (int, np.integer)) or not 0 <= burn_in < T:
        raise ValueError(f"burn_in must be an integer in [0, seq_len) = [0, {T}), got {burn_in!r}")

    def draw(rng, n):
        amp = rng.uniform(0.5, 1.0, n)
        freq = rng.uniform(0.1, 0.5, n)
        phase = rng.uniform(0.0, 2 * np.pi, n)
        t = np.arange(T + 1)[:, None]
        waves = amp * np.sin(freq * t + phase) + noise * rng.standard_normal((T + 1, n))
        return waves[:-1, :, None], waves[1:, :, None]
    (tx, ty), (vx, vy) = _train_val(draw, seed, n_train, n_val)
    return Task("sine", tx, ty, vx, vy, _burn_in_mask(T, burn_in), val_baseline=vx.copy(),
                baseline="repeat the last value",
                spec=dict(name="sine", seq_len=T, seed=seed, n_train=n_train, n_val=n_val,
                          noise=noise, burn_in=burn_in))


def counting(seq_len: int, *, n_train: int = 2000, n_val: int = 256, seed: int = 0,
             max_start: int = 10, max_step: int = 5) -> Task:
    """Counting in steps: arithmetic sequences such as 1, 2, 3 -> 4; predict the next value.

    Start ~ integers in [0, max_start), step ~ integers in [1, max_step]; the sequence
    ``start + step * t`` at t = 0..T is divided by ``scale = max_start + max_step * T``, the
    largest value any sequence can reach, so every value is in [0, 1] (multiply a prediction by
    ``task.scale`` to read it as a count). Inputs are the values at 0..T-1, targets at
    1..T; every step is scored (from step 1 on the step size is known exactly).

    - seq_len: T >= 2; n_train, n_val: sequences; seed: ``np.random.default_rng`` seed.
    - max_start, max_step: ranges of start and step (integers >= 1).
    Returns a :class:`Task` with D = O = 1; baseline: repeat the last value.
    """
    T = _check("seq_len", seq_len, 2)
    _check("n_train", n_train, 1), _check("n_val", n_val, 1)
    _check("max_start", max_start, 1), _check("max_step", max_step, 1)
    scale = max_start + max_step * T

    def draw(rng, n):
        start = rng.integers(0, max_start, n)
        step = rng.integers(1, max_step + 1, n)
        values = (start + step * np.arange(T + 1)[:, None]) / scale
        return values[:-1, :, None], values[1:, :, None]
    (tx, ty), (vx, vy) = _train_val(draw, seed, n_train, n_val)
    return Task("counting", tx, ty, vx, vy, None, val_baseline=vx.copy(),
                baseline="repeat the last value",
                spec=dict(name="counting", seq_len=T, seed=seed, n_train=n_train, n_val=n_val,
                          max_start=max_start, max_step=max_step), scale=float(scale))


def adding(seq_len: int, *, n_train: int = 10000, n_val: int = 1000, seed: int = 0) -> Task:
    """The adding problem: sum the two marked values of a long sequence.

    Each step t holds ``(value_t, marker_t)``: value ~ U(0, 1); marker 1 at exactly two
    steps, one in [0, T/2) and one in [T/2, T), else 0. The target is the sum of the two marked
    values, scored at the last step only (``mask`` is 1 there, 0 elsewhere; the targets hold
    the sum at every step so that a plot can show the running estimate against it).

    - seq_len: T >= 2; n_train, n_val: sequences; seed: ``np.random.default_rng`` seed.
    Returns a :class:`Task` with D = 2, O = 1; baseline: always predict 1, the mean sum
    (MSE 1/6 in expectation: the variance of a sum of two U(0, 1)).
    """
    T = _check("seq_len", seq_len, 2)
    _check("n_train", n_train, 1), _check("n_val", n_val, 1)

    def draw(rng, n):
        values = rng.uniform(0.0, 1.0, (T, n))
        first = rng.integers(0, T // 2, n)
        second = rng.integers(T // 2, T, n)
        cols = np.arange(n)
        markers = np.zeros((T, n))
        markers[first, cols] = 1.0
        markers[second, cols] = 1.0
        sums = values[first, cols] + values[second, cols]
        return (np.stack([values, markers], axis=-1),
                np.broadcast_to(sums[None, :, None], (T, n, 1)).copy())
    (tx, ty), (vx, vy) = _train_val(draw, seed, n_train, n_val)
    mask = np.zeros(T)
    mask[-1] = 1.0
    return Task("adding", tx, ty, vx, vy, mask, val_baseline=np.ones_like(vy),
                baseline="always predict the mean sum, 1",
                spec=dict(name="adding", seq_len=T, seed=seed, n_train=n_train, n_val=n_val))


#: The task generators by name.
TASKS = {"sine": sine, "counting": counting, "adding": adding}


def make_task(name: str, seq_len: int, *, seed: int = 0, **kwargs) -> Task:
    """Generate a task by name.

    - name: one of :data:`TASKS`; seq_len: T >= 2.
    - seed: ``np.random.default_rng`` seed of the data; kwargs: passed to the generator
      (``n_train``, ``n_val``, ...). ``make_task(**task.spec)`` regenerates ``task``.
    Returns a :class:`Task`. ``"series"`` (a user's series, :mod:`train.series`; its spec
    holds the values) is made by :func:`train.series.series_task`.
    """
    if name == "series":
        return series_task(seq_len, seed=seed, **kwargs)
    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {name!r}")
    return TASKS[name](seq_len, seed=seed, **kwargs)
