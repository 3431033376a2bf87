"""What a check returns: the diagnosis in plain sentences first, then one row per block."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from .compare import Row

__all__ = ["GradientReport", "table", "forward_table"]

_WRONG_STYLE = "background:#fdd;font-weight:bold"

_MARK = {"ok": "yes", "WRONG": "NO", "not tested": "not tested", "missing": "MISSING",
         "bad shape": "BAD SHAPE"}


@dataclass
class GradientReport:
    """The outcome of :func:`lstm_ag.check_gradients` or :func:`lstm_ag.check_step`.

    - ok: no block is wrong, missing or of the wrong shape (and, for a step, the forward
      agrees).
    - rows: one :class:`~lstm_ag.gradcheck.compare.Row` per block (``.name`` like ``"dWx[f]"``
      or ``"dprev_c"``, ``.ok``, ``.status``, the errors, the expected and given values); for a
      sequence, at its full length.
    - worst: ``(name, gate, rel)`` of the worst block where the report locates the mistake (at
      ``first_bad_length`` for a sequence), e.g. ``("dWx", "o", 0.41)``; ``("", None, 0.0)``
      when there is nothing to compare.
    - first_bad_length: for a sequence, the shortest prefix length at which the backward is
      wrong (None when it is right, and for a step).
    - bad_rows: the rows at ``first_bad_length``.
    - first_tested: for a sequence, block name -> the shortest length at which its expected
      gradient is not exactly zero (where a mistake in it can first show).
    - diagnosis: plain sentences naming the likely mistake and what to look at next (empty
      when everything agrees).
    - forward: for a step, rows comparing your forward's ``next_h``, ``next_c`` with ours.
    - notes: warnings and remarks (a batch of one, sampled finite differences, ...).
    - kind (``"step"`` or ``"sequence"``), length (T), dtype, tolerances
      ``(rel vs autograd, rel vs finite differences)``, seconds.
    - style: the course's style the backward was checked in (:mod:`~lstm_ag.gradcheck.styles`),
      or None; then the rows' names are the student's (``"dWf[:, n_a:]"``, ``"dbf"``) and
      ``worst[0]`` is a whole row's name.
    - history: for a sequence, every prefix length the check ran -> its rows (what
      :meth:`plot` draws).
    """
    ok: bool
    rows: list
    worst: tuple
    kind: str
    dtype: str
    tolerances: tuple
    length: int | None = None
    first_bad_length: int | None = None
    bad_rows: list = field(default_factory=list)
    first_tested: dict = field(default_factory=dict)
    diagnosis: list = field(default_factory=list)
    forward: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    style: str | None = None
    history: dict = field(default_factory=dict)

    def plot(self, path: str | None = None, lengths: int = 40):
        """Draw the relative error of each block (rows) at each sequence length (columns:
        every length up to T, or ``lengths`` of them spread evenly), on a log scale, the
        blocks above the tolerance crossed: where a mistake starts and which gate it is in.
        Returns the matplotlib ``Figure``; with ``path``, also saves it there (PNG, PDF, SVG
        by its suffix). Needs matplotlib (``pip install lstm-ag[plot]``)."""
        try:
            from matplotlib.colors import LogNorm
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("GradientReport.plot needs matplotlib: pip install "
                              "lstm-ag[plot]") from None
        if self.kind != "sequence" or not self.history:
            raise ValueError("plot draws a sequence check (check_gradients); this report is "
                             f"of {'one step' if self.kind == 'step' else 'no length'}")
        more = getattr(self, "rows_at", None)          # set by check_gradients
        if more is not None and self.length:
            for n in sorted({round(x) for x in
                             np.linspace(1, self.length, min(lengths, self.length))}):
                if n not in self.history:
                    self.history[n] = more(n)
        return _draw(Figure, LogNorm, self, path)

    def row(self, name: str) -> Row:
        """The row called ``name`` (``"dWx[f]"``, ``"dprev_c"``), at the full length."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {[r.name for r in self.rows]}")

    def __str__(self) -> str:
        lines = []
        if self.diagnosis:
            lines += ["diagnosis:"] + [f"  - {sentence}" for sentence in self.diagnosis] + [""]
        where = ("one step" if self.kind == "step" else f"T={self.length}")
        lines.append(f"gradient check of {where}, backward in {self.dtype}; rel tol "
                     f"{self.tolerances[0]:.0e} vs autograd, {self.tolerances[1]:.0e} + each "
                     "entry's own error vs finite differences")
        if self.forward:
            outputs = ", ".join(r.name for r in self.forward)
            lines += ["", f"forward: your {outputs} against lstm_ag's step"]
            lines += forward_table(self.forward)
        if self.rows:
            lines += [""] if self.forward else []
            lines += table(self.rows, self.first_tested)
        if self.first_bad_length is not None and self.first_bad_length != self.length:
            lines += ["", f"first wrong at sequence length {self.first_bad_length}:"]
            lines += table(self.bad_rows, self.first_tested)
        lines += self.notes
        lines.append(self.verdict())
        return "\n".join(lines)

    def __repr__(self) -> str:
        """One line: the kind, OK or MISMATCH, the worst block and the first wrong length."""
        where = "step" if self.kind == "step" else f"sequence T={self.length}"
        name, gate, rel = self.worst
        what = (name if gate is None else f"{name}[{gate}]") or "-"
        first = ("" if self.first_bad_length is None
                 else f", first wrong at length {self.first_bad_length}")
        return (f"<GradientReport {where}: {'OK' if self.ok else 'MISMATCH'}, worst {what} "
                f"rel {rel:.1e}{first}>")

    def _repr_html_(self) -> str:
        """The report as HTML for Jupyter: the diagnosis, then a table per part, the rows that
        are not ok marked (class ``wrong``, in bold on a red background)."""
        parts = ["<div class='lstm-ag-report'>"]
        if self.diagnosis:
            parts.append("<p><b>diagnosis:</b></p><ul>" + "".join(
                f"<li>{html.escape(s)}</li>" for s in self.diagnosis) + "</ul>")
        if self.forward:
            parts.append(_html_table(self.forward, "forward: your next_h, next_c against "
                                                   "lstm_ag's step", forward=True))
        if self.rows:
            parts.append(_html_table(self.rows, f"gradients ({self.dtype})",
                                     self.first_tested))
        if self.first_bad_length is not None and self.first_bad_length != self.length:
            parts.append(_html_table(self.bad_rows, "first wrong at sequence length "
                                     f"{self.first_bad_length}", self.first_tested))
        parts += [f"<p>{html.escape(n)}</p>" for n in self.notes]
        parts.append(f"<p><b>{html.escape(self.verdict())}</b></p></div>")
        return "\n".join(parts)

    def verdict(self) -> str:
        """The last line: OK or MISMATCH, and the worst errors against each reference."""
        if not self.ok:
            name, gate, rel = self.worst
            what = name if gate is None or self.style else f"{name}[{gate}]"
            first = ("" if self.first_bad_length is None
                     else f", first wrong at length {self.first_bad_length}")
            return (f"MISMATCH: worst {what or '-'}, rel error {rel:.1e}{first} "
                    f"({self.seconds:.2f} s)")
        rows = [r for r in self.rows if r.status == "ok"]
        if not rows:
            return f"OK: nothing to compare ({self.seconds:.2f} s)"
        ag = max(rows, key=lambda r: r.rel_autograd)
        parts = [(f"worst vs autograd {ag.name} {ag.rel_autograd:.1e} (tol "
                  f"{self.tolerances[0]:.0e})")]
        with_fd = [r for r in rows if r.fd_entries]
        if with_fd:
            fd = max(with_fd, key=lambda r: r.rel_fd)
            parts.append(f"vs finite differences {fd.name} {fd.rel_fd:.1e} (tol "
                         f"{self.tolerances[1]:.0e} + their own error)")
        return f"OK: {'; '.join(parts)} ({self.seconds:.2f} s)"


