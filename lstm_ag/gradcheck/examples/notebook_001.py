"""Notebook 001's LSTM class, as the notebook has it, with its original bug and fixed.

One sequence at a time, column vectors: per-gate weights ``W_k (H, H + D)`` on the stacked
column ``z = [h_prev; x_t]``, biases ``b_k (H, 1)``; ``backward(dL_dh, lr)`` takes dL/dh_T of
the last hidden state and updates the weights in place (``param -= lr * dparam``).

* ``LSTM``: the fixed class (the ``return h`` moved after the time loop);
* ``LSTMNotebook``: the notebook's own, ``return h`` inside the loop, so only the first step
  runs and is cached.
"""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def dsigmoid(y):
    return y * (1 - y)


def dtanh(x):
    return 1 - x**2


class LSTM:
    def __init__(self, input_size, hidden_size):
        self.input_size = input_size
        self.hidden_size = hidden_size
        concat_size = input_size + hidden_size
        self.Wf = np.random.randn(hidden_size, concat_size) * 0.1
        self.bf = np.zeros((hidden_size, 1))
        self.Wi = np.random.randn(hidden_size, concat_size) * 0.1
        self.bi = np.zeros((hidden_size, 1))
        self.Wg = np.random.randn(hidden_size, concat_size) * 0.1
        self.bg = np.zeros((hidden_size, 1))
        self.Wo = np.random.randn(hidden_size, concat_size) * 0.1
        self.bo = np.zeros((hidden_size, 1))

    def forward(self, inputs):
        h_prev = np.zeros((self.hidden_size, 1))
        c_prev = np.zeros((self.hidden_size, 1))
        self.cache = []
        for x_t in inputs:
            x_t = x_t.reshape(-1, 1)
            z = np.vstack((h_prev, x_t))
            f = sigmoid(self.Wf @ z + self.bf)
            i = sigmoid(self.Wi @ z + self.bi)
            g = np.tanh(self.Wg @ z + self.bg)
            c = f * c_prev + i * g
            o = sigmoid(self.Wo @ z + self.bo)
            h = o * np.tanh(c)
            self.cache.append((f, i, g, o, c, h, c_prev, h_prev, z))
            h_prev, c_prev = h, c
        return h

    def backward(self, dL_dh, lr=0.01):
        dWf, dWi = np.zeros_like(self.Wf), np.zeros_like(self.Wi)
        dWg, dWo = np.zeros_like(self.Wg), np.zeros_like(self.Wo)
        dbf, dbi = np.zeros_like(self.bf), np.zeros_like(self.bi)
        dbg, dbo = np.zeros_like(self.bg), np.zeros_like(self.bo)
        dh_next = dL_dh
        dc_next = np.zeros((self.hidden_size, 1))
        for t in reversed(range(len(self.cache))):
            f, i, g, o, c, h, c_prev, h_prev, z = self.cache[t]
            do = dh_next * np.tanh(c)
            dco = dh_next * o * dtanh(np.tanh(c)) + dc_next
            df = dco * c_prev
            di = dco * g
            dg = dco * i
            dc_prev = dco * f
            dzf = df * dsigmoid(f)
            dzi = di * dsigmoid(i)
            dzg = dg * dtanh(g)
            dzo = do * dsigmoid(o)
            dWf += dzf @ z.T
            dWi += dzi @ z.T
            dWg += dzg @ z.T
            dWo += dzo @ z.T
            dbf += dzf
            dbi += dzi
            dbg += dzg
            dbo += dzo
            dz = (self.Wf.T @ dzf + self.Wi.T @ dzi + self.Wg.T @ dzg + self.Wo.T @ dzo)
            dh_next = dz[:self.hidden_size, :]
            dc_next = dc_prev
        params = [self.Wf, self.Wi, self.Wg, self.Wo, self.bf, self.bi, self.bg, self.bo]
        grads = [dWf, dWi, dWg, dWo, dbf, dbi, dbg, dbo]
        for param, dparam in zip(params, grads, strict=True):
            param -= lr * dparam


class LSTMNotebook(LSTM):
    """The notebook's forward: ``return h`` inside the time loop."""

    def forward(self, inputs):
        h_prev = np.zeros((self.hidden_size, 1))
        c_prev = np.zeros((self.hidden_size, 1))
        self.cache = []
        for x_t in inputs:
            x_t = x_t.reshape(-1, 1)
            z = np.vstack((h_prev, x_t))
            f = sigmoid(self.Wf @ z + self.bf)
            i = sigmoid(self.Wi @ z + self.bi)
            g = np.tanh(self.Wg @ z + self.bg)
            c = f * c_prev + i * g
            o = sigmoid(self.Wo @ z + self.bo)
            h = o * np.tanh(c)
            self.cache.append((f, i, g, o, c, h, c_prev, h_prev, z))
            h_prev, c_prev = h, c
            return h
