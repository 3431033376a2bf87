"""What the trainer trains on: a :class:`Task` (training and validation arrays, loss weights, a
baseline), whichever made it: the toy generators of :mod:`train.data` or a user's series
(:mod:`train.series`)."""
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Task", "masked_mse"]


@dataclass(frozen=True, eq=False)
class Task:
    """A generated task. N is the number of sequences, T the sequence length.

    - name: ``"sine"``, ``"counting"`` or ``"adding"``.
    - train_x ``(T, N_train, D)``, train_y ``(T, N_train, O)``: training inputs and targets.
    - val_x ``(T, N_val, D)``, val_y ``(T, N_val, O)``: the held-out validation set.
    - mask: per-step loss weights ``(T,)``, or None for every step alike.
    - val_baseline ``(T, N_val, O)``: the naive baseline's predictions on the validation set.
    - baseline: what the baseline does, in words.
    - spec: the generator's settings, JSON-ready; ``make_task(**spec)`` regenerates the task.
    - scale: what the values were divided by (counting), 1.0 otherwise.
    - val_mask: per-step weights ``(T,)`` of the validation MSE when they differ from the
      training mask (a series scores one target per validation window); None: ``mask``.
    """
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    mask: np.ndarray | None
    val_baseline: np.ndarray
    baseline: str
    spec: dict = field(default_factory=dict)
    scale: float = 1.0
    val_mask: np.ndarray | None = None

    @property
    def input_size(self):
        """D, features per step."""
        return self.train_x.shape[2]

    @property
    def output_size(self):
        """O, values predicted per step."""
        return self.train_y.shape[2]

    @property
    def seq_len(self):
        """T, steps per sequence."""
        return self.train_x.shape[0]

    @property
    def val_weights(self):
        """The per-step weights of the validation MSE ``(T,)``: ``val_mask``, else ``mask``."""
        return self.mask if self.val_mask is None else self.val_mask

    @property
    def baseline_mse(self):
        """The baseline's validation MSE (same weights as the model's), a float."""
        return masked_mse(self.val_baseline, self.val_y, self.val_weights)


def masked_mse(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error with optional per-step weights (the formula of ``lstm_ag.mse``).

    - pred, target: ``(T, N, O)``.
    - mask: None, or weights ``(T,)``: ``sum(mask * err**2) / (sum(mask) * N * O)``.
    Returns a float.
    """
    err = np.asarray(pred) - np.asarray(target)
    if mask is None:
        return float(np.mean(err * err))
    w = np.asarray(mask, dtype=err.dtype)[:, None, None]
    return float(np.sum(w * err * err) / (np.sum(w) * err.shape[1] * err.shape[2]))
