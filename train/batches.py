"""What one training step reads: its minibatch (drawn from the seed and the step alone) and,
with truncated BPTT, its chunk of time steps and the state carried into it.

* :func:`batch_indices`: the sequences of minibatch ``step``, by
  ``np.random.default_rng((seed, step))``: a run stopped at step k and resumed computes, bit
  for bit, what an uninterrupted run computes.
* :func:`chunk_plan`: with ``config.tbptt`` K > 0, a batch of sequences takes several steps,
  one per chunk of K time steps that carries loss weight, each from the final state of the
  one before (detached), the first from a zero state; step s trains chunk ``s % n`` of batch
  ``s // n``. With K = T it is exactly the run without ``tbptt``.
* :func:`state_shape`, :func:`check_carry`: the state carried between chunks, as a
  checkpoint holds it.
"""
import numpy as np

from .config import TrainConfig
from .data import Task

__all__ = ["batch_indices", "chunk_plan", "state_shape", "check_carry"]


def batch_indices(seed: int, step: int, n: int, batch: int) -> np.ndarray:
    """The sequences of minibatch ``step``: ``batch`` distinct indices in ``[0, n)``.

    Drawn by ``np.random.default_rng((seed, step))``, so they depend on nothing else.
    Returns an int array ``(batch,)``.
    """
    if not 1 <= batch <= n:
        raise ValueError(f"batch must be in [1, {n}] (the training set has {n} sequences), "
                         f"got {batch}")
    return np.random.default_rng((seed, step)).choice(n, batch, replace=False)


def chunk_plan(seq_len: int, tbptt: int, mask: np.ndarray | None = None) -> list:
    """The steps of one batch of sequences: ``[(warm, start, stop), ...]``, in order.

    - seq_len: T; tbptt: K, the chunk length (0: whole sequences); mask: the loss weights
      ``(T,)`` of the task, or None.
    The chunks are ``[0, K), [K, 2K), ...`` (the last may be shorter). A step trains on the
    time steps ``[start, stop)`` of a chunk that carries loss weight, from the state at
    ``warm``, the end of the step before (0 for the first): the chunks between, which carry
    no weight, are run forward only. Without ``tbptt``, or with K = T: ``[(0, 0, T)]``.
    """
    K = tbptt or seq_len
    plan, warm = [], 0
    for start in range(0, seq_len, K):
        stop = min(start + K, seq_len)
        if mask is None or np.any(mask[start:stop] > 0):
            plan.append((warm, start, stop))
            warm = stop
    return plan


def state_shape(config: TrainConfig) -> tuple:
    """The shape of each of a training batch's ``(h, c)`` (lstm_ag's layout): ``(B, H)`` for
    one layer and direction, else ``(layers * directions, B, H)``."""
    B, H = config.batch, config.hidden
    stacked = config.layers * config.directions
    return (B, H) if stacked == 1 else (stacked, B, H)


def check_carry(progress, task: Task, config: TrainConfig) -> None:
    """Raise ``ValueError`` unless ``progress.carry`` (of a :class:`train.loop.Progress`) is
    what step ``progress.step`` of a run of ``config`` on ``task`` starts from: None at the
    start of a batch (and without ``tbptt``), else ``{"chunk": step % chunks per batch, "h",
    "c"}`` of :func:`state_shape`."""
    chunks = len(chunk_plan(task.seq_len, config.tbptt, task.mask)) if config.tbptt else 1
    chunk, carry = progress.step % chunks, progress.carry
    if (carry is None) != (chunk == 0):
        raise ValueError(f"carry is {'missing' if carry is None else 'given'} at step "
                         f"{progress.step}, chunk {chunk} of the {chunks} of a batch (a carried "
                         "state is there exactly when a step is in the middle of a batch)")
    if carry is not None:
        if carry.get("chunk") != chunk:
            raise ValueError(f"carry is the state before chunk {carry.get('chunk')!r}, but step "
                             f"{progress.step} trains chunk {chunk} of {chunks}")
        for key in ("h", "c"):
            value = carry.get(key)
            if (not isinstance(value, np.ndarray) or value.shape != state_shape(config)
                    or not np.isfinite(value).all()):
                raise ValueError(f"carry['{key}'] must be a finite array of shape "
                                 f"{state_shape(config)}")
