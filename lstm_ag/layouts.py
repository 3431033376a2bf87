"""Conversions between this library's parameters and other layouts.

This library: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)``, row
vectors (``z = x @ Wx + h @ Wh + b``), gates i, f, g, o along the 4H axis.

* **concat** (notebooks 000, 001, 003): one matrix per gate acting on the stacked column
  ``v = [h; x]`` (``order="hx"``) or ``[x; h]`` (``order="xh"``): ``z_k = W[k] @ v + b[k]``,
  ``W[k]`` of shape ``(H, H + D)``.
* **split** (notebook 004; notebook 002 with scalars): ``z_k = W[k] @ x + U[k] @ h + b[k]``,
  ``W[k] (H, D)``, ``U[k] (H, H)``.
* **torch**: ``nn.LSTM`` layer 0, ``weight_ih_l0 (4H, D)``, ``weight_hh_l0 (4H, H)``, two
  biases ``(4H,)`` that are summed on import; on export the bias goes to ``bias_ih_l0`` and
  ``bias_hh_l0`` is zero. An ``nn.Linear(H, O)`` readout is ``weight (O, H)``, ``bias (O,)``.
* **keras**: ``kernel (D, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias (4H,)``; a ``Dense``
  readout's kernel is ``Wy`` as it is.

The per-gate dicts are keyed ``"i", "f", "g", "o"`` (``"g"`` is the candidate, the notebooks'
C~ or W_c). Scalars count as 1x1 matrices, column vectors ``(H, 1)`` as ``(H,)``. Every
``to_*`` returns a dict whose keys are the matching ``from_*``'s arguments, so
``from_concat(**to_concat(params))`` gives ``params`` back exactly.
"""
from typing import Any

import numpy as np

from .params import GATES, check_params, shape_text, split_gates

__all__ = ["from_concat", "to_concat", "from_split", "to_split", "from_torch", "to_torch",
           "from_keras", "to_keras"]


