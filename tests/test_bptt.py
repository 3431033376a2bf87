"""The hand-written BPTT and the fast path agree with autograd tracing the forward."""
import autograd
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from tolerance import assert_close, rounding

import lstm_ag
from lstm_ag.bptt import local_derivatives, lstm_backward, lstm_step_backward
from lstm_ag.cell import SequenceCache, lstm_step, scan
from lstm_ag.model import bptt


def max_rel(a, b):
    """Normwise relative error, as the gradient checker measures it."""
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
    return 0.0 if scale == 0 else np.max(np.abs(a - b)) / scale


def problem(T, B, D, H, O=2, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = lstm_ag.init_params(D, H, O, seed=seed, dtype=dtype)
    params["b"] = rng.uniform(-0.5, 0.5, 4 * H).astype(dtype)   # no special structure
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    ys = rng.standard_normal((T, B, O)).astype(dtype)
    state = tuple(rng.standard_normal((B, H)).astype(dtype) * 0.5 for _ in range(2))
    return params, xs, ys, state


sizes = st.tuples(st.integers(1, 12), st.integers(1, 4), st.integers(1, 5), st.integers(1, 6))


@settings(max_examples=60, deadline=None)
@given(size=sizes, with_state=st.booleans(), seed=st.integers(0, 2**16))
def test_all_methods_agree_on_params_inputs_and_state(size, with_state, seed):
    T, B, D, H = size
    params, xs, ys, state = problem(T, B, D, H, seed=seed)
    state = state if with_state else None
    loss_ag, ref = lstm_ag.value_and_grad(params, xs, ys, state, method="autograd")
    for method in ("bptt", "fast"):
        loss, grads = lstm_ag.value_and_grad(params, xs, ys, state, method=method)
        assert abs(loss - loss_ag) <= 1e-12 * abs(loss_ag)
        assert grads.keys() == ref.keys()
        for k in ref:
            assert grads[k].shape == ref[k].shape
            assert max_rel(grads[k], ref[k]) <= 1e-10, (method, k)

    # inputs and initial state: autograd through the traced loop vs the fast path's BPTT
    def loss_of(method):
        return lambda x, h0, c0: lstm_ag.mse(params, x, ys, (h0, c0), method=method)
    h0, c0 = state or (np.zeros((B, H)), np.zeros((B, H)))
    traced = autograd.grad(loss_of("autograd"), argnum=(0, 1, 2))(xs, h0, c0)
    fast = autograd.grad(loss_of("fast"), argnum=(0, 1, 2))(xs, h0, c0)
    for name, a, b in zip(("xs", "h0", "c0"), fast, traced, strict=False):
        assert max_rel(a, b) <= 1e-10, name


@pytest.mark.parametrize("lengths", [None, np.array([5, 1, 3])])
def test_lstm_backward_takes_gradients_of_the_final_state(lengths):
    T, B, D, H = 5, 3, 2, 4
    params, xs, _, (h0, c0) = problem(T, B, D, H, seed=3)
    rng = np.random.default_rng(4)
    dhs, dh_last, dc_last = rng.standard_normal((T, B, H)), *rng.standard_normal((2, B, H))
    W = (params["Wx"], params["Wh"], params["b"])

    def objective(Wx, Wh, b, x, h, c):
        hs, hT, cT = scan(Wx, Wh, b, x, h, c, lengths=lengths)
        return np.sum(hs * dhs) + np.sum(hT * dh_last) + np.sum(cT * dc_last)
    ref = autograd.grad(objective, argnum=(0, 1, 2, 3, 4, 5))(*W, xs, h0, c0)
    cache = SequenceCache.run(*W, xs, h0, c0)
    cache.outputs(lengths)
    grads = lstm_backward(dhs, cache, dh_last, dc_last, lengths=lengths)
    for name, r in zip(("Wx", "Wh", "b", "xs", "h0", "c0"), ref, strict=False):
        assert_close(grads[name], r, rtol=1e-12, err_msg=name)
    if lengths is not None:           # the padding's inputs reach nothing
        assert not grads["xs"][3:, 1].any() and not grads["xs"][4:, 2].any()


def test_step_backward_is_the_derivative_of_lstm_step():
    B, H = 3, 4
    rng = np.random.default_rng(5)
    Wh, zx, h, c = (rng.standard_normal(s) for s in [(H, 4 * H), (B, 4 * H), (B, H), (B, H)])
    dh_next, dc_next = rng.standard_normal((2, B, H))

    def objective(zx, h, c):
        (h1, c1), _ = lstm_step(Wh, zx, h, c)
        return np.sum(h1 * dh_next) + np.sum(c1 * dc_next)
    ref = autograd.grad(objective, argnum=(0, 1, 2))(zx, h, c)
    # the cache of one step: run the same step, take its local derivatives
    # one step whose input projection is zx itself: x_0 = zx, Wx = I, b = 0
    cache = SequenceCache.run(np.eye(4 * H), Wh, np.zeros(4 * H), zx[None], h, c)
    h_c, c_z, h_zo, f = (a[0] for a in local_derivatives(cache))
    dz, dh_prev, dc_prev = lstm_step_backward(dh_next, dc_next, (Wh, h_c, c_z, h_zo, f))
    names = ("dz", "dh_prev", "dc_prev")
    for name, got, want in zip(names, (dz, dh_prev, dc_prev), ref, strict=True):
        assert_close(got, want, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("method", ["bptt", "fast", "autograd"])
def test_float32_stays_float32_and_is_close_to_float64(method):
    params, xs, ys, _ = problem(10, 3, 2, 5, seed=7)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    _, ref = lstm_ag.value_and_grad(params, xs, ys, method="autograd")
    loss, grads = lstm_ag.value_and_grad(p32, xs.astype(np.float32), ys.astype(np.float32),
                                         method=method)
    assert np.asarray(loss).dtype == np.float32
    for k in ref:
        assert grads[k].dtype == np.float32, k
        # documented float32 bound: 1e-4 relative (lstm_ag.gradcheck.TOLERANCES); ~1e-6 here
        assert max_rel(grads[k], ref[k]) <= 1e-4, k


def test_mask_weights_steps_the_same_in_every_method():
    params, xs, ys, _ = problem(6, 2, 2, 3, seed=8)
    mask = np.zeros(6)
    mask[-1] = 1.0                                  # the adding task: the last step only
    loss_ag, ref = lstm_ag.value_and_grad(params, xs, ys, mask=mask, method="autograd")
    last = lstm_ag.mse(params, xs[:, :, :], ys, mask=mask)
    err = lstm_ag.predict(params, xs)[-1] - ys[-1]
    assert_allclose(last, np.mean(err ** 2), rtol=rounding(terms=2 + 3 + 1, steps=6))
    for method in ("bptt", "fast"):
        loss, grads = lstm_ag.value_and_grad(params, xs, ys, mask=mask, method=method)
        assert_allclose(loss, loss_ag, rtol=rounding(terms=2 + 3 + 1, steps=6))
        for k in ref:
            assert max_rel(grads[k], ref[k]) <= 1e-10


def test_unknown_method_is_named():
    params, xs, ys, _ = problem(2, 1, 1, 2)
    with pytest.raises(ValueError, match="method"):
        lstm_ag.value_and_grad(params, xs, ys, method="magic")
    with pytest.raises(ValueError, match="method"):
        lstm_ag.lstm_forward(params, xs, method="bptt")


def test_bptt_validates_like_the_forward():
    params, xs, ys, _ = problem(3, 2, 2, 3)
    with pytest.raises(ValueError, match="targets"):
        bptt(params, xs, ys[:, :1])


def test_local_derivatives_in_chunks_give_the_same_gradients(monkeypatch):
    # The backward takes the local derivatives a chunk of steps at a time when they would
    # not fit in LOCAL_BYTES: the gradients must not depend on the chunking.
    import lstm_ag.bptt as bptt_module
    params = lstm_ag.init_params(3, 4, 2, seed=3)
    rng = np.random.default_rng(3)
    xs, ys = rng.standard_normal((7, 2, 3)), rng.standard_normal((7, 2, 2))
    whole = lstm_ag.value_and_grad(params, xs, ys, method="bptt")[1]
    for steps in (1, 2, 3):                 # chunks of 1, 2 and 3 steps (7 = 3 + 3 + 1)
        monkeypatch.setattr(bptt_module, "LOCAL_BYTES", steps * 7 * 2 * 4 * 8)
        chunked = lstm_ag.value_and_grad(params, xs, ys, method="bptt")[1]
        for k in whole:
            assert np.array_equal(chunked[k], whole[k]), (steps, k)
