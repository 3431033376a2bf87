"""The report of a gradient check: one row per block (a parameter, or one gate of it).

Errors are measured per block: ``abs = max |a - r|`` and ``rel = abs / max(max |a|, max |r|)``,
a normwise relative error that near-zero entries cannot blow up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Row", "GradientReport", "table"]


@dataclass
class Row:
    """Errors of one block: a parameter, and a gate for the 4H-wide ones."""
    param: str
    gate: str | None
    abs_autograd: float
    rel_autograd: float
    abs_fd: float = float("nan")
    rel_fd: float = float("nan")
    fd_entries: int = 0
    size: int = 0
    ok: bool = True
    problem: str = ""          # why the backward's gradient could not be compared, if it could not

    @property
    def name(self):
        return self.param if self.gate is None else f"{self.param}[{self.gate}]"

    @property
    def rel(self):
        return max(self.rel_autograd, 0.0 if np.isnan(self.rel_fd) else self.rel_fd)


@dataclass
class GradientReport:
    """The outcome of :func:`check_gradients`.

    - ok: every block within tolerance against both references.
    - worst: ``(parameter, gate or None, max relative error)``, at ``first_bad_length`` when
      the backward disagrees, else over the whole sequence.
    - first_bad_length: shortest prefix length at which the backward disagrees, or None.
    - rows: the per-block errors over the whole sequence; bad_rows: at ``first_bad_length``.
    """
    ok: bool
    worst: tuple
    first_bad_length: int | None
    rows: list
    tolerances: tuple
    length: int
    dtype: str
    seconds: float = 0.0
    bad_rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __str__(self):
        lines = [f"gradient check: T={self.length}, backward in {self.dtype}; "
                 f"rel tol {self.tolerances[0]:.0e} vs autograd, {self.tolerances[1]:.0e} vs "
                 f"finite differences"]
        lines += table(self.rows)
        if self.first_bad_length is not None:
            lines += ["", f"first disagreement at sequence length {self.first_bad_length}:"]
            lines += table(self.bad_rows)
        lines += self.notes
        name, gate, rel = self.worst
        where = name if gate is None else f"{name} gate {gate}"
        verdict = "OK" if self.ok else "MISMATCH"
        first = "" if self.first_bad_length is None else \
            f", first wrong at length {self.first_bad_length}"
        lines.append(f"{verdict}: worst {where}, rel error {rel:.1e}{first} "
                     f"({self.seconds:.2f} s)")
        return "\n".join(lines)


def table(rows: list) -> list[str]:
    """The rows as text lines: a header, a rule, one line per block."""
    head = (f"{'param':<8} {'size':>6}  {'abs vs autograd':>15} {'rel vs autograd':>15}  "
            f"{'abs vs FD':>10} {'rel vs FD':>10} {'FD n':>5}  ok")
    out = [head, "-" * len(head)]
    for r in rows:
        fd = (f"{r.abs_fd:>10.1e} {r.rel_fd:>10.1e} {r.fd_entries:>5d}" if r.fd_entries
              else f"{'-':>10} {'-':>10} {0:>5d}")
        out.append(f"{r.name:<8} {r.size:>6d}  {r.abs_autograd:>15.1e} {r.rel_autograd:>15.1e}  "
                   f"{fd}  {'yes' if r.ok else 'NO'}")
    return out