def _numpy(value, name):
    """A float numpy array from an array, a scalar, a list or a torch tensor."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):   # a torch tensor
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError):
            raise TypeError(f"{name} is a tensor of dtype {value.dtype}, which numpy cannot "
                            "hold; convert it with .double() or .float() first") from None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of numbers ({err})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of numbers, got dtype {array.dtype}")
    return array


def _common_dtype(arrays):
    """float32 when every given array is float32, float64 otherwise."""
    return np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64


def _gate_dict(d, name):
    if not isinstance(d, dict):
        raise TypeError(f"{name} must be a dict keyed by gate 'i', 'f', 'g', 'o', "
                        f"got {type(d).__name__}")
    missing = [k for k in GATES if k not in d]
    extra = [k for k in d if k not in GATES]
    if missing or extra:
        raise ValueError(f"{name} must have exactly the gates 'i', 'f', 'g', 'o' ('g' is the "
                         f"candidate, the notebooks' C~); missing {missing}, unexpected {extra}")
    return {k: _numpy(d[k], f"{name}[{k!r}]") for k in GATES}


def _matrix(a, name, shape, what):
    a = np.atleast_2d(a) if a.ndim < 2 else a
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {what} = {shape_text(shape)}, "
                         f"got {shape_text(a.shape)}")
    return a


def _vector(a, name, size, what):
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]                         # a column vector (n, 1)
    a = np.atleast_1d(a)
    if a.shape != (size,):
        raise ValueError(f"{name} must have shape {what} = ({size},) or ({size}, 1), "
                         f"got {shape_text(a.shape)}")
    return a


def _biases(b, H, name="b"):
    if b is None:
        return None
    b = _gate_dict(b, name)
    return [_vector(b[k], f"{name}[{k!r}]", H, "(H,)") for k in GATES]


def _finish(Wx, Wh, b, Wy, by, H, dtype_sources):
    """Assemble a params dict; ``Wy (O, H)`` and ``by (O,)`` come in column convention."""
    if (Wy is None) != (by is None) and Wy is None:
        raise ValueError("by was given without Wy: the readout needs Wy (O, H)")
    arrays = list(dtype_sources)
    if Wy is not None:
        Wy = _numpy(Wy, "Wy")
        Wy = np.atleast_2d(Wy)
        if Wy.ndim != 2 or Wy.shape[1] != H:
            raise ValueError(f"Wy must have shape (O, H) = (O, {H}), got {shape_text(Wy.shape)}")
        O = Wy.shape[0]
        by = np.zeros(O) if by is None else _vector(_numpy(by, "by"), "by", O, "(O,)")
        arrays += [Wy]
    dtype = _common_dtype(arrays)
    params = {"Wx": Wx, "Wh": Wh, "b": b}
    if Wy is not None:
        params.update(Wy=Wy.T, by=by)
    params = {k: np.array(v, dtype=dtype, order="C") for k, v in params.items()}
    check_params(params)                 # sizes >= 1, finite values: as every params dict
    return params


def from_concat(W: dict, b: dict | None = None, *, order: str = "hx", Wy: Any = None,
                by: Any = None) -> dict[str, np.ndarray]:
    """Parameters from per-gate matrices on the stacked column ``[h; x]`` (or ``[x; h]``).

    - W: dict gate -> ``(H, H + D)`` matrix, ``z_k = W[k] @ [h; x] + b[k]`` for ``order="hx"``.
    - b: dict gate -> ``(H,)`` or ``(H, 1)``; zeros if None.
    - order: ``"hx"`` (notebooks 000, 001, 003: h first) or ``"xh"``.
    - Wy: readout ``(O, H)`` (``y = Wy @ h + by``); by ``(O,)``; both optional.
    Returns a params dict (``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)``).
    """
    if order not in ("hx", "xh"):
        raise ValueError(f"order must be 'hx' or 'xh', got {order!r}")
    W = _gate_dict(W, "W")
    first = np.atleast_2d(W["i"])
    H = first.shape[0]
    D = first.shape[1] - H
    if first.ndim != 2 or D < 1:
        raise ValueError(f"W['i'] must have shape (H, H + D) with D >= 1, "
                         f"got {shape_text(first.shape)}")
    mats = [_matrix(W[k], f"W[{k!r}]", (H, H + D), "(H, H + D)") for k in GATES]
    h_cols = slice(0, H) if order == "hx" else slice(D, D + H)
    x_cols = slice(H, H + D) if order == "hx" else slice(0, D)
    Wx = np.concatenate([m[:, x_cols].T for m in mats], axis=1)
    Wh = np.concatenate([m[:, h_cols].T for m in mats], axis=1)
    bs = _biases(b, H)
    bias = np.zeros(4 * H) if bs is None else np.concatenate(bs)
    return _finish(Wx, Wh, bias, Wy, by, H, mats + (bs or []))


def _readout_out(params, out):
    if "Wy" in params:
        out["Wy"] = params["Wy"].T.copy()
        out["by"] = params["by"].copy()
    return out


def _per_gate(M):
    """Split the last (4H) axis of a row-convention matrix into column-convention blocks."""
    return {k: np.ascontiguousarray(block.T) for k, block in zip(GATES, split_gates(M),
                                                                   strict=True)}


def _bias_per_gate(b):
    """Split ``b (4H,)`` into ``{gate: (H,)}``."""
    return {k: v[:, 0] for k, v in _per_gate(b[None, :]).items()}


def to_concat(params: dict, *, order: str = "hx") -> dict:
    """The inverse of :func:`from_concat`: ``{"W": {gate: (H, H + D)}, "b": {gate: (H,)},
    "order": order[, "Wy": (O, H), "by": (O,)]}``."""
    if order not in ("hx", "xh"):
        raise ValueError(f"order must be 'hx' or 'xh', got {order!r}")
    check_params(params)
    Wx, Wh = _per_gate(params["Wx"]), _per_gate(params["Wh"])
    pair = (lambda k: (Wh[k], Wx[k])) if order == "hx" else (lambda k: (Wx[k], Wh[k]))
    W = {k: np.concatenate(pair(k), axis=1) for k in GATES}
    return _readout_out(params, {"W": W, "b": _bias_per_gate(params["b"]), "order": order})


def from_split(W: dict, U: dict, b: dict | None = None, *, Wy: Any = None,
               by: Any = None) -> dict[str, np.ndarray]:
    """Parameters from per-gate input and recurrent matrices (notebooks 004 and 002).

    - W: dict gate -> ``(H, D)``, the input weights; U: dict gate -> ``(H, H)``, recurrent:
      ``z_k = W[k] @ x + U[k] @ h + b[k]``. Scalars count as 1x1 (notebook 002).
    - b: dict gate -> ``(H,)`` or ``(H, 1)``; zeros if None.
    - Wy: readout ``(O, H)``; by ``(O,)``; both optional.
    Returns a params dict.
    """
    W, U = _gate_dict(W, "W"), _gate_dict(U, "U")
    first = np.atleast_2d(W["i"])
    H, D = first.shape
    Ws = [_matrix(W[k], f"W[{k!r}]", (H, D), "(H, D)") for k in GATES]
    Us = [_matrix(U[k], f"U[{k!r}]", (H, H), "(H, H)") for k in GATES]
    Wx = np.concatenate([m.T for m in Ws], axis=1)
    Wh = np.concatenate([m.T for m in Us], axis=1)
    bs = _biases(b, H)
    bias = np.zeros(4 * H) if bs is None else np.concatenate(bs)
    return _finish(Wx, Wh, bias, Wy, by, H, Ws + Us + (bs or []))


def to_split(params: dict) -> dict:
    """The inverse of :func:`from_split`: ``{"W": {gate: (H, D)}, "U": {gate: (H, H)},
    "b": {gate: (H,)}[, "Wy": (O, H), "by": (O,)]}``."""
    check_params(params)
    return _readout_out(params, {"W": _per_gate(params["Wx"]), "U": _per_gate(params["Wh"]),
                                 "b": _bias_per_gate(params["b"])})


_TORCH_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def from_torch(state_dict: Any, linear: Any = None) -> dict[str, np.ndarray]:
    """Parameters from a single-layer, unidirectional ``torch.nn.LSTM`` state dict.

    - state_dict: ``weight_ih_l0 (4H, D)``, ``weight_hh_l0 (4H, H)`` and, unless the LSTM has
      ``bias=False``, ``bias_ih_l0 (4H,)``, ``bias_hh_l0 (4H,)`` (summed into ``b``). Values may
      be tensors or numpy arrays. Keys of other layers or directions are refused.
    - linear: optional ``nn.Linear(H, O)`` state dict (``weight (O, H)``, ``bias (O,)``).
    Returns a params dict, float32 if the weights are float32, float64 otherwise.
    """
    if not hasattr(state_dict, "keys"):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    unknown = [k for k in state_dict if k not in _TORCH_KEYS]
    if unknown:
        raise ValueError(f"state_dict has keys {unknown} that this single-layer, "
                         "unidirectional LSTM without projection cannot hold")
    for k in _TORCH_KEYS[:2]:
        if k not in state_dict:
            raise ValueError(f"state_dict is missing {k!r}")
    Wih = _numpy(state_dict["weight_ih_l0"], "state_dict['weight_ih_l0']")
    Whh = _numpy(state_dict["weight_hh_l0"], "state_dict['weight_hh_l0']")
    if Whh.ndim != 2 or Whh.shape[0] != 4 * Whh.shape[1]:
        raise ValueError(f"state_dict['weight_hh_l0'] must have shape (4H, H), "
                         f"got {shape_text(Whh.shape)}")
    H = Whh.shape[1]
    if Wih.ndim != 2 or Wih.shape[0] != 4 * H:
        raise ValueError(f"state_dict['weight_ih_l0'] must have shape (4H, D) = ({4 * H}, D), "
                         f"got {shape_text(Wih.shape)}")
    bias = np.zeros(4 * H, dtype=Wih.dtype)
    for k in _TORCH_KEYS[2:]:
        if k in state_dict:
            bias = bias + _vector(_numpy(state_dict[k], f"state_dict[{k!r}]"),
                                  f"state_dict[{k!r}]", 4 * H, "(4H,)")
    Wy = by = None
    if linear is not None:
        if not hasattr(linear, "keys"):
            raise TypeError("linear must be an nn.Linear state dict (linear.state_dict()), "
                            f"got {type(linear).__name__}")
        for k in ("weight", "bias"):
            if k not in linear:
                raise ValueError(f"linear is missing {k!r} (an nn.Linear(H, O) state dict)")
        Wy = _numpy(linear["weight"], "linear['weight']")
        by = _numpy(linear["bias"], "linear['bias']")
    return _finish(Wih.T, Whh.T, bias, Wy, by, H, [Wih, Whh])


def _tensors(arrays):
    try:
        import torch
    except ImportError:
        return arrays
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def to_torch(params: dict, *, linear: bool = False) -> Any:
    """An ``nn.LSTM`` layer-0 state dict from params (torch tensors if torch is installed,
    numpy arrays otherwise): ``weight_ih_l0 (4H, D)``, ``weight_hh_l0 (4H, H)``,
    ``bias_ih_l0 = b``, ``bias_hh_l0 = 0``.

    - linear: also return the readout as an ``nn.Linear`` state dict: the result is then the
      pair ``(lstm_state_dict, linear_state_dict)``.
    """
    check_params(params, readout=linear)
    lstm = {"weight_ih_l0": params["Wx"].T, "weight_hh_l0": params["Wh"].T,
            "bias_ih_l0": params["b"], "bias_hh_l0": np.zeros_like(params["b"])}
    lstm = _tensors({k: np.ascontiguousarray(v) for k, v in lstm.items()})
    if not linear:
        return lstm
    lin = {"weight": np.ascontiguousarray(params["Wy"].T), "bias": params["by"].copy()}
    return lstm, _tensors(lin)


def from_keras(kernel: Any, recurrent_kernel: Any, bias: Any = None, *, Wy: Any = None,
               by: Any = None) -> dict[str, np.ndarray]:
    """Parameters from a Keras ``LSTM`` layer's weights (gate order i, f, c, o = i, f, g, o).

    - kernel ``(D, 4H)``, recurrent_kernel ``(H, 4H)``, bias ``(4H,)`` (zeros if None).
    - Wy, by: a ``Dense(O)`` readout's kernel ``(H, O)`` and bias ``(O,)``, optional.
    Returns a params dict.
    """
    kernel = _numpy(kernel, "kernel")
    rk = _numpy(recurrent_kernel, "recurrent_kernel")
    if rk.ndim != 2 or rk.shape[1] != 4 * rk.shape[0]:
        raise ValueError(f"recurrent_kernel must have shape (H, 4H), got {shape_text(rk.shape)}")
    H = rk.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != 4 * H:
        raise ValueError(f"kernel must have shape (D, 4H) = (D, {4 * H}), "
                         f"got {shape_text(kernel.shape)}")
    bias = np.zeros(4 * H) if bias is None else _vector(_numpy(bias, "bias"), "bias", 4 * H,
                                                         "(4H,)")
    if Wy is not None:
        Wy = _numpy(Wy, "Wy")
        if Wy.ndim != 2 or Wy.shape[0] != H:
            raise ValueError(f"Wy must have shape (H, O) = ({H}, O), got {shape_text(Wy.shape)}")
        Wy = Wy.T
    return _finish(kernel, rk, bias, Wy, by, H, [kernel, rk])


def to_keras(params: dict) -> dict[str, np.ndarray]:
    """The inverse of :func:`from_keras`: ``{"kernel": (D, 4H), "recurrent_kernel": (H, 4H),
    "bias": (4H,)[, "Wy": (H, O), "by": (O,)]}``; ``[d["kernel"], d["recurrent_kernel"],
    d["bias"]]`` is what a Keras LSTM's ``set_weights`` takes."""
    check_params(params)
    out = {"kernel": params["Wx"].copy(), "recurrent_kernel": params["Wh"].copy(),
           "bias": params["b"].copy()}
    if "Wy" in params:
        out.update(Wy=params["Wy"].copy(), by=params["by"].copy())
    return out
