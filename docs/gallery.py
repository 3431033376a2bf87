"""Rerun every example output of docs/gradcheck.md and the README's "Checking gradients".

::

    python docs/gallery.py            rewrite each block between <!-- gallery:NAME --> and
                                      <!-- /gallery:NAME --> with what the checker prints today
    python docs/gallery.py --check    exit 1, naming the stale blocks and each figure that
                                      moved, when any differs from today's output beyond
                                      rounding (see ``figures_agree``) or its timings

Run it from the repository's root. Each gallery entry is a correct student file of
``lstm_ag/gradcheck/examples/`` with one line changed by ``tests/students/mutate.py`` (as the
checker's tests plant their bugs), written to a temporary directory as ``my_lstm.py`` or
``my_loop.py`` and checked there with the command line the page shows (its ``main``, in this
process: the same code ``lstm-ag-gradcheck`` runs). Python examples are the page's own
``python`` block just before the output block, executed as they stand. Tables are trimmed to
their wrong rows as the page says; a block whose only change is its timing, or figures that
moved by rounding alone, is left as it is, so rerunning does not churn and the pages hold on
every BLAS kernel.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import io
import os
import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from students.mutate import HERE, load_source, mutated_source  # noqa: E402

import lstm_ag  # noqa: E402
from lstm_ag.gradcheck.__main__ import main as gradcheck  # noqa: E402
from lstm_ag.gradcheck.examples import notebook_001  # noqa: E402

DOC = ROOT / "docs" / "gradcheck.md"
README = ROOT / "README.md"
TIMING = re.compile(r"\(\d+\.\d+ s\)")
BLOCK = re.compile(r"(<!-- gallery:(?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- /gallery:(?P=name) -->)", re.S)
PYTHON = re.compile(r"```python\n(.*?)```", re.S)
STEP = ["--step", "my_lstm.py", "--gate-order", "ifog"]
SEQ = ["--sequence", "my_loop.py", "--steps", "5", "--hidden-size", "4"]
MINE = ["my_lstm.py", "--steps", "5", "--hidden-size", "4"]      # a style's file, found
ALL = [*SEQ[:2], "--backward", "backward_all", "--upstream", "all", *SEQ[2:]]
LAST = [*SEQ[:2], "--backward", "backward_last", "--upstream", "last", *SEQ[2:]]


# ---------------------------------------------------------------- running the checker

def run_cli(argv, cwd):
    """What ``lstm-ag-gradcheck ARGV`` prints in ``cwd``, and its exit status."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = gradcheck(argv)
    finally:
        os.chdir(old)
    if err.getvalue():
        raise RuntimeError(f"lstm-ag-gradcheck {' '.join(argv)} wrote to stderr:\n{err.getvalue()}")
    return out.getvalue().rstrip("\n"), status


def run_python(code, namespace):
    """What the page's python block ``code`` prints, run in ``namespace``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<docs python block>", "exec"), dict(namespace))
    return out.getvalue().rstrip("\n")


# ---------------------------------------------------------------- trimming tables

def is_row(line):
    return bool(re.search(r"  (yes|NO|not tested \(.*\))$", line))


def tables(lines):
    """(header index, [row indices]) of each table: a header, a line of dashes, rows."""
    found = []
    for n, line in enumerate(lines):
        if line and set(line) == {"-"} and n > 0:
            rows = []
            for m in range(n + 1, len(lines)):
                if not is_row(lines[m]):
                    break
                rows.append(m)
            found.append((n - 1, rows))
    return found


def trim_yes(text):
    """Rows marked ``yes`` dropped from the gradient tables (header ``block``); their count."""
    lines = text.splitlines()
    drop = {m for head, rows in tables(lines) if lines[head].startswith("block")
            for m in rows if lines[m].endswith("  yes")}
    return "\n".join(line for n, line in enumerate(lines) if n not in drop), len(drop)


def trim_full_length_table(text):
    """The first table (the full-length one of a sequence check) replaced by one line."""
    lines = text.splitlines()
    head, rows = tables(lines)[0]
    marks = {lines[m].rsplit(None, 1)[-1] for m in rows}
    length = re.search(r"gradient check of T=(\d+)", text).group(1)
    note = f"(the table at T={length} trimmed: every row {marks.pop()})" if len(marks) == 1 \
        else f"(the table at T={length} trimmed)"
    return "\n".join([*lines[:head], note, *lines[rows[-1] + 1:]])


# ---------------------------------------------------------------- the entries

@dataclasses.dataclass
class Cli:
    """A student's file with one line changed, checked by ``lstm-ag-gradcheck argv``."""
    argv: list
    old: str | None = None
    new: str | None = None
    said: str | None = None           # how the change is described, when not "`old` became `new`"

    def render(self, _before, _body):
        source, name = ("cs231n_step.py", "my_lstm.py") if "--step" in self.argv \
            else ("sequence_loop.py", "my_loop.py")
        text = (HERE / source).read_text() if self.old is None \
            else mutated_source(source, self.old, self.new)
        with tempfile.TemporaryDirectory() as tmp:
            (pathlib.Path(tmp) / name).write_text(text)
            out, status = run_cli(self.argv, tmp)
        out, trimmed = trim_yes(out)
        parts = []
        if self.old is not None:
            parts.append((self.said or f"`{self.old}` became `{self.new.strip()}`") + ":\n\n")
        parts.append(f"```console\n$ lstm-ag-gradcheck {' '.join(self.argv)}\n{out}\n"
                     f"$ echo $?\n{status}\n```\n")
        if trimmed:
            parts.append(f"\n({trimmed} rows marked `yes` trimmed.)\n")
        return "".join(parts)


