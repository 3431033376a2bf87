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

Parameters and data come from ``numpy.random.default_rng`` (not torch's initialiser), so a
new torch version changes only what torch computes, never its inputs. The file also records
``torch_version`` and the list of ``cases``. No pickles: every entry is a numeric or a
unicode-string array. ``build()`` returns the arrays without writing, for the staleness test.
"""
import os

import numpy as np

#: name -> ((T, B, D, H, O), seed, give an initial state, use a loss mask)
CASES = {
    "state": ((5, 3, 4, 6, 2), 0, True, False),
    "scalar": ((1, 1, 1, 1, 1), 1, False, False),
    "masked": ((12, 2, 3, 8, 2), 2, True, True),
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


def build():
    """Every case's arrays as one flat dict ``{"<case>.<name>": array}`` (needs torch)."""
    import torch

    arrays = {"torch_version": np.array(torch.__version__.split("+")[0]),
              "cases": np.array(list(CASES))}
    for name, (shape, seed, state_given, mask_given) in CASES.items():
        a = _case_arrays(shape, seed, state_given, mask_given)
        a.update(_run_torch(a, torch))
        arrays.update({f"{name}.{k}": np.asarray(v) for k, v in a.items()})
    return arrays


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), FILENAME)
    arrays = build()
    np.savez_compressed(path, **arrays)
    print(f"wrote {len(arrays)} arrays, {os.path.getsize(path)} bytes, torch "
          f"{arrays['torch_version']}, cases {', '.join(CASES)}")


if __name__ == "__main__":
    main()
