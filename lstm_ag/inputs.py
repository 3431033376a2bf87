"""Validation and normalisation of sequences, states, targets and masks.

The public functions of :mod:`lstm_ag.model` validate their arguments once, here, through
:func:`forward_arguments` and :func:`loss_arguments`, and then work on time-major arrays.

Everything here inspects shapes and dtypes, which autograd boxes carry; values (NaN, inf) are
only checked on plain arrays, never on traced ones, so validation does not disturb tracing.
"""
from __future__ import annotations

from typing import Any

import numpy as onp

from .params import check_params, is_traced, param_dtype, shape_text, structure, untraced

__all__ = ["as_sequence", "as_state", "as_targets", "as_mask", "as_lengths",
           "forward_arguments", "loss_arguments"]


def _as_array(value, name, dtype):
    """A plain array of ``dtype`` from array-likes; boxes pass through untouched.

    Refused up front, with the argument's name: masked arrays (their mask would be dropped
    silently), tensors of other libraries (convert them yourself: ``t.detach().cpu().numpy()``),
    ragged nested lists, non-real dtypes, and finite values too large for ``dtype``.
    """
    if is_traced(value):
        return value
    if isinstance(value, (list, tuple)) and any(is_traced(v) for v in value):
        import autograd.numpy as anp
        return anp.stack([anp.asarray(v) for v in value])
    if isinstance(value, onp.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; pass plain values (np.asarray(...)) and, "
                        "for the loss, a mask of weights")
    if not isinstance(value, onp.ndarray) and hasattr(value, "detach"):
        raise TypeError(f"{name} is a {type(value).__module__}.{type(value).__name__}; lstm_ag "
                        "works on numpy arrays: pass it as .detach().cpu().numpy()")
    try:
        array = onp.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"{name} must be an array of numbers ({err})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {array.dtype}")
    if array.dtype != dtype and array.size and dtype.itemsize < max(array.dtype.itemsize, 8):
        with onp.errstate(invalid="ignore"):
            largest = float(onp.nanmax(onp.abs(array[onp.isfinite(array)]), initial=0.0))
        limit = float(onp.finfo(dtype).max)
        if largest > limit:
            raise ValueError(f"{name} has finite values up to {largest:.3g}, which overflow "
                             f"{dtype}, the parameters' dtype (largest {limit:.3g})")
    return array.astype(dtype, copy=False)


def _check_finite(array, name):
    if is_traced(array):
        return
    bad = ~onp.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in onp.argwhere(bad)[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {where}, "
                         f"value {array[where]}); {int(bad.sum())} such values in all")


def as_sequence(xs: Any, input_size: int, dtype: onp.dtype, name: str = "xs") -> tuple:
    """Bring a sequence to time-major ``(T, B, D)``.

    - xs: ``(T, B, D)`` for a batch, ``(T, D)`` for one sequence, a list of T vectors of
      length D, or (only when D = 1) ``(T,)``, a sequence of scalars.
    - input_size: D expected by the parameters; dtype: the parameters' dtype (xs is cast).
    Returns ``(xs3, single)``: xs3 ``(T, B, D)``, and whether the input was one sequence.
    """
    xs = _as_array(xs, name, dtype)
    D = input_size
    if xs.ndim == 1 and D == 1:
        xs = xs[:, None]
    if xs.ndim not in (2, 3) or xs.shape[-1] != D:
        raise ValueError(f"{name} must have shape (T, B, D) or (T, D) with D = {D} "
                         f"(time-major), got {shape_text(xs.shape)}")
    if xs.shape[0] == 0:
        raise ValueError(f"{name} is an empty sequence (T = 0, shape {shape_text(xs.shape)}); "
                         "at least one time step is needed")
    if xs.ndim == 3 and xs.shape[1] == 0:
        raise ValueError(f"{name} has an empty batch (B = 0, shape {shape_text(xs.shape)})")
    _check_finite(xs, name)
    single = xs.ndim == 2
    return (xs[:, None, :] if single else xs), single


