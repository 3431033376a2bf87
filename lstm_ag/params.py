"""Parameters: creation, shapes and validation.

Parameters are a plain dict of float arrays (autograd differentiates dicts natively)::

    Wx (D, 4H)   input weights        z_t = x_t @ Wx + h_{t-1} @ Wh + b
    Wh (H, 4H)   recurrent weights    (row-vector convention, batch rows first)
    b  (4H,)     bias
    Wy (H, O)    readout (optional)   y_t = h_t @ Wy + by
    by (O,)      readout bias

The 4H axis holds the gates in the order i, f, g, o (:data:`GATES`); :func:`split_gates` is
the one place that slices it.

**Stacked and bidirectional models** keep that dict for layer 0's forward direction, and hold
the rest in two more keys, present only when needed (a one-layer, one-direction model is
exactly the dict above)::

    reverse   {"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)}       layer 0, reverse direction
    layers    [{"Wx": (dirs*H, 4H), "Wh": (H, 4H), "b": (4H,)    layers 1 .. L-1, in order;
               [, "reverse": {...the same shapes...}]}, ...]    each with its reverse direction
    Wy        (dirs*H, O)                                        the readout reads both directions

dirs is 2 for a bidirectional model, else 1. Layer l > 0 reads the hidden states of layer
l - 1, both directions side by side (forward first), as PyTorch's ``nn.LSTM``. autograd
differentiates these nested dicts and lists natively; :func:`flatten` names every array
(``"layers.0.reverse.Wx"``) for checkpoints and reports, :func:`lstm_layers` gives the
``(Wx, Wh, b)`` dicts layer by layer.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as onp
from autograd.tracer import Box

__all__ = ["GATES", "split_gates", "init_params", "param_shapes", "check_params",
           "param_dtype", "is_traced", "untraced", "structure", "lstm_layers", "nest_layers",
           "flatten",
           "unflatten", "tree_map"]

#: The gates along the 4H axis, in order (the order of PyTorch, Keras and Flax; CS231n's is
#: i, f, o, g). ``g`` is the candidate cell value, the notebooks' C~.
GATES = ("i", "f", "g", "o")

CORE_KEYS = ("Wx", "Wh", "b")
READOUT_KEYS = ("Wy", "by")
REVERSE_KEY = "reverse"
LAYERS_KEY = "layers"
FLOAT_DTYPES = (onp.dtype(onp.float32), onp.dtype(onp.float64))


def split_gates(z: Any) -> tuple:
    """Split the last axis, ``(..., 4H)``, into the four ``(..., H)`` blocks ``i, f, g, o``.

    - z: an array (or autograd box) whose last axis holds the four gates side by side.
    Returns a tuple of four views (for numpy arrays: writing into them writes into ``z``).

    >>> import numpy as np
    >>> i, f, g, o = split_gates(np.arange(8))
    >>> f, o
    (array([2, 3]), array([6, 7]))
    """
    H = z.shape[-1] // 4
    if z.shape[-1] != 4 * H:
        raise ValueError(f"the last axis must hold 4 gates (4H entries), got {z.shape[-1]}")
    return z[..., :H], z[..., H:2 * H], z[..., 2 * H:3 * H], z[..., 3 * H:]


def is_traced(x: Any) -> bool:
    """True when ``x`` is an autograd box (a value being differentiated)."""
    return isinstance(x, Box)


def untraced(value: Any) -> Any:
    """The value inside autograd boxes (a box of a box, when differentiating twice)."""
    while is_traced(value):
        value = value._value
    return value


def param_dtype(params: dict) -> onp.dtype:
    """The dtype of a (validated) parameter dict, traced or not."""
    return onp.dtype(untraced(untraced(params)["Wx"]).dtype)


def param_shapes(input_size: int, hidden_size: int, output_size: int | None = None, *,
                 num_layers: int = 1, bidirectional: bool = False) -> dict[str, tuple[int, ...]]:
    """The exact shape of every parameter, as a dict of tuples named as :func:`flatten` names.

    - input_size: D; hidden_size: H; output_size: O or None for no readout.
    - num_layers: L >= 1; bidirectional: a reverse direction in every layer.
    Returns ``{"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)}`` plus ``"Wy": (dirs*H, O),
    "by": (O,)``, and for more layers or directions ``"reverse.Wx"``, ``"layers.0.Wx"`` (layer
    1), ``"layers.0.reverse.Wx"``, ... with layer l > 0's ``Wx`` of shape ``(dirs*H, 4H)``.
    """
    D, H = input_size, hidden_size
    dirs = 2 if bidirectional else 1

    def direction(prefix, inputs):
        return {prefix + "Wx": (inputs, 4 * H), prefix + "Wh": (H, 4 * H), prefix + "b": (4 * H,)}

    shapes = direction("", D)
    if bidirectional:
        shapes.update(direction(REVERSE_KEY + ".", D))
    for layer in range(num_layers - 1):
        shapes.update(direction(f"{LAYERS_KEY}.{layer}.", dirs * H))
        if bidirectional:
            shapes.update(direction(f"{LAYERS_KEY}.{layer}.{REVERSE_KEY}.", dirs * H))
    if output_size is not None:
        shapes.update(Wy=(dirs * H, output_size), by=(output_size,))
    return shapes


def structure(params: Any) -> tuple[int, int]:
    """``(num_layers, num_directions)`` of a parameter dict (traced or not): (1, 1) for the
    plain one-layer dict, directions 2 when it holds ``"reverse"``."""
    params = untraced(params)
    layers = untraced(params.get(LAYERS_KEY, ()))
    return 1 + len(layers), 2 if REVERSE_KEY in params else 1


def lstm_layers(params: Any, struct: tuple[int, int] | None = None) -> list[list[dict]]:
    """The LSTM weights layer by layer: ``[[forward, reverse?], ...]``, each a dict with
    ``Wx``, ``Wh``, ``b`` (the arrays of ``params``, never copies; autograd boxes when
    ``params`` is traced). Layer 0's forward direction is the top-level ``Wx, Wh, b``.
    ``struct``: ``structure(params)`` when the caller has it (computed when None)."""
    num_layers, dirs = structure(params) if struct is None else struct
    layers = []
    for layer in range(num_layers):
        owner = params if layer == 0 else params[LAYERS_KEY][layer - 1]
        directions = [{k: owner[k] for k in CORE_KEYS}]
        if dirs == 2:
            directions.append(owner[REVERSE_KEY])
        layers.append(directions)
    return layers


def nest_layers(directions: list, dirs: int) -> dict:
    """The inverse of :func:`lstm_layers`: from a flat list of K = layers * dirs dicts of
    ``Wx, Wh, b`` in PyTorch's order (layer 0 forward, layer 0 reverse, layer 1 forward, ...),
    the nested parameter dict (without a readout)."""
    layers = []
    for start in range(0, len(directions), dirs):
        layer = dict(directions[start])
        if dirs == 2:
            layer[REVERSE_KEY] = directions[start + 1]
        layers.append(layer)
    params = layers[0]
    if len(layers) > 1:
        params[LAYERS_KEY] = layers[1:]
    return params


def tree_map(fn: Any, tree: Any, *rest: Any) -> Any:
    """``fn`` applied to every array of a parameter tree (dicts and lists of arrays), and to
    the arrays at the same places of ``rest``: a tree of the same structure."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [tree_map(fn, v, *(r[k] for r in rest)) for k, v in enumerate(tree)]
    return fn(tree, *rest)


def flatten(params: dict) -> dict[str, Any]:
    """Every array of a parameter tree by a dotted name: ``"Wx"``, ``"reverse.Wx"``,
    ``"layers.0.Wx"``, ``"layers.0.reverse.b"``, ... (:func:`unflatten` inverts it)."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict)
                                                                  for v in value):
            for k, v in enumerate(value):
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value
    walk("", params)
    return flat


def unflatten(flat: dict[str, Any]) -> dict:
    """The parameter tree of :func:`flatten`'s names: ``"layers.1.Wx"`` goes to
    ``params["layers"][1]["Wx"]`` (numbered entries become lists, in order)."""
    tree: dict = {}
    for name, value in flat.items():
        parts = name.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node):
        if not isinstance(node, dict):
            return node
        node = {k: lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            keys = sorted(node, key=int)
            if keys != [str(n) for n in range(len(keys))]:
                raise ValueError(f"parameter names number the layers {keys}, not 0, 1, ...")
            return [node[k] for k in keys]
        return node
    return lists(tree)


def _check_size(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, onp.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def as_float_dtype(dtype: Any, name: str = "dtype") -> onp.dtype:
    """``dtype`` as a numpy dtype if it is float32 or float64, else an error naming ``name``."""
    try:
        dtype = onp.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {dtype}")
    return dtype


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, arrays that need more than this machine's memory."""
    total = memory_bytes()
    if total is not None and nbytes > total:
        raise ValueError(f"{what} would need {nbytes / 2**30:.3g} GiB, more than this "
                         f"machine's {total / 2**30:.3g} GiB of memory")


def init_params(input_size: int, hidden_size: int, output_size: int | None = None, *,
                seed: int = 0, forget_bias: float = 1.0, dtype: Any = onp.float64,
                num_layers: int = 1, bidirectional: bool = False) -> dict[str, Any]:
    """Fresh LSTM parameters, seeded and reproducible.

    Weights are drawn from U(-1/sqrt(H), 1/sqrt(H)) like PyTorch's ``nn.LSTM`` (the readout
    ``Wy``, ``by`` from U(-1/sqrt(H), 1/sqrt(H)) like ``nn.Linear(H, O)``). The LSTM bias ``b`` is
    zero except the forget gate's, which is ``forget_bias`` (1.0, as Keras), so that the cell
    remembers by default.

    - input_size: D, features per time step.
    - hidden_size: H, units of the hidden and cell state.
    - output_size: O for a linear readout ``Wy (H, O)``, ``by (O,)``; None for none.
    - seed: seed of ``np.random.default_rng`` (the global ``np.random`` is never touched).
    - forget_bias: initial bias of the forget gate.
    - dtype: ``np.float64`` (default) or ``np.float32``.
    - num_layers: L, stacked layers (each reads the hidden states of the one below).
    - bidirectional: each layer also runs over the sequence reversed (not causal: for
      next-value prediction use one direction).
    Returns a dict ``{"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)[, "Wy": (H, O), "by": (O,)]}``;
    with more layers or directions also ``"reverse"`` and ``"layers"`` (module docstring), and
    ``Wy (dirs*H, O)``. Layer 0's forward weights and the readout are drawn first, so they do
    not depend on ``num_layers``.
    """
    D = _check_size("input_size", input_size)
    H = _check_size("hidden_size", hidden_size)
    O = None if output_size is None else _check_size("output_size", output_size)
    dtype = as_float_dtype(dtype)
    if isinstance(seed, bool) or not isinstance(seed, (int, onp.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if (isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, onp.number))
            or not onp.isfinite(forget_bias)):
        raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
    L = _check_size("num_layers", num_layers)
    if not isinstance(bidirectional, (bool, onp.bool_)):
        raise TypeError(f"bidirectional must be True or False, got {bidirectional!r}")
    shapes = param_shapes(D, H, O, num_layers=L, bidirectional=bool(bidirectional))
    count = sum(math.prod(shape) for shape in shapes.values())
    check_fits_in_memory(count * dtype.itemsize, f"init_params(D={D}, H={H}, O={O}, "
                                                  f"num_layers={L})")
    rng = onp.random.default_rng(seed)
    k = 1.0 / onp.sqrt(H)
    first = ("Wx", "Wh", "Wy", "by")           # the one-layer draw order, kept for every model
    arrays = {}
    for name in (*(n for n in first if n in shapes), *(n for n in shapes if n not in first)):
        if name.rsplit(".", 1)[-1] == "b":
            b = onp.zeros(4 * H, dtype)
            _, b_f, _, _ = split_gates(b)
            b_f[:] = forget_bias
            arrays[name] = b
        else:
            arrays[name] = rng.uniform(-k, k, shapes[name]).astype(dtype)
    return unflatten({name: arrays[name] for name in shapes})


def shape_text(shape: tuple) -> str:
    """A shape as the messages print it: ``(3, 4)``, ``(4,)``."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _label(name: str) -> str:
    """A :func:`flatten` name as the messages print it: ``params['layers'][0]['Wx']``."""
    return "params" + "".join(f"[{p}]" if p.isdigit() else f"[{p!r}]" for p in name.split("."))


def _plain_tree(params):
    """The nested dicts and lists of ``params`` with autograd boxes unwrapped (the arrays
    inside may still be boxes of their own)."""
    params = untraced(params)
    if isinstance(params, dict):
        return {k: _plain_tree(v) if k in (REVERSE_KEY, LAYERS_KEY) else v
                for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return [_plain_tree(v) for v in params]
    return params


def _check_containers(params):
    """Check the nesting of ``reverse`` and ``layers``; return ``(num_layers, bidirectional)``."""
    unknown = [k for k in params if k not in CORE_KEYS + READOUT_KEYS + (REVERSE_KEY,
                                                                         LAYERS_KEY)]
    if unknown:
        raise ValueError(f"params has unknown keys {unknown}; an LSTM's parameters are "
                         "'Wx', 'Wh', 'b', for a readout 'Wy', 'by', and for more layers or "
                         "directions 'reverse' and 'layers'")
    bidirectional = REVERSE_KEY in params
    layers = params.get(LAYERS_KEY, [])
    if not isinstance(layers, list) or (not layers and LAYERS_KEY in params):
        raise TypeError(f"params['layers'] must be a non-empty list of dicts (layers 1, 2, ...), "
                        f"got {type(layers).__name__ if layers else 'an empty list'}")
    owners = [("", params)] + [(f"layers.{n}.", layer) for n, layer in enumerate(layers)]
    for prefix, owner in owners:
        if not isinstance(owner, dict):
            raise TypeError(f"{_label(prefix[:-1])} must be a dict with 'Wx', 'Wh', 'b', "
                            f"got {type(owner).__name__}")
        inner = [("", owner)]
        if bidirectional:
            reverse = owner.get(REVERSE_KEY)
            if not isinstance(reverse, dict):
                raise ValueError(f"{_label(prefix + REVERSE_KEY)} must be a dict with 'Wx', 'Wh', "
                                 "'b' (params['reverse'] makes every layer bidirectional), got "
                                 f"{'nothing' if reverse is None else type(reverse).__name__}")
            inner.append((REVERSE_KEY + ".", reverse))
        elif prefix and REVERSE_KEY in owner:
            raise ValueError(f"{_label(prefix + REVERSE_KEY)} is given but params['reverse'] is "
                             "not: every layer has the same directions")
        for sub, weights in inner:
            allowed = (CORE_KEYS + READOUT_KEYS + (REVERSE_KEY, LAYERS_KEY) if not prefix + sub
                       else CORE_KEYS + ((REVERSE_KEY,) if not sub else ()))
            extra = [k for k in weights if k not in allowed]
            missing = [k for k in CORE_KEYS if k not in weights]
            where = _label((prefix + sub)[:-1]) if prefix + sub else "params"
            if missing:
                raise ValueError(f"{where} is missing {', '.join(repr(k) for k in missing)}; "
                                 f"it has {sorted(weights)}")
            if extra:
                raise ValueError(f"{where} has unknown keys {extra}; it must hold exactly "
                                 "'Wx', 'Wh', 'b'")
    return 1 + len(layers), bidirectional


def check_params(params: dict, *, readout: bool = False) -> tuple[int, int, int | None]:
    """Validate a parameter dict and return its sizes ``(D, H, O)`` (O is None without readout).

    - params: dict with ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, optionally
      ``Wy (dirs*H, O)``, ``by (O,)``, and for more layers or directions ``reverse`` and
      ``layers`` (module docstring); numpy arrays or autograd boxes (tracing is not disturbed:
      only shapes and dtypes are inspected). :func:`structure` gives the layers and directions.
    - readout: require ``Wy`` and ``by``.
    Raises ``TypeError`` when ``params`` is not a dict or an entry is not a float array (numpy
    subclasses such as ``np.matrix``, masked arrays and memmaps are refused: pass
    ``np.asarray``), and ``ValueError`` naming the entry, the expected shape and the given one,
    an unknown key (every method refuses them alike), or NaN/inf in a (plain) entry.
    """
    inner = untraced(params)
    if not isinstance(inner, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    params = _plain_tree(inner)     # shapes and dtypes, read without recording anything
    num_layers, bidirectional = _check_containers(params)
    dirs = 2 if bidirectional else 1
    if readout:
        missing = [k for k in READOUT_KEYS if k not in params]
        if missing:
            raise ValueError(f"params is missing {', '.join(repr(k) for k in missing)} (predict "
                             f"and mse need the readout Wy, by); it has {sorted(params)}")
    if ("Wy" in params) != ("by" in params):
        have, lack = ("Wy", "by") if "Wy" in params else ("by", "Wy")
        raise ValueError(f"params has {have!r} but not {lack!r}: the readout needs both")
    arrays = flatten(params)
    for key, value in arrays.items():
        if not (type(value) is onp.ndarray or is_traced(value)):
            kind = (f"a {type(value).__module__}.{type(value).__name__} (pass np.asarray of it)"
                    if isinstance(value, onp.ndarray) or hasattr(value, "__array__")
                    else type(value).__name__)
            raise TypeError(f"{_label(key)} must be a numpy array, got {kind}")
        if onp.dtype(value.dtype) not in FLOAT_DTYPES:
            raise TypeError(f"{_label(key)} must be float32 or float64, got dtype {value.dtype}")
    Wx, Wh = params["Wx"], params["Wh"]
    if Wh.ndim != 2 or Wh.shape[0] < 1:
        raise ValueError(f"params['Wh'] must have shape (H, 4H), got {shape_text(Wh.shape)}")
    H = Wh.shape[0]
    if Wx.ndim != 2 or Wx.shape[0] < 1:
        raise ValueError(f"params['Wx'] must have shape (D, 4H) = (D, {4 * H}), "
                         f"got {shape_text(Wx.shape)}")
    D = Wx.shape[0]
    O = None
    if Wx.shape[1] < 1 or H < 1:
        raise ValueError(f"params['Wx'] and params['Wh'] must have H >= 1, got "
                         f"{shape_text(Wx.shape)} and {shape_text(Wh.shape)}")
    if "Wy" in params:
        rows = "H" if dirs == 1 else "2H"
        if params["Wy"].ndim != 2 or params["Wy"].shape[1] < 1:
            raise ValueError(f"params['Wy'] must have shape ({rows}, O) = ({dirs * H}, O) with "
                             f"O >= 1, got {shape_text(params['Wy'].shape)}")
        O = params["Wy"].shape[1]
    expected = param_shapes(D, H, O, num_layers=num_layers, bidirectional=bidirectional)
    for key, shape in expected.items():
        if tuple(arrays[key].shape) != shape:
            sizes = f"D={D}, H={H}{'' if O is None else f', O={O}'}"
            if num_layers > 1 or bidirectional:
                sizes += f", {num_layers} layers, {dirs} directions"
            raise ValueError(f"{_label(key)} must have shape {shape_text(shape)} ({sizes}), "
                             f"got {shape_text(arrays[key].shape)}")
    dtypes = {onp.dtype(value.dtype) for value in arrays.values()}
    if len(dtypes) > 1:
        given = ", ".join(f"{k}: {v.dtype}" for k, v in arrays.items()) if len(arrays) <= 5 else \
            "; ".join(f"{d}: " + ", ".join([k for k, v in arrays.items() if v.dtype == d][:4])
                      + (", ..." if sum(v.dtype == d for v in arrays.values()) > 4 else "")
                      for d in sorted(map(str, dtypes)))
        raise ValueError(f"params must share one dtype, got {given}")
    for key, value in arrays.items():
        if not is_traced(value) and not onp.isfinite(value).all():
            where = tuple(int(i) for i in onp.argwhere(~onp.isfinite(value))[0])
            raise ValueError(f"{_label(key)} contains NaN or inf (first at index {where}, "
                             f"value {value[where]}): the parameters must be finite")
    return D, H, O
