"""PyTorch as an outside oracle (skipped when torch is not installed).

Passed on torch 2.13.0 (CPU): outputs and final state to 1e-12, gradients of both methods
to 1e-10 relative, in float64.
"""
import numpy as np
import pytest

import lstm_ag
from lstm_ag import layouts

torch = pytest.importorskip("torch")


def torch_model(params):
    D, H = params["Wx"].shape[0], params["Wh"].shape[0]
    O = params["Wy"].shape[1]
    lstm = torch.nn.LSTM(D, H).double()
    linear = torch.nn.Linear(H, O).double()
    with torch.no_grad():
        for p in list(lstm.parameters()) + list(linear.parameters()):
            p.uniform_(-0.7, 0.7)
    return lstm, linear


def test_nn_lstm_float64_outputs_and_final_state():
    torch.manual_seed(0)
    lstm, linear = torch_model(lstm_ag.init_params(3, 5, 2))
    params = layouts.from_torch(lstm.state_dict(), linear.state_dict())
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((7, 4, 3))
    h0, c0 = rng.standard_normal((2, 4, 5))
    with torch.no_grad():
        state = (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
        out, (hT, cT) = lstm(torch.from_numpy(xs), state)
        ys = linear(out)
    hs, (h, c) = lstm_ag.lstm_forward(params, xs, (h0, c0))
    np.testing.assert_allclose(hs, out.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h, hT[0].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c, cT[0].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lstm_ag.predict(params, xs, (h0, c0)), ys.numpy(),
                               rtol=0, atol=1e-12)


def test_our_export_loads_into_nn_lstm():
    params = lstm_ag.init_params(2, 3, 1, seed=5)
    lstm, linear = torch_model(params)
    sd, lin = layouts.to_torch(params, linear=True)
    lstm.load_state_dict(sd)
    linear.load_state_dict(lin)
    xs = np.random.default_rng(1).standard_normal((4, 2, 2))
    with torch.no_grad():
        ys = linear(lstm(torch.from_numpy(xs))[0]).numpy()
    np.testing.assert_allclose(lstm_ag.predict(params, xs), ys, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["bptt", "fast", "autograd"])
def test_gradients_equal_nn_lstm_plus_linear_with_mse(method):
    torch.manual_seed(1)
    lstm, linear = torch_model(lstm_ag.init_params(3, 6, 2))
    params = layouts.from_torch(lstm.state_dict(), linear.state_dict())
    rng = np.random.default_rng(2)
    xs, targets = rng.standard_normal((9, 3, 3)), rng.standard_normal((9, 3, 2))
    loss_t = torch.nn.functional.mse_loss(linear(lstm(torch.from_numpy(xs))[0]),
                                          torch.from_numpy(targets))
    loss_t.backward()
    loss, grads = lstm_ag.value_and_grad(params, xs, targets, method=method)
    assert abs(loss - loss_t.item()) <= 1e-12 * loss_t.item()
    # torch's gradients in our layout: both biases receive db
    theirs = {
        "Wx": lstm.weight_ih_l0.grad.numpy().T, "Wh": lstm.weight_hh_l0.grad.numpy().T,
        "b": lstm.bias_ih_l0.grad.numpy(), "Wy": linear.weight.grad.numpy().T,
        "by": linear.bias.grad.numpy()}
    np.testing.assert_allclose(lstm.bias_ih_l0.grad.numpy(), lstm.bias_hh_l0.grad.numpy(),
                               rtol=1e-13)
    for k, g in theirs.items():
        rel = np.max(np.abs(grads[k] - g)) / np.max(np.abs(g))
        assert rel <= 1e-10, (k, rel)
