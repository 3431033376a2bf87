"""Regenerate ``torch_lstm.npz``: PyTorch's numbers for an LSTM + linear readout + MSE.

Run from anywhere (needs torch)::

    python tests/data/make_torch_fixture.py

For every case in :data:`CASES` it builds, in float64, ``torch.nn.LSTM(D, H)`` followed by
``torch.nn.Linear(H, O)`` and the mean squared error, runs forward and backward, and stores
under keys ``"<case>.<name>"``:

- torch's own state-dict arrays: ``weight_ih_l0 (4H, D)``, ``weight_hh_l0 (4H, H)``,
  ``bias_ih_l0 (4H,)``, ``bias_hh_l0 (4H,)``, ``linear.weight (O, H)``, ``linear.bias (O,)``;
- the inputs ``xs (T, B, D)``, ``targets (T, B, O)``, the initial state ``h0, c0 (B, H)`` (zeros,
  and not passed to torch, when ``state_given`` is False) and the loss weights ``mask (T, B)``
  (all ones when ``mask_given`` is False: torch's plain ``mse_loss`` is used then);
- what torch computed: ``hs (T, B, H)``, the final ``h_T, c_T (B, H)``, ``ys (T, B, O)``,
  ``loss ()``, and the gradient of the loss with respect to every state-dict array
  (``grad.<name>``), to the inputs (``grad.xs``) and, when a state is given, to it
  (``grad.h0``, ``grad.c0``).

Stacked and bidirectional models, the cases of :data:`LAYER_CASES` (listed in the file as
``layer_cases``), are stored in this library's layout instead, from
``nn.LSTM(D, H, num_layers=L, bidirectional=...)`` + ``nn.Linear(dirs*H, O)`` in float64:

- ``params.<name>``: the parameters under :func:`lstm_ag.params.flatten`'s names (``Wx``,
  ``reverse.b``, ``layers.0.Wh``, ``layers.1.reverse.Wx``, ``Wy``, ``by``), ``Wx`` being
  torch's ``weight_ih.T``, ``Wh`` its ``weight_hh.T`` and ``b = bias_ih + bias_hh`` (torch
  ran with both biases drawn non-zero; its state dict is not stored, to keep the file small);
- ``num_layers`` and ``bidirectional``; the inputs ``xs (T, B, D)``, ``targets (T, B, O)``,
  ``lengths (B,)`` (int64, unequal, one of them T and one 1; all T when ``lengths_given`` is
  False, and then not passed to torch), ``h0, c0 (L*dirs, B, H)`` in torch's order (zeros and
  not passed when ``state_given`` is False) and ``mask (T, B)`` (all ones when ``mask_given``
  is False);
- what torch computed, with ``pack_padded_sequence(..., enforce_sorted=False)`` and
  ``pad_packed_sequence(..., total_length=T)`` when lengths are given: ``hs (T, B, dirs*H)``,
  the final ``h_T, c_T (L*dirs, B, H)``, ``ys (T, B, O)``, the ``loss`` ``sum(w * err**2) /
  (sum(w) * O)`` with ``w[t, b] = mask[t, b] * (t < lengths[b])``, and its gradients in this
  library's layout, ``grad.<name>`` for every ``params.<name>`` (``grad.b`` is torch's
  gradient of ``bias_ih``, equal to that of ``bias_hh``), and ``grad.xs``, ``grad.h0``,
  ``grad.c0`` (the last two when a state is given).

Parameters and data come from ``numpy.random.default_rng`` (not torch's initialiser), so a
new torch version changes only what torch computes, never its inputs. The file also records
``torch_version`` and the lists ``cases`` and ``layer_cases``. No pickles: every entry is a
numeric or a unicode-string array. ``build()`` returns the arrays without writing, for the
staleness tests.
"""
import os

import numpy as np

#: name -> ((T, B, D, H, O), seed, give an initial state, use a loss mask)
CASES = {
    "state": ((5, 3, 4, 6, 2), 0, True, False),
    "scalar": ((1, 1, 1, 1, 1), 1, False, False),
    "masked": ((12, 2, 3, 8, 2), 2, True, True),
}
#: name -> ((T, B, D, H, O), num_layers, bidirectional, seed, lengths or None, give an
#: initial state, use a loss mask). Lengths are unequal, unsorted, and include T and 1.
LAYER_CASES = {
    "stacked2": ((6, 3, 3, 4, 2), 2, False, 10, None, True, False),
    "stacked2_lengths": ((7, 4, 2, 3, 1), 2, False, 11, (7, 1, 4, 2), False, False),
    "bidir": ((5, 3, 2, 3, 4), 1, True, 12, None, False, False),
    "bidir_lengths": ((6, 4, 3, 4, 2), 1, True, 13, (3, 6, 1, 5), True, False),
    "deep_bidir": ((4, 3, 2, 3, 2), 3, True, 14, None, True, False),
    "deep_bidir_lengths": ((7, 4, 2, 3, 1), 3, True, 15, (5, 7, 1, 3), True, True),
}
#: parameters are drawn from U(-SCALE, SCALE): larger than nn.LSTM's default, so the gates
#: leave their linear region and a wrong nonlinearity or gate order shows.
SCALE = 0.7
FILENAME = "torch_lstm.npz"
LSTM_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
LINEAR_KEYS = ("weight", "bias")


def _case_arrays(shape, seed, state_given, mask_given):
    """The numpy inputs of one case: torch-layout parameters, data, state, mask."""
    T, B, D, H, n_out = shape
    rng = np.random.default_rng(seed)

    def u(*size):
        return rng.uniform(-SCALE, SCALE, size=size)

    out = {
        "weight_ih_l0": u(4 * H, D), "weight_hh_l0": u(4 * H, H),
        "bias_ih_l0": u(4 * H), "bias_hh_l0": u(4 * H),
        "linear.weight": u(n_out, H), "linear.bias": u(n_out),
        "xs": rng.standard_normal((T, B, D)), "targets": rng.standard_normal((T, B, n_out)),
    }
    if state_given:
        out["h0"], out["c0"] = rng.standard_normal((2, B, H))
    else:
        out["h0"], out["c0"] = np.zeros((2, B, H))
    if mask_given:
        mask = (rng.uniform(size=(T, B)) < 0.6).astype(np.float64)
        mask[-1] = 1.0                      # never all zeros
        out["mask"] = mask
    else:
        out["mask"] = np.ones((T, B))
    out["state_given"] = np.array(state_given)
    out["mask_given"] = np.array(mask_given)
    return out


def _run_torch(a, torch):
    """torch's forward and gradients for the numpy inputs ``a`` of one case."""
    D, H, n_out = a["xs"].shape[2], a["weight_hh_l0"].shape[1], a["targets"].shape[2]
    lstm = torch.nn.LSTM(D, H).double()
    linear = torch.nn.Linear(H, n_out).double()

    def t(v):
        return torch.from_numpy(np.array(v))

    lstm.load_state_dict({k: t(a[k]) for k in LSTM_KEYS})
    linear.load_state_dict({k: t(a["linear." + k]) for k in LINEAR_KEYS})
    xs = t(a["xs"]).requires_grad_()
    h0 = t(a["h0"])[None].requires_grad_()
    c0 = t(a["c0"])[None].requires_grad_()
    if bool(a["state_given"]):
        hs, (hT, cT) = lstm(xs, (h0, c0))
    else:
        hs, (hT, cT) = lstm(xs)
    ys = linear(hs)
    targets = t(a["targets"])
    if bool(a["mask_given"]):
        mask = t(a["mask"])
        loss = (mask[..., None] * (ys - targets) ** 2).sum() / (mask.sum() * n_out)
    else:
        loss = torch.nn.functional.mse_loss(ys, targets)
    loss.backward()

    def n(v):
        return v.detach().numpy().copy()

    out = {"hs": n(hs), "h_T": n(hT[0]), "c_T": n(cT[0]), "ys": n(ys), "loss": n(loss),
           "grad.xs": n(xs.grad)}
    for k, p in lstm.named_parameters():
        out["grad." + k] = n(p.grad)
    for k, p in linear.named_parameters():
        out["grad.linear." + k] = n(p.grad)
    if bool(a["state_given"]):
        out["grad.h0"], out["grad.c0"] = n(h0.grad[0]), n(c0.grad[0])
    return out


def _our_prefix(layer, reverse):
    """This library's name prefix of one layer and direction (lstm_ag.params.flatten's)."""
    owner = "" if layer == 0 else f"layers.{layer - 1}."
    return owner + ("reverse." if reverse else "")


def _torch_key(kind, layer, reverse):
    return f"{kind}_l{layer}{'_reverse' if reverse else ''}"


def _layer_case_arrays(shape, num_layers, bidirectional, seed, lengths, state_given,
                       mask_given):
    """The numpy inputs of one stacked or bidirectional case, ``(arrays, torch_state)``: the
    parameters in this library's layout, data, lengths, state and mask; and torch's state
    dicts of the same parameters (``nn.LSTM``'s keys, ``linear.weight``, ``linear.bias``)."""
    T, B, D, H, n_out = shape
    dirs = 2 if bidirectional else 1
    rng = np.random.default_rng(seed)

    def u(*size):
        return rng.uniform(-SCALE, SCALE, size=size)

    out = {"num_layers": np.array(num_layers), "bidirectional": np.array(bidirectional)}
    torch_state = {}
    for layer in range(num_layers):
        inputs = D if layer == 0 else dirs * H
        for reverse in (False, True)[:dirs]:
            w = {"weight_ih": u(4 * H, inputs), "weight_hh": u(4 * H, H),
                 "bias_ih": u(4 * H), "bias_hh": u(4 * H)}
            for kind, value in w.items():
                torch_state[_torch_key(kind, layer, reverse)] = value
            ours = _our_prefix(layer, reverse)
            out[f"params.{ours}Wx"] = w["weight_ih"].T.copy()
            out[f"params.{ours}Wh"] = w["weight_hh"].T.copy()
            out[f"params.{ours}b"] = w["bias_ih"] + w["bias_hh"]
    torch_state["linear.weight"], torch_state["linear.bias"] = u(n_out, dirs * H), u(n_out)
    out["params.Wy"] = torch_state["linear.weight"].T.copy()
    out["params.by"] = torch_state["linear.bias"].copy()
    out["xs"] = rng.standard_normal((T, B, D))
    out["targets"] = rng.standard_normal((T, B, n_out))
    out["lengths_given"] = np.array(lengths is not None)
    out["lengths"] = np.full(B, T, dtype=np.int64) if lengths is None else \
        np.array(lengths, dtype=np.int64)
    out["state_given"] = np.array(state_given)
    if state_given:
        out["h0"], out["c0"] = rng.standard_normal((2, num_layers * dirs, B, H))
    else:
        out["h0"], out["c0"] = np.zeros((2, num_layers * dirs, B, H))
    out["mask_given"] = np.array(mask_given)
    if mask_given:
        mask = (rng.uniform(size=(T, B)) < 0.7).astype(np.float64)
        mask[0] = 1.0                       # every sequence keeps its first step
        out["mask"] = mask
    else:
        out["mask"] = np.ones((T, B))
    return out, torch_state