@dataclasses.dataclass
class Example:
    """The shipped CS231n example written out, one line changed by ``sed``, checked: the
    commands a reader types, each shown (tests/test_readme.py runs them after a plain
    install)."""
    argv: list
    old: str
    new: str

    def render(self, _before, _body):
        old, new = (s.replace("*", r"\*") for s in (self.old, self.new))
        text = mutated_source("cs231n_step.py", self.old, self.new)
        with tempfile.TemporaryDirectory() as tmp:
            (pathlib.Path(tmp) / "my_lstm.py").write_text(text)
            out, status = run_cli(self.argv, tmp)
        out, trimmed = trim_yes(out)
        note = f"\n({trimmed} rows marked `yes` trimmed.)\n" if trimmed else ""
        return (f"```console\n$ lstm-ag-gradcheck --example cs231n > my_lstm.py\n"
                f"$ sed -i 's/{old}/{new}/' my_lstm.py\n"
                f"$ lstm-ag-gradcheck {' '.join(self.argv)}\n{out}\n$ echo $?\n{status}\n```\n"
                + note)


@dataclasses.dataclass
class Shell:
    """``lstm-ag-gradcheck argv`` run from the repository's root, its output in full."""
    argv: list

    def render(self, _before, _body):
        out, _ = run_cli(self.argv, ROOT)
        command = " ".join(["lstm-ag-gradcheck", *self.argv])
        return f"```console\n$ {command}\n{out}\n```\n"


@dataclasses.dataclass
class Python:
    """A page's ``python`` block run with ``namespace``, its output (``trim``-med) after it.

    The block is the one inside the markers, kept as it is, or else the last one before them.
    """
    namespace: dict
    trim: object = None

    def render(self, before, body):
        inside = PYTHON.search(body)
        code = inside.group(1) if inside else PYTHON.findall(before)[-1]
        out = run_python(code, self.namespace)
        shown = f"```text\n{self.trim(out) if self.trim else out}\n```\n"
        return f"{inside.group(0)}\n{shown}" if inside else shown


@dataclasses.dataclass
class StyleCli:
    """A student's file of a course's style, ``lstm_ag/gradcheck/examples/<source>`` (with the
    line ``old`` changed to ``new``), written as ``my_lstm.py`` and checked by
    ``lstm-ag-gradcheck argv``."""
    source: str
    argv: list
    old: str | None = None
    new: str | None = None

    def render(self, _before, _body):
        text = (HERE / self.source).read_text() if self.old is None \
            else mutated_source(self.source, self.old, self.new)
        argv = self.argv
        with tempfile.TemporaryDirectory() as tmp:
            (pathlib.Path(tmp) / "my_lstm.py").write_text(text)
            out, status = run_cli(argv, tmp)
        out, trimmed = trim_yes(out)
        head = "" if self.old is None else f"`{self.old}` became `{self.new}`:\n\n"
        tail = f"\n({trimmed} rows marked `yes` trimmed.)\n" if trimmed else ""
        return (f"{head}```console\n$ lstm-ag-gradcheck {' '.join(argv)}\n{out}\n"
                f"$ echo $?\n{status}\n```\n{tail}")


def style_problem(source):
    """What the page's python block of a style is given: the student's module's names."""
    module = load_source((HERE / source).read_text(), "my_lstm")
    sys.modules["my_lstm"] = module
    return {"np": np, "lstm_ag": lstm_ag}


def notebook_problem(LSTM):
    """What the page's notebook snippet is given: one sequence of T=7, D=3, H=4."""
    return {"np": np, "lstm_ag": lstm_ag, "LSTM": LSTM, "params": lstm_ag.init_params(3, 4, seed=1),
            "xs": np.random.default_rng(1).standard_normal((7, 3))}


