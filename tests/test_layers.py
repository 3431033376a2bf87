"""Stacked layers, bidirectional models and variable lengths, without PyTorch.

The oracles here: autograd tracing the Python forward step by step (``method="autograd"``),
central finite differences, and each sequence run alone (lengths). PyTorch's own numbers are
in tests/test_layers_torch.py.
"""
import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerance import assert_close, rounding

import lstm_ag
from lstm_ag.params import flatten, init_params, structure, unflatten

STRUCTURES = [(1, False), (2, False), (1, True), (3, True)]
LENGTHS = {3: np.array([6, 1, 4])}


def problem(num_layers, bidirectional, *, T=6, B=3, D=2, H=4, O=2, seed=0, state=True):
    rng = np.random.default_rng(seed)
    params = init_params(D, H, O, num_layers=num_layers, bidirectional=bidirectional,
                         seed=seed)
    K = num_layers * (2 if bidirectional else 1)
    shape = (B, H) if K == 1 else (K, B, H)
    st_ = (rng.standard_normal(shape), rng.standard_normal(shape)) if state else None
    return params, rng.standard_normal((T, B, D)), rng.standard_normal((T, B, O)), st_


def max_rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("num_layers, bidirectional", STRUCTURES)
@pytest.mark.parametrize("lengths", [None, LENGTHS[3]], ids=["full", "lengths"])
def test_three_methods_agree(num_layers, bidirectional, lengths):
    params, xs, ys, state = problem(num_layers, bidirectional)
    results = {m: lstm_ag.value_and_grad(params, xs, ys, state, method=m, lengths=lengths,
                                         return_state=True) for m in lstm_ag.METHODS}
    loss, grads, (h, c) = results["autograd"]
    assert sorted(flatten(grads)) == sorted(flatten(params))
    for method in ("fast", "bptt"):
        other_loss, other, (oh, oc) = results[method]
        assert abs(other_loss - loss) <= 1e-12 * abs(loss)
        for name, value in flatten(grads).items():
            assert max_rel(flatten(other)[name], value) <= 1e-10, (method, name)
        np.testing.assert_array_equal(oh, h)
        np.testing.assert_array_equal(oc, c)
    hs, (fh, fc) = lstm_ag.lstm_forward(params, xs, state, lengths=lengths)
    # each layer sums D + H + 1 (or 2H + H + 1 above) products a row, T = 6 steps, 3 layers
    ROUND = rounding(terms=3 * (2 * 4 + 4 + 1), steps=6)
    assert_close(fh, h, ROUND)
    assert_close(fc, c, ROUND)


@pytest.mark.parametrize("num_layers, bidirectional", STRUCTURES)
@pytest.mark.parametrize("lengths", [None, LENGTHS[3]], ids=["full", "lengths"])
def test_fast_path_is_autograd_for_any_loss_of_outputs_and_state(num_layers, bidirectional,
                                                                   lengths):
    """Gradients through every output (hidden states, final h and c) and every input
    (weights, xs, the initial state) of lstm_forward, fast against traced."""
    params, xs, _, state = problem(num_layers, bidirectional, seed=1)
    rng = np.random.default_rng(2)
    hs, (h, c) = lstm_ag.lstm_forward(params, xs, state, lengths=lengths)
    W, U, V = rng.standard_normal(hs.shape), rng.standard_normal(h.shape), \
        rng.standard_normal(c.shape)

    def objective(p, x, s, method):
        hs, (h, c) = lstm_ag.lstm_forward(p, x, s, lengths=lengths, method=method)
        return anp.sum(hs * W) + anp.sum(h * U) + anp.sum(c * V)
    ref = autograd.grad(objective, argnum=(0, 1, 2))(params, xs, state, "autograd")
    fast = autograd.grad(objective, argnum=(0, 1, 2))(params, xs, state, "fast")
    for name, value in flatten(ref[0]).items():
        assert max_rel(flatten(fast[0])[name], value) <= 1e-10, name
    assert max_rel(fast[1], ref[1]) <= 1e-10
    for got, want in zip(fast[2], ref[2], strict=True):
        assert max_rel(got, want) <= 1e-10
    if lengths is not None:            # the padding reaches nothing
        assert not fast[1][1:, 1].any() and not fast[1][4:, 2].any()