def forward_table(rows: list) -> list[str]:
    """The forward's rows: your next_h, next_c against lstm_ag's step."""
    head = f"{'output':<10} {'size':>6}  {'rel error':>10}  ok"
    out = [head, "-" * len(head)]
    for r in rows:
        error = r.problem if r.status == "bad shape" else f"{r.rel_autograd:>10.1e}"
        out.append(f"{r.name:<10} {r.size:>6d}  {error:>10}  {_MARK[r.status]}")
    return out


def table(rows: list, first_tested: dict | None = None) -> list[str]:
    """The rows as text lines: a header, a rule, one line per block."""
    first_tested = first_tested or {}
    w = max([10, *(len(r.name) for r in rows)])       # "L1.reverse.dWx[f]" for stacked models
    head = (f"{'block':<{w}} {'size':>6}  {'rel vs autograd':>15}  {'abs vs FD':>10} "
            f"{'rel vs FD':>10} {'FD n':>5}  ok")
    out = [head, "-" * len(head)]
    for r in rows:
        if r.status in ("missing", "bad shape"):
            out.append(f"{r.name:<{w}} {r.size:>6d}  {r.problem:>39}  {_MARK[r.status]}")
            continue
        fd = (f"{r.abs_fd:>10.1e} {r.rel_fd:>10.1e} {r.fd_entries:>5d}" if r.fd_entries
              else f"{'-':>10} {'-':>10} {0:>5d}")
        mark = _MARK[r.status]
        if r.status == "not tested" and r.name in first_tested:
            mark += f" (0 here; first tested at length {first_tested[r.name]})"
        out.append(f"{r.name:<{w}} {r.size:>6d}  {r.rel_autograd:>15.1e}  {fd}  {mark}")
    return out


