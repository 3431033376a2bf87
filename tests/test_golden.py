"""Golden values printed by the five teaching notebooks this project grew from (not part of
the repository: the numbers are carried here), rebuilt through the public API.

Each test redraws the notebook's weights with its own seeded ``np.random`` calls, in the
notebook's order, converts them with ``lstm_ag.layouts`` and runs the library's forward.
"""
import numpy as np
from numpy.testing import assert_allclose
from tolerance import rounding

import lstm_ag
from lstm_ag import layouts


def test_notebook_000_last_output():
    np.random.seed(0)
    inputs = [np.random.randn(10) for _ in range(5)]          # a list of T vectors
    W = {}
    for gate in ("f", "i", "g", "o"):                          # Wf, Wi, Wc, Wo, then Wy
        W[gate] = np.random.randn(20, 20 + 10)
    Wy = np.random.randn(5, 20)
    params = layouts.from_concat(W, order="hx", Wy=Wy)        # biases are zeros there
    ys = lstm_ag.predict(params, inputs)
    assert ys.shape == (5, 5)
    assert_allclose(ys[-1], [0.79092756, 0.38927816, 0.07842032, 0.59984175, 2.35535945],
                    rtol=0, atol=1e-8)


def _steps(params, xs, h, c):
    """Run lstm_step by hand (as notebook 002 prints each step), returning every step."""
    zx = np.asarray(xs, float) @ params["Wx"] + params["b"]
    out = []
    for t in range(len(zx)):
        (h, c), (i, f, g, o, _) = lstm_ag.lstm_step(params["Wh"], zx[t:t + 1], h, c)
        out.append(dict(f=f, i=i, g=g, c=c, o=o, h=h))
    return out


def test_notebook_002_every_printed_number():
    W = {"f": 0.5, "i": 0.6, "g": 0.7, "o": 0.8}           # input weights
    U = {"f": 0.1, "i": 0.2, "g": 0.3, "o": 0.4}           # recurrent weights
    b = dict.fromkeys("figo", 0)
    params = layouts.from_split(W, U, b, Wy=4, by=0)
    X = [1, 2, 3]
    printed = [  # f, i, C~, C, o, h per time step
        (0.622, 0.646, 0.604, 0.390, 0.690, 0.256),
        (0.736, 0.778, 0.901, 0.988, 0.846, 0.640),
        (0.827, 0.873, 0.980, 1.672, 0.934, 0.871),
    ]
    steps = _steps(params, np.array(X, float)[:, None], np.zeros((1, 1)), np.zeros((1, 1)))
    for step, row in zip(steps, printed, strict=False):
        got = [step[k].item() for k in ("f", "i", "g", "c", "o", "h")]
        assert [f"{v:.3f}" for v in got] == [f"{v:.3f}" for v in row]
    y = lstm_ag.predict(params, X)                           # a list of scalars, D = 1
    assert f"{y[-1, 0]:.3f}" == "3.483"
    hs, (h, c) = lstm_ag.lstm_forward(params, X)
    assert_allclose(h, steps[-1]["h"][0], rtol=rounding(terms=3, steps=len(X)))
    assert_allclose(c, steps[-1]["c"][0], rtol=rounding(terms=3, steps=len(X)))


def test_notebook_003_one_step():
    np.random.seed(1010)
    W = {}
    for gate in ("f", "i", "g", "o"):
        W[gate] = np.random.randn(2, 3 + 2) * 0.01
    assert_allclose(W["f"][0], [-0.01175448, -0.00383148, -0.01471366, -0.01800569, 0.001301],
                    atol=5e-9)
    params = layouts.from_concat(W, order="hx")
    x = np.array([0.5, 0.8, 0.2])
    h_prev, c_prev = np.array([0.3, 0.4]), np.array([0.2, 0.3])
    (step,) = _steps(params, x[None, :], h_prev[None, :], c_prev[None, :])
    printed = {
        "f": [0.49336036, 0.49745089],
        "i": [0.50166712, 0.50006494],
        "g": [-0.00380958, -0.01686931],
        "o": [0.50037238, 0.49787955],
        "c": [0.09676093, 0.14079951],
        "h": [0.04826596, 0.0696416],
    }
    for name, values in printed.items():
        assert_allclose(step[name][0], values, rtol=0, atol=5e-9, err_msg=name)
    hs, (h, c) = lstm_ag.lstm_forward(params, x[None, :], state=(h_prev, c_prev))
    assert_allclose(h, printed["h"], atol=5e-9)
    assert_allclose(c, printed["c"], atol=5e-9)


def test_notebook_004_ten_steps():
    np.random.seed(42)
    X = np.random.randn(10, 1)
    W, U = {}, {}
    for gate in ("f", "i", "o", "g"):                      # init_gate() order: f, i, o, c
        W[gate] = np.random.randn(3, 1)
        U[gate] = np.random.randn(3, 3)
    params = layouts.from_split(W, U)
    h_rows = [
        [-0.06838731, 0.0556348, 0.0384087], [0.01475205, 0.03693393, -0.0193324],
        [-0.08216872, 0.06139141, 0.03432084], [-0.23114958, 0.02105894, 0.07702753],
        [0.02186098, 0.04988545, -0.02529256], [0.02750995, -0.05519482, -0.0365436],
        [-0.25106823, 0.00751881, 0.07938539], [-0.10473754, 0.05748257, 0.04476514],
        [0.04462827, -0.0511815, -0.05091572], [-0.07089089, 0.03518369, 0.03979818],
    ]
    c_rows = [
        [-0.11433312, 0.15898607, 0.07316267], [0.03020842, 0.06969316, -0.04111339],
        [-0.1353305, 0.19664685, 0.06577786], [-0.30046225, 0.16525991, 0.13928325],
        [0.03894745, 0.09486393, -0.05235555], [0.06498415, -0.09582965, -0.07753365],
        [-0.33023477, 0.0585076, 0.13181184], [-0.13950646, 0.23996981, 0.08281049],
        [0.10219754, -0.08239561, -0.11257399], [-0.11816676, 0.1017472, 0.07211155],
    ]
    hs, (h, c) = lstm_ag.lstm_forward(params, X)
    assert_allclose(hs, h_rows, rtol=0, atol=5e-9)
    steps = _steps(params, X, np.zeros((1, 3)), np.zeros((1, 3)))
    assert_allclose([s["c"][0] for s in steps], c_rows, rtol=0, atol=5e-9)
    assert_allclose(c, c_rows[-1], rtol=0, atol=5e-9)
