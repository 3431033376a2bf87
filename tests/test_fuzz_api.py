"""Fuzzing the public API as a hostile user would: every outcome is a named error or a result.

Each example builds a parameter dict, a sequence, a state, targets and a mask, then mutates
one of them (a wrong shape, NaN, an extra key, a subclass, a ragged list, a huge value, ...)
and calls one public function. The only acceptable outcomes: a finite result of the right
shape, or a ``ValueError``/``TypeError`` whose message names the argument at fault. Any other
exception, and any warning (pytest turns warnings into errors), fails the test.

The default run is bounded to a few seconds; ``pytest -m slow`` runs many more examples.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstm_ag

NAMES = ("params", "xs", "state", "targets", "mask", "horizon", "method", "dtype", "seed",
         "input_size", "hidden_size", "output_size", "forget_bias", "tolerances",
         "fd_samples", "backward", "upstream", "layout", "gate_order", "return_state")

class _Subclass(np.ndarray):
    """An ndarray subclass, as np.matrix or np.memmap are (without their warnings)."""


MUTATIONS = {
    "params": [
        lambda p: {**p, "Wh": p["Wh"][:-1]},
        lambda p: {**p, "Wx": np.where(np.arange(p["Wx"].size).reshape(p["Wx"].shape) == 0,
                                       np.nan, p["Wx"])},
        lambda p: {**p, "extra": np.zeros(3)},
        lambda p: {**p, "b": p["b"].astype(np.int64)},
        lambda p: {**p, "b": p["b"].tolist()},
        lambda p: {**p, "Wh": p["Wh"].view(_Subclass)},
        lambda p: {**p, "Wy": p["Wy"][:, :0]},
        lambda p: {**p, "by": p["by"].astype(np.float32)},
        lambda p: {k: v for k, v in p.items() if k != "by"},
        lambda p: list(p.values()),
        lambda p: {**p, "Wx": np.ma.masked_array(p["Wx"])},
        lambda p: {**p, "Wh": p["Wh"] * np.inf},
    ],
    "xs": [
        lambda x: x[..., :-1] if x.shape[-1] > 1 else x[..., :0],
        lambda x: x[:0],
        lambda x: x * 1e300,
        lambda x: np.where(x > 0, np.nan, x),
        lambda x: x.astype(complex),
        lambda x: [*[list(r) for r in x.reshape(x.shape[0], -1)][:-1], [1.0]],
        lambda x: x[None],
        lambda x: np.ma.masked_array(x),
        lambda x: x.astype(str),
    ],
    "state": [
        lambda s: 5,
        lambda s: (s[0],),
        lambda s: (s[0][:, :-1], s[1]),
        lambda s: (s[0] * np.nan, s[1]),
        lambda s: [s[0], s[1], s[0]],
        lambda s: (s[0].astype(object), s[1]),
    ],
    "targets": [
        lambda y: y[:-1],
        lambda y: y * np.inf,
        lambda y: y[..., None],
        lambda y: "targets",
    ],
    "mask": [
        lambda m: -m,
        lambda m: m * 0,
        lambda m: m[:-1],
        lambda m: [[1, 2], [3]],
        lambda m: m * np.nan,
        lambda m: m * 1e308,
    ],
}


def _problem(data):
    T = data.draw(st.integers(1, 5), label="T")
    B = data.draw(st.integers(1, 3), label="B")
    D = data.draw(st.integers(1, 3), label="D")
    H = data.draw(st.integers(1, 4), label="H")
    O = data.draw(st.integers(1, 2), label="O")
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    params = lstm_ag.init_params(D, H, O, dtype=dtype, seed=int(rng.integers(100)))
    args = {"params": params, "xs": rng.standard_normal((T, B, D)),
            "state": (rng.standard_normal((B, H)), rng.standard_normal((B, H))),
            "targets": rng.standard_normal((T, B, O)), "mask": rng.uniform(0.1, 1, (T, B))}
    return args, (T, B, D, H, O)


def _call(name, args, sizes):
    T, B, D, H, O = sizes
    p, xs, state, ys, mask = (args[k] for k in ("params", "xs", "state", "targets", "mask"))
    if name == "lstm_forward":
        hs, (h, c) = lstm_ag.lstm_forward(p, xs, state)
        return [hs, h, c], [(T, B, H), (B, H), (B, H)]
    if name == "predict":
        return [lstm_ag.predict(p, xs, state)], [(T, B, O)]
    if name == "forecast":
        return [lstm_ag.forecast(p, xs, 2, state)], [(2, B, O)]
    if name == "mse":
        return [lstm_ag.mse(p, xs, ys, state, mask=mask)], [()]
    if name.startswith("value_and_grad"):
        loss, grads = lstm_ag.value_and_grad(p, xs, ys, state, mask=mask,
                                             method=name.split(":")[1])
        return [loss, *grads.values()], [(), *(np.shape(v) for v in p.values())]
    raise AssertionError(name)


FUNCTIONS = ["lstm_forward", "predict", "forecast", "mse", "value_and_grad:fast",
             "value_and_grad:bptt", "value_and_grad:autograd"]


def _fuzz(data):
    args, sizes = _problem(data)
    target = data.draw(st.sampled_from([*sorted(MUTATIONS), "none"]), label="argument")
    if target != "none":
        mutate = data.draw(st.sampled_from(MUTATIONS[target]), label="mutation")
        args[target] = mutate(args[target])
    function = data.draw(st.sampled_from(FUNCTIONS), label="function")
    try:
        results, shapes = _call(function, args, sizes)
    except (ValueError, TypeError) as err:
        assert not isinstance(err, Warning), err
        message = str(err)
        assert any(name in message for name in NAMES), f"unnamed error: {message}"
        return "error"
    for value, shape in zip(results, shapes, strict=True):
        value = np.asarray(value)
        assert value.shape == shape, (function, value.shape, shape)
        assert np.all(np.isfinite(value)), f"non-finite result from {function} ({target})"
    return "result"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_public_api_answers_with_a_result_or_a_named_error(data):
    _fuzz(data)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_public_api_fuzz_long(data):
    _fuzz(data)


@pytest.mark.parametrize("call, match", [
    (lambda: lstm_ag.init_params(2, 3, seed=-1), "seed"),
    (lambda: lstm_ag.init_params(2, 3, seed="a"), "seed"),
    (lambda: lstm_ag.init_params(2, 3, dtype="foo"), "dtype"),
    (lambda: lstm_ag.init_params(2, 3, forget_bias=[1, 2]), "forget_bias"),
    (lambda: lstm_ag.init_params(2, 3, forget_bias=None), "forget_bias"),
    (lambda: lstm_ag.init_params(2, 10**20), "more than this machine"),
    (lambda: lstm_ag.init_params(0, 3), "input_size"),
    (lambda: lstm_ag.check_gradients(lstm_ag.init_params(1, 2, 1), np.ones((2, 1)),
                                     np.ones((2, 1)), tolerances=1e-3), "tolerances"),
    (lambda: lstm_ag.check_gradients(lstm_ag.init_params(1, 2, 1), np.ones((2, 1)),
                                     np.ones((2, 1)), fd_samples=-1), "fd_samples"),
    (lambda: lstm_ag.check_gradients(lstm_ag.init_params(1, 2, 1), np.ones((2, 1)),
                                     np.ones((2, 1)), state=5), "state"),
    (lambda: lstm_ag.check_gradients(lstm_ag.init_params(1, 2, 1), np.ones((2, 1)),
                                     np.ones((2, 1)), backward=1), "backward"),
    (lambda: lstm_ag.layouts.from_keras(np.zeros((0, 12)), np.zeros((3, 12))), "kernel"),
])
def test_secondary_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_a_huge_mask_equals_the_all_ones_mask():
    params = lstm_ag.init_params(2, 3, 1, seed=0)
    xs, ys = np.ones((4, 2)), np.zeros((4, 1))
    plain = lstm_ag.mse(params, xs, ys)
    assert lstm_ag.mse(params, xs, ys, mask=np.full(4, 1e308)) == pytest.approx(plain, rel=1e-15)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    assert np.isfinite(lstm_ag.mse(p32, xs, ys, mask=np.full(4, 1e300)))