def _html_table(rows: list, caption: str, first_tested: dict | None = None,
                forward: bool = False) -> str:
    """One HTML table of rows; a row that is not ok has ``class="wrong"`` and is marked."""
    first_tested = first_tested or {}
    head = (["output", "size", "rel error", "ok"] if forward else
            ["block", "size", "rel vs autograd", "abs vs FD", "rel vs FD", "FD n", "ok"])
    out = [f"<table><caption>{html.escape(caption)}</caption><thead><tr>"
           + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        mark = _MARK[r.status]
        if r.status == "not tested" and r.name in first_tested:
            mark += f" (0 here; first tested at length {first_tested[r.name]})"
        if r.status in ("missing", "bad shape"):
            numbers = [r.problem] + [""] * (1 if forward else 4)
        elif forward:
            numbers = [f"{r.rel_autograd:.1e}"]
        else:
            numbers = [f"{r.rel_autograd:.1e}"] + (
                [f"{r.abs_fd:.1e}", f"{r.rel_fd:.1e}", str(r.fd_entries)] if r.fd_entries
                else ["-", "-", "0"])
        attrs = "" if r.ok else f" class='wrong' style='{_WRONG_STYLE}'"
        cells = [r.name, str(r.size), *numbers, mark]
        out.append(f"<tr{attrs}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                   + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _draw(Figure, LogNorm, report, path):
    """The picture of :meth:`GradientReport.plot`."""
    lengths = sorted(report.history)
    names = [r.name for r in report.history[lengths[-1]]]
    tiny = report.tolerances[0] / 100
    rel = np.full((len(names), len(lengths)), tiny)
    for j, length in enumerate(lengths):
        for r in report.history[length]:
            value = 1.0 if r.status in ("missing", "bad shape") else r.rel_autograd
            rel[names.index(r.name), j] = max(min(value, 10.0), tiny) if value == value \
                else tiny
    figure = Figure(figsize=(3.5 + 0.25 * len(lengths), 1.2 + 0.22 * len(names)),
                    layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(rel, aspect="auto", cmap="magma_r", interpolation="nearest",
                        norm=LogNorm(vmin=tiny, vmax=10.0))
    wrong = rel > report.tolerances[0]
    for i, j in zip(*np.nonzero(wrong), strict=True):
        axes.text(j, i, "x", ha="center", va="center", color="white", fontsize=7)
    axes.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    axes.set_yticks(range(len(names)), names, fontsize=7)
    axes.set_xlabel("sequence length checked")
    verdict = "OK" if report.ok else f"first wrong at length {report.first_bad_length}"
    axes.set_title(f"relative error vs autograd: {verdict}\n(x: above the tolerance "
                   f"{report.tolerances[0]:.0e})", fontsize=8)
    figure.colorbar(image, ax=axes, label="relative error")
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure
