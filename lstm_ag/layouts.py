"""Conversions between this library's parameters and other layouts.

This library: ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, ``Wy (H, O)``, ``by (O,)``, row
vectors (``z = x @ Wx + h @ Wh + b``), gates i, f, g, o along the 4H axis.

* **concat** (notebooks 000, 001, 003): one matrix per gate acting on the stacked column
  ``v = [h; x]`` (``order="hx"``) or ``[x; h]`` (``order="xh"``): ``z_k = W[k] @ v + b[k]``,
  ``W[k]`` of shape ``(H, H + D)``.
* **split** (notebook 004; notebook 002 with scalars): ``z_k = W[k] @ x + U[k] @ h + b[k]``,
  ``W[k] (H, D)``, ``U[k] (H, H)``.
* **torch**: ``nn.LSTM(D, H, num_layers=L, bidirectional=...)``, every layer and direction:
  ``weight_ih_l<k> (4H, D or dirs*H)``, ``weight_hh_l<k> (4H, H)`` (transposed ``Wx``,
  ``Wh``), two biases ``(4H,)`` summed into ``b`` on import; on export ``b`` goes to
  ``bias_ih_l<k>`` and ``bias_hh_l<k>`` is zero (so a torch twin trained with both biases free
  moves ``b`` twice as fast: freeze ``bias_hh``, see :func:`to_torch`). ``..._reverse`` keys
  are the reverse directions. An ``nn.Linear(dirs*H, O)`` readout is ``weight (O, dirs*H)``,
  ``bias (O,)``. Stacked and bidirectional models use the nested dict of
  :mod:`lstm_ag.params`.
* **keras**: ``kernel (D, 4H)``, ``recurrent_kernel (H, 4H)``, ``bias (4H,)``; a ``Dense``
  readout's kernel is ``Wy`` as it is.

The per-gate dicts are keyed ``"i", "f", "g", "o"`` (``"g"`` is the candidate, the notebooks'
C~ or W_c). Scalars count as 1x1 matrices, column vectors ``(H, 1)`` as ``(H,)``. Every
``to_*`` returns a dict whose keys are the matching ``from_*``'s arguments, so
``from_concat(**to_concat(params))`` gives ``params`` back exactly. concat, split and keras hold
one layer in one direction: their ``to_*`` refuse a stacked or bidirectional dict (convert each
of :func:`lstm_ag.params.lstm_layers`' ``(Wx, Wh, b)`` dicts on its own).
"""
import re
from typing import Any

import numpy as np

from .params import GATES, check_params, lstm_layers, shape_text, split_gates, structure, tree_map

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
    bad = ~np.isfinite(array) if array.dtype.kind == "f" else None
    if bad is not None and bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {where}, value "
                         f"{array[where]}): the parameters must be finite")
    return array


def _sizes(name, array, axes):
    """Refuse an empty axis of a user's array, naming it (``axes``: ``{axis: "H"}``)."""
    for axis, what in axes.items():
        if array.ndim > axis and array.shape[axis] < 1:
            raise ValueError(f"{name} has shape {shape_text(array.shape)}: {what} must be at "
                             "least 1")


def _fits(named, dtype):
    """Refuse finite values too large for ``dtype`` (float32), naming the user's array."""
    if np.dtype(dtype) != np.float32:
        return
    limit = float(np.finfo(np.float32).max)
    for name, array in named:
        if array.size and float(np.max(np.abs(array))) > limit:
            raise ValueError(f"{name} has finite values up to {float(np.max(np.abs(array))):.3g}"
                             f", which overflow float32, the weights' dtype (largest "
                             f"{limit:.3g})")


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


