"""PyTorch as an outside oracle that runs everywhere: a committed fixture of torch's numbers.

``tests/data/torch_lstm.npz`` holds, for each case of ``tests/data/make_torch_fixture.py``, an
``nn.LSTM`` + ``nn.Linear`` + MSE in float64: torch's state dicts, the inputs, and what torch
computed (outputs, final state, predictions, loss, every gradient). These tests need no torch;
the live tests in ``test_torch.py`` still run where torch is installed, and the last test here
(skipped without torch) regenerates the fixture in memory so that a stale file is caught.

Passed against torch 2.13.0 (CPU), cases (T, B, D, H, O) = (5, 3, 4, 6, 2) with an initial
state, (1, 1, 1, 1, 1), and (12, 2, 3, 8, 2) with an initial state and a loss mask. Largest
errors seen: forward (hs, final h and c, predictions) and loss within 4.4e-16 absolute; every
gradient (Wx, Wh, b, Wy, by; and xs, h0, c0 through autograd) of "fast", "bptt" and "autograd"
within 7.3e-16 of its largest entry.
"""
import os

import autograd
import numpy as np
import pytest
from tolerance import assert_close, rounding
from torch_fixture import FIXTURE, SCRIPT

import lstm_ag
from lstm_ag import layouts

CASES = list(SCRIPT.CASES)
METHODS = ("fast", "bptt", "autograd")

# Forward tolerance: every value is O(1) (|h| < 1; c, y and the loss a few units at most) and
# comes from at most 12 steps of dot products of length D + H <= 11, so both libraries round
# to within ~1e-15 of each other (4.4e-16 observed). 1e-12 leaves a thousandfold margin for other
# BLAS builds; a wrong gate order, bias or nonlinearity is off by 1e-2 or more.
FORWARD = {"rtol": 1e-12, "atol": 1e-12}
# Gradient tolerance, relative to the largest entry of torch's gradient (7e-16 observed).
GRAD_RTOL = 1e-10


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def case_data(fixture, case):
    """One case's arrays (keys without the case prefix), the params, state and mask."""
    a = {k[len(case) + 1:]: v for k, v in fixture.items() if k.startswith(case + ".")}
    state_dict = {k: a[k] for k in SCRIPT.LSTM_KEYS}
    linear = {k: a["linear." + k] for k in SCRIPT.LINEAR_KEYS}
    params = layouts.from_torch(state_dict, linear=linear)
    state = (a["h0"], a["c0"]) if a["state_given"] else None
    mask = a["mask"] if a["mask_given"] else None
    return a, params, state, mask


def torch_grads_in_our_layout(a):
    """torch's gradients as ours: transposed weights; both torch biases receive d loss/d b."""
    return {"Wx": a["grad.weight_ih_l0"].T, "Wh": a["grad.weight_hh_l0"].T,
            "b": a["grad.bias_ih_l0"], "Wy": a["grad.linear.weight"].T,
            "by": a["grad.linear.bias"]}


def assert_close_to_scale(ours, theirs, name):
    """max |ours - theirs| <= GRAD_RTOL * max |theirs| (exactly equal when theirs is zero:
    in the (1, 1, 1, 1, 1) case without a state torch's dWh is exactly 0, as h_0 is)."""
    assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
    err = np.max(np.abs(ours - theirs))
    assert err <= GRAD_RTOL * np.max(np.abs(theirs)), (name, err, np.max(np.abs(theirs)))


def test_fixture_is_committed_and_lists_every_case():
    # Not a skip: the fixture is part of the repository, so a missing file is a failure.
    assert os.path.isfile(FIXTURE), f"{FIXTURE} is missing: run tests/data/make_torch_fixture.py"
    assert os.path.getsize(FIXTURE) < 200_000
    with np.load(FIXTURE, allow_pickle=False) as f:
        assert list(f["cases"]) == CASES
        assert list(f["layer_cases"]) == list(SCRIPT.LAYER_CASES)   # test_layers_torch.py
        assert str(f["torch_version"])
        for k in f.files:
            assert f[k].dtype.kind in "fibU", (k, f[k].dtype)    # no object arrays


@pytest.mark.parametrize("case", CASES)
def test_case_is_what_the_script_says(fixture, case):
    a, params, state, mask = case_data(fixture, case)
    T, B, D, H, n_out = SCRIPT.CASES[case][0]
    assert {k: v.shape for k, v in params.items()} == {
        "Wx": (D, 4 * H), "Wh": (H, 4 * H), "b": (4 * H,), "Wy": (H, n_out), "by": (n_out,)}
    assert a["xs"].shape == (T, B, D) and a["targets"].shape == (T, B, n_out)
    assert all(v.dtype == np.float64 for v in params.values())
    # torch's two biases are both non-zero, so from_torch's sum is exercised
    assert np.all(a["bias_ih_l0"] != 0) and np.all(a["bias_hh_l0"] != 0)
    assert bool(a["state_given"]) == SCRIPT.CASES[case][2]
    assert bool(a["mask_given"]) == SCRIPT.CASES[case][3]
    if mask is not None:
        assert 0 < mask.sum() < mask.size               # a mask that leaves steps out


@pytest.mark.parametrize("case", CASES)
def test_forward_final_state_and_predictions_equal_torch(fixture, case):
    a, params, state, mask = case_data(fixture, case)
    hs, (h, c) = lstm_ag.lstm_forward(params, a["xs"], state=state)
    np.testing.assert_allclose(hs, a["hs"], **FORWARD)
    np.testing.assert_allclose(h, a["h_T"], **FORWARD)
    np.testing.assert_allclose(c, a["c_T"], **FORWARD)
    np.testing.assert_allclose(lstm_ag.predict(params, a["xs"], state=state), a["ys"], **FORWARD)
    loss = lstm_ag.mse(params, a["xs"], a["targets"], state=state, mask=mask)
    np.testing.assert_allclose(loss, a["loss"], **FORWARD)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_loss_and_every_gradient_equal_torch(fixture, case, method):
    a, params, state, mask = case_data(fixture, case)
    loss, grads = lstm_ag.value_and_grad(params, a["xs"], a["targets"], state=state,
                                         method=method, mask=mask)
    np.testing.assert_allclose(loss, a["loss"], **FORWARD)
    # torch gives both biases d loss/d b of their sum (up to its summation order: 6e-16)
    assert_close_to_scale(a["grad.bias_hh_l0"], a["grad.bias_ih_l0"], "bias_hh_l0")
    theirs = torch_grads_in_our_layout(a)
    assert set(grads) == set(theirs)
    for k, g in theirs.items():
        assert_close_to_scale(grads[k], g, k)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_gradients_in_torch_layout_through_to_torch(fixture, case, method):
    # the other direction: our gradients, exported as if they were parameters, are torch's
    a, params, state, mask = case_data(fixture, case)
    _, grads = lstm_ag.value_and_grad(params, a["xs"], a["targets"], state=state,
                                      method=method, mask=mask)
    sd, lin = layouts.to_torch(grads, linear=True)
    ours = {**{k: np.asarray(v) for k, v in sd.items()},
            **{"linear." + k: np.asarray(v) for k, v in lin.items()}}
    for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "linear.weight", "linear.bias"):
        assert_close_to_scale(ours[k], a["grad." + k], k)


@pytest.mark.parametrize("method", ["fast", "autograd"])
@pytest.mark.parametrize("case", CASES)
def test_gradients_to_inputs_and_initial_state_equal_torch(fixture, case, method):
    a, params, state, mask = case_data(fixture, case)

    def loss_of_xs(xs):
        return lstm_ag.mse(params, xs, a["targets"], state=state, mask=mask, method=method)

    assert_close_to_scale(autograd.grad(loss_of_xs)(a["xs"]), a["grad.xs"], "xs")
    if state is None:
        return

    def loss_of_state(hc):
        return lstm_ag.mse(params, a["xs"], a["targets"], state=(hc[0], hc[1]), mask=mask,
                           method=method)

    dh0, dc0 = autograd.grad(loss_of_state)(np.stack(state))
    assert_close_to_scale(dh0, a["grad.h0"], "h0")
    assert_close_to_scale(dc0, a["grad.c0"], "c0")


def test_regenerating_the_fixture_gives_the_committed_arrays(fixture):
    """A stale fixture (script changed, file not regenerated) fails here where torch is."""
    pytest.importorskip("torch")
    fresh = SCRIPT.build()
    assert sorted(fresh) == sorted(fixture)
    computed = ("hs", "h_T", "c_T", "ys", "loss", "grad.")
    for k, v in fresh.items():
        if k == "torch_version":
            continue
        committed = fixture[k]
        assert v.dtype == committed.dtype and v.shape == committed.shape, k
        if "." in k and k.split(".", 1)[1].startswith(computed):
            # torch's results: a few ulps apart at most from the torch that wrote the file
            # (another version or BLAS), bit-identical on the same build
            assert_close(v, committed, rounding(terms=64), err_msg=k)
        else:
            # the list of cases; parameters, data, state and mask from numpy's seeded generator
            np.testing.assert_array_equal(v, committed, err_msg=k)
