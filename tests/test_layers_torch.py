"""Stacked and bidirectional LSTMs, with and without variable lengths, against PyTorch.

Two oracles, as for the one-layer model (``test_torch_fixture.py``, ``test_torch.py``):

* the committed fixture ``tests/data/torch_lstm.npz``, whose ``layer_cases`` (from
  ``tests/data/make_torch_fixture.py``) hold ``nn.LSTM(D, H, num_layers=L,
  bidirectional=...)`` + ``nn.Linear(dirs*H, O)`` in float64, with packed sequences
  (``pack_padded_sequence(..., enforce_sorted=False)``) when lengths are given: (L, dirs) =
  (2, 1), (1, 2), (3, 2), each with and without lengths. These tests need no torch.
* torch itself, live (skipped without torch): random structures and sizes in float64 and
  float32, ``layouts.to_torch`` / ``from_torch`` both ways, and the bias note of
  ``to_torch``'s docstring.

Accuracy is relative to the largest entry of torch's array: ``max |ours - torch| /
max |torch|`` within 1e-12 for the forward (hidden states, final states, predictions, loss)
and 1e-10 for every gradient, by each of the methods "fast", "bptt" and "autograd"; 1e-5 in
float32.

Passed against torch 2.13.0 (CPU). Largest relative errors seen: float64 forward and loss
4.2e-16, gradients 1.8e-15 (fixture and live alike); float32 forward 3.1e-7, gradients 2.6e-6
(a bias gradient, its sum over steps and batch cancelling; 3.4e-6 at worst over 200 random
draws of the live structures).
"""
import os

import autograd
import numpy as np
import pytest
from tolerance import assert_close, rounding
from torch_fixture import FIXTURE, SCRIPT

import lstm_ag
from lstm_ag import layouts
from lstm_ag.params import flatten, structure, tree_map, unflatten

CASES = list(SCRIPT.LAYER_CASES)
METHODS = ("fast", "bptt", "autograd")
FORWARD_METHODS = ("fast", "autograd")       # lstm_forward, predict and mse take these
# Every value is O(1) and comes from at most 3 layers of 8 steps of dot products of length
# <= 2H + H = 12: the two libraries round within ~1e-15 of each other. A wrong direction,
# layer order, length or gate is off by 1e-2 or more.
FORWARD_RTOL = 1e-12
GRAD_RTOL = 1e-10
FLOAT32_RTOL = 1e-5