DC = "dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)"
ENTRIES = {
    # docs/gradcheck.md: section 2, notebook 001's class
    "notebook-original": Python(notebook_problem(notebook_001.LSTMNotebook),
                                trim_full_length_table),
    "notebook-fixed": Python(notebook_problem(notebook_001.LSTM),
                             lambda out: out.splitlines()[-1]),
    # docs/gradcheck.md: section 3, step pairs
    "gate-order": Cli(STEP[:2]),
    "sigma-2x": Cli(STEP, "return 1 / (1 + np.exp(-x))", "return 0.5 * (np.tanh(x) + 1)"),
    "o-derivative": Cli(STEP, "do = dnext_h * tanh_c * o * (1 - o)", "do = dnext_h * tanh_c"),
    "tanh-of-tanh-c": Cli(STEP, DC, "dc = dnext_c + dnext_h * o * (1 - np.tanh(tanh_c) ** 2)"),
    "tanh-of-g": Cli(STEP, "dg = dc * i * (1 - g ** 2)", "dg = dc * i * (1 - np.tanh(g) ** 2)"),
    "i-f-swapped": Cli(STEP, "da = np.hstack((di, df, do, dg))",
                       "da = np.hstack((df, di, do, dg))"),
    "dc-without-o": Cli(STEP, DC, "dc = dnext_c + dnext_h * (1 - tanh_c ** 2)"),
    "dprev-c-without-f": Cli(STEP, "dprev_c = dc * f", "dprev_c = dc"),
    "dwh-from-next-h": Cli(STEP, "dWh = prev_h.T @ da", "dWh = (o * tanh_c).T @ da"),
    "db-first-row": Cli(STEP, "db = da.sum(axis=0)", "db = da[0]"),
    "db-mean": Cli(STEP, "db = da.sum(axis=0)", "db = da.mean(axis=0)"),
    # docs/gradcheck.md: section 3, sequence loops
    "no-dc-next": Cli(ALL, "dc = dc_next + dh * o * (1 - tanh_c ** 2)",
                      "dc = dh * o * (1 - tanh_c ** 2)"),
    "no-dh-next": Cli(ALL, "dh = dhs[t] + dh_next", "dh = dhs[t]"),
    "return-in-loop": Cli(LAST, "return np.array(hs), caches",
                          "        return np.array(hs), caches",
                          "`return np.array(hs), caches` moved into the loop (indented under "
                          "`for t in range(T):`)"),
    "loop-skips-0": Cli(ALL, "for t in reversed(range(len(caches))):",
                        "for t in reversed(range(1, len(caches))):"),
    "dwh-from-h-t": Cli(ALL, "dWh += h_prev.T @ da", "dWh += h.T @ da"),
    "df-from-c-t": Cli(ALL, "df = dc * c_prev * f * (1 - f)", "df = dc * c * f * (1 - f)"),
    # docs/gradcheck.md: section 4, the courses' styles
    "style-dls": StyleCli("dls_sequence.py", MINE),
    "style-dls-python": Python(style_problem("dls_sequence.py")),
    "style-dls-keepdims": StyleCli("dls_sequence.py", ["--step", *MINE],
                                   "dbf = np.sum(dft, axis=1, keepdims=True)",
                                   "dbf = np.sum(dft, axis=1)"),
    "style-dls-da0": StyleCli("dls_sequence.py", ["--sequence", *MINE], "da0 = da_prevt",
                              "da0 = da[:, :, 0]"),
    "style-notebook": StyleCli("notebook_001.py", MINE),
    "style-karpathy": StyleCli("karpathy.py", MINE, "dC[t - 1] += IFOGf[t, :, d:2 * d] * dC[t]",
                               "dC[t - 1] += dC[t]"),
    "style-torch": StyleCli("torch_loop.py", MINE, '"weight_hh": dweight_hh, "bias_ih": dbias, '
                            '"bias_hh": dbias.copy()}', '"weight_hh": dweight_hh, "bias_ih": '
                            'dbias}'),
    "style-cs231n": StyleCli("cs231n_step.py", ["--sequence", *MINE],
                             "dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t",
                             "dWx, dWh, db = dWx_t, dWh_t, db_t"),
    # docs/gradcheck.md: section 2, the library's own check and a sequence loop from Python
    "library-default": Shell([]),
    "python-sequence": Python({}),
    # README.md: "Check your backward"
    "readme-bug": Example(["--step", "my_lstm.py", "--gate-order", "ifog"],
                          "dprev_c = dc * f", "dprev_c = dc"),
}


# ---------------------------------------------------------------- comparing figures
#
# The same check prints other last digits on another BLAS kernel (OpenBLAS picks Haswell or
# SkylakeX code from the CPU) or thread count. Figures that are rounding on both sides are
# taken as equal; a figure of substance may move by one unit of its last printed digit.

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
ROUNDING = 1e-13    # at or below, on both sides: rounding (autograd against a correct backward)
NOISE = 1e-7        # below, on both sides: within 10x (finite differences' own rounding error)


