"""The forward: shapes, conventions, the sigmoid primitive, autograd in both modes, errors."""
import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.test_util import check_grads
from numpy.testing import assert_allclose
from tolerance import assert_close, rounding

import lstm_ag
from lstm_ag.cell import SequenceCache
from lstm_ag.ops import sigmoid, tanh
from lstm_ag.vjps import as_traced_dict


def test_exact_parameter_shapes():
    params = lstm_ag.init_params(3, 5, 2)
    assert {k: v.shape for k, v in params.items()} == {
        "Wx": (3, 20), "Wh": (5, 20), "b": (20,), "Wy": (5, 2), "by": (2,)}
    assert {k: v.shape for k, v in lstm_ag.init_params(3, 5).items()} == {
        "Wx": (3, 20), "Wh": (5, 20), "b": (20,)}
    assert lstm_ag.param_shapes(3, 5, 2) == {k: v.shape for k, v in params.items()}


def test_init_is_seeded_pytorch_uniform_with_forget_bias():
    a, b = lstm_ag.init_params(4, 8, 1, seed=3), lstm_ag.init_params(4, 8, 1, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["Wx"], lstm_ag.init_params(4, 8, 1, seed=4)["Wx"])
    k = 1 / np.sqrt(8)
    assert np.all(np.abs(a["Wh"]) <= k) and np.abs(a["Wh"]).max() > 0.8 * k
    assert np.all(a["b"][8:16] == 1.0) and np.all(a["b"][:8] == 0) and np.all(a["b"][16:] == 0)
    assert np.all(lstm_ag.init_params(4, 8, forget_bias=0.0)["b"] == 0)
    state = np.random.get_state()[1].copy()
    lstm_ag.init_params(4, 8, seed=1)
    assert np.array_equal(np.random.get_state()[1], state)      # global RNG untouched


def test_float32_is_kept():
    params = lstm_ag.init_params(2, 3, 1, dtype=np.float32)
    assert all(v.dtype == np.float32 for v in params.values())
    hs, (h, c) = lstm_ag.lstm_forward(params, np.ones((4, 2, 2)))
    assert hs.dtype == h.dtype == c.dtype == np.float32
    assert lstm_ag.predict(params, np.ones((4, 2))).dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        lstm_ag.init_params(2, 3, dtype=np.int32)


# D = 3, H = 4, T = 5: one step sums D + H + 1 products a row
ROUND_5x8 = rounding(terms=3 + 4 + 1, steps=5)


def test_shapes_batched_single_and_list():
    params = lstm_ag.init_params(3, 4, 2, seed=1)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((5, 2, 3))
    hs, (h, c) = lstm_ag.lstm_forward(params, xs)
    assert hs.shape == (5, 2, 4) and h.shape == c.shape == (2, 4)
    assert lstm_ag.predict(params, xs).shape == (5, 2, 2)
    one, (h1, c1) = lstm_ag.lstm_forward(params, xs[:, 0])
    assert one.shape == (5, 4) and h1.shape == c1.shape == (4,)
    assert_close(one, hs[:, 0], ROUND_5x8)                  # batch rows are independent
    as_list, _ = lstm_ag.lstm_forward(params, list(xs[:, 1]))
    assert_close(as_list, hs[:, 1], ROUND_5x8)
    assert np.array_equal(h, hs[-1])


def test_state_continues_a_sequence():
    params = lstm_ag.init_params(2, 3, seed=2)
    xs = np.random.default_rng(1).standard_normal((8, 2, 2))
    hs, _ = lstm_ag.lstm_forward(params, xs)
    first, state = lstm_ag.lstm_forward(params, xs[:3])
    rest, _ = lstm_ag.lstm_forward(params, xs[3:], state)
    assert_close(np.concatenate([first, rest]), hs, rounding(terms=2 + 3 + 1, steps=8))


def test_the_three_loops_give_the_same_loss():
    # Three different loops run the one step: the plain scan (nothing traced), the traced
    # scan (autograd records every step) and the cached scan of the fast path and the BPTT.
    params = lstm_ag.init_params(2, 3, 1, seed=2)
    rng = np.random.default_rng(1)
    xs, ys = rng.standard_normal((6, 2, 2)), rng.standard_normal((6, 2, 1))
    plain = lstm_ag.mse(params, xs, ys)
    for method in lstm_ag.METHODS:
        loss, _ = lstm_ag.value_and_grad(params, xs, ys, method=method)
        assert_allclose(loss, plain, rtol=rounding(terms=2 + 3 + 1, steps=6), err_msg=method)
    traced = autograd.value_and_grad(lambda p: anp.sum(lstm_ag.predict(p, xs)))(params)[0]
    assert_allclose(traced, np.sum(lstm_ag.predict(params, xs)),
                    rtol=rounding(terms=2 + 3 + 1, steps=6))
    cache = lstm_ag.forward_cache(params, xs)
    assert_close(cache.hs, lstm_ag.lstm_forward(params, xs)[0], rounding(terms=2 + 3 + 1, steps=6))