def assert_rel(ours, theirs, rtol, name):
    """max |ours - theirs| <= rtol * max |theirs|, the shapes equal (exactly equal where
    theirs is all zeros)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
    err = np.max(np.abs(ours - theirs), initial=0.0)
    scale = np.max(np.abs(theirs), initial=0.0)
    relative = err / scale if scale else np.inf
    assert err <= rtol * scale, (f"{name}: max abs error {err:.3g}, largest entry "
                                 f"{scale:.3g}, relative {relative:.3g} > {rtol:.0e}")


# --------------------------------------------------------------------------------------------
# (a) the committed fixture: no torch needed

@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def case_data(fixture, case):
    """One case's arrays (keys without the case prefix), with its params (our layout), the
    initial state, lengths and mask as the library takes them (None when not given)."""
    a = {k[len(case) + 1:]: v for k, v in fixture.items() if k.startswith(case + ".")}
    params = unflatten({k[len("params."):]: v for k, v in a.items() if k.startswith("params.")})
    state = (a["h0"], a["c0"]) if a["state_given"] else None
    lengths = a["lengths"] if a["lengths_given"] else None
    mask = a["mask"] if a["mask_given"] else None
    return a, params, state, lengths, mask


def test_layer_cases_are_listed_in_the_committed_fixture(fixture):
    assert os.path.getsize(FIXTURE) < 200_000
    assert list(fixture["layer_cases"]) == CASES
    structures = {SCRIPT.LAYER_CASES[c][1:3] for c in CASES}
    assert structures == {(2, False), (1, True), (3, True)}
    for L, bidirectional in structures:   # each structure with and without lengths
        given = {SCRIPT.LAYER_CASES[c][4] is not None for c in CASES
                 if SCRIPT.LAYER_CASES[c][1:3] == (L, bidirectional)}
        assert given == {True, False}, (L, bidirectional)


@pytest.mark.parametrize("case", CASES)
def test_layer_case_is_what_the_script_says(fixture, case):
    a, params, state, lengths, mask = case_data(fixture, case)
    (T, B, D, H, n_out), L, bidirectional, _, given_lengths, state_given, mask_given = \
        SCRIPT.LAYER_CASES[case]
    dirs = 2 if bidirectional else 1
    assert structure(params) == (L, dirs)
    assert lstm_ag.check_params(params, readout=True) == (D, H, n_out)
    assert {k: v.shape for k, v in flatten(params).items()} == lstm_ag.param_shapes(
        D, H, n_out, num_layers=L, bidirectional=bidirectional)
    assert all(v.dtype == np.float64 for v in flatten(params).values())
    assert a["xs"].shape == (T, B, D) and a["targets"].shape == (T, B, n_out)
    assert a["hs"].shape == (T, B, dirs * H)
    assert a["h_T"].shape == a["c_T"].shape == (L * dirs, B, H)
    assert {k[len("grad."):] for k in a if k.startswith("grad.")} == (
        set(flatten(params)) | {"xs"} | ({"h0", "c0"} if state_given else set()))
    assert B >= 3
    if given_lengths is None:
        assert lengths is None and np.all(a["lengths"] == T)
    else:
        assert lengths.dtype == np.int64 and list(lengths) == list(given_lengths)
        assert T in lengths and 1 in lengths and len(set(lengths)) == B   # unequal
        for b, n in enumerate(lengths):   # torch's padding: zero outputs, zero input gradient
            assert np.all(a["hs"][n:, b] == 0) and np.all(a["grad.xs"][n:, b] == 0)
            assert np.all(a["hs"][:n, b] != 0)
    if state_given:
        assert np.all(state[0] != 0) and np.all(state[1] != 0)
    else:
        assert state is None
    if mask_given:
        assert 0 < mask.sum() < mask.size
    else:
        assert mask is None


@pytest.mark.parametrize("method", FORWARD_METHODS)
@pytest.mark.parametrize("case", CASES)
def test_forward_final_state_and_predictions_equal_torch(fixture, case, method):
    a, params, state, lengths, mask = case_data(fixture, case)
    hs, (h, c) = lstm_ag.lstm_forward(params, a["xs"], state, lengths=lengths, method=method)
    assert_rel(hs, a["hs"], FORWARD_RTOL, "hs")
    assert_rel(h, a["h_T"], FORWARD_RTOL, "h_T")
    assert_rel(c, a["c_T"], FORWARD_RTOL, "c_T")
    ys, (h, c) = lstm_ag.predict(params, a["xs"], state, lengths=lengths, method=method,
                                 return_state=True)
    assert_rel(ys, a["ys"], FORWARD_RTOL, "ys")
    assert_rel(h, a["h_T"], FORWARD_RTOL, "h_T of predict")
    assert_rel(c, a["c_T"], FORWARD_RTOL, "c_T of predict")
    loss = lstm_ag.mse(params, a["xs"], a["targets"], state, mask=mask, lengths=lengths,
                       method=method)
    assert_rel(loss, a["loss"], FORWARD_RTOL, "loss")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_loss_and_every_gradient_equal_torch(fixture, case, method):
    a, params, state, lengths, mask = case_data(fixture, case)
    loss, grads = lstm_ag.value_and_grad(params, a["xs"], a["targets"], state, method=method,
                                         mask=mask, lengths=lengths)
    assert_rel(loss, a["loss"], FORWARD_RTOL, "loss")
    ours = flatten(grads)
    assert set(ours) == set(flatten(params))
    for name, g in ours.items():
        assert np.asarray(g).dtype == np.float64, name
        assert_rel(g, a["grad." + name], GRAD_RTOL, name)


@pytest.mark.parametrize("method", FORWARD_METHODS)
@pytest.mark.parametrize("case", CASES)
def test_gradients_to_inputs_and_initial_state_equal_torch(fixture, case, method):
    a, params, state, lengths, mask = case_data(fixture, case)

    def loss_of_xs(xs):
        return lstm_ag.mse(params, xs, a["targets"], state, mask=mask, lengths=lengths,
                           method=method)

    assert_rel(autograd.grad(loss_of_xs)(a["xs"]), a["grad.xs"], GRAD_RTOL, "xs")
    if state is None:
        return

    def loss_of_state(hc):
        return lstm_ag.mse(params, a["xs"], a["targets"], (hc[0], hc[1]), mask=mask,
                           lengths=lengths, method=method)

    dh0, dc0 = autograd.grad(loss_of_state)(np.stack(state))
    assert_rel(dh0, a["grad.h0"], GRAD_RTOL, "h0")
    assert_rel(dc0, a["grad.c0"], GRAD_RTOL, "c0")


@pytest.mark.parametrize("case", CASES)
def test_fixture_params_round_trip_through_torch_layout_exactly(fixture, case):
    # works with or without torch installed (tensors or numpy arrays)
    _, params, _, _, _ = case_data(fixture, case)
    sd, lin = layouts.to_torch(params, linear=True)
    assert_same(layouts.from_torch(sd, lin), params)


# --------------------------------------------------------------------------------------------
# (b) live against torch

def assert_same(ours, theirs):
    """The same tree, the same dtypes and the same bits."""
    ours, theirs = flatten(ours), flatten(theirs)
    assert list(ours) == list(theirs)
    for k in theirs:
        assert ours[k].dtype == theirs[k].dtype, k
        assert ours[k].shape == theirs[k].shape, k
        assert ours[k].tobytes() == theirs[k].tobytes(), k


def our_name(layer, reverse, key):
    """This library's flattened name of one layer and direction's ``Wx``, ``Wh`` or ``b``."""
    return ("" if layer == 0 else f"layers.{layer - 1}.") + ("reverse." if reverse else "") + key


def torch_key(kind, layer, reverse):
    return f"{kind}_l{layer}{'_reverse' if reverse else ''}"


def run_torch(torch, lstm, linear, xs, targets, state=None, lengths=None, mask=None):
    """torch's hs, final state, predictions, loss and parameter gradients (in our flattened
    layout, ``b`` from ``bias_ih``) for numpy inputs, as the fixture's script computes them."""
    T, B, _ = xs.shape
    dtype = next(lstm.parameters()).dtype
    lstm.zero_grad(set_to_none=True)
    linear.zero_grad(set_to_none=True)
    x = torch.from_numpy(xs)
    hx = None if state is None else tuple(torch.from_numpy(s) for s in state)
    if lengths is None:
        hs, (h, c) = lstm(x, hx)
        valid = torch.ones(T, B, dtype=dtype)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(lengths),
                                                         enforce_sorted=False)
        out, (h, c) = lstm(packed, hx)
        hs, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
        valid = (torch.arange(T)[:, None] < torch.from_numpy(lengths)[None, :]).to(dtype)
    ys = linear(hs)
    w = valid if mask is None else valid * torch.from_numpy(mask)
    loss = (w[..., None] * (ys - torch.from_numpy(targets)) ** 2).sum() / (
        w.sum() * ys.shape[-1])
    loss.backward()
    grads = {}
    for layer in range(lstm.num_layers):
        for reverse in (False, True)[:1 + lstm.bidirectional]:
            for kind, key in (("weight_ih", "Wx"), ("weight_hh", "Wh"), ("bias_ih", "b")):
                g = getattr(lstm, torch_key(kind, layer, reverse)).grad.numpy()
                grads[our_name(layer, reverse, key)] = g.T if g.ndim == 2 else g
    grads["Wy"], grads["by"] = linear.weight.grad.numpy().T, linear.bias.grad.numpy()

    def n(v):
        return v.detach().numpy()

    return n(hs), (n(h), n(c)), n(ys), loss.item(), grads


