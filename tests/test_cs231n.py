"""CS231n's published LSTM numbers as an outside oracle (assignment 3, ``LSTM_Captioning.ipynb``).

The notebook checks a student's ``lstm_step_forward`` and ``lstm_forward`` against expected
values printed to 8 decimals, for inputs built with ``np.linspace``. The inputs and numbers below
are the notebook's, identical in two independent copies of it: ``AKSoo/CS231n-2017`` and
``0809zheng/CS231n-assignment2019``, both at ``assignment3/LSTM_Captioning.ipynb`` (their
printed errors of correct solutions: 5.7e-9 for the step, 8.6e-8 for the sequence, as
``max |x - y| / (|x| + |y|)``).

CS231n is row-vector, like us (``a = x @ Wx + prev_h @ Wh + b``, ``Wx (D, 4H)``), but orders the
four blocks of the 4H axis i, f, o, g; ours is i, f, g, o. ``to_our_gate_order`` swaps the last
two blocks of every 4H axis.
"""
import numpy as np
import pytest
from tolerance import rounding

import lstm_ag

# Our block k (i, f, g, o) is CS231n's block CS231N_BLOCK[k] of (i, f, o, g). The swap is its
# own inverse.
CS231N_BLOCK = (0, 1, 3, 2)

# The printed values are correctly rounded to 8 decimals: the exact ones are within half a unit
# of the last place of them, and ours are within ~1e-16 of the exact ones.
PRINTED = {"rtol": 0, "atol": 0.5e-8 + 1e-15}


def to_our_gate_order(M):
    """CS231n's ``(..., 4H)`` array (blocks i, f, o, g) in our order (i, f, g, o)."""
    blocks = np.split(np.asarray(M), 4, axis=-1)
    return np.concatenate([blocks[k] for k in CS231N_BLOCK], axis=-1)


def step_inputs():
    """The notebook's "LSTM: step forward" cell, in CS231n's layout and gate order."""
    N, D, H = 3, 4, 5
    x = np.linspace(-0.4, 1.2, num=N * D).reshape(N, D)
    prev_h = np.linspace(-0.3, 0.7, num=N * H).reshape(N, H)
    prev_c = np.linspace(-0.4, 0.9, num=N * H).reshape(N, H)
    Wx = np.linspace(-2.1, 1.3, num=4 * D * H).reshape(D, 4 * H)
    Wh = np.linspace(-0.7, 2.2, num=4 * H * H).reshape(H, 4 * H)
    b = np.linspace(0.3, 0.7, num=4 * H)
    return x, prev_h, prev_c, Wx, Wh, b


EXPECTED_NEXT_H = np.asarray([
    [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
    [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
    [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]])
EXPECTED_NEXT_C = np.asarray([
    [0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
    [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
    [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]])


def sequence_inputs():
    """The notebook's "LSTM: forward" cell: x is batch-major ``(N, T, D)``; c0 is zero."""
    N, D, H, T = 2, 5, 4, 3
    x = np.linspace(-0.4, 0.6, num=N * T * D).reshape(N, T, D)
    h0 = np.linspace(-0.4, 0.8, num=N * H).reshape(N, H)
    Wx = np.linspace(-0.2, 0.9, num=4 * D * H).reshape(D, 4 * H)
    Wh = np.linspace(-0.3, 0.6, num=4 * H * H).reshape(H, 4 * H)
    b = np.linspace(0.2, 0.7, num=4 * H)
    return x, h0, Wx, Wh, b


EXPECTED_H = np.asarray([                     # (N, T, H), batch-major as CS231n
    [[0.01764008, 0.01823233, 0.01882671, 0.0194232],
     [0.11287491, 0.12146228, 0.13018446, 0.13902939],
     [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
    [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
     [0.6704845, 0.69350089, 0.71486014, 0.7346449],
     [0.81733511, 0.83677871, 0.85403753, 0.86935314]]])


def our_params(Wx, Wh, b, permute=True):
    convert = to_our_gate_order if permute else np.asarray
    return {"Wx": convert(Wx), "Wh": convert(Wh), "b": convert(b)}


def test_gate_order_conversion_moves_the_candidate_block():
    M = np.repeat(np.array([[10, 20, 30, 40]]), 2, axis=1)      # blocks of H = 2
    assert to_our_gate_order(M).tolist() == [[10, 10, 20, 20, 40, 40, 30, 30]]
    x = np.arange(12.0).reshape(1, 12)
    np.testing.assert_array_equal(to_our_gate_order(to_our_gate_order(x)), x)


def test_lstm_step_gives_cs231n_expected_next_h_and_next_c():
    x, prev_h, prev_c, Wx, Wh, b = step_inputs()
    p = our_params(Wx, Wh, b)
    (next_h, next_c), (i, f, g, o, tanh_c) = lstm_ag.lstm_step(
        p["Wh"], x @ p["Wx"] + p["b"], prev_h, prev_c)
    np.testing.assert_allclose(next_h, EXPECTED_NEXT_H, **PRINTED)
    np.testing.assert_allclose(next_c, EXPECTED_NEXT_C, **PRINTED)
    # the step's cached gates are the notebook's equations
    np.testing.assert_allclose(next_c, f * prev_c + i * g, rtol=rounding(terms=2))
    np.testing.assert_allclose(next_h, o * tanh_c, rtol=rounding(terms=1))


def test_lstm_forward_one_step_gives_cs231n_expected_next_h_and_next_c():
    x, prev_h, prev_c, Wx, Wh, b = step_inputs()
    hs, (h, c) = lstm_ag.lstm_forward(our_params(Wx, Wh, b), x[None],
                                      state=(prev_h, prev_c))
    np.testing.assert_allclose(hs[0], EXPECTED_NEXT_H, **PRINTED)
    np.testing.assert_allclose(h, EXPECTED_NEXT_H, **PRINTED)
    np.testing.assert_allclose(c, EXPECTED_NEXT_C, **PRINTED)


def test_lstm_forward_gives_cs231n_expected_h_over_a_sequence():
    x, h0, Wx, Wh, b = sequence_inputs()
    xs = x.transpose(1, 0, 2)                                     # time-major (T, N, D)
    hs, (h, _) = lstm_ag.lstm_forward(our_params(Wx, Wh, b), xs,
                                      state=(h0, np.zeros_like(h0)))
    np.testing.assert_allclose(hs.transpose(1, 0, 2), EXPECTED_H, **PRINTED)
    np.testing.assert_allclose(h, EXPECTED_H[:, -1], **PRINTED)


@pytest.mark.parametrize("which", ["step", "sequence"])
def test_without_the_gate_permutation_the_numbers_are_far_off(which):
    # so the tests above prove the order matters: CS231n's o and g blocks taken as our g and o
    if which == "step":
        x, prev_h, prev_c, Wx, Wh, b = step_inputs()
        _, (h, c) = lstm_ag.lstm_forward(our_params(Wx, Wh, b, permute=False), x[None],
                                         state=(prev_h, prev_c))
        errors = [np.abs(h - EXPECTED_NEXT_H).max(), np.abs(c - EXPECTED_NEXT_C).max()]
    else:
        x, h0, Wx, Wh, b = sequence_inputs()
        hs, _ = lstm_ag.lstm_forward(our_params(Wx, Wh, b, permute=False),
                                     x.transpose(1, 0, 2), state=(h0, np.zeros_like(h0)))
        errors = [np.abs(hs.transpose(1, 0, 2) - EXPECTED_H).max()]
    assert min(errors) > 1e-2, errors