def _finish(Wx, Wh, b, Wy, by, H, dtype_sources, named=()):
    """Assemble a params dict; ``Wy (O, H)`` and ``by (O,)`` come in column convention.
    named: ``(user's name, array)`` of every array given, checked (as the user named them)
    to fit the result's dtype."""
    if (Wy is None) != (by is None) and Wy is None:
        raise ValueError("by was given without Wy: the readout needs Wy (O, H)")
    arrays, named = list(dtype_sources), list(named)
    if Wy is not None:
        Wy = _numpy(Wy, "Wy")
        Wy = np.atleast_2d(Wy)
        if Wy.ndim != 2 or Wy.shape[1] != H:
            raise ValueError(f"Wy must have shape (O, H) = (O, {H}), got {shape_text(Wy.shape)}")
        _sizes("Wy", Wy, {0: "O"})
        O = Wy.shape[0]
        by = np.zeros(O) if by is None else _vector(_numpy(by, "by"), "by", O, "(O,)")
        arrays += [Wy]
        named += [("Wy", Wy), ("by", by)]
    dtype = _common_dtype(arrays)
    _fits(named, dtype)
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
    _sizes("W['i']", first, {0: "H"})
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
    named = [(f"W[{k!r}]", m) for k, m in zip(GATES, mats, strict=True)]
    named += [(f"b[{k!r}]", v) for k, v in zip(GATES, bs or [], strict=False)]
    return _finish(Wx, Wh, bias, Wy, by, H, mats + (bs or []), named)


def _one_layer(params, function):
    """Validate params and refuse a stacked or bidirectional dict, which ``function``'s layout
    cannot hold."""
    check_params(params)
    num_layers, dirs = structure(params)
    if (num_layers, dirs) != (1, 1):
        raise ValueError(f"{function} converts one layer in one direction; params has "
                         f"{num_layers} layer{'s' if num_layers > 1 else ''} and {dirs} "
                         f"direction{'s' if dirs > 1 else ''} ('layers'/'reverse'). Use "
                         "to_torch for the whole model, or convert each (Wx, Wh, b) dict of "
                         "lstm_ag.params.lstm_layers(params) on its own")


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
    _one_layer(params, "to_concat")
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
    if first.ndim != 2:
        raise ValueError(f"W['i'] must have shape (H, D), got {shape_text(first.shape)}")
    _sizes("W['i']", first, {0: "H", 1: "D"})
    H, D = first.shape
    Ws = [_matrix(W[k], f"W[{k!r}]", (H, D), "(H, D)") for k in GATES]
    Us = [_matrix(U[k], f"U[{k!r}]", (H, H), "(H, H)") for k in GATES]
    Wx = np.concatenate([m.T for m in Ws], axis=1)
    Wh = np.concatenate([m.T for m in Us], axis=1)
    bs = _biases(b, H)
    bias = np.zeros(4 * H) if bs is None else np.concatenate(bs)
    named = [(f"{top}[{k!r}]", m) for top, mats in (("W", Ws), ("U", Us))
             for k, m in zip(GATES, mats, strict=True)]
    named += [(f"b[{k!r}]", v) for k, v in zip(GATES, bs or [], strict=False)]
    return _finish(Wx, Wh, bias, Wy, by, H, Ws + Us + (bs or []), named)


def to_split(params: dict) -> dict:
    """The inverse of :func:`from_split`: ``{"W": {gate: (H, D)}, "U": {gate: (H, H)},
    "b": {gate: (H,)}[, "Wy": (O, H), "by": (O,)]}``."""
    _one_layer(params, "to_split")
    return _readout_out(params, {"W": _per_gate(params["Wx"]), "U": _per_gate(params["Wh"]),
                                 "b": _bias_per_gate(params["b"])})


_TORCH_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_TORCH_NAME = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(0|[1-9][0-9]*)(_reverse)?")


def _torch_key(kind, layer, reverse):
    """``nn.LSTM``'s name of one array: ``weight_ih_l1_reverse``."""
    return f"{kind}_l{layer}{'_reverse' if reverse else ''}"