#: (num_layers, bidirectional, lengths given, state given, mask given, (T, B, D, H, O), seed)
LIVE = [
    (2, False, True, True, False, (9, 4, 3, 5, 2), 0),
    (1, True, True, False, True, (7, 5, 4, 3, 1), 1),
    (3, True, False, True, False, (6, 3, 2, 4, 3), 2),
    (2, True, True, True, True, (10, 6, 5, 6, 2), 3),
    (3, False, False, False, False, (5, 3, 1, 7, 1), 4),
]
LIVE_IDS = [f"L{s[0]}{'-bi' if s[1] else ''}{'-lengths' if s[2] else ''}" for s in LIVE]


def live_case(torch, spec, dtype):
    """A torch model with torch's own initialisation (both biases non-zero), its params by
    from_torch, and random inputs."""
    L, bidirectional, with_lengths, with_state, with_mask, (T, B, D, H, n_out), seed = spec
    dirs = 2 if bidirectional else 1
    torch.manual_seed(seed)
    tdtype = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    lstm = torch.nn.LSTM(D, H, num_layers=L, bidirectional=bidirectional, dtype=tdtype)
    linear = torch.nn.Linear(dirs * H, n_out, dtype=tdtype)
    with torch.no_grad():
        for p in lstm.parameters():       # larger than the default: the gates saturate
            p.uniform_(-0.7, 0.7)
    params = layouts.from_torch(lstm.state_dict(), linear.state_dict())
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    targets = rng.standard_normal((T, B, n_out)).astype(dtype)
    state = tuple(rng.standard_normal((2, L * dirs, B, H)).astype(dtype)) if with_state \
        else None
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[:2] = T, 1                # one full, one of a single step, the rest unsorted
        rng.shuffle(lengths)
    mask = (rng.uniform(size=(T, B)) < 0.7).astype(dtype) if with_mask else None
    if mask is not None:
        mask[0] = 1
    return lstm, linear, params, (xs, targets, state, lengths, mask)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("spec", LIVE, ids=LIVE_IDS)
