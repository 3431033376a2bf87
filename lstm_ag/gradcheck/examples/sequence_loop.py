"""A correct sequence backward, written as students write it: a forward loop that caches each
step, a backward loop from the last step to the first, weight gradients summed inside it.

This library's layout: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, gates i, f, g, o along the
4H axis, row vectors, ``xs (T, B, D)``; the readout ``Wy (H, O)``, ``by (O,)``. Three backwards,
one per loss the checker knows (``check_gradients(..., upstream=...)``):

* ``backward_mse(params, xs, targets)``: the readout's MSE at every step (``upstream=None``),
  returns ``(loss, grads)``;
* ``backward_last(params, xs, dh_last)``: ``sum(dh_last * h_T)`` (``upstream="last"``);
* ``backward_all(params, xs, dhs)``: ``sum(dhs * hs)`` (``upstream="all"``).

The checker's tests plant bugs by changing one line of this file (see ``mutate`` in
``tests/test_gradcheck.py``); keep each line below unique.
"""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def forward(params, xs, h0=None, c0=None):
    Wx, Wh, b = params["Wx"], params["Wh"], params["b"]
    T, B, _ = xs.shape
    H = Wh.shape[0]
    h = np.zeros((B, H)) if h0 is None else h0
    c = np.zeros((B, H)) if c0 is None else c0
    hs, caches = [], []
    for t in range(T):
        a = xs[t] @ Wx + h @ Wh + b
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:])
        c_prev, h_prev = c, h
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        caches.append((xs[t], h_prev, c_prev, i, f, g, o, c, h))
        hs.append(h)
    return np.array(hs), caches


def backward_from_dhs(params, caches, dhs):
    """dL/dWx, dL/dWh, dL/db from dL/dh_t for every step, ``dhs (T, B, H)``."""
    Wx, Wh = params["Wx"], params["Wh"]
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(params["b"])
    dh_next = np.zeros_like(dhs[0])
    dc_next = np.zeros_like(dhs[0])
    for t in reversed(range(len(caches))):
        x, h_prev, c_prev, i, f, g, o, c, h = caches[t]
        dh = dhs[t] + dh_next
        tanh_c = np.tanh(c)
        dc = dc_next + dh * o * (1 - tanh_c ** 2)
        di = dc * g * i * (1 - i)
        df = dc * c_prev * f * (1 - f)
        dg = dc * i * (1 - g ** 2)
        do = dh * tanh_c * o * (1 - o)
        da = np.hstack((di, df, dg, do))
        dWx += x.T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        dh_next = da @ Wh.T
        dc_next = dc * f
    return {"Wx": dWx, "Wh": dWh, "b": db}


def backward_all(params, xs, dhs):
    _, caches = forward(params, xs)
    return backward_from_dhs(params, caches, dhs)


def backward_last(params, xs, dh_last):
    hs, caches = forward(params, xs)
    dhs = np.zeros_like(hs)
    dhs[-1] = dh_last
    return backward_from_dhs(params, caches, dhs)


def backward_mse(params, xs, targets):
    hs, caches = forward(params, xs)
    ys = hs @ params["Wy"] + params["by"]
    err = ys - targets
    loss = np.mean(err ** 2)
    dys = 2 * err / err.size
    grads = backward_from_dhs(params, caches, dys @ params["Wy"].T)
    grads["Wy"] = np.einsum("tbh,tbo->ho", hs, dys)
    grads["by"] = dys.sum(axis=(0, 1))
    return loss, grads
