"""One training step, asv style: ``setup`` prepares a case, ``time_step`` times one step.

The runner (``python -m benchmarks``) uses these same classes: it calls :meth:`TimeStep.prepare`
(``setup`` without the raise on disagreement, so a wrong contender is flagged in the table
rather than dropped) and times :meth:`TimeStep.time_step`, interleaving the contenders.
asv conventions kept: ``params`` / ``param_names`` span the grid, ``setup`` raising
``NotImplementedError`` skips a combination (a peer that is not installed),
``peakmem_*`` is measured by asv as the process's peak memory.
"""
from typing import ClassVar

from .contenders import DTYPES, SIZES, contender_names, prepare

__all__ = ["TimeStep"]


class TimeStep:
    """Forward + all gradients, linear readout, MSE at every step, by each contender.

    Sizes (B, T, D, H): tiny (1, 50, 1, 16), small (32, 100, 8, 64),
    medium (64, 200, 32, 256), large (64, 100, 128, 512); float64 and float32.
    """
    params: ClassVar[tuple] = (list(SIZES), list(DTYPES), list(contender_names()))
    param_names: ClassVar[list] = ["size", "dtype", "contender"]
    timeout = 600
    warmup_time = 0.5

    def prepare(self, size, dtype, contender, shape=None, num_layers=1):
        """Set up and check one case; ``shape`` (B, T, D, H) overrides the named size,
        ``num_layers`` stacks LSTM layers.

        Raises :class:`~benchmarks.contenders.Unavailable` (a ``NotImplementedError``) when
        the contender is a peer that is not installed; returns the
        :class:`~benchmarks.contenders.Case` (its ``check`` may say it disagrees).
        """
        self.case = prepare(size, dtype, contender, size=shape, num_layers=num_layers)
        return self.case

    def setup(self, size, dtype, contender):
        case = self.prepare(size, dtype, contender)
        if not case.check.ok:
            raise AssertionError(f"{contender} at {size} {dtype}: {case.check}")

    def time_step(self, size=None, dtype=None, contender=None):
        """One training step of the case set up last (arguments as asv passes them)."""
        self.case.step()

    def peakmem_step(self, size=None, dtype=None, contender=None):
        self.case.step()