def _quantum(text):
    """One unit of the last digit ``text`` shows (``2.7e-10`` -> 1e-11, ``14.01`` -> 0.01)."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def figure_moved(old, new):
    """Why two printed figures differ beyond rounding, or None when they agree."""
    a, b = float(old), float(new)
    if not any(c in old + new for c in ".eE"):
        return None if a == b else f"{old} became {new} (a count)"
    if max(abs(a), abs(b)) <= ROUNDING:
        return None
    if max(abs(a), abs(b)) < NOISE:
        small, large = sorted((abs(a), abs(b)))
        return None if large <= 10 * max(small, ROUNDING) else \
            f"{old} became {new} (more than 10x, below {NOISE:g})"
    if abs(a - b) <= 1.01 * max(_quantum(old), _quantum(new)):
        return None
    return f"{old} became {new} (by {abs(a - b) / max(abs(a), abs(b)):.1e} relative)"


FIGURE = re.compile(r"(?<![\w.\[+:])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\.?\d)")
NAME = re.compile(r"[A-Za-z_][\w.]*(?:\[[^\]]*\])?\s*$")    # a row's name: dWo[:, :n_a]


def _split(line):
    """``(texts, figures)``: the figures of ``line`` (not the digits inside names such as
    ``dWLSTM[1+D:, g]`` or ``L1.reverse``) and the texts around them, white space folded."""
    figures = FIGURE.findall(line)
    texts = [" ".join(part.split()) for part in FIGURE.split(line)]
    return texts, figures


def figures_agree(old, new):
    """The ways ``new`` differs from ``old`` beyond rounding and timings (empty: they agree).

    Lines must match word for word, with two allowances: figures as ``figure_moved`` says, and
    the name just before a figure that is rounding on both sides (which row is the worst of
    several at 1e-16 is the kernel's choice).
    """
    old_lines = TIMING.sub("(_ s)", old).splitlines()
    new_lines = TIMING.sub("(_ s)", new).splitlines()
    if len(old_lines) != len(new_lines):
        return [f"{len(old_lines)} lines became {len(new_lines)}"]
    problems = []
    for n, (o, w) in enumerate(zip(old_lines, new_lines, strict=True), 1):
        (texts_o, figs_o), (texts_w, figs_w) = _split(o), _split(w)
        if len(figs_o) != len(figs_w):
            problems.append(f"line {n}: {o.strip()!r} became {w.strip()!r}")
            continue
        for k, (x, y) in enumerate(zip(texts_o, texts_w, strict=True)):
            noise = k < len(figs_o) and max(abs(float(figs_o[k])), abs(float(figs_w[k]))) < NOISE
            if x != y and not (noise and NAME.sub("", x) == NAME.sub("", y)):
                problems.append(f"line {n}: {x!r} became {y!r}")
        for x, y in zip(figs_o, figs_w, strict=True):
            moved = figure_moved(x, y)
            if moved:
                problems.append(f"line {n}: {moved}")
    return problems


# ---------------------------------------------------------------- rewriting the pages

def regenerate(text, seen, problems=None):
    """``text`` with every marked block rendered anew (kept when it agrees to rounding).

    ``problems``, a list, receives ``(block name, [what moved])`` for each block that changed.
    """
    def block(match):
        name, body = match.group("name"), match.group("body")
        if name not in ENTRIES:
            raise KeyError(f"no gallery entry {name!r} in docs/gallery.py")
        seen.add(name)
        new = ENTRIES[name].render(text[:match.start()], body)
        moved = figures_agree(body, new)
        if not moved:
            new = body
        elif problems is not None:
            problems.append((name, moved))
        return match.group(1) + new + match.group(4)
    return BLOCK.sub(block, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare only (timings aside); exit 1 when a block is stale")
    args = parser.parse_args(argv)
    seen, stale = set(), []
    for page in (DOC, README):
        old, problems = page.read_text(), []
        new = regenerate(old, seen, problems)
        if new == old:
            continue
        if args.check:
            stale.append(page.relative_to(ROOT).as_posix())
            for name, moved in problems:
                print(f"{stale[-1]}, block {name}: " + "; ".join(moved[:5]))
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), f"{stale[-1]} (committed)",
                f"{stale[-1]} (today's output)"))
        else:
            lstm_ag.atomic_write(page, lambda file, text=new: file.write(text), mode="w")
            print(f"rewrote {page.relative_to(ROOT).as_posix()}")
    missing = sorted(set(ENTRIES) - seen)
    if missing:
        print(f"no markers in the pages for: {', '.join(missing)}", file=sys.stderr)
        return 1
    if stale:
        print(f"stale output in {' and '.join(stale)}: run python docs/gallery.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