def test_sequence_cache_views_and_the_link_from_its_output():
    params = lstm_ag.init_params(2, 3, seed=1)
    xs = np.random.default_rng(0).standard_normal((4, 2, 2))
    cache = lstm_ag.forward_cache(params, xs)
    assert cache.h.shape == cache.c.shape == (5, 2, 3)
    for name in ("hs", "h_prev", "c_prev", "i", "f", "g", "o", "tanh_c"):
        view = getattr(cache, name)
        assert view.shape == (4, 2, 3) and view.base is cache.store, name
    assert np.array_equal(cache.h_prev[1:], cache.hs[:-1])
    assert np.array_equal(cache.tanh_c, np.tanh(cache.c[1:]))
    again = SequenceCache.of_hidden_states(cache.hs, xs, params["Wx"], params["Wh"])
    assert again.store is cache.store
    for not_a_view in (cache.hs.copy(), cache.h, cache.store[1, 1:], np.zeros((4, 2, 3))):
        with pytest.raises(ValueError, match="not the hidden states of a SequenceCache"):
            SequenceCache.of_hidden_states(not_a_view, xs, params["Wx"], params["Wh"])
    with pytest.raises(ValueError, match=r"store must have shape \(7, T \+ 1, B, H\)"):
        SequenceCache(xs, params["Wx"], params["Wh"], cache.store[:, 1:])


def test_a_dict_of_traced_arrays_takes_the_fast_path(monkeypatch):
    # A user's loss that builds the params dict from traced pieces: autograd sees a plain
    # dict of boxes, which as_traced_dict records as one traced dict for the primitive.
    params = lstm_ag.init_params(2, 3, 1, seed=3)
    rng = np.random.default_rng(5)
    xs, ys = rng.standard_normal((5, 2, 2)), rng.standard_normal((5, 2, 1))
    assert as_traced_dict(params) is params                      # nothing traced: untouched

    def loss(Wh, method):
        return lstm_ag.mse({**params, "Wh": 2 * Wh}, xs, ys, method=method)
    import lstm_ag.vjps as vjps
    calls, right = [], vjps.lstm_backward
    monkeypatch.setattr(vjps, "lstm_backward", lambda *a, **k: calls.append(1) or right(*a, **k))
    g_fast = autograd.grad(loss)(params["Wh"], "fast")
    assert calls == [1]
    g_traced = autograd.grad(loss)(params["Wh"], "autograd")
    assert calls == [1]
    assert_close(g_fast, g_traced, rtol=1e-10)
    _, grads = lstm_ag.value_and_grad({**params, "Wh": 2 * params["Wh"]}, xs, ys, method="bptt")
    assert_allclose(g_fast, 2 * grads["Wh"], rtol=1e-12)


@pytest.mark.parametrize("method", lstm_ag.METHODS)
def test_saturated_weights_give_no_warning(method):
    # autograd's own tanh VJP, g / cosh(x)**2, overflows in cosh for |x| > 710: ours uses the
    # output, 1 - tanh**2. pytest turns any warning into an error (filterwarnings = error).
    params = {k: v * 1e4 for k, v in lstm_ag.init_params(3, 5, 2, seed=0).items()}
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 2))
    loss, grads = lstm_ag.value_and_grad(params, xs, ys, method=method)
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())
    report = lstm_ag.check_gradients(params, xs, ys)
    assert all(np.isfinite(r.rel_autograd) for r in report.rows)


def test_mse_is_the_mean_over_every_element():
    params = lstm_ag.init_params(2, 3, 2, seed=5)
    rng = np.random.default_rng(2)
    xs, ys = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    assert_allclose(lstm_ag.mse(params, xs, ys), np.mean((lstm_ag.predict(params, xs) - ys) ** 2))