@pytest.mark.parametrize("num_layers, bidirectional", STRUCTURES[1:])
@pytest.mark.parametrize("method", lstm_ag.METHODS)
def test_gradients_match_finite_differences(num_layers, bidirectional, method):
    params, xs, ys, state = problem(num_layers, bidirectional, T=5, H=3, seed=4)
    lengths = np.array([5, 2, 3])
    mask = np.random.default_rng(5).uniform(0.5, 1.5, (5, 3))
    _, grads = lstm_ag.value_and_grad(params, xs, ys, state, method=method, mask=mask,
                                      lengths=lengths)
    flat, g = flatten(params), flatten(grads)
    rng = np.random.default_rng(6)
    eps = 1e-6
    for name in flat:
        for _ in range(2):
            index = tuple(int(rng.integers(n)) for n in flat[name].shape)
            losses = []
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in flat.items()}
                moved[name][index] += sign * eps
                losses.append(lstm_ag.mse(unflatten(moved), xs, ys, state, mask=mask,
                                          lengths=lengths))
            numeric = (losses[0] - losses[1]) / (2 * eps)
            assert abs(numeric - g[name][index]) <= 1e-7 + 1e-5 * abs(numeric), (name, index)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), num_layers=st.integers(1, 2), bidirectional=st.booleans(),
       B=st.integers(1, 4), T=st.integers(1, 7))
