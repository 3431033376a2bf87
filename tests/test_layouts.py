"""Layout conversions: exact round trips, agreement with the forward, named errors."""
import numpy as np
import pytest
from numpy.testing import assert_allclose
from tolerance import assert_close, rounding

import lstm_ag
from lstm_ag import layouts
from lstm_ag.params import flatten, lstm_layers


@pytest.fixture(params=[np.float64, np.float32])
def params(request):
    return lstm_ag.init_params(3, 4, 2, seed=9, dtype=request.param)


def same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("order", ["hx", "xh"])
def test_concat_round_trip(params, order):
    out = layouts.to_concat(params, order=order)
    assert out["W"]["i"].shape == (4, 4 + 3) and out["Wy"].shape == (2, 4)
    same(layouts.from_concat(**out), params)


def test_split_round_trip(params):
    out = layouts.to_split(params)
    assert out["W"]["g"].shape == (4, 3) and out["U"]["g"].shape == (4, 4)
    same(layouts.from_split(**out), params)


def test_keras_round_trip(params):
    out = layouts.to_keras(params)
    assert out["kernel"].shape == (3, 16) and out["recurrent_kernel"].shape == (4, 16)
    same(layouts.from_keras(**out), params)


def test_torch_round_trip_with_and_without_torch(params):
    lstm, linear = layouts.to_torch(params, linear=True)
    assert tuple(lstm["weight_ih_l0"].shape) == (16, 3)
    assert tuple(lstm["weight_hh_l0"].shape) == (16, 4)
    assert np.all(np.asarray(lstm["bias_hh_l0"]) == 0)
    same(layouts.from_torch(lstm, linear), params)
    core = {k: v for k, v in params.items() if k in ("Wx", "Wh", "b")}
    same(layouts.from_torch(layouts.to_torch(params)), core)


def torch_like(D, H, *, layer=0, reverse=False, rng=None):
    """The four arrays of one nn.LSTM layer and direction, numpy, under torch's keys."""
    rng = rng or np.random.default_rng(layer)
    suffix = f"_l{layer}{'_reverse' if reverse else ''}"
    return {"weight_ih" + suffix: rng.standard_normal((4 * H, D)),
            "weight_hh" + suffix: rng.standard_normal((4 * H, H)),
            "bias_ih" + suffix: rng.standard_normal(4 * H),
            "bias_hh" + suffix: rng.standard_normal(4 * H)}