def test_tanh_derivative_comes_from_its_output_without_overflow():
    x = np.array([-1000.0, -30.0, -0.5, 0.0, 2.0, 1000.0])
    y = tanh(x)
    g = autograd.elementwise_grad(tanh)(x)
    _, jvp = autograd.make_jvp(tanh)(x)(np.ones_like(x))
    assert np.array_equal(y, np.tanh(x))
    assert np.array_equal(g, 1 - y * y) and np.array_equal(g, jvp)
    assert g[0] == 0.0 and g[-1] == 0.0
    assert tanh(np.float32(2.0)).dtype == np.float32
    check_grads(tanh, modes=["fwd", "rev"], order=3)(np.linspace(-3, 3, 7))


def test_sigmoid_is_stable_with_finite_gradients_in_both_modes():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sigmoid(x)
        g = autograd.elementwise_grad(sigmoid)(x)
        _, jvp = autograd.make_jvp(sigmoid)(x)(np.ones_like(x))
    assert_allclose(y, [0.0, 9.357622968840175e-14, 0.5, 1 - 9.357622968840175e-14, 1.0])
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(jvp))
    assert_allclose(g, y * (1 - y)) and np.array_equal(g, jvp)
    assert sigmoid(np.float32(2.0)).dtype == np.float32
    check_grads(sigmoid, modes=["fwd", "rev"], order=3)(np.linspace(-4, 4, 7))


@pytest.mark.parametrize("method", ["autograd", "fast"])
def test_check_grads_forward_and_reverse_mode_to_second_order(method):
    params = lstm_ag.init_params(2, 3, 2, seed=4)
    rng = np.random.default_rng(3)
    xs, ys = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    state = tuple(rng.standard_normal((2, 3)) for _ in range(2))
    check_grads(lambda p: lstm_ag.mse(p, xs, ys, state, method=method),
                modes=["fwd", "rev"], order=2)(params)
    check_grads(lambda x, h: lstm_ag.mse(params, x, ys, (h, state[1]), method=method),
                modes=["fwd", "rev"], order=2)(xs, state[0])


def test_grad_of_a_user_loss_on_lstm_forward_uses_the_fast_path(monkeypatch):
    params = lstm_ag.init_params(2, 3, seed=6)
    xs = np.random.default_rng(4).standard_normal((5, 2))

    def loss(p, method):
        hs, (h, c) = lstm_ag.lstm_forward(p, xs, method=method)
        return anp.sum(anp.sin(hs)) + anp.sum(c ** 2)
    calls = []
    import lstm_ag.vjps as fast
    right = fast.lstm_backward
    monkeypatch.setattr(fast, "lstm_backward", lambda *a, **k: calls.append(1) or right(*a, **k))
    g_fast = autograd.grad(loss)(params, "fast")
    assert calls == [1]                                   # the hand BPTT ran, once
    g_traced = autograd.grad(loss)(params, "autograd")
    for k in g_traced:
        assert_close(g_fast[k], g_traced[k], rtol=1e-10)


# ---------------------------------------------------------------- bad input, named errors


@pytest.fixture
def p():
    return lstm_ag.init_params(3, 4, 2, seed=0)