def _torch_structure(state_dict):
    """``(num_layers, bidirectional)`` of an ``nn.LSTM`` state dict, from its keys alone."""
    keys = [str(k) for k in state_dict]
    unknown = [k for k in keys if not _TORCH_NAME.fullmatch(k)]
    if unknown:
        hint = (" (weight_hr: an LSTM with proj_size, which this library does not have)"
                if any(k.startswith("weight_hr_l") for k in unknown) else "")
        raise ValueError(f"state_dict has keys {unknown} that an nn.LSTM without projection "
                         "cannot hold; its keys are weight_ih_l<k>, weight_hh_l<k>, "
                         f"bias_ih_l<k>, bias_hh_l<k>, each also with _reverse{hint}")
    found = [_TORCH_NAME.fullmatch(k).groups() for k in keys]
    layers = sorted({int(layer) for _, layer, _ in found})
    if not layers:
        raise ValueError("state_dict is empty: expected an nn.LSTM state dict "
                         "(weight_ih_l0, weight_hh_l0, ...)")
    if layers != list(range(len(layers))):
        missing = next(n for n, layer in enumerate(layers) if n != layer)
        raise ValueError(f"state_dict has layers {layers} (from its _l<k> keys) but none of "
                         f"layer {missing}: layers must be numbered 0, 1, ... without gaps")
    reversed_layers = sorted({int(layer) for _, layer, rev in found if rev})
    if reversed_layers and reversed_layers != layers:
        without = sorted(set(layers) - set(reversed_layers))
        raise ValueError(f"state_dict has _reverse keys for layers {reversed_layers} but not "
                         f"for layers {without}: a bidirectional nn.LSTM has both directions "
                         "in every layer")
    bidirectional = bool(reversed_layers)
    for layer in layers:
        for reverse in (False, True)[:1 + bidirectional]:
            for kind in _TORCH_KINDS[:2]:
                if _torch_key(kind, layer, reverse) not in state_dict:
                    raise ValueError(f"state_dict is missing {_torch_key(kind, layer, reverse)!r}"
                                     f" (it has {', '.join(keys)})")
    return len(layers), bidirectional


def _torch_bias(state_dict, layer, reverse, H):
    """``bias_ih + bias_hh`` of one layer and direction (an absent bias counts as zero); where
    ``bias_hh`` is exactly zero (as :func:`to_torch` writes it) ``bias_ih`` is kept bit for
    bit, signed zeros included, so that round trips are exact."""
    parts = []
    for kind in _TORCH_KINDS[2:]:
        key = _torch_key(kind, layer, reverse)
        if key in state_dict:
            parts.append(_vector(_numpy(state_dict[key], f"state_dict[{key!r}]"),
                                 f"state_dict[{key!r}]", 4 * H, "(4H,)"))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    bias_ih, bias_hh = parts
    return np.where(bias_hh == 0, bias_ih, bias_ih + bias_hh)


