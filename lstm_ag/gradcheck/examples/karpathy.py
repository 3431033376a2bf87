"""A correct copy of Karpathy's batched LSTM (gist ``lstm.py``), ported to Python 3.

One matrix ``WLSTM (1 + D + H, 4H)`` on the row ``[1, x_t, h_{t-1}]``: the bias is its first
row, then the D input rows, then the H hidden rows; the 4H columns hold the gates in the order
i, f, o, g (IFOG). Inputs are time-major, ``X (n, b, D)``. ``LSTM.forward(X, WLSTM, c0=None,
h0=None) -> (Hout, C[t], Hout[t], cache)``; ``LSTM.backward(dHout_in, cache, dcn=None,
dhn=None) -> (dX, dWLSTM, dc0, dh0)``. Checked by ``lstm-ag-gradcheck karpathy.py`` (the style
is found from ``WLSTM``); the checker's tests plant bugs by changing one line.
"""
import numpy as np


class LSTM:

    @staticmethod
    def init(input_size, hidden_size, fancy_forget_bias_init=3):
        WLSTM = (np.random.randn(input_size + hidden_size + 1, 4 * hidden_size)
                 / np.sqrt(input_size + hidden_size))
        WLSTM[0, :] = 0
        if fancy_forget_bias_init != 0:
            WLSTM[0, hidden_size:2 * hidden_size] = fancy_forget_bias_init
        return WLSTM

    @staticmethod
    def forward(X, WLSTM, c0=None, h0=None):
        n, b, input_size = X.shape
        d = WLSTM.shape[1] // 4
        if c0 is None:
            c0 = np.zeros((b, d))
        if h0 is None:
            h0 = np.zeros((b, d))
        xphpb = WLSTM.shape[0]
        Hin = np.zeros((n, b, xphpb))
        Hout = np.zeros((n, b, d))
        IFOG = np.zeros((n, b, d * 4))
        IFOGf = np.zeros((n, b, d * 4))
        C = np.zeros((n, b, d))
        Ct = np.zeros((n, b, d))
        for t in range(n):
            prevh = Hout[t - 1] if t > 0 else h0
            Hin[t, :, 0] = 1
            Hin[t, :, 1:input_size + 1] = X[t]
            Hin[t, :, input_size + 1:] = prevh
            IFOG[t] = Hin[t].dot(WLSTM)
            IFOGf[t, :, :3 * d] = 1.0 / (1.0 + np.exp(-IFOG[t, :, :3 * d]))
            IFOGf[t, :, 3 * d:] = np.tanh(IFOG[t, :, 3 * d:])
            prevc = C[t - 1] if t > 0 else c0
            C[t] = IFOGf[t, :, :d] * IFOGf[t, :, 3 * d:] + IFOGf[t, :, d:2 * d] * prevc
            Ct[t] = np.tanh(C[t])
            Hout[t] = IFOGf[t, :, 2 * d:3 * d] * Ct[t]
        cache = {}
        cache['WLSTM'] = WLSTM
        cache['Hout'] = Hout
        cache['IFOGf'] = IFOGf
        cache['IFOG'] = IFOG
        cache['C'] = C
        cache['Ct'] = Ct
        cache['Hin'] = Hin
        cache['c0'] = c0
        cache['h0'] = h0
        return Hout, C[t], Hout[t], cache

    @staticmethod
    def backward(dHout_in, cache, dcn=None, dhn=None):
        WLSTM = cache['WLSTM']
        Hout = cache['Hout']
        IFOGf = cache['IFOGf']
        IFOG = cache['IFOG']
        C = cache['C']
        Ct = cache['Ct']
        Hin = cache['Hin']
        c0 = cache['c0']
        n, b, d = Hout.shape
        input_size = WLSTM.shape[0] - d - 1
        dIFOG = np.zeros(IFOG.shape)
        dIFOGf = np.zeros(IFOGf.shape)
        dWLSTM = np.zeros(WLSTM.shape)
        dHin = np.zeros(Hin.shape)
        dC = np.zeros(C.shape)
        dX = np.zeros((n, b, input_size))
        dh0 = np.zeros((b, d))
        dc0 = np.zeros((b, d))
        dHout = dHout_in.copy()
        if dcn is not None:
            dC[n - 1] += dcn.copy()
        if dhn is not None:
            dHout[n - 1] += dhn.copy()
        for t in reversed(range(n)):
            tanhCt = Ct[t]
            dIFOGf[t, :, 2 * d:3 * d] = tanhCt * dHout[t]
            dC[t] += (1 - tanhCt ** 2) * (IFOGf[t, :, 2 * d:3 * d] * dHout[t])
            if t > 0:
                dIFOGf[t, :, d:2 * d] = C[t - 1] * dC[t]
                dC[t - 1] += IFOGf[t, :, d:2 * d] * dC[t]
            else:
                dIFOGf[t, :, d:2 * d] = c0 * dC[t]
                dc0 = IFOGf[t, :, d:2 * d] * dC[t]
            dIFOGf[t, :, :d] = IFOGf[t, :, 3 * d:] * dC[t]
            dIFOGf[t, :, 3 * d:] = IFOGf[t, :, :d] * dC[t]
            dIFOG[t, :, 3 * d:] = (1 - IFOGf[t, :, 3 * d:] ** 2) * dIFOGf[t, :, 3 * d:]
            y = IFOGf[t, :, :3 * d]
            dIFOG[t, :, :3 * d] = (y * (1.0 - y)) * dIFOGf[t, :, :3 * d]
            dWLSTM += np.dot(Hin[t].transpose(), dIFOG[t])
            dHin[t] = dIFOG[t].dot(WLSTM.transpose())
            dX[t] = dHin[t, :, 1:input_size + 1]
            if t > 0:
                dHout[t - 1, :] += dHin[t, :, input_size + 1:]
            else:
                dh0 += dHin[t, :, input_size + 1:]
        return dX, dWLSTM, dc0, dh0
