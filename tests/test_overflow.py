"""Finite inputs that overflow: a named error, never inf and a RuntimeWarning (issue 22, item
6), in every public function and every method; the layout converters name the user's own keys
(``weight_hh_l0``, ``kernel``, ``U['f']``), never the converted ``params['Wh']``."""
import numpy as np
import pytest

import lstm_ag
from lstm_ag import FloatOverflowError, layouts

METHODS = ["fast", "bptt", "autograd"]


def _problem(dtype=np.float64):
    params = lstm_ag.init_params(2, 3, 1, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    return params, rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 1))


def _loss_calls(method):
    if method == "bptt":
        return [lambda p, x, y: lstm_ag.value_and_grad(p, x, y, method="bptt")]
    return [lambda p, x, y: lstm_ag.mse(p, x, y, method=method),
            lambda p, x, y: lstm_ag.value_and_grad(p, x, y, method=method)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case, what", [
    ("targets + 1e200", "targets"), ("targets * 1e300", "targets"),
    ("by + 1e200", "params['by']"), ("by + 1e300", "params['by']"),
    ("Wy = 1e200", "params['Wy']"), ("Wy = 1e308", "params['Wy']")])
def test_an_overflowing_loss_is_a_named_error(method, case, what):
    params, xs, ys = _problem()
    if case.startswith("targets"):
        ys = ys + 1e200 if "+" in case else ys * 1e300
    elif case.startswith("by"):
        params["by"] = params["by"] + float(case.split("+ ")[1])
    else:
        params["Wy"] = np.full_like(params["Wy"], float(case.split("= ")[1]))
    for call in _loss_calls(method):
        with pytest.raises(FloatOverflowError) as caught:      # pytest: warnings are errors
            call(params, xs, ys)
        message = str(caught.value)
        assert "finite inputs overflow float64 (largest 1.8e+308) in the squared errors" \
            in message and what in message, message
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, OverflowError)


def test_the_mse_of_float32_overflows_by_name():
    params, xs, ys = _problem(np.float32)
    with pytest.raises(FloatOverflowError, match=r"overflow float32 .* in the squared errors"):
        lstm_ag.mse(params, xs, ys + np.float32(1e30))


def test_the_sum_of_squares_overflowing_is_named():
    params, xs, ys = _problem()
    big = ys * 0 + 1e153                 # each square ~1e306, finite; their sum is not
    with pytest.raises(FloatOverflowError, match="in the sum of the squared errors"):
        lstm_ag.mse(params, np.repeat(xs, 50, axis=1), np.repeat(big, 50, axis=1))


def test_predictions_that_overflow_are_named():
    params, xs, _ = _problem()
    params["Wy"] = np.full_like(params["Wy"], 1.7e308)
    params["by"] = params["by"] + 1.7e308
    with pytest.raises(FloatOverflowError, match=r"in the predictions hs @ Wy \+ by "
                                                 r"\(\|params\['Wy'\]\| up to 1.7e\+308"):
        lstm_ag.predict(params, xs)
    single = lstm_ag.init_params(1, 3, 1, seed=0)
    single["Wy"] = np.full_like(single["Wy"], 1.7e308)
    single["by"] = single["by"] + 1.7e308
    with pytest.raises(FloatOverflowError, match=r"forecast \(step 1 of 3\).*in the predict"):
        lstm_ag.forecast(single, np.ones((3, 1)), 3)


def test_saturated_gates_are_a_finite_result_not_an_error():
    # Huge weights overflow the pre-activations to +-inf, where the gates are exactly 0 or 1:
    # the forward's result is finite (and right), and no warning escapes.
    params, xs, ys = _problem()
    params["Wx"] = np.where(params["Wx"] > 0, 1.7e308, -1.7e308)
    hs, (h, c) = lstm_ag.lstm_forward(params, np.abs(xs) + 1)
    assert np.isfinite(hs).all() and np.isfinite(h).all() and np.isfinite(c).all()


@pytest.mark.parametrize("method", METHODS)
def test_a_gradient_that_overflows_is_named(method):
    # Tiny hidden states, a huge readout: the loss (~1e302) is finite, the gradient reaching
    # the LSTM's weights (the errors times Wy, ~1e310) is not.
    params = lstm_ag.init_params(2, 3, 1, seed=0)
    params.update(Wx=params["Wx"] * 1e-3, Wh=params["Wh"] * 1e-3, b=params["b"] * 0,
                  Wy=np.full((3, 1), 1e158), by=np.zeros(1))
    xs, ys = np.full((4, 1, 2), 1e-3), np.zeros((4, 1, 1))
    assert np.isfinite(lstm_ag.mse(params, xs, ys, method="autograd" if method == "bptt"
                                   else method))
    with pytest.raises(FloatOverflowError, match=r"in the gradient \(grads\['Wh'\], "
                                                 r"grads\['Wx'\], grads\['b'\] not finite"):
        lstm_ag.value_and_grad(params, xs, ys, method=method)