def from_torch(state_dict: Any, linear: Any = None) -> dict[str, Any]:
    """Parameters from a ``torch.nn.LSTM`` state dict, any ``num_layers``, either direction.

    - state_dict: ``lstm.state_dict()`` of ``nn.LSTM(D, H, num_layers=L, bidirectional=...)``
      (``batch_first`` does not change the weights), or the same keys with numpy arrays:
      ``weight_ih_l<k> (4H, D)`` for layer 0 and ``(4H, dirs*H)`` above, ``weight_hh_l<k>
      (4H, H)``, ``bias_ih_l<k>``, ``bias_hh_l<k> (4H,)``, each also with ``_reverse`` for a
      bidirectional LSTM. The two biases are summed into ``b`` (an absent one, as with
      ``bias=False``, counts as zero). ``proj_size`` (``weight_hr_l<k>``) is refused.
    - linear: optional ``nn.Linear(dirs*H, O)`` state dict (``weight (O, dirs*H)``, ``bias
      (O,)``), the readout ``Wy = weight.T``, ``by = bias``.
    Returns a params dict (the nested layout of :mod:`lstm_ag.params` when ``L > 1`` or
    bidirectional), float32 if the weights are float32, float64 otherwise.

    Only the sum of the biases matters to the forward and to the gradient (torch gives both
    biases the same gradient), so a model trained here and exported by :func:`to_torch` is
    the same function in torch; but an optimizer stepping torch's twin moves *both* biases,
    each by the step of ``b``, so the twin's ``b`` moves twice as far and it diverges from a
    run here. Freeze every ``bias_hh`` to train a twin in step:
    ``lstm.bias_hh_l0.requires_grad_(False)`` (and ``_l1``, ``_l0_reverse``, ...).
    """
    if not hasattr(state_dict, "keys"):
        hint = (" (pass lstm.state_dict())" if hasattr(state_dict, "state_dict") else "")
        raise TypeError(f"state_dict must be a mapping{hint}, got {type(state_dict).__name__}")
    num_layers, bidirectional = _torch_structure(state_dict)
    dirs = 2 if bidirectional else 1
    Whh0 = _numpy(state_dict["weight_hh_l0"], "state_dict['weight_hh_l0']")
    if Whh0.ndim != 2 or Whh0.shape[0] != 4 * Whh0.shape[1]:
        raise ValueError(f"state_dict['weight_hh_l0'] must have shape (4H, H), "
                         f"got {shape_text(Whh0.shape)}")
    _sizes("state_dict['weight_hh_l0']", Whh0, {1: "H"})
    H = Whh0.shape[1]
    Wih0 = _numpy(state_dict["weight_ih_l0"], "state_dict['weight_ih_l0']")
    if Wih0.ndim != 2 or Wih0.shape[0] != 4 * H:
        raise ValueError(f"state_dict['weight_ih_l0'] must have shape (4H, D) = ({4 * H}, D), "
                         f"got {shape_text(Wih0.shape)}")
    _sizes("state_dict['weight_ih_l0']", Wih0, {1: "D"})
    D = Wih0.shape[1]
    weights, named = [], []
    directions = []
    for layer in range(num_layers):
        inputs, what = (D, "(4H, D)") if layer == 0 else (dirs * H, "(4H, 2H)" if dirs == 2
                                                          else "(4H, H)")
        owned = []
        for reverse in (False, True)[:dirs]:
            ih, hh = (_torch_key(kind, layer, reverse) for kind in _TORCH_KINDS[:2])
            Wih = _matrix(_numpy(state_dict[ih], f"state_dict[{ih!r}]"), f"state_dict[{ih!r}]",
                          (4 * H, inputs), what)
            Whh = _matrix(_numpy(state_dict[hh], f"state_dict[{hh!r}]"), f"state_dict[{hh!r}]",
                          (4 * H, H), "(4H, H)")
            bias = _torch_bias(state_dict, layer, reverse, H)
            weights += [Wih, Whh]
            named += [(f"state_dict[{key!r}]", _numpy(state_dict[key], key))
                      for key in (_torch_key(kind, layer, reverse) for kind in _TORCH_KINDS)
                      if key in state_dict]
            owned.append({"Wx": Wih.T, "Wh": Whh.T,
                          "b": np.zeros(4 * H) if bias is None else bias})
        if bidirectional:
            owned[0]["reverse"] = owned[1]
        directions.append(owned[0])
    params = directions[0]
    if num_layers > 1:
        params["layers"] = directions[1:]
    if linear is not None:
        if not hasattr(linear, "keys"):
            raise TypeError("linear must be an nn.Linear state dict (linear.state_dict()), "
                            f"got {type(linear).__name__}")
        for k in ("weight", "bias"):
            if k not in linear:
                raise ValueError(f"linear is missing {k!r} (an nn.Linear({dirs * H}, O) state "
                                 "dict)")
        Wy = _numpy(linear["weight"], "linear['weight']")
        if Wy.ndim != 2 or Wy.shape[1] != dirs * H:
            rows = "dirs*H" if dirs == 2 else "H"
            raise ValueError(f"linear['weight'] must have shape (O, {rows}) = (O, {dirs * H}), "
                             f"got {shape_text(Wy.shape)}")
        _sizes("linear['weight']", Wy, {0: "O"})
        weights.append(Wy)
        params["Wy"] = Wy.T
        params["by"] = _vector(_numpy(linear["bias"], "linear['bias']"), "linear['bias']",
                               Wy.shape[0], "(O,)")
        named += [("linear['weight']", Wy), ("linear['bias']", params["by"])]
    dtype = _common_dtype(weights)
    _fits(named, dtype)
    params = tree_map(lambda v: np.array(v, dtype=dtype, order="C"), params)
    check_params(params)                 # sizes >= 1, finite values: as every params dict
    return params