def test_live_forward_equals_torch(spec, dtype):
    torch = pytest.importorskip("torch")
    lstm, linear, params, (xs, targets, state, lengths, mask) = live_case(torch, spec, dtype)
    assert all(v.dtype == dtype for v in flatten(params).values())
    hs_t, (h_t, c_t), ys_t, loss_t, _ = run_torch(torch, lstm, linear, xs, targets, state,
                                                  lengths, mask)
    rtol = FORWARD_RTOL if dtype == np.float64 else FLOAT32_RTOL
    for method in FORWARD_METHODS:
        hs, (h, c) = lstm_ag.lstm_forward(params, xs, state, lengths=lengths, method=method)
        assert hs.dtype == h.dtype == c.dtype == dtype
        assert_rel(hs, hs_t, rtol, f"hs ({method})")
        assert_rel(h, h_t, rtol, f"h_T ({method})")
        assert_rel(c, c_t, rtol, f"c_T ({method})")
        ys = lstm_ag.predict(params, xs, state, lengths=lengths, method=method)
        assert_rel(ys, ys_t, rtol, f"ys ({method})")
        loss = lstm_ag.mse(params, xs, targets, state, mask=mask, lengths=lengths,
                           method=method)
        assert_rel(loss, loss_t, rtol, f"loss ({method})")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("spec", LIVE, ids=LIVE_IDS)