def test_inputs_that_do_not_overflow_are_untouched():
    params, xs, ys = _problem()
    loss, grads = lstm_ag.value_and_grad(params, xs, ys + 1e100)
    assert np.isfinite(loss) and loss > 1e199


# ----------------------------------------------------------------------------- layouts

def _nan(array):
    array = np.array(array, dtype=np.float64)
    array.flat[0] = np.nan
    return array


def _torch_dicts():
    lstm, linear = layouts.to_torch(lstm_ag.init_params(2, 3, 1, seed=0), linear=True)
    return {k: np.asarray(v) for k, v in lstm.items()}, {k: np.asarray(v) for k, v in
                                                          linear.items()}


@pytest.mark.parametrize("key", ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"])
def test_from_torch_names_the_state_dict_key(key):
    state, linear = _torch_dicts()
    with pytest.raises(ValueError, match=rf"^state_dict\['{key}'\] contains NaN"):
        layouts.from_torch({**state, key: _nan(state[key])}, linear)


@pytest.mark.parametrize("key", ["weight", "bias"])
def test_from_torch_names_the_linear_key(key):
    state, linear = _torch_dicts()
    with pytest.raises(ValueError, match=rf"^linear\['{key}'\] contains NaN"):
        layouts.from_torch(state, {**linear, key: _nan(linear[key])})


def test_from_torch_names_an_empty_input_size():
    state, _ = _torch_dicts()
    with pytest.raises(ValueError, match=r"^state_dict\['weight_ih_l0'\] has shape \(12, 0\): "
                                         "D must be at least 1"):
        layouts.from_torch({**state, "weight_ih_l0": np.zeros((12, 0))})


@pytest.mark.parametrize("key", ["kernel", "recurrent_kernel", "bias", "Wy", "by"])
def test_from_keras_names_its_arguments(key):
    weights = layouts.to_keras(lstm_ag.init_params(2, 3, 1, seed=0))
    with pytest.raises(ValueError, match=rf"^{key} contains NaN"):
        layouts.from_keras(**{**weights, key: _nan(weights[key])})
    with pytest.raises(ValueError, match=r"^kernel has shape \(0, 12\): D must be at least 1"):
        layouts.from_keras(np.zeros((0, 12)), weights["recurrent_kernel"])


@pytest.mark.parametrize("top", ["W", "U", "b"])
@pytest.mark.parametrize("gate", ["i", "f", "g", "o"])
def test_from_split_names_the_gate(top, gate):
    weights = layouts.to_split(lstm_ag.init_params(2, 3, 1, seed=0))
    changed = {**weights[top], gate: _nan(weights[top][gate])}
    with pytest.raises(ValueError, match=rf"^{top}\['{gate}'\] contains NaN"):
        layouts.from_split(**{**weights, top: changed})


@pytest.mark.parametrize("top", ["W", "b"])
def test_from_concat_names_the_gate(top):
    weights = layouts.to_concat(lstm_ag.init_params(2, 3, 1, seed=0))
    changed = {**weights[top], "f": _nan(weights[top]["f"])}
    with pytest.raises(ValueError, match=rf"^{top}\['f'\] contains NaN"):
        layouts.from_concat(**{**weights, top: changed})


def test_float32_overflow_names_the_user_s_array():
    weights = layouts.to_keras(lstm_ag.init_params(2, 3, seed=0, dtype=np.float32))
    bias = weights["bias"].astype(np.float64) + 1e300
    with pytest.raises(ValueError, match=r"^bias has finite values up to 1e\+300, which "
                                         "overflow float32"):
        layouts.from_keras(weights["kernel"], weights["recurrent_kernel"], bias)


def test_no_converter_error_names_a_converted_key():
    state, linear = _torch_dicts()
    weights = layouts.to_split(lstm_ag.init_params(2, 3, 1, seed=0))
    calls = [lambda: layouts.from_torch({**state, "weight_hh_l0": _nan(state["weight_hh_l0"])}),
             lambda: layouts.from_split(**{**weights, "U": {**weights["U"],
                                                            "o": _nan(weights["U"]["o"])}}),
             lambda: layouts.from_keras(np.zeros((2, 12)), _nan(np.zeros((3, 12))))]
    for call in calls:
        with pytest.raises(ValueError) as caught:
            call()
        assert "params[" not in str(caught.value), caught.value
