"""The optimizers: SGD with momentum, and Adam; global-norm clipping and learning-rate decay.

Pure functions over parameter dicts (``{"Wx": array, ...}``): nothing is updated in place,
every function returns new dicts. One step, with g the gradient, as :func:`train.fit` takes
it::

    norm = sqrt(sum over every parameter of sum(g**2))           global gradient norm
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

__all__ = ["global_norm", "clip_by_global_norm", "learning_rate", "init_velocity",
           "momentum_update", "init_moments", "adam_update", "ADAM_BETAS", "ADAM_EPS"]

#: Adam's decay rates of the first and second moments, and its epsilon (PyTorch's defaults).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def global_norm(grads: dict) -> float:
    """The Euclidean norm of all gradients together, ``sqrt(sum_k sum(grads[k]**2))``.

    - grads: dict of arrays of any shapes.
    Returns a float (inf or nan when a gradient is not finite).
    """
    total = 0.0
    for g in grads.values():
        g = np.asarray(g, dtype=np.float64)
        total += float(np.vdot(g, g))
    return math.sqrt(total)


def clip_by_global_norm(grads: dict, max_norm: float | None) -> tuple[dict, float]:
    """Scale all gradients by one factor so that their global norm is at most ``max_norm``.

    - grads: dict of arrays; max_norm: a float > 0, or None / 0 / inf for no clipping.
    Returns ``(clipped, norm)``: a new dict (the same arrays when no scaling is needed) and the
    global norm before clipping.
    """
    if max_norm is not None and not (max_norm >= 0):
        raise ValueError(f"max_norm must be >= 0 (0 or None: no clipping), got {max_norm!r}")
    norm = global_norm(grads)
    if not max_norm or math.isinf(max_norm) or not norm > max_norm:
        return dict(grads), norm
    scale = max_norm / norm
    return {k: g * scale for k, g in grads.items()}, norm


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
    """Zero momentum buffers: a dict with the keys, shapes and dtypes of ``params``."""
    return {k: np.zeros_like(v) for k, v in params.items()}


def momentum_update(params: dict, grads: dict, velocity: dict, *, lr: float,
                    momentum: float) -> tuple[dict, dict]:
    """One momentum step: ``v = momentum * v + g``, ``p = p - lr * v``.

    - params, grads, velocity: dicts with the same keys and shapes.
    - lr: the step size (> 0); momentum: in [0, 1) (0: plain SGD).
    Returns ``(params, velocity)``, two new dicts.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if set(grads) != set(params) or set(velocity) != set(params):
        raise ValueError(f"grads and velocity must have the keys of params {sorted(params)}, "
                         f"got {sorted(grads)} and {sorted(velocity)}")
    new_v = {k: momentum * velocity[k] + grads[k] for k in params}
    new_p = {k: params[k] - lr * new_v[k] for k in params}
    return new_p, new_v



def init_moments(params: dict) -> dict:
    """Zero Adam moments: ``{"m": zeros like params, "v": zeros like params}``."""
    return {"m": init_velocity(params), "v": init_velocity(params)}


def adam_update(params: dict, grads: dict, moments: dict, *, lr: float, step: int,
                betas: tuple[float, float] = ADAM_BETAS,
                eps: float = ADAM_EPS) -> tuple[dict, dict]:
    """One Adam step (bias-corrected, as ``torch.optim.Adam`` without weight decay).

    - params, grads: dicts with the same keys and shapes; moments: ``{"m": dict, "v": dict}``
      like params (:func:`init_moments` at step 0).
    - lr: the step size (> 0); step: the steps taken before this one (0-based; the bias
      correction uses t = step + 1); betas: ``(beta1, beta2)``, each in [0, 1); eps: > 0.
    Returns ``(params, moments)``, new dicts.
    """
    beta1, beta2 = betas
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    if not (isinstance(moments, dict) and set(moments) == {"m", "v"}) or \
            not set(grads) == set(moments["m"]) == set(moments["v"]) == set(params):
        raise ValueError(f"grads, moments['m'] and moments['v'] must have the keys of params "
                         f"{sorted(params)}")
    m, v = moments["m"], moments["v"]
    t = step + 1
    new_m = {k: beta1 * m[k] + (1 - beta1) * grads[k] for k in params}
    new_v = {k: beta2 * v[k] + (1 - beta2) * grads[k] * grads[k] for k in params}
    c1, c2 = 1 - beta1 ** t, 1 - beta2 ** t
    new_p = {k: params[k] - lr * (new_m[k] / c1) / (np.sqrt(new_v[k] / c2) + eps)
             for k in params}
    return new_p, {"m": new_m, "v": new_v}
