"""A correct LSTM loop written as PyTorch holds the weights, batch first.

``weight_ih (4H, D)``, ``weight_hh (4H, H)``, two biases ``bias_ih``, ``bias_hh (4H,)``, the 4H
axis in PyTorch's gate order i, f, g, o; ``z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh``.
``lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh) -> (output, (h_n, c_n),
cache)`` with x ``(B, T, D)``, h0, c0 ``(B, H)``, output ``(B, T, H)``; ``lstm_backward(doutput,
cache)`` of ``sum(doutput * output)`` returns the gradients by the tensors' names, as
``{name: tensor.grad}``: ``x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh``. Checked by
``lstm-ag-gradcheck torch_loop.py``; the checker's tests plant bugs by changing one line.
"""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    B, T, D = x.shape
    H = weight_hh.shape[1]
    h, c = h0, c0
    output = np.zeros((B, T, H))
    steps = []
    for t in range(T):
        gates = x[:, t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
        i = sigmoid(gates[:, :H])
        f = sigmoid(gates[:, H:2 * H])
        g = np.tanh(gates[:, 2 * H:3 * H])
        o = sigmoid(gates[:, 3 * H:])
        c_prev, h_prev = c, h
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        output[:, t] = h
        steps.append((x[:, t], h_prev, c_prev, i, f, g, o, c))
    cache = (steps, weight_ih, weight_hh)
    return output, (h, c), cache


def lstm_backward(doutput, cache):
    steps, weight_ih, weight_hh = cache
    B, T, H = doutput.shape
    dx = np.zeros((B, T, weight_ih.shape[1]))
    dweight_ih = np.zeros_like(weight_ih)
    dweight_hh = np.zeros_like(weight_hh)
    dbias = np.zeros(4 * H)
    dh_next = np.zeros((B, H))
    dc_next = np.zeros((B, H))
    for t in reversed(range(T)):
        x_t, h_prev, c_prev, i, f, g, o, c = steps[t]
        dh = doutput[:, t] + dh_next
        tanh_c = np.tanh(c)
        dc = dc_next + dh * o * (1 - tanh_c ** 2)
        di = dc * g * i * (1 - i)
        df = dc * c_prev * f * (1 - f)
        dg = dc * i * (1 - g ** 2)
        do = dh * tanh_c * o * (1 - o)
        dgates = np.concatenate((di, df, dg, do), axis=1)
        dx[:, t] = dgates @ weight_ih
        dweight_ih += dgates.T @ x_t
        dweight_hh += dgates.T @ h_prev
        dbias += dgates.sum(axis=0)
        dh_next = dgates @ weight_hh
        dc_next = dc * f
    return {"x": dx, "h0": dh_next, "c0": dc_next, "weight_ih": dweight_ih,
            "weight_hh": dweight_hh, "bias_ih": dbias, "bias_hh": dbias.copy()}