def as_state(state: Any, batch: int, hidden_size: int, dtype: onp.dtype,
             single: bool, states: int = 1) -> tuple:
    """The initial state ``(h0, c0)``: each ``(B, H)`` for one layer and direction, else
    ``(K, B, H)`` with K = layers * directions (PyTorch's layout); zeros when ``state`` is None.

    - state: None, or a pair ``(h0, c0)`` of that shape (without the B axis when xs is one
      sequence: ``(H,)``, or ``(K, H)``).
    - batch: B; hidden_size: H; dtype: the parameters' dtype; single: xs was ``(T, D)``;
      states: K.
    """
    B, H, K = batch, hidden_size, states
    full = (B, H) if K == 1 else (K, B, H)
    if state is None:
        zeros = onp.zeros(full, dtype)
        return zeros, zeros
    if is_traced(state):                 # a traced pair, when autograd differentiates it
        if not isinstance(untraced(state), (tuple, list)) or len(untraced(state)) != 2:
            raise TypeError(f"state must be a pair (h0, c0), got {type(state).__name__}")
        state = (state[0], state[1])
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise TypeError(f"state must be a pair (h0, c0), got {type(state).__name__}")
    out = []
    for name, value in zip(("state[0] (h0)", "state[1] (c0)"), state, strict=True):
        value = _as_array(value, name, dtype)
        shape = (*full[:-2], H) if single else full
        if tuple(value.shape) != shape:
            names = {(True, True): "(H,)", (True, False): "(B, H)",
                     (False, True): "(layers * directions, H)",
                     (False, False): "(layers * directions, B, H)"}[K == 1, single]
            raise ValueError(f"{name} must have shape {names} = {shape_text(shape)}, got "
                             f"{shape_text(value.shape)}")
        _check_finite(value, name)
        out.append(value[..., None, :] if single else value)
    return tuple(out)


def as_lengths(lengths: Any, T: int, B: int, single: bool) -> onp.ndarray | None:
    """Each sequence's length, ``(B,)`` integers in [1, T], or None when every sequence runs
    all T steps (then nothing needs the lengths).

    - lengths: None, ``(B,)`` integers (PyTorch's packed-sequence lengths: the steps past a
      sequence's length are padding), or one integer for one sequence.
    """
    if lengths is None:
        return None
    if is_traced(lengths):
        raise TypeError("lengths must be plain integers, not a value being differentiated")
    if isinstance(lengths, (bool, onp.bool_)):
        raise TypeError(f"lengths must be integers, got {lengths!r}")
    array = _as_array(lengths, "lengths", onp.dtype(onp.float64)) if not isinstance(
        lengths, onp.ndarray) else lengths
    if array.dtype.kind == "b" or array.dtype.kind not in "iuf":
        raise TypeError(f"lengths must be integers, got dtype {array.dtype}")
    if single and array.ndim == 0:
        array = array[None]
    if array.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), one length per sequence, got "
                         f"{shape_text(array.shape)}")
    if array.dtype.kind == "f" and not (onp.isfinite(array).all()
                                        and (array == onp.round(array)).all()):
        raise TypeError(f"lengths must be whole numbers, got {array.tolist()}")
    bad = onp.flatnonzero((array < 1) | (array > T))
    if bad.size:
        raise ValueError(f"lengths must lie in [1, T] = [1, {T}] (T = xs.shape[0]), got "
                         f"lengths[{bad[0]}] = {array[bad[0]]:g}")
    array = array.astype(onp.int64)
    return None if (array == T).all() else array


def as_targets(targets: Any, shape: tuple, dtype: onp.dtype, single: bool) -> Any:
    """Targets of the predictions' shape, ``(T, B, O)``.

    - targets: ``(T, B, O)``, or ``(T, O)`` for one sequence (``(T,)`` when O = 1).
    - shape: the predictions' ``(T, B, O)``; single: xs was one sequence.
    """
    T, B, O = shape
    targets = _as_array(targets, "targets", dtype)
    if single and targets.ndim == 1 and O == 1:
        targets = targets[:, None]
    want = (T, O) if single else (T, B, O)
    if tuple(targets.shape) != want:
        names = "(T, O)" if single else "(T, B, O)"
        raise ValueError(f"targets must have the predictions' shape {names} = "
                         f"{shape_text(want)}, got {shape_text(targets.shape)}")
    _check_finite(targets, "targets")
    return targets[:, None, :] if single else targets


