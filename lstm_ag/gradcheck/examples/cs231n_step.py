"""A correct CS231n-style LSTM (gate order i, f, o, g), as students write ``rnn_layers.py``.

The step pair ``lstm_step_forward``, ``lstm_step_backward`` and the sequence pair built on it,
``lstm_forward(x, h0, Wx, Wh, b)``, ``lstm_backward(dh, cache)``, batch-major: x ``(N, T, D)``,
h and dh ``(N, T, H)``. Used by the checker's tests as the starting point for planted bugs (one
line changed, see ``tests/students/mutate.py``), and by the command-line tests as a
``--step FILE.py``.
"""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    o = sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    di = dc * g * i * (1 - i)
    df = dc * prev_c * f * (1 - f)
    do = dnext_h * tanh_c * o * (1 - o)
    dg = dc * i * (1 - g ** 2)
    da = np.hstack((di, df, do, dg))
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dprev_c = dc * f
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H))
    prev_h, prev_c = h0, np.zeros_like(h0)
    cache = []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        cache.append(step_cache)
    return h, cache


def lstm_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx = np.zeros((N, T, D))
    dWx, dWh, db = 0, 0, 0
    dprev_h, dprev_c = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        step = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])
        dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = step
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db