def _tensors(arrays):
    try:
        import torch
    except ImportError:
        return arrays
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def to_torch(params: dict, *, linear: bool = False, module: bool = False) -> Any:
    """The ``nn.LSTM`` state dict of params, any number of layers and directions: the keys of
    ``nn.LSTM(D, H, num_layers=L, bidirectional=dirs == 2)`` in its order, torch tensors if
    torch is installed (numpy arrays otherwise): ``weight_ih_l<k> = Wx.T``, ``weight_hh_l<k>
    = Wh.T``, ``bias_ih_l<k> = b``, ``bias_hh_l<k> = 0`` (and ``..._reverse``).
    :func:`from_torch` of it gives params back bit for bit.

    - linear: also the readout as an ``nn.Linear(dirs*H, O)`` state dict (``weight = Wy.T``,
      ``bias = by``); the result is then the pair ``(lstm_state_dict, linear_state_dict)``.
    - module: return the modules themselves (needs torch): ``nn.LSTM(D, H, num_layers=L,
      bidirectional=..., batch_first=False)`` in params' dtype with these weights loaded (and
      with ``linear=True`` the ``nn.Linear``), time-major as this library.

    Such a twin computes the same function, but training it is not training this model:
    torch's optimizers move ``bias_ih`` and ``bias_hh`` alike, each by the step of ``b``, so
    the twin's ``b`` moves twice as far. Freeze ``bias_hh`` first, in every layer and
    direction, to keep the two in step::

        for name, p in lstm.named_parameters():
            if name.startswith("bias_hh"):
                p.requires_grad_(False)          # lstm.bias_hh_l0.requires_grad_(False), ...
    """
    check_params(params, readout=linear)
    state = {}
    for layer, directions in enumerate(lstm_layers(params)):
        for reverse, weights in zip((False, True), directions, strict=False):
            for kind, value in zip(_TORCH_KINDS, (weights["Wx"].T, weights["Wh"].T,
                                                  weights["b"], np.zeros_like(weights["b"])),
                                   strict=True):
                state[_torch_key(kind, layer, reverse)] = np.ascontiguousarray(value)
    lin = None
    if linear:
        lin = {"weight": np.ascontiguousarray(params["Wy"].T), "bias": params["by"].copy()}
    if module:
        return _torch_modules(params, state, lin)
    state = _tensors(state)
    return state if lin is None else (state, _tensors(lin))


def _torch_modules(params, state, lin):
    """``nn.LSTM`` (and ``nn.Linear``) holding ``state`` (and ``lin``), in params' dtype."""
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch(..., module=True) needs torch; without it, to_torch "
                          "returns the state dict as numpy arrays") from None
    D, H, _ = check_params(params)
    num_layers, dirs = structure(params)
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(params["Wx"].dtype)]
    lstm = torch.nn.LSTM(D, H, num_layers=num_layers, bidirectional=dirs == 2,
                         batch_first=False, dtype=dtype)
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    if lin is None:
        return lstm
    readout = torch.nn.Linear(dirs * H, lin["weight"].shape[0], dtype=dtype)
    readout.load_state_dict({k: torch.from_numpy(v) for k, v in lin.items()})
    return lstm, readout


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
    _sizes("recurrent_kernel", rk, {0: "H"})
    H = rk.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != 4 * H:
        raise ValueError(f"kernel must have shape (D, 4H) = (D, {4 * H}), "
                         f"got {shape_text(kernel.shape)}")
    _sizes("kernel", kernel, {0: "D"})
    bias = np.zeros(4 * H) if bias is None else _vector(_numpy(bias, "bias"), "bias", 4 * H,
                                                         "(4H,)")
    if Wy is not None:
        Wy = _numpy(Wy, "Wy")
        if Wy.ndim != 2 or Wy.shape[0] != H:
            raise ValueError(f"Wy must have shape (H, O) = ({H}, O), got {shape_text(Wy.shape)}")
        Wy = Wy.T
    named = [("kernel", kernel), ("recurrent_kernel", rk), ("bias", bias)]
    return _finish(kernel, rk, bias, Wy, by, H, [kernel, rk], named)


def to_keras(params: dict) -> dict[str, np.ndarray]:
    """The inverse of :func:`from_keras`: ``{"kernel": (D, 4H), "recurrent_kernel": (H, 4H),
    "bias": (4H,)[, "Wy": (H, O), "by": (O,)]}``; ``[d["kernel"], d["recurrent_kernel"],
    d["bias"]]`` is what a Keras LSTM's ``set_weights`` takes."""
    _one_layer(params, "to_keras")
    out = {"kernel": params["Wx"].copy(), "recurrent_kernel": params["Wh"].copy(),
           "bias": params["b"].copy()}
    if "Wy" in params:
        out.update(Wy=params["Wy"].copy(), by=params["by"].copy())
    return out