def as_mask(mask: Any, T: int, B: int, dtype: onp.dtype, single: bool) -> Any:
    """Per-step loss weights as ``(T, B, 1)``, or None.

    - mask: None, ``(T,)`` (same for every sequence) or ``(T, B)``; weights >= 0, not all 0.
    """
    if mask is None:
        return None
    traced = is_traced(mask)
    mask = _as_array(mask, "mask", onp.dtype(onp.float64))
    if mask.shape == (T,):
        mask = onp.broadcast_to(mask[:, None], (T, B))
    if mask.shape != (T, B) or (single and B != 1):
        want = f"(T,) = ({T},)" if single else f"(T,) = ({T},) or (T, B) = ({T}, {B})"
        raise ValueError(f"mask must have shape {want}, got {shape_text(mask.shape)}")
    if traced:                         # differentiated with respect to the mask: as given
        return mask[:, :, None]
    if not onp.isfinite(mask).all() or (mask < 0).any() or not mask.any():
        raise ValueError("mask must hold finite weights >= 0, not all zero")
    # The loss divides by sum(mask): scale the weights to a largest of 1 (same loss) so that
    # neither the sum nor the cast to float32 can overflow.
    return (mask / mask.max()).astype(dtype)[:, :, None]


def valid_steps(lengths: onp.ndarray, T: int) -> onp.ndarray:
    """``(T, B)`` booleans: step t of sequence b is within its length."""
    return onp.arange(T)[:, None] < lengths[None, :]


def _arguments(params, xs, state, readout, lengths):
    """Validate params, xs, state and lengths once:
    ``(xs, h0, c0, lengths, single, O, dtype, struct)``."""
    D, H, O = check_params(params, readout=readout)
    struct = structure(params)                     # the one call of a public call
    dtype = param_dtype(params)
    xs, single = as_sequence(xs, D, dtype)
    T, B, _ = xs.shape
    h0, c0 = as_state(state, B, H, dtype, single, struct[0] * struct[1])
    return xs, h0, c0, as_lengths(lengths, T, B, single), single, O, dtype, struct


def forward_arguments(params: dict, xs: Any, state: Any, *, readout: bool,
                      lengths: Any = None) -> tuple:
    """Validate the arguments of a forward once.

    - params: the parameter dict (validated; with ``readout`` it must hold ``Wy``, ``by``).
    - xs, state, lengths: as :func:`lstm_ag.lstm_forward` takes them.
    Returns ``(xs, h0, c0, lengths, single, struct)``: xs ``(T, B, D)``; h0 and c0
    ``(B, H)``, or ``(K, B, H)`` for K = layers * directions > 1, in the parameters' dtype;
    lengths ``(B,)`` or None (every sequence runs all T steps); whether xs was one sequence
    ``(T, D)`` (the outputs then drop the batch axis); and ``struct = (num_layers, dirs)``
    (:func:`lstm_ag.params.structure`, computed here once for the whole call).
    """
    xs, h0, c0, lengths, single, _, _, struct = _arguments(params, xs, state, readout, lengths)
    return xs, h0, c0, lengths, single, struct


def loss_arguments(params: dict, xs: Any, targets: Any, state: Any = None,
                   mask: Any = None, lengths: Any = None) -> tuple:
    """Validate the arguments of :func:`lstm_ag.mse` once.

    Returns ``((xs, h0, c0, targets, weights, lengths), struct)``, all time-major: xs
    ``(T, B, D)``, h0 and c0 as :func:`forward_arguments` gives them, targets ``(T, B, O)``,
    weights ``(T, B, 1)`` or None, lengths ``(B,)`` or None (with lengths the weights are
    zero past each sequence's length: the padding is not part of the loss); and
    ``struct = (num_layers, dirs)`` as :func:`forward_arguments` gives it.
    """
    xs, h0, c0, lengths, single, O, dtype, struct = _arguments(params, xs, state, True, lengths)
    T, B, _ = xs.shape
    targets = as_targets(targets, (T, B, O), dtype, single)
    weights = as_mask(mask, T, B, dtype, single)
    if lengths is not None:
        valid = valid_steps(lengths, T)[:, :, None].astype(dtype)
        weights = valid if weights is None else weights * valid
        if not is_traced(weights) and not weights.any():
            raise ValueError("mask is zero on every step within lengths: the loss would "
                             "have no terms")
    return (xs, h0, c0, targets, weights, lengths), struct
