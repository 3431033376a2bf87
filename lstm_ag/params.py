"""Parameters: creation, shapes and validation.

Parameters are a plain dict of float arrays (autograd differentiates dicts natively)::

    Wx (D, 4H)   input weights        z_t = x_t @ Wx + h_{t-1} @ Wh + b
    Wh (H, 4H)   recurrent weights    (row-vector convention, batch rows first)
    b  (4H,)     bias
    Wy (H, O)    readout (optional)   y_t = h_t @ Wy + by
    by (O,)      readout bias

The 4H axis holds the gates in the order i, f, g, o (:data:`GATES`); :func:`split_gates` is
the one place that slices it.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as onp
from autograd.tracer import Box

__all__ = ["GATES", "split_gates", "init_params", "param_shapes", "check_params",
           "param_dtype", "is_traced", "untraced"]

#: The gates along the 4H axis, in order (the order of PyTorch, Keras and Flax; CS231n's is
#: i, f, o, g). ``g`` is the candidate cell value, the notebooks' C~.
GATES = ("i", "f", "g", "o")

CORE_KEYS = ("Wx", "Wh", "b")
READOUT_KEYS = ("Wy", "by")
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


def param_shapes(input_size: int, hidden_size: int,
                 output_size: int | None = None) -> dict[str, tuple[int, ...]]:
    """The exact shape of every parameter, as a dict of tuples.

    - input_size: D; hidden_size: H; output_size: O or None for no readout.
    Returns ``{"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)}`` plus ``"Wy": (H, O), "by": (O,)``.
    """
    D, H = input_size, hidden_size
    shapes = {"Wx": (D, 4 * H), "Wh": (H, 4 * H), "b": (4 * H,)}
    if output_size is not None:
        shapes.update(Wy=(H, output_size), by=(output_size,))
    return shapes


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
                seed: int = 0, forget_bias: float = 1.0,
                dtype: Any = onp.float64) -> dict[str, onp.ndarray]:
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
    Returns a dict ``{"Wx": (D, 4H), "Wh": (H, 4H), "b": (4H,)[, "Wy": (H, O), "by": (O,)]}``.
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
    shapes = param_shapes(D, H, O)
    count = sum(math.prod(shape) for shape in shapes.values())
    check_fits_in_memory(count * dtype.itemsize, f"init_params(D={D}, H={H}, O={O})")
    rng = onp.random.default_rng(seed)
    k = 1.0 / onp.sqrt(H)
    params = {}
    for name in ("Wx", "Wh", "Wy", "by"):
        if name in shapes:
            params[name] = rng.uniform(-k, k, shapes[name]).astype(dtype)
    b = onp.zeros(4 * H, dtype)
    _, b_f, _, _ = split_gates(b)
    b_f[:] = forget_bias
    params["b"] = b
    return {name: params[name] for name in shapes}


def shape_text(shape: tuple) -> str:
    """A shape as the messages print it: ``(3, 4)``, ``(4,)``."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def check_params(params: dict, *, readout: bool = False) -> tuple[int, int, int | None]:
    """Validate a parameter dict and return its sizes ``(D, H, O)`` (O is None without readout).

    - params: dict with ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)``, optionally
      ``Wy (H, O)``, ``by (O,)``; numpy arrays or autograd boxes (tracing is not disturbed:
      only shapes and dtypes are inspected).
    - readout: require ``Wy`` and ``by``.
    Raises ``TypeError`` when ``params`` is not a dict or an entry is not a float array (numpy
    subclasses such as ``np.matrix``, masked arrays and memmaps are refused: pass
    ``np.asarray``), and ``ValueError`` naming the entry, the expected shape and the given one,
    an unknown key (every method refuses them alike), or NaN/inf in a (plain) entry.
    """
    inner = untraced(params)
    if not isinstance(inner, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    needed = CORE_KEYS + (READOUT_KEYS if readout else ())
    params = inner            # shapes and dtypes, read without recording anything
    unknown = [k for k in params if k not in CORE_KEYS + READOUT_KEYS]
    if unknown:
        raise ValueError(f"params has unknown keys {unknown}; an LSTM's parameters are "
                         "'Wx', 'Wh', 'b' and, for a readout, 'Wy', 'by'")
    missing = [k for k in needed if k not in params]
    if missing:
        readout_only = set(missing) <= set(READOUT_KEYS)
        what = " (predict and mse need the readout Wy, by)" if readout_only else ""
        raise ValueError(f"params is missing {', '.join(repr(k) for k in missing)}{what}; "
                         f"it has {sorted(params)}")
    for key in needed + tuple(k for k in READOUT_KEYS if k in params and k not in needed):
        value = params[key]
        if not (type(value) is onp.ndarray or is_traced(value)):
            kind = (f"a {type(value).__module__}.{type(value).__name__} (pass np.asarray of it)"
                    if isinstance(value, onp.ndarray) or hasattr(value, "__array__")
                    else type(value).__name__)
            raise TypeError(f"params[{key!r}] must be a numpy array, got {kind}")
        if onp.dtype(value.dtype) not in FLOAT_DTYPES:
            raise TypeError(f"params[{key!r}] must be float32 or float64, got dtype {value.dtype}")
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
        if params["Wy"].ndim != 2 or params["Wy"].shape[1] < 1:
            raise ValueError(f"params['Wy'] must have shape (H, O) = ({H}, O) with O >= 1, "
                             f"got {shape_text(params['Wy'].shape)}")
        O = params["Wy"].shape[1]
    expected = param_shapes(D, H, O)
    for key, shape in expected.items():
        if key in params and tuple(params[key].shape) != shape:
            raise ValueError(f"params[{key!r}] must have shape {shape_text(shape)} "
                             f"(D={D}, H={H}{'' if O is None else f', O={O}'}), "
                             f"got {shape_text(params[key].shape)}")
    if ("Wy" in params) != ("by" in params):
        have, lack = ("Wy", "by") if "Wy" in params else ("by", "Wy")
        raise ValueError(f"params has {have!r} but not {lack!r}: the readout needs both")
    dtypes = {onp.dtype(params[k].dtype) for k in expected if k in params}
    if len(dtypes) > 1:
        given = ", ".join(f"{k}: {params[k].dtype}" for k in expected if k in params)
        raise ValueError(f"params must share one dtype, got {given}")
    for key in expected:
        value = params.get(key)
        if value is not None and not is_traced(value) and not onp.isfinite(value).all():
            where = tuple(int(i) for i in onp.argwhere(~onp.isfinite(value))[0])
            raise ValueError(f"params[{key!r}] contains NaN or inf (first at index {where}, "
                             f"value {value[where]}): the parameters must be finite")
    return D, H, O