def test_lengths_equal_each_sequence_run_alone(data, num_layers, bidirectional, B, T):
    lengths = np.array(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    params, xs, ys, state = problem(num_layers, bidirectional, T=T, B=B, H=3, O=1,
                                    seed=data.draw(st.integers(0, 100)))
    K = num_layers * (2 if bidirectional else 1)
    hs, (h, c) = lstm_ag.lstm_forward(params, xs, state, lengths=lengths)
    ys_pred = lstm_ag.predict(params, xs, state, lengths=lengths)
    loss = lstm_ag.mse(params, xs, ys, state, lengths=lengths)
    squared, count = 0.0, 0
    ROUND = rounding(terms=num_layers * (2 * 3 + 3 + 1) + 3, steps=T)   # H = 3, O = 1
    for b, n in enumerate(lengths):
        alone = None if state is None else tuple(s[..., b, :] for s in state)
        hs_b, (h_b, c_b) = lstm_ag.lstm_forward(params, xs[:n, b], alone)
        assert_close(hs[:n, b], hs_b, ROUND)
        assert not hs[n:, b].any()                        # zero past the length
        assert_close(h[..., b, :] if K > 1 else h[b], h_b, ROUND)
        assert_close(c[..., b, :] if K > 1 else c[b], c_b, ROUND)
        pred_b = lstm_ag.predict(params, xs[:n, b], alone)
        assert_close(ys_pred[:n, b], pred_b, ROUND)
        squared += np.sum((pred_b - ys[:n, b]) ** 2)
        count += n
    np.testing.assert_allclose(loss, squared / count, rtol=1e-12)


def test_one_layer_one_direction_keeps_todays_dict_and_numbers():
    old = lstm_ag.init_params(3, 5, 2, seed=7)
    assert sorted(old) == ["Wh", "Wx", "Wy", "b", "by"]
    stacked = lstm_ag.init_params(3, 5, 2, seed=7, num_layers=2)
    np.testing.assert_array_equal(stacked["Wx"], old["Wx"])      # layer 0 drawn first
    np.testing.assert_array_equal(stacked["Wh"], old["Wh"])
    np.testing.assert_array_equal(stacked["Wy"], old["Wy"])
    assert structure(stacked) == (2, 1) and structure(old) == (1, 1)
    bi = lstm_ag.init_params(3, 5, 2, bidirectional=True, num_layers=2)
    assert bi["Wy"].shape == (10, 2) and bi["layers"][0]["Wx"].shape == (10, 20)
    assert bi["layers"][0]["reverse"]["b"][5:10].tolist() == [1.0] * 5     # forget bias


def test_flatten_names_round_trip():
    params = lstm_ag.init_params(2, 3, 1, num_layers=3, bidirectional=True)
    flat = flatten(params)
    assert "layers.1.reverse.Wh" in flat and "reverse.b" in flat
    again = unflatten(flat)
    assert flatten(again).keys() == flat.keys()
    assert all(flatten(again)[k] is v for k, v in flat.items())


def test_forecast_with_layers_feeds_back_through_every_layer():
    params, xs, _, _ = problem(2, False, D=2, O=2, seed=3)
    ys = lstm_ag.forecast(params, xs, 3)
    # by hand: the predictions after the history, fed back one at a time with the state
    pred, state = lstm_ag.predict(params, xs, return_state=True)
    want = [pred[-1]]
    for _ in range(2):
        pred, state = lstm_ag.predict(params, want[-1][None], state, return_state=True)
        want.append(pred[-1])
    assert_close(ys, np.stack(want), rounding(terms=2 * (2 * 4 + 4 + 1) + 4, steps=6 + 3))
    lengths = np.array([6, 2, 4])
    short = lstm_ag.forecast(params, xs, 2, lengths=lengths)
    assert_close(short[:, 1], lstm_ag.forecast(params, xs[:2, 1], 2),
                 rounding(terms=2 * (2 * 4 + 4 + 1) + 4, steps=2 + 2))


def test_forecast_refuses_a_bidirectional_model():
    params, xs, _, _ = problem(1, True, O=2)
    with pytest.raises(ValueError, match="bidirectional"):
        lstm_ag.forecast(params, xs, 2)


@pytest.mark.parametrize("lengths, error, match", [
    ([6, 0, 3], ValueError, r"lengths must lie in \[1, T\] = \[1, 6\].*lengths\[1\] = 0"),
    ([6, 7, 3], ValueError, r"lengths\[1\] = 7"),
    ([6, 3], ValueError, r"lengths must have shape \(B,\) = \(3,\)"),
    ([6, 2.5, 3], TypeError, "whole numbers"),
    (True, TypeError, "lengths must be integers"),
    ("abc", TypeError, "lengths"),
])
def test_bad_lengths_are_refused_by_name(lengths, error, match):
    params, xs, ys, _ = problem(1, False)
    with pytest.raises(error, match=match):
        lstm_ag.lstm_forward(params, xs, lengths=lengths)
    with pytest.raises(error, match=match):
        lstm_ag.value_and_grad(params, xs, ys, lengths=lengths, method="bptt")


def test_state_of_a_stacked_model_has_pytorchs_layout():
    params, xs, _, _ = problem(2, True)
    with pytest.raises(ValueError, match=r"\(layers \* directions, B, H\) = \(4, 3, 4\)"):
        lstm_ag.lstm_forward(params, xs, (np.zeros((3, 4)), np.zeros((3, 4))))
    hs, (h, c) = lstm_ag.lstm_forward(params, xs[:, 0])               # one sequence
    assert hs.shape == (6, 8) and h.shape == (4, 4)
    hs_b, (h_b, _) = lstm_ag.lstm_forward(params, xs[:, :1])
    np.testing.assert_array_equal(h_b[:, 0], h)


def test_mask_that_is_zero_on_every_valid_step_is_refused():
    params, xs, ys, _ = problem(1, False)
    mask = np.zeros((6, 3))
    mask[5] = 1                                   # only the padding of sequences 1 and 2
    with pytest.raises(ValueError, match="within lengths"):
        lstm_ag.mse(params, xs, ys, mask=mask * np.array([0, 1, 1]), lengths=[5, 1, 4])


def test_full_lengths_are_the_run_without_lengths():
    params, xs, ys, state = problem(2, True)
    a = lstm_ag.value_and_grad(params, xs, ys, state, lengths=[6, 6, 6])
    b = lstm_ag.value_and_grad(params, xs, ys, state)
    assert a[0] == b[0]
    for name, value in flatten(b[1]).items():
        np.testing.assert_array_equal(flatten(a[1])[name], value)


def test_nested_params_are_validated_by_path():
    params = lstm_ag.init_params(2, 3, 1, num_layers=2, bidirectional=True)
    params["layers"][0]["reverse"]["Wh"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"params\['layers'\]\[0\]\['reverse'\]\['Wh'\] must "
                                         r"have shape \(3, 12\)"):
        lstm_ag.lstm_forward(params, np.zeros((4, 2)))
    del params["reverse"]
    with pytest.raises(ValueError, match="every layer has the same directions"):
        lstm_ag.check_params(params)


def test_the_library_pages_layers_example_prints_what_it_shows():
    import contextlib
    import io
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "library.md").read_text()
    code, shown = re.search(r"```python\n(import numpy as np\nimport lstm_ag\n\nparams = "
                            r"lstm_ag\.init_params\(2, 8, 1, num_layers=2.*?)```\n\n```\n(.*?)```",
                            text, re.S).groups()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/library.md", "exec"), {})
    assert out.getvalue() == shown


def test_forward_cache_keeps_the_activations_of_any_layer_and_direction():
    params, xs, _, state = problem(2, True, seed=8)
    lengths = np.array([6, 3, 5])
    hs, _ = lstm_ag.lstm_forward(params, xs, state, lengths=lengths)
    top = lstm_ag.forward_cache(params, xs, state, lengths=lengths)
    np.testing.assert_array_equal(top.hs, hs[..., :4])
    reverse = lstm_ag.forward_cache(params, xs, state, lengths=lengths, direction="reverse")
    for b, n in enumerate(lengths):                   # in reversed time within each length
        np.testing.assert_array_equal(reverse.hs[:n, b][::-1], hs[:n, b, 4:])
    bottom = lstm_ag.forward_cache(params, xs, state, layer=0)
    np.testing.assert_array_equal(bottom.Wh, params["Wh"])
    with pytest.raises(ValueError, match=r"layer must be an integer in \[-2, 1\]"):
        lstm_ag.forward_cache(params, xs, layer=2)
    with pytest.raises(ValueError, match="direction must be 'forward' \\(one direction\\)"):
        lstm_ag.forward_cache(problem(2, False)[0], xs, direction="reverse")
