"""Plant a bug the way a student makes one: a copy of a correct file with one line changed.

::

    buggy = mutate("cs231n_step.py", "db = da.sum(axis=0)", "db = da[0]")
    buggy.lstm_step_backward(...)

The line to change is matched exactly after stripping its indentation and must occur once
(or ``count`` times, every occurrence changed), so a planted bug cannot silently stop applying
when the correct file is edited; the new line keeps the old one's indentation unless it starts
with spaces itself (to move a line in or out of a loop).
"""
import pathlib
import types

#: The correct students' files: the examples that ship with the checker
#: (``lstm-ag-gradcheck --example NAME``).
HERE = pathlib.Path(__file__).resolve().parents[2] / "lstm_ag" / "gradcheck" / "examples"


def mutated_source(name, old, new, count=1):
    """The text of the example ``<name>`` with the line ``old`` replaced by ``new``."""
    lines = (HERE / name).read_text().splitlines()
    found = [n for n, line in enumerate(lines) if line.strip() == old]
    if len(found) != count:
        raise ValueError(f"{name}: the line {old!r} occurs {len(found)} times, not {count}")
    for n in found:
        indent = lines[n][:len(lines[n]) - len(lines[n].lstrip())]
        lines[n] = new if new.startswith(" ") else indent + new
    return "\n".join(lines) + "\n"


def load_source(text, name):
    """A fresh module executing ``text``."""
    module = types.ModuleType(name)
    module.__file__ = str(HERE / f"{name}.py")
    exec(compile(text, module.__file__, "exec"), module.__dict__)
    return module


def mutate(name, old, new, count=1):
    """A fresh module: the example ``<name>`` with the line ``old`` replaced by ``new``."""
    return load_source(mutated_source(name, old, new, count),
                       name.removesuffix(".py") + "_mutant")


def load(name):
    """A fresh module of ``lstm_ag/gradcheck/examples/<name>`` as it is."""
    return load_source((HERE / name).read_text(), name.removesuffix(".py"))