@pytest.mark.parametrize("xs, match", [
    (np.zeros((5, 2, 2)), r"xs must have shape \(T, B, D\) or \(T, D\) with D = 3.*\(5, 2, 2\)"),
    (np.zeros((5, 2)), r"xs must have shape .*D = 3.*got \(5, 2\)"),
    (np.zeros((2, 2, 2, 3)), r"xs must have shape .*got \(2, 2, 2, 3\)"),
    (np.zeros(3), r"xs must have shape .*got \(3,\)"),
    (np.zeros((0, 3)), r"xs is an empty sequence \(T = 0"),
    (np.zeros((0, 2, 3)), r"xs is an empty sequence"),
    (np.zeros((4, 0, 3)), r"xs has an empty batch"),
    ([], r"xs"),
])
def test_bad_xs_shape(p, xs, match):
    with pytest.raises(ValueError, match=match):
        lstm_ag.lstm_forward(p, xs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_xs(p, bad):
    xs = np.zeros((4, 2, 3))
    xs[2, 1, 0] = bad
    with pytest.raises(ValueError, match=r"xs contains NaN or inf \(first at index \(2, 1, 0\)"):
        lstm_ag.lstm_forward(p, xs)
    assert np.isnan(xs[2, 1, 0]) or np.isinf(xs[2, 1, 0])       # the user's data untouched


@pytest.mark.parametrize("xs", [np.array([["a", "b", "c"]]), [[1, None, 2]], "abc",
                                [[1, 2, 3], [4, 5]]])
def test_non_numeric_xs(p, xs):
    with pytest.raises(TypeError, match="xs"):
        lstm_ag.lstm_forward(p, xs)


@pytest.mark.parametrize("key, value, match", [
    ("Wx", np.zeros((3, 15)), r"params\['Wx'\] must have shape \(3, 16\).*got \(3, 15\)"),
    ("Wh", np.zeros((4, 15)), r"params\['Wh'\] must have shape \(4, 16\).*got \(4, 15\)"),
    ("Wh", np.zeros(16), r"params\['Wh'\] must have shape \(H, 4H\), got \(16,\)"),
    ("b", np.zeros((16, 1)), r"params\['b'\] must have shape \(16,\).*got \(16, 1\)"),
    ("Wy", np.zeros((5, 2)), r"params\['Wy'\] must have shape \(4, 2\).*got \(5, 2\)"),
    ("Wy", np.zeros(4),
     r"params\['Wy'\] must have shape \(H, O\) = \(4, O\) with O >= 1, got \(4,\)"),
    ("by", np.zeros(3), r"params\['by'\] must have shape \(2,\).*got \(3,\)"),
])
def test_wrongly_shaped_parameter(p, key, value, match):
    with pytest.raises(ValueError, match=match):
        lstm_ag.predict({**p, key: value}, np.zeros((2, 3)))


@pytest.mark.parametrize("key", ["Wx", "Wh", "b", "Wy", "by"])
def test_missing_parameter(p, key):
    del p[key]
    with pytest.raises(ValueError, match=f"params is missing '{key}'"):
        lstm_ag.mse(p, np.zeros((2, 3)), np.zeros((2, 2)))


def test_non_array_or_mixed_dtype_parameters(p):
    with pytest.raises(TypeError, match=r"params\['Wx'\] must be a numpy array, got list"):
        lstm_ag.lstm_forward({**p, "Wx": p["Wx"].tolist()}, np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"params must be a dict"):
        lstm_ag.lstm_forward([p["Wx"]], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"params must share one dtype.*Wh: float32"):
        lstm_ag.lstm_forward({**p, "Wh": p["Wh"].astype(np.float32)}, np.zeros((2, 3)))


@pytest.mark.parametrize("state, match", [
    ((np.zeros((2, 4)), np.zeros((3, 4))),
     r"state\[1\] \(c0\) must have shape \(B, H\) = \(2, 4\), got \(3, 4\)"),
    ((np.zeros(4), np.zeros((2, 4))),
     r"state\[0\] \(h0\) must have shape \(B, H\) = \(2, 4\), got \(4,\)"),
    ((np.zeros((2, 5)), np.zeros((2, 4))), r"state\[0\] \(h0\).*got \(2, 5\)"),
])
def test_wrongly_shaped_state(p, state, match):
    with pytest.raises(ValueError, match=match):
        lstm_ag.lstm_forward(p, np.zeros((3, 2, 3)), state)


def test_state_errors_for_one_sequence_and_non_pairs(p):
    with pytest.raises(ValueError,
                       match=r"state\[0\] \(h0\) must have shape \(H,\) = \(4,\), got \(1, 4\)"):
        lstm_ag.lstm_forward(p, np.zeros((3, 3)), (np.zeros((1, 4)), np.zeros(4)))
    with pytest.raises(TypeError, match="state must be a pair"):
        lstm_ag.lstm_forward(p, np.zeros((3, 3)), np.zeros(4))
    with pytest.raises(ValueError, match=r"state\[1\] \(c0\) contains NaN"):
        lstm_ag.lstm_forward(p, np.zeros((3, 3)), (np.zeros(4), np.full(4, np.nan)))


@pytest.mark.parametrize("targets, match", [
    (np.zeros((3, 2, 1)),
     r"targets must have the predictions' shape \(T, B, O\) = \(3, 2, 2\), got \(3, 2, 1\)"),
    (np.zeros((2, 2, 2)), r"targets .*got \(2, 2, 2\)"),
    (np.zeros((3, 2)), r"targets .*\(3, 2, 2\), got \(3, 2\)"),
])
def test_wrongly_shaped_targets(p, targets, match):
    with pytest.raises(ValueError, match=match):
        lstm_ag.mse(p, np.zeros((3, 2, 3)), targets)


def test_nan_targets_and_bad_mask(p):
    ys = np.zeros((3, 2, 2))
    ys[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="targets contains NaN"):
        lstm_ag.mse(p, np.zeros((3, 2, 3)), ys)
    with pytest.raises(ValueError, match=r"mask must have shape"):
        lstm_ag.mse(p, np.zeros((3, 2, 3)), np.zeros((3, 2, 2)), mask=np.ones(4))
    with pytest.raises(ValueError, match=r"mask must hold finite weights"):
        lstm_ag.mse(p, np.zeros((3, 2, 3)), np.zeros((3, 2, 2)), mask=np.zeros(3))


def test_validation_does_not_disturb_tracing(p):
    xs = np.random.default_rng(0).standard_normal((3, 2, 3))
    g = autograd.grad(lambda x: anp.sum(lstm_ag.predict(p, x)))(xs)   # traced xs is checked
    assert g.shape == xs.shape and np.all(np.isfinite(g))


# ---------------------------------------------------------------- predict's state, forecast


def test_predict_returns_the_state_to_continue_from():
    params = lstm_ag.init_params(2, 4, 2, seed=1)
    xs = np.random.default_rng(0).standard_normal((7, 3, 2))
    ys, (h, c) = lstm_ag.predict(params, xs, return_state=True)
    first, state = lstm_ag.predict(params, xs[:4], return_state=True)
    rest = lstm_ag.predict(params, xs[4:], state)
    assert_close(np.concatenate([first, rest]), ys, rounding(terms=2 + 4 + 1 + 4, steps=7))
    _, (h_ref, c_ref) = lstm_ag.lstm_forward(params, xs)
    assert np.array_equal(h, h_ref) and np.array_equal(c, c_ref)
    one, (h1, c1) = lstm_ag.predict(params, xs[:, 0], return_state=True)
    assert one.shape == (7, 2) and h1.shape == c1.shape == (4,)


def test_forecast_feeds_predictions_back_like_a_hand_written_loop():
    params = lstm_ag.init_params(2, 4, 2, seed=1)
    xs = np.random.default_rng(0).standard_normal((5, 3, 2))
    _, state = lstm_ag.lstm_forward(params, xs)
    expected = []
    for _ in range(4):                                   # the loop a user would write
        y = state[0] @ params["Wy"] + params["by"]
        expected.append(y)
        _, state = lstm_ag.lstm_forward(params, y[None], state)
    assert_close(lstm_ag.forecast(params, xs, 4), np.stack(expected),
                 rounding(terms=2 + 4 + 1 + 4, steps=5 + 4))
    assert_close(lstm_ag.forecast(params, xs, 1)[0], lstm_ag.predict(params, xs)[-1],
                 rounding(terms=2 + 4 + 1 + 4, steps=5))
    assert lstm_ag.forecast(params, xs[:, 1], 3).shape == (3, 2)


def test_forecast_is_differentiable_and_checks_its_arguments():
    params = lstm_ag.init_params(1, 3, 1, seed=2)
    xs = np.linspace(0, 1, 6)[:, None]

    def loss(p, method):
        return anp.sum(lstm_ag.forecast(p, xs, 3, method=method) ** 2)
    fast, traced = autograd.grad(loss)(params, "fast"), autograd.grad(loss)(params, "autograd")
    for k in params:
        assert_close(fast[k], traced[k], rtol=1e-10)
    with pytest.raises(ValueError, match="horizon must be a positive integer, got 0"):
        lstm_ag.forecast(params, xs, 0)
    with pytest.raises(ValueError, match=r"must be the inputs: params has O = 2 .* xs has D = 1"):
        lstm_ag.forecast(lstm_ag.init_params(1, 3, 2), xs, 2)


@pytest.mark.parametrize("dtype, lowest", [(np.float64, -745.0), (np.float32, -104.0)])
def test_vectorised_sigmoid_is_within_a_few_eps_of_expit_over_the_whole_range(dtype, lowest):
    from scipy.special import expit

    from lstm_ag.ops import VECTOR_SIZE, sigmoid_values
    info = np.finfo(dtype)
    x = np.concatenate([np.linspace(lowest, 40, 400_001), np.linspace(-1e-3, 1e-3, 10_001),
                        [info.min, info.max, -0.0, 0.0, info.tiny, -info.tiny]]).astype(dtype)
    assert x.size >= VECTOR_SIZE
    got = sigmoid_values(x)                       # no warning at any input (pytest: errors)
    assert got.dtype == dtype and np.all((got >= 0) & (got <= 1))
    ref = expit(x.astype(np.float64))
    normal = ref > info.tiny                      # relative error where the value is normal
    rel = np.abs(got[normal] - ref[normal]) / ref[normal]
    assert rel.max() <= 2.5 * info.eps and np.abs(got - ref).max() <= info.eps
    small = x[:VECTOR_SIZE - 1]                  # below the threshold: expit itself
    assert np.array_equal(sigmoid_values(small), expit(small))