def test_live_loss_and_gradients_equal_torch(spec, method, dtype):
    torch = pytest.importorskip("torch")
    lstm, linear, params, (xs, targets, state, lengths, mask) = live_case(torch, spec, dtype)
    _, _, _, loss_t, grads_t = run_torch(torch, lstm, linear, xs, targets, state, lengths,
                                         mask)
    rtol = (FORWARD_RTOL, GRAD_RTOL) if dtype == np.float64 else (FLOAT32_RTOL,) * 2
    loss, grads = lstm_ag.value_and_grad(params, xs, targets, state, method=method, mask=mask,
                                         lengths=lengths)
    assert_rel(loss, loss_t, rtol[0], "loss")
    ours = flatten(grads)
    assert set(ours) == set(grads_t)
    for name, g in grads_t.items():
        assert ours[name].dtype == dtype, name
        assert_rel(ours[name], g, rtol[1], name)


STRUCTURES = [(1, False), (2, False), (3, False), (1, True), (2, True), (3, True)]


@pytest.mark.parametrize("readout", [True, False], ids=["readout", "lstm-only"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("L, bidirectional", STRUCTURES)
def test_to_torch_loads_into_nn_lstm_and_round_trips_exactly(L, bidirectional, dtype, readout):
    torch = pytest.importorskip("torch")
    params = lstm_ag.init_params(3, 4, 2 if readout else None, num_layers=L,
                                 bidirectional=bidirectional, dtype=dtype, seed=L)
    params["b"][1] = -0.0                 # even a negative zero comes back as it went
    dirs = 2 if bidirectional else 1
    lstm = torch.nn.LSTM(3, 4, num_layers=L, bidirectional=bidirectional,
                         dtype={np.float64: torch.float64, np.float32: torch.float32}[dtype])
    out = layouts.to_torch(params, linear=readout)
    sd, lin = out if readout else (out, None)
    assert list(sd) == list(lstm.state_dict())           # torch's own keys, in its order
    for layer in range(L):
        for reverse in (False, True)[:dirs]:
            def key(kind, layer=layer, reverse=reverse):
                return torch_key(kind, layer, reverse)

            assert torch.equal(sd[key("weight_ih")],
                               torch.from_numpy(flatten(params)[our_name(layer, reverse,
                                                                         "Wx")].T))
            assert torch.equal(sd[key("bias_ih")],
                               torch.from_numpy(flatten(params)[our_name(layer, reverse, "b")]))
            assert not torch.any(sd[key("bias_hh")])
    lstm.load_state_dict(sd)                              # strict: every key, every shape
    back = layouts.from_torch(lstm.state_dict(), lin)
    assert_same(back, params if readout else {k: v for k, v in params.items()
                                              if k not in ("Wy", "by")})
    # module=True: the same, as modules
    modules = layouts.to_torch(params, linear=readout, module=True)
    module, linear = modules if readout else (modules, None)
    assert isinstance(module, torch.nn.LSTM) and not module.batch_first
    assert (module.num_layers, module.bidirectional) == (L, bidirectional)
    assert_same(layouts.from_torch(module.state_dict(),
                                   None if linear is None else linear.state_dict()), back)
    if readout:
        assert isinstance(linear, torch.nn.Linear)
        assert (linear.in_features, linear.out_features) == (dirs * 4, 2)


@pytest.mark.parametrize("L, bidirectional", [(2, True), (3, False), (1, True)])
def test_from_torch_sums_nonzero_bias_hh_in_every_layer_and_direction(L, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(7)
    lstm = torch.nn.LSTM(2, 3, num_layers=L, bidirectional=bidirectional).double()
    sd = lstm.state_dict()
    params = flatten(layouts.from_torch(sd))
    for layer in range(L):
        for reverse in (False, True)[:1 + bidirectional]:
            def t(kind, layer=layer, reverse=reverse):
                return sd[torch_key(kind, layer, reverse)].numpy()

            assert np.all(t("bias_hh") != 0)
            assert np.array_equal(params[our_name(layer, reverse, "b")],
                                  t("bias_ih") + t("bias_hh"))
            assert np.array_equal(params[our_name(layer, reverse, "Wx")], t("weight_ih").T)
            assert np.array_equal(params[our_name(layer, reverse, "Wh")], t("weight_hh").T)
    # and the summed model is torch's model
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((5, 3, 2))
    with torch.no_grad():
        hs_t, (h_t, _) = lstm(torch.from_numpy(xs))
    hs, (h, _) = lstm_ag.lstm_forward(unflatten(params), xs)
    assert_rel(hs, hs_t.numpy(), FORWARD_RTOL, "hs")
    assert_rel(h, h_t.numpy() if L * (1 + bidirectional) > 1 else h_t[0].numpy(),
               FORWARD_RTOL, "h_T")


def test_a_torch_twin_trained_with_both_biases_diverges_unless_bias_hh_is_frozen():
    """to_torch's note: torch's SGD moves bias_ih and bias_hh each by the step of b."""
    torch = pytest.importorskip("torch")
    params = lstm_ag.init_params(2, 3, 1, num_layers=2, bidirectional=True, seed=3)
    rng = np.random.default_rng(3)
    xs, targets = rng.standard_normal((6, 3, 2)), rng.standard_normal((6, 3, 1))
    lr = 0.5
    _, grads = lstm_ag.value_and_grad(params, xs, targets)
    stepped = tree_map(lambda p, g: p - lr * g, params, grads)

    def torch_step(freeze):
        lstm, linear = layouts.to_torch(params, linear=True, module=True)
        if freeze:
            for name, p in lstm.named_parameters():
                if name.startswith("bias_hh"):
                    p.requires_grad_(False)
        trainable = [p for p in [*lstm.parameters(), *linear.parameters()] if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=lr)
        loss = torch.nn.functional.mse_loss(linear(lstm(torch.from_numpy(xs))[0]),
                                            torch.from_numpy(targets))
        loss.backward()
        optimizer.step()
        return flatten(layouts.from_torch(lstm.state_dict(), linear.state_dict()))

    ours = flatten(stepped)
    frozen, free = torch_step(freeze=True), torch_step(freeze=False)
    for name, value in ours.items():
        assert_rel(frozen[name], value, 1e-13, name)
        if name.rsplit(".", 1)[-1] == "b":  # the free twin's b moved twice as far
            assert_rel(free[name] - flatten(params)[name],
                       2 * (value - flatten(params)[name]), 1e-10, name)
        else:
            assert_rel(free[name], value, 1e-13, name)


# --------------------------------------------------------------------------------------------
# (c) a stale fixture (script changed, file not regenerated) fails here where torch is

COMPUTED = ("hs", "h_T", "c_T", "ys", "loss", "grad.")


def test_regenerating_the_fixture_gives_the_committed_layer_cases(fixture):
    pytest.importorskip("torch")
    fresh = SCRIPT.build()
    assert sorted(fresh) == sorted(fixture)
    assert list(fresh["layer_cases"]) == list(fixture["layer_cases"]) == CASES
    checked = 0
    for k, v in fresh.items():
        case, _, name = k.partition(".")
        if case not in CASES:
            continue                      # the one-layer cases: test_torch_fixture.py
        committed = fixture[k]
        assert v.dtype == committed.dtype and v.shape == committed.shape, k
        if name.startswith(COMPUTED):
            # torch's results: a few ulps apart at most from the torch that wrote the file
            # (another version or BLAS), bit-identical on the same build
            assert_close(v, committed, rounding(terms=64), err_msg=k)
        else:
            # parameters, data, lengths, state and mask from numpy's seeded generator
            np.testing.assert_array_equal(v, committed, err_msg=k)
        checked += 1
    assert checked == sum(k.partition(".")[0] in CASES for k in fixture)