@pytest.mark.parametrize("L, bidirectional", [(1, False), (2, False), (3, False), (1, True),
                                              (2, True), (3, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_round_trip_of_every_structure_is_bitwise(L, bidirectional, dtype):
    params = lstm_ag.init_params(3, 4, 2, num_layers=L, bidirectional=bidirectional,
                                 dtype=dtype, seed=L)
    params["b"][0] = -0.0               # the sign of a zero bias survives too
    lstm, linear = layouts.to_torch(params, linear=True)
    dirs = 2 if bidirectional else 1
    names = [f"{kind}_l{layer}{suffix}" for layer in range(L)
             for suffix in ("", "_reverse")[:dirs]
             for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert list(lstm) == names            # nn.LSTM's keys, in its order
    assert tuple(lstm[names[-4]].shape) == (16, 3 if L == 1 else dirs * 4)
    assert tuple(linear["weight"].shape) == (2, dirs * 4)
    assert all(not np.any(np.asarray(lstm[k])) for k in names if k.startswith("bias_hh"))
    back = layouts.from_torch(lstm, linear)
    flat, flat_back = flatten(params), flatten(back)
    assert list(flat_back) == list(flat)
    for k, v in flat.items():
        assert flat_back[k].dtype == v.dtype and flat_back[k].tobytes() == v.tobytes(), k
    core = layouts.from_torch(layouts.to_torch(params))
    assert set(flatten(core)) == set(flat) - {"Wy", "by"}


def test_from_torch_places_every_layer_and_direction():
    rng = np.random.default_rng(4)
    sd = {**torch_like(3, 2, rng=rng), **torch_like(3, 2, reverse=True, rng=rng),
          **torch_like(4, 2, layer=1, rng=rng), **torch_like(4, 2, layer=1, reverse=True,
                                                               rng=rng)}
    params = layouts.from_torch(sd)
    for owner, suffix in [(params, "_l0"), (params["reverse"], "_l0_reverse"),
                          (params["layers"][0], "_l1"),
                          (params["layers"][0]["reverse"], "_l1_reverse")]:
        assert np.array_equal(owner["Wx"], sd["weight_ih" + suffix].T)
        assert np.array_equal(owner["Wh"], sd["weight_hh" + suffix].T)
        assert np.array_equal(owner["b"], sd["bias_ih" + suffix] + sd["bias_hh" + suffix])
    assert set(params) == {"Wx", "Wh", "b", "reverse", "layers"}
    # an LSTM with bias=False: zeros
    no_bias = layouts.from_torch({k: v for k, v in sd.items() if k.startswith("weight")})
    assert all(not np.any(v) for k, v in flatten(no_bias).items() if k.endswith("b"))


@pytest.mark.parametrize("convert", [layouts.to_concat, layouts.to_split, layouts.to_keras])
@pytest.mark.parametrize("L, bidirectional", [(2, False), (1, True)])
def test_one_layer_layouts_refuse_stacked_or_bidirectional_params(convert, L, bidirectional):
    params = lstm_ag.init_params(3, 4, 2, num_layers=L, bidirectional=bidirectional)
    with pytest.raises(ValueError, match=rf"{convert.__name__} converts one layer in one "
                                         rf"direction; params has {L} layers? and "
                                         rf"{1 + bidirectional} directions?"):
        convert(params)
    # each layer and direction on its own converts
    for directions in lstm_layers(params):
        for weights in directions:
            assert convert(weights)


def test_torch_biases_are_summed():
    rng = np.random.default_rng(0)
    sd = {"weight_ih_l0": rng.standard_normal((8, 1)), "weight_hh_l0": rng.standard_normal((8, 2)),
          "bias_ih_l0": rng.standard_normal(8), "bias_hh_l0": rng.standard_normal(8)}
    assert_allclose(layouts.from_torch(sd)["b"], sd["bias_ih_l0"] + sd["bias_hh_l0"])


def test_concat_orders_describe_the_same_lstm():
    rng = np.random.default_rng(1)
    H, D = 3, 2
    W_hx = {k: rng.standard_normal((H, H + D)) for k in "ifgo"}
    W_xh = {k: np.concatenate([w[:, H:], w[:, :H]], axis=1) for k, w in W_hx.items()}
    same(layouts.from_concat(W_hx, order="hx"), layouts.from_concat(W_xh, order="xh"))


def test_concat_matches_a_column_vector_step():
    """One step of the notebooks' equations, z_k = W_k @ [h; x] + b_k, equals the forward."""
    rng = np.random.default_rng(2)
    H, D = 3, 2
    W = {k: rng.standard_normal((H, H + D)) for k in "ifgo"}
    b = {k: rng.standard_normal((H, 1)) for k in "ifgo"}
    x, h, c = rng.standard_normal((D, 1)), rng.standard_normal((H, 1)), rng.standard_normal((H, 1))
    v = np.vstack([h, x])
    def s(z):
        return 1 / (1 + np.exp(-z))
    i, f, o = (s(W[k] @ v + b[k]) for k in "ifo")
    g = np.tanh(W["g"] @ v + b["g"])
    c1 = f * c + i * g
    h1 = o * np.tanh(c1)
    _, (h_out, c_out) = lstm_ag.lstm_forward(layouts.from_concat(W, b), x.T, (h[:, 0], c[:, 0]))
    assert_close(h_out, h1[:, 0], rounding(terms=H + D + 1))
    assert_close(c_out, c1[:, 0], rounding(terms=H + D + 1))


def test_scalars_count_as_one_by_one():
    p = layouts.from_split(dict.fromkeys("ifgo", 0.5), dict.fromkeys("ifgo", 0.1),
                           dict.fromkeys("ifgo", 0), Wy=4, by=0)
    assert {k: v.shape for k, v in p.items()} == lstm_ag.param_shapes(1, 1, 1)
    assert p["Wx"].dtype == np.float64


@pytest.mark.parametrize("call, error, match", [
    (lambda: layouts.from_concat({k: np.zeros((2, 5)) for k in "ifo"}), ValueError,
     r"W must have exactly the gates .*missing \['g'\]"),
    (lambda: layouts.from_concat({**{k: np.zeros((2, 5)) for k in "ifo"}, "g": np.zeros((2, 4))}),
     ValueError, r"W\['g'\] must have shape \(H, H \+ D\) = \(2, 5\), got \(2, 4\)"),
    (lambda: layouts.from_concat({k: np.zeros((2, 5)) for k in "ifgo"},
                                 {k: np.zeros(3) for k in "ifgo"}),
     ValueError, r"b\['i'\] must have shape \(H,\) = \(2,\) or \(2, 1\), got \(3,\)"),
    (lambda: layouts.from_concat({k: np.zeros((2, 5)) for k in "ifgo"}, Wy=np.zeros((1, 3))),
     ValueError, r"Wy must have shape \(O, H\) = \(O, 2\), got \(1, 3\)"),
    (lambda: layouts.from_concat({k: np.zeros((2, 5)) for k in "ifgo"}, order="yx"),
     ValueError, r"order must be 'hx' or 'xh'"),
    (lambda: layouts.from_split({k: np.zeros((2, 3)) for k in "ifgo"},
                                {k: np.zeros((2, 3)) for k in "ifgo"}),
     ValueError, r"U\['i'\] must have shape \(H, H\) = \(2, 2\), got \(2, 3\)"),
    (lambda: layouts.from_split([1, 2], {}), TypeError, r"W must be a dict keyed by gate"),
    (lambda: layouts.from_torch({"weight_ih_l0": np.zeros((8, 1))}), ValueError,
     r"state_dict is missing 'weight_hh_l0'"),
    (lambda: layouts.from_torch({"weight_ih_l0": np.zeros((7, 1)),
                                 "weight_hh_l0": np.zeros((8, 2))}),
     ValueError, r"weight_ih_l0'\] must have shape \(4H, D\) = \(8, D\), got \(7, 1\)"),
    (lambda: layouts.from_torch({"weight_ih_l0": np.zeros((8, 1)), "weight_hh_l0": np.zeros((8, 2)),
                                 "weight_ih_l1": np.zeros((8, 2))}),
     ValueError, r"state_dict is missing 'weight_hh_l1'"),
    (lambda: layouts.from_torch({**torch_like(1, 2), **torch_like(1, 2, layer=2)}),
     ValueError, r"layers \[0, 2\] .* none of layer 1"),
    (lambda: layouts.from_torch({**torch_like(1, 2), **torch_like(1, 2, reverse=True),
                                 **torch_like(2, 2, layer=1)}),
     ValueError, r"_reverse keys for layers \[0\] but not for layers \[1\]"),
    (lambda: layouts.from_torch({**torch_like(1, 2), **torch_like(3, 2, layer=1)}),
     ValueError, r"weight_ih_l1'\] must have shape \(4H, H\) = \(8, 2\), got \(8, 3\)"),
    (lambda: layouts.from_torch({**torch_like(1, 2), **torch_like(1, 2, reverse=True),
                                 **torch_like(2, 2, layer=1),
                                 **torch_like(2, 2, layer=1, reverse=True)}),
     ValueError, r"weight_ih_l1'\] must have shape \(4H, 2H\) = \(8, 4\), got \(8, 2\)"),
    (lambda: layouts.from_torch({**torch_like(1, 2), "weight_hr_l0": np.zeros((2, 1))}),
     ValueError, r"\['weight_hr_l0'\] .*proj_size"),
    (lambda: layouts.from_torch({**torch_like(1, 2), "bias_ih_l0": np.zeros(7)}),
     ValueError, r"bias_ih_l0'\] must have shape \(4H,\) = \(8,\)"),
    (lambda: layouts.from_torch({}), ValueError, r"state_dict is empty"),
    (lambda: layouts.from_torch({**torch_like(1, 2), **torch_like(1, 2, reverse=True)},
                                {"weight": np.zeros((1, 2)), "bias": np.zeros(1)}),
     ValueError, r"linear\['weight'\] must have shape \(O, dirs\*H\) = \(O, 4\), got \(1, 2\)"),
    (lambda: layouts.from_keras(np.zeros((3, 8)), np.zeros((2, 8)), np.zeros(7)), ValueError,
     r"bias must have shape \(4H,\) = \(8,\)"),
    (lambda: layouts.from_keras(np.zeros((3, 12)), np.zeros((2, 8))), ValueError,
     r"kernel must have shape \(D, 4H\) = \(D, 8\), got \(3, 12\)"),
    (lambda: layouts.from_keras(np.zeros((3, 8)), np.array([["a"] * 8] * 2)), TypeError,
     r"recurrent_kernel must be an array of numbers"),
])
def test_bad_layouts_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
