"""The optimizers: SGD with momentum, and Adam; global-norm clipping and learning-rate decay.

Pure functions over parameter trees: a dict of arrays (``{"Wx": array, ...}``), or a stacked
or bidirectional model's nested dicts and lists (``"reverse"``, ``"layers"``: see
:mod:`lstm_ag.params`), every array updated alike (:func:`lstm_ag.tree_map`). Nothing is
updated in place, every function returns new trees of the same structure. One step, with g the
gradient, as :func:`train.fit` takes it::

    norm = sqrt(sum over every array of sum(g**2))               global gradient norm (all
                                                                 layers and directions)
    g    = g * min(1, clip / norm)                               clipping (clip > 0)
    lr_t = lr / (1 + decay * step)                               inverse-time decay (decay >= 0)
    v    = momentum * v + g                                      velocity (PyTorch's convention)
    p    = p - lr_t * v

or, with Adam (Kingma & Ba 2015, as ``torch.optim.Adam``), t = step + 1::

    m    = beta1 * m + (1 - beta1) * g                           first moment
    v    = beta2 * v + (1 - beta2) * g**2                        second moment
    p    = p - lr_t * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

The schedule depends on the step number only, never on the total number of steps, so a run
that is stopped and resumed follows the same schedule as one that was not.
"""
import math

import numpy as np

from lstm_ag import flatten, tree_map

__all__ = ["global_norm", "clip_by_global_norm", "learning_rate", "init_velocity",
           "momentum_update", "init_moments", "adam_update", "ADAM_BETAS", "ADAM_EPS"]

#: Adam's decay rates of the first and second moments, and its epsilon (PyTorch's defaults).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _names(tree):
    return sorted(flatten(tree)) if isinstance(tree, dict) else repr(tree)


def _check_like(params, what, *trees):
    """Refuse trees (gradients, buffers) that do not hold the arrays of ``params``."""
    names = _names(params)
    if any(not isinstance(tree, dict) or _names(tree) != names for tree in trees):
        raise ValueError(f"{what} must have the keys of params {names}, got "
                         f"{' and '.join(str(_names(tree)) for tree in trees)}")


def global_norm(grads: dict) -> float:
    """The Euclidean norm of all gradients together, ``sqrt(sum_k sum(grads[k]**2))``.

    - grads: dict of arrays of any shapes, or a nested tree of them (every array counts).
    Returns a float (inf or nan when a gradient is not finite).
    """
    total = 0.0
    for g in flatten(grads).values():
        g = np.asarray(g, dtype=np.float64)
        total += float(np.vdot(g, g))
    return math.sqrt(total)


def clip_by_global_norm(grads: dict, max_norm: float | None) -> tuple[dict, float]:
    """Scale all gradients by one factor so that their global norm is at most ``max_norm``.

    - grads: dict (or tree) of arrays; max_norm: a float > 0, or None / 0 / inf for no
      clipping.
    Returns ``(clipped, norm)``: a new tree (the same arrays when no scaling is needed) and the
    global norm before clipping.
    """
    if max_norm is not None and not (max_norm >= 0):
        raise ValueError(f"max_norm must be >= 0 (0 or None: no clipping), got {max_norm!r}")
    norm = global_norm(grads)
    if not max_norm or math.isinf(max_norm) or not norm > max_norm:
        return tree_map(lambda g: g, grads), norm
    scale = max_norm / norm
    return tree_map(lambda g: g * scale, grads), norm


def learning_rate(lr: float, step: int, decay: float = 0.0) -> float:
    """The learning rate at ``step`` (0-based): ``lr / (1 + decay * step)``.

    - lr: base rate > 0; step: int >= 0; decay: >= 0 (0: constant).
    Returns a float.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not decay >= 0:
        raise ValueError(f"decay must be >= 0, got {decay!r}")
    return lr / (1.0 + decay * step)


def init_velocity(params: dict) -> dict:
    """Zero momentum buffers: a tree with the keys, shapes and dtypes of ``params``."""
    return tree_map(np.zeros_like, params)


def momentum_update(params: dict, grads: dict, velocity: dict, *, lr: float,
                    momentum: float) -> tuple[dict, dict]:
    """One momentum step: ``v = momentum * v + g``, ``p = p - lr * v``.

    - params, grads, velocity: trees (dicts) with the same keys and shapes.
    - lr: the step size (> 0); momentum: in [0, 1) (0: plain SGD).
    Returns ``(params, velocity)``, two new trees.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    _check_like(params, "grads and velocity", grads, velocity)
    new_v = tree_map(lambda p, v, g: momentum * v + g, params, velocity, grads)
    new_p = tree_map(lambda p, v: p - lr * v, params, new_v)
    return new_p, new_v


def init_moments(params: dict) -> dict:
    """Zero Adam moments: ``{"m": zeros like params, "v": zeros like params}`` (trees)."""
    return {"m": init_velocity(params), "v": init_velocity(params)}


def adam_update(params: dict, grads: dict, moments: dict, *, lr: float, step: int,
                betas: tuple[float, float] = ADAM_BETAS,
                eps: float = ADAM_EPS) -> tuple[dict, dict]:
    """One Adam step (bias-corrected, as ``torch.optim.Adam`` without weight decay).

    - params, grads: trees (dicts) with the same keys and shapes; moments: ``{"m": tree,
      "v": tree}`` like params (:func:`init_moments` at step 0).
    - lr: the step size (> 0); step: the steps taken before this one (0-based; the bias
      correction uses t = step + 1); betas: ``(beta1, beta2)``, each in [0, 1); eps: > 0.
    Returns ``(params, moments)``, new trees.
    """
    beta1, beta2 = betas
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    if not (isinstance(moments, dict) and set(moments) == {"m", "v"}):
        raise ValueError("moments must be {'m': tree, 'v': tree} like params "
                         f"{_names(params)}, got {_names(moments)}")
    _check_like(params, "grads, moments['m'] and moments['v']", grads, moments["m"],
                moments["v"])
    t = step + 1
    new_m = tree_map(lambda p, m, g: beta1 * m + (1 - beta1) * g, params, moments["m"], grads)
    new_v = tree_map(lambda p, v, g: beta2 * v + (1 - beta2) * g * g, params, moments["v"], grads)
    c1, c2 = 1 - beta1 ** t, 1 - beta2 ** t
    new_p = tree_map(lambda p, m, v: p - lr * (m / c1) / (np.sqrt(v / c2) + eps),
                     params, new_m, new_v)
    return new_p, {"m": new_m, "v": new_v}