def _run_torch_layers(a, torch_state, torch):
    """torch's forward and gradients (in this library's layout) for one stacked or
    bidirectional case."""
    T, B, D = a["xs"].shape
    n_out = a["targets"].shape[2]
    num_layers, bidirectional = int(a["num_layers"]), bool(a["bidirectional"])
    dirs = 2 if bidirectional else 1
    H = torch_state["weight_hh_l0"].shape[1]
    lstm = torch.nn.LSTM(D, H, num_layers=num_layers, bidirectional=bidirectional).double()
    linear = torch.nn.Linear(dirs * H, n_out).double()

    def t(v):
        return torch.from_numpy(np.array(v))

    lstm.load_state_dict({k: t(v) for k, v in torch_state.items() if "." not in k})
    linear.load_state_dict({k: t(torch_state["linear." + k]) for k in LINEAR_KEYS})
    xs = t(a["xs"]).requires_grad_()
    h0, c0 = t(a["h0"]).requires_grad_(), t(a["c0"]).requires_grad_()
    state = (h0, c0) if bool(a["state_given"]) else None
    if bool(a["lengths_given"]):
        lengths = t(a["lengths"])
        packed = torch.nn.utils.rnn.pack_padded_sequence(xs, lengths, enforce_sorted=False)
        out, (hT, cT) = lstm(packed, state)
        hs, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    else:
        lengths = torch.full((B,), T)
        hs, (hT, cT) = lstm(xs, state)
    ys = linear(hs)
    valid = (torch.arange(T)[:, None] < lengths[None, :]).double()
    w = t(a["mask"]) * valid
    loss = (w[..., None] * (ys - t(a["targets"])) ** 2).sum() / (w.sum() * n_out)
    loss.backward()

    def n(v):
        return v.detach().numpy().copy()

    result = {"hs": n(hs), "h_T": n(hT), "c_T": n(cT), "ys": n(ys), "loss": n(loss),
              "grad.xs": n(xs.grad)}
    for layer in range(num_layers):
        for reverse in (False, True)[:dirs]:
            ours = _our_prefix(layer, reverse)

            def g(kind, layer=layer, reverse=reverse):
                return n(getattr(lstm, _torch_key(kind, layer, reverse)).grad)

            result[f"grad.{ours}Wx"] = g("weight_ih").T.copy()
            result[f"grad.{ours}Wh"] = g("weight_hh").T.copy()
            result[f"grad.{ours}b"] = g("bias_ih")
    result["grad.Wy"] = n(linear.weight.grad).T.copy()
    result["grad.by"] = n(linear.bias.grad)
    if state is not None:
        result["grad.h0"], result["grad.c0"] = n(h0.grad), n(c0.grad)
    return result


def build():
    """Every case's arrays as one flat dict ``{"<case>.<name>": array}`` (needs torch)."""
    import torch

    arrays = {"torch_version": np.array(torch.__version__.split("+")[0]),
              "cases": np.array(list(CASES)), "layer_cases": np.array(list(LAYER_CASES))}
    for name, (shape, seed, state_given, mask_given) in CASES.items():
        a = _case_arrays(shape, seed, state_given, mask_given)
        a.update(_run_torch(a, torch))
        arrays.update({f"{name}.{k}": np.asarray(v) for k, v in a.items()})
    for name, case in LAYER_CASES.items():
        a, torch_state = _layer_case_arrays(*case)
        a.update(_run_torch_layers(a, torch_state, torch))
        arrays.update({f"{name}.{k}": np.asarray(v) for k, v in a.items()})
    return arrays


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), FILENAME)
    arrays = build()
    np.savez_compressed(path, **arrays)
    print(f"wrote {len(arrays)} arrays, {os.path.getsize(path)} bytes, torch "
          f"{arrays['torch_version']}, cases {', '.join(CASES)}, {', '.join(LAYER_CASES)}")


if __name__ == "__main__":
    main()
